"""Micro-benchmark of the search work alone: compiled core vs pure-Python reference.

Random logits are generated up front (EOS masked so no row finishes early and
every step does the same work); a step function just hands them out, so the
timing is advance() only. A and B alternate within each repeat; medians of
the per-step time are reported with the ratio.

    python benchmarks/bench_search.py --out benchmarks/results/search.md
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np

from ltg_engine import search_ref
from ltg_engine.options import GenerationOptions
from ltg_engine.search import run

try:
    from ltg_engine import _search
except ImportError:
    raise SystemExit("build the extension first: python setup.py build_ext --inplace")

EOS = 1


def make_logits(batch, beams, vocab, steps, seed=0):
    """A list of per-step logits; step 0 has K=1, later steps K=beams."""
    rng = np.random.default_rng(seed)
    pool = rng.standard_normal((4, batch, beams, vocab)).astype(np.float32) * 3.0
    pool[..., EOS] = -np.inf
    first = np.ascontiguousarray(pool[0, :, :1])
    return [first] + [pool[s % 4] for s in range(1, steps)]


def time_one(module, options, batch, vocab, logits) -> float:
    """Seconds per step for one full run."""
    search = module.make_search(options, batch, vocab, 0, EOS)
    feed = iter(logits)
    start = time.perf_counter()
    run(search, lambda *_: next(feed))
    return (time.perf_counter() - start) / len(logits)


def bench(mode, vocab, batch, steps, repeats):
    beams = 4 if mode == "beam4" else 1
    options = GenerationOptions(max_new_tokens=steps, num_beams=beams)
    logits = make_logits(batch, beams, vocab, steps)
    compiled, reference = [], []
    for _ in range(repeats):   # alternate A/B
        compiled.append(time_one(_search, options, batch, vocab, logits))
        reference.append(time_one(search_ref, options, batch, vocab, logits))
    c, r = statistics.median(compiled), statistics.median(reference)
    return dict(mode=mode, vocab=vocab, batch=batch, compiled_ms=c * 1e3, reference_ms=r * 1e3,
                ratio=r / c, us_per_hyp=c * 1e6 / (batch * beams))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=None, help="write a markdown table here")
    args = parser.parse_args()
    rows = []
    for mode in ("greedy", "beam4"):
        for vocab in (8000, 32000):
            for batch in (1, 16):
                rows.append(bench(mode, vocab, batch, args.steps, args.repeats))
                print(rows[-1], flush=True)
    table = ["| search | vocab | batch | compiled ms/step | reference ms/step | ratio | compiled µs/hyp/step |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        table.append(f"| {r['mode']} | {r['vocab']} | {r['batch']} | {r['compiled_ms']:.3f} | "
                     f"{r['reference_ms']:.1f} | {r['ratio']:.0f}x | {r['us_per_hyp']:.1f} |")
    text = "\n".join(table)
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(f"# Search core micro-benchmark\n\n"
                    f"Reproduce: `python benchmarks/bench_search.py --steps {args.steps} "
                    f"--repeats {args.repeats} --out {args.out}`\n\n"
                    f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
                    f"Python {platform.python_version()}, numpy {np.__version__}. "
                    f"advance() only (logits pre-generated, EOS masked so no row finishes); "
                    f"median of {args.repeats} alternating runs of {args.steps} steps.\n\n{text}\n")


if __name__ == "__main__":
    main()
