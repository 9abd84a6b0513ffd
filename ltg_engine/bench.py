"""`ltg bench MODEL_DIR`: latency of one model directory on synthetic inputs.

For every (context, batch, beams) configuration: `warmup` untimed runs, then
`repetitions` timed runs of exactly `new_tokens` tokens per row
(min_new_tokens = max_new_tokens, so no run stops early). Sources are random
ids of exactly `context` tokens fed through Generator.generate_ids (random
ids do not survive a decode/encode round trip through the tokenizer).

Per configuration it reports
  first_token_ms    call start -> first decoder step done (includes the encoder)
  per_token_ms      p50/p90/p99 of the gaps between consecutive decoder steps
                    (timestamped by Generator.generate's on_step hook)
  tokens_per_s      batch * new_tokens / wall seconds of a run (median run)
  encoder_ms        the encoder's onnxruntime run
  overhead_share    wall time outside onnxruntime runs / wall time (median run)
  peak_rss_mb       the process's peak resident memory during the configuration
                    (Linux: the peak is reset per configuration via clear_refs)
  floor_ms_per_token, achieved_over_floor
                    roofline: the step's FLOPs and bytes from config.json
                    against this machine's measured GEMM rate and memory
                    bandwidth (see step_cost, machine_rates)

Torch-free: numpy + onnxruntime only, like the rest of the runtime.
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, Iterable, List, Optional

import numpy as np

FIRST_REAL_ID = 4  # ids 0..3 are pad, unk, bos, eos


# ---------------------------------------------------------------- inputs

def synthetic_sources(vocab_size: int, context: int, batch: int, seed: int = 0) -> np.ndarray:
    """(batch, context) random ids of real tokens (never pad/unk/bos/eos)."""
    if context < 1 or batch < 1:
        raise ValueError(f"context and batch must be >= 1, got {context}, {batch}")
    rng = np.random.default_rng(seed)
    return rng.integers(FIRST_REAL_ID, vocab_size, size=(batch, context), dtype=np.int64)


def fixed_length_options(new_tokens: int, num_beams: int) -> dict:
    """Generation options that produce exactly new_tokens per row (eos can never win early)."""
    return dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, num_beams=num_beams, do_sample=False)


@contextlib.contextmanager
def reference_search():
    """Run the engine with the pure-Python reference search loop (same ONNX sessions)."""
    from ltg_engine import search, search_ref

    saved = search.make_search
    search.make_search = search_ref.make_search
    try:
        yield
    finally:
        search.make_search = saved


# ---------------------------------------------------------------- memory

def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (Linux >= 4.0); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak resident memory since the last reset (else since process start), MiB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource  # Unix only; the /proc path above covers Linux

    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2 ** 20


# ---------------------------------------------------------------- roofline

def machine_rates(seconds: float = 0.5) -> dict:
    """This machine's float32 GEMM rate (numpy matmul, 1024^3) and memory bandwidth (copy, 256 MiB)."""
    n = 1024
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = a.T.copy()
    best_gemm = _best_time(lambda: a @ b, seconds)
    src = np.ones(2 ** 26, dtype=np.float32)            # 256 MiB
    dst = np.empty_like(src)
    best_copy = _best_time(lambda: np.copyto(dst, src), seconds)
    return {"gemm_gflops": 2 * n ** 3 / best_gemm / 1e9,
            "bandwidth_gbs": 2 * src.nbytes / best_copy / 1e9}  # copy reads and writes every byte


def _best_time(fn: Callable, budget: float) -> float:
    fn()
    best, spent = float("inf"), 0.0
    while spent < budget or best == float("inf"):
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        best, spent = min(best, dt), spent + dt
    return best


def step_cost(arch: str, cfg: dict, batch: int, beams: int, context: int, cache_len: int = 0) -> dict:
    """FLOPs and minimum bytes moved by one decoder step (float32).

    Weights are read once per step whatever the batch (one GEMM); encoder
    memory is read once per step at batch size (it broadcasts over beams); a
    Transformer also reads its self-attention cache (cache_len positions).
    """
    rows, V = batch * beams, cfg["vocab_size"]
    if arch == "lstm":
        E, H, L, M = cfg["emb_dim"], cfg["dec_hidden"], cfg["dec_layers"], 2 * cfg["enc_hidden"]
        macs = (E + 2 * H) * 4 * H + (L - 1) * 2 * H * 4 * H + (M + H) * H + H * V   # cell, combine, output
        weights = macs + L * 4 * H + V
        if cfg.get("attention", "general") == "general":
            macs += H * M
            weights += H * M
            mem_bytes = 4 * batch * context * M                  # memory serves as keys
            attn_flops = 4 * rows * context * M                  # scores + context
        else:
            A = cfg["attn_dim"]
            macs += H * A
            weights += H * A
            mem_bytes = 4 * batch * context * (M + A)           # memory + projected keys
            attn_flops = rows * context * (4 * M + 4 * A)       # add, tanh, v, context
        flops = 2 * rows * macs + attn_flops
        bytes_ = 4 * weights + mem_bytes
    elif arch == "transformer":
        d, f, L = cfg["d_model"], cfg["ffn_dim"], cfg["dec_layers"]
        per_layer = 3 * d * d + d * d + d * d + d * d + 2 * d * f   # qkv, out, cross q, cross out, ffn
        macs = L * per_layer + d * V
        flops = 2 * rows * macs + L * (4 * rows * context * d + 4 * rows * (cache_len + 1) * d)
        bytes_ = 4 * (macs + L * 2 * batch * context * d + L * 2 * rows * (cache_len + 1) * d)
    else:
        raise ValueError(f"no cost model for arch {arch!r}")
    return {"flops": float(flops), "bytes": float(bytes_)}


