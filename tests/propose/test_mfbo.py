"""MultiFidelityBO, and what it shares with SingleFidelityBO (bounds, seeds, pending trials, pools).

Small problems, few raw samples and restarts, so each test runs in seconds.
"""

import math

import numpy as np
import pytest

from mixsearch.candidate import canonical_weights
from mixsearch import simplex
from mixsearch.propose.base import History, Pool, make_proposer
from mixsearch.propose.gp import SingleFidelityBO
from mixsearch.propose.mfbo import MultiFidelityBO
from mixsearch.study import SearchSpace

from .bowl import FAST, OPTIMUM, PROXY, SPACE3, TABLE, ctx, feasible, history, random_history


def test_the_builtin_name_resolves():
    assert isinstance(make_proposer("mfbo"), MultiFidelityBO)


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="acquisition"):
        MultiFidelityBO(acquisition="ei")
    with pytest.raises(ValueError, match="n_init"):
        MultiFidelityBO(n_init=1)
    with pytest.raises(ValueError, match="raw_samples"):
        MultiFidelityBO(raw_samples=0)
    with pytest.raises(ValueError, match="kernel: unknown kernel"):
        MultiFidelityBO(kernel="matern")
    with pytest.raises(ValueError, match="weight_transform"):
        MultiFidelityBO(weight_transform="sqrt")


def test_mfbo_recovers_the_optimum_at_an_unobserved_target():
    """Multi-fidelity on a proxy ladder: only s and m run, the recommendation is for T."""
    bo = MultiFidelityBO(n_init=8, **FAST)
    h = History.empty(3)
    for ask in range(4):
        cands = bo.propose(ctx(SPACE3, PROXY, h, seed=ask), 4)
        assert {c.rung for c in cands} <= {"s", "m"}
        w = np.concatenate([h.weights, [c.weights for c in cands]])
        h = history(w, list(h.rungs) + [c.rung for c in cands])
    rec = bo.recommend(ctx(SPACE3, PROXY, h))
    assert rec is not None and rec.rung == "T"
    assert rec.std is not None and rec.std > 0
    assert np.abs(np.array(rec.weights) - OPTIMUM).max() < 0.12


BOUNDED = [
    SearchSpace(("a", "b", "c", "d")),
    SearchSpace(("a", "b", "c", "d"), lower={"a": 0.2}, upper={"b": 0.1}),
    SearchSpace(("a", "b", "c", "d"), upper={"a": 0.3, "b": 0.3, "c": 0.3}, fixed={"d": 0.15}),
]


@pytest.mark.parametrize("space", BOUNDED)
@pytest.mark.parametrize("seed", [0, 1])
def test_proposals_respect_the_simplex_bounds_and_fixed_weights(space, seed):
    h = random_history(space, TABLE, 10, seed)
    for proposer in (MultiFidelityBO(n_init=4, **FAST), SingleFidelityBO(n_init=4, raw_samples=48, num_restarts=2, maxiter=30, fit_maxiter=40)):
        cands = proposer.propose(ctx(space, TABLE, h, seed=seed), 3)
        assert len(cands) == 3
        for c in cands:
            assert feasible(c.weights, space), (type(proposer).__name__, c.weights)
            assert c.rung in TABLE.names
            if "d" in space.fixed:
                assert c.weights[3] == pytest.approx(space.fixed["d"], abs=1e-6)
        rec = proposer.recommend(ctx(space, TABLE, h, seed=seed))
        assert rec is not None and feasible(rec.weights, space)


def test_same_seed_same_proposals_and_another_seed_differs():
    h = random_history(SPACE3, TABLE, 10, 0)
    bo = MultiFidelityBO(n_init=4, **FAST)
    a = bo.propose(ctx(SPACE3, TABLE, h, seed=5), 3)
    b = bo.propose(ctx(SPACE3, TABLE, h, seed=5), 3)
    c = bo.propose(ctx(SPACE3, TABLE, h, seed=6), 3)
    assert a == b
    assert a != c
    assert bo.recommend(ctx(SPACE3, TABLE, h, seed=5)) == bo.recommend(ctx(SPACE3, TABLE, h, seed=5))


