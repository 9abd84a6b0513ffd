"""Pre-norm Transformer encoder-decoder implementing the training/base.py contract.

Position scheme: rotary embeddings (RoPE, half-split "GPT-NeoX" layout, base
10000) in every self-attention, none in cross-attention. Why:
  * No table. Angles are computed from the position index (encoder: arange(S);
    decoder: the `step` input), so the exported graphs take sources and outputs
    of any length; nothing is frozen at export length (the long-input failure
    Optimum users report most).
  * Relative. Scores depend on i - j only, so with `encoder_window` the encoder
    sees the same distances at token 16,000 as at token 100: a source longer
    than any trained on stays in distribution for the encoder.
  * CTranslate2 expresses it exactly (rotary_dim=0, rotary_interleave=False,
    rotary_base; positions from 0 with the decode step as offset), so the peer
    comparison runs on the same weights. Its own sinusoidal table is [sin|cos]
    from position 1, a trap RoPE sidesteps.

Encoder local attention (encoder_window = W > 0): token i attends to j with
|i - j| <= W. Queries are cut into blocks of W and each block attends to the
keys of the previous, own and next block (3W keys), so the score tensor is
(B, H, S/W, W, 3W): O(S * W) memory instead of O(S^2). CTranslate2's
`sliding_window` truncates the decoder's KV cache; it is not an encoder band
mask, so the CTranslate2 comparison covers full-attention models only.
Measured (exported encoder, onnxruntime 1.32, 2 threads, default sizes d=256,
4 heads, 3+3 layers, batch 1, a loaded 2-core box): W=256 runs 16,384 tokens
in 8.7 s at 0.8 GiB peak RSS and 65,536 in 40 s at 3.3 GiB (linear); full
attention runs 8,192 in 19 s / 2.3 GiB and 16,384 in 81 s / 8.6 GiB (quadratic).

Graph contract (names in graph_spec(), L = decoder layers, i in 0..L-1):
    memory  cross_k_i [B, H, Dh, S]  keys stored transposed: scores are one MatMul
            cross_v_i [B, H, S, Dh]
    state   self_k_i  [B, H, Dh, T]  step sees [B, K, H, Dh, T]; T = 0 at step 0
            self_v_i  [B, H, T, Dh]
One tensor per layer: slicing a stacked [B, L, ...] tensor would copy the
memory each step (ONNX Gather/Slice do not make views). Cross-attention
broadcasts over beams: queries (B, H, K, Dh) @ keys (B, H, Dh, S), so memory
stays at batch size B and is never expanded to K.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Tuple

import torch
from torch import nn
from torch.nn import functional as F

from ltg_engine.training.base import GraphSpec, Seq2SeqModel, Tensors

MASK_VALUE = -1e9   # finite: a fully masked row gives a uniform softmax, never NaN
LN_EPS = 1e-5       # CTranslate2's LayerNorm default; the converter writes it anyway


@dataclasses.dataclass
class TransformerConfig:
    vocab_size: int = 8000
    enc_layers: int = 3
    dec_layers: int = 3
    d_model: int = 256
    heads: int = 4
    ffn_dim: int = 1024
    dropout: float = 0.1
    activation: str = "relu"         # "relu" | "gelu" (erf form)
    tie_embeddings: bool = True      # one matrix: source, target and output projection
    position: str = "rope"           # the only scheme; recorded so checkpoints say so
    rope_base: float = 10000.0
    encoder_window: int = 0          # 0: full attention; W > 0: |i - j| <= W
    pad_id: int = 0

    def __post_init__(self):
        if self.activation not in ("relu", "gelu"):
            raise ValueError(f"activation must be 'relu' or 'gelu', got {self.activation!r}")
        if self.position != "rope":
            raise ValueError(f"position must be 'rope', got {self.position!r}")
        for name in ("vocab_size", "enc_layers", "dec_layers", "d_model", "heads", "ffn_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.heads or (self.d_model // self.heads) % 2:
            raise ValueError(f"d_model/heads must be an even integer, got {self.d_model}/{self.heads}")
        if self.encoder_window < 0:
            raise ValueError(f"encoder_window must be >= 0, got {self.encoder_window}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.heads


# ----------------------------------------------------------------------------
# small helpers


def key_bias(src_len: torch.Tensor, S) -> torch.Tensor:
    """0 where a key is a real token, MASK_VALUE at positions >= src_len. (B, 1, 1, S)"""
    pos = torch.arange(S, device=src_len.device)                        # (S,)
    pad = pos.unsqueeze(0) >= src_len.unsqueeze(1)                      # (B, S)
    return (pad.float() * MASK_VALUE)[:, None, None, :]


def gather_beams(x: torch.Tensor, parents: torch.Tensor) -> torch.Tensor:
    """x (B, K', ...) -> (B, K, ...), out[b, k] = x[b, parents[b, k]].

    A flat index_select exports to one Gather of contiguous rows; torch.gather
    would need an index tensor as large as the cache itself.
    """
    B, Kp = x.shape[0], x.shape[1]
    K = parents.shape[1]
    flat = (parents + torch.arange(B, device=parents.device).unsqueeze(1) * Kp).reshape(-1)  # (B*K,)
    rows = x.reshape(B * Kp, *x.shape[2:]).index_select(0, flat)        # (B*K, ...)
    return rows.reshape(B, K, *x.shape[2:])


class Rotary(nn.Module):
    """RoPE, half-split layout: x = [x1 | x2] -> [x1 c - x2 s | x2 c + x1 s]."""

    def __init__(self, head_dim: int, base: float):
        super().__init__()
        inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)   # (Dh/2,)

    def angles(self, positions: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """positions (N,) or () int -> cos, sin (N, Dh) or (Dh,)."""
        freqs = positions.to(torch.float32).unsqueeze(-1) * self.inv_freq   # (..., Dh/2)
        emb = torch.cat([freqs, freqs], dim=-1)                             # (..., Dh)
        return emb.cos(), emb.sin()

    @staticmethod
    def apply(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x1, x2 = x.chunk(2, dim=-1)
        return x * cos + torch.cat([-x2, x1], dim=-1) * sin


def attend(q, kT, v, bias=None):
    """softmax(q @ kT + bias) @ v; q is pre-scaled. Shapes broadcast: (..., N, Dh)."""
    scores = torch.matmul(q, kT)                                        # (..., N, T)
    if bias is not None:
        scores = scores + bias
    return torch.matmul(torch.softmax(scores, dim=-1), v)               # (..., N, Dh)


# ----------------------------------------------------------------------------
# attention, feed-forward


class SelfAttention(nn.Module):
    """Fused QKV projection [q | k | v] (CTranslate2's layout) + output projection."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.heads, self.head_dim = cfg.heads, cfg.head_dim
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.out = nn.Linear(cfg.d_model, cfg.d_model)

    def project(self, x, cos, sin):
        """x (..., N, d) -> q, k, v (..., H, N, Dh); q scaled, rope on q and k."""
        *lead, N, _ = x.shape
        qkv = self.qkv(x).reshape(*lead, N, 3, self.heads, self.head_dim)
        qkv = qkv.movedim(-4, -2)                                       # (..., 3, H, N, Dh)
        q, k, v = qkv.unbind(-4)
        q = Rotary.apply(q, cos, sin) * (1.0 / math.sqrt(self.head_dim))
        k = Rotary.apply(k, cos, sin)
        return q, k, v

    def merge(self, ctx):
        """(..., H, N, Dh) -> (..., N, d) through the output projection."""
        ctx = ctx.transpose(-3, -2)                                     # (..., N, H, Dh)
        return self.out(ctx.reshape(*ctx.shape[:-2], self.heads * self.head_dim))

    def full(self, x, cos, sin, bias):
        """Every query against every key. x (B, N, d), bias broadcastable to (B, H, N, N)."""
        q, k, v = self.project(x, cos, sin)                             # (B, H, N, Dh)
        return self.merge(attend(q, k.transpose(-1, -2), v, bias))

    def windowed(self, x, cos, sin, src_len, window: int):
        """Band |i - j| <= W, blockwise: queries in blocks of W vs 3W keys. x (B, S, d)."""
        B, S, _ = x.shape
        W = window
        q, k, v = self.project(x, cos, sin)                             # (B, H, S, Dh)
        n = (S + W - 1) // W
        extra = n * W - S
        q = F.pad(q, (0, 0, 0, extra)).reshape(B, self.heads, n, W, self.head_dim)
        k3, v3 = (_three_blocks(t, n, W) for t in (k, v))               # (B, H, n, 3W, Dh)
        real = 1.0 - key_bias(src_len, S)[:, :, 0, :, None] / MASK_VALUE  # (B, 1, S, 1) 1 = token
        valid = _three_blocks(real, n, W)[:, 0, :, :, 0] > 0.5          # (B, n, 3W) pads -> False
        r = torch.arange(W, device=x.device)
        c = torch.arange(3 * W, device=x.device)
        band = (c.unsqueeze(0) - W - r.unsqueeze(1)).abs() <= W         # (W, 3W)
        allowed = valid[:, None, :, None, :] & band                     # (B, 1, n, W, 3W)
        bias = (~allowed).float() * MASK_VALUE
        ctx = attend(q, k3.transpose(-1, -2), v3, bias)                 # (B, H, n, W, Dh)
        ctx = ctx.reshape(B, self.heads, n * W, self.head_dim)[:, :, :S]
        return self.merge(ctx)


def _three_blocks(t, n, W):
    """t (B, H, S, D) -> (B, H, n, 3W, D): for block j, rows [(j-1)W, (j+2)W)."""
    B, H, S, D = t.shape
    t = F.pad(t, (0, 0, W, n * W - S + W))                              # (B, H, (n+2)W, D)
    blocks = [t[:, :, o:o + n * W].reshape(B, H, n, W, D) for o in (0, W, 2 * W)]
    return torch.cat(blocks, dim=3)


class CrossAttention(nn.Module):
    """Q projection + fused KV projection [k | v] over the encoder output."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.heads, self.head_dim = cfg.heads, cfg.head_dim
        self.q = nn.Linear(cfg.d_model, cfg.d_model)
        self.kv = nn.Linear(cfg.d_model, 2 * cfg.d_model)
        self.out = nn.Linear(cfg.d_model, cfg.d_model)

    def memory(self, enc):
        """enc (B, S, d) -> kT (B, H, Dh, S), v (B, H, S, Dh); computed once per source."""
        B, S, _ = enc.shape
        kv = self.kv(enc).reshape(B, S, 2, self.heads, self.head_dim)
        k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)                      # (B, H, S, Dh) x2
        return k.transpose(-1, -2), v

    def forward(self, x, kT, v, bias):
        """x (B, N, d): N is T (teacher forcing) or K (beams) - the memory broadcasts."""
        B, N, _ = x.shape
        q = self.q(x).reshape(B, N, self.heads, self.head_dim).transpose(1, 2)    # (B, H, N, Dh)
        ctx = attend(q * (1.0 / math.sqrt(self.head_dim)), kT, v, bias)           # (B, H, N, Dh)
        return self.out(ctx.transpose(1, 2).reshape(B, N, self.heads * self.head_dim))


class FeedForward(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.linear_0 = nn.Linear(cfg.d_model, cfg.ffn_dim)
        self.linear_1 = nn.Linear(cfg.ffn_dim, cfg.d_model)
        self.act = nn.ReLU() if cfg.activation == "relu" else nn.GELU()

    def forward(self, x):
        return self.linear_1(self.act(self.linear_0(x)))


# ----------------------------------------------------------------------------
# layers


class EncoderLayer(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.window = cfg.encoder_window
        self.ln_attn = nn.LayerNorm(cfg.d_model, eps=LN_EPS)
        self.attn = SelfAttention(cfg)
        self.ln_ffn = nn.LayerNorm(cfg.d_model, eps=LN_EPS)
        self.ffn = FeedForward(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, cos, sin, src_len):
        """x (B, S, d) -> (B, S, d)."""
        h = self.ln_attn(x)
        if self.window:
            h = self.attn.windowed(h, cos, sin, src_len, self.window)
        else:
            h = self.attn.full(h, cos, sin, key_bias(src_len, x.shape[1]))
        x = x + self.drop(h)
        return x + self.drop(self.ffn(self.ln_ffn(x)))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.ln_self = nn.LayerNorm(cfg.d_model, eps=LN_EPS)
        self.self_attn = SelfAttention(cfg)
        self.ln_cross = nn.LayerNorm(cfg.d_model, eps=LN_EPS)
        self.cross_attn = CrossAttention(cfg)
        self.ln_ffn = nn.LayerNorm(cfg.d_model, eps=LN_EPS)
        self.ffn = FeedForward(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def rest(self, x, kT, v, bias):
        """Cross-attention and FFN blocks, shared by both decoding modes. x (B, N, d)."""
        x = x + self.drop(self.cross_attn(self.ln_cross(x), kT, v, bias))
        return x + self.drop(self.ffn(self.ln_ffn(x)))

    def forward(self, x, cos, sin, kT, v, bias):
        """Teacher forcing, causal. x (B, T, d) -> (B, T, d)."""
        T = x.shape[1]
        causal = torch.triu(torch.full((T, T), MASK_VALUE, device=x.device), diagonal=1)  # (T, T)
        x = x + self.drop(self.self_attn.full(self.ln_self(x), cos, sin, causal))
        return self.rest(x, kT, v, bias)

    def step(self, x, cos, sin, cache_kT, cache_v, kT, v, bias):
        """One token per beam. x (B, K, d); cache (B, K, H, Dh, T) / (B, K, H, T, Dh)."""
        q, k, vv = self.self_attn.project(self.ln_self(x).unsqueeze(2), cos, sin)  # (B, K, H, 1, Dh)
        cache_kT = torch.cat([cache_kT, k.transpose(-1, -2)], dim=-1)             # (B, K, H, Dh, T+1)
        cache_v = torch.cat([cache_v, vv], dim=-2)                                # (B, K, H, T+1, Dh)
        h = self.self_attn.merge(attend(q, cache_kT, cache_v))                    # (B, K, 1, d)
        x = x + self.drop(h.squeeze(2))
        return self.rest(x, kT, v, bias), cache_kT, cache_v


# ----------------------------------------------------------------------------
# the model


class TransformerSeq2Seq(Seq2SeqModel):
    arch = "transformer"

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg = cfg
        self.src_emb = nn.Embedding(cfg.vocab_size, cfg.d_model, padding_idx=cfg.pad_id)
        self.tgt_emb = self.src_emb if cfg.tie_embeddings else nn.Embedding(cfg.vocab_size, cfg.d_model, padding_idx=cfg.pad_id)
        nn.init.normal_(self.src_emb.weight, std=cfg.d_model ** -0.5)
        nn.init.normal_(self.tgt_emb.weight, std=cfg.d_model ** -0.5)
        with torch.no_grad():
            self.src_emb.weight[cfg.pad_id].zero_()
            self.tgt_emb.weight[cfg.pad_id].zero_()
        self.emb_scale = math.sqrt(cfg.d_model)
        self.rotary = Rotary(cfg.head_dim, cfg.rope_base)
        self.enc_layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.enc_layers))
        self.enc_ln = nn.LayerNorm(cfg.d_model, eps=LN_EPS)
        self.dec_layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.dec_layers))
        self.dec_ln = nn.LayerNorm(cfg.d_model, eps=LN_EPS)
        self.out = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.out.weight = self.tgt_emb.weight
        self.drop = nn.Dropout(cfg.dropout)

    # -- graph contract ------------------------------------------------------

    def graph_spec(self) -> GraphSpec:
        H, Dh = self.cfg.heads, self.cfg.head_dim
        memory, state = {}, {}
        for i in range(self.cfg.dec_layers):
            memory[f"cross_k_{i}"] = ["B", H, Dh, "S"]
            memory[f"cross_v_{i}"] = ["B", H, "S", Dh]
        for i in range(self.cfg.dec_layers):
            state[f"self_k_{i}"] = ["B", H, Dh, "T"]
            state[f"self_v_{i}"] = ["B", H, "T", Dh]
        return GraphSpec(memory=memory, state=state)

    def encode(self, src_ids, src_len) -> Tuple[Tensors, Tensors]:
        B, S = src_ids.shape
        x = self.drop(self.src_emb(src_ids) * self.emb_scale)          # (B, S, d)
        cos, sin = self.rotary.angles(torch.arange(S, device=src_ids.device))   # (S, Dh)
        for layer in self.enc_layers:
            x = layer(x, cos, sin, src_len)
        enc = self.enc_ln(x)                                            # (B, S, d)
        memory, state = {}, {}
        for i, layer in enumerate(self.dec_layers):
            memory[f"cross_k_{i}"], memory[f"cross_v_{i}"] = layer.cross_attn.memory(enc)
        for i, _ in enumerate(self.dec_layers):
            kT = memory[f"cross_k_{i}"]
            state[f"self_k_{i}"] = kT[..., :0]                          # (B, H, Dh, 0)
            state[f"self_v_{i}"] = kT[..., :0].transpose(-1, -2)        # (B, H, 0, Dh)
        return memory, state

    def step(self, tokens, parents, step, state: Tensors, memory: Tensors, src_len) -> Tuple[torch.Tensor, Tensors]:
        x = self.drop(self.tgt_emb(tokens) * self.emb_scale)           # (B, K, d)
        cos, sin = self.rotary.angles(step)                             # (Dh,)
        S = memory["cross_k_0"].shape[-1]
        bias = key_bias(src_len, S)                                     # (B, 1, 1, S)
        next_state = {}
        for i, layer in enumerate(self.dec_layers):
            cache_kT = gather_beams(state[f"self_k_{i}"], parents)      # (B, K, H, Dh, T)
            cache_v = gather_beams(state[f"self_v_{i}"], parents)       # (B, K, H, T, Dh)
            x, cache_kT, cache_v = layer.step(x, cos, sin, cache_kT, cache_v,
                                              memory[f"cross_k_{i}"], memory[f"cross_v_{i}"], bias)
            next_state[f"self_k_{i}"], next_state[f"self_v_{i}"] = cache_kT, cache_v
        return self.out(self.dec_ln(x)), next_state                    # (B, K, V)

    def forward(self, src_ids, src_len, tgt_in) -> torch.Tensor:
        """Teacher forcing: all target positions at once, causal; equals step() per token."""
        memory, _ = self.encode(src_ids, src_len)
        T = tgt_in.shape[1]
        x = self.drop(self.tgt_emb(tgt_in) * self.emb_scale)           # (B, T, d)
        cos, sin = self.rotary.angles(torch.arange(T, device=tgt_in.device))    # (T, Dh)
        bias = key_bias(src_len, src_ids.shape[1])                      # (B, 1, 1, S)
        for i, layer in enumerate(self.dec_layers):
            x = layer(x, cos, sin, memory[f"cross_k_{i}"], memory[f"cross_v_{i}"], bias)
        return self.out(self.dec_ln(x))                                 # (B, T, V)
