"""PyTorch eager generation through model.encode / model.step: the baseline.

A batched, vectorised loop (what a careful user writes, HF-style): greedy is
argmax over [B, K=1, V]; beam search is log_softmax + one topk over K*V per
row, beams reordered inside model.step through `parents`. eos is masked for
the first min_new_tokens steps exactly as the engine does, so both generate
the same number of tokens. on_step(step) is called after every step.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

BOS, EOS = 2, 3


@torch.inference_mode()
def torch_generate(model, src_ids: torch.Tensor, new_tokens: int, num_beams: int = 1,
                   on_step: Optional[Callable] = None) -> torch.Tensor:
    """src_ids (B, S) int64, every row full length -> generated ids (B, new_tokens) of the best beam."""
    B, S = src_ids.shape
    src_len = torch.full((B,), S, dtype=torch.long)
    memory, state = model.encode(src_ids, src_len)
    state = {k: v.unsqueeze(1) for k, v in state.items()}              # (B, 1, ...)
    tokens = torch.full((B, 1), BOS, dtype=torch.long)                  # (B, K)
    parents = torch.zeros(B, 1, dtype=torch.long)                       # (B, K)
    scores = torch.zeros(B, 1)                                          # (B, K) summed log-probs
    history = torch.empty(B, 1, 0, dtype=torch.long)                    # (B, K, t)
    for t in range(new_tokens):
        logits, state = model.step(tokens, parents, torch.tensor(t), state, memory, src_len)  # (B, K, V)
        logits[..., EOS] = float("-inf")                                # min_new_tokens = new_tokens
        if num_beams == 1:
            tokens = logits.argmax(-1)                                  # (B, 1)
            history = torch.cat([history, tokens.unsqueeze(-1)], dim=-1)
        else:
            K, V = logits.shape[1], logits.shape[2]
            total = scores.unsqueeze(-1) + torch.log_softmax(logits, dim=-1)   # (B, K, V)
            scores, flat = total.reshape(B, K * V).topk(num_beams, dim=-1)    # (B, K')
            parents, tokens = flat // V, flat % V                            # (B, K')
            history = torch.cat([history.gather(1, parents.unsqueeze(-1).expand(-1, -1, history.shape[-1])),
                                 tokens.unsqueeze(-1)], dim=-1)
        if on_step is not None:
            on_step(t)
    return history[:, 0]
