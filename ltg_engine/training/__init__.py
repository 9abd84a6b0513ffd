"""Training side of ltg_engine (imports torch; never imported by the runtime).

ARCHS maps an architecture name to (ConfigDataclass, ModelClass). Entries are
resolved lazily so that a missing optional architecture file (or one that
fails to import) only breaks runs that ask for it.
"""
from __future__ import annotations

import importlib
from typing import Tuple, Type

# name -> (module, config class name, model class name)
_ARCH_TABLE = {
    "lstm": ("ltg_engine.training.lstm", "LSTMConfig", "LSTMSeq2Seq"),
    "transformer": ("ltg_engine.training.transformer", "TransformerConfig", "TransformerSeq2Seq"),
}


def get_arch(name: str) -> Tuple[Type, Type]:
    """(ConfigDataclass, ModelClass) for an architecture name; clear error if absent."""
    if name not in _ARCH_TABLE:
        raise ValueError(f"unknown architecture {name!r}; choose one of {sorted(_ARCH_TABLE)}")
    module_name, cfg_name, model_name = _ARCH_TABLE[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"architecture {name!r} is not available: {exc}") from exc
    try:
        return getattr(module, cfg_name), getattr(module, model_name)
    except AttributeError as exc:
        raise ValueError(f"architecture {name!r}: {module_name} lacks {exc.name}") from exc


class _LazyArchs(dict):
    """dict-like view of the registry: ARCHS["lstm"] -> (LSTMConfig, LSTMSeq2Seq)."""

    def __missing__(self, name):
        return get_arch(name)

    def __contains__(self, name):
        return name in _ARCH_TABLE

    def __iter__(self):
        return iter(_ARCH_TABLE)

    def __len__(self):
        return len(_ARCH_TABLE)

    def keys(self):
        return _ARCH_TABLE.keys()


ARCHS = _LazyArchs()

__all__ = ["ARCHS", "get_arch"]
