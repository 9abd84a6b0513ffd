"""PyTorch reference decoding through model.encode / model.step.

The independent oracle the ONNX engine is tested against: the same
computation the exported graphs carry, driven by the plainest possible loops.
"""
from __future__ import annotations

from typing import List, Sequence

import torch

from ltg_engine.training.data import collate


def _encode_batch(model, src_ids_list: Sequence[Sequence[int]]):
    batch = collate([(list(s), []) for s in src_ids_list])
    memory, state = model.encode(batch.src, batch.src_len)
    return batch.src_len, memory, state


@torch.no_grad()
def greedy_decode(model, src_ids_list: Sequence[Sequence[int]], max_new_tokens: int,
                  bos: int = 2, eos: int = 3) -> List[List[int]]:
    """Greedy decode a batch (K=1). Returns generated ids per source, without bos/eos."""
    model.eval()
    B = len(src_ids_list)
    src_len, memory, state = _encode_batch(model, src_ids_list)
    state = {k: v.unsqueeze(1) for k, v in state.items()}              # (B, 1, ...)
    tokens = torch.full((B, 1), bos, dtype=torch.long)                  # (B, 1)
    parents = torch.zeros(B, 1, dtype=torch.long)                       # (B, 1)
    out: List[List[int]] = [[] for _ in range(B)]
    done = [False] * B
    for t in range(max_new_tokens):
        logits, state = model.step(tokens, parents, torch.tensor(t), state, memory, src_len)
        tokens = logits.argmax(-1)                                      # (B, 1)
        for b in range(B):
            if not done[b]:
                tok = int(tokens[b, 0])
                done[b] = tok == eos
                if not done[b]:
                    out[b].append(tok)
        if all(done):
            break
    return out


@torch.no_grad()
def beam_search(model, src_ids: Sequence[int], beam_size: int, max_new_tokens: int,
                bos: int = 2, eos: int = 3, length_penalty: float = 1.0) -> List[tuple]:
    """Naive beam search for ONE source. Returns [(score, ids)] best first.

    score = sum of log-probs / len^length_penalty (len counts the eos).
    Beams are reordered inside model.step through `parents`.
    """
    model.eval()
    src_len, memory, state = _encode_batch(model, [src_ids])
    state = {k: v.unsqueeze(1) for k, v in state.items()}              # (1, 1, ...)
    tokens = torch.tensor([[bos]])
    parents = torch.zeros(1, 1, dtype=torch.long)
    beams = [(0.0, [])]                                                  # (logprob sum, ids)
    finished = []
    for t in range(max_new_tokens):
        logits, state = model.step(tokens, parents, torch.tensor(t), state, memory, src_len)
        logp = torch.log_softmax(logits[0].double(), dim=-1)            # (K, V)
        cand = []
        for k, (score, ids) in enumerate(beams):
            top = torch.topk(logp[k], min(2 * beam_size, logp.shape[-1]))
            cand += [(score + float(v), ids + [int(i)], k) for v, i in zip(top.values, top.indices)]
        cand.sort(key=lambda c: -c[0])
        beams, new_parents = [], []
        for score, ids, k in cand:
            if ids[-1] == eos:
                finished.append((score / len(ids) ** length_penalty, ids[:-1]))
            else:
                beams.append((score, ids))
                new_parents.append(k)
            if len(beams) == beam_size:
                break
        if len(finished) >= beam_size or not beams:
            break
        tokens = torch.tensor([[ids[-1] for _, ids in beams]])
        parents = torch.tensor([new_parents])
    if not finished:
        finished = [(score / max(len(ids), 1) ** length_penalty, ids) for score, ids in beams]
    return sorted(finished, key=lambda f: -f[0])[:beam_size]
