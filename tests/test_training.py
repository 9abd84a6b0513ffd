"""LSTM model contract, checkpoints, deterministic/resumable training, exact reversal."""
import argparse
import json
import os

import pytest

torch = pytest.importorskip("torch")
from safetensors.torch import load_file  # noqa: E402

from conftest import REVERSAL_MAX_LEN, make_reversal_jsonl, reversal_cases  # noqa: E402
from ltg_engine.tokenizer import Tokenizer  # noqa: E402
from ltg_engine.training import ARCHS, get_arch  # noqa: E402
from ltg_engine.training.checkpoint import load_model  # noqa: E402
from ltg_engine.training.lstm import LSTMConfig, LSTMSeq2Seq, reverse_by_length  # noqa: E402
from ltg_engine.training.reference import beam_search, greedy_decode  # noqa: E402
from ltg_engine.training.train import (TrainConfig, add_train_arguments, config_from_args,  # noqa: E402
                                       learning_rate, run_training)

ATTENTIONS = ["general", "additive"]


def tiny_lstm(attention="general", seed=0, **kw):
    torch.manual_seed(seed)
    cfg = LSTMConfig(vocab_size=40, emb_dim=12, enc_hidden=10, enc_layers=2, dec_hidden=14, dec_layers=2,
                     attention=attention, attn_dim=9, dropout=0.0, **kw)
    return LSTMSeq2Seq(cfg).eval()


def padded_batch(lengths, seed=1):
    g = torch.Generator().manual_seed(seed)
    S = max(lengths)
    src = torch.randint(4, 40, (len(lengths), S), generator=g)
    for b, n in enumerate(lengths):
        src[b, n:] = 0
    return src, torch.tensor(lengths)


def run_steps(model, src, src_len, tgt_in):
    memory, state = model.encode(src, src_len)
    state = {k: v.unsqueeze(1) for k, v in state.items()}
    parents = torch.zeros(src.shape[0], 1, dtype=torch.long)
    out = []
    for t in range(tgt_in.shape[1]):
        logits, state = model.step(tgt_in[:, t:t + 1], parents, torch.tensor(t), state, memory, src_len)
        out.append(logits)
    return torch.cat(out, dim=1)


# ----------------------------------------------------------------------------
# model contract


