"""`ltg` help texts and flag coverage (no model needed)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from ltg_engine.cli import GENERATION_HELP, build_parser, generation_kwargs
from ltg_engine.options import GenerationOptions

LTG = [sys.executable, "-m", "ltg_engine.cli"]


@pytest.mark.parametrize("command", [[], ["train"], ["export"], ["quantize"], ["generate"], ["bench"]])
def test_help_is_complete(command):
    out = subprocess.run(LTG + command + ["--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "usage: ltg" in out.stdout
    if command == ["generate"]:
        for name in GenerationOptions.option_names():
            assert "--" + name.replace("_", "-") in out.stdout


def test_every_generation_option_has_a_flag_with_help():
    assert set(GENERATION_HELP) == set(GenerationOptions.option_names())


def test_flags_map_to_generation_options():
    argv = ["generate", "m", "t", "--num-beams", "4", "--length-penalty", "0.6", "--early-stopping", "never",
            "--banned-token-ids", "5", "6", "--seed", "3"]
    kwargs = generation_kwargs(build_parser(argv).parse_args(argv))
    assert kwargs == dict(num_beams=4, length_penalty=0.6, early_stopping="never", banned_token_ids=(5, 6), seed=3)
    GenerationOptions.from_kwargs(**kwargs).validate(100)


def test_unknown_flag_is_rejected():
    out = subprocess.run(LTG + ["generate", "m", "t", "--beams", "4"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "unrecognized arguments: --beams" in out.stderr


def test_no_command_prints_help_and_fails():
    out = subprocess.run(LTG, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "COMMAND" in out.stdout
