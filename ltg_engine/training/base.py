"""The interface every trainable architecture implements (torch).

A model exposes three calls. `forward` is teacher forcing for training.
`encode` and `step` ARE the graph contract of DESIGN.md, so the ONNX export
wrappers (ltg_engine.export) are thin and the PyTorch reference decode uses
exactly the computation the exported graphs carry:

    encode(src_ids [B,S] int64, src_len [B] int64)
        -> memory: dict name -> [B,S,...]   computed once per source
           state:  dict name -> [B,...]     initial decoder state
    step(tokens [B,K] int64, parents [B,K] int64, step [] int64,
         state: dict name -> [B,K',...], memory: dict, src_len [B])
        -> logits [B,K,V] float32 (raw, no softmax), next_state dict [B,K,...]

`parents[b, k]` indexes the previous K' axis: the step gathers its incoming
state by parents first (beam reordering inside the graph), then advances.
Memory is never expanded to K: attention broadcasts over the K axis.

`graph_spec()` names and shapes the memory and state tensors symbolically,
using "B", "K", "S" and, for growing caches, "T" for dynamic axes.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Tuple

import torch
from torch import nn

Tensors = Dict[str, torch.Tensor]


@dataclasses.dataclass
class GraphSpec:
    """Symbolic shapes of the tensors that cross the graph boundary.

    memory: name -> shape list, e.g. {"values": ["B", "S", 512]}
    state:  name -> shape list *without* the K axis, as the encoder emits it,
            e.g. {"h": ["B", 2, 256]}; the step sees ["B", "K", 2, 256].
    Order of the dicts is the order of graph inputs/outputs.
    """

    memory: Dict[str, List]
    state: Dict[str, List]


class Seq2SeqModel(nn.Module):
    arch: str = "base"

    def forward(self, src_ids, src_len, tgt_in) -> torch.Tensor:  # (B, T, V)
        raise NotImplementedError

    def encode(self, src_ids, src_len) -> Tuple[Tensors, Tensors]:
        raise NotImplementedError

    def step(self, tokens, parents, step, state: Tensors, memory: Tensors, src_len) -> Tuple[torch.Tensor, Tensors]:
        raise NotImplementedError

    def graph_spec(self) -> GraphSpec:
        raise NotImplementedError
