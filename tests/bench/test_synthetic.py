"""The synthetic oracle: an optimum that shifts with scale, seeded noise, pool mode."""

from __future__ import annotations

import numpy as np
import pytest

from mixsearch.bench.synthetic import SyntheticOracle


def test_synthetic_optimum_shifts_with_scale():
    o = SyntheticOracle("mixing-shift")
    w_small, _ = o.optimum("25M")
    w_target, v_target = o.optimum()
    span = o.objective_range()
    assert np.abs(w_small - w_target).sum() > 0.2
    # The small proxy's optimum is good but measurably off at the target: informative, biased.
    regret = o.target_value(w_small) - v_target
    assert 0.01 * span < regret < 0.2 * span
    # The optimum really is optimal: no random mixture beats it.
    x = np.random.default_rng(1).dirichlet(np.ones(6), 5000)
    assert o.true_value(x, o.ladder.target.name).min() >= v_target - 1e-9
    # Proxy and target rank mixtures alike, but not identically.
    from scipy.stats import spearmanr

    rho = spearmanr(o.true_value(x, "25M"), o.true_value(x, "200M"))[0]
    assert 0.6 < rho < 0.95


def test_static_law_optimum_does_not_shift():
    o = SyntheticOracle("mixing-static")
    assert np.abs(o.optimum("25M")[0] - o.optimum()[0]).sum() < 1e-3


def test_synthetic_noise_is_deterministic_and_seeded():
    o = SyntheticOracle("mixing-shift")
    w = np.full(6, 1 / 6)
    y0, cost = o.observe(w, "25M", seed=0)
    assert o.observe(w, "25M", seed=0)[0] == y0
    assert o.observe(w, "25M", seed=1)[0] != y0
    assert cost == pytest.approx(6 * 25e6 * 500e6)
    assert abs(y0 - o.true_value(w, "25M")[0]) < 0.05
    assert o.target_run_cost() == pytest.approx(6 * 200e6 * 4e9)


def test_synthetic_pool_mode():
    o = SyntheticOracle("mixing-shift", pool=16, seed=3)
    pool = o.pool()
    assert pool is not None and pool.weights.shape == (64, 6)
    assert set(pool.rungs) == {"25M", "50M", "100M", "200M"}
    y = o.true_value(pool.weights[::4], "200M")
    assert o.best_target() == pytest.approx(y.min())
    with pytest.raises(KeyError):
        o.observe(np.full(6, 1 / 6), "25M", 0)
