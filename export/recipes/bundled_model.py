"""Recipe: the bundled default model (ltg_engine/models/default/).

    python export/recipes/bundled_model.py --work /tmp/bundled --minutes 40

1. Fetch text that any Debian/Ubuntu box can get offline from its package
   mirror: `fortunes` (English) and `fortunes-zh` (Chinese: Tang and Song
   poems, sayings) with `apt-get download`, unpacked with `dpkg -x` into
   WORK. Nothing of the corpus is committed.
2. Build one .txt corpus: one fortune per document (fortune files separate
   entries by lines holding "%"; documents here are separated by blank lines).
   ANSI colour codes, indentation and runs of spaces are removed; each entry is decoded as UTF-8, else GB18030,
   else Big5, and dropped if none fits.
3. Train an LSTM with Luong general attention (cheap per step at long
   context) for a wall-clock budget: training runs in chunks of updates with
   resume, so a checkpoint with a validation score exists after each chunk.
4. Export to ONNX and copy the model directory to ltg_engine/models/default.

Sizes are chosen to fit 25 MB on disk in float32 (see docs/deployment.md).
"""
from __future__ import annotations

import argparse
import glob
import json
import logging
import math
import os
import re
import shutil
import subprocess
import sys
import time

PACKAGES = ("fortunes", "fortunes-zh")
ZH_FILES = {"chinese", "tang300", "song100"}
SKIP_FILES = {"ascii-art"}          # pictures, not text
ANSI = re.compile(r"\x1b(\[[0-9;]*[A-Za-z])?")
SPACES = re.compile(r"\s+")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_OUT = os.path.join(REPO, "ltg_engine", "models", "default")

# The shipped configuration (why: docs/deployment.md, "The bundled model").
MODEL = dict(arch="lstm", vocab_size=8000, attention="general", dropout=0.1,
             model_config={"emb_dim": 128, "enc_hidden": 128, "enc_layers": 1,
                           "dec_hidden": 256, "dec_layers": 1})
TRAIN = dict(context_len=64, continuation_len=48, batch_size=64, lr=2e-3, grad_clip=1.0,
             valid_fraction=0.03, seed=0)


# ---------------------------------------------------------------- corpus

def fetch_packages(work: str) -> str:
    """apt-get download + dpkg -x into WORK/root; returns the fortunes directory."""
    debs = os.path.join(work, "debs")
    root = os.path.join(work, "root")
    os.makedirs(debs, exist_ok=True)
    if not glob.glob(os.path.join(debs, "*.deb")):
        cmd = ["apt-get", "download", *PACKAGES]
        if subprocess.run(cmd, cwd=debs).returncode != 0:
            subprocess.run(["apt-get", "update"], check=True)
            subprocess.run(cmd, cwd=debs, check=True)
    for deb in sorted(glob.glob(os.path.join(debs, "*.deb"))):
        subprocess.run(["dpkg", "-x", deb, root], check=True)
    return os.path.join(root, "usr", "share", "games", "fortunes")


