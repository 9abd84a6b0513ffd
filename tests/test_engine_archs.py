"""Both architectures through the exported engine, against independent implementations.

The engine (compiled search core + onnxruntime graphs) must produce exactly what
the pure-Python reference search (ltg_engine.search_ref) produces when it drives
the PyTorch model's own step() — different code for the search and for the
model, same tokens. Covers greedy, beam with n-best, seeded sampling and the
processors, batches of different lengths, and streaming.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

from conftest import reversal_cases, train_tiny

torch = pytest.importorskip("torch")

TRANSFORMER_TINY = dict(d_model=64, layers=2, heads=4, ffn_dim=128, dropout=0.0, lr=3e-3, batch_size=32,
                        epochs=1, max_steps=200, vocab_size=300, context_len=128, continuation_len=128,
                        grad_clip=1.0, threads=1)

OPTION_SETS = [
    dict(max_new_tokens=30),
    dict(max_new_tokens=30, num_beams=4, num_return_sequences=2),
    dict(max_new_tokens=30, num_beams=3, length_penalty=0.6, early_stopping=True),
    dict(max_new_tokens=30, do_sample=True, top_k=20, top_p=0.9, temperature=0.8, seed=11),
    dict(max_new_tokens=30, repetition_penalty=1.3, no_repeat_ngram_size=2, min_new_tokens=5),
    dict(max_new_tokens=30, num_beams=2, no_repeat_ngram_size=3, banned_token_ids=(5, 6)),
]


@pytest.fixture(scope="session")
def transformer_run_dir(tmp_path_factory):
    return train_tiny(tmp_path_factory, "transformer", n_examples=4000, **TRANSFORMER_TINY)


@pytest.fixture(scope="session", params=["lstm", "transformer"])
def arch_pair(request, tmp_path_factory):
    """(run_dir, model_dir, torch model, Generator) for each architecture."""
    from ltg_engine import Generator
    from ltg_engine.export.onnx_export import export_model
    from ltg_engine.training.checkpoint import load_model

    run_dir = request.getfixturevalue(f"{request.param}_run_dir")
    if request.param == "lstm":
        model_dir = request.getfixturevalue("lstm_model_dir")
    else:
        out = tmp_path_factory.mktemp("transformer_model") / "model"
        model_dir = export_model(run_dir, os.fspath(out), report=lambda *_: None)
    model = load_model(run_dir)[0].eval()
    return run_dir, model_dir, model, Generator.load(model_dir, threads=1)


class TorchStep:
    """The search core's step_fn, computed by the PyTorch model instead of onnxruntime."""

    def __init__(self, model, src_ids, src_len):
        self.model = model
        with torch.no_grad():
            self.memory, state = model.encode(src_ids, src_len)
        self.state = {n: t.unsqueeze(1) for n, t in state.items()}
        self.src_len = src_len

    def __call__(self, tokens, parents, step, kept):
        if kept is not None:
            idx = torch.from_numpy(np.asarray(kept, dtype=np.int64))
            self.memory = {n: t.index_select(0, idx) for n, t in self.memory.items()}
            self.state = {n: t.index_select(0, idx) for n, t in self.state.items()}
            self.src_len = self.src_len.index_select(0, idx)
        with torch.no_grad():
            logits, self.state = self.model.step(torch.from_numpy(np.array(tokens)), torch.from_numpy(np.array(parents)),
                                                 torch.tensor(step), self.state, self.memory, self.src_len)
        return np.ascontiguousarray(logits.numpy(), dtype=np.float32)


def reference_generate(model, gen, texts, **options):
    """search_ref driven by model.step(): results as [(ids, score), ...] per text."""
    from ltg_engine import search_ref
    from ltg_engine.search import run

    src, src_len, _ = gen.encode_sources(texts, truncate=False)
    opts = gen.defaults.replace(**options).validate(gen.vocab_size)
    search = search_ref.make_search(opts, len(texts), gen.vocab_size, gen.bos_id, [gen.eos_id])
    return run(search, TorchStep(model, torch.from_numpy(src), torch.from_numpy(src_len)))


def sources(n, seed):
    # lengths vary, some longer than trained (24): rows finish at different steps
    return [src for src, _ in reversal_cases(n, 1, 40, seed=seed)]


@pytest.mark.parametrize("options", OPTION_SETS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_engine_equals_reference_search_on_pytorch(arch_pair, options):
    _, _, model, gen = arch_pair
    texts = sources(5, seed=21)
    want = reference_generate(model, gen, texts, **options)
    got = gen.generate(texts, **options)
    for row, (w, g) in enumerate(zip(want, got)):
        assert [ids for ids, _ in w] == [h.token_ids for h in g.hypotheses], f"row {row}"
        np.testing.assert_allclose([s for _, s in w], [h.score for h in g.hypotheses], atol=2e-4)


@pytest.mark.parametrize("options", [dict(max_new_tokens=25), dict(max_new_tokens=25, do_sample=True, seed=3)])
def test_stream_joins_to_generate(arch_pair, options):
    gen = arch_pair[3]
    for text in sources(3, seed=5):
        pieces = list(gen.stream(text, **options))
        assert "".join(pieces) == gen.generate(text, **options).text


def test_beam_batch_equals_rows_alone(arch_pair):
    gen = arch_pair[3]
    texts = sources(4, seed=8)
    batch = gen.generate(texts, num_beams=3, num_return_sequences=3, max_new_tokens=30)
    for text, r in zip(texts, batch):
        alone = gen.generate(text, num_beams=3, num_return_sequences=3, max_new_tokens=30)
        assert [h.token_ids for h in alone.hypotheses] == [h.token_ids for h in r.hypotheses]


def test_nbest_sorted_and_no_repeated_ngrams(arch_pair):
    gen = arch_pair[3]
    for r in gen.generate(sources(4, seed=9), num_beams=4, num_return_sequences=4, no_repeat_ngram_size=2,
                          max_new_tokens=30):
        scores = [h.score for h in r.hypotheses]
        assert scores == sorted(scores, reverse=True)
        for h in r.hypotheses:
            grams = list(zip(h.token_ids, h.token_ids[1:]))
            assert len(grams) == len(set(grams))
