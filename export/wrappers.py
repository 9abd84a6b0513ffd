"""Export wrappers whose forward() IS the graph: flat tensors in contract order.

torch.onnx.export traces forward(); the model's encode()/step() speak in
dicts, so these wrappers flatten and unflatten by the names in the GraphSpec.
"""
from __future__ import annotations

from typing import List

import torch
from torch import nn


class EncoderGraph(nn.Module):
    """(src_ids [B,S], src_len [B]) -> (*memory, *state) in spec order."""

    def __init__(self, model: nn.Module, memory_names: List[str], state_names: List[str]):
        super().__init__()
        self.model = model
        self.memory_names = memory_names
        self.state_names = state_names

    def forward(self, src_ids, src_len):
        memory, state = self.model.encode(src_ids, src_len)
        return tuple(memory[n] for n in self.memory_names) + tuple(state[n] for n in self.state_names)


class DecoderStepGraph(nn.Module):
    """(tokens, parents, step, *state, *memory, src_len) -> (logits, *next_state)."""

    def __init__(self, model: nn.Module, memory_names: List[str], state_names: List[str]):
        super().__init__()
        self.model = model
        self.memory_names = memory_names
        self.state_names = state_names

    def forward(self, tokens, parents, step, *rest):
        n_state, n_mem = len(self.state_names), len(self.memory_names)
        state = dict(zip(self.state_names, rest[:n_state]))
        memory = dict(zip(self.memory_names, rest[n_state : n_state + n_mem]))
        src_len = rest[n_state + n_mem]
        logits, next_state = self.model.step(tokens, parents, step, state, memory, src_len)
        return (logits,) + tuple(next_state[n] for n in self.state_names)
