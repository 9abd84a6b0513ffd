"""torch -> ONNX: export the encoder and one decoder step, then validate.

    export_model(run_dir, out_dir)  writes the model directory of DESIGN.md

Validation: onnx.checker on both graphs, names/dtypes/axes against the
contract table, then PyTorch vs onnxruntime on random inputs (batch 1 and 3;
source lengths 1, 7 and four times the longest trained source) through
encode and three decoder steps with beam reordering; fails when any step's
logits differ by more than `tol` (max abs).
"""
from __future__ import annotations

import logging
import os
import shutil
import warnings
from typing import Dict, List, Optional

import numpy as np
import torch

from ltg_engine import model_dir as md
from ltg_engine.export.contract import (
    MEMORY_PREFIX,
    NEXT_STATE_PREFIX,
    STATE_PREFIX,
    build_contract,
    input_names,
    output_names,
)
from ltg_engine.export.wrappers import DecoderStepGraph, EncoderGraph

DEFAULT_TOL = 1e-4


class ExportError(RuntimeError):
    """The export failed or the exported graphs disagree with PyTorch."""


# ---------------------------------------------------------------- examples

def _example_inputs(model, vocab_size: int, batch: int = 2, src: int = 7, k_in: int = 3, k_out: int = 4, steps: int = 2):
    """Inputs whose every dynamic axis has a distinct size >= 2.

    torch.export specialises axes of size 0 and 1 and merges axes that happen
    to be equal, so the step is exported from a state that has already been
    advanced `steps` times (cache length T = steps) at K_in hypotheses.
    """
    g = torch.Generator().manual_seed(0)
    src_ids = torch.randint(4, vocab_size, (batch, src), generator=g)
    src_len = torch.tensor([src] + [src - 2] * (batch - 1))
    with torch.no_grad():
        memory, state = model.encode(src_ids, src_len)
        state = {n: t.unsqueeze(1) for n, t in state.items()}  # (B, 1, ...)
        k = 1
        for i in range(steps):
            tokens = torch.randint(4, vocab_size, (batch, k_in), generator=g)
            parents = torch.randint(0, k, (batch, k_in), generator=g)
            _, state = model.step(tokens, parents, torch.tensor(i), state, memory, src_len)
            k = k_in
    tokens = torch.randint(4, vocab_size, (batch, k_out), generator=g)
    parents = torch.randint(0, k_in, (batch, k_out), generator=g)
    return src_ids, src_len, memory, state, tokens, parents, torch.tensor(steps)


def _dims(shape: List, dims: Dict[str, object]) -> Dict[int, object]:
    return {i: dims[d] for i, d in enumerate(shape) if isinstance(d, str) and d in dims}


# ---------------------------------------------------------------- export

def export_graphs(model, contract: dict, out_dir: str, vocab_size: int, opset: Optional[int] = None) -> None:
    """Write encoder.onnx and decoder_step.onnx for `model` (eval mode)."""
    from torch.export import Dim

    mem_names, state_names = contract["memory"], contract["state"]
    dims = {"B": Dim("B"), "S": Dim("S"), "K": Dim("K"), "K_in": Dim("K_in"), "T": Dim("T")}
    src_ids, src_len, memory, state, tokens, parents, step = _example_inputs(model, vocab_size)

    enc = EncoderGraph(model, mem_names, state_names).eval()
    enc_io = contract["encoder"]["inputs"]
    _export(
        enc, (src_ids, src_len), tuple(_dims(io["shape"], dims) for io in enc_io),
        os.path.join(out_dir, "encoder.onnx"), input_names(contract, "encoder"),
        output_names(contract, "encoder"), opset,
    )

    step_graph = DecoderStepGraph(model, mem_names, state_names).eval()
    args = (tokens, parents, step, *[state[n] for n in state_names], *[memory[n] for n in mem_names], src_len)
    step_dims = [_dims(io["shape"], dims) for io in contract["decoder_step"]["inputs"]]
    _export(  # forward(tokens, parents, step, *rest): the *rest shapes nest as one tuple
        step_graph, args, (*step_dims[:3], tuple(step_dims[3:])),
        os.path.join(out_dir, "decoder_step.onnx"), input_names(contract, "decoder_step"),
        output_names(contract, "decoder_step"), opset,
    )
    for graph in ("encoder", "decoder_step"):
        stamp_axes(os.path.join(out_dir, graph + ".onnx"), contract[graph])


