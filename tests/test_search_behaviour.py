"""Search behaviour, run on both implementations: exhaustive beam, processors, batching, errors."""
import itertools
import os
import subprocess
import sys

import numpy as np
import pytest

from ltg_engine import search_ref
from ltg_engine.options import GenerationOptions
from ltg_engine.search import iterate, run
from test_search_toy import ToyModel

try:
    from ltg_engine import _search
except ImportError:   # pragma: no cover
    _search = None

IMPLS = [pytest.param(search_ref, id="reference"),
         pytest.param(_search, id="compiled", marks=pytest.mark.skipif(
             _search is None, reason="compiled extension ltg_engine._search not built"))]
BOS, EOS = 0, 1


def generate(impl, options, model, batch, vocab, row_ids=None):
    search = impl.make_search(options, batch, vocab, BOS, EOS)
    return run(search, model.step_fn(batch, row_ids))


def log_softmax(x):
    x = x.astype(np.float64)
    return x - np.logaddexp.reduce(x)


def exhaustive(model, vocab, max_len, length_penalty, row=0):
    """Every possible output with its normalized score, best first (independent of the search)."""
    hyps = []
    content = [t for t in range(vocab) if t != EOS]

    def walk(prefix, score):
        if len(prefix) == max_len:
            hyps.append((score / len(prefix) ** length_penalty, prefix))
            return
        logp = log_softmax(model.logits(row, (BOS,) + tuple(prefix)))
        end = score + logp[EOS]
        hyps.append((end / (len(prefix) + 1) ** length_penalty, prefix))
        for t in content:
            walk(prefix + [t], score + logp[t])

    walk([], 0.0)
    return sorted(hyps, key=lambda h: -h[0])


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("length_penalty", [1.0, 0.0, -0.5, 2.0])
@pytest.mark.parametrize("early_stopping", ["never", True])
def test_wide_beam_equals_exhaustive_search(impl, length_penalty, early_stopping):
    vocab, max_len = 3, 4
    beams = vocab ** max_len
    model = ToyModel(vocab, seed=11, scale=1.5, eos_ramp=0.3)
    options = GenerationOptions(max_new_tokens=max_len, num_beams=beams, num_return_sequences=5,
                                length_penalty=length_penalty, early_stopping=early_stopping)
    (got,) = generate(impl, options, model, 1, vocab)
    want = exhaustive(model, vocab, max_len, length_penalty)[:5]
    assert [tokens for tokens, _ in got] == [tokens for _, tokens in want]
    np.testing.assert_allclose([s for _, s in got], [s for s, _ in want], rtol=0, atol=1e-9)


@pytest.mark.parametrize("impl", IMPLS)
def test_exact_stop_rule_matches_exhaustive_with_narrow_beam_on_one_path(impl):
    """early_stopping="never" stops only when no live beam can win, so a finished row is final."""
    model = ToyModel(4, seed=5, scale=4.0, eos_ramp=1.0)
    options = GenerationOptions(max_new_tokens=6, num_beams=2, length_penalty=1.0, early_stopping="never")
    search = impl.make_search(options, 1, 4, BOS, EOS)
    step_fn = model.step_fn(1)
    for _ in iterate(search, step_fn):
        pass
    (hyps,) = search.results()
    assert len(hyps) == 1 and search.step <= 6


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("beams", [2, 4, 6])
def test_nbest_sorted_and_complete(impl, beams):
    model = ToyModel(20, seed=2, eos_ramp=0.8)
    options = GenerationOptions(max_new_tokens=12, num_beams=beams, num_return_sequences=beams)
    for hyps in generate(impl, options, model, 3, 20):
        scores = [s for _, s in hyps]
        assert len(hyps) == beams
        assert scores == sorted(scores, reverse=True)
        assert len({tuple(t) for t, _ in hyps}) == beams


def _ngrams(tokens, n):
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("beams", [1, 3])
def test_no_repeat_ngram(impl, n, beams):
    vocab = 12
    model = ToyModel(vocab, seed=4, context=1)   # a Markov toy: greedy cycles without the ban
    options = GenerationOptions(max_new_tokens=10, num_beams=beams, num_return_sequences=beams,
                                no_repeat_ngram_size=n)
    free = generate(impl, options.replace(no_repeat_ngram_size=0), model, 4, vocab)
    assert any(len(set(_ngrams(t, n))) < len(_ngrams(t, n)) for hyps in free for t, _ in hyps)
    for hyps in generate(impl, options, model, 4, vocab):
        for tokens, _ in hyps:
            assert len(set(_ngrams(tokens, n))) == len(_ngrams(tokens, n))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("beams", [1, 3])
