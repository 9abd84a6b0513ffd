"""Fuzzing the compiled search core and Generator.generate's options with hypothesis.

Short CI profile by default (a few hundred examples per test, seconds). A long
run: LTG_FUZZ_EXAMPLES=50000 pytest tests/test_fuzz.py --hypothesis-show-statistics

Contract under fuzz: whatever is thrown at make_search(...) / advance(logits),
the process survives and the only exceptions are ValueError/TypeError; the
compiled core and the pure-Python reference agree on every outcome (same
exception class, or the same tokens), and a rejected advance() leaves the
search usable.
"""
from __future__ import annotations

import math
import os

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from ltg_engine import search_ref  # noqa: E402
from ltg_engine.options import GenerationOptions  # noqa: E402

_search = pytest.importorskip("ltg_engine._search", reason="compiled search core not built")

EXAMPLES = int(os.environ.get("LTG_FUZZ_EXAMPLES", "0"))
FUZZ = settings(max_examples=EXAMPLES or 300, deadline=None, derandomize=not EXAMPLES,
                suppress_health_check=list(HealthCheck))
FUZZ_MODEL = settings(max_examples=EXAMPLES or 60, deadline=None, derandomize=not EXAMPLES,
                      suppress_health_check=list(HealthCheck))
ALLOWED = (ValueError, TypeError)

SPECIAL = [math.nan, math.inf, -math.inf, 3.4e38, -3.4e38, 1e-45, -1e-45, 1e-38, 0.0, -0.0, 88.7, -103.0]
ODD_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70),
                        st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=3),
                        st.sampled_from([[], [1], [1.5], (2, 3), {"a": 1}, b"x", np.int64(3),
                                         np.float32(0.5), np.array([1, 2]), range(3)]))


# ------------------------------------------------------------------ strategies
@st.composite
def valid_options(draw, vocab):
    beams = draw(st.integers(1, 4))
    max_new = draw(st.integers(1, 12))
    opts = dict(max_new_tokens=max_new, num_beams=beams,
                min_new_tokens=draw(st.integers(0, max_new)),
                num_return_sequences=draw(st.integers(1, beams)),
                repetition_penalty=draw(st.sampled_from([1.0, 1.3, 0.5, 1e6, 1e-6])),
                no_repeat_ngram_size=draw(st.integers(0, 3)),
                length_penalty=draw(st.sampled_from([1.0, 0.0, -1.0, 2.5])),
                early_stopping=draw(st.sampled_from([False, True, "never"])),
                banned_token_ids=draw(st.lists(st.integers(0, vocab - 1), max_size=3)),
                seed=draw(st.integers(0, 2 ** 64 - 1)))
    if beams == 1 and draw(st.booleans()):
        opts.update(do_sample=True, temperature=draw(st.sampled_from([1.0, 0.5, 2.0, 1e-6, 1e3])),
                    top_k=draw(st.sampled_from([0, 1, 3, 100])), top_p=draw(st.sampled_from([1.0, 0.5, 1e-9])))
    if draw(st.booleans()):
        opts["eos_token_id"] = draw(st.one_of(st.integers(0, vocab - 1),
                                              st.lists(st.integers(0, vocab - 1), min_size=1, max_size=3)))
    return GenerationOptions(**opts)


