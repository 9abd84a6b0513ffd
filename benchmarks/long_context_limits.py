"""Longest contexts through the engine: one Generator.generate_ids call per (model, length).

Each measurement runs in its own process so peak RSS is that call's alone.
Models are the edge-sized benchmark models of models.py (cached in
benchmarks/.cache/), plus the Transformer with a windowed encoder (W=256).
Weights are barely trained: time and memory depend on sizes, not on what was
learned. Sources are random ids of exactly N tokens; 32 new tokens, greedy.

    python benchmarks/long_context_limits.py lstm:16384 lstm:32768 transformer_w256:16384
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

NEW_TOKENS = 32


def model_dir(name: str) -> str:
    import models

    sizes = {k: dict(v) for k, v in models.SIZES.items()}
    sizes["transformer_w256"] = dict(vocab_size=8000, model_config=dict(sizes["transformer"]["model_config"],
                                                                        encoder_window=256))
    arch = "transformer" if name.startswith("transformer") else "lstm"
    cache = os.path.join(HERE, ".cache")
    exported = os.path.join(cache, models._key(arch, sizes[name]), "model")
    if os.path.isfile(os.path.join(exported, "config.json")):
        return exported
    try:
        return models.build_model(arch, sizes[name], cache)["model_dir"]
    except ValueError:      # a windowed encoder has no CTranslate2 form; the ONNX model dir is written first
        if os.path.isfile(os.path.join(exported, "config.json")):
            return exported
        raise


def measure(name: str, length: int, threads: int = 2) -> dict:
    import numpy as np

    from ltg_engine import Generator

    gen = Generator.load(model_dir(name), threads=threads)
    src = np.random.default_rng(0).integers(4, gen.vocab_size, length).tolist()
    t0 = time.perf_counter()
    gen.generate_ids([src], max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS)
    total = time.perf_counter() - t0
    s = gen.last_stats
    return {"model": name, "context": length, "threads": threads, "total_s": round(total, 2),
            "encoder_s": round(s["encoder_seconds"], 2),
            "step_ms": round(1000 * s["decoder_seconds"] / max(s["steps"], 1), 2),
            "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}


def main(argv) -> int:
    if argv and argv[0] == "--one":
        print(json.dumps(measure(argv[1], int(argv[2]))))
        return 0
    for spec in argv:
        name, length = spec.split(":")
        model_dir(name)                                  # build (cached) outside the measured process
        out = subprocess.run([sys.executable, __file__, "--one", name, length], capture_output=True, text=True)
        print(out.stdout.strip().splitlines()[-1] if out.returncode == 0 else
              f"{spec}: failed (rc {out.returncode}): {out.stderr.strip()[-300:]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
