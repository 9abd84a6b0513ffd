"""Benchmark models: train briefly, export, convert; cached in benchmarks/.cache/.

Latency does not depend on what the weights learned, only on the sizes and on
generating a fixed number of tokens (min_new_tokens = max_new_tokens), so
each model is trained for a few dozen steps on a synthetic corpus just to
produce a real run directory, tokenizer and exported model directory through
the same commands a user runs (run_training, export_model).

    paths = build_model("lstm", SIZES["lstm"], cache_dir)   # {"run_dir", "model_dir", "ct2_dir"?}

A cache entry is keyed by a hash of the sizes and reused when complete.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from typing import Dict

# Edge-sized defaults: vocab 8k, widths 256-512.
SIZES = {
    "lstm": dict(vocab_size=8000, model_config=dict(emb_dim=256, enc_hidden=256, enc_layers=2, dec_hidden=512,
                                                    dec_layers=2, attention="general", dropout=0.0)),
    "transformer": dict(vocab_size=8000, model_config=dict(enc_layers=3, dec_layers=3, d_model=256, heads=4,
                                                           ffn_dim=1024, dropout=0.0)),
}
# Seconds-to-build sizes for --tiny (development and tests).
TINY_SIZES = {
    "lstm": dict(vocab_size=400, model_config=dict(emb_dim=32, enc_hidden=32, enc_layers=1, dec_hidden=64,
                                                   dec_layers=1, dropout=0.0)),
    "transformer": dict(vocab_size=400, model_config=dict(enc_layers=1, dec_layers=1, d_model=32, heads=2,
                                                          ffn_dim=64, dropout=0.0)),
}
TRAIN_STEPS = 20


def synthetic_corpus(path: str, n_lines: int = 6000, n_words: int = 30000, seed: int = 0) -> str:
    """Lines of pseudo-words drawn from syllables: enough distinct strings for an 8k SentencePiece vocab."""
    rng = random.Random(seed)
    syllables = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"] + ["th", "sh", "qu", "x", "y"]
    words = list({"".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(n_words)})
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(n_lines):
            f.write(" ".join(rng.choice(words) for _ in range(rng.randint(20, 60))) + "\n")
    return path


def _key(arch: str, sizes: dict) -> str:
    blob = json.dumps({"arch": arch, "sizes": sizes, "steps": TRAIN_STEPS}, sort_keys=True)
    return f"{arch}-{hashlib.sha256(blob.encode()).hexdigest()[:10]}"


def build_model(arch: str, sizes: dict, cache_dir: str, report=print) -> Dict[str, str]:
    """Train (briefly), export and, for the Transformer, convert to CTranslate2; cached."""
    root = os.path.join(cache_dir, _key(arch, sizes))
    paths = {"run_dir": os.path.join(root, "run"), "model_dir": os.path.join(root, "model")}
    if arch == "transformer":
        paths["ct2_dir"] = os.path.join(root, "ct2")
    done = os.path.join(root, "DONE")
    if os.path.isfile(done):
        return paths
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    report(f"building {arch} benchmark model in {root} (cached for later runs)")
    _train(arch, sizes, root, paths["run_dir"])
    from ltg_engine.export.onnx_export import export_model

    export_model(paths["run_dir"], paths["model_dir"], report=lambda *_: None)
    if arch == "transformer":
        _convert_ct2(paths["run_dir"], paths["ct2_dir"])
    with open(done, "w") as f:
        f.write("ok\n")
    return paths


def _train(arch: str, sizes: dict, root: str, run_dir: str) -> None:
    from ltg_engine.training.train import TrainConfig, run_training

    corpus = synthetic_corpus(os.path.join(root, "corpus.txt"))
    cfg = TrainConfig(data=corpus, out=run_dir, arch=arch, vocab_size=sizes["vocab_size"],
                      model_config=dict(sizes["model_config"]), context_len=64, continuation_len=16,
                      max_steps=TRAIN_STEPS, batch_size=16, lr=1e-3, threads=1, quiet=True)
    run_training(cfg)


def _convert_ct2(run_dir: str, out_dir: str) -> None:
    from ltg_engine.export.ctranslate2_convert import convert_to_ctranslate2, placeholder_vocabulary
    from ltg_engine.training.checkpoint import load_model

    model, model_cfg, _ = load_model(run_dir)
    # Placeholder strings map 1:1 onto ids, so both engines see the same source ids.
    convert_to_ctranslate2(model, placeholder_vocabulary(model_cfg.vocab_size), out_dir)
