"""Pure-Python reference search: the readable spec of the compiled core (csrc/search.pyx).

Both implementations have the same API and give identical tokens and scores
(float64 throughout, the same operation order, sequential sums, ties broken
by the lower token id, then the lower beam index). This module is also the
fallback when the extension is not built.

Per hypothesis and step (the logits row of the token last fed):
  1. raw float32 logits -> float64; NaN or +inf raises ValueError (-inf = masked)
  2. processors: repetition penalty (CTRL: divide positive logits, multiply
     negative ones, over distinct tokens this hypothesis generated), then
     -inf for banned ids, for eos ids while fewer than min_new_tokens tokens
     were generated, and for tokens that would repeat an n-gram
     (no_repeat_ngram_size, over the generated tokens only)
  3. log-softmax: m = max, s = sum of exp(x - m) in id order, logp = (x - m) - log(s)
  4. selection: argmax, a sample, or the beam's top 2*num_beams candidates.

Scores are sums of these log-probs (temperature is a sampling knob only; it
does not enter the score) over the generated tokens, EOS included when it was
produced. Beam scores are divided by length**length_penalty, length counting
EOS. A ValueError from advance() leaves the search unchanged.
"""
from __future__ import annotations

import math
import operator
import os
from dataclasses import dataclass
from functools import reduce

import numpy as np

from ltg_engine.options import GenerationOptions, token_id_list

MASK64 = (1 << 64) - 1
GOLDEN64 = 0x9E3779B97F4A7C15
NEG_INF = float("-inf")


