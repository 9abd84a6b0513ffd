"""Dynamic int8 quantization of a model directory, with a before/after quality check.

    quantize_model_dir("models/lstm")                  # adds *.int8.onnx in place
    quantize_model_dir("models/lstm", out_dir="models/lstm-int8", eval_data="valid.jsonl")

Weights of MatMul/Gemm (and Gather: the embedding tables) become int8;
activations are quantized on the fly per call (onnxruntime's
quantize_dynamic, MatMulInteger/DynamicQuantizeLinear). The ONNX LSTM op of
the encoder is left in float32 by default: its int8 kernel (DynamicQuantizeLSTM)
was measured slower on this CPU for a small gain in size (see
benchmarks/results/int8.md), and the encoder runs once per source.

Quality is measured through the ONNX graphs themselves, float32 vs int8:
- teacher-forced perplexity on held-out (source, target) pairs: eval_data
  (.jsonl of {"source", "target"}, or a .txt corpus cut into halves) or, without
  it, the float32 model's own greedy continuations of synthetic sources;
- greedy agreement: the share of greedy tokens the int8 model produces
  identically (up to its first divergence) on the same held-out sources.
A RuntimeWarning with the numbers is raised when int8 drifts too far.

Needs onnx and onnxruntime (no torch).
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import warnings
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from ltg_engine import model_dir as md

DEFAULT_OP_TYPES = ("MatMul", "Gemm", "Gather")
MIN_AGREEMENT = 0.90          # warn below this greedy agreement
MAX_PPL_INCREASE = 0.10       # warn above +10% perplexity
EVAL_PAIRS = 48
EVAL_NEW_TOKENS = 32

Pair = Tuple[List[int], List[int]]


class QuantizationDrift(RuntimeWarning):
    """The int8 graphs disagree with float32 more than the thresholds allow."""


@dataclass
class QuantizationReport:
    ppl_float32: float
    ppl_int8: float
    agreement: float              # greedy tokens identical up to the first divergence, pooled
    exact_match: float            # share of sources whose greedy outputs are identical
    eval_source: str              # what the perplexity was measured on
    bytes_float32: int
    bytes_int8: int
    op_types: Tuple[str, ...]

    @property
    def ppl_increase(self) -> float:
        return self.ppl_int8 / self.ppl_float32 - 1.0

    def lines(self) -> List[str]:
        return [
            f"  perplexity ({self.eval_source}): float32 {self.ppl_float32:.3f} -> int8 {self.ppl_int8:.3f} "
            f"({self.ppl_increase:+.1%})",
            f"  greedy agreement: {self.agreement:.1%} of tokens, {self.exact_match:.1%} of outputs identical",
            f"  graph bytes: float32 {self.bytes_float32:,} -> int8 {self.bytes_int8:,} "
            f"({self.bytes_int8 / self.bytes_float32:.0%})",
        ]


# ---------------------------------------------------------------- quantization

def quantize_graph(src: str, dst: str, op_types: Sequence[str] = DEFAULT_OP_TYPES) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # quantize_dynamic logs a generic "consider pre-processing" warning on the root logger
    # every call; shape inference changes nothing for these graphs, so keep the report clean.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(src, dst, op_types_to_quantize=list(op_types), weight_type=QuantType.QInt8,
                         per_channel=False, extra_options={"MatMulConstBOnly": True})
    finally:
        root.setLevel(level)


def quantize_model_dir(model_dir: str, out_dir: Optional[str] = None, eval_data: Optional[str] = None,
                       report: Callable[[str], None] = print, op_types: Sequence[str] = DEFAULT_OP_TYPES,
                       evaluate: bool = True) -> QuantizationReport:
    """Write encoder.int8.onnx + decoder_step.int8.onnx into out_dir (default: model_dir).

    config.json gains the files (re-hashed) and `"quantized"` (what was done).
    Returns the quality report (None with evaluate=False). Without eval_data the
    perplexity is measured on the float32 model's greedy outputs.
    """
    source = md.load_model_dir(model_dir)                   # hashes checked before anything
    out_dir = os.fspath(out_dir) if out_dir else source.path
    if os.path.abspath(out_dir) != os.path.abspath(source.path):
        _copy_model_dir(source, out_dir)
    config = json.loads(json.dumps(source.config))
    int8_names = md.GRAPH_FILES["int8"]
    for graph, name in md.GRAPH_FILES["float32"].items():
        report(f"quantizing {name} -> {int8_names[graph]} (dynamic int8: {', '.join(op_types)})")
        quantize_graph(os.path.join(out_dir, name), os.path.join(out_dir, int8_names[graph]), op_types)
        config["files"][int8_names[graph]] = None
    config["quantized"] = [{"precision": "int8", "method": "onnxruntime.quantization.quantize_dynamic",
                            "weight_type": "QInt8", "op_types": list(op_types),
                            "files": sorted(int8_names.values())}]
    md.write_config(out_dir, config)

    sizes = {p: sum(os.path.getsize(os.path.join(out_dir, n)) for n in names.values())
             for p, names in md.GRAPH_FILES.items()}
    if not evaluate:
        report(f"wrote {out_dir}")
        return None
    result = compare_precisions(out_dir, eval_data, sizes, tuple(op_types))
    for line in result.lines():
        report(line)
    _warn_on_drift(result)
    _record_quality(out_dir, config, result)
    report(f"wrote {out_dir}; use it with Generator.load(..., precision='int8') or `ltg generate --int8`")
    return result


def _copy_model_dir(source, out_dir: str) -> None:
    if os.path.exists(out_dir) and os.listdir(out_dir):
        raise FileExistsError(f"{out_dir} exists and is not empty; choose another --out")
    os.makedirs(out_dir, exist_ok=True)
    for name in list(source.config["files"]) + [md.CONFIG_NAME]:
        shutil.copyfile(source.file(name), os.path.join(out_dir, name))


def _warn_on_drift(r: QuantizationReport) -> None:
    problems = []
    if r.agreement < MIN_AGREEMENT:
        problems.append(f"greedy agreement {r.agreement:.1%} < {MIN_AGREEMENT:.0%}")
    if r.ppl_increase > MAX_PPL_INCREASE:
        problems.append(f"perplexity {r.ppl_float32:.3f} -> {r.ppl_int8:.3f} "
                        f"({r.ppl_increase:+.1%} > +{MAX_PPL_INCREASE:.0%})")
    if problems:
        warnings.warn("int8 model drifts from float32: " + "; ".join(problems)
                      + ". Consider fewer op types (e.g. op_types=('MatMul',)) or keep float32.",
                      QuantizationDrift, stacklevel=3)


def _record_quality(out_dir: str, config: dict, r: QuantizationReport) -> None:
    config["quantized"][0]["quality"] = {
        "eval": r.eval_source, "ppl_float32": round(r.ppl_float32, 4), "ppl_int8": round(r.ppl_int8, 4),
        "greedy_agreement": round(r.agreement, 4), "greedy_exact_match": round(r.exact_match, 4)}
    config["files"] = {name: None for name in config["files"]}
    md.write_config(out_dir, config)


# ---------------------------------------------------------------- evaluation

def compare_precisions(model_dir: str, eval_data: Optional[str], sizes: dict,
                       op_types: Tuple[str, ...]) -> QuantizationReport:
    from ltg_engine.generator import Generator

    fp32 = Generator.load(model_dir, threads=1)
    int8 = Generator.load(model_dir, threads=1, precision="int8")
    if eval_data:
        pairs = load_eval_pairs(eval_data, fp32.tokenizer, limit=EVAL_PAIRS)
        eval_source = f"{len(pairs)} held-out pairs from {os.path.basename(eval_data)}"
        sources = [s for s, _ in pairs]
    else:
        sources = synthetic_sources(fp32, EVAL_PAIRS)
        greedy = fp32.generate_ids(sources, max_new_tokens=EVAL_NEW_TOKENS)
        pairs = [(s, r.token_ids) for s, r in zip(sources, greedy) if r.token_ids]
        eval_source = f"float32 greedy continuations of {len(sources)} synthetic sources"
    agreement, exact = greedy_agreement(fp32, int8, sources)
    return QuantizationReport(
        ppl_float32=perplexity(fp32, pairs), ppl_int8=perplexity(int8, pairs),
        agreement=agreement, exact_match=exact, eval_source=eval_source,
        bytes_float32=sizes["float32"], bytes_int8=sizes["int8"], op_types=op_types)


def synthetic_sources(gen, n: int, seed: int = 0) -> List[List[int]]:
    """Random ids from the ordinary vocabulary (specials excluded), lengths 4..32."""
    rng = np.random.default_rng(seed)
    low = max(gen.model_dir.special_ids.values()) + 1
    return [rng.integers(low, gen.vocab_size, size=int(rng.integers(4, 33))).tolist() for _ in range(n)]


def load_eval_pairs(path: str, tokenizer, limit: int = EVAL_PAIRS, max_source: int = 256,
                    max_target: int = 64) -> List[Pair]:
    """(source ids, target ids) from .jsonl {"source","target"} or a .txt corpus (documents cut in half)."""
    texts: List[Tuple[str, Optional[str]]] = []
    with open(path, encoding="utf-8") as f:
        if path.lower().endswith(".jsonl"):
            for line in f:
                if line.strip():
                    obj = json.loads(line)
                    texts.append((obj["source"], obj["target"]))
        else:
            raw = f.read()
            docs = raw.split("\n\n") if "\n\n" in raw else raw.split("\n")
            texts = [(d.strip(), None) for d in docs if d.strip()]
    pairs: List[Pair] = []
    for source, target in texts:
        if target is not None:
            src, tgt = tokenizer.encode(source), tokenizer.encode(target)
        else:
            ids = tokenizer.encode(source)
            half = len(ids) // 2
            src, tgt = ids[:half], ids[half:]
        if src and tgt:
            pairs.append((src[-max_source:], tgt[:max_target]))
        if len(pairs) >= limit:
            break
    if not pairs:
        raise ValueError(f"{path}: no usable (source, target) pairs for evaluation")
    return pairs


def perplexity(gen, pairs: Sequence[Pair], batch: int = 16) -> float:
    """exp(mean NLL per target token, eos included), teacher-forced through the ONNX graphs."""
    total, count = 0.0, 0
    for i in range(0, len(pairs), batch):
        nll, n = _batch_nll(gen, pairs[i:i + batch])
        total, count = total + nll, count + n
    return math.exp(total / max(count, 1))


def _batch_nll(gen, pairs: Sequence[Pair]) -> Tuple[float, int]:
    contract = gen.contract
    B = len(pairs)
    src = np.full((B, max(len(s) for s, _ in pairs)), gen.pad_id, dtype=np.int64)
    for b, (s, _) in enumerate(pairs):
        src[b, :len(s)] = s
    src_len = np.array([len(s) for s, _ in pairs], dtype=np.int64)
    outs = gen.encoder.run(None, {"src_ids": src, "src_len": src_len})
    n_mem = len(contract["memory"])
    memory = {"memory." + n: v for n, v in zip(contract["memory"], outs[:n_mem])}
    state = {"state." + n: v[:, None] for n, v in zip(contract["state"], outs[n_mem:])}
    targets = [list(t) + [gen.eos_id] for _, t in pairs]
    T = max(len(t) for t in targets)
    tokens = np.full((B, 1), gen.bos_id, dtype=np.int64)
    parents = np.zeros((B, 1), dtype=np.int64)
    out_names = ["logits"] + ["next_state." + n for n in contract["state"]]
    total, count = 0.0, 0
    for t in range(T):
        feeds = {"tokens": tokens, "parents": parents, "step": np.array(t, dtype=np.int64),
                 "src_len": src_len, **state, **memory}
        logits, *next_state = gen.decoder.run(out_names, feeds)
        logp = _log_softmax(logits[:, 0].astype(np.float64))            # (B, V)
        gold = np.array([tg[t] if t < len(tg) else gen.pad_id for tg in targets], dtype=np.int64)
        live = np.array([t < len(tg) for tg in targets])
        total -= float(logp[np.arange(B), gold][live].sum())
        count += int(live.sum())
        state = {"state." + n: v for n, v in zip(contract["state"], next_state)}
        tokens = gold[:, None].copy()
    return total, count


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def greedy_agreement(a, b, sources: Sequence[Sequence[int]],
                     max_new_tokens: int = EVAL_NEW_TOKENS) -> Tuple[float, float]:
    """(tokens identical up to the first divergence / tokens of the longer output, share identical)."""
    ra = a.generate_ids(sources, max_new_tokens=max_new_tokens)
    rb = b.generate_ids(sources, max_new_tokens=max_new_tokens)
    same, total, exact = 0, 0, 0
    for x, y in zip(ra, rb):
        x, y = x.token_ids, y.token_ids
        prefix = next((i for i, (p, q) in enumerate(zip(x, y)) if p != q), min(len(x), len(y)))
        same += prefix
        total += max(len(x), len(y), 1)
        exact += x == y
    return same / total, exact / len(sources)
