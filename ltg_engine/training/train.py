"""The training loop: corpus -> tokenizer -> examples -> AdamW with teacher forcing -> RUN_DIR.

    cfg = TrainConfig(data="corpus.txt", out="runs/lstm", arch="lstm", epochs=5)
    run_dir = run_training(cfg)

The CLI (`ltg train`) uses add_train_arguments / config_from_args. Model size
flags are generic (--d-model, --layers, --heads, --ffn-dim, --attention,
--dropout) and mapped onto the chosen architecture's config; --model-config
takes a JSON object of that config's own fields and wins over them.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import random
import sys
import time
from typing import Any, Dict, List, Optional

import torch
import torch.nn.functional as F

from ltg_engine.tokenizer import Tokenizer, train_tokenizer
from ltg_engine.training import checkpoint as ckpt
from ltg_engine.training import get_arch
from ltg_engine.training.data import collate, iter_text, load_examples, make_batches, split_valid

log = logging.getLogger("ltg_engine.train")


@dataclasses.dataclass
class TrainConfig:
    data: str
    out: str
    valid: Optional[str] = None
    arch: str = "lstm"
    # model size (None = the architecture's default); see _model_config
    d_model: Optional[int] = None
    layers: Optional[int] = None
    heads: Optional[int] = None
    ffn_dim: Optional[int] = None
    attention: Optional[str] = None
    dropout: Optional[float] = None
    model_config: Dict[str, Any] = dataclasses.field(default_factory=dict)
    # data
    vocab_size: int = 8000
    context_len: int = 256
    continuation_len: int = 64
    valid_fraction: float = 0.05
    # optimisation
    epochs: int = 10
    max_steps: int = 0           # > 0: stop after this many updates (wins over epochs)
    batch_size: int = 32         # sentences per batch ...
    max_batch_tokens: int = 0    # ... and, if > 0, at most this many padded tokens
    lr: float = 1e-3
    warmup_steps: int = 0        # linear warmup from 0 to lr
    lr_schedule: str = "constant"  # "constant" | "cosine" (decays to lr * min_lr_ratio at the last step)
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.01
    label_smoothing: float = 0.0
    grad_clip: float = 1.0       # max gradient norm; 0 = off
    seed: int = 0
    device: str = "cpu"
    threads: int = 0             # torch intra-op threads on CPU; 0 = torch's default
    resume: bool = False
    quiet: bool = False

    def validate(self) -> None:
        checks = [
            (self.epochs >= 1 or self.max_steps > 0, "epochs must be >= 1 (or set max_steps)"),
            (self.max_steps >= 0, "max_steps must be >= 0"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.max_batch_tokens >= 0, "max_batch_tokens must be >= 0"),
            (self.lr > 0, "lr must be > 0"),
            (self.warmup_steps >= 0, "warmup_steps must be >= 0"),
            (0.0 <= self.min_lr_ratio <= 1.0, "min_lr_ratio must be in [0, 1]"),
            (self.lr_schedule in ("constant", "cosine"), "lr_schedule must be 'constant' or 'cosine'"),
            (0.0 <= self.label_smoothing < 1.0, "label_smoothing must be in [0, 1)"),
            (self.grad_clip >= 0, "grad_clip must be >= 0"),
            (self.context_len >= 1 and self.continuation_len >= 1, "context_len and continuation_len must be >= 1"),
            (0.0 < self.valid_fraction < 1.0, "valid_fraction must be in (0, 1)"),
            (self.vocab_size >= 261, "vocab_size must be >= 261 (256 bytes + specials)"),
            (self.threads >= 0, "threads must be >= 0"),
            (self.device == "cpu" or self.device.startswith("cuda"), "device must be 'cpu' or 'cuda[:N]'"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError("device 'cuda' requested but torch.cuda.is_available() is False")


# generic size flag -> the config fields it sets, per architecture (fields a config lacks are skipped)
_GENERIC_FIELDS = {
    "d_model": ("emb_dim", "dec_hidden", "d_model"),
    "layers": ("enc_layers", "dec_layers", "n_layers", "num_layers"),
    "heads": ("n_heads", "heads", "num_heads"),
    "ffn_dim": ("ffn_dim", "d_ff", "ff_dim"),
    "attention": ("attention",),
    "dropout": ("dropout",),
}


def _model_config(cfg: TrainConfig, vocab_size: int):
    cfg_cls, _ = get_arch(cfg.arch)
    names = {f.name for f in dataclasses.fields(cfg_cls)}
    values: Dict[str, Any] = {"vocab_size": vocab_size}
    for generic, targets in _GENERIC_FIELDS.items():
        value = getattr(cfg, generic)
        if value is None:
            continue
        hits = [t for t in targets if t in names]
        if not hits:
            raise ValueError(f"--{generic.replace('_', '-')} does not apply to arch {cfg.arch!r}")
        values.update({t: value for t in hits})
    if cfg.d_model is not None and "enc_hidden" in names:
        values["enc_hidden"] = max(1, cfg.d_model // 2)  # bidirectional: memory width = d_model
    unknown = set(cfg.model_config) - names
    if unknown:
        raise ValueError(f"--model-config: {cfg.arch} config has no field(s) {sorted(unknown)}")
    values.update(cfg.model_config)
    return cfg_cls(**values)


# ----------------------------------------------------------------------------
# pieces of the loop


def sequence_loss(model, batch, label_smoothing: float = 0.0, pad_id: int = 0) -> torch.Tensor:
    logits = model(batch.src, batch.src_len, batch.tgt_in)             # (B, T, V)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch.tgt_out.reshape(-1),
                           ignore_index=pad_id, label_smoothing=label_smoothing)


@torch.no_grad()
def evaluate(model, examples, batch_size: int, device) -> float:
    """Mean per-token cross-entropy (no label smoothing) over examples."""
    model.eval()
    total, count = 0.0, 0
    for chunk in make_batches(examples, batch_size, shuffle=False):
        batch = collate(chunk).to(device)
        n = batch.n_target_tokens
        total += float(sequence_loss(model, batch)) * n
        count += n
    return total / max(count, 1)


def learning_rate(cfg: TrainConfig, step: int, total_steps: int) -> float:
    """lr for update number `step` (0-based): linear warmup, then constant or cosine to lr * min_lr_ratio."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "constant":
        return cfg.lr
    span = max(total_steps - cfg.warmup_steps, 1)
    progress = min((step - cfg.warmup_steps) / span, 1.0)
    floor = cfg.min_lr_ratio
    return cfg.lr * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def _progress(total: int, initial: int, quiet: bool):
    disable = quiet or not sys.stderr.isatty()
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is in the train extra; training works without it
        return None
    return tqdm(total=total, initial=initial, disable=disable, unit="step", dynamic_ncols=True)


