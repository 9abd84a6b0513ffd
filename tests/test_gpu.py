"""The GPU path: IOBinding step runner (ltg_engine/iobinding.py) and the CUDA provider fallback.

The IOBinding runner is forced on CPU here and must give exactly the plain
runner's tokens and scores; that part runs everywhere. The CUDA part skips,
with a reason, where onnxruntime has no CUDAExecutionProvider.
"""
from __future__ import annotations

import warnings

import numpy as np
import onnxruntime as ort
import pytest

from ltg_engine import Generator
from ltg_engine.iobinding import IOBindingStepRunner, session_device

HAS_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()
SOURCES = ["a b c d e f", "g h", "a a b b c c d d e e f f g g h", "k"]   # rows finish at different steps
OPTIONS = [
    dict(),
    dict(num_beams=4),
    dict(num_beams=3, num_return_sequences=2),
    dict(do_sample=True, seed=11, top_k=5, temperature=1.3),
    dict(repetition_penalty=1.3, no_repeat_ngram_size=2),
]


@pytest.fixture(scope="module")
def plain(lstm_model_dir):
    return Generator.load(lstm_model_dir, threads=1)


@pytest.fixture(scope="module")
def bound(lstm_model_dir):
    return Generator.load(lstm_model_dir, threads=1, io_binding=True)


def test_plain_path_is_default_on_cpu(plain):
    assert plain.io_binding is False
    assert session_device(plain.decoder) == ("cpu", 0)


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "greedy")
def test_iobinding_on_cpu_equals_plain(plain, bound, options):
    want = plain.generate(SOURCES, max_new_tokens=40, **options)
    got = bound.generate(SOURCES, max_new_tokens=40, **options)
    for w, g in zip(want, got):
        assert [h.token_ids for h in g.hypotheses] == [h.token_ids for h in w.hypotheses]
        np.testing.assert_allclose([h.score for h in g.hypotheses], [h.score for h in w.hypotheses], rtol=1e-5)


def test_iobinding_compacts_when_rows_finish(bound, monkeypatch):
    runners = []
    original = IOBindingStepRunner.__init__

    def spy(self, *args, **kwargs):
        original(self, *args, **kwargs)
        runners.append(self)

    monkeypatch.setattr(IOBindingStepRunner, "__init__", spy)
    bound.generate(SOURCES, max_new_tokens=40)
    assert len(runners) == 1 and runners[0].compactions >= 1


def test_iobinding_stream_equals_generate(bound):
    text = "c a f b e"
    assert "".join(bound.stream(text, max_new_tokens=30)) == bound.generate(text, max_new_tokens=30).text


def test_cuda_request_without_cuda_falls_back_with_warning(lstm_model_dir):
    if HAS_CUDA:
        pytest.skip("CUDAExecutionProvider is available: no fallback to test")
    with pytest.warns(RuntimeWarning, match="CUDAExecutionProvider.*falling back to CPUExecutionProvider"):
        gen = Generator.load(lstm_model_dir, providers=["CUDAExecutionProvider"], threads=1)
    assert gen.providers == ["CPUExecutionProvider"]
    assert gen.io_binding is False                       # CPU sessions keep the plain runner
    assert gen.generate("a b c", max_new_tokens=10).token_ids


@pytest.mark.skipif(not HAS_CUDA, reason="onnxruntime has no CUDAExecutionProvider here (needs onnxruntime-gpu and a GPU)")
def test_cuda_iobinding_matches_cpu(lstm_model_dir, plain):
    with warnings.catch_warnings():
        warnings.simplefilter("error")                   # no fallback may happen
        gpu = Generator.load(lstm_model_dir, providers=["CUDAExecutionProvider"])
    assert gpu.providers[0] == "CUDAExecutionProvider"
    assert gpu.io_binding is True
    assert session_device(gpu.decoder)[0] == "cuda"
    want = plain.generate(SOURCES, max_new_tokens=40)
    got = gpu.generate(SOURCES, max_new_tokens=40)
    # GPU float math differs in the last bits; greedy tokens of a confident model must agree
    assert [g.token_ids for g in got] == [w.token_ids for w in want]
    beams = gpu.generate(SOURCES, max_new_tokens=40, num_beams=4)
    assert all(b.token_ids for b in beams)
