"""Reliability: bad inputs, damaged model directories, threads, memory, cancellation.

Every case of docs/bad_inputs.md has a test here. Cases that could take the
process down (corrupt graphs, NaN models, a 1M-character input) run in a
subprocess whose exit status must be 0 or 1, never a signal.
"""
from __future__ import annotations

import gc
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import weakref

import numpy as np
import pytest

from conftest import REVERSAL_ALPHABET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def gen(lstm_model_dir):
    from ltg_engine import Generator

    return Generator.load(lstm_model_dir, threads=1)


def _run_python(code: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run code in a fresh interpreter; a signal (negative returncode) fails the test."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert out.returncode in (0, 1), f"killed by signal {-out.returncode}: {out.stderr[-2000:]}"
    return out


def _load_and_generate_code(model_dir: str, text: str = "a b c", **options) -> str:
    """Code that loads + generates, printing OK or 'ERR Type: message' (exit 1)."""
    return (
        "import sys\n"
        "from ltg_engine import Generator\n"
        "try:\n"
        f"    g = Generator.load({model_dir!r}, threads=1)\n"
        f"    r = g.generate({text!r}, **{options!r})\n"
        "    print('OK', len(r.token_ids), r.source_tokens)\n"
        "except Exception as e:\n"
        "    print('ERR', type(e).__name__ + ':', e)\n"
        "    sys.exit(1)\n"
    )


def _copy_model(src: str, dst, edit_config=None) -> str:
    """Copy a model directory; edit_config(cfg) may change config.json, then hashes are rewritten."""
    from ltg_engine.model_dir import write_config

    shutil.copytree(src, dst)
    dst = os.fspath(dst)
    with open(os.path.join(dst, "config.json")) as f:
        cfg = json.load(f)
    if edit_config is not None:
        edit_config(cfg)
    write_config(dst, cfg)
    return dst


# ------------------------------------------------------------------ text inputs
@pytest.mark.parametrize("inputs, exc, match", [
    ("", ValueError, "input 0 is empty"),
    ("  \n\t ", ValueError, "input 0 is empty"),
    (["a b", ""], ValueError, "input 1 is empty"),
    (b"a b c", TypeError, "got bytes; decode bytes first"),
    ([b"a b c"], TypeError, "input 0 must be str, got bytes"),
    (None, TypeError, "got NoneType"),
    (5, TypeError, "got int"),
    (["a", None], TypeError, "input 1 must be str, got NoneType"),
    ("\ud800", ValueError, r"input 0: .*lone surrogate U\+D800 at character 0"),
    (["a b", b"a b\xff".decode("utf-8", "surrogateescape")], ValueError,
     r"input 1: .*lone surrogate U\+DCFF at character 3"),
])
def test_bad_text_inputs_raise_naming_the_input(gen, inputs, exc, match):
    with pytest.raises(exc, match=match):
        gen.generate(inputs, max_new_tokens=4)


@pytest.mark.parametrize("text", [
    "\x00\x01\x02 a b", "a\x1b[31mb\x1b[0m c", "a\r\nb\rc\x0c", "\ufeffa b", "a\u200bb\u200dc",
    "\u202ea b c", "你好 🙂 a b", "a" * 3000, b"a b\xff\xfe".decode("utf-8", "replace"),
])
def test_odd_but_valid_text_generates(gen, text):
    r = gen.generate(text, max_new_tokens=6)
    assert r.source_tokens > 0 and len(r.token_ids) <= 6
    assert "".join(gen.stream(text, max_new_tokens=6)) == r.text


def test_generate_accepts_any_iterable_of_str(gen):
    want = gen.generate(["a b", "c d"], max_new_tokens=6)
    got = gen.generate(iter(["a b", "c d"]), max_new_tokens=6)
    assert [r.token_ids for r in got] == [r.token_ids for r in want]


def test_million_characters_without_limit_runs(lstm_model_dir):
    # the LSTM has no hard source limit: 1M characters (500k tokens) must encode and decode
    code = (
        "import time\n"
        "from ltg_engine import Generator\n"
        f"g = Generator.load({lstm_model_dir!r}, threads=1)\n"
        "t0 = time.perf_counter()\n"
        "r = g.generate('a b ' * 250000, max_new_tokens=4)\n"
        "print('OK', r.source_tokens, len(r.token_ids), round(time.perf_counter() - t0, 1))\n"
    )
    out = _run_python(code, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    _, n_src, n_new, _ = out.stdout.split()
    assert int(n_src) >= 500_000 and 1 <= int(n_new) <= 4


def test_million_characters_with_max_source_length(lstm_model_dir, tmp_path):
    from ltg_engine import Generator

    model = _copy_model(lstm_model_dir, tmp_path / "m", lambda c: c.update(max_source_length=64))
    gen = Generator.load(model, threads=1)
    text = "a b " * 250_000
    with pytest.raises(ValueError, match=r"input 0 has \d+ tokens; this model accepts at most 64.*truncate"):
        gen.generate(text, max_new_tokens=4)
    r = gen.generate(text, truncate=True, max_new_tokens=4)
    assert r.truncated and r.source_tokens == 64


# ------------------------------------------------------------------ options
BAD_OPTIONS = [
    ("max_new_tokens", 0), ("max_new_tokens", -1), ("max_new_tokens", 2.5), ("max_new_tokens", "10"),
    ("max_new_tokens", None), ("max_new_tokens", True), ("max_new_tokens", 10 ** 12),
    ("min_new_tokens", -1), ("min_new_tokens", 10 ** 6), ("min_new_tokens", 1.0),
    ("num_beams", 0), ("num_beams", 1.5), ("num_beams", 10 ** 6), ("num_beams", "2"),
    ("do_sample", "yes"), ("do_sample", 1), ("do_sample", None),
    ("temperature", 0), ("temperature", -1.0), ("temperature", float("nan")), ("temperature", float("inf")),
    ("temperature", "1"), ("temperature", None),
    ("top_k", -1), ("top_k", 1.5), ("top_k", None),
    ("top_p", 0), ("top_p", 1.5), ("top_p", float("nan")), ("top_p", "0.9"),
    ("repetition_penalty", 0), ("repetition_penalty", -1.0), ("repetition_penalty", float("inf")),
    ("repetition_penalty", 1e9),
    ("no_repeat_ngram_size", -1), ("no_repeat_ngram_size", 2.0),
    ("length_penalty", float("nan")), ("length_penalty", "x"),
    ("early_stopping", "no"), ("early_stopping", None),
    ("num_return_sequences", 0), ("num_return_sequences", 2), ("num_return_sequences", None),
    ("eos_token_id", []), ("eos_token_id", -1), ("eos_token_id", 10 ** 9), ("eos_token_id", "3"),
    ("eos_token_id", [3.0]), ("eos_token_id", True),
    ("banned_token_ids", [-1]), ("banned_token_ids", [10 ** 9]), ("banned_token_ids", "abc"),
    ("banned_token_ids", 3.5), ("banned_token_ids", [None]),
    ("seed", -1), ("seed", 2 ** 64), ("seed", 1.5), ("seed", "1"),
]


@pytest.mark.parametrize("name, value", BAD_OPTIONS)
def test_bad_option_value_raises_naming_it(gen, name, value):
    with pytest.raises(ValueError, match=name):
        gen.generate("a b c", **{name: value})
    with pytest.raises(ValueError, match=name):
        gen.stream("a b c", **{name: value})  # raised at the call, before any iteration


@pytest.mark.parametrize("options, match", [
    (dict(no_such_option=1), "unknown generation option.*no_such_option"),
    (dict(do_sample=True, num_beams=2), "do_sample.*num_beams"),
    (dict(num_beams=200, max_new_tokens=10 ** 6), "search buffers"),
    (dict(banned_token_ids=list(range(400))), "banned_token_ids"),
])
def test_bad_option_combinations(gen, options, match):
    with pytest.raises(ValueError, match=match):
        gen.generate("a b c", **options)


def test_every_token_banned_is_a_clear_error(gen):
    with pytest.raises(ValueError, match="every token is masked at step 0"):
        gen.generate("a b c", banned_token_ids=list(range(gen.vocab_size)))


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), "1", True])
def test_bad_timeout(gen, timeout):
    with pytest.raises(ValueError, match="timeout"):
        gen.generate("a b c", timeout=timeout)