def floor_seconds_per_step(arch: str, cfg: dict, batch: int, beams: int, context: int, new_tokens: int,
                           rates: dict) -> float:
    """Mean over the generation of max(FLOPs / GEMM rate, bytes / bandwidth)."""
    total = 0.0
    for t in range(new_tokens):
        c = step_cost(arch, cfg, batch, beams, context, cache_len=t)
        total += max(c["flops"] / (rates["gemm_gflops"] * 1e9), c["bytes"] / (rates["bandwidth_gbs"] * 1e9))
    return total / new_tokens


# ---------------------------------------------------------------- timing

@dataclass
class Run:
    """One timed generation. Engines that cannot report a field (peers without
    per-step timestamps or an onnxruntime split) leave it None/empty."""
    seconds: float
    tokens: int
    first_token_s: Optional[float] = None
    step_gaps: List[float] = field(default_factory=list)
    encoder_s: Optional[float] = None
    decoder_s: Optional[float] = None
    overhead_share: Optional[float] = None


def time_engine_run(gen, sources: np.ndarray, new_tokens: int, num_beams: int) -> Run:
    """One generate_ids call with per-step timestamps from the on_step hook."""
    stamps: List[float] = []
    t0 = time.perf_counter()
    results = gen.generate_ids(sources, on_step=lambda _search: stamps.append(time.perf_counter()),
                               **fixed_length_options(new_tokens, num_beams))
    seconds = time.perf_counter() - t0
    stats = gen.last_stats
    gaps = list(np.diff(stamps)) if len(stamps) > 1 else []
    return Run(seconds, sum(len(r.token_ids) for r in results), (stamps[0] if stamps else t0 + seconds) - t0, gaps,
               stats["encoder_seconds"], stats["decoder_seconds"], stats["overhead_share"])


def percentile(values: Iterable[float], q: float) -> float:
    v = list(values)
    return float(np.percentile(v, q)) if v else float("nan")


def summarize(runs: List[Run]) -> dict:
    """Medians over runs; per-token percentiles over every step gap of every run; None where unknown."""
    gaps = [g for r in runs for g in r.step_gaps]

    def med(values):
        values = [v for v in values if v is not None]
        return float(np.median(values)) if values else None

    def ms(seconds):
        return None if seconds is None else 1e3 * seconds

    overheads = [r.overhead_share for r in runs if r.overhead_share is not None]
    return {
        "tokens_per_run": runs[0].tokens,
        "seconds_per_run": med([r.seconds for r in runs]),
        "seconds_all": [r.seconds for r in runs],
        "first_token_ms": ms(med([r.first_token_s for r in runs])),
        "per_token_ms": {"p50": 1e3 * percentile(gaps, 50), "p90": 1e3 * percentile(gaps, 90),
                         "p99": 1e3 * percentile(gaps, 99), "mean": 1e3 * float(np.mean(gaps))} if gaps else None,
        "tokens_per_s": med([r.tokens / r.seconds for r in runs]),
        "encoder_ms": ms(med([r.encoder_s for r in runs])),
        "decoder_ms": ms(med([r.decoder_s for r in runs])),
        "overhead_share": med(overheads),
        # the least-disturbed run bounds the run-to-run spread of a shared machine
        "overhead_share_min": min(overheads, default=None),
    }


# ---------------------------------------------------------------- progress

class Progress:
    """tqdm when installed and stderr is a terminal, else one rewritten stderr line."""

    def __init__(self, total: int, desc: str = "bench"):
        self.total, self.done, self.desc = total, 0, desc
        self.bar = None
        try:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="run", file=sys.stderr, dynamic_ncols=True)
        except ImportError:
            pass

    def update(self, label: str) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.set_postfix_str(label, refresh=False)
            self.bar.update(1)
        else:
            sys.stderr.write(f"\r{self.desc}: {self.done}/{self.total} runs  {label}   ")
            sys.stderr.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        else:
            sys.stderr.write("\n")


# ---------------------------------------------------------------- the command