def _prepare_tokenizer(cfg: TrainConfig) -> Tokenizer:
    path = os.path.join(cfg.out, ckpt.TOKENIZER)
    if not os.path.isfile(path):
        text = list(iter_text(cfg.data))
        train_tokenizer(text, path, vocab_size=cfg.vocab_size, seed=cfg.seed)
    return Tokenizer(path)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------
# the loop


def run_training(cfg: TrainConfig) -> str:
    """Train (or resume) into cfg.out; returns the run directory."""
    cfg.validate()
    saved_threads = torch.get_num_threads()
    saved_deterministic = torch.are_deterministic_algorithms_enabled()
    if cfg.threads:
        # Tiny models on a busy machine run ~10x faster on one thread than on oversubscribed cores.
        torch.set_num_threads(cfg.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)  # cheap on CPU; restored below
    try:
        return _run_training(cfg)
    finally:
        torch.set_num_threads(saved_threads)
        torch.use_deterministic_algorithms(saved_deterministic)


def _run_training(cfg: TrainConfig) -> str:
    os.makedirs(cfg.out, exist_ok=True)
    resuming = cfg.resume and ckpt.has_training_state(cfg.out)
    if not cfg.resume and os.path.isfile(os.path.join(cfg.out, ckpt.CONFIG)):
        raise ValueError(f"{cfg.out} already holds a run; pass resume=True (--resume) or choose another --out")
    _seed_everything(cfg.seed)
    device = torch.device(cfg.device)

    tokenizer = _prepare_tokenizer(cfg)
    examples = load_examples(cfg.data, tokenizer, cfg.context_len, cfg.continuation_len)
    if cfg.valid:
        train_ex, valid_ex = examples, load_examples(cfg.valid, tokenizer, cfg.context_len, cfg.continuation_len)
    else:
        train_ex, valid_ex = split_valid(examples, cfg.valid_fraction, cfg.seed)

    if resuming:
        saved = ckpt.read_run_config(cfg.out)
        model, model_cfg = ckpt.build_model(saved["arch"], saved["model_config"])
    else:
        model_cfg = _model_config(cfg, tokenizer.vocab_size)
        model = get_arch(cfg.arch)[1](model_cfg)
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.98),
                                  weight_decay=cfg.weight_decay)
    state = {"epoch": 0, "batch_in_epoch": 0, "step": 0, "best_valid_loss": None}
    if resuming:
        state.update(ckpt.load_training_state(cfg.out, model, optimizer))
    trainer = _Trainer(cfg, model, model_cfg, optimizer, tokenizer, train_ex, valid_ex, device, state)
    trainer.run()
    return cfg.out