@pytest.mark.parametrize("cancel", [3, "stop", object()])
def test_bad_cancel(gen, cancel):
    with pytest.raises(TypeError, match="cancel"):
        gen.generate("a b c", cancel=cancel)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(threads=0), ValueError, "threads"),
    (dict(threads=-2), ValueError, "threads"),
    (dict(threads="2"), ValueError, "threads"),
    (dict(threads=True), ValueError, "threads"),
    (dict(optimization="fast"), ValueError, "optimization"),
    (dict(precision="fp16"), ValueError, "unknown precision 'fp16'"),
    (dict(precision="int8"), ValueError, r"no encoder\.int8\.onnx"),
    (dict(no_such_setting=1), TypeError, "no_such_setting"),
])
def test_bad_load_arguments(lstm_model_dir, kwargs, exc, match):
    from ltg_engine import Generator

    with pytest.raises(exc, match=match):
        Generator.load(lstm_model_dir, **kwargs)


def test_unavailable_provider_falls_back_to_cpu_with_a_warning(lstm_model_dir):
    from ltg_engine import Generator

    with pytest.warns(RuntimeWarning, match="NoSuchExecutionProvider"):
        gen = Generator.load(lstm_model_dir, providers=["NoSuchExecutionProvider"], threads=1)
    assert gen.providers == ["CPUExecutionProvider"]
    assert gen.generate("a b", max_new_tokens=3).token_ids