def test_min_new_tokens_holds_eos_back(impl, beams):
    options = GenerationOptions(max_new_tokens=12, num_beams=beams, eos_token_id=[1, 2])
    eager = ToyModel(10, seed=1, eos_ramp=50.0)   # EOS wins at once without the processor
    assert all(t == [] for hyps in generate(impl, options, eager, 3, 10) for t, _ in hyps[:1])
    for hyps in generate(impl, options.replace(min_new_tokens=4), eager, 3, 10):
        for tokens, _ in hyps:
            assert len(tokens) >= 4 and not {1, 2} & set(tokens)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kw", [dict(), dict(num_beams=3), dict(do_sample=True, seed=5, top_k=0)])
def test_banned_ids_never_appear(impl, kw):
    model = ToyModel(8, seed=9, scale=0.3)
    banned = [2, 3, 5]
    options = GenerationOptions(max_new_tokens=15, banned_token_ids=banned, **kw)
    for hyps in generate(impl, options, model, 4, 8):
        assert all(not set(banned) & set(tokens) for tokens, _ in hyps)


@pytest.mark.parametrize("impl", IMPLS)
def test_repetition_penalty_ctrl_rule(impl):
    params = search_ref.resolve_params(GenerationOptions(repetition_penalty=2.0), 1, 4, BOS, EOS)
    x = search_ref.process_logits(np.array([2.0, -2.0, 1.0, 0.5], np.float32), [0, 1, 0], params)
    assert x.tolist() == [1.0, -4.0, 1.0, 0.5]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kw", [dict(), dict(num_beams=3, num_return_sequences=2),
                                dict(num_beams=2, early_stopping=True),
                                dict(repetition_penalty=1.5, no_repeat_ngram_size=2)])
def test_batch_equals_rows_one_by_one(impl, kw):
    vocab, batch = 16, 5
    model = ToyModel(vocab, seed=3, eos_ramp=0.7)
    options = GenerationOptions(max_new_tokens=14, **kw)
    log = []
    search = impl.make_search(options, batch, vocab, BOS, EOS)
    for _ in iterate(search, model.step_fn(batch, log=log)):
        pass
    together = search.results()
    assert log[0][1] is None, "nothing to compact before the first advance"
    assert any(kept is not None for _, kept in log), "rows should finish at different steps"
    assert all(kept is None or len(kept) > 0 for _, kept in log)
    for row in range(batch):
        (alone,) = generate(impl, options, model, 1, vocab, row_ids=[row])
        assert alone == together[row]


@pytest.mark.parametrize("impl", IMPLS)
def test_sampling_is_reproducible_and_seed_dependent(impl):
    model = ToyModel(50, seed=0, scale=1.0)
    options = GenerationOptions(max_new_tokens=20, do_sample=True, top_k=0, seed=123)
    first = generate(impl, options, model, 3, 50)
    assert generate(impl, options, model, 3, 50) == first
    assert generate(impl, options.replace(seed=124), model, 3, 50) != first


@pytest.mark.parametrize("impl", IMPLS)
def test_top_k_1_is_greedy(impl):
    model = ToyModel(30, seed=6, eos_ramp=0.3)
    greedy = generate(impl, GenerationOptions(max_new_tokens=10), model, 3, 30)
    sampled = generate(impl, GenerationOptions(max_new_tokens=10, do_sample=True, top_k=1, seed=1),
                       model, 3, 30)
    assert sampled == greedy


