"""The search core's entry point: the one place that imports the compiled module.

`make_search` comes from ltg_engine._search (Cython) when it is built, else from
the pure-Python reference ltg_engine.search_ref (also when LTG_PURE_PYTHON=1).
`iterate`/`run` drive a search with a step function (the decoder graph).
"""
from __future__ import annotations

import os

if os.environ.get("LTG_PURE_PYTHON", "0") == "1":
    from ltg_engine.search_ref import BeamSearch, GreedySearch, make_search
    COMPILED = False
else:
    try:
        from ltg_engine._search import BeamSearch, GreedySearch, make_search
        COMPILED = True
    except ImportError:
        from ltg_engine.search_ref import BeamSearch, GreedySearch, make_search
        COMPILED = False

__all__ = ["BeamSearch", "COMPILED", "GreedySearch", "iterate", "make_search", "run"]


def iterate(search, step_fn):
    """Advance `search` until done, yielding it after every step.

    step_fn(tokens [n, K] int64, parents [n, K] int64, step int, kept) -> logits
    float32 [n, K, V]; kept is search.kept when the last advance shrank the
    active set (compact encoder memory/state on axis 0 with it), else None.
    """
    while not search.done:
        kept = search.kept if search.compacted else None
        search.advance(step_fn(search.tokens, search.parents, search.step, kept))
        yield search


def run(search, step_fn) -> list:
    """Drive the search to the end; return search.results()."""
    for _ in iterate(search, step_fn):
        pass
    return search.results()
