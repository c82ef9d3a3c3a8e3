"""The single-fidelity GP peer (``gp``)."""

import numpy as np
import pytest

from mixsearch.propose.base import History, make_proposer
from mixsearch.propose.gp import SingleFidelityBO
from mixsearch.study import FidelityLadder, ProposerSpec, Rung

from .bowl import OPTIMUM, SPACE3, TABLE, ctx, history, random_history


def test_the_builtin_name_resolves():
    assert isinstance(make_proposer(ProposerSpec("gp", options={"n_init": 3})), SingleFidelityBO)


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="weight_transform"):
        SingleFidelityBO(weight_transform="sqrt")
    with pytest.raises(ValueError, match="fit_maxiter"):
        SingleFidelityBO(fit_maxiter=0)
    with pytest.raises(ValueError, match="rung"):
        SingleFidelityBO(rung="nope").propose(ctx(SPACE3, TABLE, random_history(SPACE3, TABLE, 4, 0)), 1)


def test_gp_recovers_the_optimum_of_a_bowl_on_the_simplex():
    """Single-fidelity GP, a few asks of q = 3 on a 3-domain quadratic bowl."""
    ladder = FidelityLadder((Rung("T", n_params=1, tokens=1),), Rung("T", n_params=1, tokens=1))
    gp = SingleFidelityBO(n_init=6, raw_samples=64, num_restarts=2, maxiter=40, fit_maxiter=60)
    h = History.empty(3)
    for ask in range(5):
        cands = gp.propose(ctx(SPACE3, ladder, h, seed=ask), 3)
        assert len(cands) == 3
        w = np.concatenate([h.weights, [c.weights for c in cands]])
        h = history(w, ["T"] * len(w))
    rec = gp.recommend(ctx(SPACE3, ladder, h))
    assert rec is not None and rec.rung == "T" and rec.std is not None
    assert np.abs(np.array(rec.weights) - OPTIMUM).max() < 0.1
    assert rec.predicted == pytest.approx(2.0, abs=0.05)
    assert h.objective.min() < 2.0 + 4 * 0.05**2 * 3  # it sampled near the optimum too
