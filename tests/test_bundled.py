"""The bundled default model (ltg_engine/models/default) and the session options used to run it."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ltg_engine import Generator
from ltg_engine import bundled
from ltg_engine.model_dir import load_model_dir
from ltg_engine.sessions import SessionConfig

PROMPTS = {"en": "The secret of a happy life is", "zh": "床前明月光，"}
MAX_BYTES = 25 * 1024 * 1024


def _has_bundle() -> bool:
    try:
        bundled.bundled_model_dir()
        return True
    except bundled.BundledModelMissing:
        return False


needs_bundle = pytest.mark.skipif(not _has_bundle(), reason="the bundled model is not in this checkout")


@pytest.fixture(scope="module")
def gen():
    return Generator.load(threads=1)


@needs_bundle
def test_bundled_dir_is_inside_the_package():
    path = bundled.bundled_model_dir()
    assert os.path.commonpath([path, os.path.dirname(bundled.__file__)]) == os.path.dirname(bundled.__file__)
    md = load_model_dir(path)                      # hashes verified
    total = sum(os.path.getsize(os.path.join(path, name)) for name in os.listdir(path))
    assert total <= MAX_BYTES, f"bundled model is {total / 1e6:.1f} MB > 25 MB"
    assert md.vocab_size > 1000


def test_missing_bundle_error_is_clear(tmp_path, monkeypatch):
    monkeypatch.setattr(bundled, "_package_models_dir", lambda: tmp_path)
    with pytest.raises(bundled.BundledModelMissing, match="bundled model is missing.*pass a model directory"):
        bundled.bundled_model_dir()
    with pytest.raises(FileNotFoundError):          # BundledModelMissing is a FileNotFoundError
        Generator.load()


@needs_bundle
@pytest.mark.parametrize("lang", sorted(PROMPTS))
def test_greedy_is_non_empty_and_deterministic(gen, lang):
    a = gen.generate(PROMPTS[lang], max_new_tokens=24)
    b = gen.generate(PROMPTS[lang], max_new_tokens=24)
    assert a.text.strip() and a.token_ids == b.token_ids


@needs_bundle
@pytest.mark.parametrize("lang", sorted(PROMPTS))
def test_sampling_with_seed_is_deterministic(gen, lang):
    opts = dict(max_new_tokens=24, do_sample=True, top_p=0.9, temperature=0.8)
    a = gen.generate(PROMPTS[lang], seed=5, **opts)
    b = gen.generate(PROMPTS[lang], seed=5, **opts)
    assert a.text.strip() and a.token_ids == b.token_ids


@needs_bundle
def test_chinese_output_is_chinese(gen):
    text = gen.generate(PROMPTS["zh"], max_new_tokens=24).text
    assert any("\u4e00" <= ch <= "\u9fff" for ch in text), text


@needs_bundle
def test_cli_generate_uses_bundled_model(tmp_path):
    code = "import sys; from ltg_engine.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.run([sys.executable, "-c", code, "generate", "Computers are", "--max-new-tokens", "16",
                           "--threads", "1"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()


# ---------------------------------------------------------------- session options

def test_session_defaults():
    cfg = SessionConfig.create()
    assert cfg.spinning is False and cfg.optimization == "all" and cfg.threads is None


@needs_bundle
def test_optimized_model_dir_saves_then_reuses(tmp_path, gen):
    cache = tmp_path / "opt"
    first = Generator.load(threads=1, optimized_model_dir=os.fspath(cache))
    saved = sorted(os.listdir(cache))
    assert len(saved) == 2 and all(name.endswith(".all.onnx") for name in saved)
    mtimes = [os.path.getmtime(cache / n) for n in saved]
    second = Generator.load(threads=1, optimized_model_dir=os.fspath(cache))
    assert sorted(os.listdir(cache)) == saved
    assert [os.path.getmtime(cache / n) for n in saved] == mtimes   # loaded, not rewritten
    want = gen.generate(PROMPTS["en"], max_new_tokens=16).token_ids
    assert first.generate(PROMPTS["en"], max_new_tokens=16).token_ids == want
    assert second.generate(PROMPTS["en"], max_new_tokens=16).token_ids == want


@needs_bundle
@pytest.mark.parametrize("kwargs", [dict(spinning=True), dict(optimization="disable"), dict(optimization="basic")])
def test_session_knobs_do_not_change_tokens(gen, kwargs):
    other = Generator.load(threads=1, **kwargs)
    want = gen.generate(PROMPTS["en"], max_new_tokens=16).token_ids
    assert other.generate(PROMPTS["en"], max_new_tokens=16).token_ids == want
