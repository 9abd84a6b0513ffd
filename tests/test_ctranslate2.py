"""Our Transformer vs CTranslate2 on the same weights (export/ctranslate2_convert.py).

A tiny model is trained for a few seconds on a synthetic task (reverse the
source) so its logits are peaked but not yet certain, converted, and decoded
by both engines on 100 random sources, some longer than any trained on.
Disagreements are allowed only at near-ties: where the two outputs part, the
top-2 logit gap (greedy) or the two hypotheses' scores (beam) differ < 1e-3.

Our side is `OUR_DECODE`: the PyTorch reference over model.encode/step today;
point it at the ONNX engine to compare that instead (one line).
"""
from __future__ import annotations

import importlib.util
import pathlib

import numpy as np
import pytest
import torch

from ltg_engine.training.transformer import TransformerConfig, TransformerSeq2Seq

ctranslate2 = pytest.importorskip("ctranslate2", reason="ctranslate2 (the bench extra) is not installed")

_spec = importlib.util.spec_from_file_location(
    "ctranslate2_convert", pathlib.Path(__file__).resolve().parents[1] / "export" / "ctranslate2_convert.py")
ct2c = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ct2c)

PAD, BOS, EOS = 0, 2, 3
V = 24
TRAIN_LEN = 10          # longest trained source
MAX_LEN = 24            # decoding limit, both engines
NEAR_TIE = 1e-3


# ---------------------------------------------------------------- model

def reverse_batch(g, B, max_len):
    lens = torch.randint(1, max_len + 1, (B,), generator=g)
    S = int(lens.max())
    src = torch.randint(4, V, (B, S), generator=g).masked_fill(torch.arange(S) >= lens[:, None], PAD)
    tgt = torch.full((B, S + 2), PAD)
    for b in range(B):
        n = int(lens[b])
        tgt[b, 0] = BOS
        tgt[b, 1:n + 1] = src[b, :n].flip(0)
        tgt[b, n + 1] = EOS
    return src, lens, tgt


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = TransformerConfig(vocab_size=V, enc_layers=2, dec_layers=2, d_model=48, heads=4, ffn_dim=96,
                            dropout=0.0, activation="gelu")
    m = TransformerSeq2Seq(cfg)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)            # tiny GEMMs: extra threads only spin (20x slower on a loaded box)
    try:
        for _ in range(150):                                # a few seconds: peaked, not certain
            src, lens, tgt = reverse_batch(g, 64, TRAIN_LEN)
            logits = m(src, lens, tgt[:, :-1])
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), tgt[:, 1:].reshape(-1), ignore_index=PAD)
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    return m.eval()


@pytest.fixture(scope="module")
def vocab():
    return ct2c.placeholder_vocabulary(V)


@pytest.fixture(scope="module")
def translator(model, vocab, tmp_path_factory):
    out = ct2c.convert_to_ctranslate2(model, vocab, str(tmp_path_factory.mktemp("ct2") / "model"))
    return ctranslate2.Translator(out, device="cpu", compute_type="float32", intra_threads=1)


@pytest.fixture(scope="module")
def sources():
    g = torch.Generator().manual_seed(42)
    lens = torch.randint(1, 2 * TRAIN_LEN + 1, (100,), generator=g)
    return [torch.randint(4, V, (int(n),), generator=g).tolist() for n in lens]


def pad(sources):
    S = max(len(s) for s in sources)
    src = torch.tensor([s + [PAD] * (S - len(s)) for s in sources])
    return src, torch.tensor([len(s) for s in sources])


# ---------------------------------------------------------------- our decoders (PyTorch reference)

@torch.no_grad()
def torch_greedy(model, sources, max_len):
    src, src_len = pad(sources)
    B = len(sources)
    memory, state = model.encode(src, src_len)
    state = {n: t.unsqueeze(1) for n, t in state.items()}
    tokens, parents = torch.full((B, 1), BOS), torch.zeros(B, 1, dtype=torch.long)
    out, done = [[] for _ in range(B)], [False] * B
    for step in range(max_len):
        logits, state = model.step(tokens, parents, torch.tensor(step), state, memory, src_len)
        tokens = logits.argmax(-1)                                      # (B, 1)
        for b in range(B):
            if not done[b]:
                t = int(tokens[b, 0])
                done[b] = t == EOS
                if not done[b]:
                    out[b].append(t)
        if all(done):
            break
    return out


