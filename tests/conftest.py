"""Shared fixtures: tiny models trained in seconds on a string-reversal task.

- make_reversal_jsonl(path, n, min_len, max_len, alphabet, seed): source "c a f b",
  target "b f a c".
- train_tiny(tmp_path_factory, arch, **overrides) -> run_dir: trains a tiny model of any
  registered architecture on a reversal corpus; overrides are TrainConfig fields.
  (A `transformer_run_dir` fixture is one call: train_tiny(tmp_path_factory, "transformer", ...).)
- lstm_run_dir (session): a tiny LSTM that reverses held-out strings exactly up to
  REVERSAL_MAX_LEN tokens.

Tests that use a session training fixture are marked `slow` automatically, so
`pytest -m "not slow"` runs only the quick tests.
"""
from __future__ import annotations

import json
import os
import random
import string
import time
import warnings

import pytest

REVERSAL_ALPHABET = string.ascii_lowercase[:12]
REVERSAL_MIN_LEN = 1
REVERSAL_MAX_LEN = 14        # held-out strings up to this length are reversed exactly (16 usually is)
REVERSAL_TRAIN_MAX_LEN = 20  # trained a little longer: the longest trained lengths are learned last

# fixtures that train a model; tests using them are slow
TRAINING_FIXTURES = {"lstm_run_dir", "transformer_run_dir", "lstm_model_dir", "arch_pair"}


def make_reversal_jsonl(path, n: int, min_len: int = REVERSAL_MIN_LEN, max_len: int = REVERSAL_MAX_LEN,
                        alphabet: str = REVERSAL_ALPHABET, seed: int = 0) -> str:
    """Write n {"source": "c a f b", "target": "b f a c"} lines; returns the path."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(n):
            toks = [rng.choice(alphabet) for _ in range(rng.randint(min_len, max_len))]
            f.write(json.dumps({"source": " ".join(toks), "target": " ".join(reversed(toks))}) + "\n")
    return os.fspath(path)


def reversal_cases(n: int, min_len: int, max_len: int, alphabet: str = REVERSAL_ALPHABET, seed: int = 12345):
    """Held-out (source, target) strings, disjoint in seed from the training data."""
    rng = random.Random(seed)
    cases = []
    for _ in range(n):
        toks = [rng.choice(alphabet) for _ in range(rng.randint(min_len, max_len))]
        cases.append((" ".join(toks), " ".join(reversed(toks))))
    return cases


# Sizes tuned so training takes well under two minutes on two CPU cores.
TINY_DEFAULTS = {
    "lstm": dict(d_model=64, layers=1, dropout=0.0, lr=1e-2, warmup_steps=50, lr_schedule="cosine", min_lr_ratio=0.01, batch_size=64, epochs=1, max_steps=1500,
                 vocab_size=300, context_len=128, continuation_len=128, grad_clip=1.0, threads=1),
}


def train_tiny(tmp_path_factory, arch: str, n_examples: int = 20000, min_len: int = REVERSAL_MIN_LEN,
               max_len: int = REVERSAL_TRAIN_MAX_LEN, **overrides) -> str:
    """Train a tiny `arch` model on a fresh reversal corpus; returns its run dir."""
    from ltg_engine.training.train import TrainConfig, run_training

    root = tmp_path_factory.mktemp(f"tiny_{arch}")
    data = make_reversal_jsonl(root / "train.jsonl", n_examples, min_len, max_len, seed=1)
    valid = make_reversal_jsonl(root / "valid.jsonl", 200, min_len, max_len, seed=2)
    options = dict(TINY_DEFAULTS.get(arch, {}))
    options.update(overrides)
    cfg = TrainConfig(data=data, valid=valid, out=os.fspath(root / "run"), arch=arch, quiet=True, **options)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        # a 12-letter corpus cannot fill the requested vocabulary; that is expected here
        warnings.filterwarnings("ignore", message="corpus too small", category=RuntimeWarning)
        run_dir = run_training(cfg)
    with open(os.path.join(run_dir, "train_seconds.txt"), "w") as f:
        f.write(f"{time.perf_counter() - t0:.1f}\n")
    return run_dir


@pytest.fixture(scope="session")
def lstm_run_dir(tmp_path_factory):
    return train_tiny(tmp_path_factory, "lstm")


def pytest_collection_modifyitems(config, items):
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if TRAINING_FIXTURES & names or any(n.endswith("_run_dir") for n in names):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def lstm_model_dir(lstm_run_dir, tmp_path_factory):
    """The tiny LSTM exported to a model directory (encoder.onnx, decoder_step.onnx, ...)."""
    from ltg_engine.export.onnx_export import export_model

    out = tmp_path_factory.mktemp("lstm_model") / "model"
    return export_model(lstm_run_dir, os.fspath(out), report=lambda *_: None)