def stamp_axes(path: str, contract_graph: dict) -> None:
    """Write the contract's axis names onto the graph's inputs and outputs.

    The exporter sometimes records an example size (e.g. S=7) on an output
    whose size is really dynamic; the contract is the truth, so stamp it and
    drop the intermediate shape annotations for onnxruntime to re-infer.
    """
    import onnx

    proto = onnx.load(path)
    for values, ios in ((proto.graph.input, contract_graph["inputs"]), (proto.graph.output, contract_graph["outputs"])):
        for value, io in zip(values, ios):
            dims = value.type.tensor_type.shape.dim
            if len(dims) != len(io["shape"]):
                raise ExportError(f"{os.path.basename(path)}: {io['name']} has rank {len(dims)}, "
                                  f"the contract says {io['shape']}")
            for dim, want in zip(dims, io["shape"]):
                if isinstance(want, str):
                    dim.dim_param = want
                else:
                    dim.dim_value = int(want)
    del proto.graph.value_info[:]
    onnx.save(proto, path)


def _export(module, args, dynamic_shapes, path, in_names, out_names, opset) -> None:
    kwargs = dict(dynamo=True, dynamic_shapes=dynamic_shapes, input_names=in_names,
                  output_names=out_names, external_data=False, verbose=False)
    if opset is not None:
        kwargs["opset_version"] = opset
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # "torchvision is not installed" noise
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(module, args, path, **kwargs)
        except Exception as e:  # the exporter raises many types; name the graph
            raise ExportError(f"torch.onnx.export failed for {os.path.basename(path)}: {e}") from e


# ---------------------------------------------------------------- validation

def check_graphs(out_dir: str, contract: dict) -> None:
    """onnx.checker, then the graphs' names and dtypes against the contract."""
    import onnx

    dtype_names = {onnx.TensorProto.INT64: "int64", onnx.TensorProto.FLOAT: "float32",
                   onnx.TensorProto.FLOAT16: "float16"}
    for graph in ("encoder", "decoder_step"):
        path = os.path.join(out_dir, graph + ".onnx")
        proto = onnx.load(path)
        onnx.checker.check_model(proto, full_check=True)
        for kind, values in (("inputs", proto.graph.input), ("outputs", proto.graph.output)):
            got = [(v.name, dtype_names.get(v.type.tensor_type.elem_type, "?")) for v in values]
            want = [(io["name"], io["dtype"]) for io in contract[graph][kind]]
            if got != want:
                raise ExportError(f"{graph}.onnx {kind} {got} do not match the contract {want}")