@pytest.mark.parametrize("impl", IMPLS)
def test_greedy_scores_and_streaming(impl):
    vocab = 10
    model = ToyModel(vocab, seed=8, eos_ramp=0.6)
    search = impl.make_search(GenerationOptions(max_new_tokens=9), 3, vocab, BOS, EOS)
    streamed = [[] for _ in range(3)]
    for s in iterate(search, model.step_fn(3)):
        for row, token in enumerate(s.emitted.tolist()):
            if token >= 0:
                streamed[row].append(token)
    for row, ((tokens, score),) in enumerate(search.results()):
        assert tokens == streamed[row] and len(tokens) <= 9
        prefix, want = (BOS,), 0.0
        for t in tokens + ([EOS] if len(tokens) < 9 else []):
            want += log_softmax(model.logits(row, prefix))[t]
            prefix += (t,)
        assert abs(score - want) < 1e-9


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("beams", [1, 3])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_logits_raise_and_leave_search_usable(impl, beams, bad):
    model = ToyModel(10, seed=1)
    search = impl.make_search(GenerationOptions(max_new_tokens=5, num_beams=beams), 2, 10, BOS, EOS)
    step_fn = model.step_fn(2)
    logits = step_fn(search.tokens, search.parents, 0, None)
    poisoned = logits.copy()
    poisoned[1, 0, 4] = bad
    with pytest.raises(ValueError, match="step 0.*batch row 1"):
        search.advance(poisoned)
    logits[0, 0, 3] = -np.inf   # -inf is a mask, allowed
    search.advance(logits)
    assert search.step == 1


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("beams", [1, 2])
def test_everything_masked_raises(impl, beams):
    options = GenerationOptions(max_new_tokens=5, num_beams=beams, banned_token_ids=[0, 2, 3],
                                min_new_tokens=2)
    search = impl.make_search(options, 1, 4, BOS, EOS)
    with pytest.raises(ValueError, match="every token is masked at step 0"):
        search.advance(np.zeros((1, 1, 4), np.float32))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("logits", [np.zeros((2, 1, 5), np.float64), np.zeros((2, 2, 5), np.float32),
                                    np.zeros((1, 1, 5), np.float32), np.zeros((2, 1, 6), np.float32),
                                    np.zeros((2, 1, 10), np.float32)[:, :, ::2], [[[0.0] * 5]] * 2])
def test_bad_logits_array_raises(impl, logits):
    search = impl.make_search(GenerationOptions(max_new_tokens=3), 2, 5, BOS, EOS)
    with pytest.raises(ValueError, match="logits"):
        search.advance(logits)


@pytest.mark.parametrize("impl", IMPLS)
def test_advance_after_done_raises(impl):
    search = impl.make_search(GenerationOptions(max_new_tokens=1), 1, 5, BOS, EOS)
    search.advance(np.zeros((1, 1, 5), np.float32))
    assert search.done and search.tokens.shape == (0, 1)
    with pytest.raises(ValueError, match="done"):
        search.advance(np.zeros((0, 1, 5), np.float32))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kw", [dict(batch_size=0), dict(batch_size=1.0), dict(bos_id=9),
                                dict(bos_id=[0]), dict(eos_ids=[]), dict(eos_ids=12),
                                dict(options=dict(num_beams=2))])
def test_make_search_rejects_bad_arguments(impl, kw):
    args = dict(options=GenerationOptions(), batch_size=2, vocab_size=9, bos_id=0, eos_ids=1)
    args.update(kw)
    with pytest.raises(ValueError):
        impl.make_search(**args)


@pytest.mark.parametrize("impl", IMPLS)
def test_initial_state_and_beam_widening(impl):
    search = impl.make_search(GenerationOptions(num_beams=4, max_new_tokens=5), 3, 11, 7, 1)
    assert search.tokens.tolist() == [[7]] * 3 and search.parents.tolist() == [[0]] * 3
    assert search.kept.tolist() == search.active_rows.tolist() == [0, 1, 2] and search.step == 0
    search.advance(ToyModel(11).step_fn(3)(search.tokens, search.parents, 0, None))
    assert search.tokens.shape == search.parents.shape == (3, 4)
    assert search.tokens.dtype == search.parents.dtype == np.int64
    assert (search.parents == 0).all()


def test_pure_python_switch():
    code = "import ltg_engine.search as s; print(s.COMPILED)"
    env = dict(os.environ, LTG_PURE_PYTHON="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("impl", IMPLS)
def test_default_stop_rule_does_not_run_to_max_new_tokens(impl):
    """early_stopping=False is HF's heuristic: it stops once the best live beam, scored at
    its current length, cannot beat the worst finished one; "never" keeps the exact bound,
    which with length_penalty > 0 may search up to max_new_tokens."""
    model = ToyModel(4, seed=5, scale=4.0, eos_ramp=1.0)
    steps = {}
    for mode in (False, "never"):
        options = GenerationOptions(max_new_tokens=400, num_beams=2, length_penalty=1.0, early_stopping=mode)
        search = impl.make_search(options, 1, 4, BOS, EOS)
        for _ in iterate(search, model.step_fn(1)):
            pass
        steps[mode] = search.step
        assert search.results()[0]
    assert steps[False] < 40 and steps[False] < steps["never"]
