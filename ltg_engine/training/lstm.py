"""Bidirectional-LSTM encoder + LSTM decoder with attention and input feeding.

Luong et al. 2015 ("Effective Approaches to Attention-based NMT"), written so
that the two exported graphs are plain, fast ONNX:

- The encoder runs each direction as a unidirectional nn.LSTM (exports to the
  ONNX LSTM op). The backward direction reverses every sequence by its own
  length with a gather, runs forward, and reverses back, so padding never
  leaks into valid positions. (pack_padded_sequence does not export.)
- One decoder step is matmuls over [B, K, ...] tensors; attention over memory
  is a batched MatMul (never Einsum: onnxruntime's CPU Einsum is ~3x slower)
  and memory stays at batch size B: it broadcasts over the beam axis K.
- attention="general" (default) applies W to the query, q = W^T h, so the
  memory itself serves as keys and no key tensor is read per step.
  attention="additive" (Bahdanau) projects keys once in encode() and pays a
  tanh per memory position per step.

Graph contract (see base.py):
    memory: "memory" [B, S, 2*enc_hidden]   (+ "keys" [B, S, attn_dim] if additive)
    state:  "h" [B, L, H], "c" [B, L, H], "feed" [B, H]   (step sees [B, K, ...])
"""
from __future__ import annotations

import dataclasses
from typing import Tuple

import torch
from torch import nn

from ltg_engine.training.base import GraphSpec, Seq2SeqModel, Tensors



