"""The exported engine end to end: solves the task, matches PyTorch, stays torch-free."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import REVERSAL_MAX_LEN, reversal_cases

pytest.importorskip("torch")


@pytest.fixture(scope="session")
def gen(lstm_model_dir):
    from ltg_engine import Generator

    return Generator.load(lstm_model_dir, threads=1)


def test_engine_solves_reversal_exactly(gen):
    cases = reversal_cases(40, 1, REVERSAL_MAX_LEN)
    results = gen.generate([src for src, _ in cases], max_new_tokens=2 * REVERSAL_MAX_LEN + 4)
    wrong = [(src, want, r.text) for (src, want), r in zip(cases, results) if r.text != want]
    assert not wrong, f"{len(wrong)}/{len(cases)} wrong, e.g. {wrong[:3]}"


def test_engine_greedy_equals_pytorch_reference(gen, lstm_run_dir):
    from ltg_engine.training.checkpoint import load_model
    from ltg_engine.training.reference import greedy_decode

    model = load_model(lstm_run_dir)[0].eval()
    # longer than trained too: the two must agree even where the model is wrong
    cases = [src for src, _ in reversal_cases(12, 1, 2 * REVERSAL_MAX_LEN, seed=7)]
    src_ids = [gen.tokenizer.encode(s) for s in cases]
    want = greedy_decode(model, src_ids, max_new_tokens=60)
    got = gen.generate(cases, max_new_tokens=60)
    assert [r.token_ids for r in got] == want


def test_batch_equals_rows_one_by_one(gen):
    cases = [src for src, _ in reversal_cases(6, 1, REVERSAL_MAX_LEN, seed=3)]
    batch = gen.generate(cases, max_new_tokens=40)
    for src, r in zip(cases, batch):
        one = gen.generate(src, max_new_tokens=40)
        assert one.token_ids == r.token_ids
        assert one.score == pytest.approx(r.score, abs=1e-5)


def test_result_fields(gen):
    r = gen.generate("a b c", max_new_tokens=10)
    assert isinstance(r.text, str) and isinstance(r.score, float) and r.score <= 0
    assert r.token_ids and all(isinstance(t, int) for t in r.token_ids)
    assert r.hypotheses[0].token_ids == r.token_ids and r.source_tokens > 0 and not r.truncated
    assert gen.generate([], max_new_tokens=5) == []


def test_max_new_tokens_caps_length(gen):
    assert len(gen.generate("a b c d e f g h", max_new_tokens=3).token_ids) == 3


@pytest.mark.parametrize("bad, match", [
    (dict(max_new_tokens=0), "max_new_tokens"),
    (dict(max_new_tokens=-5), "max_new_tokens"),
    (dict(max_new_tokens=2.5), "max_new_tokens"),
    (dict(no_such_option=1), "no_such_option"),
    (dict(num_beams=0), "num_beams"),
])
def test_bad_options_raise_clear_errors(gen, bad, match):
    with pytest.raises(ValueError, match=match):
        gen.generate("a b c", **bad)


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_input_raises(gen, text):
    with pytest.raises(ValueError, match="empty"):
        gen.generate(text)


def test_non_string_input_raises(gen):
    with pytest.raises(TypeError, match="str"):
        gen.generate([b"bytes"])


def _copy_with_config(src, dst, **changes):
    shutil.copytree(src, dst)
    path = os.path.join(dst, "config.json")
    with open(path) as f:
        cfg = json.load(f)
    cfg.update(changes)
    with open(path, "w") as f:
        json.dump(cfg, f)
    return os.fspath(dst)


def test_too_long_source_raises_unless_truncate(lstm_model_dir, tmp_path):
    from ltg_engine import Generator

    gen = Generator.load(_copy_with_config(lstm_model_dir, tmp_path / "m", max_source_length=5), threads=1)
    with pytest.raises(ValueError, match="at most 5.*truncate"):
        gen.generate("a b c d e f g h")
    r = gen.generate("a b c d e f g h", truncate=True, max_new_tokens=8)
    assert r.truncated and r.source_tokens == 5


@pytest.mark.parametrize("damage", ["missing", "truncated", "altered"])
def test_damaged_model_dir_names_the_file(lstm_model_dir, tmp_path, damage):
    from ltg_engine import Generator, ModelDirError

    dst = tmp_path / "m"
    shutil.copytree(lstm_model_dir, dst)
    victim = dst / "decoder_step.onnx"
    data = victim.read_bytes()
    if damage == "missing":
        victim.unlink()
    elif damage == "truncated":
        victim.write_bytes(data[: len(data) // 2])
    else:
        victim.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(ModelDirError, match=r"decoder_step\.onnx.*" + {"missing": "missing", "truncated": "truncated",
                                                                         "altered": "altered"}[damage]):
        Generator.load(os.fspath(dst))


def test_unknown_format_version(lstm_model_dir, tmp_path):
    from ltg_engine import Generator, ModelDirError

    with pytest.raises(ModelDirError, match="format_version 99"):
        Generator.load(_copy_with_config(lstm_model_dir, tmp_path / "m", format_version=99))


def test_runtime_never_imports_torch(lstm_model_dir):
    code = (
        "import sys\n"
        "from ltg_engine import Generator\n"
        f"g = Generator.load({lstm_model_dir!r}, threads=1)\n"
        "r = g.generate(['a b c', 'd e'], max_new_tokens=8)\n"
        "list(g.stream('a b c', max_new_tokens=8))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print('TORCH-FREE', r[0].text)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "TORCH-FREE" in out.stdout


def test_cli_generate_text_and_stdin(lstm_model_dir, gen):
    want = gen.generate(["a b c", "d e f"], max_new_tokens=12)
    ltg = [sys.executable, "-m", "ltg_engine.cli"]
    out = subprocess.run(ltg + ["generate", lstm_model_dir, "a b c", "--max-new-tokens", "12"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == want[0].text
    out = subprocess.run(ltg + ["generate", lstm_model_dir, "--max-new-tokens", "12", "--json"],
                         input="a b c\nd e f\n", capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["token_ids"] for r in rows] == [w.token_ids for w in want]


def test_cli_bad_option_is_a_clear_error(lstm_model_dir):
    out = subprocess.run([sys.executable, "-m", "ltg_engine.cli", "generate", lstm_model_dir, "a b",
                          "--max-new-tokens", "0"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "max_new_tokens" in out.stderr and "Traceback" not in out.stderr
