"""Long-context recall through the exported engine: does each architecture extrapolate?

Task (synthetic, token ids, no tokenizer involved):

    source = filler ... k1 v1 ... filler ... k2 v2 ... filler ... MARK kq
    target = vq

A source of L tokens holds PAIRS planted "key value" pairs at uniformly random
positions among random filler tokens (keys, values, filler and MARK come from
disjoint id ranges; keys within a source are distinct), and ends with MARK and
one of its keys. The answer is that key's value token (chance 1/64). Models
train on L in [MIN_TRAIN_LEN, 512], log-uniform (short batches are cheap and
teach the lookup; long ones teach distance); they are tested at 512 (in
distribution), 2,048 and
8,192 tokens, where the queried pair is typically thousands of tokens back.
What changes with L is only distance and the number of distractor positions,
so the drop from 512 to 8k measures position extrapolation (and attention
dilution), not a new skill.

Every model is trained by the loop below, written as a normal run directory
(model.safetensors, config.json, tokenizer.model), exported with export_model
and evaluated through Generator.generate_ids (greedy), the shipped engine.
Runs and model directories are cached in benchmarks/.cache/recall/.

    python benchmarks/long_context_recall.py                      # train (cached) + evaluate all
    python benchmarks/long_context_recall.py train --arch lstm    # one model
    python benchmarks/long_context_recall.py eval --queries 200,100,50
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import random
import resource
import shutil
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.path.join(HERE, ".cache", "recall")
RESULTS = os.path.join(HERE, "results", "long_context_recall.md")

PAD, UNK, BOS, EOS = 0, 1, 2, 3
KEYS = range(4, 68)              # 64 keys
VALUES = range(68, 132)          # 64 value tokens
MARK = 132
FILLER_START = 133               # filler: 133 .. vocab_size - 1
PAIRS = 4
MIN_TRAIN_LEN, MAX_TRAIN_LEN = 24, 512
CONTEXTS = (512, 2048, 8192)
QUERIES = (200, 100, 50)

ARCHS = {
    "lstm": ("lstm", dict(emb_dim=64, enc_hidden=64, enc_layers=1, dec_hidden=128, dec_layers=1,
                          attention="general", dropout=0.0)),
    "transformer": ("transformer", dict(enc_layers=2, dec_layers=2, d_model=64, heads=4, ffn_dim=256,
                                        dropout=0.0, activation="gelu")),
    "transformer_w32": ("transformer", dict(enc_layers=2, dec_layers=2, d_model=64, heads=4, ffn_dim=256,
                                            dropout=0.0, activation="gelu", encoder_window=32)),
}


# ---------------------------------------------------------------- data

def make_example(rng: random.Random, length: int, vocab_size: int):
    """(source ids of exactly `length` tokens, target ids [value])."""
    keys = rng.sample(KEYS, PAIRS)
    values = [rng.choice(VALUES) for _ in keys]
    n_filler = length - 2 * PAIRS - 2
    if n_filler < 0:
        raise ValueError(f"length {length} is too short for {PAIRS} pairs")
    filler = [rng.randrange(FILLER_START, vocab_size) for _ in range(n_filler)]
    slots = sorted(rng.choices(range(n_filler + 1), k=PAIRS))         # insertion points, uniform
    src, prev = [], 0
    for slot, k, v in zip(slots, keys, values):
        src += filler[prev:slot] + [k, v]
        prev = slot
    q = rng.randrange(PAIRS)
    src += filler[prev:] + [MARK, keys[q]]
    return src, [values[q]]


def make_batch(rng, batch: int, vocab_size: int):
    import torch

    L = int(round(math.exp(rng.uniform(math.log(MIN_TRAIN_LEN), math.log(MAX_TRAIN_LEN)))))  # one per batch
    pairs = [make_example(rng, L, vocab_size) for _ in range(batch)]
    src = torch.tensor([s for s, _ in pairs])                          # (B, L)
    tgt = torch.tensor([[BOS] + t + [EOS] for _, t in pairs])          # (B, 3)
    return src, torch.full((batch,), L), tgt


def fixed_batch(rng, batch: int, length: int, vocab_size: int):
    import torch

    pairs = [make_example(rng, length, vocab_size) for _ in range(batch)]
    return (torch.tensor([s for s, _ in pairs]), torch.full((batch,), length),
            torch.tensor([[BOS] + t + [EOS] for _, t in pairs]))


# ---------------------------------------------------------------- training

def tokenizer_for(vocab_size: int, path: str) -> int:
    """A SentencePiece model of exactly vocab_size pieces (the run directory needs one; ids are used raw)."""
    from ltg_engine.tokenizer import Tokenizer, train_tokenizer

    rng = random.Random(0)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 7))) for _ in range(400)]
    lines = [" ".join(rng.choice(words) for _ in range(12)) for _ in range(3000)]
    train_tokenizer(lines, path, vocab_size=vocab_size)
    return Tokenizer(path).vocab_size


def train(name: str, budget_s: float, batch: int = 16, lr: float = 2e-3, seed: int = 0, resume: bool = False,
          report=print) -> str:
    """Train ARCHS[name] for budget_s seconds of wall time into CACHE/name/run (cached).

    resume: continue a cached run for budget_s more (fresh optimizer, short warmup)."""
    import torch

    from ltg_engine.training import checkpoint as ckpt
    from ltg_engine.training import get_arch

    run_dir = os.path.join(CACHE, name, "run")
    done = os.path.isfile(os.path.join(run_dir, ckpt.BEST))
    if done and not resume:
        return run_dir
    os.makedirs(run_dir, exist_ok=True)
    torch.set_num_threads(1)                       # small GEMMs on a shared box: more threads only spin
    arch, sizes = ARCHS[name]
    if done:
        model, model_cfg, _ = ckpt.load_model(run_dir)
        vocab_size = model_cfg.vocab_size
        with open(os.path.join(CACHE, name, "train.json")) as f:
            before = json.load(f)
        seed += before["steps"]                    # new batches, not a replay of the first run's
        shutil.rmtree(os.path.join(CACHE, name, "model"), ignore_errors=True)   # re-export the new weights
    else:
        torch.manual_seed(seed)
        vocab_size = tokenizer_for(300, os.path.join(run_dir, ckpt.TOKENIZER))
        cfg_cls, model_cls = get_arch(arch)
        model_cfg = cfg_cls(vocab_size=vocab_size, **sizes)
        model = model_cls(model_cfg)
        before = {"steps": 0, "seconds": 0.0, "log": []}
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.01)
    rng, held = random.Random(seed), fixed_batch(random.Random(10_000), 64, 256, vocab_size)
    t0, step, log = time.perf_counter() - before["seconds"], before["steps"], before["log"]
    start = step
    while time.perf_counter() - t0 < before["seconds"] + budget_s:
        src, src_len, tgt = make_batch(rng, batch, vocab_size)
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (step - start + 1) / 100)
        model.train()
        logits = model(src, src_len, tgt[:, :-1])                      # (B, 2, V)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab_size), tgt[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 200 == 0:
            acc = teacher_forced_recall(model, held)
            log.append((step, round(time.perf_counter() - t0), round(float(loss), 3), acc))
            report(f"{name}: step {step} {time.perf_counter() - t0:.0f}s loss {float(loss):.3f} "
                   f"held-out recall (L={held[1][0]}) {acc:.2f}")
    seconds = time.perf_counter() - t0
    ckpt.save_weights(model.eval(), os.path.join(run_dir, ckpt.BEST))
    ckpt.write_run_config(run_dir, arch=arch, model_config=model_cfg,
                          train_config={"task": "recall", "batch": batch, "lr": lr, "seed": seed,
                                        "min_len": MIN_TRAIN_LEN, "max_len": MAX_TRAIN_LEN, "pairs": PAIRS},
                          special_ids={"pad": PAD, "unk": UNK, "bos": BOS, "eos": EOS},
                          max_source_len=MAX_TRAIN_LEN, epoch=0, step=step, best_valid_loss=None)
    with open(os.path.join(CACHE, name, "train.json"), "w") as f:
        json.dump({"steps": step, "seconds": round(seconds, 1), "params": n_params, "batch": batch,
                   "log": log, "final_heldout_recall": teacher_forced_recall(model, held)}, f, indent=1)
    return run_dir


def teacher_forced_recall(model, held) -> float:
    import torch

    src, src_len, tgt = held
    model.eval()
    with torch.no_grad():
        pred = model(src, src_len, tgt[:, :1]).argmax(-1)             # (B, 1): value | BOS
    return float((pred == tgt[:, 1:2]).all(-1).float().mean())


def export(name: str) -> str:
    from ltg_engine.export.onnx_export import export_model

    out = os.path.join(CACHE, name, "model")
    if not os.path.isfile(os.path.join(out, "config.json")):
        export_model(os.path.join(CACHE, name, "run"), out, overwrite=True, report=lambda *_: None)
    return out


# ---------------------------------------------------------------- evaluation

def evaluate(name: str, contexts, queries, threads: int = 1, report=print) -> list:
    """Exact recall, encoder seconds and decoder ms/token per context, through Generator."""
    from ltg_engine import Generator

    gen = Generator.load(export(name), threads=threads)
    rows = []
    for L, n in zip(contexts, queries):
        rng = random.Random(777 + L)
        hits, enc_s, dec_s, steps = 0, [], 0.0, 0
        for _ in range(n):
            src, want = make_example(rng, L, gen.vocab_size)
            got = gen.generate_ids([src], max_new_tokens=2)[0]
            hits += got.token_ids[:1] == want
            stats = gen.last_stats
            enc_s.append(stats["encoder_seconds"])
            dec_s += stats["decoder_seconds"]
            steps += stats["steps"]
        row = {"arch": name, "context": L, "queries": n, "recall": hits / n,
               "encoder_s": float(np.median(enc_s)), "step_ms": 1000 * dec_s / max(steps, 1),
               "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
        report(f"{name} L={L}: recall {hits}/{n} = {hits / n:.3f}, encoder {row['encoder_s'] * 1000:.0f} ms, "
               f"step {row['step_ms']:.2f} ms")
        rows.append(row)
    with open(os.path.join(CACHE, name, "eval.json"), "w") as f:
        json.dump(rows, f, indent=1)
    return rows


def write_table(results: dict) -> None:
    lines = ["| model | params | training | " + " | ".join(f"recall @{L}" for L in CONTEXTS) + " |",
             "|---|---|---|" + "---|" * len(CONTEXTS)]
    timing = ["| model | " + " | ".join(f"encoder / step @{L}" for L in CONTEXTS) + " |",
              "|---|" + "---|" * len(CONTEXTS)]
    for name, rows in results.items():
        with open(os.path.join(CACHE, name, "train.json")) as f:
            t = json.load(f)
        by_len = {r["context"]: r for r in rows}
        cells = [f"{by_len[L]['recall']:.3f} ({by_len[L]['queries']})" if L in by_len else "-" for L in CONTEXTS]
        lines.append(f"| {name} | {t['params'] / 1e3:.0f}k | {t['steps']} steps, {t['seconds'] / 60:.1f} min | "
                     + " | ".join(cells) + " |")
        cells = [f"{by_len[L]['encoder_s'] * 1000:.0f} ms / {by_len[L]['step_ms']:.2f} ms" if L in by_len else "-"
                 for L in CONTEXTS]
        timing.append(f"| {name} | " + " | ".join(cells) + " |")
    tables = "\n".join(lines) + "\n\n" + "\n".join(timing) + "\n"
    print(tables)
    with open(os.path.join(CACHE, "tables.md"), "w") as f:   # pasted into RESULTS with its reading
        f.write(tables)
    with open(os.path.join(CACHE, "results.json"), "w") as f:
        json.dump(results, f, indent=1)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("command", nargs="?", default="all", choices=["all", "train", "eval"])
    p.add_argument("--arch", action="append", choices=sorted(ARCHS), help="default: all")
    p.add_argument("--budget-min", type=float, default=12.0, help="training wall time per model (minutes)")
    p.add_argument("--contexts", default=",".join(map(str, CONTEXTS)))
    p.add_argument("--queries", default=",".join(map(str, QUERIES)))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--resume", action="store_true", help="train cached runs for --budget-min more")
    args = p.parse_args(argv)
    names = args.arch or list(ARCHS)
    if args.command in ("all", "train"):
        for name in names:
            train(name, args.budget_min * 60, resume=args.resume)
            export(name)
    if args.command in ("all", "eval"):
        contexts = [int(x) for x in args.contexts.split(",")]
        queries = [int(x) for x in args.queries.split(",")]
        for name in names:
            evaluate(name, contexts, queries, args.threads)
        results = {}
        for name in ARCHS:                               # every model evaluated so far, this run or earlier
            path = os.path.join(CACHE, name, "eval.json")
            if os.path.isfile(path):
                with open(path) as f:
                    results[name] = json.load(f)
        write_table(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