def decode_entry(raw: bytes):
    for encoding in ("utf-8", "gb18030", "big5"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return None


def read_fortunes(path: str):
    """(entries, dropped) of one fortune file: entries cleaned of colour codes and blank lines."""
    with open(path, "rb") as f:
        data = f.read()
    entries, dropped = [], 0
    for raw in re.split(rb"\r?\n%\r?\n", b"\n" + data + b"\n"):
        text = decode_entry(raw)
        if text is None:
            dropped += 1
            continue
        # Indentation and runs of spaces are layout, not text: a small model would spend itself on them.
        lines = [SPACES.sub(" ", ANSI.sub("", line)).strip() for line in text.split("\n")]
        lines = [line for line in lines if line.strip()]
        if lines:
            entries.append("\n".join(lines))
    return entries, dropped


def build_corpus(fortune_dir: str, out_path: str) -> dict:
    stats = {"en": 0, "zh": 0, "dropped": 0}
    docs = []
    for path in sorted(glob.glob(os.path.join(fortune_dir, "*"))):
        name = os.path.basename(path)
        if name.endswith((".dat", ".u8")) or os.path.islink(path) or name in SKIP_FILES or not os.path.isfile(path):
            continue
        entries, dropped = read_fortunes(path)
        stats["zh" if name in ZH_FILES else "en"] += len(entries)
        stats["dropped"] += dropped
        docs.extend(entries)
    with open(out_path, "w", encoding="utf-8") as f:
        f.write("\n\n".join(docs) + "\n")
    stats["bytes"] = os.path.getsize(out_path)
    return stats


# ---------------------------------------------------------------- training

def train_for(corpus: str, run_dir: str, minutes: float, chunk_steps: int, threads: int,
              final_lr_scale: float = 0.25) -> dict:
    """Train in chunks of at most `chunk_steps` updates (resuming) until the time budget is spent.

    The last chunk is shortened to what fits, from the measured seconds per
    update, and runs at lr * final_lr_scale (a cool-down: constant-lr Adam
    leaves loss on the table that a lower final rate picks up).
    """
    from ltg_engine.training.train import TrainConfig, run_training

    t0, history = time.time(), []
    steps = _run_state(run_dir).get("step", 0)
    next_steps, last = chunk_steps, False
    while next_steps >= 10:
        steps += next_steps
        train = dict(TRAIN, lr=TRAIN["lr"] * (final_lr_scale if last else 1.0))
        cfg = TrainConfig(data=corpus, out=run_dir, epochs=1000, max_steps=steps, quiet=True,
                          threads=threads, resume=os.path.isfile(os.path.join(run_dir, "config.json")),
                          **MODEL, **train)
        chunk_t0 = time.time()
        run_training(cfg)
        seconds_per_step = (time.time() - chunk_t0) / next_steps
        state = _run_state(run_dir)
        history.append({"step": state["step"], "epoch": state["epoch"], "lr": cfg.lr,
                        "minutes": round((time.time() - t0) / 60, 1),
                        "best_valid_ppl": round(math.exp(state["best_valid_loss"]), 2)})
        print(f"step {steps}: {history[-1]}", flush=True)
        if last:
            break
        remaining = minutes * 60 - (time.time() - t0)
        next_steps = min(chunk_steps, int(remaining / seconds_per_step))
        last = remaining < 2 * chunk_steps * seconds_per_step
    return {"minutes": round((time.time() - t0) / 60, 1), "history": history}


def _run_state(run_dir: str) -> dict:
    path = os.path.join(run_dir, "config.json")
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


def write_valid_jsonl(corpus: str, run_dir: str, out_path: str) -> int:
    """The run's own held-out pairs (same split as training) as .jsonl, for `ltg quantize --eval-data`."""
    from ltg_engine.tokenizer import Tokenizer
    from ltg_engine.training.data import load_examples, split_valid

    tok = Tokenizer(os.path.join(run_dir, "tokenizer.model"))
    examples = load_examples(corpus, tok, TRAIN["context_len"], TRAIN["continuation_len"])
    _, valid = split_valid(examples, TRAIN["valid_fraction"], TRAIN["seed"])
    with open(out_path, "w", encoding="utf-8") as f:
        for src, tgt in valid:
            f.write(json.dumps({"source": tok.decode(src), "target": tok.decode(tgt)}, ensure_ascii=False) + "\n")
    return len(valid)


def export_bundle(run_dir: str, out_dir: str) -> None:
    from ltg_engine.export.onnx_export import export_model

    tmp = out_dir + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    export_model(run_dir, tmp, overwrite=True)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default="/tmp/ltg_bundled", help="scratch directory (packages, corpus, run)")
    p.add_argument("--out", default=DEFAULT_OUT, help="model directory to write")
    p.add_argument("--minutes", type=float, default=40.0, help="training wall-clock budget")
    p.add_argument("--chunk-steps", type=int, default=300, help="updates between checkpoints")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: fastest on a busy machine)")
    p.add_argument("--stage", choices=["all", "corpus", "train", "export"], default="all")
    p.add_argument("--lr", type=float, default=TRAIN["lr"], help="AdamW learning rate (resumed runs take the new one)")
    args = p.parse_args(argv)
    TRAIN["lr"] = args.lr
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    os.makedirs(args.work, exist_ok=True)
    corpus = os.path.join(args.work, "fortunes.txt")
    run_dir = os.path.join(args.work, "run")
    if args.stage in ("all", "corpus"):
        stats = build_corpus(fetch_packages(args.work), corpus)
        print(f"corpus {corpus}: {stats}", flush=True)
    if args.stage in ("all", "train"):
        summary = train_for(corpus, run_dir, args.minutes, args.chunk_steps, args.threads)
        with open(os.path.join(args.work, "train_summary.json"), "w") as f:
            json.dump(summary, f, indent=2)
    if args.stage in ("all", "export"):
        export_bundle(run_dir, args.out)
        print(f"wrote {args.out}", flush=True)
        n = write_valid_jsonl(corpus, run_dir, os.path.join(args.work, "valid.jsonl"))
        print(f"held-out pairs for int8 evaluation: {n} in {os.path.join(args.work, 'valid.jsonl')}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