@st.composite
def logits_for(draw, search, vocab):
    """Mostly well-formed logits for search's current step, sometimes broken in one way."""
    n, k = search.tokens.shape
    shape = [n, k, vocab]
    dtype = np.float32
    layout = "c"
    fault = draw(st.sampled_from(["none"] * 6 + ["shape", "dtype", "layout", "kind"]))
    if fault == "shape":
        axis = draw(st.integers(0, 3))
        if axis == 3:
            shape = draw(st.sampled_from([[n * k * vocab], [n, k * vocab], [n, k, vocab, 1], []]))
        else:
            shape[axis] = max(0, shape[axis] + draw(st.sampled_from([-1, 1, 2])))
    elif fault == "dtype":
        dtype = draw(st.sampled_from([np.float64, np.float16, np.int32, np.int64, np.bool_, object,
                                      np.dtype(">f4"), np.complex64]))
    elif fault == "layout":
        layout = draw(st.sampled_from(["strided", "fortran", "reversed", "readonly", "list"]))
    mode = draw(st.sampled_from(["normal", "normal", "masked", "special", "huge", "tiny"]))
    size = int(np.prod(shape)) if shape else 1
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    if mode == "normal":
        x = rng.standard_normal(size) * draw(st.sampled_from([1.0, 10.0, 1e4]))
    elif mode == "masked":
        x = rng.standard_normal(size)
        x[rng.random(size) < draw(st.sampled_from([0.5, 0.9, 1.0]))] = -np.inf
    elif mode == "special":
        x = rng.choice(np.array(SPECIAL), size)
    elif mode == "huge":
        x = rng.choice(np.array([3.4e38, -3.4e38, 3e38, 1e38, -np.inf]), size)
    else:
        x = rng.choice(np.array([1e-45, -1e-45, 1e-40, 0.0, -0.0]), size)
    with np.errstate(all="ignore"):
        arr = x.reshape(shape).astype(np.float32)
    if fault == "kind" and draw(st.booleans()):
        return draw(st.sampled_from([None, 1.0, "logits", [[[0.0]]]]))
    with np.errstate(all="ignore"):
        arr = arr.astype(dtype) if dtype is not object else arr.astype(object)
    if layout == "strided" and arr.ndim:
        wide = np.repeat(arr, 2, axis=-1)
        arr = wide[..., ::2]
    elif layout == "fortran":
        arr = np.asfortranarray(arr)
    elif layout == "reversed" and arr.ndim:
        arr = arr[..., ::-1]
    elif layout == "readonly":
        arr.setflags(write=False)
    elif layout == "list":
        arr = arr.tolist()
    return arr


def _outcome(fn):
    """('ok', None) or ('error', exception class); anything but ValueError/TypeError propagates."""
    try:
        fn()
        return "ok", None
    except ALLOWED as e:
        return "error", type(e)


# ------------------------------------------------------------------ compiled core
@FUZZ
@given(data=st.data(), vocab=st.integers(1, 40), batch=st.integers(1, 3))
def test_fuzz_advance_matches_reference_and_never_crashes(data, vocab, batch):
    eos = data.draw(st.integers(0, vocab - 1), label="eos")
    opts = data.draw(valid_options(vocab), label="options")
    compiled = _search.make_search(opts, batch, vocab, 0, [eos])
    reference = search_ref.make_search(opts, batch, vocab, 0, [eos])
    for _ in range(data.draw(st.integers(1, 16), label="calls")):
        if compiled.done:
            break
        assert np.array_equal(compiled.tokens, reference.tokens)
        assert np.array_equal(compiled.parents, reference.parents)
        logits = data.draw(logits_for(compiled, vocab), label="logits")
        got = _outcome(lambda: compiled.advance(logits))
        want = _outcome(lambda: reference.advance(logits))
        assert got == want, f"compiled {got} != reference {want}"
        hypothesis.event(f"advance {got[0]}" + (f" {got[1].__name__}" if got[1] else ""))
        assert compiled.step == reference.step and compiled.done == reference.done
    assert compiled.results() == reference.results()


@FUZZ
@given(data=st.data())
def test_fuzz_advance_after_done_and_wrong_k(data):
    vocab = data.draw(st.integers(2, 10))
    opts = GenerationOptions(max_new_tokens=2, num_beams=data.draw(st.integers(1, 3)))
    search = _search.make_search(opts, 1, vocab, 0, [1])
    while not search.done:
        n, k = search.tokens.shape
        bad_k = data.draw(st.sampled_from([kk for kk in (1, 2, 3, 5) if kk != k]))
        with pytest.raises(ValueError, match="shape"):
            search.advance(np.zeros((n, bad_k, vocab), np.float32))
        search.advance(np.zeros((n, k, vocab), np.float32))
    with pytest.raises(ValueError, match="done"):
        search.advance(np.zeros((1, 1, vocab), np.float32))


