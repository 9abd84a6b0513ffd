"""Where a generation's time goes: onnxruntime op types in the decoder step, and the engine's overhead.

    python benchmarks/profile_step.py MODEL_DIR --context 512 32768 --num-beams 1 4 --out benchmarks/results/profile.md

Part 1 runs generate_ids with onnxruntime's profiler on and sums the decoder
step's node times by op type (share of the step). Part 2 splits the wall time
outside onnxruntime: search.advance (the compiled core) vs everything else
(feeds, callbacks, result decoding), timed by wrapping the step function.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time

from ltg_engine import bench, search as search_core
from ltg_engine.generator import Generator


def op_profile(model_dir: str, context: int, beams: int, new_tokens: int, threads: int) -> dict:
    """{op_type: share of decoder-step node time} from onnxruntime's profiler."""
    import onnxruntime as ort

    gen = Generator.load(model_dir, threads=threads)
    opts = ort.SessionOptions()
    opts.enable_profiling = True
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    gen.decoder = ort.InferenceSession(gen.model_dir.graph_file("decoder_step"), opts, providers=["CPUExecutionProvider"])
    src = bench.synthetic_sources(gen.vocab_size, context, 1)
    gen.generate_ids(src, **bench.fixed_length_options(new_tokens, beams))
    path = gen.decoder.end_profiling()
    with open(path) as f:
        events = json.load(f)
    os.remove(path)
    by_op = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            by_op[e["args"]["op_name"]] += e["dur"]
    total = sum(by_op.values()) or 1
    return {op: us / total for op, us in by_op.most_common()}


def overhead_split(model_dir: str, context: int, beams: int, new_tokens: int, threads: int) -> dict:
    """Seconds per run: encoder, onnxruntime step runs, search.advance, and the rest."""
    gen = Generator.load(model_dir, threads=threads)
    src = bench.synthetic_sources(gen.vocab_size, context, 1)
    advance = [0.0]
    original = search_core.iterate

    def timed_iterate(search, step_fn):
        while not search.done:
            kept = search.kept if search.compacted else None
            logits = step_fn(search.tokens, search.parents, search.step, kept)
            t0 = time.perf_counter()
            search.advance(logits)
            advance[0] += time.perf_counter() - t0
            yield search

    search_core.iterate = timed_iterate
    try:
        gen.generate_ids(src, **bench.fixed_length_options(new_tokens, beams))       # warm-up
        advance[0] = 0.0
        t0 = time.perf_counter()
        gen.generate_ids(src, **bench.fixed_length_options(new_tokens, beams))
        wall = time.perf_counter() - t0
    finally:
        search_core.iterate = original
    s = gen.last_stats
    rest = wall - s["encoder_seconds"] - s["decoder_seconds"] - advance[0]
    return {"wall_ms": 1e3 * wall, "encoder_ms": 1e3 * s["encoder_seconds"], "ort_step_ms": 1e3 * s["decoder_seconds"],
            "advance_ms": 1e3 * advance[0], "rest_ms": 1e3 * rest,
            "advance_share": advance[0] / wall, "rest_share": rest / wall}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model_dir")
    p.add_argument("--context", type=int, nargs="+", default=[512])
    p.add_argument("--num-beams", type=int, nargs="+", default=[1, 4])
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="append a markdown section to this file")
    args = p.parse_args(argv)
    lines = [f"## Profile of {args.model_dir} ({args.threads} thread(s), {args.new_tokens} tokens, batch 1)", "",
             "| context | beams | top op types (share of decoder-step node time) | search.advance | other overhead |",
             "|---:|---:|---|---:|---:|"]
    for context in args.context:
        for beams in args.num_beams:
            ops = op_profile(args.model_dir, context, beams, args.new_tokens, args.threads)
            split = overhead_split(args.model_dir, context, beams, args.new_tokens, args.threads)
            top = ", ".join(f"{op} {share:.0%}" for op, share in list(ops.items())[:5])
            lines.append(f"| {context} | {beams} | {top} | {split['advance_share']:.1%} ({split['advance_ms']:.1f} ms) "
                         f"| {split['rest_share']:.1%} ({split['rest_ms']:.1f} ms) |")
            print(lines[-1], file=sys.stderr)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "a", encoding="utf-8") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
