"""The torch-free wheel: build it, install it in a fresh venv without torch, generate with the bundled model.

Slow (a wheel build and a venv with onnxruntime: a minute or two). Needs the
`build` package, and setuptools/Cython/numpy in this environment (the wheel is
built with --no-isolation so no build dependencies are downloaded).
"""
from __future__ import annotations

import glob
import os
import subprocess
import sys
import zipfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNTIME_DEPS = ["numpy", "onnxruntime", "sentencepiece"]

pytestmark = pytest.mark.slow


def _run(cmd, **kwargs):
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    for module in ("build", "Cython", "setuptools", "numpy"):
        pytest.importorskip(module, reason=f"building the wheel needs {module}")
    if not os.path.isfile(os.path.join(REPO, "ltg_engine", "models", "default", "config.json")):
        pytest.skip("the bundled model is not in this checkout (export/recipes/bundled_model.py makes it)")
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), REPO], cwd=REPO)
    wheels = glob.glob(str(out / "*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory):
    root = tmp_path_factory.mktemp("venv") / "env"
    _run([sys.executable, "-m", "venv", str(root)])
    python = str(root / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    _run([python, "-m", "pip", "install", "--quiet", "--no-deps", wheel], env=env)
    _run([python, "-m", "pip", "install", "--quiet", *RUNTIME_DEPS], env=env)
    return root, env


def test_wheel_contents(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("ltg_engine/_search") and n.endswith(".so") for n in names)
    for module in ("quantize", "onnx_export", "contract"):
        assert f"ltg_engine/export/{module}.py" in names
    for name in ("config.json", "tokenizer.model", "encoder.onnx", "decoder_step.onnx"):
        assert f"ltg_engine/models/default/{name}" in names
    assert not any(n.startswith(("export/", "tests/", "csrc/")) for n in names), "nothing generic in site-packages"


def test_sdist_manifest_lists_cython_headers():
    with open(os.path.join(REPO, "MANIFEST.in")) as f:
        assert "*.pxd" in f.read()


def test_venv_has_no_torch(venv):
    root, env = venv
    listed = _run([str(root / "bin" / "python"), "-m", "pip", "list", "--format=freeze"], env=env).stdout.lower()
    assert "torch==" not in listed
    assert "ltg_engine==" in listed or "ltg-engine==" in listed


def test_ltg_generate_with_bundled_model_outside_repo(venv, tmp_path):
    root, env = venv
    proc = _run([str(root / "bin" / "ltg"), "generate", "The meaning of life is", "--max-new-tokens", "20"],
                cwd=tmp_path, env=env)
    assert proc.stdout.strip(), f"no text generated; stderr: {proc.stderr[-2000:]}"


def test_installed_runtime_never_imports_torch(venv, tmp_path):
    root, env = venv
    code = ("import sys, ltg_engine\n"
            "from ltg_engine import Generator\n"
            "assert ltg_engine.__file__.startswith(sys.prefix), ltg_engine.__file__\n"
            "g = Generator.load()\n"
            "print(g.generate('hello', max_new_tokens=5).text)\n"
            "assert 'torch' not in sys.modules\n")
    _run([str(root / "bin" / "python"), "-c", code], cwd=tmp_path, env=env)
