"""onnxruntime sessions: options tuned for small-batch latency, provider
fallback, and a check of every session against the graph contract."""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Optional, Sequence

import onnxruntime as ort

from ltg_engine.model_dir import sha256_file

ORT_DTYPES = {"tensor(int64)": "int64", "tensor(float)": "float32", "tensor(float16)": "float16"}
OPT_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


class ContractError(ValueError):
    """A graph whose inputs/outputs differ from config.json's contract."""


@dataclass(frozen=True)
class SessionConfig:
    providers: tuple
    threads: Optional[int] = None
    # Spinning off: on a shared or busy 2-8 core box spinning workers steal the
    # cores the other sessions need (benchmarks/results/session_tuning.md).
    spinning: bool = False
    optimization: str = "all"
    optimized_model_dir: Optional[str] = None
    # Arena off: it keeps its peak for the life of the session, so one huge
    # request pins that memory forever (benchmarks/results/memory.md).
    memory_arena: bool = False

    @classmethod
    def create(cls, providers: Optional[Sequence[str]] = None, threads: Optional[int] = None,
               spinning: bool = False, optimization: str = "all",
               optimized_model_dir: Optional[str] = None, memory_arena: bool = False) -> "SessionConfig":
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads must be a positive int or None (onnxruntime's default), got {threads!r}")
        if optimization not in OPT_LEVELS:
            raise ValueError(f"optimization must be one of {sorted(OPT_LEVELS)}, got {optimization!r}")
        return cls(_resolve_providers(providers), threads, bool(spinning), optimization, optimized_model_dir,
                   bool(memory_arena))


def _resolve_providers(providers: Optional[Sequence[str]]) -> tuple:
    if providers is None:
        return ("CPUExecutionProvider",)
    if isinstance(providers, str):
        providers = [providers]
    available = set(ort.get_available_providers())
    chosen = [p for p in providers if p in available]
    missing = [p for p in providers if p not in available]
    if missing:
        warnings.warn(f"onnxruntime providers {missing} are not available here "
                      f"(available: {sorted(available)}); falling back to CPUExecutionProvider",
                      RuntimeWarning, stacklevel=3)
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return tuple(chosen)


def make_session(path: str, config: SessionConfig, sha256: Optional[str] = None) -> ort.InferenceSession:
    """sha256: the graph file's hash when the caller already has it (config.json records it)."""
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = OPT_LEVELS[config.optimization]
    if config.threads is not None:
        opts.intra_op_num_threads = config.threads
    opts.inter_op_num_threads = 1
    # Memory patterns are cached per distinct set of input shapes, and B, K, S
    # and the step vary per request: the cache (and RSS) grew without bound.
    opts.enable_mem_pattern = False
    opts.enable_cpu_mem_arena = config.memory_arena
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if config.spinning else "0")
    if config.optimized_model_dir:
        path = _use_optimized_file(path, config, opts, sha256)
    try:
        return ort.InferenceSession(path, opts, providers=list(config.providers))
    except Exception as e:  # onnxruntime raises its own exception types
        raise ContractError(f"onnxruntime could not load {path}: {e}") from None


def _use_optimized_file(path: str, config: SessionConfig, opts, sha256: Optional[str]) -> str:
    """Pre-optimized graphs: load the saved one with optimization off, else optimize and save it.

    The saved file is keyed by the source graph's sha256 and the level, so a
    re-exported or re-quantized graph never meets a stale optimized copy. Level
    "all" applies hardware-specific fusions: keep the directory per machine type.
    """
    digest = (sha256 or sha256_file(path))[:16]
    stem = os.path.basename(path)[: -len(".onnx")] if path.endswith(".onnx") else os.path.basename(path)
    os.makedirs(config.optimized_model_dir, exist_ok=True)
    saved = os.path.join(config.optimized_model_dir, f"{stem}.{digest}.{config.optimization}.onnx")
    if os.path.isfile(saved):
        opts.graph_optimization_level = OPT_LEVELS["disable"]
        return saved
    opts.optimized_model_filepath = saved
    return path


def check_session(session, contract_graph: dict, path: str) -> None:
    """Names and dtypes of the session's inputs/outputs must equal the contract's."""
    for kind, values in (("inputs", session.get_inputs()), ("outputs", session.get_outputs())):
        got = [(v.name, ORT_DTYPES.get(v.type, v.type)) for v in values]
        want = [(io["name"], io["dtype"]) for io in contract_graph[kind]]
        if got != want:
            raise ContractError(f"{path}: graph {kind} {got} do not match config.json's contract {want}")