# ---------------------------------------------------------------- RNG (splitmix64)
def splitmix64_mix(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def rng_init(seed: int, row: int) -> int:
    """Each original batch row has its own stream, so a row samples the same in any batch."""
    return splitmix64_mix((seed + row * GOLDEN64) & MASK64)


def rng_uniform(state: int):
    """(new_state, u) with u in [0, 1) from the top 53 bits of the next output."""
    state = (state + GOLDEN64) & MASK64
    return state, (splitmix64_mix(state) >> 11) * (1.0 / 9007199254740992.0)


# ---------------------------------------------------------------- parameters
@dataclass
class SearchParams:
    """Everything the loops need, validated and normalized (shared with the compiled core)."""
    options: GenerationOptions
    batch_size: int
    vocab_size: int
    bos_id: int
    eos_ids: list
    banned_ids: list
    seed: int


def resolve_params(options, batch_size, vocab_size, bos_id, eos_ids) -> SearchParams:
    if not isinstance(options, GenerationOptions):
        raise ValueError(f"options must be a GenerationOptions, got {type(options).__name__}")
    options.validate(vocab_size)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if isinstance(bos_id, (bool, np.bool_)) or not isinstance(bos_id, (int, np.integer)):
        raise ValueError(f"bos_id must be one int, got {bos_id!r}")
    (bos,) = token_id_list("bos_id", bos_id, vocab_size)
    eos = token_id_list("eos_token_id", options.eos_token_id if options.eos_token_id is not None
                        else eos_ids, vocab_size)
    if not eos:
        raise ValueError("eos_token_id: at least one eos id is needed")
    banned = token_id_list("banned_token_ids", options.banned_token_ids, vocab_size)
    seed = options.seed if options.seed is not None else int.from_bytes(os.urandom(8), "little")
    return SearchParams(options, int(batch_size), int(vocab_size), bos,
                        sorted(set(eos)), sorted(set(banned)), int(seed))


def check_logits(logits, n_active: int, k_fed: int, vocab_size: int) -> None:
    """Shape/dtype/layout of advance()'s input; ValueError names what is wrong."""
    if not isinstance(logits, np.ndarray):
        raise ValueError(f"logits must be a numpy array, got {type(logits).__name__}")
    if logits.dtype != np.float32:
        raise ValueError(f"logits must be float32, got {logits.dtype}")
    if logits.shape != (n_active, k_fed, vocab_size):
        raise ValueError(f"logits shape {logits.shape} != expected {(n_active, k_fed, vocab_size)}")
    if not logits.flags.c_contiguous:
        raise ValueError("logits must be C-contiguous")


def bad_logits_error(step, position, row, hyp, token) -> ValueError:
    return ValueError(f"logits contain NaN or +inf at step {step}, active row {position} "
                      f"(batch row {row}), hypothesis {hyp}, token {token}")


def all_masked_error(step, row, hyp) -> ValueError:
    return ValueError(f"every token is masked at step {step} for batch row {row}, hypothesis {hyp} "
                      "(banned ids, eos held back by min_new_tokens and n-gram bans leave nothing)")


# ---------------------------------------------------------------- per-hypothesis math
def process_logits(raw, history, params: SearchParams) -> np.ndarray:
    """Processors applied to one hypothesis's logits row; returns float64 logits."""
    opts = params.options
    x = raw.astype(np.float64)
    if opts.repetition_penalty != 1.0:
        p = float(opts.repetition_penalty)
        for t in sorted(set(history)):
            x[t] = x[t] / p if x[t] > 0 else x[t] * p
    for t in params.banned_ids:
        x[t] = NEG_INF
    if len(history) < opts.min_new_tokens:
        for t in params.eos_ids:
            x[t] = NEG_INF
    for t in banned_by_ngrams(history, opts.no_repeat_ngram_size):
        x[t] = NEG_INF
    return x


def banned_by_ngrams(history, n: int) -> list:
    """Tokens that would complete an n-gram already present in history."""
    if n == 0 or len(history) + 1 < n:
        return []
    prefix = history[len(history) - n + 1:]
    return [history[i + n - 1] for i in range(len(history) - n + 1)
            if history[i:i + n - 1] == prefix]


def log_softmax_stats(x: np.ndarray):
    """(max, log of the sum of exp(x - max)) with a sequential sum in id order; None if all -inf."""
    m = float(x.max())
    if m == NEG_INF:
        return None
    shifted = (x[x != NEG_INF] - m).tolist()
    return m, math.log(reduce(operator.add, map(math.exp, shifted), 0.0))


def sample_token(x: np.ndarray, opts: GenerationOptions, state: int):
    """Temperature, top-k, top-p, then one draw; returns (token, new_state)."""
    y = x / float(opts.temperature)
    finite = np.flatnonzero(y != NEG_INF)
    order = finite[np.lexsort((finite, -y[finite]))].tolist()   # value desc, id asc
    if opts.top_k > 0:
        order = order[:opts.top_k]
    top = float(y[order[0]])
    weights = [math.exp(float(y[t]) - top) for t in order]
    n = len(order)
    if opts.top_p < 1.0:
        total, cum = reduce(operator.add, weights, 0.0), 0.0
        for j, w in enumerate(weights):
            cum += w / total
            if cum >= opts.top_p:
                n = j + 1
                break
    state, u = rng_uniform(state)
    target = u * reduce(operator.add, weights[:n], 0.0)
    cum = 0.0
    for j in range(n):
        cum += weights[j]
        if target < cum:
            return order[j], state
    return order[n - 1], state


# ---------------------------------------------------------------- common state
class _SearchBase:
    def __init__(self, params: SearchParams, width: int):
        b = params.batch_size
        self.params = params
        self.tokens = np.full((b, 1), params.bos_id, dtype=np.int64)
        self.parents = np.zeros((b, 1), dtype=np.int64)
        self.active_rows = np.arange(b, dtype=np.int64)
        self.kept = np.arange(b, dtype=np.int64)
        self.step = 0
        self.done = False
        self.compacted = False   # did the last advance shrink the active set?
        self._width = width

    def _prepare(self, logits):
        if self.done:
            raise ValueError("advance() called after the search is done")
        check_logits(logits, len(self.active_rows), self.tokens.shape[1], self.params.vocab_size)
        bad = np.argwhere(np.isnan(logits) | (logits == np.inf))
        if len(bad):
            i, k, t = (int(v) for v in bad[0])
            raise bad_logits_error(self.step, i, int(self.active_rows[i]), k, t)

    def _commit(self, survivors, next_tokens, next_parents):
        n_before = len(self.active_rows)
        self.kept = np.asarray(survivors, dtype=np.int64)
        self.active_rows = self.active_rows[self.kept]
        self.tokens = np.asarray(next_tokens, dtype=np.int64).reshape(len(self.kept), self._width)
        self.parents = np.asarray(next_parents, dtype=np.int64).reshape(len(self.kept), self._width)
        self.compacted = len(self.kept) < n_before
        self.step += 1
        self.done = len(self.kept) == 0


class GreedySearch(_SearchBase):
    """num_beams == 1: argmax, or a sample when do_sample. K is always 1."""

    def __init__(self, params: SearchParams):
        super().__init__(params, 1)
        b = params.batch_size
        self.emitted = np.full(b, -1, dtype=np.int64)
        self._history = [[] for _ in range(b)]
        self._scores = [0.0] * b
        self._rng = [rng_init(params.seed, r) for r in range(b)]

    def advance(self, logits) -> None:
        self._prepare(logits)
        opts, eos = self.params.options, self.params.eos_ids
        picks = []   # (token, logprob, rng state) per active row; committed after all rows pass
        for i, row in enumerate(self.active_rows.tolist()):
            x = process_logits(logits[i, 0], self._history[row], self.params)
            stats = log_softmax_stats(x)
            if stats is None:
                raise all_masked_error(self.step, row, 0)
            state = self._rng[row]
            if opts.do_sample:
                token, state = sample_token(x, opts, state)
            else:
                token = int(np.argmax(x))   # first maximum: the lowest id wins ties
            picks.append((token, (float(x[token]) - stats[0]) - stats[1], state))
        survivors, next_tokens = [], []
        self.emitted[:] = -1
        for i, (row, (token, logprob, state)) in enumerate(zip(self.active_rows.tolist(), picks)):
            self._scores[row] += logprob
            self._rng[row] = state
            if token in eos:
                continue
            self._history[row].append(token)
            self.emitted[row] = token
            if self.step + 1 < opts.max_new_tokens:
                survivors.append(i)
                next_tokens.append(token)
        self._commit(survivors, next_tokens, [0] * len(survivors))

    def results(self) -> list:
        """Per batch row: [(token_ids, sum of log-probs)], EOS excluded from ids, included in score."""
        return [[(list(h), s)] for h, s in zip(self._history, self._scores)]


class BeamSearch(_SearchBase):
    """num_beams > 1. Per row: up to num_beams live beams and the num_beams best finished hyps.

    Each step takes the top 2*num_beams candidates (score desc, then beam, then
    token); an EOS candidate ranked below num_beams is skipped, one ranked
    within becomes a finished hyp with score sum/len**length_penalty; the
    others become live beams until num_beams are found. Missing live beams are
    padded with dead ones (score -inf, never extended). After max_new_tokens
    the live beams are finished as they are.

    A row stops when no live beam is left, or when num_beams finished hyps are
    kept and (Hugging Face's three modes):
    - early_stopping=True: at once;
    - early_stopping=False (default): when the best live beam, scored at its
      current length L (s / L**lp), does not beat the worst kept finished hyp
      (HF's heuristic: cheap, and a longer beam could in theory still win);
    - early_stopping="never": when no live beam can beat it: log-probs are
      <= 0, so a live beam with sum s at length L can end with at most
      s / M**lp (lp > 0) or s / (L+1)**lp (lp <= 0), M = max_new_tokens.
      Exact (canonical beam search), but with lp > 0 it runs long.
    """

    def __init__(self, params: SearchParams):
        super().__init__(params, params.options.num_beams)
        b = params.batch_size
        self._live_scores = [[0.0] for _ in range(b)]
        self._live_history = [[[]] for _ in range(b)]
        self._finished = [[] for _ in range(b)]   # (normalized score, tokens), best first

    def advance(self, logits) -> None:
        self._prepare(logits)
        updates = [self._advance_row(logits[i], row) for i, row in enumerate(self.active_rows.tolist())]
        survivors, next_tokens, next_parents = [], [], []
        for i, (row, (live, finished, done)) in enumerate(zip(self.active_rows.tolist(), updates)):
            self._finished[row] = finished
            self._live_scores[row] = [s for s, _, _, _ in live]
            self._live_history[row] = [h for _, _, _, h in live]
            if not done:
                survivors.append(i)
                next_tokens.extend(t for _, t, _, _ in live)
                next_parents.extend(p for _, _, p, _ in live)
        self._commit(survivors, next_tokens, next_parents)

    def _advance_row(self, row_logits, row):
        params, opts = self.params, self.params.options
        n_beams, vocab, length = opts.num_beams, params.vocab_size, self.step
        scores, flats = [], []
        for b, beam_score in enumerate(self._live_scores[row]):
            if beam_score == NEG_INF:
                continue
            x = process_logits(row_logits[b], self._live_history[row][b], params)
            stats = log_softmax_stats(x)
            if stats is None:
                raise all_masked_error(self.step, row, b)
            ids = np.flatnonzero(x != NEG_INF)
            scores.append(beam_score + ((x[ids] - stats[0]) - stats[1]))
            flats.append(b * vocab + ids)
        scores, flats = np.concatenate(scores), np.concatenate(flats)
        top = np.lexsort((flats, -scores))[:2 * n_beams]
        finished = list(self._finished[row])
        live = []   # (score, token, parent, history)
        for rank, j in enumerate(top.tolist()):
            score, (parent, token) = float(scores[j]), divmod(int(flats[j]), vocab)
            history = self._live_history[row][parent]
            if token in params.eos_ids:
                if rank < n_beams:
                    self._keep_finished(finished, list(history), score, length + 1)
            else:
                live.append((score, token, parent, history + [token]))
                if len(live) == n_beams:
                    break
        if length + 1 == opts.max_new_tokens:
            for score, _, _, history in live:
                self._keep_finished(finished, history, score, length + 1)
            return live, finished, True
        if not live:
            return live, finished, True
        while len(live) < n_beams:
            live.append((NEG_INF,) + live[0][1:])
        return live, finished, self._row_done(finished, live[0][0], length + 1)

    def _keep_finished(self, finished, tokens, score, length):
        normalized = score / math.pow(float(length), float(self.params.options.length_penalty))
        n_beams = self.params.options.num_beams
        if len(finished) == n_beams:
            if not normalized > finished[-1][0]:
                return
            finished.pop()
        at = len(finished)
        while at > 0 and finished[at - 1][0] < normalized:
            at -= 1
        finished.insert(at, (normalized, tokens))

    def _row_done(self, finished, best_live, live_length) -> bool:
        opts = self.params.options
        if len(finished) < opts.num_beams:
            return False
        lp = float(opts.length_penalty)
        if opts.early_stopping == "never":
            best_length = opts.max_new_tokens if lp > 0 else live_length + 1
        elif opts.early_stopping:
            return True
        else:
            best_length = live_length
        return best_live / math.pow(float(best_length), lp) <= finished[-1][0]

    def results(self) -> list:
        """Per batch row: up to num_return_sequences (token_ids, normalized score), best first."""
        n = self.params.options.num_return_sequences
        return [[(list(t), s) for s, t in fin[:n]] for fin in self._finished]


def make_search(options, batch_size, vocab_size, bos_id, eos_ids):
    """GreedySearch when num_beams == 1 (sampling when do_sample), else BeamSearch."""
    params = resolve_params(options, batch_size, vocab_size, bos_id, eos_ids)
    return GreedySearch(params) if params.options.num_beams == 1 else BeamSearch(params)
