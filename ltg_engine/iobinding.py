"""The step runner for accelerators: onnxruntime IOBinding, states kept on the device.

With CUDAExecutionProvider, plain `session.run` copies every input to the
device and every output back on every step: the encoder memory (the largest
tensor at long context) and all decoder states would cross PCIe twice per
token. Here:

- the encoder's outputs are bound to the device and stay there;
- memory is bound once per compaction and never copied between steps;
- each step's next_state.* outputs are allocated on the device by
  onnxruntime and bound as the next step's state.* inputs, untouched;
- only tokens, parents, step, src_len go in from the host and only logits
  come back (the search core needs them).

When rows finish the active batch shrinks: memory, state and src_len are
compacted through the host (one round trip per compaction, not per step).
A device-side gather would need a helper graph; compactions are rare
(at most once per finished row), so the host fallback is what runs.

Also runs on CPU (`Generator.load(..., io_binding=True)`), where it must and
does give the same tokens as the plain StepRunner; tests hold it to that.
"""
from __future__ import annotations

import time
from typing import Dict, List, Sequence, Tuple

import numpy as np
import onnxruntime as ort

MEMORY, STATE, NEXT_STATE = "memory.", "state.", "next_state."
_DEVICE_TYPES = {"CUDAExecutionProvider": "cuda", "CPUExecutionProvider": "cpu"}


def session_device(session) -> Tuple[str, int]:
    """("cuda", id) when the session's first provider is CUDA, else ("cpu", 0)."""
    first = session.get_providers()[0]
    device = _DEVICE_TYPES.get(first, "cpu")
    if device == "cpu":
        return "cpu", 0
    options = session.get_provider_options().get(first, {})
    return device, int(options.get("device_id", 0))


class DeviceTensor:
    """An OrtValue plus the shape it is bound with (a view of the same buffer)."""

    __slots__ = ("value", "shape", "dtype", "is_view")

    def __init__(self, value: ort.OrtValue, shape: Sequence[int]):
        self.value = value
        self.shape = tuple(int(d) for d in shape)
        self.dtype = value.element_type()
        self.is_view = self.shape != tuple(value.shape())

    def bind(self, binding, name: str, device: Tuple[str, int]) -> None:
        if self.is_view:
            binding.bind_input(name, device[0], device[1], self.dtype, list(self.shape), self.value.data_ptr())
        else:
            binding.bind_ortvalue_input(name, self.value)

    def host(self) -> np.ndarray:
        return self.value.numpy().reshape(self.shape)


def _upload(array: np.ndarray, device: Tuple[str, int]) -> DeviceTensor:
    array = np.ascontiguousarray(array)
    return DeviceTensor(ort.OrtValue.ortvalue_from_numpy(array, device[0], device[1]), array.shape)


def encode_on_device(encoder, contract: dict, src: np.ndarray, src_len: np.ndarray,
                     device: Tuple[str, int]) -> Tuple[Dict[str, DeviceTensor], Dict[str, DeviceTensor]]:
    """One encoder run with every output left on the device.

    Returns (memory, state) as DeviceTensors; state tensors are bound to the
    step as [B, 1, ...] views of the encoder's [B, ...] outputs (no copy).
    """
    binding = encoder.io_binding()
    binding.bind_cpu_input("src_ids", src)
    binding.bind_cpu_input("src_len", src_len)
    names = [MEMORY + n for n in contract["memory"]] + [STATE + n for n in contract["state"]]
    for name in names:
        binding.bind_output(name, device[0], device[1])
    encoder.run_with_iobinding(binding)
    values = binding.get_outputs()
    memory, state = {}, {}
    for name, value in zip(names, values):
        shape = value.shape()
        if name.startswith(MEMORY):
            memory[name] = DeviceTensor(value, shape)
        else:
            state[name] = DeviceTensor(value, [shape[0], 1, *shape[1:]])
    return memory, state


class IOBindingStepRunner:
    """Same interface as generator.StepRunner: runner(tokens, parents, step, kept) -> logits (B, K, V)."""

    def __init__(self, session, contract: dict, memory: Dict, state: Dict, src_len: np.ndarray,
                 device: Tuple[str, int] = ("cpu", 0)):
        self.session = session
        self.device = device
        self.state_names = [STATE + n for n in contract["state"]]
        self.next_state_names = [NEXT_STATE + n for n in contract["state"]]
        self.memory = {n: self._as_device(v) for n, v in memory.items()}
        self.state = {n: self._as_device(v, add_beam_axis=True) for n, v in state.items()}
        self.src_len = np.ascontiguousarray(src_len, dtype=np.int64)
        self.binding = session.io_binding()
        self._bind_memory()
        self.ort_seconds = 0.0
        self.compactions = 0

    def _as_device(self, value, add_beam_axis: bool = False) -> DeviceTensor:
        if isinstance(value, DeviceTensor):
            return value
        value = np.asarray(value)
        return _upload(value[:, None] if add_beam_axis else value, self.device)

    def _bind_memory(self) -> None:
        for name, tensor in self.memory.items():
            tensor.bind(self.binding, name, self.device)
        self.binding.bind_cpu_input("src_len", self.src_len)

    def compact(self, kept: np.ndarray) -> None:
        """Keep batch rows `kept` of memory, state and src_len (through the host)."""
        kept = np.asarray(kept, dtype=np.int64)
        self.memory = {n: _upload(t.host().take(kept, axis=0), self.device) for n, t in self.memory.items()}
        self.state = {n: _upload(t.host().take(kept, axis=0), self.device) for n, t in self.state.items()}
        self.src_len = np.ascontiguousarray(self.src_len.take(kept))
        self._bind_memory()
        self.compactions += 1

    def __call__(self, tokens, parents, step, kept):
        if kept is not None:
            self.compact(kept)
        b = self.binding
        # locals keep the host arrays alive until the run is done
        tokens = np.ascontiguousarray(tokens, dtype=np.int64)
        parents = np.ascontiguousarray(parents, dtype=np.int64)
        step_arr = np.array(step, dtype=np.int64)
        b.bind_cpu_input("tokens", tokens)
        b.bind_cpu_input("parents", parents)
        b.bind_cpu_input("step", step_arr)
        for name in self.state_names:
            self.state[name].bind(b, name, self.device)
        # Rebound every step: once a run has filled an output binding, onnxruntime treats it as
        # pre-allocated, and the next step's shape (K grows from 1 to num_beams) would not fit.
        b.clear_binding_outputs()
        b.bind_output("logits", "cpu")
        for name in self.next_state_names:
            b.bind_output(name, self.device[0], self.device[1])
        t0 = time.perf_counter()
        self.session.run_with_iobinding(b)
        self.ort_seconds += time.perf_counter() - t0
        outputs: List[ort.OrtValue] = b.get_outputs()
        for name, value in zip(self.state_names, outputs[1:]):
            self.state[name] = DeviceTensor(value, value.shape())
        return outputs[0].numpy()
