"""Generation options: one dataclass with Hugging Face `generate` names and defaults.

Validation lives here, in Python, and runs before any nogil code sees a value:
every bad value raises ValueError naming the option and the value.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import numpy as np

_INT_OPTIONS = ("max_new_tokens", "min_new_tokens", "num_beams", "top_k",
                "no_repeat_ngram_size", "num_return_sequences")
_FLOAT_OPTIONS = ("temperature", "top_p", "repetition_penalty", "length_penalty")
_BOOL_OPTIONS = ("do_sample",)
# Bounds that keep every processed float32 logit finite in float64 (|x| < 3.5e38 * 1e6 / 1e-6).
MIN_TEMPERATURE = 1e-6
MAX_REPETITION_PENALTY = 1e6


@dataclass(frozen=True)
class GenerationOptions:
    """What to generate and how. Names and defaults follow HF `generate`.

    eos_token_id: int or list of ints; None means the model's own eos id.
    banned_token_ids: ids that are never generated.
    seed: sampling seed (int in [0, 2**64)); None draws one from the OS.
    do_sample with num_beams > 1 is rejected: sampling is greedy-loop only.
    """
    max_new_tokens: int = 128
    min_new_tokens: int = 0
    num_beams: int = 1
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 50
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    length_penalty: float = 1.0
    early_stopping: Union[bool, str] = False   # True | False | "never" (HF semantics)
    num_return_sequences: int = 1
    eos_token_id: Optional[Union[int, Sequence[int]]] = None
    banned_token_ids: Sequence[int] = ()
    seed: Optional[int] = None

    @classmethod
    def option_names(cls) -> tuple:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_kwargs(cls, **kwargs) -> "GenerationOptions":
        """Build from keyword arguments; an unknown name raises ValueError."""
        _check_names(kwargs)
        return cls(**kwargs)

    def replace(self, **kwargs) -> "GenerationOptions":
        """A copy with some options changed; an unknown name raises ValueError."""
        _check_names(kwargs)
        return dataclasses.replace(self, **kwargs)

    def validate(self, vocab_size: int) -> "GenerationOptions":
        """Raise ValueError for any invalid value; return self when all are valid."""
        _check_int("vocab_size", vocab_size, minimum=1)
        for name in _INT_OPTIONS:
            _check_int(name, getattr(self, name))
        for name in _FLOAT_OPTIONS:
            _check_float(name, getattr(self, name))
        for name in _BOOL_OPTIONS:
            value = getattr(self, name)
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"{name} must be a bool, got {value!r}")
        if not (isinstance(self.early_stopping, (bool, np.bool_)) or
                (isinstance(self.early_stopping, str) and self.early_stopping == "never")):
            raise ValueError(f"early_stopping must be True, False or \"never\", got {self.early_stopping!r}")
        self._check_ranges()
        self._check_token_ids(vocab_size)
        return self

    def _check_ranges(self) -> None:
        if self.max_new_tokens <= 0:
            _bad("max_new_tokens", self.max_new_tokens, "must be >= 1")
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            _bad("min_new_tokens", self.min_new_tokens,
                 f"must be in [0, max_new_tokens={self.max_new_tokens}]")
        if self.num_beams < 1:
            _bad("num_beams", self.num_beams, "must be >= 1")
        if not 1 <= self.num_return_sequences <= self.num_beams:
            _bad("num_return_sequences", self.num_return_sequences,
                 f"must be in [1, num_beams={self.num_beams}]")
        if self.do_sample and self.num_beams > 1:
            _bad("do_sample", self.do_sample,
                 f"is not supported with num_beams={self.num_beams} > 1 (sample with num_beams=1)")
        if self.temperature < MIN_TEMPERATURE:
            _bad("temperature", self.temperature, f"must be >= {MIN_TEMPERATURE} (> 0; tinier values "
                 "overflow float64 logits: use do_sample=False for argmax)")
        if self.top_k < 0:
            _bad("top_k", self.top_k, "must be >= 0 (0 turns it off)")
        if not 0 < self.top_p <= 1:
            _bad("top_p", self.top_p, "must be in (0, 1]")
        if not 1 / MAX_REPETITION_PENALTY <= self.repetition_penalty <= MAX_REPETITION_PENALTY:
            _bad("repetition_penalty", self.repetition_penalty,
                 f"must be > 0, within [1/{MAX_REPETITION_PENALTY:g}, {MAX_REPETITION_PENALTY:g}] "
                 "so float32 logits stay finite in float64")
        if self.no_repeat_ngram_size < 0:
            _bad("no_repeat_ngram_size", self.no_repeat_ngram_size, "must be >= 0")
        if self.seed is not None:
            _check_int("seed", self.seed)
            if not 0 <= self.seed < 2 ** 64:
                _bad("seed", self.seed, "must be in [0, 2**64)")

    def _check_token_ids(self, vocab_size: int) -> None:
        if self.eos_token_id is not None:
            eos = _as_id_list("eos_token_id", self.eos_token_id, vocab_size)
            if not eos:
                _bad("eos_token_id", self.eos_token_id, "must not be empty")
        _as_id_list("banned_token_ids", self.banned_token_ids, vocab_size)


def token_id_list(name: str, ids, vocab_size: int) -> list:
    """Normalize an int or a sequence of ints to a list of ids in [0, vocab_size)."""
    return _as_id_list(name, ids, vocab_size)


def _check_names(kwargs: dict) -> None:
    valid = GenerationOptions.option_names()
    unknown = sorted(k for k in kwargs if k not in valid)
    if unknown:
        raise ValueError(f"unknown generation option(s) {unknown}; valid names: {', '.join(valid)}")


def _bad(name: str, value, why: str):
    raise ValueError(f"{name}={value!r} {why}")


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _check_int(name: str, value, minimum=None) -> None:
    if not _is_int(value):
        raise ValueError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    if minimum is not None and value < minimum:
        _bad(name, value, f"must be >= {minimum}")


def _check_float(name: str, value) -> None:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    if not math.isfinite(float(value)):
        _bad(name, value, "must be finite")


def _as_id_list(name: str, ids, vocab_size: int) -> list:
    if _is_int(ids):
        ids = [ids]
    if isinstance(ids, (str, bytes)) or not isinstance(ids, (list, tuple, np.ndarray, range)):
        raise ValueError(f"{name} must be an int or a list of ints, got {ids!r}")
    out = []
    for token in list(ids):
        if not _is_int(token):
            raise ValueError(f"{name} must contain ints, got {token!r} in {ids!r}")
        if not 0 <= token < vocab_size:
            raise ValueError(f"{name} contains {token}, outside [0, vocab_size={vocab_size})")
        out.append(int(token))
    return out
