"""Transformer seq2seq: the step contract against teacher forcing, and the export.

Models are randomly initialised with a fixed seed (dropout 0, eval mode); the
properties tested are exact identities, so no training is needed.
"""
import pytest
import torch

from ltg_engine.training.transformer import TransformerConfig, TransformerSeq2Seq

V = 60


def make_model(window=0, seed=0, **overrides):
    torch.manual_seed(seed)
    cfg = dict(vocab_size=V, enc_layers=2, dec_layers=2, d_model=32, heads=4, ffn_dim=64,
               dropout=0.0, encoder_window=window)
    cfg.update(overrides)
    return TransformerSeq2Seq(TransformerConfig(**cfg)).eval()


def random_batch(B, S, seed=1):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, V, (B, S), generator=g)
    src_len = torch.randint(1, S + 1, (B,), generator=g)
    src_len[0] = S
    src = src.masked_fill(torch.arange(S) >= src_len[:, None], 0)
    return src, src_len


def decode_steps(model, src, src_len, tokens_per_step, parents_per_step):
    """Run step() over a list of (B, K) tokens/parents; returns the logits of every step."""
    memory, state = model.encode(src, src_len)
    state = {n: t.unsqueeze(1) for n, t in state.items()}              # (B, 1, ...)
    out = []
    for i, (tok, par) in enumerate(zip(tokens_per_step, parents_per_step)):
        logits, state = model.step(tok, par, torch.tensor(i), state, memory, src_len)
        out.append(logits)
    return out


@pytest.mark.parametrize("window", [0, 3])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@torch.no_grad()
def test_teacher_forcing_equals_step_by_step(window, activation):
    model = make_model(window, activation=activation, tie_embeddings=(activation == "relu"))
    src, src_len = random_batch(3, 11)
    tgt = torch.randint(4, V, (3, 7))
    full = model(src, src_len, tgt)                                     # (B, T, V)
    zeros = torch.zeros(3, 1, dtype=torch.long)
    steps = decode_steps(model, src, src_len, [tgt[:, t:t + 1] for t in range(7)], [zeros] * 7)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=0)


@pytest.mark.parametrize("window", [0, 4])
@torch.no_grad()
def test_padding_does_not_change_outputs(window):
    model = make_model(window)
    src, src_len = random_batch(1, 9)
    padded = torch.cat([src, torch.randint(4, V, (1, 13))], dim=1)      # junk past src_len
    tgt = torch.randint(4, V, (1, 5))
    torch.testing.assert_close(model(padded, src_len, tgt), model(src, src_len, tgt), atol=1e-5, rtol=0)


@torch.no_grad()
def test_beam_reordering_follows_parents():
    """Hypotheses shuffled by `parents` give the logits of the same prefixes decoded alone."""
    model = make_model()
    src, src_len = random_batch(2, 8)
    prefixes = torch.randint(4, V, (2, 3, 4))                           # (B, K, T): 3 distinct prefixes
    perm = torch.tensor([[2, 0, 1], [1, 1, 0]])                         # per-row parent choice
    tokens = [prefixes[:, :, t] for t in range(3)]
    parents = [torch.zeros(2, 3, dtype=torch.long), torch.arange(3).expand(2, 3), torch.arange(3).expand(2, 3)]
    new_tok = torch.randint(4, V, (2, 3))
    tokens.append(new_tok)
    parents.append(perm)
    beams = decode_steps(model, src, src_len, tokens, parents)[-1]      # (B, K, V)
    for b in range(2):
        for k in range(3):
            seq = torch.cat([prefixes[b, perm[b, k], :3], new_tok[b, k:k + 1]])  # (4,)
            alone = model(src[b:b + 1], src_len[b:b + 1], seq[None])[0, -1]
            torch.testing.assert_close(beams[b, k], alone, atol=1e-5, rtol=0)


@pytest.mark.parametrize("S", [1, 5, 12, 17])
@torch.no_grad()
def test_windowed_attention_equals_band_masked_full_attention(S):
    W = 4
    model = make_model(W)
    attn = model.enc_layers[0].attn
    x = torch.randn(2, S, 32)
    src_len = torch.tensor([S, max(1, S - 3)])
    cos, sin = model.rotary.angles(torch.arange(S))
    i = torch.arange(S)
    allowed = ((i[:, None] - i[None, :]).abs() <= W) & (i[None, :] < src_len[:, None, None])   # (B, S, S)
    bias = (~allowed).float()[:, None] * -1e9                           # (B, 1, S, S)
    dense = attn.full(x, cos, sin, bias)
    blocked = attn.windowed(x, cos, sin, src_len, W)
    for b in range(2):                                                  # compare real positions only
        n = int(src_len[b])
        torch.testing.assert_close(blocked[b, :n], dense[b, :n], atol=1e-5, rtol=0)


def test_graph_spec_matches_encode_and_step():
    model = make_model()
    spec = model.graph_spec()
    src, src_len = random_batch(2, 7)
    with torch.no_grad():
        memory, state = model.encode(src, src_len)
    sizes = {"B": 2, "S": 7, "T": 0}
    assert list(memory) == list(spec.memory) and list(state) == list(spec.state)
    for name, shape in {**spec.memory, **spec.state}.items():
        got = tuple({**memory, **state}[name].shape)
        assert got == tuple(sizes.get(d, d) for d in shape), name


# ---------------------------------------------------------------- ONNX export

@pytest.mark.parametrize("window", [0, 5])
def test_onnx_export_matches_pytorch(tmp_path, window):
    """The project's exporter (export/onnx_export.py) on both encoder variants: onnx.checker and the
    contract table, then PyTorch vs onnxruntime at batch 1 and 3, sources of 1, 7 and 40 tokens
    (longer than the nominal 10 'trained'), three steps with beam reordering, tolerance 1e-4."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from ltg_engine.export.contract import build_contract
    from ltg_engine.export.onnx_export import check_graphs, export_graphs, validate

    model = make_model(window)
    spec = model.graph_spec()
    contract = build_contract(spec.memory, spec.state, V)
    export_graphs(model, contract, str(tmp_path), V)
    check_graphs(str(tmp_path), contract)
    worst = validate(model, str(tmp_path), contract, V, max_trained_len=10, tol=1e-4, report=lambda *_: None)
    assert worst <= 1e-4
