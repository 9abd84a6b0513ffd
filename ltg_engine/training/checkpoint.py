"""Run directory: weights, configs and resumable training state, without pickle.

    RUN_DIR/
      config.json            arch, model config, training config, vocab size, special ids,
                             longest trained source, epoch/step, best valid loss
      tokenizer.model        SentencePiece
      model.safetensors      best weights (lowest validation loss)
      last.safetensors       latest weights            } for --resume
      optimizer.safetensors  optimizer tensors + RNG   }
      trainer_state.json     optimizer scalars, epoch, step, position in epoch

Nothing is pickled: tensors go to safetensors, everything else to JSON.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Dict, Optional, Tuple

import torch
from safetensors.torch import load_file, load_model as st_load_model, save_file, save_model as st_save_model

from ltg_engine.training import get_arch

FORMAT = "ltg_engine.run/1"
CONFIG = "config.json"
TOKENIZER = "tokenizer.model"
BEST = "model.safetensors"
LAST = "last.safetensors"
OPTIMIZER = "optimizer.safetensors"
TRAINER_STATE = "trainer_state.json"


def _write_json(path: str, obj: Dict[str, Any]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, path)  # atomic: a crash never leaves half a config


def read_run_config(run_dir: str) -> Dict[str, Any]:
    path = os.path.join(run_dir, CONFIG)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{run_dir}: not a run directory ({CONFIG} missing)")
    with open(path, encoding="utf-8") as f:
        cfg = json.load(f)
    if cfg.get("format") != FORMAT:
        raise ValueError(f"{path}: unsupported format {cfg.get('format')!r}, expected {FORMAT!r}")
    return cfg


def write_run_config(run_dir: str, *, arch: str, model_config, train_config, special_ids: Dict[str, int],
                     max_source_len: int, epoch: int, step: int, best_valid_loss: Optional[float]) -> None:
    _write_json(os.path.join(run_dir, CONFIG), {
        "format": FORMAT,
        "arch": arch,
        "model_config": dataclasses.asdict(model_config),
        "train_config": dataclasses.asdict(train_config) if dataclasses.is_dataclass(train_config) else dict(train_config),
        "vocab_size": model_config.vocab_size,
        "special_ids": dict(special_ids),
        "max_source_len": int(max_source_len),
        "epoch": int(epoch),
        "step": int(step),
        "best_valid_loss": best_valid_loss,
        "torch_version": torch.__version__,
    })


# ----------------------------------------------------------------------------
# weights


def save_weights(model: torch.nn.Module, path: str) -> None:
    tmp = path + ".tmp"
    st_save_model(model, tmp)  # handles shared (tied) tensors, unlike save_file
    os.replace(tmp, path)


def build_model(arch: str, model_config: Dict[str, Any]):
    cfg_cls, model_cls = get_arch(arch)
    cfg = cfg_cls(**model_config)
    return model_cls(cfg), cfg


def load_model(run_dir: str, weights: str = BEST, device: str = "cpu"):
    """(model in eval mode, model config dataclass, run config dict) from a run directory."""
    run_cfg = read_run_config(run_dir)
    model, model_cfg = build_model(run_cfg["arch"], run_cfg["model_config"])
    path = os.path.join(run_dir, weights)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{run_dir}: weights file {weights} missing")
    missing, unexpected = st_load_model(model, path, strict=False, device=device)
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not match {run_cfg['arch']} config "
                         f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})")
    return model.to(device).eval(), model_cfg, run_cfg


# ----------------------------------------------------------------------------
# optimizer + trainer state (resume)


def _split_optimizer_state(sd: Dict[str, Any]) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    tensors, scalars = {}, {}
    for idx, param_state in sd["state"].items():
        for key, value in param_state.items():
            name = f"state.{idx}.{key}"
            if torch.is_tensor(value):
                tensors[name] = value.detach().cpu().contiguous()
            else:
                scalars[name] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _join_optimizer_state(tensors: Dict[str, torch.Tensor], meta: Dict[str, Any]) -> Dict[str, Any]:
    state: Dict[int, Dict[str, Any]] = {}
    items = [(k, v) for k, v in tensors.items() if k.startswith("state.")]
    items += list(meta["scalars"].items())
    for name, value in items:
        _, idx, key = name.split(".", 2)
        state.setdefault(int(idx), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save_training_state(run_dir: str, model, optimizer, trainer: Dict[str, Any]) -> None:
    """last.safetensors + optimizer.safetensors + trainer_state.json (trainer: JSON-able scalars)."""
    save_weights(model, os.path.join(run_dir, LAST))
    tensors, meta = _split_optimizer_state(optimizer.state_dict())
    tensors["rng.torch"] = torch.get_rng_state()
    tmp = os.path.join(run_dir, OPTIMIZER + ".tmp")
    save_file(tensors, tmp)
    os.replace(tmp, os.path.join(run_dir, OPTIMIZER))
    _write_json(os.path.join(run_dir, TRAINER_STATE), {"optimizer": meta, "trainer": trainer})


def has_training_state(run_dir: str) -> bool:
    return all(os.path.isfile(os.path.join(run_dir, f)) for f in (LAST, OPTIMIZER, TRAINER_STATE, CONFIG))


def load_training_state(run_dir: str, model, optimizer) -> Dict[str, Any]:
    """Restore weights, optimizer and RNG in place; returns the trainer scalars."""
    missing, unexpected = st_load_model(model, os.path.join(run_dir, LAST), strict=False)
    if missing or unexpected:
        raise ValueError(f"{run_dir}/{LAST}: weights do not match the model")
    tensors = load_file(os.path.join(run_dir, OPTIMIZER))
    with open(os.path.join(run_dir, TRAINER_STATE), encoding="utf-8") as f:
        saved = json.load(f)
    rng = tensors.pop("rng.torch", None)
    optimizer.load_state_dict(_join_optimizer_state(tensors, saved["optimizer"]))
    if rng is not None:
        torch.set_rng_state(rng)
    return saved["trainer"]
