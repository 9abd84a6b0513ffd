"""Our Transformer weights -> a CTranslate2 model directory (the peer engine).

    convert_to_ctranslate2(model, vocab_tokens, out_dir, quantization=None)

Builds a ctranslate2.specs.TransformerSpec from TransformerSeq2Seq weights so
benchmarks and tests run CTranslate2 on exactly the weights our ONNX graphs
carry. ctranslate2 is the optional `bench` extra: imported inside functions.

How each choice of ours maps onto the spec (see PEERS.md for the traps):
  pre-norm layers, final LayerNorm      pre_norm=True (its default)
  LayerNorm eps 1e-5                    config.layer_norm_epsilon, written explicitly
  embeddings * sqrt(d_model)            scale_embeddings=True on encoder and decoder
  RoPE, half-split, from position 0     rotary_dim=0 (all dims), rotary_interleave=False,
                                        rotary_base; no position table at all
  self-attn qkv Linear(d, 3d) [q|k|v]   linear_0 (fused QKV), linear_1 = output
  cross-attn q, kv Linear(d, 2d) [k|v]  linear_0 = Q, linear_1 = fused KV, linear_2 = output
  FFN linear_0 -> relu|gelu -> linear_1 linear_0 / linear_1, Activation.RELU | GELU (erf)
  output projection (tied or not)       decoder.projection, no bias
Not expressible: encoder_window > 0 (CTranslate2's sliding_window truncates the
decoder's KV cache; it has no encoder band mask), so such models are refused.

Call Translator.translate_batch with max_input_length=0, or CTranslate2
truncates sources at 1024 tokens.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np

SPECIAL_TOKENS = ["<pad>", "<unk>", "<s>", "</s>"]   # ids 0..3 = pad, unk, bos, eos


def placeholder_vocabulary(vocab_size: int) -> List[str]:
    """Token strings that map 1:1 onto ids when no tokenizer is at hand: specials, then "<id>"."""
    return SPECIAL_TOKENS[:vocab_size] + [f"<{i}>" for i in range(len(SPECIAL_TOKENS), vocab_size)]


def ids_to_tokens(vocab_tokens: Sequence[str], ids) -> List[str]:
    return [vocab_tokens[int(i)] for i in ids]


def tokens_to_ids(vocab_tokens: Sequence[str], tokens) -> List[int]:
    index = {t: i for i, t in enumerate(vocab_tokens)}
    return [index[t] for t in tokens]


def convert_to_ctranslate2(model, vocab_tokens: Optional[Sequence[str]], out_dir: str,
                           quantization: Optional[str] = None, force: bool = True) -> str:
    """Write a CTranslate2 model directory for `model` (a TransformerSeq2Seq); returns out_dir.

    vocab_tokens: one string per id (the tokenizer's pieces), or None for
    placeholder_vocabulary(). Ids 1, 2, 3 become CTranslate2's unk, bos/decoder
    start and eos tokens, whatever their strings.
    """
    from ctranslate2.converters import Converter

    spec = build_spec(model, vocab_tokens)

    class _SpecConverter(Converter):
        def _load(self):
            return spec

    return _SpecConverter().convert(out_dir, quantization=quantization, force=force)


def build_spec(model, vocab_tokens: Optional[Sequence[str]] = None):
    """A validated-in-convert ctranslate2 TransformerSpec filled with the model's weights."""
    from ctranslate2.specs import common_spec, transformer_spec

    cfg = model.cfg
    if getattr(model, "arch", None) != "transformer":
        raise ValueError(f"only the transformer architecture converts to CTranslate2, got {model.arch!r}")
    if cfg.encoder_window:
        raise ValueError(
            f"encoder_window={cfg.encoder_window}: CTranslate2 cannot express encoder local attention "
            "(its sliding_window truncates the decoder cache); convert a full-attention model")
    tokens = list(vocab_tokens) if vocab_tokens is not None else placeholder_vocabulary(cfg.vocab_size)
    if len(tokens) != cfg.vocab_size or len(set(tokens)) != len(tokens):
        raise ValueError(f"vocab_tokens must be {cfg.vocab_size} distinct strings, got {len(tokens)} "
                         f"({len(set(tokens))} distinct)")

    activation = {"relu": common_spec.Activation.RELU, "gelu": common_spec.Activation.GELU}[cfg.activation]
    rope = dict(rotary_dim=0, rotary_interleave=False, rotary_base=cfg.rope_base)
    encoder = transformer_spec.TransformerEncoderSpec(cfg.enc_layers, cfg.heads, pre_norm=True,
                                                      activation=activation, **rope)
    decoder = transformer_spec.TransformerDecoderSpec(cfg.dec_layers, cfg.heads, pre_norm=True,
                                                      activation=activation, **rope)
    spec = transformer_spec.TransformerSpec(encoder, decoder)

    _fill_encoder(spec.encoder, model)
    _fill_decoder(spec.decoder, model)

    spec.config.layer_norm_epsilon = model.enc_ln.eps
    spec.config.unk_token, spec.config.bos_token, spec.config.eos_token = tokens[1], tokens[2], tokens[3]
    spec.config.decoder_start_token = tokens[2]
    spec.register_source_vocabulary(tokens)
    spec.register_target_vocabulary(tokens)
    return spec


# ---------------------------------------------------------------- weights

def _np(t) -> np.ndarray:
    return t.detach().float().cpu().numpy().copy()


def _linear(spec, linear) -> None:
    spec.weight = _np(linear.weight)                                    # torch [out, in] = CT2's order
    if linear.bias is not None:
        spec.bias = _np(linear.bias)


def _layer_norm(spec, ln) -> None:
    spec.gamma = _np(ln.weight)
    spec.beta = _np(ln.bias)


def _ffn(spec, norm, ffn) -> None:
    _layer_norm(spec.layer_norm, norm)
    _linear(spec.linear_0, ffn.linear_0)
    _linear(spec.linear_1, ffn.linear_1)


def _fill_encoder(spec, model) -> None:
    spec.scale_embeddings = True
    spec.embeddings[0].weight = _np(model.src_emb.weight)
    _layer_norm(spec.layer_norm, model.enc_ln)
    for layer_spec, layer in zip(spec.layer, model.enc_layers):
        att = layer_spec.self_attention
        _layer_norm(att.layer_norm, layer.ln_attn)
        _linear(att.linear[0], layer.attn.qkv)
        _linear(att.linear[1], layer.attn.out)
        _ffn(layer_spec.ffn, layer.ln_ffn, layer.ffn)


def _fill_decoder(spec, model) -> None:
    spec.scale_embeddings = True
    spec.embeddings.weight = _np(model.tgt_emb.weight)
    _layer_norm(spec.layer_norm, model.dec_ln)
    _linear(spec.projection, model.out)
    for layer_spec, layer in zip(spec.layer, model.dec_layers):
        att = layer_spec.self_attention
        _layer_norm(att.layer_norm, layer.ln_self)
        _linear(att.linear[0], layer.self_attn.qkv)
        _linear(att.linear[1], layer.self_attn.out)
        cross = layer_spec.attention
        _layer_norm(cross.layer_norm, layer.ln_cross)
        _linear(cross.linear[0], layer.cross_attn.q)
        _linear(cross.linear[1], layer.cross_attn.kv)
        _linear(cross.linear[2], layer.cross_attn.out)
        _ffn(layer_spec.ffn, layer.ln_ffn, layer.ffn)
