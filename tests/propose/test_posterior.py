"""The compiled kernels and the cached exact posterior against GPyTorch."""

import numpy as np
import pytest
import torch

from mixsearch.propose.fidelity import FidelityEncoder, as_inputs
from mixsearch.propose.posterior import CachedPosteriorGP, compile_kernel
from mixsearch.propose.surrogate import KERNELS, build_kernel, fit_surrogate

from .ladders import PROXY, TABLE, gp_data


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


@pytest.mark.parametrize("kind,transform", [("ar", "log"), ("ar-power", "log"), ("product", "identity"), ("downsampling", "log")])
def test_cached_posterior_matches_the_exact_gp(kind, transform):
    enc = FidelityEncoder.from_ladder(PROXY)
    X, Y = gp_data(24, 4, ("s", "m"), enc)
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
    X, Y = gp_data(16, 3, ("1M", "60M"), enc)
    fast = CachedPosteriorGP(fit_surrogate(X, Y, 3, "ar", maxiter=20), X)
    x = X[:2].clone().requires_grad_(True)
    fast.posterior(x).mean.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