def validate(model, out_dir: str, contract: dict, vocab_size: int, max_trained_len: int,
             tol: float = DEFAULT_TOL, report=print) -> float:
    """PyTorch vs onnxruntime; returns the largest logits difference seen."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    enc = ort.InferenceSession(os.path.join(out_dir, "encoder.onnx"), opts, providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(os.path.join(out_dir, "decoder_step.onnx"), opts, providers=["CPUExecutionProvider"])
    mem_names, state_names = contract["memory"], contract["state"]
    g = torch.Generator().manual_seed(1234)
    worst = 0.0
    for batch in (1, 3):
        for src in sorted({1, 7, 4 * max(1, max_trained_len)}):
            src_ids = torch.randint(4, vocab_size, (batch, src), generator=g)
            src_len = torch.randint(1, src + 1, (batch,), generator=g)
            src_len[0] = src
            with torch.no_grad():
                memory, state = model.encode(src_ids, src_len)
            outs = enc.run(None, {"src_ids": src_ids.numpy(), "src_len": src_len.numpy()})
            ort_mem = dict(zip(mem_names, outs[: len(mem_names)]))
            ort_state = {n: o[:, None] for n, o in zip(state_names, outs[len(mem_names):])}
            state = {n: t.unsqueeze(1) for n, t in state.items()}
            k = 1
            for step, k_out in enumerate((2, 2, 3)):
                tokens = torch.randint(4, vocab_size, (batch, k_out), generator=g)
                parents = torch.randint(0, k, (batch, k_out), generator=g)
                with torch.no_grad():
                    logits, state = model.step(tokens, parents, torch.tensor(step), state, memory, src_len)
                feeds = {"tokens": tokens.numpy(), "parents": parents.numpy(),
                         "step": np.array(step, dtype=np.int64), "src_len": src_len.numpy()}
                feeds.update({STATE_PREFIX + n: ort_state[n] for n in state_names})
                feeds.update({MEMORY_PREFIX + n: ort_mem[n] for n in mem_names})
                outs = dec.run(None, feeds)
                ort_state = dict(zip(state_names, outs[1:]))
                diff = float(np.abs(outs[0] - logits.numpy()).max())
                worst = max(worst, diff)
                if not np.isfinite(diff) or diff > tol:
                    raise ExportError(
                        f"decoder step logits differ from PyTorch by {diff:.3g} (> {tol:g}) at batch {batch}, "
                        f"source length {src}, step {step}: the exported graph does not compute the model"
                    )
                k = k_out
            report(f"  parity batch={batch} src_len={src}: max |logits diff| so far {worst:.2e}")
    return worst


# ---------------------------------------------------------------- model dir

def export_model(run_dir: str, out_dir: str, *, max_source_length: Optional[int] = None,
                 tol: float = DEFAULT_TOL, opset: Optional[int] = None, overwrite: bool = False,
                 report=print) -> str:
    """RUN_DIR (a training run) -> MODEL_DIR (the runtime's model directory)."""
    import dataclasses

    import onnx

    from ltg_engine.training.checkpoint import load_model

    if os.path.exists(out_dir) and os.listdir(out_dir) and not overwrite:
        raise ExportError(f"{out_dir} exists and is not empty; pass overwrite=True (--overwrite) to replace it")
    os.makedirs(out_dir, exist_ok=True)
    model, model_config, run_config = load_model(run_dir)
    model = model.eval().float()
    spec = model.graph_spec()
    vocab_size = int(model_config.vocab_size)
    contract = build_contract(spec.memory, spec.state, vocab_size)
    trained_len = int(run_config.get("max_source_length_trained") or run_config.get("max_source_len") or 64)

    report(f"exporting {run_config.get('arch', model.arch)} from {run_dir} to {out_dir}")
    export_graphs(model, contract, out_dir, vocab_size, opset)
    check_graphs(out_dir, contract)
    report("  onnx.checker passed; graph inputs/outputs match the contract")
    worst = validate(model, out_dir, contract, vocab_size, trained_len, tol=tol, report=report)
    shutil.copyfile(os.path.join(run_dir, md.TOKENIZER_NAME), os.path.join(out_dir, md.TOKENIZER_NAME))

    opset_used = max(o.version for o in onnx.load(os.path.join(out_dir, "encoder.onnx")).opset_import if o.domain in ("", "ai.onnx"))
    config = {
        "arch": model.arch,
        "model_config": dataclasses.asdict(model_config),
        "vocab_size": vocab_size,
        "special_ids": {"pad": 0, "unk": 1, "bos": 2, "eos": 3},
        "max_source_length_trained": trained_len,
        "max_source_length": max_source_length,
        "graph": contract,
        "generation": {"max_new_tokens": 128, "num_beams": 1},
        "validation": {"max_abs_logits_diff": worst, "tolerance": tol},
        "quantized": [],
        "versions": _versions(opset_used),
        "files": {md.TOKENIZER_NAME: None, "encoder.onnx": None, "decoder_step.onnx": None},
    }
    md.write_config(out_dir, config)
    report(f"wrote {out_dir} (max |logits diff| vs PyTorch {worst:.2e})")
    return out_dir


def _versions(opset: int) -> dict:
    import onnx
    import onnxruntime

    from ltg_engine import __version__

    return {"ltg_engine": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__, "opset": int(opset)}
