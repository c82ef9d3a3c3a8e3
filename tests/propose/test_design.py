"""The BO proposers' space-filling initial design."""

import numpy as np

from mixsearch.propose.base import History
from mixsearch.propose.design import initial_design
from mixsearch.propose.fidelity import FidelityEncoder

from .bowl import PROXY, SPACE3, TABLE, ctx, feasible


def test_initial_design_spreads_over_cheap_rungs_and_adds_a_target_run():
    enc = FidelityEncoder.from_ladder(TABLE)
    c = initial_design(ctx(SPACE3, TABLE, History.empty(3), seed=3), enc, 6, n_init=6, init_target=1, rng=np.random.default_rng(3))
    assert [x.rung for x in c] == ["cheap"] * 5 + ["big"]
    w = np.array([x.weights for x in c])
    assert all(feasible(x, SPACE3) for x in w)
    d = np.linalg.norm(w[:, None] - w[None], axis=2) + np.eye(len(w))
    assert d.min() > 0.1  # space-filling, not clumped
    again = initial_design(ctx(SPACE3, TABLE, History.empty(3), seed=3), enc, 6, 6, 1, np.random.default_rng(3))
    assert again == c
    # A proxy ladder's target is not runnable: every initial trial runs at a proxy rung.
    enc = FidelityEncoder.from_ladder(PROXY)
    c = initial_design(ctx(SPACE3, PROXY, History.empty(3)), enc, 4, 4, 1, np.random.default_rng(0))
    assert {x.rung for x in c} == {"s", "m"}
