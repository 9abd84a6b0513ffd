"""Transformer seq2seq: the step contract against teacher forcing, and the export.

Models are randomly initialised with a fixed seed (dropout 0, eval mode); the
properties tested are exact identities, so no training is needed.
"""
import numpy as np
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

class _Encoder(torch.nn.Module):
    def __init__(self, model, mem, st):
        super().__init__()
        self.model, self.mem, self.st = model, mem, st

    def forward(self, src_ids, src_len):
        memory, state = self.model.encode(src_ids, src_len)
        return tuple(memory[n] for n in self.mem) + tuple(state[n] for n in self.st)


class _Step(torch.nn.Module):
    def __init__(self, model, mem, st):
        super().__init__()
        self.model, self.mem, self.st = model, mem, st

    def forward(self, tokens, parents, step, states, memories, src_len):
        logits, nxt = self.model.step(tokens, parents, step, dict(zip(self.st, states)),
                                      dict(zip(self.mem, memories)), src_len)
        return (logits,) + tuple(nxt[n] for n in self.st)


def _axes(shape, dims):
    return {i: dims[d] for i, d in enumerate(shape) if isinstance(d, str)}


def export_pair(model, out_dir):
    """encoder.onnx / decoder_step.onnx with this test's own wrappers (dynamo, dynamic B, K, S, T)."""
    from torch.export import Dim

    spec = model.graph_spec()
    mem, st = list(spec.memory), list(spec.state)
    dims = {"B": Dim("B"), "S": Dim("S"), "K": Dim("K"), "K_in": Dim("K_in"), "T": Dim("T")}
    src, src_len = random_batch(2, 7)                                   # every dynamic size distinct, >= 2
    with torch.no_grad():
        memory, _ = model.encode(src, src_len)
    states = tuple(torch.randn(2, 3, *[5 if d == "T" else d for d in spec.state[n][1:]]) for n in st)
    tokens = torch.randint(4, V, (2, 4))
    parents = torch.randint(0, 3, (2, 4))
    enc_path, step_path = str(out_dir / "encoder.onnx"), str(out_dir / "decoder_step.onnx")
    torch.onnx.export(_Encoder(model, mem, st), (src, src_len), enc_path, dynamo=True,
                      dynamic_shapes=({0: dims["B"], 1: dims["S"]}, {0: dims["B"]}),
                      input_names=["src_ids", "src_len"], output_names=mem + st)
    ds = ({0: dims["B"], 1: dims["K"]}, {0: dims["B"], 1: dims["K"]}, None,
          tuple(_axes(["B", "K_in"] + spec.state[n][1:], dims) for n in st),
          tuple(_axes(spec.memory[n], dims) for n in mem), {0: dims["B"]})
    torch.onnx.export(_Step(model, mem, st),
                      (tokens, parents, torch.tensor(5), states, tuple(memory[n] for n in mem), src_len),
                      step_path, dynamo=True, dynamic_shapes=ds,
                      input_names=["tokens", "parents", "step"] + st + mem + ["src_len"],
                      output_names=["logits"] + ["next_" + n for n in st])
    return enc_path, step_path


@pytest.mark.parametrize("window", [0, 5])
def test_onnx_export_matches_pytorch(tmp_path, window):
    """Batch 1 and 3; sources of 1, 7 and 40 tokens (longer than any 'trained' 16); T from 0."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    model = make_model(window)
    spec = model.graph_spec()
    mem, st = list(spec.memory), list(spec.state)
    enc_path, step_path = export_pair(model, tmp_path)
    enc = ort.InferenceSession(enc_path, providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(step_path, providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(7)
    for B in (1, 3):
        for S in (1, 7, 40):
            src, src_len = random_batch(B, S, seed=S)
            with torch.no_grad():
                memory, state = model.encode(src, src_len)
            outs = enc.run(None, {"src_ids": src.numpy(), "src_len": src_len.numpy()})
            ort_mem = dict(zip(mem, outs[:len(mem)]))
            ort_state = {n: o[:, None] for n, o in zip(st, outs[len(mem):])}   # T = 0, K = 1
            state = {n: t.unsqueeze(1) for n, t in state.items()}
            k = 1
            for i, k_out in enumerate((3, 3, 2, 4)):
                tokens = torch.randint(4, V, (B, k_out), generator=g)
                parents = torch.randint(0, k, (B, k_out), generator=g)
                with torch.no_grad():
                    logits, state = model.step(tokens, parents, torch.tensor(i), state, memory, src_len)
                feeds = {"tokens": tokens.numpy(), "parents": parents.numpy(), "step": np.array(i),
                         "src_len": src_len.numpy(), **ort_state, **ort_mem}
                outs = dec.run(None, feeds)
                ort_state = dict(zip(st, outs[1:]))
                np.testing.assert_allclose(outs[0], logits.numpy(), atol=1e-4, rtol=0,
                                           err_msg=f"B={B} S={S} step={i}")
                k = k_out