@torch.no_grad()
def torch_beam(model, sources, beam, max_len, length_penalty=1.0):
    """CTranslate2's beam search (decoding.cc) over encode/step: 2K candidates per row,
    finished candidates replaced by the next live ones, stop at K finished,
    score / len^lp with len counting the end token."""
    src, src_len = pad(sources)
    B = len(sources)
    memory, state = model.encode(src, src_len)
    state = {n: t.unsqueeze(1) for n, t in state.items()}
    tokens, parents = torch.full((B, 1), BOS), torch.zeros(B, 1, dtype=torch.long)
    scores = torch.zeros(B, 1)
    seqs = [[[]] for _ in range(B)]
    finished = [[] for _ in range(B)]                                   # (score, tokens)
    done = [False] * B
    for step in range(max_len):
        logits, state = model.step(tokens, parents, torch.tensor(step), state, memory, src_len)
        logp = torch.log_softmax(logits, -1) + scores.unsqueeze(-1)     # (B, K', V)
        top_s, top_i = logp.reshape(B, -1).topk(2 * beam, dim=-1)       # (B, 2K)
        new_tok, new_par, new_sc, new_seqs = [], [], [], []
        for b in range(B):
            cand = [(float(top_s[b, j]), int(top_i[b, j]) // V, int(top_i[b, j]) % V) for j in range(2 * beam)]
            keep, spare = [], iter(c for c in cand[beam:] if c[2] != EOS)
            for s, k, t in cand[:beam]:
                if t == EOS or step == max_len - 1:
                    if not done[b]:                                     # length counts </s>, as CTranslate2's does
                        finished[b].append((s / (len(seqs[b][k]) + 1) ** length_penalty,
                                            seqs[b][k] + ([] if t == EOS else [t])))
                    s, k, t = next(spare, (float("-inf"), 0, PAD))
                keep.append((s, k, t))
            done[b] = done[b] or len(finished[b]) >= beam or step == max_len - 1
            new_tok.append([t for _, _, t in keep])
            new_par.append([k for _, k, _ in keep])
            new_sc.append([s for s, _, _ in keep])
            new_seqs.append([seqs[b][k] + [t] for _, k, t in keep])
        if all(done):
            break
        tokens, parents = torch.tensor(new_tok), torch.tensor(new_par)
        scores, seqs = torch.tensor(new_sc), new_seqs
    return [max(f, key=lambda x: x[0])[1] for f in finished]


def torch_decode(model, sources, beam_size, max_len):
    return torch_greedy(model, sources, max_len) if beam_size == 1 else torch_beam(model, sources, beam_size, max_len)


OUR_DECODE = torch_decode          # swap for the ONNX engine's decode to compare that instead


def ct2_decode(translator, vocab, sources, beam_size, max_len):
    results = translator.translate_batch(
        [ct2c.ids_to_tokens(vocab, s) for s in sources], beam_size=beam_size, max_decoding_length=max_len,
        min_decoding_length=0, return_scores=True, max_input_length=0)
    return [ct2c.tokens_to_ids(vocab, r.hypotheses[0]) for r in results]


# ---------------------------------------------------------------- tie checks (PyTorch, independent of OUR_DECODE)

@torch.no_grad()
def top2_gap(model, source, prefix):
    src, src_len = pad([source])
    logits = model(src, src_len, torch.tensor([[BOS] + prefix]))[0, -1]
    top = logits.topk(2).values
    return float(top[0] - top[1])


@torch.no_grad()
def hyp_score(model, source, hyp, max_len, length_penalty=1.0):
    """Log-probability / number of scored tokens (</s> included), as both beam searches rank hypotheses."""
    src, src_len = pad([source])
    tgt = [BOS] + hyp + ([EOS] if len(hyp) < max_len else [])
    logp = torch.log_softmax(model(src, src_len, torch.tensor([tgt[:-1]]))[0], -1)
    total = float(logp.gather(1, torch.tensor(tgt[1:])[:, None]).sum())
    return total / (len(tgt) - 1) ** length_penalty


def divergence(a, b):
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


# ---------------------------------------------------------------- tests

def test_converter_refuses_windowed_encoder(vocab):
    windowed = TransformerSeq2Seq(TransformerConfig(vocab_size=V, d_model=16, heads=2, ffn_dim=32, encoder_window=8))
    with pytest.raises(ValueError, match="encoder_window"):
        ct2c.build_spec(windowed, vocab)


@torch.no_grad()
def test_step_logits_match(model, translator, vocab, sources):
    """CTranslate2's per-step logits along its own greedy path == ours teacher-forced on it."""
    res = translator.translate_batch([ct2c.ids_to_tokens(vocab, s) for s in sources[:10]], beam_size=1,
                                     max_decoding_length=MAX_LEN, min_decoding_length=0,
                                     return_logits_vocab=True, max_input_length=0, return_end_token=True)
    for source, r in zip(sources[:10], res):
        hyp = ct2c.tokens_to_ids(vocab, r.hypotheses[0])                 # ends with </s> unless cut
        src, src_len = pad([source])
        ours = model(src, src_len, torch.tensor([[BOS] + hyp[:-1]]))[0]  # (T, V)
        theirs = torch.stack([torch.from_numpy(np.asarray(l, dtype=np.float32)).reshape(-1) for l in r.logits[0]])
        torch.testing.assert_close(theirs, ours, atol=1e-3, rtol=0)


def test_greedy_agrees(model, translator, vocab, sources):
    ours = OUR_DECODE(model, sources, 1, MAX_LEN)
    theirs = ct2_decode(translator, vocab, sources, 1, MAX_LEN)
    differ = [i for i in range(len(sources)) if ours[i] != theirs[i]]
    print(f"greedy: {len(sources) - len(differ)}/{len(sources)} identical")
    assert len(differ) <= 2, f"greedy differs on {len(differ)} of {len(sources)} inputs"
    for i in differ:
        d = divergence(ours[i], theirs[i])
        gap = top2_gap(model, sources[i], ours[i][:d])
        assert gap < NEAR_TIE, f"input {i}: outputs part at token {d} where the top-2 gap is {gap:.3g}"


def test_beam4_agrees(model, translator, vocab, sources):
    ours = OUR_DECODE(model, sources, 4, MAX_LEN)
    theirs = ct2_decode(translator, vocab, sources, 4, MAX_LEN)
    differ = [i for i in range(len(sources)) if ours[i] != theirs[i]]
    print(f"beam 4: {len(sources) - len(differ)}/{len(sources)} best hypotheses identical")
    assert len(differ) <= 5, f"beam 4 differs on {len(differ)} of {len(sources)} inputs"
    for i in differ:
        d = divergence(ours[i], theirs[i])
        gap = top2_gap(model, sources[i], ours[i][:d])
        score_gap = abs(hyp_score(model, sources[i], ours[i], MAX_LEN) - hyp_score(model, sources[i], theirs[i], MAX_LEN))
        assert min(gap, score_gap) < NEAR_TIE, (
            f"input {i}: best hypotheses differ; top-2 gap {gap:.3g}, score gap {score_gap:.3g}")