def test_reverse_by_length_is_an_involution():
    x = torch.arange(2 * 5).reshape(2, 5, 1).float()
    r = reverse_by_length(x, torch.tensor([5, 3]))
    assert r[:, :, 0].tolist() == [[4, 3, 2, 1, 0], [7, 6, 5, 8, 9]]
    assert torch.equal(reverse_by_length(r, torch.tensor([5, 3])), x)


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_graph_spec_matches_encode_and_step(attention):
    model = tiny_lstm(attention)
    spec = model.graph_spec()
    src, src_len = padded_batch([7, 3, 5])
    memory, state = model.encode(src, src_len)
    dims = {"B": 3, "S": 7}
    assert list(memory) == list(spec.memory) and list(state) == list(spec.state)
    for name, shape in spec.memory.items():
        assert list(memory[name].shape) == [dims.get(d, d) for d in shape]
    for name, shape in spec.state.items():
        assert list(state[name].shape) == [dims.get(d, d) for d in shape]
    assert ("keys" in spec.memory) == (attention == "additive")
    K = 4
    state_k = {k: v.unsqueeze(1).expand(3, 2, *v.shape[1:]) for k, v in state.items()}  # K' = 2
    logits, nxt = model.step(torch.full((3, K), 5), torch.zeros(3, K, dtype=torch.long), torch.tensor(0),
                             state_k, memory, src_len)
    assert logits.shape == (3, K, 40) and logits.dtype == torch.float32
    for name, shape in spec.state.items():
        assert list(nxt[name].shape) == [3, K] + [d for d in shape[1:]]


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_teacher_forcing_equals_step_by_step(attention):
    model = tiny_lstm(attention)
    src, src_len = padded_batch([6, 2, 4, 1])
    tgt_in = torch.randint(4, 40, (4, 5))
    with torch.no_grad():
        torch.testing.assert_close(model(src, src_len, tgt_in), run_steps(model, src, src_len, tgt_in),
                                   rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_source_alone_equals_source_in_padded_batch(attention):
    model = tiny_lstm(attention)
    src, src_len = padded_batch([8, 3, 5])
    tgt_in = torch.randint(4, 40, (3, 4))
    with torch.no_grad():
        memory, state = model.encode(src, src_len)
        batch_logits = model(src, src_len, tgt_in)
        for b, n in enumerate(src_len.tolist()):
            mem_b, state_b = model.encode(src[b:b + 1, :n], src_len[b:b + 1])
            for name in memory:
                torch.testing.assert_close(mem_b[name][0], memory[name][b, :n], rtol=1e-5, atol=1e-6)
            for name in state:
                torch.testing.assert_close(state_b[name][0], state[name][b], rtol=1e-5, atol=1e-6)
            alone = model(src[b:b + 1, :n], src_len[b:b + 1], tgt_in[b:b + 1])
            torch.testing.assert_close(alone[0], batch_logits[b], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_step_reorders_beams_by_parents(attention):
    model = tiny_lstm(attention)
    src, src_len = padded_batch([5, 3])
    with torch.no_grad():
        memory, state = model.encode(src, src_len)
        # three distinct beams per source
        s = {k: v.unsqueeze(1) for k, v in state.items()}
        _, s = model.step(torch.tensor([[5, 6, 7], [8, 9, 10]]), torch.zeros(2, 3, dtype=torch.long),
                          torch.tensor(0), s, memory, src_len)
        parents = torch.tensor([[2, 0, 2, 1], [1, 1, 0, 2]])
        tokens = torch.tensor([[11, 12, 13, 14], [15, 16, 17, 18]])
        logits, nxt = model.step(tokens, parents, torch.tensor(1), s, memory, src_len)
        for b in range(2):
            for k in range(4):
                one = {n: v[b:b + 1, parents[b, k]].unsqueeze(1) for n, v in s.items()}
                mem_b = {n: v[b:b + 1] for n, v in memory.items()}
                lg, _ = model.step(tokens[b:b + 1, k:k + 1], torch.zeros(1, 1, dtype=torch.long),
                                   torch.tensor(1), one, mem_b, src_len[b:b + 1])
                torch.testing.assert_close(lg[0, 0], logits[b, k], rtol=1e-5, atol=1e-6)


def test_config_validation():
    with pytest.raises(ValueError, match="attention"):
        LSTMConfig(attention="dot")
    with pytest.raises(ValueError, match="enc_layers"):
        LSTMConfig(enc_layers=0)


def test_registry():
    assert ARCHS["lstm"] == (LSTMConfig, LSTMSeq2Seq)
    assert "transformer" in ARCHS
    with pytest.raises(ValueError, match="unknown architecture"):
        get_arch("gru")


def test_beam_search_reference_with_one_beam_is_greedy():
    model = tiny_lstm()
    src = [[5, 6, 7, 8], [9, 10]]
    greedy = greedy_decode(model, src, max_new_tokens=6)
    for ids, g in zip(src, greedy):
        [(_, best)] = beam_search(model, ids, beam_size=1, max_new_tokens=6)
        assert best == g


# ----------------------------------------------------------------------------
# training runs (tiny: seconds)

TINY = dict(d_model=16, layers=1, dropout=0.1, vocab_size=300, batch_size=16, lr=3e-3, threads=1, quiet=True)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_data")
    return make_reversal_jsonl(root / "train.jsonl", 120, 1, 6, seed=5)


def train(tmp_path, data, name, **kw):
    cfg = TrainConfig(data=data, out=str(tmp_path / name), **{**TINY, **kw})
    return run_training(cfg)


def weights(run_dir, name="last.safetensors"):
    return load_file(os.path.join(run_dir, name))


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_run_dir_layout_and_load_model(tmp_path, tiny_data):
    run = train(tmp_path, tiny_data, "run", epochs=1)
    for f in ("model.safetensors", "config.json", "tokenizer.model", "last.safetensors",
              "optimizer.safetensors", "trainer_state.json"):
        assert os.path.isfile(os.path.join(run, f)), f
    with open(os.path.join(run, "config.json")) as f:
        cfg = json.load(f)
    assert cfg["arch"] == "lstm" and cfg["epoch"] == 1 and cfg["step"] > 0
    assert cfg["special_ids"] == {"pad": 0, "unk": 1, "bos": 2, "eos": 3}
    assert cfg["vocab_size"] == Tokenizer(os.path.join(run, "tokenizer.model")).vocab_size
    assert cfg["max_source_len"] >= 6 and cfg["best_valid_loss"] > 0
    model, model_cfg, run_cfg = load_model(run)
    assert isinstance(model, LSTMSeq2Seq) and not model.training
    assert model_cfg.emb_dim == 16 and model_cfg.enc_hidden == 8 and run_cfg["arch"] == "lstm"


def test_existing_run_dir_needs_resume(tmp_path, tiny_data):
    train(tmp_path, tiny_data, "run", max_steps=2)
    with pytest.raises(ValueError, match="resume"):
        train(tmp_path, tiny_data, "run", max_steps=2)


def test_training_is_deterministic(tmp_path, tiny_data):
    a = train(tmp_path, tiny_data, "a", max_steps=12)
    b = train(tmp_path, tiny_data, "b", max_steps=12)
    assert_same_weights(weights(a), weights(b))
    c = train(tmp_path, tiny_data, "c", max_steps=12, seed=1)
    assert not torch.equal(weights(a)["out.weight"], weights(c)["out.weight"])


@pytest.mark.parametrize("first, second", [(dict(epochs=1), dict(epochs=2)),
                                           (dict(max_steps=5), dict(max_steps=14))])
def test_resume_continues_exactly(tmp_path, tiny_data, first, second):
    straight = train(tmp_path, tiny_data, "straight", **second)
    train(tmp_path, tiny_data, "split", **first)
    resumed = train(tmp_path, tiny_data, "split", resume=True, **second)
    assert_same_weights(weights(straight), weights(resumed))
    steps = []
    for run in (straight, resumed):
        with open(os.path.join(run, "config.json")) as f:
            steps.append(json.load(f)["step"])
    assert steps[0] == steps[1]


def test_plain_text_corpus_trains(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("第一段文字，很长很长。\nsecond line of doc one\n\nanother document 🙂 here\n" * 20,
                      encoding="utf-8")
    run = train(tmp_path, str(corpus), "txt", max_steps=3, context_len=16, continuation_len=8)
    with open(os.path.join(run, "config.json")) as f:
        assert json.load(f)["max_source_len"] <= 16


def test_cli_arguments_round_trip(tmp_path):
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    args = parser.parse_args(["--data", "d.jsonl", "--out", "o", "--attention", "additive", "--d-model", "32",
                              "--label-smoothing", "0.1", "--model-config", '{"attn_dim": 7}', "--resume"])
    cfg = config_from_args(args)
    assert cfg.attention == "additive" and cfg.d_model == 32 and cfg.model_config == {"attn_dim": 7}
    assert cfg.resume and cfg.label_smoothing == 0.1 and cfg.arch == "lstm"
    assert all(a.help for a in parser._actions if a.dest != "help")


def test_cli_rejects_model_config_that_is_not_an_object(capsys):
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(["--data", "d", "--out", "o", "--model-config", "[1, 2]"])
    assert "JSON object" in capsys.readouterr().err


def test_learning_rate_schedule():
    cfg = TrainConfig(data="d", out="o", lr=1.0, warmup_steps=4, lr_schedule="cosine")
    lrs = [learning_rate(cfg, s, total_steps=20) for s in range(20)]
    assert lrs[:4] == [0.25, 0.5, 0.75, 1.0]
    assert all(a >= b for a, b in zip(lrs[3:], lrs[4:])) and lrs[-1] >= 0.1
    assert learning_rate(TrainConfig(data="d", out="o", lr=0.5), 100, 20) == 0.5


def test_label_smoothing_and_additive_attention_train(tmp_path, tiny_data):
    run = train(tmp_path, tiny_data, "ls", max_steps=3, label_smoothing=0.1, attention="additive")
    model, model_cfg, _ = load_model(run)
    assert model_cfg.attention == "additive" and "keys" in model.graph_spec().memory


def test_bad_config_is_rejected(tmp_path, tiny_data):
    with pytest.raises(ValueError, match="label_smoothing"):
        train(tmp_path, tiny_data, "x", label_smoothing=1.5)
    with pytest.raises(ValueError, match="has no field"):
        train(tmp_path, tiny_data, "y", model_config={"nope": 1}, max_steps=1)


def test_transformer_trains_through_the_same_loop(tmp_path, tiny_data):
    try:
        get_arch("transformer")
    except ValueError as exc:
        pytest.skip(str(exc))
    run = train(tmp_path, tiny_data, "tf", arch="transformer", d_model=16, heads=2, ffn_dim=32, max_steps=3)
    model, _, run_cfg = load_model(run)
    assert run_cfg["arch"] == "transformer" and model.arch == "transformer"


# ----------------------------------------------------------------------------
# the reversal fixture model (slow)


def test_reversal_model_reverses_held_out_strings_exactly(lstm_run_dir):
    model, _, _ = load_model(lstm_run_dir)
    tok = Tokenizer(os.path.join(lstm_run_dir, "tokenizer.model"))
    cases = reversal_cases(60, 1, REVERSAL_MAX_LEN)
    outputs = greedy_decode(model, [tok.encode(src) for src, _ in cases], REVERSAL_MAX_LEN + 4)
    wrong = [(src, tok.decode(out)) for (src, tgt), out in zip(cases, outputs) if tok.decode(out) != tgt]
    assert not wrong, f"{len(wrong)}/{len(cases)} wrong, e.g. {wrong[:3]}"