@dataclass(frozen=True)
class BenchSettings:
    contexts: tuple
    batch_sizes: tuple
    num_beams: tuple
    new_tokens: int = 64
    repetitions: int = 5
    warmup: int = 1
    seed: int = 0

    def validate(self) -> "BenchSettings":
        for name in ("contexts", "batch_sizes", "num_beams"):
            values = getattr(self, name)
            if not values or any(int(v) < 1 for v in values):
                raise ValueError(f"{name} must be positive integers, got {list(values)}")
        if self.new_tokens < 1:
            raise ValueError(f"--new-tokens must be >= 1, got {self.new_tokens}")
        if self.repetitions < 1 or self.warmup < 0:
            raise ValueError(f"--repetitions must be >= 1 and --warmup >= 0, got {self.repetitions}, {self.warmup}")
        return self


def bench_generator(gen, settings: BenchSettings, rates: Optional[dict] = None, progress: bool = True) -> List[dict]:
    """Every configuration of `settings` on a loaded Generator; one result dict each."""
    settings.validate()
    configs = [(c, b, k) for c in settings.contexts for b in settings.batch_sizes for k in settings.num_beams]
    bar = Progress(len(configs) * (settings.warmup + settings.repetitions)) if progress else None
    arch, cfg = gen.model_dir.config.get("arch"), gen.model_dir.config.get("model_config", {})
    results = []
    try:
        for context, batch, beams in configs:
            sources = synthetic_sources(gen.vocab_size, context, batch, settings.seed)
            label = f"context={context} batch={batch} beams={beams}"
            reset_peak_rss()
            runs = []
            for i in range(settings.warmup + settings.repetitions):
                run = time_engine_run(gen, sources, settings.new_tokens, beams)
                if i >= settings.warmup:
                    runs.append(run)
                if bar:
                    bar.update(label)
            row = {"context": context, "batch_size": batch, "num_beams": beams, "new_tokens": settings.new_tokens,
                   "repetitions": settings.repetitions, **summarize(runs), "peak_rss_mb": peak_rss_mb()}
            if rates is not None and arch in ("lstm", "transformer"):
                floor = floor_seconds_per_step(arch, cfg, batch, beams, context, settings.new_tokens, rates)
                row["floor_ms_per_token"] = 1e3 * floor
                row["achieved_over_floor"] = row["per_token_ms"]["mean"] / (1e3 * floor)
            results.append(row)
    finally:
        if bar:
            bar.close()
    return results


def describe_machine() -> dict:
    import onnxruntime

    from ltg_engine import __version__
    from ltg_engine.search import COMPILED

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "load_average": list(os.getloadavg()),
            "python": platform.python_version(), "platform": platform.platform(), "numpy": np.__version__,
            "onnxruntime": onnxruntime.__version__, "ltg_engine": __version__, "compiled_search": COMPILED}


TABLE_COLUMNS = [
    ("context", "{}", lambda r: r["context"]),
    ("batch", "{}", lambda r: r["batch_size"]),
    ("beams", "{}", lambda r: r["num_beams"]),
    ("1st tok ms", "{:.1f}", lambda r: r["first_token_ms"]),
    ("p50 ms", "{:.2f}", lambda r: r["per_token_ms"]["p50"]),
    ("p90 ms", "{:.2f}", lambda r: r["per_token_ms"]["p90"]),
    ("p99 ms", "{:.2f}", lambda r: r["per_token_ms"]["p99"]),
    ("tok/s", "{:.1f}", lambda r: r["tokens_per_s"]),
    ("enc ms", "{:.1f}", lambda r: r["encoder_ms"]),
    ("overhead", "{:.1%}", lambda r: r["overhead_share"]),
    ("RSS MB", "{:.0f}", lambda r: r["peak_rss_mb"]),
    ("/floor", "{:.1f}", lambda r: r.get("achieved_over_floor", float("nan"))),
]


def format_table(rows: List[dict]) -> str:
    """Right-aligned plain-text table of bench_generator rows."""
    cells = [[name for name, _, _ in TABLE_COLUMNS]]
    cells += [[fmt.format(get(r)) for _, fmt, get in TABLE_COLUMNS] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(TABLE_COLUMNS))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells)


def run_bench_command(args) -> int:
    from ltg_engine.generator import Generator

    settings = BenchSettings(tuple(args.context), tuple(args.batch_size), tuple(args.num_beams),
                             new_tokens=args.new_tokens, repetitions=args.repetitions,
                             warmup=args.warmup).validate()
    gen = Generator.load(args.model_dir, providers=args.provider, threads=args.threads,
                         precision="int8" if args.int8 else "float32")
    rates = machine_rates()
    rows = bench_generator(gen, settings, rates=rates, progress=True)
    print(f"{gen.model_dir.path}  arch={gen.model_dir.config.get('arch')}  precision={'int8' if args.int8 else 'float32'}"
          f"  threads={args.threads or 'default'}  new_tokens={settings.new_tokens}")
    print(format_table(rows))
    if args.json_out:
        report = {"model_dir": os.fspath(gen.model_dir.path), "arch": gen.model_dir.config.get("arch"),
                  "model_config": gen.model_dir.config.get("model_config"),
                  "precision": "int8" if args.int8 else "float32", "threads": args.threads,
                  "providers": gen.providers, "settings": asdict(settings), "machine": describe_machine(),
                  "machine_rates": rates, "results": rows}
        with open(args.json_out, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
            f.write("\n")
    return 0
