"""Session tuning: the effect of each onnxruntime session knob on load time and decode speed.

    python benchmarks/session_tuning.py [MODEL_DIR] [--rounds 5] [--out benchmarks/results/session_tuning.md]

Knobs (ltg_engine.sessions.SessionConfig): intra-op threads, spinning,
graph optimization level, and pre-optimized graph files
(optimized_model_dir: optimize once, save, load later with optimization off).
Each configuration is loaded once; then rounds alternate over all of them
with the same inputs (absolute times drift on a shared machine, ratios
hold). Reported: median load seconds, median greedy tokens/s at batch 1 and
batch 8 (fixed length: min_new_tokens = max_new_tokens), and the ratio to
the defaults.
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

NEW_TOKENS = 48
SOURCE_TOKENS = 64


def configs(cores: int, optimized_dir: str):
    """(label, Generator.load kwargs); the first is the defaults."""
    rows = [("defaults (threads: onnxruntime's choice, no spinning, optimization all)", {}),
            ("spinning", {"spinning": True})]
    for t in sorted({1, 2, cores}):
        rows.append((f"threads={t}", {"threads": t}))
        rows.append((f"threads={t}, spinning", {"threads": t, "spinning": True}))
    for level in ("disable", "basic", "extended"):
        rows.append((f"optimization={level}", {"optimization": level}))
    rows.append(("pre-optimized files (saved at level all, loaded with optimization off)",
                 {"optimized_model_dir": optimized_dir}))
    return rows


def time_load(model_dir: str, kwargs: dict, repeats: int = 3):
    times, gen = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        gen = Generator.load(model_dir, **kwargs)
        times.append(time.perf_counter() - t0)
    return gen, statistics.median(times)


def tokens_per_second(gen, sources) -> float:
    t0 = time.perf_counter()
    results = gen.generate_ids(sources, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS)
    dt = time.perf_counter() - t0
    return sum(len(r.token_ids) for r in results) / dt


def prepare_optimized(model_dir: str, optimized_dir: str) -> None:
    """Optimize once (level all) and save the graphs: the first load with optimized_model_dir does it."""
    Generator.load(model_dir, optimized_model_dir=optimized_dir)


def run(model_dir: str, rounds: int):
    cores = os.cpu_count() or 1
    optimized_dir = tempfile.mkdtemp(prefix="ltg_optimized_")
    prepare_optimized(model_dir, optimized_dir)
    rows = configs(cores, optimized_dir)
    rng = np.random.default_rng(0)
    loaded = []
    for label, kwargs in rows:
        gen, load_s = time_load(model_dir, kwargs)
        loaded.append((label, kwargs, gen, load_s))
    low = 4
    vocab = loaded[0][2].vocab_size
    one = [rng.integers(low, vocab, SOURCE_TOKENS).tolist()]
    eight = [rng.integers(low, vocab, SOURCE_TOKENS).tolist() for _ in range(8)]
    for _, _, gen, _ in loaded:                      # warm up every session once
        tokens_per_second(gen, one)
    speed = {label: {"b1": [], "b8": []} for label, *_ in loaded}
    for r in range(rounds):
        order = loaded if r % 2 == 0 else loaded[::-1]
        for label, _, gen, _ in order:
            speed[label]["b1"].append(tokens_per_second(gen, one))
            speed[label]["b8"].append(tokens_per_second(gen, eight))
    table = []
    base = {k: statistics.median(v) for k, v in speed[rows[0][0]].items()}
    for label, kwargs, _, load_s in loaded:
        b1, b8 = statistics.median(speed[label]["b1"]), statistics.median(speed[label]["b8"])
        table.append((label, load_s, b1, b1 / base["b1"], b8, b8 / base["b8"]))
    return table


def machine_info() -> str:
    import onnxruntime as ort

    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",) * 3
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical cores, "
            f"Python {platform.python_version()}, onnxruntime {ort.__version__}, "
            f"load average at start {load[0]:.1f}")


def to_markdown(table, model_dir: str, rounds: int, info: str) -> str:
    lines = [
        "# Session tuning",
        "",
        f"Model: `{model_dir}`. Machine: {info}.",
        f"Greedy decoding, {SOURCE_TOKENS}-token random sources, exactly {NEW_TOKENS} new tokens; "
        f"median of {rounds} alternating rounds; load = median of 3 `Generator.load` calls "
        "(hash check included).",
        "",
        "| configuration | load s | tok/s batch 1 | vs defaults | tok/s batch 8 | vs defaults |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, load_s, b1, r1, b8, r8 in table:
        lines.append(f"| {label} | {load_s:.3f} | {b1:.0f} | {r1:.2f}x | {b8:.0f} | {r8:.2f}x |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model_dir", nargs="?", default=None, help="model directory (default: the bundled model)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", default=None, help="write the markdown table here (default: print only)")
    args = p.parse_args(argv)
    if args.model_dir is None:
        from ltg_engine.bundled import bundled_model_dir

        args.model_dir = bundled_model_dir()
    warnings.simplefilter("ignore")
    info = machine_info()
    table = run(args.model_dir, args.rounds)
    text = to_markdown(table, os.path.relpath(args.model_dir), args.rounds, info)
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
