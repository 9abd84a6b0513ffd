"""The latency suite in one command: ltg_engine side by side with its peers.

    python benchmarks/run_all.py            # full suite (~20 min on 2 cores)
    python benchmarks/run_all.py --quick    # smoke run (~2 min)

Builds (or reuses, from benchmarks/.cache/) an edge-sized LSTM and Transformer
(models.py), then for every configuration runs, on the same random source ids
and the same thread count:
  ltg        the engine: onnxruntime + compiled search (Generator.generate_ids)
  ltg_int8   the same with the int8 graphs of `ltg quantize` (dynamic int8 MatMul/Gather)
  pyloop     the same ONNX sessions driven by the pure-Python reference search
  torch      PyTorch eager generation of the same checkpoint (torch_decode.py)
  ct2_f32 / ct2_int8   CTranslate2 on the same weights (Transformer only)
Each engine gets warm-up runs, then the engines alternate A B C A B C ... so
drift on a shared machine hits all of them alike; medians and ratios are
reported. Every run generates exactly --new-tokens tokens per row.

Writes benchmarks/results/: latency.json (everything), latency.md (tables,
targets), machine.md, and PNG plots (report.py).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from typing import Callable, Dict, List

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from models import SIZES, TINY_SIZES, build_model  # noqa: E402

from ltg_engine import bench  # noqa: E402

EOS = 3


# ---------------------------------------------------------------- plan

def plan(arch: str, quick: bool, reps: int) -> List[dict]:
    """Configurations per architecture: every context at batch 1, batch 16 at the shortest.

    At 8k+ tokens a run takes seconds (the LSTM encoder is sequential in S), so
    those get fewer repetitions, and the Python loop sits them out: its extra
    cost per step is fixed, so against a 30-100 ms step it measures noise.
    """
    if quick:
        contexts = [512, 2048] if arch == "lstm" else [512]
    else:
        # Full encoder self-attention is O(S^2) in memory: the Transformer stops at 2k here.
        contexts = [512, 2048, 8192, 32768] if arch == "lstm" else [512, 2048]
    configs = []
    for c in contexts:
        long = c >= 8192
        for k in (1, 4):
            configs.append(dict(context=c, batch=1, beams=k, reps=2 if long else reps,
                                warmup=0 if c >= 32768 else 1, skip=["pyloop"] if long else []))
    for k in (1, 4):
        configs.append(dict(context=contexts[0], batch=16, beams=k, reps=max(2, reps - 2), warmup=1, skip=[]))
    return configs


# ---------------------------------------------------------------- engines

def ltg_engine_fn(gen, reference: bool = False) -> Callable:
    def run(src: np.ndarray, new_tokens: int, beams: int) -> bench.Run:
        with bench.reference_search() if reference else contextlib.nullcontext():
            return bench.time_engine_run(gen, src, new_tokens, beams)
    return run


def torch_fn(model) -> Callable:
    import torch

    from torch_decode import torch_generate

    def run(src: np.ndarray, new_tokens: int, beams: int) -> bench.Run:
        stamps: List[float] = []
        src_t = torch.from_numpy(src)
        t0 = time.perf_counter()
        out = torch_generate(model, src_t, new_tokens, beams, on_step=lambda _t: stamps.append(time.perf_counter()))
        seconds = time.perf_counter() - t0
        return bench.Run(seconds, int(out.numel()), stamps[0] - t0, list(np.diff(stamps)))
    return run


def ct2_fn(ct2_dir: str, compute_type: str, threads: int, vocab_size: int) -> Callable:
    import ctranslate2

    from ltg_engine.export.ctranslate2_convert import placeholder_vocabulary

    vocab = placeholder_vocabulary(vocab_size)
    translator = ctranslate2.Translator(ct2_dir, device="cpu", compute_type=compute_type,
                                        intra_threads=threads, inter_threads=1)

    def run(src: np.ndarray, new_tokens: int, beams: int) -> bench.Run:
        tokens = [[vocab[i] for i in row] for row in src.tolist()]
        t0 = time.perf_counter()
        out = translator.translate_batch(tokens, beam_size=beams, max_decoding_length=new_tokens,
                                         min_decoding_length=new_tokens, max_input_length=0)
        seconds = time.perf_counter() - t0
        return bench.Run(seconds, sum(len(o.hypotheses[0]) for o in out))
    return run


def make_engines(arch: str, paths: Dict[str, str], threads: int):
    """(engines by name, the loaded Generator)."""
    import torch

    from ltg_engine import Generator
    from ltg_engine.training.checkpoint import load_model

    torch.set_num_threads(threads)
    gen = Generator.load(paths["model_dir"], threads=threads)
    if "int8" not in gen.model_dir.precisions:
        from ltg_engine.export.quantize import quantize_model_dir

        quantize_model_dir(paths["model_dir"], report=lambda *_: None, evaluate=False)
    gen_int8 = Generator.load(paths["model_dir"], threads=threads, precision="int8")
    model, _, _ = load_model(paths["run_dir"])
    engines = {"ltg": ltg_engine_fn(gen), "ltg_int8": ltg_engine_fn(gen_int8),
               "pyloop": ltg_engine_fn(gen, reference=True), "torch": torch_fn(model)}
    if arch == "transformer" and "ct2_dir" in paths:
        try:
            engines["ct2_f32"] = ct2_fn(paths["ct2_dir"], "float32", threads, gen.vocab_size)
            engines["ct2_int8"] = ct2_fn(paths["ct2_dir"], "int8", threads, gen.vocab_size)
        except ImportError:
            print("ctranslate2 not installed: skipping the CTranslate2 comparison", file=sys.stderr)
    return engines, gen


# ---------------------------------------------------------------- side by side

def side_by_side(engines: Dict[str, Callable], src: np.ndarray, new_tokens: int, beams: int,
                 reps: int, warmup: int, progress) -> Dict[str, dict]:
    """Warm up every engine, then alternate them `reps` times; per-engine medians."""
    for name, fn in engines.items():
        for _ in range(warmup):
            fn(src, new_tokens, beams)
            progress.update(f"warm-up {name}")
    runs: Dict[str, List[bench.Run]] = {name: [] for name in engines}
    for _ in range(reps):
        for name, fn in engines.items():
            runs[name].append(fn(src, new_tokens, beams))
            progress.update(name)
    expected = src.shape[0] * new_tokens
    for name, ms in runs.items():
        if any(m.tokens != expected for m in ms):
            raise RuntimeError(f"{name} generated {[m.tokens for m in ms]} tokens, expected {expected}: unfair comparison")
    return {name: bench.summarize(ms) for name, ms in runs.items()}


# ---------------------------------------------------------------- main

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: short contexts, few tokens, 2 repetitions")
    p.add_argument("--tiny", action="store_true", help="tiny models (development; numbers mean nothing)")
    p.add_argument("--threads", type=int, default=1,
                   help="intra-op threads for every engine (default 1: on a shared, loaded machine two-thread "
                        "runs measure the scheduler, not the engines; use the core count on a quiet machine)")
    p.add_argument("--arch", nargs="+", default=["lstm", "transformer"], choices=["lstm", "transformer"])
    p.add_argument("--new-tokens", type=int, default=None, help="tokens per row (default 32; --quick 16)")
    p.add_argument("--repetitions", type=int, default=None, help="alternated timed runs (default 5; --quick 2)")
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    p.add_argument("--cache", default=os.path.join(HERE, ".cache"))
    p.add_argument("--report-only", action="store_true", help="rewrite the tables and plots from OUT/latency.json")
    args = p.parse_args(argv)
    if args.report_only:
        return rewrite_report(args.out)
    new_tokens = args.new_tokens or (16 if args.quick else 32)
    reps = args.repetitions or (2 if args.quick else 5)

    from report import write_report

    t_start = time.perf_counter()
    machine = bench.describe_machine()
    machine["load_average_start"] = machine.pop("load_average")
    rates = bench.machine_rates()
    print(f"machine: GEMM {rates['gemm_gflops']:.1f} GFLOP/s, copy bandwidth {rates['bandwidth_gbs']:.1f} GB/s, "
          f"load {machine['load_average_start'][0]:.2f}", file=sys.stderr)
    sizes = TINY_SIZES if args.tiny else SIZES
    models = {arch: build_model(arch, sizes[arch], args.cache) for arch in args.arch}

    rows = []
    for arch in args.arch:
        engines, gen = make_engines(arch, models[arch], args.threads)
        configs = plan(arch, args.quick, reps)
        total = sum((len(engines) - len(c["skip"])) * (c["reps"] + c["warmup"]) for c in configs)
        progress = bench.Progress(total, desc=arch)
        try:
            for c in configs:
                src = bench.synthetic_sources(gen.vocab_size, c["context"], c["batch"], seed=c["context"])
                chosen = {n: fn for n, fn in engines.items() if n not in c["skip"]}
                per_engine = side_by_side(chosen, src, new_tokens, c["beams"], c["reps"], c["warmup"], progress)
                floor = bench.floor_seconds_per_step(arch, gen.model_dir.config["model_config"], c["batch"],
                                                     c["beams"], c["context"], new_tokens, rates)
                rows.append({"arch": arch, **c, "new_tokens": new_tokens, "floor_ms_per_token": 1e3 * floor,
                             "engines": per_engine})
        finally:
            progress.close()
        models[arch]["model_config"] = gen.model_dir.config["model_config"]
    machine["load_average_end"] = list(os.getloadavg())
    machine["finished"] = time.strftime("%Y-%m-%d %H:%M")
    machine["suite_seconds"] = time.perf_counter() - t_start
    machine["threads"] = args.threads
    write_report(args.out, rows, machine, rates, models, quick=args.quick, tiny=args.tiny)
    print(f"wrote {args.out} in {machine['suite_seconds']:.0f} s", file=sys.stderr)
    return 0


def rewrite_report(out_dir: str) -> int:
    import json

    from report import write_report

    with open(os.path.join(out_dir, "latency.json"), encoding="utf-8") as f:
        saved = json.load(f)
    quick = saved["rows"][0]["new_tokens"] < 32
    write_report(out_dir, saved["rows"], saved["machine"], saved["machine_rates"], saved["models"], quick=quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
