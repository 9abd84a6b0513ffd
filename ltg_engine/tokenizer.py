"""SentencePiece tokenizer wrapper (runtime-safe: sentencepiece + numpy, never torch).

Every model uses the same special ids: pad=0, unk=1, bos=2, eos=3. Byte
fallback is on, so any UTF-8 text encodes without <unk> and round-trips.

    tok = Tokenizer("run/tokenizer.model")
    ids = tok.encode("你好, world 🙂")
    tok.decode(ids) == "你好, world 🙂"

Streaming: `IncrementalDecoder` accumulates ids and emits only the stable new
suffix of the text, so a multi-byte character split across byte-fallback
tokens is never emitted half-done.
"""
from __future__ import annotations

import io
import os
import re
import warnings
from typing import Iterable, List, Sequence, Union

import numpy as np
import sentencepiece as spm

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3


class Tokenizer:
    def __init__(self, path: Union[str, os.PathLike]):
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"tokenizer model not found: {path}")
        self.path = path
        self.sp = spm.SentencePieceProcessor(model_file=path)
        self.pad_id = self.sp.pad_id()
        self.unk_id = self.sp.unk_id()
        self.bos_id = self.sp.bos_id()
        self.eos_id = self.sp.eos_id()

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, text: str) -> List[int]:
        if not isinstance(text, str):
            raise TypeError(f"encode expects str, got {type(text).__name__}")
        try:
            return self.sp.encode(text, out_type=int)
        except RuntimeError:
            # SentencePiece takes UTF-8; lone surrogates (e.g. from surrogateescape) have none.
            _check_encodable(text)
            raise

    def decode(self, ids: Union[Sequence[int], np.ndarray]) -> str:
        """Decode ids to text; pad/bos/eos are dropped, out-of-range ids raise."""
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"token ids out of range [0, {self.vocab_size}): {bad[:5]}")
        specials = (self.pad_id, self.bos_id, self.eos_id)
        return self.sp.decode([i for i in ids if i not in specials])

    def id_to_piece(self, i: int) -> str:
        return self.sp.id_to_piece(int(i))


def _check_encodable(text: str) -> None:
    """ValueError naming the first character that has no UTF-8 form (a lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(
            f"text has a lone surrogate U+{ord(text[e.start]):04X} at character {e.start}, which is not "
            "valid Unicode (bytes decoded with errors='surrogateescape'?); decode the bytes with "
            "errors='replace' or clean the text") from None


class IncrementalDecoder:
    """Turn a stream of ids into a stream of text pieces, never splitting a character.

    push(ids) returns the new text that is stable. Text ending in U+FFFD (an
    incomplete byte sequence) is held back until later ids complete it;
    flush() returns whatever is left.
    """

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self.ids: List[int] = []
        self.emitted = ""

    def push(self, ids: Union[int, Iterable[int]]) -> str:
        self.ids.extend([ids] if isinstance(ids, (int, np.integer)) else ids)
        text = self.tokenizer.decode(self.ids)
        stable = text.rstrip("\ufffd")
        if not stable.startswith(self.emitted):
            return ""  # should not happen with SentencePiece; wait for more ids
        new = stable[len(self.emitted):]
        self.emitted = stable
        return new

    def flush(self) -> str:
        text = self.tokenizer.decode(self.ids)
        new = text[len(self.emitted):] if text.startswith(self.emitted) else ""
        self.emitted = text
        return new


def _iter_lines(source) -> Iterable[str]:
    if isinstance(source, (str, os.PathLike)) and os.path.isfile(source):
        with open(source, encoding="utf-8") as f:
            yield from f
    else:
        yield from source


def train_tokenizer(
    source: Union[str, os.PathLike, Iterable[str]],
    out_path: Union[str, os.PathLike],
    vocab_size: int = 8000,
    model_type: str = "unigram",
    character_coverage: float = 0.9995,
    max_sentence_length: int = 1 << 16,
    input_sentence_size: int = 2_000_000,
    seed: int = 0,
) -> Tokenizer:
    """Train a SentencePiece model with byte fallback and pad/unk/bos/eos = 0/1/2/3.

    `source` is a text file path or an iterable of lines. character_coverage
    0.9995 suits Chinese + English (rare characters fall back to bytes). A
    corpus too small for vocab_size yields a smaller vocabulary with a warning.
    """
    lines = [ln.rstrip("\n") for ln in _iter_lines(source)]
    lines = [ln for ln in lines if ln.strip()]
    if not lines:
        raise ValueError("cannot train a tokenizer on empty text")
    out_path = os.fspath(out_path)
    base = dict(
        sentence_iterator=None, model_writer=None, model_type=model_type,
        character_coverage=character_coverage, byte_fallback=True,
        pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID,
        max_sentence_length=max_sentence_length, input_sentence_size=input_sentence_size,
        shuffle_input_sentence=True, split_digits=True, remove_extra_whitespaces=False,
        normalization_rule_name="identity", num_threads=1,
        train_extremely_large_corpus=False, minloglevel=2,
    )
    if hasattr(spm, "set_random_generator_seed"):
        spm.set_random_generator_seed(seed)
    # 256 byte pieces + 4 specials are always present.
    vocab_size = max(int(vocab_size), 256 + 4 + 1)
    model = _train_with_fallback(lines, base, vocab_size)
    with open(out_path, "wb") as f:
        f.write(model)
    return Tokenizer(out_path)


def _train_with_fallback(lines: List[str], base: dict, vocab_size: int) -> bytes:
    def attempt(**extra):
        buf = io.BytesIO()
        kwargs = dict(base, sentence_iterator=iter(lines), model_writer=buf, vocab_size=vocab_size, **extra)
        spm.SentencePieceTrainer.train(**kwargs)
        return buf.getvalue()

    try:
        return attempt()
    except RuntimeError as exc:
        match = re.search(r"<= (\d+)", str(exc))
        if "Vocabulary size is too high" not in str(exc) and not match:
            raise
        warnings.warn(
            f"corpus too small for vocab_size={vocab_size}; training with hard_vocab_limit=False "
            f"(the vocabulary will be smaller)", RuntimeWarning, stacklevel=3,
        )
        return attempt(hard_vocab_limit=False)
