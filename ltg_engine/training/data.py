"""Training data: read a corpus, cut it into (source ids, target ids) pairs, batch by length.

Two input formats, chosen by file extension:

- `.jsonl`: one JSON object per line, {"source": str, "target": str}. Blank
  lines are skipped. The source keeps its LAST `context_len` tokens, the
  target its FIRST `continuation_len` tokens (a warning counts truncations).
- `.txt` (any other extension too): a plain corpus of documents. If the file
  contains a blank line, blank lines separate documents (the lines of a
  document are joined with "\\n"); otherwise every line is one document. Each
  document is tokenized and cut into context -> continuation pairs: at every
  position p = c, 2c, 3c, ... (c = continuation_len) the target is the next c
  tokens and the source the up-to-`context_len` tokens before p. So long
  contexts are trained by raising context_len.

Every problem with the file raises DataError naming the file and line.
"""
from __future__ import annotations

import dataclasses
import json
import os
import random
import warnings
from typing import Iterable, Iterator, List, Sequence, Tuple

import torch

Example = Tuple[List[int], List[int]]  # (source ids, target ids), no bos/eos


class DataError(ValueError):
    """A training/validation file is empty, malformed or not UTF-8 (message names file:line)."""


# ----------------------------------------------------------------------------
# reading


def _read_lines(path: str) -> Iterator[Tuple[int, str]]:
    """(1-based line number, text without newline); DataError on non-UTF-8 or empty file."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file")
    empty = True
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{path}:{lineno}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
            if line.strip():
                empty = False
            yield lineno, line.rstrip("\r\n")
    if empty:
        raise DataError(f"{path}: file is empty (no non-blank lines)")


def is_jsonl(path: str) -> bool:
    return os.fspath(path).lower().endswith(".jsonl")


def read_jsonl_pairs(path: str) -> List[Tuple[str, str]]:
    pairs = []
    for lineno, line in _read_lines(path):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{lineno}: invalid JSON: {exc.msg} (column {exc.colno})") from None
        if not isinstance(obj, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object with 'source' and 'target', got {type(obj).__name__}")
        for key in ("source", "target"):
            if key not in obj:
                raise DataError(f"{path}:{lineno}: missing key {key!r}")
            if not isinstance(obj[key], str):
                raise DataError(f"{path}:{lineno}: {key!r} must be a string, got {type(obj[key]).__name__}")
            if not obj[key]:
                raise DataError(f"{path}:{lineno}: {key!r} is empty")
        pairs.append((obj["source"], obj["target"]))
    return pairs


def read_documents(path: str) -> List[str]:
    lines = list(_read_lines(path))
    if not any(not text.strip() for _, text in lines):
        return [text for _, text in lines]
    docs, current = [], []
    for _, text in lines + [(0, "")]:
        if text.strip():
            current.append(text)
        elif current:
            docs.append("\n".join(current))
            current = []
    return docs


def iter_text(path: str) -> Iterable[str]:
    """All text of a data file, one line at a time (to train a tokenizer on)."""
    if is_jsonl(path):
        for source, target in read_jsonl_pairs(path):
            yield from source.split("\n")
            yield from target.split("\n")
    else:
        for doc in read_documents(path):
            yield from doc.split("\n")


# ----------------------------------------------------------------------------
# cutting into examples


def cut_document(ids: Sequence[int], context_len: int, continuation_len: int) -> List[Example]:
    """Context -> continuation pairs from one tokenized document (see module doc)."""
    n = len(ids)
    if n < 2:
        return []
    positions = list(range(continuation_len, n, continuation_len)) or [n // 2]
    return [
        (list(ids[max(0, p - context_len):p]), list(ids[p:p + continuation_len]))
        for p in positions
    ]


def load_examples(path: str, tokenizer, context_len: int, continuation_len: int) -> List[Example]:
    """Read and tokenize a data file into examples; DataError if it yields none."""
    if context_len < 1 or continuation_len < 1:
        raise ValueError("context_len and continuation_len must be >= 1")
    path = os.fspath(path)
    examples: List[Example] = []
    if is_jsonl(path):
        truncated = 0
        for source, target in read_jsonl_pairs(path):
            src, tgt = tokenizer.encode(source), tokenizer.encode(target)
            truncated += len(src) > context_len or len(tgt) > continuation_len
            examples.append((src[-context_len:], tgt[:continuation_len]))
        if truncated:
            warnings.warn(f"{path}: {truncated} of {len(examples)} pairs truncated to "
                          f"context_len={context_len} / continuation_len={continuation_len} tokens",
                          RuntimeWarning, stacklevel=2)
    else:
        for doc in read_documents(path):
            examples.extend(cut_document(tokenizer.encode(doc), context_len, continuation_len))
    if not examples:
        raise DataError(f"{path}: no training examples (documents need at least 2 tokens)")
    return examples


def split_valid(examples: List[Example], fraction: float, seed: int) -> Tuple[List[Example], List[Example]]:
    """Hold out `fraction` (at least 1 example, never all) for validation."""
    if len(examples) < 2:
        return examples, examples
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_valid = min(len(examples) - 1, max(1, round(len(examples) * fraction)))
    valid_idx = set(order[:n_valid])
    train = [ex for i, ex in enumerate(examples) if i not in valid_idx]
    valid = [ex for i, ex in enumerate(examples) if i in valid_idx]
    return train, valid


# ----------------------------------------------------------------------------
# batching


@dataclasses.dataclass
class Batch:
    src: torch.Tensor       # (B, S) int64, pad 0
    src_len: torch.Tensor   # (B,) int64
    tgt_in: torch.Tensor    # (B, T) int64: bos + target, padded
    tgt_out: torch.Tensor   # (B, T) int64: target + eos, padded

    def to(self, device) -> "Batch":
        return Batch(*(t.to(device) for t in dataclasses.astuple(self)))

    @property
    def n_target_tokens(self) -> int:
        return int((self.tgt_out != 0).sum())


def collate(examples: Sequence[Example], pad_id: int = 0, bos_id: int = 2, eos_id: int = 3) -> Batch:
    B = len(examples)
    S = max(max(len(s) for s, _ in examples), 1)
    T = max(len(t) for _, t in examples) + 1
    src = torch.full((B, S), pad_id, dtype=torch.long)
    tgt_in = torch.full((B, T), pad_id, dtype=torch.long)
    tgt_out = torch.full((B, T), pad_id, dtype=torch.long)
    for b, (s, t) in enumerate(examples):
        src[b, :len(s)] = torch.tensor(s, dtype=torch.long)
        tgt_in[b, :len(t) + 1] = torch.tensor([bos_id] + list(t), dtype=torch.long)
        tgt_out[b, :len(t) + 1] = torch.tensor(list(t) + [eos_id], dtype=torch.long)
    src_len = torch.tensor([len(s) for s, _ in examples], dtype=torch.long)
    return Batch(src, src_len, tgt_in, tgt_out)


def make_batches(examples: Sequence[Example], batch_size: int, max_tokens: int = 0,
                 shuffle: bool = True, seed: int = 0) -> List[List[Example]]:
    """Bucket by length: sort by (source, target) length, cut into batches, shuffle batch order.

    A batch holds at most `batch_size` sentences and, if max_tokens > 0, at most
    max_tokens padded tokens (max source + target length x sentences).
    Deterministic for a given seed.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    rng = random.Random(seed)
    keys = [(len(s), len(t), rng.random() if shuffle else i) for i, (s, t) in enumerate(examples)]
    order = sorted(range(len(examples)), key=lambda i: keys[i])
    batches, current, longest = [], [], 0
    for i in order:
        size = len(examples[i][0]) + len(examples[i][1]) + 1
        grown = max(longest, size) * (len(current) + 1)
        if current and (len(current) >= batch_size or (max_tokens and grown > max_tokens)):
            batches.append(current)
            current, longest = [], 0
        current.append(examples[i])
        longest = max(longest, size)
    if current:
        batches.append(current)
    if shuffle:
        rng.shuffle(batches)
    return batches
