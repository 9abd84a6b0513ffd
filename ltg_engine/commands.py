"""What each `ltg` subcommand does (argument parsing lives in cli.py)."""
from __future__ import annotations

import json
import os
import sys
from typing import Iterator, List

from ltg_engine.cli import generation_kwargs


def train(args) -> int:
    from ltg_engine.training.train import config_from_args, run_training

    run_dir = run_training(config_from_args(args))
    print(f"trained: {run_dir}\nnext: ltg export {run_dir} --out MODEL_DIR")
    return 0


def export(args) -> int:
    from ltg_engine.export.onnx_export import export_model

    export_model(args.run_dir, args.out, max_source_length=args.max_source_length, tol=args.tol,
                 opset=args.opset, overwrite=args.overwrite)
    if args.int8:
        from ltg_engine.export.quantize import quantize_model_dir

        quantize_model_dir(args.out)
    print(f"next: ltg generate {args.out} \"some text\"")
    return 0


def quantize(args) -> int:
    from ltg_engine.export.quantize import quantize_model_dir

    quantize_model_dir(args.model_dir, out_dir=args.out, eval_data=args.eval_data)
    return 0


def _load_generator(model_dir, args):
    from ltg_engine import Generator

    return Generator.load(model_dir, providers=args.provider, threads=args.threads,
                          precision="int8" if args.int8 else "float32",
                          spinning=getattr(args, "spinning", False),
                          optimized_model_dir=getattr(args, "optimized_model_dir", None))


def _resolve_model_and_text(args):
    """`ltg generate "text"` (bundled model) vs `ltg generate MODEL_DIR ["text"]`."""
    if args.model_dir is not None and args.text is None and not os.path.isdir(args.model_dir) \
            and not os.path.exists(args.model_dir):
        return None, args.model_dir
    return args.model_dir, args.text


def _stdin_lines() -> Iterator[str]:
    for lineno, line in enumerate(sys.stdin, 1):
        line = line.rstrip("\n")
        if line.strip():
            yield line
        else:
            print(f"ltg generate: skipping empty stdin line {lineno}", file=sys.stderr)


def _batches(lines: Iterator[str], size: int) -> Iterator[List[str]]:
    batch: List[str] = []
    for line in lines:
        batch.append(line)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def generate(args) -> int:
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    model_dir, text = _resolve_model_and_text(args)
    gen = _load_generator(model_dir, args)
    options = generation_kwargs(args)
    if text is not None and args.stream:
        for piece in gen.stream(text, truncate=args.truncate, **options):
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        return 0
    batches = [[text]] if text is not None else _batches(_stdin_lines(), args.batch_size)
    for batch in batches:
        for result in gen.generate(batch, truncate=args.truncate, **options):
            _print_result(result, args.json)
    return 0


def _print_result(result, as_json: bool) -> None:
    if as_json:
        print(json.dumps({
            "text": result.text, "token_ids": result.token_ids, "score": result.score,
            "truncated": result.truncated,
            "hypotheses": [{"text": h.text, "token_ids": h.token_ids, "score": h.score} for h in result.hypotheses],
        }, ensure_ascii=False))
    elif len(result.hypotheses) > 1:
        for rank, h in enumerate(result.hypotheses, 1):
            print(f"{rank}\t{h.score:.4f}\t{h.text}")
    else:
        print(result.text)


def bench(args) -> int:
    from ltg_engine.bench import run_bench_command

    return run_bench_command(args)