# ------------------------------------------------------------------ model directories
def test_missing_model_dir(tmp_path):
    from ltg_engine import Generator, ModelDirError

    with pytest.raises(ModelDirError, match="does not exist"):
        Generator.load(os.fspath(tmp_path / "nope"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(ModelDirError, match="not a directory"):
        Generator.load(os.fspath(tmp_path / "file"))
    with pytest.raises(ModelDirError, match="config.json is missing"):
        Generator.load(os.fspath(tmp_path))
    with pytest.raises(TypeError, match="must be a path"):
        Generator.load(42)


@pytest.mark.parametrize("config_text, match", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "JSON object"),
    ('{"format_version": "1"}', "format_version '1' is not supported"),
    ('{"format_version": 2}', "format_version 2 is not supported"),
    ('{"format_version": 1}', "required key 'arch' is missing"),
])
def test_broken_config_json(lstm_model_dir, tmp_path, config_text, match):
    from ltg_engine import Generator, ModelDirError

    dst = tmp_path / "m"
    shutil.copytree(lstm_model_dir, dst)
    (dst / "config.json").write_text(config_text)
    with pytest.raises(ModelDirError, match=match):
        Generator.load(os.fspath(dst))


def test_malformed_files_entry_in_config(lstm_model_dir, tmp_path):
    from ltg_engine import Generator, ModelDirError

    dst = tmp_path / "m"
    shutil.copytree(lstm_model_dir, dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg["files"]["encoder.onnx"] = {"sha256": "abc"}
    (dst / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelDirError, match=r"files entry for 'encoder\.onnx' must hold"):
        Generator.load(os.fspath(dst))


@pytest.mark.parametrize("victim, damage, match", [
    ("encoder.onnx", "truncate", r"encoder\.onnx is truncated"),
    ("encoder.onnx", "missing", r"encoder\.onnx is missing"),
    ("tokenizer.model", "flip", r"tokenizer\.model was altered"),
    ("decoder_step.onnx", "append", r"decoder_step\.onnx is larger than recorded"),
])
def test_hash_or_size_mismatch_names_the_file(lstm_model_dir, tmp_path, victim, damage, match):
    from ltg_engine import Generator, ModelDirError

    dst = tmp_path / "m"
    shutil.copytree(lstm_model_dir, dst)
    path = dst / victim
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[:100])
    elif damage == "missing":
        path.unlink()
    elif damage == "flip":
        path.write_bytes(data[:50] + bytes([data[50] ^ 0xFF]) + data[51:])
    else:
        path.write_bytes(data + b"\0")
    with pytest.raises(ModelDirError, match=match):
        Generator.load(os.fspath(dst))


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_onnx_with_matching_hash_is_named(lstm_model_dir, tmp_path, damage):
    # the hash check passes (config.json rewritten), so onnxruntime itself meets the bad file
    dst = tmp_path / "m"
    shutil.copytree(lstm_model_dir, dst)
    path = dst / "decoder_step.onnx"
    data = path.read_bytes()
    path.write_bytes(os.urandom(4096) if damage == "garbage" else data[: len(data) // 3])
    _copy_model(os.fspath(dst), tmp_path / "m2")
    out = _run_python(_load_and_generate_code(os.fspath(tmp_path / "m2")))
    assert out.returncode == 1, out.stdout
    assert "ERR ContractError: onnxruntime could not load" in out.stdout and "decoder_step.onnx" in out.stdout


def test_swapped_graph_fails_the_contract_check(lstm_model_dir, tmp_path):
    dst = tmp_path / "m"
    shutil.copytree(lstm_model_dir, dst)
    shutil.copy(dst / "encoder.onnx", dst / "decoder_step.onnx")
    _copy_model(os.fspath(dst), tmp_path / "m2")
    out = _run_python(_load_and_generate_code(os.fspath(tmp_path / "m2")))
    assert out.returncode == 1
    assert "ERR ContractError:" in out.stdout and "decoder_step.onnx: graph inputs" in out.stdout
    assert "do not match config.json's contract" in out.stdout


def test_contract_renamed_in_config_fails_the_check(lstm_model_dir, tmp_path):
    from ltg_engine import Generator
    from ltg_engine.sessions import ContractError

    def rename(cfg):
        cfg["graph"]["decoder_step"]["inputs"][0]["name"] = "token_ids"

    model = _copy_model(lstm_model_dir, tmp_path / "m", rename)
    with pytest.raises(ContractError, match=r"decoder_step\.onnx: graph inputs .*'tokens'.*'token_ids'"):
        Generator.load(model, threads=1)


def _nan_logits_model(lstm_model_dir, dst, bad_token: int = 5) -> str:
    """A copy whose decoder step multiplies logits by a vector holding NaN at bad_token."""
    onnx = pytest.importorskip("onnx")
    from onnx import helper, numpy_helper

    model_dir = _copy_model(lstm_model_dir, dst)
    path = os.path.join(model_dir, "decoder_step.onnx")
    graph_model = onnx.load(path)
    graph = graph_model.graph
    vocab = json.load(open(os.path.join(model_dir, "config.json")))["vocab_size"]
    for node in graph.node:
        node.output[:] = ["logits_raw" if o == "logits" else o for o in node.output]
    scale = np.ones(vocab, dtype=np.float32)
    scale[bad_token] = np.nan
    graph.initializer.append(numpy_helper.from_array(scale, "nan_scale"))
    graph.node.append(helper.make_node("Mul", ["logits_raw", "nan_scale"], ["logits"]))
    onnx.save(graph_model, path)
    return _copy_model(model_dir, os.fspath(dst) + "_hashed")


@pytest.mark.parametrize("options", [dict(), dict(num_beams=3), dict(do_sample=True, seed=1)])
def test_nan_logits_model_is_a_clear_error(lstm_model_dir, tmp_path, options):
    model = _nan_logits_model(lstm_model_dir, tmp_path / "nan")
    out = _run_python(_load_and_generate_code(model, **options))
    assert out.returncode == 1, out.stdout + out.stderr
    assert "ERR ValueError: logits contain NaN or +inf at step 0" in out.stdout and "token 5" in out.stdout


def test_nan_model_does_not_poison_the_process(lstm_model_dir, tmp_path):
    from ltg_engine import Generator

    bad = Generator.load(_nan_logits_model(lstm_model_dir, tmp_path / "nan"), threads=1)
    good = Generator.load(lstm_model_dir, threads=1)
    for _ in range(3):
        with pytest.raises(ValueError, match="NaN"):
            bad.generate(["a b", "c d"], max_new_tokens=5)
    assert good.generate("a b c", max_new_tokens=8).text == "c b a"


# ------------------------------------------------------------------ threads
def _mixed_requests(seed: int, n: int):
    rng = random.Random(seed)
    kinds = [
        dict(),
        dict(num_beams=2), dict(num_beams=3, num_return_sequences=2), dict(num_beams=3, length_penalty=0.5),
        dict(do_sample=True, seed=11, top_k=5), dict(do_sample=True, seed=7, top_p=0.8, temperature=1.3),
        dict(repetition_penalty=1.5), dict(no_repeat_ngram_size=2), dict(min_new_tokens=3, banned_token_ids=[5]),
    ]
    requests = []
    for _ in range(n):
        rows = [" ".join(rng.choice(REVERSAL_ALPHABET) for _ in range(rng.randint(1, 30)))
                for _ in range(rng.choice([1, 1, 2, 4]))]
        options = dict(rng.choice(kinds), max_new_tokens=rng.randint(4, 40))
        requests.append((rows, options))
    return requests


def _summary(results):
    return [[(h.token_ids, h.score) for h in r.hypotheses] for r in results]


def test_shared_generator_threads_equal_one_by_one(gen):
    n_threads, per_thread = 8, 25
    plans = [_mixed_requests(100 + t, per_thread) for t in range(n_threads)]
    want = [[(_summary(gen.generate(rows, **opts)), gen.last_stats["steps"]) for rows, opts in plan]
            for plan in plans]
    got = [[None] * per_thread for _ in range(n_threads)]
    errors = []
    barrier = threading.Barrier(n_threads)

    def worker(t):
        try:
            barrier.wait()
            for i, (rows, opts) in enumerate(plans[t]):
                if i % 5 == 4 and len(rows) == 1:   # some requests stream instead
                    text = "".join(gen.stream(rows[0], **opts))
                    got[t][i] = ("stream", text)
                else:
                    # last_stats is per thread: it must describe this thread's own request
                    got[t][i] = (_summary(gen.generate(rows, **opts)), gen.last_stats["steps"])
        except Exception as e:  # pragma: no cover - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=600)
    assert not errors, errors
    for t in range(n_threads):
        for i, (rows, opts) in enumerate(plans[t]):
            if got[t][i][0] == "stream":
                assert got[t][i][1] == gen.generate(rows[0], **opts).text
            else:
                assert got[t][i] == want[t][i], f"thread {t} request {i} {opts}"


# ------------------------------------------------------------------ memory
def test_memory_stable_over_random_generations(lstm_model_dir):
    script = os.path.join(ROOT, "benchmarks", "memory_stability.py")
    out = subprocess.run([sys.executable, script, lstm_model_dir, "--generations", "150", "--warmup", "50",
                          "--no-write"], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode in (0, 1), out.stderr[-2000:]
    stats = json.loads(out.stdout.strip().splitlines()[-1])
    assert stats["growth"] < 0.05, stats
    assert out.returncode == 0


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_closed_stream_releases_its_runner(gen):
    it = gen.stream("a b c d e f", max_new_tokens=30)
    assert next(it)
    runner = it.gi_frame.f_locals["runner"]
    assert runner.memory is not None
    ref = weakref.ref(runner)
    it.close()
    assert runner.memory is None and runner.state is None   # dropped at close
    del runner, it
    gc.collect()
    assert ref() is None
    assert gen.generate("a b c", max_new_tokens=8).text == "c b a"


def test_abandoned_streams_do_not_grow_memory(gen):
    from ltg_engine.generator import StepRunner

    def abandon(n):
        for i in range(n):
            it = gen.stream(" ".join("abcdefgh"[: 1 + i % 8]), max_new_tokens=50)
            next(it)
            if i % 2:
                it.close()
            # else: dropped unclosed; finalization closes it

    abandon(20)
    gc.collect()
    before = _rss()
    abandon(200)
    gc.collect()
    assert not [o for o in gc.get_objects() if type(o) is StepRunner]
    assert _rss() < before * 1.05
    assert gen.generate("a b c", max_new_tokens=8).text == "c b a"


# ------------------------------------------------------------------ cancellation
LONG = dict(max_new_tokens=20_000, banned_token_ids=[3])   # eos banned: runs to max_new_tokens


def test_timeout_stops_early(gen):
    from ltg_engine.generator import GenerationTimeout

    with pytest.raises(GenerationTimeout, match="timeout=0.05s") as info:
        gen.generate("a b c", timeout=0.05, **LONG)
    assert isinstance(info.value, TimeoutError)
    assert 0 < info.value.steps < LONG["max_new_tokens"] // 4


def test_timeout_stops_a_stream_early(gen):
    from ltg_engine.generator import GenerationTimeout

    pieces = []
    with pytest.raises(GenerationTimeout) as info:
        for piece in gen.stream("a b c", timeout=0.05, **LONG):
            pieces.append(piece)
    assert info.value.steps < LONG["max_new_tokens"] // 4


def test_cancel_event_from_another_thread_stops_early(gen):
    from ltg_engine.generator import GenerationCancelled

    cancel = threading.Event()
    timer = threading.Timer(0.05, cancel.set)
    timer.start()
    try:
        with pytest.raises(GenerationCancelled, match="cancelled after") as info:
            gen.generate(["a b c", "d e"], cancel=cancel, **LONG)
    finally:
        timer.cancel()
    assert info.value.steps < LONG["max_new_tokens"] // 4


def test_cancel_callable_stops_at_the_next_step(gen):
    from ltg_engine.generator import GenerationCancelled

    calls = []

    def cancelled():
        calls.append(1)
        return len(calls) > 6   # checked before encoding, then after each step

    with pytest.raises(GenerationCancelled) as info:
        gen.generate("a b c", cancel=cancelled, num_beams=2, **LONG)
    assert info.value.steps == 6


def test_cancel_set_before_the_call_does_no_work(gen):
    from ltg_engine.generator import GenerationCancelled

    cancel = threading.Event()
    cancel.set()
    with pytest.raises(GenerationCancelled) as info:
        gen.generate("a b c", cancel=cancel)
    assert info.value.steps == 0
    it = gen.stream("a b c", cancel=cancel)
    with pytest.raises(GenerationCancelled):
        next(it)


def test_cancelled_stream_then_generate_still_works(gen):
    from ltg_engine.generator import GenerationCancelled

    cancel = threading.Event()
    it = gen.stream("a b c d e f", cancel=cancel, **LONG)
    next(it)
    cancel.set()
    with pytest.raises(GenerationCancelled):
        for _ in it:
            pass
    assert gen.generate("a b c", max_new_tokens=8).text == "c b a"
