"""Fidelity features and the cost model."""


import numpy as np
import pytest

from mixsearch.propose.fidelity import FidelityEncoder, as_inputs
from mixsearch.study import FidelityLadder, Rung

from .ladders import PROXY, TABLE


def test_proxy_ladder_features_put_the_target_at_one_and_the_smallest_rung_at_zero():
    enc = FidelityEncoder.from_ladder(PROXY)
    assert enc.names == ("s", "m", "T") and not enc.target_runnable
    assert enc.n_features == 2
    np.testing.assert_allclose(enc.target_features, [1.0, 1.0])
    np.testing.assert_allclose(enc.encode(["s"])[0], [0.0, 0.0])
    assert 0.0 < enc.encode(["m"])[0, 0] < 1.0
    assert enc.costs == {"s": PROXY.rungs[0].run_cost, "m": PROXY.rungs[1].run_cost}


def test_table_ladder_uses_log_cost_and_a_runnable_target():
    enc = FidelityEncoder.from_ladder(TABLE)
    assert enc.target_runnable and enc.runnable == ("1M", "60M")
    assert enc.n_features == 1
    np.testing.assert_allclose(enc.encode(["1M", "60M"])[:, 0], [0.0, 1.0])


def test_constant_features_are_dropped_and_a_single_rung_is_a_constant():
    same_n = FidelityLadder((Rung("a", n_params=10, tokens=100),), Rung("b", n_params=10, tokens=1000))
    enc = FidelityEncoder.from_ladder(same_n)
    assert enc.n_features == 1  # N is constant, only D varies
    one = FidelityLadder((Rung("a", cost=1.0),), Rung("a", cost=1.0))
    np.testing.assert_allclose(FidelityEncoder.from_ladder(one).features, [[1.0]])


def test_cost_model_overrides_rung_costs_and_bad_costs_are_named():
    enc = FidelityEncoder.from_ladder(TABLE, {"1M": 1.0, "60M": 2.0})
    assert enc.costs == {"1M": 1.0, "60M": 2.0}
    assert FidelityEncoder.from_ladder(TABLE, lambda r: 3.0).costs["1M"] == 3.0
    with pytest.raises(ValueError, match="cost_model: rung '1M'"):
        FidelityEncoder.from_ladder(TABLE, {"1M": -1.0})
    with pytest.raises(ValueError, match="rung: 'nope'"):
        FidelityEncoder.from_ladder(TABLE).encode(["nope"])


def test_cost_model_returns_the_nearest_rungs_cost():
    enc = FidelityEncoder.from_ladder(PROXY)
    model = enc.cost_model(n_weights=3)
    X = as_inputs(np.full((2, 3), 1 / 3), enc.encode(["s", "m"])).unsqueeze(0)  # [1, 2, 5]
    costs = model(X).squeeze(-1)[0]
    top = PROXY.rungs[1].run_cost
    np.testing.assert_allclose(costs.numpy(), [PROXY.rungs[0].run_cost / top, 1.0])
