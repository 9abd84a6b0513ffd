"""The graph contract: one table of ONNX input/output names, dtypes and axes.

Built from a model's GraphSpec (ltg_engine.training.base). Every export is
checked against it, it is written into config.json, and the runtime checks
each session against it before generating. Symbolic axes:

    B  batch            S  source length
    K  hypotheses out   K_in  hypotheses in (the previous step's K)
    T  cache length in  T_out cache length out (T + 1)
    V  vocabulary (fixed, written as a number)

Encoder memory keeps B on axis 0 and never has a K axis; state tensors carry
K on axis 1 in the step graph and no K axis as the encoder emits them.
"""
from __future__ import annotations

from typing import Dict, List

ENCODER_INPUTS = [
    {"name": "src_ids", "dtype": "int64", "shape": ["B", "S"]},
    {"name": "src_len", "dtype": "int64", "shape": ["B"]},
]

STEP_FIXED_INPUTS = [
    {"name": "tokens", "dtype": "int64", "shape": ["B", "K"]},
    {"name": "parents", "dtype": "int64", "shape": ["B", "K"]},
    {"name": "step", "dtype": "int64", "shape": []},
]

MEMORY_PREFIX = "memory."
STATE_PREFIX = "state."
NEXT_STATE_PREFIX = "next_state."


def _rename(shape: List, mapping: Dict[str, str]) -> List:
    return [mapping.get(d, d) if isinstance(d, str) else int(d) for d in shape]


def build_contract(memory: Dict[str, List], state: Dict[str, List], vocab_size: int) -> dict:
    """Contract for both graphs from the symbolic shapes of a GraphSpec."""
    for name, shape in memory.items():
        if not shape or shape[0] != "B" or "K" in shape:
            raise ValueError(f"memory {name!r} must be [B, ...] with no K axis, got {shape}")
    for name, shape in state.items():
        if not shape or shape[0] != "B" or "K" in shape:
            raise ValueError(f"state {name!r} must be [B, ...] as the encoder emits it, got {shape}")

    memory_io = [
        {"name": MEMORY_PREFIX + n, "dtype": "float32", "shape": list(s)} for n, s in memory.items()
    ]
    encoder = {
        "inputs": ENCODER_INPUTS,
        "outputs": memory_io
        + [{"name": STATE_PREFIX + n, "dtype": "float32", "shape": list(s)} for n, s in state.items()],
    }
    step_state_in = [
        {"name": STATE_PREFIX + n, "dtype": "float32", "shape": _rename(["B", "K_in"] + list(s[1:]), {})}
        for n, s in state.items()
    ]
    step_state_out = [
        {
            "name": NEXT_STATE_PREFIX + n,
            "dtype": "float32",
            "shape": _rename(["B", "K"] + list(s[1:]), {"T": "T_out"}),
        }
        for n, s in state.items()
    ]
    decoder_step = {
        "inputs": STEP_FIXED_INPUTS + step_state_in + memory_io + [ENCODER_INPUTS[1]],
        "outputs": [{"name": "logits", "dtype": "float32", "shape": ["B", "K", int(vocab_size)]}]
        + step_state_out,
    }
    return {
        "encoder": encoder,
        "decoder_step": decoder_step,
        "memory": list(memory),
        "state": list(state),
    }


def input_names(contract: dict, graph: str) -> List[str]:
    return [io["name"] for io in contract[graph]["inputs"]]


def output_names(contract: dict, graph: str) -> List[str]:
    return [io["name"] for io in contract[graph]["outputs"]]
