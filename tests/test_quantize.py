"""int8 dynamic quantization of a model directory (export/quantize.py), on the tiny LSTM."""
from __future__ import annotations

import json
import os
import shutil
import warnings

import pytest

pytest.importorskip("onnxruntime.quantization")

from ltg_engine import Generator  # noqa: E402
from ltg_engine.export.quantize import QuantizationReport, quantize_model_dir  # noqa: E402
from ltg_engine.model_dir import load_model_dir  # noqa: E402

from conftest import make_reversal_jsonl, reversal_cases  # noqa: E402


@pytest.fixture(scope="module")
def int8_dir(lstm_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("int8") / "model"
    valid = make_reversal_jsonl(tmp_path_factory.mktemp("int8_eval") / "valid.jsonl", 40, seed=7)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        report = quantize_model_dir(lstm_model_dir, out_dir=os.fspath(out), eval_data=valid, report=lambda *_: None)
    return os.fspath(out), report


def test_writes_int8_files_and_config(int8_dir, lstm_model_dir):
    out, _ = int8_dir
    md = load_model_dir(out)                                  # hashes of the new files check out
    assert md.precisions == ["float32", "int8"]
    assert md.config["quantized"][0]["precision"] == "int8"
    assert "quality" in md.config["quantized"][0]
    for name in ("encoder.int8.onnx", "decoder_step.int8.onnx"):
        assert name in md.config["files"]
    assert load_model_dir(lstm_model_dir).precisions == ["float32"]  # the source dir is untouched


def test_int8_graphs_are_smaller(int8_dir):
    _, report = int8_dir
    assert isinstance(report, QuantizationReport)
    assert report.bytes_int8 < 0.7 * report.bytes_float32


def test_report_quality_numbers(int8_dir):
    _, report = int8_dir
    assert report.ppl_float32 >= 1.0 and report.ppl_int8 >= 1.0
    assert 0.0 <= report.agreement <= 1.0 and 0.0 <= report.exact_match <= 1.0
    # the tiny reversal model is confident: int8 should barely move its perplexity
    assert report.ppl_int8 < report.ppl_float32 * 1.5


def test_int8_generator_reverses(int8_dir):
    out, _ = int8_dir
    gen = Generator.load(out, precision="int8", threads=1)
    cases = reversal_cases(20, 3, 10)
    results = gen.generate([s for s, _ in cases], max_new_tokens=40)
    correct = sum(r.text.strip() == t for r, (_, t) in zip(results, cases))
    assert correct >= 14, f"int8 reversed only {correct}/20 short inputs"


def test_in_place_without_eval_data(lstm_model_dir, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(lstm_model_dir, copy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = quantize_model_dir(os.fspath(copy), report=lambda *_: None)
    assert "synthetic" in report.eval_source
    assert load_model_dir(os.fspath(copy)).precisions == ["float32", "int8"]


def test_drift_warning_names_the_numbers(lstm_model_dir, tmp_path, monkeypatch):
    import ltg_engine.export.quantize as q

    monkeypatch.setattr(q, "MIN_AGREEMENT", 1.01)             # impossible: always warns
    with pytest.warns(q.QuantizationDrift, match=r"greedy agreement \d+\.\d%"):
        quantize_model_dir(lstm_model_dir, out_dir=os.fspath(tmp_path / "m"), report=lambda *_: None)


def test_refuses_non_empty_out_dir(lstm_model_dir, tmp_path):
    (tmp_path / "junk").write_text("x")
    with pytest.raises(FileExistsError):
        quantize_model_dir(lstm_model_dir, out_dir=os.fspath(tmp_path), evaluate=False, report=lambda *_: None)


def test_float32_load_ignores_int8(int8_dir):
    out, _ = int8_dir
    gen = Generator.load(out, threads=1)
    with open(os.path.join(out, "config.json")) as f:
        assert json.load(f)["files"]["decoder_step.int8.onnx"]["bytes"] > 0
    assert gen.generate("a b c", max_new_tokens=8).token_ids
