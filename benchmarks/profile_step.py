"""Where a generation's time goes: onnxruntime op types in the decoder step, and the engine's overhead.

    python benchmarks/profile_step.py MODEL_DIR --context 512 32768 --num-beams 1 4 --out benchmarks/results/profile.md

Part 1 runs generate_ids with onnxruntime's profiler on and sums the decoder
step's node times by op type (share of the step). Part 2 splits the run's CPU
time (calling thread; use --threads 1) outside onnxruntime into
search.advance (the compiled core) and everything else (feeds, Python
driver, result decoding). CPU time, because on a loaded machine wall-clock
preemption lands anywhere.
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


class _CpuTimed:
    """A session proxy summing the calling thread's CPU time inside run() (exact with 1 intra-op thread)."""

    def __init__(self, session):
        self.session, self.cpu = session, 0.0

    def run(self, *args, **kwargs):
        t0 = time.thread_time()
        out = self.session.run(*args, **kwargs)
        self.cpu += time.thread_time() - t0
        return out

    def __getattr__(self, name):
        return getattr(self.session, name)


def overhead_split(model_dir: str, context: int, beams: int, new_tokens: int, threads: int) -> dict:
    """Shares of one run's CPU time: onnxruntime runs, search.advance (the compiled core), the rest.

    CPU time of the calling thread, not wall time: on a loaded machine
    preemption would otherwise land anywhere. Meaningful with threads=1,
    where onnxruntime computes on the calling thread.
    """
    gen = Generator.load(model_dir, threads=threads)
    gen.encoder, gen.decoder = _CpuTimed(gen.encoder), _CpuTimed(gen.decoder)
    src = bench.synthetic_sources(gen.vocab_size, context, 1)
    advance = [0.0]
    original = search_core.iterate

    def timed_iterate(search, step_fn):
        while not search.done:
            kept = search.kept if search.compacted else None
            logits = step_fn(search.tokens, search.parents, search.step, kept)
            t0 = time.thread_time()
            search.advance(logits)
            advance[0] += time.thread_time() - t0
            yield search

    search_core.iterate = timed_iterate
    try:
        gen.generate_ids(src, **bench.fixed_length_options(new_tokens, beams))       # warm-up
        advance[0] = gen.encoder.cpu = gen.decoder.cpu = 0.0
        t0 = time.thread_time()
        gen.generate_ids(src, **bench.fixed_length_options(new_tokens, beams))
        total = time.thread_time() - t0
    finally:
        search_core.iterate = original
    rest = total - gen.encoder.cpu - gen.decoder.cpu - advance[0]
    return {"cpu_ms": 1e3 * total, "ort_ms": 1e3 * (gen.encoder.cpu + gen.decoder.cpu),
            "advance_ms": 1e3 * advance[0], "rest_ms": 1e3 * rest,
            "advance_share": advance[0] / total, "rest_share": rest / total}


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
             "| context | beams | top op types (share of decoder-step node time) | search.advance (share of CPU time) | other outside onnxruntime |",
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
