"""A toy decoder for the search tests: logits are a pure function of (batch row, prefix).

No tests here; the other test_search*.py files import it. The toy tracks its own
hypotheses the way a real step graph does: compact by `kept`, gather by `parents`.
"""
import zlib

import numpy as np


class ToyModel:
    """logits(row, prefix) = seeded normal * scale, plus an EOS bias that grows with length."""

    def __init__(self, vocab_size, seed=0, scale=3.0, eos_id=1, eos_ramp=0.0, masked_frac=0.0,
                 context=None):
        self.context = context   # logits see only the last `context` tokens (Markov toy)
        self.vocab_size, self.seed, self.scale = vocab_size, seed, scale
        self.eos_id, self.eos_ramp, self.masked_frac = eos_id, eos_ramp, masked_frac
        self.calls = 0

    def logits(self, row, prefix):
        seen = tuple(prefix) if self.context is None else tuple(prefix)[-self.context:]
        key = zlib.crc32(np.asarray((self.seed, row) + seen, dtype=np.int64).tobytes())
        rng = np.random.default_rng(key)
        out = rng.standard_normal(self.vocab_size) * self.scale
        out[self.eos_id] += self.eos_ramp * len(prefix)
        if self.masked_frac:
            out[rng.random(self.vocab_size) < self.masked_frac] = -np.inf
            out[0] = 0.0   # never mask everything
        return out.astype(np.float32)

    def step_fn(self, batch_rows, row_ids=None, log=None):
        """A step_fn for search.iterate(): (tokens, parents, step, kept) -> logits [n, K, V].

        row_ids: the toy row each batch row plays (default 0..batch_rows-1);
        log: a list that receives (step, kept) of every call.
        """
        rows = np.arange(batch_rows) if row_ids is None else np.asarray(row_ids)
        prefixes = [[()] for _ in rows]

        def step(tokens, parents, step_index, kept):
            nonlocal rows, prefixes
            self.calls += 1
            if log is not None:
                log.append((step_index, None if kept is None else kept.copy()))
            if kept is not None:
                rows = rows[kept]
                prefixes = [prefixes[i] for i in kept]
            n, k = tokens.shape
            assert len(rows) == n
            prefixes = [[prefixes[i][parents[i, j]] + (int(tokens[i, j]),) for j in range(k)]
                        for i in range(n)]
            out = np.empty((n, k, self.vocab_size), dtype=np.float32)
            for i in range(n):
                for j in range(k):
                    out[i, j] = self.logits(int(rows[i]), prefixes[i][j])
            return out

        return step
