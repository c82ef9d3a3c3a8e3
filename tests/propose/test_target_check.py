"""Target checks: the cheap rungs' allowance, and mfbo spending it at the target."""

from __future__ import annotations

import numpy as np
import pytest

from mixsearch import simplex
from mixsearch.propose.fidelity import FidelityEncoder
from mixsearch.propose.mfbo import MultiFidelityBO
from mixsearch.propose.target_check import check_due, proxy_spend

from .test_mfbo import FAST, PROXY, SPACE3, TABLE, _pool, ctx, history


def _cheap_history(n_cheap: int, n_big: int = 0, seed: int = 0, pending_big: int = 0):
    w = simplex.sample(n_cheap + n_big + pending_big, SPACE3, np.random.default_rng(seed))
    done = w[: n_cheap + n_big]
    return history(done, ["cheap"] * n_cheap + ["big"] * n_big, pending=w[n_cheap + n_big :], pending_rungs=["big"] * pending_big)


def test_spend_counts_cheap_runs_in_target_run_costs_and_target_trials_done_or_pending():
    enc = FidelityEncoder.from_ladder(TABLE)
    assert proxy_spend(ctx(SPACE3, TABLE, _cheap_history(8, 2, pending_big=1)), enc) == (0.5, 3)


@pytest.mark.parametrize(
    "n_cheap, n_big, allowance, due",
    [
        (15, 0, 1.0, False),  # 15/16 of a target run spent: not yet
        (16, 0, 1.0, True),  # one allowance, no target trial: check
        (16, 1, 1.0, False),  # one check bought one more allowance
        (32, 1, 1.0, True),
        (8, 0, 0.5, True),
        (64, 0, None, False),  # checks off
    ],
)
def test_a_check_is_due_once_the_cheap_rungs_spent_their_allowance(n_cheap, n_big, allowance, due):
    enc = FidelityEncoder.from_ladder(TABLE)
    assert check_due(ctx(SPACE3, TABLE, _cheap_history(n_cheap, n_big)), enc, allowance) is due


def test_no_check_when_the_target_cannot_be_run():
    w = simplex.sample(40, SPACE3, np.random.default_rng(1))
    h = history(w, ["s", "m"] * 20)
    assert not check_due(ctx(SPACE3, PROXY, h), FidelityEncoder.from_ladder(PROXY), 0.01)


def test_mfbo_spends_a_due_check_at_the_target_and_the_rest_of_the_batch_as_before():
    h = _cheap_history(17, seed=2)
    checked = MultiFidelityBO(n_init=4, proxy_allowance=1.0, **FAST).propose(ctx(SPACE3, TABLE, h, seed=0), 3)
    assert checked[0].rung == "big" and len(checked) == 3
    assert len({(c.weights, c.rung) for c in checked}) == 3
    # The same history with checks off (the default): the bowl's cheap rung ranks mixtures
    # exactly as the target does, so the acquisition keeps buying cheap runs.
    unchecked = MultiFidelityBO(n_init=4, **FAST).propose(ctx(SPACE3, TABLE, h, seed=0), 3)
    assert all(c.rung == "cheap" for c in unchecked)


def test_a_pool_check_is_a_free_pool_entry_at_the_target():
    pool = _pool(40, 3)
    idx = [i for i, r in enumerate(pool.rungs) if r == "cheap"][:17]
    h = history(pool.weights[idx], [pool.rungs[i] for i in idx])
    cands = MultiFidelityBO(n_init=4, proxy_allowance=1.0, **FAST).propose(ctx(SPACE3, TABLE, h, seed=0, pool=pool), 1)
    assert len(cands) == 1 and cands[0].rung == "big"
    entries = {(tuple(np.round(w, 6)), r) for w, r in zip(pool.weights, pool.rungs)}
    assert (tuple(np.round(cands[0].weights, 6)), "big") in entries


def test_proxy_allowance_must_be_positive():
    with pytest.raises(ValueError, match="proxy_allowance"):
        MultiFidelityBO(proxy_allowance=0)
