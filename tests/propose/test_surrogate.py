"""The Surrogate: fidelity encoding, kernels, the cached exact posterior, the cost model."""

import math

import numpy as np
import pytest
import torch

from mixsearch.propose.surrogate import (
    KERNELS,
    CachedPosteriorGP,
    FidelityEncoder,
    LogWeights,
    as_inputs,
    build_kernel,
    compile_kernel,
    fit_surrogate,
)
from mixsearch.study import FidelityLadder, Rung

PROXY = FidelityLadder(
    (Rung("s", n_params=1_000_000, tokens=100_000_000), Rung("m", n_params=4_000_000, tokens=400_000_000)),
    Rung("T", n_params=64_000_000, tokens=6_400_000_000),
)
TABLE = FidelityLadder((Rung("1M", cost=6e15), Rung("60M", cost=3.6e17)), Rung("60M", cost=3.6e17))


def _data(n: int, k: int, rungs: tuple[str, ...], enc: FidelityEncoder, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    w = rng.dirichlet(np.ones(k), size=n)
    r = [rungs[i % len(rungs)] for i in range(n)]
    s = enc.encode(r)
    y = -(((w - 1.0 / k) ** 2).sum(1) * 5 + 2.0 - s[:, 0] + 0.01 * rng.normal(size=n))
    return as_inputs(w, s), torch.tensor(y).unsqueeze(-1)


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


def test_log_weights_round_trip_and_map_the_simplex_into_the_unit_cube():
    t = LogWeights([0, 1, 2])
    X = torch.tensor([[0.0, 0.5, 0.5, 0.3], [1.0, 0.0, 0.0, 0.7]], dtype=torch.double)
    Z = t.transform(X)
    assert float(Z[:, :3].min()) >= 0.0 and float(Z[:, :3].max()) <= 1.0 + 1e-12
    torch.testing.assert_close(Z[:, 3], X[:, 3])
    torch.testing.assert_close(t.untransform(Z), X)


@pytest.mark.parametrize("kind", KERNELS)
def test_compiled_kernel_equals_gpytorch(kind):
    kern = build_kernel(kind, n_weights=4, n_fidelity=2)
    # Move the hyperparameters off their initial values so every one matters.
    with torch.no_grad():
        for p in kern.parameters():
            p.add_(torch.linspace(-0.3, 0.4, p.numel(), dtype=p.dtype).reshape(p.shape))
    kern = kern.double()
    rng = np.random.default_rng(1)
    a = torch.tensor(np.concatenate([rng.dirichlet(np.ones(4), 5), rng.uniform(0, 1, (5, 2))], 1))
    b = torch.tensor(np.concatenate([rng.dirichlet(np.ones(4), 3), rng.uniform(0, 1, (3, 2))], 1))
    torch.testing.assert_close(compile_kernel(kern)(a, b), kern(a, b).to_dense(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind,transform", [("ar", "log"), ("product", "identity"), ("downsampling", "log")])
def test_cached_posterior_matches_the_exact_gp(kind, transform):
    enc = FidelityEncoder.from_ladder(PROXY)
    X, Y = _data(24, 4, ("s", "m"), enc)
    gp = fit_surrogate(X, Y, 4, kind, transform, maxiter=30)
    fast = CachedPosteriorGP(gp, X)
    rng = np.random.default_rng(2)
    test = as_inputs(rng.dirichlet(np.ones(4), 12), enc.encode(["s", "m", "T"] * 4)).reshape(4, 3, 6)
    for noise in (False, True):
        a, b = gp.posterior(test, observation_noise=noise), fast.posterior(test, observation_noise=noise)
        torch.testing.assert_close(b.mean, a.mean, rtol=1e-7, atol=1e-9)
        torch.testing.assert_close(b.distribution.covariance_matrix, a.distribution.covariance_matrix, rtol=1e-6, atol=1e-9)
    # Calling the model gives the noise-free posterior in the outcome scale (GIBBON relies on it).
    mvn = fast(test)
    torch.testing.assert_close(mvn.covariance_matrix, gp.posterior(test).distribution.covariance_matrix, rtol=1e-6, atol=1e-9)


def test_cached_posterior_is_differentiable_in_the_inputs():
    enc = FidelityEncoder.from_ladder(TABLE)
    X, Y = _data(16, 3, ("1M", "60M"), enc)
    fast = CachedPosteriorGP(fit_surrogate(X, Y, 3, "ar", maxiter=20), X)
    x = X[:2].clone().requires_grad_(True)
    fast.posterior(x).mean.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_single_rung_models_need_no_fidelity_columns():
    rng = np.random.default_rng(0)
    w = torch.tensor(rng.dirichlet(np.ones(3), 10))
    y = -((w - 0.3) ** 2).sum(1, keepdim=True)
    gp = fit_surrogate(w, y, 3, maxiter=20)
    mean = CachedPosteriorGP(gp, w).posterior(w).mean
    assert mean.shape == (10, 1) and torch.isfinite(mean).all()


def test_a_repeated_fit_reuses_the_hyperparameters_and_gives_the_same_model(monkeypatch):
    from mixsearch.propose import surrogate

    enc = FidelityEncoder.from_ladder(TABLE)
    X, Y = _data(30, 3, ("1M", "60M"), enc, seed=7)
    calls = []
    real_fit = surrogate.fit_gpytorch_mll
    monkeypatch.setattr(surrogate, "fit_gpytorch_mll", lambda *a, **k: calls.append(1) or real_fit(*a, **k))
    monkeypatch.setattr(surrogate, "_FIT_CACHE", type(surrogate._FIT_CACHE)())
    first = fit_surrogate(X, Y, 3, maxiter=50)
    torch.manual_seed(123)  # the caller's seed does not enter a fit
    again = fit_surrogate(X.clone(), Y.clone(), 3, maxiter=50)
    assert len(calls) == 1
    probe = as_inputs(np.full((4, 3), 1 / 3), enc.encode(["60M"] * 4))
    a, b = CachedPosteriorGP(first, X).posterior(probe), CachedPosteriorGP(again, X).posterior(probe)
    assert torch.equal(a.mean, b.mean) and torch.equal(a.variance, b.variance)
    # Other data, or other settings, fit afresh.
    fit_surrogate(X, Y + 1.0, 3, maxiter=50)
    fit_surrogate(X, Y, 3, maxiter=51)
    fit_surrogate(X, Y, 3, kind="product", maxiter=50)
    assert len(calls) == 4


def test_fit_rejects_bad_input_with_named_fields():
    X = torch.rand(5, 3, dtype=torch.double)
    Y = torch.rand(5, 1, dtype=torch.double)
    with pytest.raises(ValueError, match="weight_transform"):
        fit_surrogate(X, Y, 2, weight_transform="sqrt")
    with pytest.raises(ValueError, match="kernel: unknown kernel"):
        fit_surrogate(X, Y, 2, kind="nope")
    Y[0, 0] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        fit_surrogate(X, Y, 2)
