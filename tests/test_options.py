"""GenerationOptions: HF names and defaults, and a ValueError for every invalid value."""
import math

import numpy as np
import pytest

from ltg_engine.options import GenerationOptions

VOCAB = 100


def test_defaults_follow_hf_generate():
    o = GenerationOptions()
    assert (o.max_new_tokens, o.num_beams, o.do_sample, o.temperature, o.top_k, o.top_p) == \
        (128, 1, False, 1.0, 50, 1.0)
    assert (o.repetition_penalty, o.no_repeat_ngram_size, o.length_penalty, o.early_stopping,
            o.num_return_sequences, o.min_new_tokens) == (1.0, 0, 1.0, False, 1, 0)
    assert o.validate(VOCAB) is o


def test_from_kwargs_and_replace():
    o = GenerationOptions.from_kwargs(num_beams=4, eos_token_id=[2, 3])
    assert o.num_beams == 4 and o.eos_token_id == [2, 3]
    assert o.replace(num_beams=2).num_beams == 2 and o.num_beams == 4


@pytest.mark.parametrize("build", [GenerationOptions.from_kwargs, GenerationOptions().replace])
def test_unknown_option_lists_valid_names(build):
    with pytest.raises(ValueError, match="num_beam.*valid names.*max_new_tokens"):
        build(num_beam=4)


VALID_EDGES = [
    dict(max_new_tokens=1), dict(min_new_tokens=5, max_new_tokens=5), dict(top_k=0),
    dict(top_p=1.0), dict(do_sample=True, temperature=0.01), dict(num_beams=3, num_return_sequences=3),
    dict(eos_token_id=[0, VOCAB - 1]), dict(banned_token_ids=np.array([1, 2])), dict(seed=0),
    dict(length_penalty=-2.0), dict(max_new_tokens=np.int64(4)), dict(do_sample=np.bool_(True)),
]


@pytest.mark.parametrize("kw", VALID_EDGES)
def test_valid_edge_values_pass(kw):
    GenerationOptions(**kw).validate(VOCAB)


INVALID = [
    ("max_new_tokens", 0), ("max_new_tokens", -3), ("max_new_tokens", 2.0), ("max_new_tokens", True),
    ("max_new_tokens", "10"), ("max_new_tokens", None),
    ("min_new_tokens", -1), ("min_new_tokens", 200),
    ("num_beams", 0), ("num_beams", 1.5), ("num_beams", False),
    ("num_return_sequences", 0), ("num_return_sequences", 2),
    ("do_sample", 1), ("do_sample", "yes"), ("early_stopping", 0), ("early_stopping", None),
    ("temperature", 0.0), ("temperature", -1.0), ("temperature", math.nan), ("temperature", math.inf),
    ("temperature", True), ("temperature", "1"),
    ("top_k", -1), ("top_k", 2.5),
    ("top_p", 0.0), ("top_p", 1.5), ("top_p", -0.1), ("top_p", math.nan),
    ("repetition_penalty", 0.0), ("repetition_penalty", -1.0), ("repetition_penalty", math.inf),
    ("repetition_penalty", 1e-300), ("repetition_penalty", 1e300), ("temperature", 1e-300),
    ("no_repeat_ngram_size", -1), ("no_repeat_ngram_size", 1.0),
    ("length_penalty", math.nan), ("length_penalty", -math.inf), ("length_penalty", False),
    ("eos_token_id", VOCAB), ("eos_token_id", -1), ("eos_token_id", []), ("eos_token_id", [1, "2"]),
    ("eos_token_id", 1.0), ("eos_token_id", "2"), ("eos_token_id", True),
    ("banned_token_ids", [VOCAB]), ("banned_token_ids", [-5]), ("banned_token_ids", 3.0),
    ("banned_token_ids", [True]), ("banned_token_ids", "12"),
    ("seed", -1), ("seed", 2 ** 64), ("seed", 1.0), ("seed", True),
]


@pytest.mark.parametrize("name,value", INVALID)
def test_invalid_value_raises_naming_option(name, value):
    with pytest.raises(ValueError, match=name):
        GenerationOptions(**{name: value}).validate(VOCAB)


def test_sampling_with_beams_is_rejected():
    with pytest.raises(ValueError, match="do_sample"):
        GenerationOptions(do_sample=True, num_beams=2).validate(VOCAB)


def test_bad_vocab_size():
    with pytest.raises(ValueError, match="vocab_size"):
        GenerationOptions().validate(0)