class _Trainer:
    def __init__(self, cfg, model, model_cfg, optimizer, tokenizer, train_ex, valid_ex, device, state):
        self.cfg, self.model, self.model_cfg, self.optimizer = cfg, model, model_cfg, optimizer
        self.tokenizer, self.train_ex, self.valid_ex, self.device = tokenizer, train_ex, valid_ex, device
        self.state = state
        self.max_source_len = max(len(s) for s, _ in train_ex)
        self.total_steps = cfg.max_steps or cfg.epochs * len(self._epoch_batches(0))

    def _epoch_batches(self, epoch: int) -> List:
        return make_batches(self.train_ex, self.cfg.batch_size, self.cfg.max_batch_tokens,
                            shuffle=True, seed=self.cfg.seed * 100_003 + epoch)

    def _done(self) -> bool:
        s, c = self.state, self.cfg
        return (c.max_steps > 0 and s["step"] >= c.max_steps) or (c.max_steps == 0 and s["epoch"] >= c.epochs)

    def run(self) -> None:
        bar = _progress(self.total_steps, self.state["step"], self.cfg.quiet)
        try:
            while not self._done():
                finished_epoch = self._train_epoch(bar)
                if finished_epoch:
                    self.state["epoch"] += 1
                    self.state["batch_in_epoch"] = 0
                self._end_of_epoch()
        finally:
            if bar is not None:
                bar.close()

    def _train_epoch(self, bar) -> bool:
        """Runs the rest of the current epoch; False if max_steps stopped it early."""
        batches = self._epoch_batches(self.state["epoch"])
        tokens, t0 = 0, time.perf_counter()
        for chunk in batches[self.state["batch_in_epoch"]:]:
            if self.cfg.max_steps and self.state["step"] >= self.cfg.max_steps:
                return False
            loss, n = self._update(collate(chunk).to(self.device))
            self.state["step"] += 1
            self.state["batch_in_epoch"] += 1
            tokens += n
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tokens / (time.perf_counter() - t0):.0f}")
        return True

    def _update(self, batch):
        self.model.train()
        loss = sequence_loss(self.model, batch, self.cfg.label_smoothing)
        lr = learning_rate(self.cfg, self.state["step"], self.total_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        return loss.item(), batch.n_target_tokens

    def _end_of_epoch(self) -> None:
        valid_loss = evaluate(self.model, self.valid_ex, self.cfg.batch_size, self.device)
        best = self.state["best_valid_loss"]
        if best is None or valid_loss < best:
            self.state["best_valid_loss"] = best = valid_loss
            ckpt.save_weights(self.model, os.path.join(self.cfg.out, ckpt.BEST))
        log.info("epoch %d step %d: valid loss %.4f ppl %.2f (best %.4f)", self.state["epoch"],
                 self.state["step"], valid_loss, math.exp(min(valid_loss, 50.0)), best)
        ckpt.save_training_state(self.cfg.out, self.model, self.optimizer, dict(self.state))
        tok = self.tokenizer
        ckpt.write_run_config(
            self.cfg.out, arch=self.model.arch, model_config=self.model_cfg, train_config=self.cfg,
            special_ids={"pad": tok.pad_id, "unk": tok.unk_id, "bos": tok.bos_id, "eos": tok.eos_id},
            max_source_len=self.max_source_len, epoch=self.state["epoch"], step=self.state["step"],
            best_valid_loss=best,
        )


# ----------------------------------------------------------------------------
# command line


def _json_object(text: str) -> Dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc.msg}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object such as '{\"enc_hidden\": 384}'")
    return value


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    d = TrainConfig(data="", out="")
    a = p.add_argument
    a("--data", required=True, help="training data: .jsonl of {\"source\", \"target\"} or a plain-text corpus "
      "(documents separated by blank lines, or one per line if there are none)")
    a("--out", required=True, help="run directory to write (weights, config.json, tokenizer.model)")
    a("--valid", default=None, help="validation file in the same formats; default: hold out --valid-fraction of --data")
    a("--arch", default=d.arch, choices=["lstm", "transformer"], help="model architecture")
    a("--d-model", type=int, default=None, help="model width (LSTM: embedding and decoder hidden size; encoder memory width)")
    a("--layers", type=int, default=None, help="encoder and decoder layers")
    a("--heads", type=int, default=None, help="attention heads (transformer)")
    a("--ffn-dim", type=int, default=None, help="feed-forward width (transformer)")
    a("--attention", default=None, choices=["general", "additive"], help="LSTM attention: general (Luong, cheap at long context) or additive (Bahdanau)")
    a("--dropout", type=float, default=None, help="dropout probability")
    a("--model-config", type=_json_object, default={}, help="JSON object of architecture config fields, e.g. '{\"enc_hidden\": 384}'; wins over the flags above")
    a("--vocab-size", type=int, default=d.vocab_size, help="SentencePiece vocabulary size (smaller if the corpus is too small)")
    a("--context-len", type=int, default=d.context_len, help="source length in tokens (plain-text corpora: context before each continuation)")
    a("--continuation-len", type=int, default=d.continuation_len, help="target length in tokens")
    a("--valid-fraction", type=float, default=d.valid_fraction, help="share of examples held out for validation when --valid is not given")
    a("--epochs", type=int, default=d.epochs, help="passes over the training data")
    a("--max-steps", type=int, default=d.max_steps, help="stop after this many updates (0 = use --epochs)")
    a("--batch-size", type=int, default=d.batch_size, help="sentences (examples) per batch")
    a("--max-batch-tokens", type=int, default=d.max_batch_tokens, help="also cap padded tokens per batch (0 = no cap)")
    a("--lr", type=float, default=d.lr, help="AdamW learning rate")
    a("--warmup-steps", type=int, default=d.warmup_steps, help="linear learning-rate warmup steps")
    a("--lr-schedule", default=d.lr_schedule, choices=["constant", "cosine"], help="after warmup: constant lr, or cosine decay to lr * --min-lr-ratio at the last step")
    a("--min-lr-ratio", type=float, default=d.min_lr_ratio, help="cosine schedule: final lr as a fraction of --lr")
    a("--weight-decay", type=float, default=d.weight_decay, help="AdamW weight decay")
    a("--label-smoothing", type=float, default=d.label_smoothing, help="label smoothing for the training loss")
    a("--grad-clip", type=float, default=d.grad_clip, help="max gradient norm (0 = off)")
    a("--seed", type=int, default=d.seed, help="random seed (runs are deterministic on CPU for a fixed seed)")
    a("--device", default=d.device, help="cpu or cuda[:N]")
    a("--threads", type=int, default=d.threads, help="CPU threads for torch (0 = torch default)")
    a("--resume", action="store_true", help="continue the run in --out from last.safetensors")
    a("--quiet", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in vars(args).items() if k in names})
