"""The default model shipped inside the package: ltg_engine/models/default/.

`Generator.load()` and `ltg generate "text"` use it when no model directory
is given. It is made by export/recipes/bundled_model.py (an LSTM trained on the
Debian `fortunes` and `fortunes-zh` packages; see docs/deployment.md).
"""
from __future__ import annotations

import importlib.resources
import os
import pathlib

BUNDLED_NAME = "default"


class BundledModelMissing(FileNotFoundError):
    """The package was built or installed without its bundled model."""


def bundled_model_dir(name: str = BUNDLED_NAME) -> str:
    """Path of the bundled model directory; BundledModelMissing if it is absent."""
    path = _package_models_dir() / name
    if not (path / "config.json").is_file():
        raise BundledModelMissing(
            f"the bundled model is missing ({path} has no config.json). This ltg_engine was "
            f"installed without package data; reinstall from a wheel, run "
            f"`python export/recipes/bundled_model.py`, or pass a model directory explicitly")
    return os.fspath(path)


def _package_models_dir() -> pathlib.Path:
    try:
        models = importlib.resources.files("ltg_engine") / "models"
        return pathlib.Path(os.fspath(models))   # onnxruntime needs a real directory, not a zip member
    except TypeError:
        return pathlib.Path(__file__).resolve().parent / "models"
