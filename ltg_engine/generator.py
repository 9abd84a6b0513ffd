"""The runtime engine: Generator.load(MODEL_DIR).generate(...) / .stream(...).

Per call: tokenize, one encoder run for the whole batch, then the search core
(ltg_engine.search: Cython when built) asks for one decoder-step run per
token. Encoder memory is computed once and fed to every step as the same
arrays; it is only compacted (np.take on the batch axis) when rows finish.
Beam reordering happens inside the step graph (`parents`), so states never
round-trip through Python. Never imports torch.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, List, Optional, Sequence, Union

import numpy as np

from ltg_engine import search as search_core
from ltg_engine.model_dir import ModelDir, load_model_dir
from ltg_engine.options import GenerationOptions
from ltg_engine.sessions import SessionConfig, check_session, make_session
from ltg_engine.tokenizer import IncrementalDecoder, Tokenizer

MEMORY, STATE, NEXT_STATE = "memory.", "state.", "next_state."
# Search buffers (token histories; beam: 3 per hypothesis) are allocated up front
# for max_new_tokens; a request needing more than this is refused before any work.
MAX_SEARCH_BUFFER_BYTES = 1 << 30
# Every step runs num_beams hypotheses per row through the decoder; far more is a typo, not a search.
MAX_NUM_BEAMS = 256


class GenerationCancelled(RuntimeError):
    """generate()/stream() stopped because its `cancel` event was set."""

    def __init__(self, steps: int):
        super().__init__(f"generation cancelled after {steps} steps")
        self.steps = steps


class GenerationTimeout(TimeoutError):
    """generate()/stream() ran past its `timeout`; checked before encoding and after every step."""

    def __init__(self, timeout: float, steps: int):
        super().__init__(f"generation exceeded timeout={timeout}s after {steps} steps")
        self.timeout = timeout
        self.steps = steps


@dataclass
class Hypothesis:
    text: str
    token_ids: List[int]
    score: float


@dataclass
class GenerationResult:
    """Best hypothesis first-class; all n-best in `hypotheses` (best first)."""

    text: str
    token_ids: List[int]
    score: float
    hypotheses: List[Hypothesis] = field(default_factory=list)
    source_tokens: int = 0
    truncated: bool = False


class StepRunner:
    """The step function the search core calls: one onnxruntime run per step.

    Holds the encoder memory and the decoder state between steps. Memory
    arrays are the encoder's outputs, reused as-is on every step.
    """

    def __init__(self, session, contract: dict, memory: dict, state: dict, src_len: np.ndarray):
        self.session = session
        self.state_names = [STATE + n for n in contract["state"]]
        self.output_names = ["logits"] + [NEXT_STATE + n for n in contract["state"]]
        self.memory = memory                              # name -> (B, S, ...)
        self.state = {n: v[:, None] for n, v in state.items()}  # (B, 1, ...) view, no copy
        self.src_len = src_len
        self.ort_seconds = 0.0

    def compact(self, kept: np.ndarray) -> None:
        self.memory = {n: np.ascontiguousarray(v.take(kept, axis=0)) for n, v in self.memory.items()}
        self.state = {n: v.take(kept, axis=0) for n, v in self.state.items()}
        self.src_len = self.src_len.take(kept)

    def __call__(self, tokens, parents, step, kept):
        if kept is not None:
            self.compact(kept)
        feeds = {"tokens": tokens, "parents": parents, "step": np.array(step, dtype=np.int64),
                 "src_len": self.src_len}
        feeds.update(self.state)
        feeds.update(self.memory)
        t0 = time.perf_counter()
        outs = self.session.run(self.output_names, feeds)
        self.ort_seconds += time.perf_counter() - t0
        self.state = dict(zip(self.state_names, outs[1:]))
        return outs[0]


class Generator:
    """A loaded model directory: tokenizer, encoder session, decoder-step session."""

    def __init__(self, model_dir: ModelDir, encoder, decoder, tokenizer: Tokenizer, session_config: SessionConfig):
        self.model_dir = model_dir
        self.encoder = encoder
        self.decoder = decoder
        self.tokenizer = tokenizer
        self.session_config = session_config
        cfg = model_dir.config
        self.contract = model_dir.contract
        self.vocab_size = model_dir.vocab_size
        self.bos_id = int(cfg["special_ids"]["bos"])
        self.eos_id = int(cfg["special_ids"]["eos"])
        self.pad_id = int(cfg["special_ids"]["pad"])
        self.max_source_length = model_dir.max_source_length
        self.defaults = GenerationOptions.from_kwargs(**cfg.get("generation", {}))
        self._local = threading.local()  # last_stats is per thread: one Generator serves many
        self.io_binding = False

    # ------------------------------------------------------------ loading
    @classmethod
    def load(cls, model_dir: Optional[Union[str, os.PathLike]] = None, providers: Optional[Sequence[str]] = None,
             threads: Optional[int] = None, precision: str = "float32", io_binding: Optional[bool] = None,
             **session_kwargs) -> "Generator":
        """Load MODEL_DIR (default: the bundled model) after checking every file's hash.

        providers: onnxruntime execution providers, e.g. ["CUDAExecutionProvider"]
        (falls back to CPU with a warning when unavailable). threads: intra-op
        threads (None: onnxruntime's default, the physical core count).
        precision: "float32" or "int8" (after `ltg quantize`).
        io_binding: keep memory and states on the device between steps
        (ltg_engine.iobinding); None: on when the first provider is CUDA.
        session_kwargs: spinning, optimization, optimized_model_dir (see
        sessions.SessionConfig and docs/deployment.md).
        """
        if model_dir is None:
            from ltg_engine.bundled import bundled_model_dir

            model_dir = bundled_model_dir()
        md = load_model_dir(model_dir)
        session_config = SessionConfig.create(providers=providers, threads=threads, **session_kwargs)
        tokenizer = Tokenizer(md.file("tokenizer.model"))
        if tokenizer.vocab_size != md.vocab_size:
            raise ValueError(f"{md.file('tokenizer.model')} has {tokenizer.vocab_size} pieces, "
                             f"config.json says vocab_size {md.vocab_size}")
        encoder, decoder = (make_session(md.graph_file(g, precision), session_config, md.graph_sha256(g, precision))
                            for g in ("encoder", "decoder_step"))
        check_session(encoder, md.contract["encoder"], md.graph_file("encoder", precision))
        check_session(decoder, md.contract["decoder_step"], md.graph_file("decoder_step", precision))
        gen = cls(md, encoder, decoder, tokenizer, session_config)
        gen.io_binding = (decoder.get_providers()[0] == "CUDAExecutionProvider") if io_binding is None else bool(io_binding)
        return gen

    @property
    def last_stats(self) -> dict:
        """Timings of this thread's last completed generate() (each thread sees its own)."""
        return getattr(self._local, "stats", {})

    @last_stats.setter
    def last_stats(self, stats: dict) -> None:
        self._local.stats = stats

    @property
    def providers(self) -> List[str]:
        return self.decoder.get_providers()

    # ------------------------------------------------------------ inputs
    def encode_sources(self, texts: Sequence[str], truncate: bool):
        """Texts -> padded ids (B, S), lengths (B,), truncated flags."""
        ids, flags = [], []
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"input {i} must be str, got {type(text).__name__}")
            if not text.strip():
                raise ValueError(f"input {i} is empty or whitespace only; give the model some context")
            try:
                toks = self.tokenizer.encode(text)
            except ValueError as e:  # e.g. a lone surrogate, which is not encodable text
                raise ValueError(f"input {i}: {e}") from None
            limit = self.max_source_length
            cut = limit is not None and len(toks) > limit
            if cut and not truncate:
                raise ValueError(
                    f"input {i} has {len(toks)} tokens; this model accepts at most {limit}. "
                    f"Pass truncate=True (--truncate) to keep the last {limit} tokens")
            ids.append(toks[-limit:] if cut else toks)
            flags.append(cut)
        return (*self._pad(ids), flags)

    def _pad(self, rows) -> tuple:
        """Token id rows -> padded ids (B, S) int64, lengths (B,) int64."""
        src = np.full((len(rows), max(len(row) for row in rows)), self.pad_id, dtype=np.int64)
        for r, row in enumerate(rows):
            src[r, : len(row)] = row
        return src, np.array([len(row) for row in rows], dtype=np.int64)

    def _options(self, options: dict) -> GenerationOptions:
        opts = self.defaults.replace(**options) if options else self.defaults
        opts = opts.validate(self.vocab_size)
        return opts

    # ------------------------------------------------------------ running
    def _start(self, opts: GenerationOptions, source, stop):
        """Encoder run, search and step runner for validated options and an encoded source."""
        src, src_len, _ = source
        stop.check(0)
        t0 = time.perf_counter()
        if self.io_binding:
            from ltg_engine.iobinding import encode_on_device, session_device

            device = session_device(self.decoder)
            memory, state = encode_on_device(self.encoder, self.contract, src, src_len, device)
        else:
            outs = self.encoder.run(None, {"src_ids": src, "src_len": src_len})
            n_mem = len(self.contract["memory"])
            memory = {MEMORY + n: v for n, v in zip(self.contract["memory"], outs[:n_mem])}
            state = {STATE + n: v for n, v in zip(self.contract["state"], outs[n_mem:])}
        encode_s = time.perf_counter() - t0
        eos = opts.eos_token_id if opts.eos_token_id is not None else self.eos_id
        eos_ids = list(eos) if isinstance(eos, (list, tuple)) else [int(eos)]
        search = search_core.make_search(opts, len(src_len), self.vocab_size, self.bos_id, eos_ids)
        if self.io_binding:
            from ltg_engine.iobinding import IOBindingStepRunner

            runner = IOBindingStepRunner(self.decoder, self.contract, memory, state, src_len, device)
        else:
            runner = StepRunner(self.decoder, self.contract, memory, state, src_len)
        return search, runner, encode_s

    def generate(self, inputs: Union[str, Sequence[str]], *, truncate: bool = False,
                 timeout: Optional[float] = None, on_step: Optional[Callable] = None,
                 cancel: Optional[Union[threading.Event, Callable[[], bool]]] = None, **options):
        """Generate a continuation for one text (-> GenerationResult) or a list (-> list).

        options: GenerationOptions names (max_new_tokens, num_beams, do_sample,
        temperature, top_k, top_p, repetition_penalty, no_repeat_ngram_size,
        length_penalty, early_stopping, num_return_sequences, min_new_tokens,
        eos_token_id, banned_token_ids, seed). truncate: keep the last
        max_source_length tokens of a longer input instead of raising.
        timeout: seconds; raises GenerationTimeout (a TimeoutError) when exceeded
        (checked before encoding and after every step).
        on_step: called as on_step(search) after every decoder step (benchmarks
        timestamp tokens with it; search.step is the number of steps so far).
        cancel: a threading.Event (or a no-argument callable); once it is set,
        GenerationCancelled is raised at the next step.
        Thread-safe: one Generator may serve many threads at once.
        """
        single = isinstance(inputs, str)
        if isinstance(inputs, (bytes, bytearray, memoryview)) or not isinstance(inputs, (str, Iterable)):
            raise TypeError(f"inputs must be a str or a sequence of str, got {type(inputs).__name__}"
                            + ("; decode bytes first, e.g. data.decode('utf-8', errors='replace')"
                               if isinstance(inputs, (bytes, bytearray, memoryview)) else ""))
        texts = [inputs] if single else list(inputs)
        if not texts:
            return []
        results = self._generate(texts, truncate, timeout, on_step, options, cancel=cancel)
        return results[0] if single else results

    def generate_ids(self, source_ids: Sequence[Sequence[int]], *, timeout: Optional[float] = None,
                     on_step: Optional[Callable] = None, cancel=None, **options) -> List[GenerationResult]:
        """generate() on token ids instead of texts: the tokenizer is bypassed.

        For benchmarks and tests that need sources of exactly N tokens (random
        ids do not survive a decode/encode round trip). Ids must lie in
        [0, vocab_size); max_source_length is not applied.
        """
        ids = [np.asarray(row, dtype=np.int64).reshape(-1) for row in source_ids]
        if not ids or any(len(row) == 0 for row in ids):
            raise ValueError("generate_ids needs at least one non-empty row of token ids")
        if any(row.min() < 0 or row.max() >= self.vocab_size for row in ids):
            raise ValueError(f"token ids must lie in [0, {self.vocab_size})")
        source = (*self._pad(ids), [False] * len(ids))
        return self._generate(None, False, timeout, on_step, options, source, cancel)

    def _generate(self, texts, truncate, timeout, on_step, options, source=None,
                  cancel=None) -> List[GenerationResult]:
        t_start = time.perf_counter()
        stop = _Stop(timeout, cancel)
        opts = self._options(options)
        if source is None:
            source = self.encode_sources(texts, truncate)
        _, src_len, flags = source
        _check_search_size(opts, len(src_len))
        search, runner, encode_s = self._start(opts, source, stop)
        for _ in search_core.iterate(search, runner):
            stop.check(search.step)
            if on_step is not None:
                on_step(search)
        results = [self._result(hyps, int(n), cut) for hyps, n, cut in zip(search.results(), src_len, flags)]
        total = time.perf_counter() - t_start
        self._local.stats = {"seconds": total, "encoder_seconds": encode_s, "steps": search.step,
                           "decoder_seconds": runner.ort_seconds,
                           "overhead_share": max(0.0, 1 - (encode_s + runner.ort_seconds) / total)}
        return results

    def _result(self, hyps, n_src: int, truncated: bool) -> GenerationResult:
        hypotheses = [Hypothesis(self.tokenizer.decode(ids), list(ids), float(score)) for ids, score in hyps]
        best = hypotheses[0]
        return GenerationResult(best.text, best.token_ids, best.score, hypotheses, n_src, truncated)

    def stream(self, text: str, *, truncate: bool = False, timeout: Optional[float] = None,
               cancel: Optional[Union[threading.Event, Callable[[], bool]]] = None,
               **options) -> Iterator[str]:
        """Yield text pieces as tokens are produced (greedy and sampling).

        Joined, the pieces equal generate(text, **same options).text. A
        multi-byte character is never split across pieces. With num_beams > 1
        the best hypothesis is yielded once, at the end. Closing the iterator
        early stops generation and frees its state. Bad text, options, timeout
        or cancel raise here, at the call; the encoder runs at the first next().
        timeout/cancel: as in generate().
        """
        if not isinstance(text, str):
            raise TypeError(f"stream takes one str, got {type(text).__name__}")
        stop = _Stop(timeout, cancel)
        opts = self._options(options)
        source = self.encode_sources([text], truncate)
        _check_search_size(opts, 1)
        return self._stream(opts, source, stop)

    def _stream(self, opts, source, stop) -> Iterator[str]:
        search, runner, _ = self._start(opts, source, stop)
        try:
            if isinstance(search, search_core.BeamSearch):
                for _ in search_core.iterate(search, runner):
                    stop.check(search.step)
                yield self.tokenizer.decode(search.results()[0][0][0])
                return
            decoder = IncrementalDecoder(self.tokenizer)
            for _ in search_core.iterate(search, runner):
                stop.check(search.step)
                token = int(search.emitted[0])
                if token >= 0:
                    piece = decoder.push(token)
                    if piece:
                        yield piece
            tail = decoder.flush()
            if tail:
                yield tail
        finally:
            runner.memory = runner.state = None


