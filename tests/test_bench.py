"""`ltg bench` and its pieces: fields and sane values, never timings."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ltg_engine import bench, search, search_ref
from ltg_engine.cli import main

NEW_TOKENS = 5


# ---------------------------------------------------------------- quick

def test_synthetic_sources_are_exact_length_real_tokens():
    src = bench.synthetic_sources(300, context=17, batch=3, seed=1)
    assert src.shape == (3, 17) and src.dtype == np.int64
    assert src.min() >= bench.FIRST_REAL_ID and src.max() < 300
    assert np.array_equal(src, bench.synthetic_sources(300, 17, 3, seed=1))


def test_fixed_length_options_pin_the_length():
    opts = bench.fixed_length_options(7, 4)
    assert opts["min_new_tokens"] == opts["max_new_tokens"] == 7 and opts["num_beams"] == 4


@pytest.mark.parametrize("bad", [dict(contexts=()), dict(batch_sizes=(0,)), dict(new_tokens=0), dict(repetitions=0)])
def test_settings_reject_bad_values(bad):
    base = dict(contexts=(8,), batch_sizes=(1,), num_beams=(1,))
    base.update(bad)
    with pytest.raises(ValueError):
        bench.BenchSettings(**base).validate()


@pytest.mark.parametrize("arch,cfg", [
    ("lstm", dict(vocab_size=8000, emb_dim=256, enc_hidden=256, dec_hidden=512, dec_layers=2, attention="general")),
    ("lstm", dict(vocab_size=8000, emb_dim=256, enc_hidden=256, dec_hidden=512, dec_layers=2, attention="additive",
                  attn_dim=256)),
    ("transformer", dict(vocab_size=8000, d_model=256, ffn_dim=1024, dec_layers=3)),
])
def test_step_cost_memory_bytes_grow_linearly_with_context(arch, cfg):
    a, b, c = (bench.step_cost(arch, cfg, 1, 4, s) for s in (1000, 2000, 3000))
    assert b["bytes"] - a["bytes"] == pytest.approx(c["bytes"] - b["bytes"])
    assert b["flops"] > a["flops"] > 0
    # weights dominate at short context and are read once per step, not once per beam
    assert bench.step_cost(arch, cfg, 1, 4, 1)["bytes"] == pytest.approx(bench.step_cost(arch, cfg, 1, 1, 1)["bytes"],
                                                                         rel=0.01)


def test_step_cost_long_context_lstm_matches_design_note():
    # DESIGN.md: T=16k, H=512 reads 2*T*H*4 bytes (64 MB) of keys+memory; general attention reads memory once
    cfg = dict(vocab_size=8000, emb_dim=256, enc_hidden=256, dec_hidden=512, dec_layers=2, attention="general")
    grow = bench.step_cost("lstm", cfg, 1, 1, 16384)["bytes"] - bench.step_cost("lstm", cfg, 1, 1, 0)["bytes"]
    assert grow == 16384 * 512 * 4


def test_machine_rates_are_positive():
    rates = bench.machine_rates(seconds=0.01)
    assert rates["gemm_gflops"] > 0 and rates["bandwidth_gbs"] > 0


def test_reference_search_swaps_and_restores():
    compiled = search.make_search
    with bench.reference_search():
        assert search.make_search is search_ref.make_search
    assert search.make_search is compiled


def test_peak_rss_is_reported():
    bench.reset_peak_rss()
    assert bench.peak_rss_mb() > 0


# ---------------------------------------------------------------- on a model

def test_ltg_bench_json_fields(lstm_model_dir, tmp_path):
    out = tmp_path / "bench.json"
    rc = main(["bench", lstm_model_dir, "--context", "8", "40", "--batch-size", "1", "3", "--num-beams", "1", "2",
               "--new-tokens", str(NEW_TOKENS), "--repetitions", "2", "--warmup", "1", "--threads", "1",
               "--json", str(out)])
    assert rc == 0
    report = json.loads(out.read_text())
    assert report["arch"] == "lstm" and report["machine"]["logical_cpus"] >= 1
    rows = report["results"]
    assert [(r["context"], r["batch_size"], r["num_beams"]) for r in rows] == \
        [(c, b, k) for c in (8, 40) for b in (1, 3) for k in (1, 2)]
    for r in rows:
        assert r["tokens_per_run"] == NEW_TOKENS * r["batch_size"]
        pt = r["per_token_ms"]
        assert 0 < pt["p50"] <= pt["p90"] <= pt["p99"]
        assert 0.0 <= r["overhead_share"] <= 1.0
        assert r["first_token_ms"] > 0 and r["tokens_per_s"] > 0 and r["encoder_ms"] > 0
        assert r["peak_rss_mb"] > 0 and r["floor_ms_per_token"] > 0


def test_generate_ids_exact_length_and_on_step(lstm_model_dir):
    from ltg_engine import Generator

    gen = Generator.load(lstm_model_dir, threads=1)
    src = bench.synthetic_sources(gen.vocab_size, 30, 2)
    steps = []
    results = gen.generate_ids(src, on_step=lambda s: steps.append(s.step), **bench.fixed_length_options(6, 2))
    assert [len(r.token_ids) for r in results] == [6, 6]
    assert steps == list(range(1, 7))
    assert all(r.source_tokens == 30 for r in results)


def test_generate_ids_matches_generate_on_text(lstm_model_dir):
    from ltg_engine import Generator

    gen = Generator.load(lstm_model_dir, threads=1)
    text = "a b c d e"
    by_text = gen.generate(text, max_new_tokens=10)
    by_ids = gen.generate_ids([gen.tokenizer.encode(text)], max_new_tokens=10)[0]
    assert by_ids.token_ids == by_text.token_ids


@pytest.mark.parametrize("bad", [[[]], [[5, 10 ** 6]], [[-1]], []])
def test_generate_ids_rejects_bad_ids(lstm_model_dir, bad):
    from ltg_engine import Generator

    gen = Generator.load(lstm_model_dir, threads=1)
    with pytest.raises(ValueError):
        gen.generate_ids(bad, max_new_tokens=2)
