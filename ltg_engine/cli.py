"""The `ltg` command: train, export, quantize, generate, bench.

    ltg train --data corpus.txt --out runs/my_run
    ltg export runs/my_run --out models/my_model
    ltg generate models/my_model "some text"     (or one input per line on stdin)
    ltg bench models/my_model --context 512 2048

train/export need the `train` extra (torch); they import it only when run,
so `ltg generate` starts fast and works on a torch-free install.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import List, Optional

from ltg_engine import __version__

TORCH_COMMANDS = ("train", "export", "quantize")
INSTALL_TRAIN = 'this command needs the train extra: pip install "ltg_engine[train]" torch==2.13.0'


def _add_train(sub, build: bool) -> None:
    p = sub.add_parser("train", help="train a model on your text (PyTorch)",
                       description="Train the LSTM-attention or Transformer seq2seq on a .txt corpus or .jsonl pairs.")
    if build:
        from ltg_engine.training.train import add_train_arguments

        add_train_arguments(p)


def _add_export(sub, build: bool) -> None:
    p = sub.add_parser("export", help="export a training run to an ONNX model directory",
                       description="Export the encoder and one decoder step to ONNX, validate them "
                                   "against PyTorch, and write MODEL_DIR (config.json with hashes).")
    p.add_argument("run_dir", help="training run directory (from `ltg train`)")
    p.add_argument("--out", required=True, help="model directory to write")
    p.add_argument("--max-source-length", type=int, default=None,
                   help="longest source (tokens) the runtime accepts; longer inputs raise unless truncated "
                        "(default: no limit)")
    p.add_argument("--tol", type=float, default=1e-4, help="max |logits| difference allowed vs PyTorch (default 1e-4)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
    p.add_argument("--int8", action="store_true", help="also write int8 (dynamically quantized) graphs")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out directory")


def _add_quantize(sub) -> None:
    p = sub.add_parser("quantize", help="add int8 graphs to a model directory",
                       description="Dynamic int8 quantization of both graphs with onnxruntime.quantization; "
                                   "reports quality before/after.")
    p.add_argument("model_dir")
    p.add_argument("--out", default=None, help="write a new model directory instead of adding to MODEL_DIR")
    p.add_argument("--eval-data", default=None, help=".jsonl/.txt held-out data for perplexity and agreement")


GENERATION_HELP = {
    "max_new_tokens": "most tokens to generate per input",
    "min_new_tokens": "EOS is held back until this many tokens exist",
    "num_beams": "beam width; 1 = greedy (or sampling with --do-sample)",
    "do_sample": "sample instead of taking the argmax (num_beams 1 only)",
    "temperature": "divide logits by this before sampling (> 0)",
    "top_k": "sample among the k most likely tokens (0 = off)",
    "top_p": "sample among the smallest set with probability >= p (nucleus; 1 = off)",
    "repetition_penalty": "CTRL-style penalty on tokens already generated (1 = off)",
    "no_repeat_ngram_size": "never repeat an n-gram of this size (0 = off)",
    "length_penalty": "beam score = log-prob sum / length ** length_penalty",
    "early_stopping": "beam: true = stop a row at num_beams finished hypotheses; false = HF's "
                      "heuristic; never = exact search (slow with length_penalty > 0)",
    "num_return_sequences": "n-best hypotheses returned per input (<= num_beams)",
    "eos_token_id": "end-of-sequence id(s) (default: the model's)",
    "banned_token_ids": "ids that are never generated",
    "seed": "sampling seed: the same seed gives the same text",
}


def _early_stopping(value: str):
    modes = {"true": True, "false": False, "never": "never"}
    if value.lower() not in modes:
        raise argparse.ArgumentTypeError(f"expected true, false or never, got {value!r}")
    return modes[value.lower()]


def add_generation_flags(p: argparse.ArgumentParser) -> None:
    """One flag per GenerationOptions field, HF names with dashes."""
    from ltg_engine.options import GenerationOptions

    g = p.add_argument_group("generation options (HF generate names)")
    for f in dataclasses.fields(GenerationOptions):
        flag = "--" + f.name.replace("_", "-")
        text = f"{GENERATION_HELP.get(f.name, '')} (default: {f.default!r})"
        if f.name == "early_stopping":
            g.add_argument(flag, type=_early_stopping, default=None, metavar="{true,false,never}", help=text)
        elif f.name in ("eos_token_id", "banned_token_ids"):
            g.add_argument(flag, type=int, nargs="+", default=None, metavar="ID", help=text)
        elif f.type in ("bool", bool):
            g.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=text)
        elif f.type in ("int", int) or f.name == "seed":
            g.add_argument(flag, type=int, default=None, metavar="N", help=text)
        else:
            g.add_argument(flag, type=float, default=None, metavar="X", help=text)


def generation_kwargs(args) -> dict:
    from ltg_engine.options import GenerationOptions

    out = {}
    for name in GenerationOptions.option_names():
        value = getattr(args, name, None)
        if value is not None:
            out[name] = tuple(value) if isinstance(value, list) else value
    return out


def add_session_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads (default: physical cores)")
    p.add_argument("--provider", action="append", default=None,
                   help="onnxruntime execution provider, repeatable (e.g. CUDAExecutionProvider; default CPU)")
    p.add_argument("--int8", action="store_true", help="use the int8 graphs (after `ltg quantize`)")
    p.add_argument("--spinning", action=argparse.BooleanOptionalAction, default=False,
                   help="let idle onnxruntime threads spin (default off: faster on busy or shared machines)")
    p.add_argument("--optimized-model-dir", default=None, metavar="DIR",
                   help="cache of onnxruntime-optimized graphs: saved on first load, reused after")


def _add_generate(sub) -> None:
    p = sub.add_parser("generate", help="generate text with a model directory",
                       description="Generate a continuation of TEXT, or of each line of stdin when no TEXT is given.")
    p.add_argument("model_dir", nargs="?", default=None,
                   help="model directory (default: the bundled model). If it is not a directory and no TEXT "
                        "follows, it is taken as the TEXT for the bundled model")
    p.add_argument("text", nargs="?", default=None, help="input text (default: read lines from stdin)")
    p.add_argument("--stream", action="store_true", help="print tokens as they are generated (greedy/sampling)")
    p.add_argument("--truncate", action="store_true", help="keep the last max_source_length tokens of longer inputs")
    p.add_argument("--json", action="store_true", help="print one JSON object per input (text, token_ids, score, n-best)")
    p.add_argument("--batch-size", type=int, default=16, help="stdin lines generated per batch (default 16)")
    add_session_flags(p)
    add_generation_flags(p)


def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="measure latency: first token, per-token p50/p90/p99, tokens/s, overhead",
                       description="Latency benchmark of one model directory on synthetic inputs.")
    p.add_argument("model_dir", nargs="?", default=None, help="model directory (default: the bundled model)")
    p.add_argument("--context", type=int, nargs="+", default=[512], help="source lengths in tokens (default 512)")
    p.add_argument("--new-tokens", type=int, default=64, help="tokens generated per request (default 64)")
    p.add_argument("--batch-size", type=int, nargs="+", default=[1], help="batch sizes (default 1)")
    p.add_argument("--num-beams", type=int, nargs="+", default=[1], help="beam sizes (default 1)")
    p.add_argument("--repetitions", type=int, default=5, help="timed runs per configuration (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs first (default 1)")
    p.add_argument("--json", dest="json_out", default=None, metavar="FILE", help="also write results as JSON")
    add_session_flags(p)


def build_parser(argv: Optional[List[str]] = None) -> argparse.ArgumentParser:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = argparse.ArgumentParser(prog="ltg", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Run `ltg COMMAND --help` for each command's options.")
    parser.add_argument("--version", action="version", version=f"ltg_engine {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_train(sub, build=command == "train")
    _add_export(sub, build=command == "export")
    _add_quantize(sub)
    _add_generate(sub)
    _add_bench(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        parser = build_parser(argv)
    except ImportError as e:
        print(f"ltg: {INSTALL_TRAIN} ({e})", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from ltg_engine import commands

    try:
        return getattr(commands, args.command)(args) or 0
    except KeyboardInterrupt:
        return 130
    except (ValueError, TypeError, OSError, TimeoutError, RuntimeError) as e:
        print(f"ltg {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