def _deadline(timeout) -> Optional[float]:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    return time.perf_counter() + timeout


class _Stop:
    """The timeout and cancel checks of one call, run before encoding and after every step."""

    def __init__(self, timeout, cancel):
        self.timeout = timeout
        self.deadline = _deadline(timeout)
        if cancel is None or callable(cancel):
            self.cancelled = cancel
        elif callable(getattr(cancel, "is_set", None)):
            self.cancelled = cancel.is_set
        else:
            raise TypeError(f"cancel must be a threading.Event or a callable, got {type(cancel).__name__}")

    def check(self, steps: int) -> None:
        if self.cancelled is not None and self.cancelled():
            raise GenerationCancelled(steps)
        if self.deadline is not None and time.perf_counter() > self.deadline:
            raise GenerationTimeout(self.timeout, steps)


def _check_search_size(opts: GenerationOptions, batch: int) -> None:
    """Refuse requests whose up-front search buffers would not fit, before any allocation."""
    if opts.num_beams > MAX_NUM_BEAMS:
        raise ValueError(f"num_beams={opts.num_beams} is above this engine's limit {MAX_NUM_BEAMS}")
    per_hyp = 8 * opts.max_new_tokens * (3 if opts.num_beams > 1 else 1)  # int64 histories
    need = batch * opts.num_beams * per_hyp
    if need > MAX_SEARCH_BUFFER_BYTES:
        raise ValueError(
            f"max_new_tokens={opts.max_new_tokens} x num_beams={opts.num_beams} x batch {batch} needs "
            f"{need / 2**30:.1f} GiB of search buffers (limit {MAX_SEARCH_BUFFER_BYTES / 2**30:g} GiB); "
            "lower max_new_tokens, num_beams or the batch")
