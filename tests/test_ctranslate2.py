"""ltg_engine vs CTranslate2 on the same Transformer weights (export/ctranslate2_convert.py).

A tiny Transformer is trained for a few seconds on the reversal task of
conftest.py (train_tiny), so its logits are peaked but not yet certain. It is
exported with export_model and run through the shipped engine
(Generator.generate_ids: onnxruntime graphs + the search core), converted to
CTranslate2 (float32), and both decode the same 100 held-out sources, many
longer than any trained on. Disagreements are allowed only at near-ties: where
the two outputs part, the top-2 logit gap (greedy) or the two hypotheses'
normalised scores (beam) differ by < NEAR_TIE, as the PyTorch model computes them.

Search semantics lined up (CTranslate2 4.x decoding.cc):
  * both run at most MAX_LEN decoder steps; a hypothesis cut there is kept
    without an end token (ltg max_new_tokens, CT2 max_decoding_length);
  * beam: both take the top 2K candidates per row, an end token ranked within
    the top K finishes a hypothesis, the next live candidates refill the beam;
  * score = sum of log-probs including the end token / (length including the
    end token) ** length_penalty (ltg search_ref.BeamSearch._keep_finished;
    CT2 divides by the length with </s> as well, lp = 1 in both by default);
  * CT2 stops a row once K hypotheses have finished: ltg's early_stopping=True.
    With early_stopping=False (HF's default) ltg keeps searching while a live
    beam can still win, and 3 of these 100 best hypotheses differ from CT2's
    (10 of 100 on random-id sources): a difference of rule, not of numerics.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from conftest import reversal_cases, train_tiny

ctranslate2 = pytest.importorskip("ctranslate2", reason="ctranslate2 (the bench extra) is not installed")
pytest.importorskip("onnxscript", reason="the ONNX export needs the train extra")

from ltg_engine.export import ctranslate2_convert as ct2c  # noqa: E402  (after the skip)

BOS, EOS = 2, 3
MAX_LEN = 48            # decoding limit, both engines
NEAR_TIE = 1e-3
TINY = dict(d_model=64, layers=2, heads=4, ffn_dim=128, dropout=0.0, lr=3e-3, batch_size=32, epochs=1,
            max_steps=200, vocab_size=300, context_len=128, continuation_len=128, grad_clip=1.0, threads=1,
            model_config={"activation": "gelu"})


# ---------------------------------------------------------------- the two engines on one model

@pytest.fixture(scope="module")
def transformer_run_dir(tmp_path_factory):
    return train_tiny(tmp_path_factory, "transformer", n_examples=4000, **TINY)


@pytest.fixture(scope="module")
def model(transformer_run_dir):
    from ltg_engine.training.checkpoint import load_model

    return load_model(transformer_run_dir)[0].eval()


@pytest.fixture(scope="module")
def generator(transformer_run_dir, tmp_path_factory):
    from ltg_engine import Generator
    from ltg_engine.export.onnx_export import export_model

    out = export_model(transformer_run_dir, os.fspath(tmp_path_factory.mktemp("ltg") / "model"),
                       report=lambda *_: None)
    return Generator.load(out, threads=1)


@pytest.fixture(scope="module")
def vocab(model):
    return ct2c.placeholder_vocabulary(model.cfg.vocab_size)


@pytest.fixture(scope="module")
def translator(model, vocab, tmp_path_factory):
    out = ct2c.convert_to_ctranslate2(model, vocab, str(tmp_path_factory.mktemp("ct2") / "model"))
    return ctranslate2.Translator(out, device="cpu", compute_type="float32", intra_threads=1)


@pytest.fixture(scope="module")
def sources(generator):
    """100 held-out sources of 1-40 letters (trained: up to 24), as token ids."""
    return [generator.tokenizer.encode(src) for src, _ in reversal_cases(100, 1, 40, seed=4242)]


def ltg_decode(generator, sources, beam_size, length_penalty=1.0):
    """[(best token ids, its score)] from the shipped engine."""
    opts = dict(max_new_tokens=MAX_LEN, num_beams=beam_size, length_penalty=length_penalty)
    if beam_size > 1:
        opts["early_stopping"] = True                       # CT2: a row stops at K finished hypotheses
    return [(r.token_ids, r.score) for r in generator.generate_ids(sources, **opts)]


def ct2_decode(translator, vocab, sources, beam_size, length_penalty=1.0):
    results = translator.translate_batch(
        [ct2c.ids_to_tokens(vocab, s) for s in sources], beam_size=beam_size, max_decoding_length=MAX_LEN,
        min_decoding_length=0, max_input_length=0, length_penalty=length_penalty, return_scores=True)
    return [(ct2c.tokens_to_ids(vocab, r.hypotheses[0]), r.scores[0]) for r in results]


# ---------------------------------------------------------------- tie checks (PyTorch, independent of both)

def pad(sources):
    S = max(len(s) for s in sources)
    src = torch.tensor([s + [0] * (S - len(s)) for s in sources])
    return src, torch.tensor([len(s) for s in sources])


@torch.no_grad()
def top2_gap(model, source, prefix):
    src, src_len = pad([source])
    logits = model(src, src_len, torch.tensor([[BOS] + prefix]))[0, -1]
    top = logits.topk(2).values
    return float(top[0] - top[1])


@torch.no_grad()
def hyp_score(model, source, hyp, length_penalty=1.0):
    """Sum of log-probs / number of scored tokens (</s> included), as both beam searches rank hypotheses."""
    src, src_len = pad([source])
    tgt = [BOS] + hyp + ([EOS] if len(hyp) < MAX_LEN else [])
    logp = torch.log_softmax(model(src, src_len, torch.tensor([tgt[:-1]]))[0], -1)
    total = float(logp.gather(1, torch.tensor(tgt[1:])[:, None]).sum())
    return total / (len(tgt) - 1) ** length_penalty


def divergence(a, b):
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


# ---------------------------------------------------------------- tests

def test_converter_refuses_windowed_encoder():
    from ltg_engine.training.transformer import TransformerConfig, TransformerSeq2Seq

    windowed = TransformerSeq2Seq(TransformerConfig(vocab_size=24, d_model=16, heads=2, ffn_dim=32, encoder_window=8))
    with pytest.raises(ValueError, match="encoder_window"):
        ct2c.build_spec(windowed, ct2c.placeholder_vocabulary(24))


@torch.no_grad()
def test_step_logits_match(model, translator, vocab, sources):
    """CTranslate2's per-step logits along its own greedy path == the PyTorch model's, teacher-forced on it."""
    res = translator.translate_batch([ct2c.ids_to_tokens(vocab, s) for s in sources[:10]], beam_size=1,
                                     max_decoding_length=MAX_LEN, min_decoding_length=0,
                                     return_logits_vocab=True, max_input_length=0, return_end_token=True)
    for source, r in zip(sources[:10], res):
        hyp = ct2c.tokens_to_ids(vocab, r.hypotheses[0])                 # ends with </s> unless cut
        src, src_len = pad([source])
        ours = model(src, src_len, torch.tensor([[BOS] + hyp[:-1]]))[0]  # (T, V)
        theirs = torch.stack([torch.from_numpy(np.asarray(l, dtype=np.float32)).reshape(-1) for l in r.logits[0]])
        torch.testing.assert_close(theirs, ours, atol=1e-3, rtol=0)


def test_greedy_agrees(model, generator, translator, vocab, sources):
    ours = [ids for ids, _ in ltg_decode(generator, sources, 1)]
    theirs = [ids for ids, _ in ct2_decode(translator, vocab, sources, 1)]
    differ = [i for i in range(len(sources)) if ours[i] != theirs[i]]
    print(f"greedy: {len(sources) - len(differ)}/{len(sources)} identical")
    assert len(differ) <= 2, f"greedy differs on {len(differ)} of {len(sources)} inputs"
    for i in differ:
        d = divergence(ours[i], theirs[i])
        gap = top2_gap(model, sources[i], ours[i][:d])
        assert gap < NEAR_TIE, f"input {i}: outputs part at token {d} where the top-2 gap is {gap:.3g}"


@pytest.mark.parametrize("length_penalty", [1.0, 0.6])
def test_beam4_agrees(model, generator, translator, vocab, sources, length_penalty):
    """Best hypotheses agree; where they do, so do their normalised scores (same length convention)."""
    lp = length_penalty
    ours, ltg_scores = zip(*ltg_decode(generator, sources, 4, lp))
    theirs, ct2_scores = zip(*ct2_decode(translator, vocab, sources, 4, lp))
    differ = [i for i in range(len(sources)) if ours[i] != theirs[i]]
    print(f"beam 4, length_penalty {lp}: {len(sources) - len(differ)}/{len(sources)} best hypotheses identical")
    assert len(differ) <= 5, f"beam 4 differs on {len(differ)} of {len(sources)} inputs"
    same = [i for i in range(len(sources)) if i not in differ]
    np.testing.assert_allclose([ltg_scores[i] for i in same], [ct2_scores[i] for i in same], atol=1e-4, rtol=0)
    for i in differ:
        d = divergence(ours[i], theirs[i])
        gap = top2_gap(model, sources[i], ours[i][:d])
        score_gap = abs(hyp_score(model, sources[i], ours[i], lp) - hyp_score(model, sources[i], theirs[i], lp))
        assert min(gap, score_gap) < NEAR_TIE, (
            f"input {i}: best hypotheses differ; top-2 gap {gap:.3g}, score gap {score_gap:.3g}")
