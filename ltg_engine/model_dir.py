"""The model directory: config.json, tokenizer and ONNX graphs, hash-checked.

    MODEL_DIR/
      config.json        format version, architecture, sizes, special ids,
                         graph contract, generation defaults, sha256 of every
                         file, versions of the tools that made it
      tokenizer.model    SentencePiece, byte fallback on
      encoder.onnx
      decoder_step.onnx
      (encoder.int8.onnx, decoder_step.int8.onnx after quantization)

Loading checks the format version and every file's size and sha256 before
any onnxruntime session is made, and names the file that is missing,
truncated or altered.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Dict, Optional

FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
TOKENIZER_NAME = "tokenizer.model"
GRAPH_FILES = {
    "float32": {"encoder": "encoder.onnx", "decoder_step": "decoder_step.onnx"},
    "int8": {"encoder": "encoder.int8.onnx", "decoder_step": "decoder_step.int8.onnx"},
}


class ModelDirError(ValueError):
    """A model directory that cannot be used; the message names the file."""


def sha256_file(path: str, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def write_config(model_dir: str, config: dict) -> str:
    """Hash every file named in config['files'] (keys) and write config.json."""
    files = {}
    for name in sorted(config.get("files", {})):
        path = os.path.join(model_dir, name)
        files[name] = {"sha256": sha256_file(path), "bytes": os.path.getsize(path)}
    config = dict(config, files=files, format_version=FORMAT_VERSION)
    out = os.path.join(model_dir, CONFIG_NAME)
    tmp = out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, out)
    return out


@dataclass
class ModelDir:
    path: str
    config: dict

    @property
    def contract(self) -> dict:
        return self.config["graph"]

    @property
    def vocab_size(self) -> int:
        return int(self.config["vocab_size"])

    @property
    def special_ids(self) -> Dict[str, int]:
        return self.config["special_ids"]

    @property
    def max_source_length(self) -> Optional[int]:
        return self.config.get("max_source_length")

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def graph_file(self, graph: str, precision: str = "float32") -> str:
        if precision not in GRAPH_FILES:
            raise ModelDirError(f"unknown precision {precision!r}; choose one of {sorted(GRAPH_FILES)}")
        name = GRAPH_FILES[precision][graph]
        if name not in self.config["files"]:
            hint = " (run `ltg quantize` to make it)" if precision == "int8" else ""
            raise ModelDirError(f"{self.path}: this model directory has no {name}{hint}")
        return self.file(name)

    def graph_sha256(self, graph: str, precision: str = "float32") -> str:
        """The sha256 config.json records (and loading verified) for a graph file."""
        return self.config["files"][os.path.basename(self.graph_file(graph, precision))]["sha256"]

    @property
    def precisions(self):
        return [p for p, names in GRAPH_FILES.items() if names["encoder"] in self.config["files"]]


def load_model_dir(path: str, verify: bool = True) -> ModelDir:
    """Read config.json and check every listed file before anything runs."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"model directory must be a path, got {type(path).__name__}")
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise ModelDirError(f"model directory {path!r} does not exist or is not a directory")
    cfg_path = os.path.join(path, CONFIG_NAME)
    if not os.path.isfile(cfg_path):
        raise ModelDirError(f"{cfg_path} is missing: not an ltg_engine model directory (make one with `ltg export`)")
    try:
        with open(cfg_path, encoding="utf-8") as f:
            config = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelDirError(f"{cfg_path} is not valid JSON: {e}") from None
    if not isinstance(config, dict):
        raise ModelDirError(f"{cfg_path} must hold a JSON object")
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelDirError(
            f"{cfg_path}: format_version {version!r} is not supported by this ltg_engine "
            f"(expects {FORMAT_VERSION}); re-export the model with this version"
        )
    for key in ("arch", "vocab_size", "special_ids", "graph", "files"):
        if key not in config:
            raise ModelDirError(f"{cfg_path}: required key {key!r} is missing")
    for required in (TOKENIZER_NAME, GRAPH_FILES["float32"]["encoder"], GRAPH_FILES["float32"]["decoder_step"]):
        if required not in config["files"]:
            raise ModelDirError(f"{cfg_path}: files list lacks {required}")
    if verify:
        verify_files(path, config["files"])
    return ModelDir(path=path, config=config)


def verify_files(path: str, files: dict) -> None:
    if not isinstance(files, dict):
        raise ModelDirError(f"{os.path.join(path, CONFIG_NAME)}: 'files' must map file names to their sha256 and bytes")
    for name, meta in files.items():
        full = os.path.join(path, name)
        if not (isinstance(meta, dict) and isinstance(meta.get("sha256"), str)
                and isinstance(meta.get("bytes"), int)):
            raise ModelDirError(f"{os.path.join(path, CONFIG_NAME)}: files entry for {name!r} must hold "
                                f"'sha256' (str) and 'bytes' (int), got {meta!r}")
        if not os.path.isfile(full):
            raise ModelDirError(f"{full} is missing (listed in config.json)")
        size = os.path.getsize(full)
        if size != meta["bytes"]:
            kind = "truncated" if size < meta["bytes"] else "larger than recorded"
            raise ModelDirError(f"{full} is {kind}: {size} bytes, config.json records {meta['bytes']}")
        if sha256_file(full) != meta["sha256"]:
            raise ModelDirError(f"{full} was altered: its sha256 does not match config.json")