def test_pending_trials_change_the_batch():
    h = random_history(SPACE3, TABLE, 10, 0)
    bo = MultiFidelityBO(n_init=4, **FAST)
    free = bo.propose(ctx(SPACE3, TABLE, h, seed=1), 2)
    busy = History(h.weights, h.rungs, h.objective, np.array([c.weights for c in free]), tuple(c.rung for c in free))
    again = bo.propose(ctx(SPACE3, TABLE, busy, seed=1), 2)
    assert again != free
    # The first pick avoids the running trial it would otherwise repeat.
    assert np.abs(np.array(again[0].weights) - np.array(free[0].weights)).max() > 1e-3 or again[0].rung != free[0].rung


def test_nan_objectives_are_left_out_of_the_fit():
    h = random_history(SPACE3, TABLE, 10, 0)
    bad_w = simplex.sample(3, SPACE3, np.random.default_rng(9))
    with_nan = History(
        np.concatenate([h.weights, bad_w]),
        h.rungs + ("cheap", "big", "cheap"),
        np.concatenate([h.objective, [math.nan, math.inf, math.nan]]),
        np.zeros((0, 3)),
    )
    bo = MultiFidelityBO(n_init=4, **FAST)
    assert bo.propose(ctx(SPACE3, TABLE, with_nan, seed=2), 2) == bo.propose(ctx(SPACE3, TABLE, h, seed=2), 2)
    assert bo.recommend(ctx(SPACE3, TABLE, with_nan, seed=2)) == bo.recommend(ctx(SPACE3, TABLE, h, seed=2))
    gp = SingleFidelityBO(n_init=3, raw_samples=32, num_restarts=2, maxiter=20, fit_maxiter=30)
    assert gp.propose(ctx(SPACE3, TABLE, with_nan, seed=2), 1) == gp.propose(ctx(SPACE3, TABLE, h, seed=2), 1)


def _pool(n: int, seed: int) -> Pool:
    w = simplex.sample(n, SPACE3, np.random.default_rng(seed))
    return Pool(np.repeat(w, 2, axis=0), tuple(r for _ in range(n) for r in ("cheap", "big")))


def test_pool_mode_returns_only_free_pool_entries():
    pool = _pool(30, 4)
    observed = [0, 1, 2, 3, 5, 8, 9, 12]  # pool rows, both rungs mixed
    h = history(pool.weights[observed], [pool.rungs[i] for i in observed], pending=pool.weights[[20, 21]], pending_rungs=pool.rungs[20:22])
    entries = {(canonical_weights(w), r) for w, r in zip(pool.weights, pool.rungs)}
    taken = {(canonical_weights(pool.weights[i]), pool.rungs[i]) for i in observed + [20, 21]}
    for proposer in (MultiFidelityBO(n_init=4, **FAST), SingleFidelityBO(n_init=2)):
        cands = proposer.propose(ctx(SPACE3, TABLE, h, seed=0, pool=pool), 5)
        keys = [(c.weights, c.rung) for c in cands]
        assert len(cands) == 5 and len(set(keys)) == 5
        assert all(k in entries and k not in taken for k in keys)
        rec = proposer.recommend(ctx(SPACE3, TABLE, h, seed=0, pool=pool))
        assert rec is not None and (canonical_weights(rec.weights), "big") in entries
    # An exhausted pool gives nothing rather than repeats.
    full = history(pool.weights, pool.rungs)
    assert MultiFidelityBO(n_init=4, **FAST).propose(ctx(SPACE3, TABLE, full, pool=pool), 3) == []


def test_pool_mode_prefers_cheap_rungs_while_they_are_informative():
    pool = _pool(40, 1)
    idx = [0, 1, 2, 3, 4, 6]
    h = history(pool.weights[idx], [pool.rungs[i] for i in idx])
    cands = MultiFidelityBO(n_init=4, **FAST).propose(ctx(SPACE3, TABLE, h, seed=0, pool=pool), 4)
    assert sum(c.rung == "cheap" for c in cands) >= 3


def test_recommendation_is_for_the_target_with_a_std():
    h = random_history(SPACE3, TABLE, 12, 3)
    rec = MultiFidelityBO(n_init=4, **FAST).recommend(ctx(SPACE3, TABLE, h))
    assert rec is not None and rec.rung == "big"
    assert rec.std is not None and rec.std > 0 and math.isfinite(rec.predicted)
    assert feasible(rec.weights, SPACE3)
    assert MultiFidelityBO().recommend(ctx(SPACE3, TABLE, History.empty(3))) is None