@dataclasses.dataclass
class LSTMConfig:
    vocab_size: int = 8000
    emb_dim: int = 256
    enc_hidden: int = 256        # per direction; memory width is 2 * enc_hidden
    enc_layers: int = 2
    dec_hidden: int = 512
    dec_layers: int = 2
    attention: str = "general"   # "general" (Luong, default) | "additive" (Bahdanau)
    attn_dim: int = 256          # additive only: width of keys / query projection
    dropout: float = 0.1
    pad_id: int = 0

    def __post_init__(self):
        if self.attention not in ("general", "additive"):
            raise ValueError(f"attention must be 'general' or 'additive', got {self.attention!r}")
        for name in ("vocab_size", "emb_dim", "enc_hidden", "enc_layers", "dec_hidden", "dec_layers", "attn_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


# ----------------------------------------------------------------------------
# small helpers


def reverse_by_length(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse x[b, :len_b] in place along time; padded positions stay put.

    x (B, S, D), lengths (B,). The index map is an involution, so applying it
    twice restores the input.
    """
    B, S, D = x.shape
    t = torch.arange(S, device=x.device).unsqueeze(0)                  # (1, S)
    lengths = lengths.unsqueeze(1)                                      # (B, 1)
    idx = torch.where(t < lengths, lengths - 1 - t, t)                  # (B, S)
    return torch.gather(x, 1, idx.unsqueeze(-1).expand(B, S, D))        # (B, S, D)


def gather_beams(x: torch.Tensor, parents: torch.Tensor) -> torch.Tensor:
    """x (B, K', ...) -> (B, K, ...) with x_out[b, k] = x[b, parents[b, k]]."""
    B, K = parents.shape
    idx = parents.reshape(B, K, *([1] * (x.dim() - 2)))
    idx = idx.expand(B, K, *x.shape[2:])
    return torch.gather(x, 1, idx)


def padding_mask(src_len: torch.Tensor, S: int) -> torch.Tensor:
    """True at positions >= src_len. (B, 1, S), broadcasts over K."""
    pos = torch.arange(S, device=src_len.device).unsqueeze(0)          # (1, S)
    return (pos >= src_len.unsqueeze(1)).unsqueeze(1)                   # (B, 1, S)


# ----------------------------------------------------------------------------
# encoder


class BiLSTMEncoder(nn.Module):
    def __init__(self, cfg: LSTMConfig, embedding: nn.Embedding):
        super().__init__()
        self.embedding = embedding
        self.fwd = nn.ModuleList()
        self.bwd = nn.ModuleList()
        for layer in range(cfg.enc_layers):
            d_in = cfg.emb_dim if layer == 0 else 2 * cfg.enc_hidden
            self.fwd.append(nn.LSTM(d_in, cfg.enc_hidden, batch_first=True))
            self.bwd.append(nn.LSTM(d_in, cfg.enc_hidden, batch_first=True))
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, src_ids, src_len) -> Tuple[torch.Tensor, torch.Tensor]:
        """Returns memory (B, S, 2He) and a summary (B, 2He) of the whole source."""
        x = self.drop(self.embedding(src_ids))                          # (B, S, E)
        for layer, (fwd, bwd) in enumerate(zip(self.fwd, self.bwd)):
            if layer > 0:
                x = self.drop(x)
            out_f, _ = fwd(x)                                           # (B, S, He)
            out_b, _ = bwd(reverse_by_length(x, src_len))               # (B, S, He), reversed time
            out_b = reverse_by_length(out_b, src_len)                   # (B, S, He)
            x = torch.cat([out_f, out_b], dim=-1)                       # (B, S, 2He)
        # Final states: forward at the last valid position, backward at position 0.
        B, S, D = x.shape
        He = D // 2
        last = (src_len - 1).clamp(min=0).reshape(B, 1, 1).expand(B, 1, He)
        h_f = torch.gather(x[:, :, :He], 1, last).squeeze(1)            # (B, He)
        h_b = x[:, 0, He:]                                              # (B, He)
        return x, torch.cat([h_f, h_b], dim=-1)                         # (B, S, 2He), (B, 2He)


# ----------------------------------------------------------------------------
# decoder parts


class StackedLSTMCell(nn.Module):
    """L LSTM cells; one step is one matmul per layer over [B, K, ...] inputs."""

    def __init__(self, d_in: int, hidden: int, layers: int, dropout: float):
        super().__init__()
        self.gates = nn.ModuleList(
            nn.Linear((d_in if i == 0 else hidden) + hidden, 4 * hidden) for i in range(layers)
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x, h, c):
        """x (B, K, D_in), h/c (B, K, L, H) -> top output (B, K, H), h/c (B, K, L, H)."""
        hs, cs = [], []
        for i, gate in enumerate(self.gates):
            if i > 0:
                x = self.drop(x)
            g = gate(torch.cat([x, h[:, :, i]], dim=-1))                # (B, K, 4H)
            i_g, f_g, g_g, o_g = g.chunk(4, dim=-1)                      # (B, K, H) each
            c_i = torch.sigmoid(f_g) * c[:, :, i] + torch.sigmoid(i_g) * torch.tanh(g_g)
            x = torch.sigmoid(o_g) * torch.tanh(c_i)                     # (B, K, H)
            hs.append(x)
            cs.append(c_i)
        return x, torch.stack(hs, dim=2), torch.stack(cs, dim=2)


class GeneralAttention(nn.Module):
    """Luong "general": score = h^T W m, computed as (W^T h) . m so memory is the key."""

    def __init__(self, query_dim: int, mem_dim: int):
        super().__init__()
        self.w = nn.Linear(query_dim, mem_dim, bias=False)

    def precompute(self, memory) -> Tensors:
        return {}

    def scores(self, query, memory: Tensors) -> torch.Tensor:
        q = self.w(query)                                               # (B, K, 2He)
        # memory @ q^T keeps memory untransposed; the small result is transposed.
        s = torch.matmul(memory["memory"], q.transpose(1, 2))           # (B, S, K)
        return s.transpose(1, 2)                                        # (B, K, S)


class AdditiveAttention(nn.Module):
    """Bahdanau: score = v^T tanh(W_k m + W_q h); W_k m is computed once per source."""

    def __init__(self, query_dim: int, mem_dim: int, attn_dim: int):
        super().__init__()
        self.w_k = nn.Linear(mem_dim, attn_dim, bias=False)
        self.w_q = nn.Linear(query_dim, attn_dim)
        self.v = nn.Linear(attn_dim, 1, bias=False)

    def precompute(self, memory) -> Tensors:
        return {"keys": self.w_k(memory)}                               # (B, S, A)

    def scores(self, query, memory: Tensors) -> torch.Tensor:
        q = self.w_q(query).unsqueeze(2)                                # (B, K, 1, A)
        e = torch.tanh(memory["keys"].unsqueeze(1) + q)                 # (B, K, S, A)
        return self.v(e).squeeze(-1)                                    # (B, K, S)


# ----------------------------------------------------------------------------
# the whole model


class LSTMSeq2Seq(Seq2SeqModel):
    arch = "lstm"

    def __init__(self, cfg: LSTMConfig):
        super().__init__()
        self.cfg = cfg
        mem_dim = 2 * cfg.enc_hidden
        self.src_emb = nn.Embedding(cfg.vocab_size, cfg.emb_dim, padding_idx=cfg.pad_id)
        self.tgt_emb = nn.Embedding(cfg.vocab_size, cfg.emb_dim, padding_idx=cfg.pad_id)
        self.encoder = BiLSTMEncoder(cfg, self.src_emb)
        self.bridge = nn.Linear(mem_dim, 2 * cfg.dec_layers * cfg.dec_hidden)
        self.cell = StackedLSTMCell(cfg.emb_dim + cfg.dec_hidden, cfg.dec_hidden, cfg.dec_layers, cfg.dropout)
        if cfg.attention == "general":
            self.attn = GeneralAttention(cfg.dec_hidden, mem_dim)
        else:
            self.attn = AdditiveAttention(cfg.dec_hidden, mem_dim, cfg.attn_dim)
        self.combine = nn.Linear(mem_dim + cfg.dec_hidden, cfg.dec_hidden, bias=False)
        self.drop = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(cfg.dec_hidden, cfg.vocab_size)

    # -- graph contract ------------------------------------------------------

    def graph_spec(self) -> GraphSpec:
        c = self.cfg
        memory = {"memory": ["B", "S", 2 * c.enc_hidden]}
        if c.attention == "additive":
            memory["keys"] = ["B", "S", c.attn_dim]
        state = {
            "h": ["B", c.dec_layers, c.dec_hidden],
            "c": ["B", c.dec_layers, c.dec_hidden],
            "feed": ["B", c.dec_hidden],
        }
        return GraphSpec(memory=memory, state=state)

    def encode(self, src_ids, src_len) -> Tuple[Tensors, Tensors]:
        c = self.cfg
        mem, summary = self.encoder(src_ids, src_len)                   # (B, S, 2He), (B, 2He)
        memory = {"memory": mem, **self.attn.precompute(mem)}
        B = src_ids.shape[0]
        hc = self.bridge(summary).reshape(B, 2, c.dec_layers, c.dec_hidden)
        state = {
            "h": torch.tanh(hc[:, 0]),                                  # (B, L, H)
            "c": hc[:, 1],                                              # (B, L, H)
            "feed": torch.zeros(B, c.dec_hidden, dtype=mem.dtype, device=mem.device),  # (B, H)
        }
        return memory, state

    def step(self, tokens, parents, step, state: Tensors, memory: Tensors, src_len) -> Tuple[torch.Tensor, Tensors]:
        # `step` is part of the contract; an LSTM needs no position.
        state = {name: gather_beams(t, parents) for name, t in state.items()}  # (B, K, ...)
        emb = self.drop(self.tgt_emb(tokens))                           # (B, K, E)
        state = self._advance(emb, state, memory, src_len)
        return self.out(self.drop(state["feed"])), state               # (B, K, V)

    def forward(self, src_ids, src_len, tgt_in) -> torch.Tensor:
        """Teacher forcing: the same computation as step() run token by token.

        Embedding and output projection are batched over all T positions (one
        big op instead of T small ones); only the recurrence loops.
        """
        memory, state = self.encode(src_ids, src_len)
        state = {name: t.unsqueeze(1) for name, t in state.items()}    # (B, 1, ...)
        emb = self.drop(self.tgt_emb(tgt_in))                           # (B, T, E)
        attn_vecs = []
        for t in range(tgt_in.shape[1]):
            state = self._advance(emb[:, t:t + 1], state, memory, src_len)
            attn_vecs.append(state["feed"])                             # (B, 1, H)
        return self.out(self.drop(torch.cat(attn_vecs, dim=1)))         # (B, T, V)

    # -- one decoder step ----------------------------------------------------

    def _advance(self, emb, state: Tensors, memory: Tensors, src_len) -> Tensors:
        """emb (B, K, E), state (B, K, ...) already reordered -> next state; "feed" is the
        attentional vector the output layer reads."""
        x = torch.cat([emb, state["feed"]], dim=-1)                     # (B, K, E + H)
        top, h, c = self.cell(x, state["h"], state["c"])                # (B, K, H), (B, K, L, H) x2
        mem = memory["memory"]                                          # (B, S, 2He)
        scores = self.attn.scores(top, memory)                          # (B, K, S)
        # finfo.min, not -inf: finite in any dtype, and a fully masked row stays NaN-free
        scores = scores.masked_fill(padding_mask(src_len, mem.shape[1]), torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1)                         # (B, K, S)
        context = torch.matmul(weights, mem)                            # (B, K, 2He)
        attn_vec = torch.tanh(self.combine(torch.cat([context, top], dim=-1)))  # (B, K, H)
        return {"h": h, "c": c, "feed": attn_vec}