@FUZZ
@given(options=st.dictionaries(st.sampled_from(GenerationOptions.option_names()), ODD_SCALARS, max_size=4),
       batch=ODD_SCALARS | st.integers(-2, 4), vocab=ODD_SCALARS | st.integers(-2, 50),
       bos=ODD_SCALARS | st.integers(-2, 50), eos=ODD_SCALARS | st.lists(st.integers(-5, 60), max_size=3))
def test_fuzz_make_search_arguments(options, batch, vocab, bos, eos):
    """Odd option values, batch sizes, vocab sizes and ids: a search or ValueError/TypeError."""
    if isinstance(options.get("max_new_tokens"), int) and options["max_new_tokens"] > 4096:
        options["max_new_tokens"] = 4096   # the core allocates up front; Generator bounds this
    if isinstance(vocab, int) and vocab > 10 ** 6:
        vocab = 10 ** 6
    if isinstance(options.get("num_beams"), int) and options["num_beams"] > 64:
        options["num_beams"] = 64
    if isinstance(batch, int) and batch > 64:
        batch = 64

    def build():
        opts = GenerationOptions(**options)
        search = _search.make_search(opts, batch, vocab, bos, eos)
        n, k = search.tokens.shape
        search.advance(np.zeros((n, k, int(vocab)), np.float32))

    hypothesis.event("make_search " + _outcome(build)[0])


# ------------------------------------------------------------------ Generator.generate options
@pytest.fixture(scope="module")
def gen(lstm_model_dir):
    from ltg_engine import Generator

    return Generator.load(lstm_model_dir, threads=1)


def option_value(name: str, vocab: int):
    """Half the time a plausible value for `name`, else anything odd."""
    plausible = {
        "max_new_tokens": st.integers(1, 64), "min_new_tokens": st.integers(0, 8),
        "num_beams": st.integers(1, 4), "do_sample": st.booleans(), "temperature": st.floats(0.05, 3),
        "top_k": st.integers(0, 100), "top_p": st.floats(0.01, 1), "repetition_penalty": st.floats(0.5, 3),
        "no_repeat_ngram_size": st.integers(0, 4), "length_penalty": st.floats(-1, 2),
        "early_stopping": st.sampled_from([False, True, "never", "always", 1]), "num_return_sequences": st.integers(1, 4),
        "eos_token_id": st.integers(0, vocab - 1) | st.lists(st.integers(0, vocab - 1), min_size=1, max_size=3),
        "banned_token_ids": st.lists(st.integers(0, vocab - 1), max_size=3),
        "seed": st.integers(0, 2 ** 64 - 1),
    }.get(name, st.none())
    odd = st.one_of(ODD_SCALARS, st.integers(-3, 2 * vocab), st.floats(-2, 3),
                    st.lists(st.integers(-3, 2 * vocab), max_size=4))
    return st.one_of(plausible, odd)


@FUZZ_MODEL
@given(data=st.data())
def test_fuzz_generate_options(gen, data):
    from ltg_engine.generator import GenerationResult, GenerationTimeout

    names = data.draw(st.lists(st.sampled_from(list(GenerationOptions.option_names()) + ["bogus_option"]),
                               max_size=6, unique=True), label="names")
    options = {name: data.draw(option_value(name, gen.vocab_size), label=name) for name in names}
    if isinstance(options.get("max_new_tokens"), int) and options["max_new_tokens"] > 2000:
        options["max_new_tokens"] = 2000
    texts = data.draw(st.sampled_from(["a b c", ["a b", "c d e f"], "你好 🙂"]), label="texts")
    try:
        result = gen.generate(texts, timeout=2.0, **options)
    except (ValueError, TypeError, GenerationTimeout) as e:
        hypothesis.event(f"generate {type(e).__name__}")
        return
    hypothesis.event("generate ok")
    for r in (result if isinstance(result, list) else [result]):
        assert isinstance(r, GenerationResult)
        assert all(0 <= t < gen.vocab_size for t in r.token_ids)
        assert not math.isnan(r.score)
