"""Recipe: which op types to quantize to int8, measured -> benchmarks/results/int8.md.

    python export/recipes/int8_study.py MODEL_DIR [--eval-data valid.jsonl] [--out benchmarks/results/int8.md]

For each variant (set of op types given to quantize_dynamic) the model
directory is copied and quantized; then all variants and float32 decode the
same sources in alternating rounds. Reported: graph bytes, greedy tokens/s
at batch 1 and 8, encoder ms for a 256-token source, teacher-forced
perplexity and greedy agreement vs float32 (export/quantize.py).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings

import numpy as np

from ltg_engine import Generator
from ltg_engine.export.quantize import quantize_model_dir

VARIANTS = {
    "MatMul": ("MatMul",),
    "MatMul+Gemm+Gather (default)": ("MatMul", "Gemm", "Gather"),
    "MatMul+Gemm+Gather+LSTM": ("MatMul", "Gemm", "Gather", "LSTM"),
}
NEW_TOKENS = 48


def _speed(gen, sources) -> float:
    t0 = time.perf_counter()
    results = gen.generate_ids(sources, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS)
    return sum(len(r.token_ids) for r in results) / (time.perf_counter() - t0)


def _encoder_ms(gen, src) -> float:
    """Best of 5 runs (a busy machine only ever adds time)."""
    src_len = np.array([src.shape[1]] * src.shape[0], dtype=np.int64)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        gen.encoder.run(None, {"src_ids": src, "src_len": src_len})
        times.append(time.perf_counter() - t0)
    return min(times) * 1000


def study(model_dir: str, eval_data, rounds: int, threads: int):
    work = tempfile.mkdtemp(prefix="ltg_int8_")
    rows = {}
    for label, ops in VARIANTS.items():
        out = os.path.join(work, label.split(" ")[0].replace("+", "_"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            report = quantize_model_dir(model_dir, out_dir=out, eval_data=eval_data, op_types=ops,
                                        report=lambda *_: None)
        rows[label] = {"report": report, "gen": Generator.load(out, precision="int8", threads=threads)}
    rows = {"float32": {"report": None, "gen": Generator.load(model_dir, threads=threads)}, **rows}
    rng = np.random.default_rng(0)
    vocab = rows["float32"]["gen"].vocab_size
    one = [rng.integers(4, vocab, 64).tolist()]
    eight = [rng.integers(4, vocab, 64).tolist() for _ in range(8)]
    long_src = rng.integers(4, vocab, (1, 256)).astype(np.int64)
    for row in rows.values():
        _speed(row["gen"], one)
        row.update(b1=[], b8=[], enc=[])
    labels = list(rows)
    for r in range(rounds):
        for label in (labels if r % 2 == 0 else labels[::-1]):
            row = rows[label]
            row["b1"].append(_speed(row["gen"], one))
            row["b8"].append(_speed(row["gen"], eight))
            row["enc"].append(_encoder_ms(row["gen"], long_src))
    return rows


def to_markdown(rows, model_dir: str, eval_data, rounds: int, threads: int) -> str:
    import onnxruntime as ort

    base = rows["float32"]
    b1, b8 = statistics.median(base["b1"]), statistics.median(base["b8"])
    fsize = base["gen"].model_dir
    f_bytes = sum(os.path.getsize(fsize.file(n)) for n in ("encoder.onnx", "decoder_step.onnx"))
    lines = [
        "# int8 dynamic quantization",
        "",
        f"Model: `{os.path.relpath(model_dir)}`; onnxruntime {ort.__version__}; {os.cpu_count()} cores "
        f"({platform.machine()}), threads={threads}, load average {os.getloadavg()[0]:.1f} at the end.",
        f"Greedy, 64-token random sources, exactly {NEW_TOKENS} new tokens, median of {rounds} alternating "
        "rounds; encoder = best of 5 runs on a 256-token source.",
        f"Quality: teacher-forced perplexity on {eval_data or 'float32 greedy outputs of synthetic sources'}; "
        "agreement = greedy tokens identical to float32 up to the first divergence.",
        "",
        "| graphs | bytes (enc+dec) | tok/s b1 | vs fp32 | tok/s b8 | vs fp32 | encoder ms | perplexity | greedy agreement | identical outputs |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, row in rows.items():
        r = row["report"]
        s1, s8 = statistics.median(row["b1"]), statistics.median(row["b8"])
        enc = statistics.median(row["enc"])
        size = f_bytes if r is None else r.bytes_int8
        ppl = f"{base_ppl(rows):.2f}" if r is None else f"{r.ppl_int8:.2f} ({r.ppl_increase:+.1%})"
        agree = "-" if r is None else f"{r.agreement:.1%}"
        exact = "-" if r is None else f"{r.exact_match:.1%}"
        lines.append(f"| {label} | {size / 1e6:.1f} MB | {s1:.0f} | {s1 / b1:.2f}x | {s8:.0f} | {s8 / b8:.2f}x "
                     f"| {enc:.1f} | {ppl} | {agree} | {exact} |")
    return "\n".join(lines) + "\n"


def base_ppl(rows) -> float:
    return next(r["report"].ppl_float32 for r in rows.values() if r["report"] is not None)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model_dir")
    p.add_argument("--eval-data", default=None)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    rows = study(args.model_dir, args.eval_data, args.rounds, args.threads)
    text = to_markdown(rows, args.model_dir, args.eval_data and os.path.basename(args.eval_data),
                       args.rounds, args.threads)
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
