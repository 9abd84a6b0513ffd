"""Compiled core == pure-Python reference: same trajectories, tokens and scores.

Random toy models and options drawn by hypothesis; every processor alone and combined.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ltg_engine import search_ref
from ltg_engine.options import GenerationOptions
from test_search_toy import ToyModel

try:
    from ltg_engine import _search
except ImportError:   # pragma: no cover - CI builds it
    _search = None

pytestmark = pytest.mark.skipif(_search is None, reason="compiled extension ltg_engine._search not built "
                                "(python setup.py build_ext --inplace)")

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def trajectory(module, options, model, batch, vocab, bos=0, eos=1):
    """Every step's public state, then the results, or the error message."""
    search = module.make_search(options, batch, vocab, bos, eos)
    step_fn, steps = model.step_fn(batch), []
    try:
        while not search.done:
            kept = search.kept if search.compacted else None
            search.advance(step_fn(search.tokens, search.parents, search.step, kept))
            state = [search.tokens.tolist(), search.parents.tolist(), search.active_rows.tolist(),
                     search.kept.tolist(), search.step, search.done]
            if options.num_beams == 1:
                state.append(search.emitted.tolist())
            steps.append(state)
    except ValueError as error:
        return steps, str(error)
    return steps, search.results()


def assert_same(options, model_kw, batch, vocab):
    ref = trajectory(search_ref, options, ToyModel(vocab, **model_kw), batch, vocab)
    com = trajectory(_search, options, ToyModel(vocab, **model_kw), batch, vocab)
    assert ref[0] == com[0]
    if isinstance(ref[1], str) or isinstance(com[1], str):
        assert ref[1] == com[1]
        return
    assert len(ref[1]) == len(com[1]) == batch
    for hyps_ref, hyps_com in zip(ref[1], com[1]):
        assert [t for t, _ in hyps_ref] == [t for t, _ in hyps_com]
        for (_, a), (_, b) in zip(hyps_ref, hyps_com):
            assert abs(a - b) <= 1e-9


model_kw = st.fixed_dictionaries({
    "seed": st.integers(0, 10_000),
    "scale": st.sampled_from([0.5, 3.0, 10.0]),
    "eos_ramp": st.sampled_from([0.0, 0.5, 2.0]),
    "masked_frac": st.sampled_from([0.0, 0.0, 0.3]),
})
processors = st.fixed_dictionaries({}, optional={
    "repetition_penalty": st.sampled_from([0.7, 1.3, 2.0]),
    "no_repeat_ngram_size": st.integers(1, 3),
    "min_new_tokens": st.integers(0, 4),
    "banned_token_ids": st.lists(st.integers(2, 7), max_size=3),
    "eos_token_id": st.sampled_from([1, [1, 3]]),
})
sizes = dict(batch=st.integers(1, 4), vocab=st.integers(8, 40), max_new=st.integers(4, 10))


def _options(max_new, proc, **kw):
    return GenerationOptions(max_new_tokens=max_new, **kw).replace(
        **{**proc, "min_new_tokens": min(proc.get("min_new_tokens", 0), max_new)})


@SETTINGS
@given(model=model_kw, proc=processors, **sizes)
def test_greedy_matches_reference(model, proc, batch, vocab, max_new):
    assert_same(_options(max_new, proc), model, batch, vocab)


@SETTINGS
@given(model=model_kw, proc=processors, seed=st.integers(0, 2 ** 64 - 1),
       temperature=st.sampled_from([0.3, 1.0, 1.7]), top_k=st.sampled_from([0, 1, 3, 50, 100]),
       top_p=st.sampled_from([1.0, 0.9, 0.5, 0.05]), **sizes)
def test_sampling_matches_reference(model, proc, seed, temperature, top_k, top_p, batch, vocab, max_new):
    options = _options(max_new, proc, do_sample=True, seed=seed, temperature=temperature,
                       top_k=top_k, top_p=top_p)
    assert_same(options, model, batch, vocab)


@SETTINGS
@given(model=model_kw, proc=processors, beams=st.integers(2, 6), n_ret=st.integers(1, 6),
       length_penalty=st.sampled_from([1.0, 0.0, -0.5, 2.0]), early_stopping=st.sampled_from([False, True, "never"]), **sizes)
def test_beam_matches_reference(model, proc, beams, n_ret, length_penalty, early_stopping,
                                batch, vocab, max_new):
    options = _options(max_new, proc, num_beams=beams, num_return_sequences=min(n_ret, beams),
                       length_penalty=length_penalty, early_stopping=early_stopping)
    assert_same(options, model, batch, vocab)


@pytest.mark.parametrize("vocab", [1000, 5000])
@pytest.mark.parametrize("kw", [dict(), dict(num_beams=4, num_return_sequences=2),
                                dict(do_sample=True, seed=7, top_k=0, top_p=0.95),
                                dict(do_sample=True, seed=7, top_k=200, temperature=0.8)])
def test_larger_vocab_matches_reference(vocab, kw):
    assert_same(GenerationOptions(max_new_tokens=6, repetition_penalty=1.2, **kw),
                dict(seed=3, scale=2.0, eos_ramp=0.5), 3, vocab)
