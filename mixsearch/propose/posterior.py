"""The fitted Surrogate's posterior, fast: kernels compiled to plain torch and one cached Cholesky factor.

An acquisition optimiser scores thousands of candidate batches against a GP fitted on a
few hundred trials; GPyTorch's generic prediction path spends most of that time on
bookkeeping. :func:`compile_kernel` and :class:`CachedPosteriorGP` compute the same exact
posterior with only the arithmetic.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import gpytorch
import numpy as np
import torch
from botorch.models import SingleTaskGP
from botorch.models.kernels.downsampling import DownsamplingKernel
from botorch.models.model import Model
from botorch.posteriors import GPyTorchPosterior
from gpytorch.distributions import MultivariateNormal
from gpytorch.kernels import AdditiveKernel, ProductKernel, RBFKernel, ScaleKernel
from linear_operator import to_linear_operator
from torch import Tensor

from mixsearch.propose.surrogate import GapAmplitudeKernel

KernelFn = Callable[[Tensor, Tensor], Tensor]


def _sq_dist(x1: Tensor, x2: Tensor) -> Tensor:
    """Squared distances ``[..., a, b]`` between rows of ``x1`` ``[..., a, d]`` and ``x2`` ``[..., b, d]``."""
    shift = x1.mean(-2, keepdim=True)  # centring keeps the expansion accurate, as GPyTorch does
    x1, x2 = x1 - shift, x2 - shift
    d = x1.pow(2).sum(-1, keepdim=True) - 2.0 * x1 @ x2.transpose(-1, -2) + x2.pow(2).sum(-1).unsqueeze(-2)
    return d.clamp_min(0.0)


def compile_kernel(kernel: gpytorch.kernels.Kernel) -> KernelFn:
    """A plain-torch function computing a fitted kernel, hyperparameters frozen.

    GPyTorch's kernel objects spend most of their time on bookkeeping when called
    thousands of times on a few points (as an acquisition optimiser does); the
    compiled function does only the arithmetic. Supports RBF, Matern, Scale,
    Product, Additive, BoTorch's Downsampling and the gap-amplitude kernels with ``active_dims``;
    anything else is called through GPyTorch.

    Returns:
        ``k(x1 [..., a, d], x2 [..., b, d]) -> [..., a, b]``.
    """
    dims = kernel.active_dims
    select: Callable[[Tensor], Tensor] = (lambda x: x[..., dims]) if dims is not None else (lambda x: x)
    if isinstance(kernel, ScaleKernel):
        scale = kernel.outputscale.detach().clone()
        base = compile_kernel(kernel.base_kernel)
        return lambda a, b: scale * base(select(a), select(b))
    if isinstance(kernel, ProductKernel):
        parts = [compile_kernel(k) for k in kernel.kernels]
        return lambda a, b: math.prod(f(a, b) for f in parts)  # type: ignore[return-value]
    if isinstance(kernel, AdditiveKernel):
        parts = [compile_kernel(k) for k in kernel.kernels]
        return lambda a, b: sum(f(a, b) for f in parts)  # type: ignore[return-value]
    if isinstance(kernel, RBFKernel):
        ls = kernel.lengthscale.detach().clone().reshape(-1)
        return lambda a, b: torch.exp(-0.5 * _sq_dist(select(a) / ls, select(b) / ls))
    if isinstance(kernel, gpytorch.kernels.MaternKernel):
        ls, nu = kernel.lengthscale.detach().clone().reshape(-1), kernel.nu

        def matern(a: Tensor, b: Tensor) -> Tensor:
            r = _sq_dist(select(a) / ls, select(b) / ls).clamp_min(1e-30).sqrt()
            e = torch.exp(-math.sqrt(2 * nu) * r)
            if nu == 0.5:
                return e
            if nu == 1.5:
                return (1 + math.sqrt(3) * r) * e
            return (1 + math.sqrt(5) * r + 5.0 / 3.0 * r**2) * e

        return matern
    if isinstance(kernel, DownsamplingKernel):
        offset = kernel.offset.detach().clone().reshape(-1)
        power = 1 + kernel.power.detach().clone().reshape(-1)
        return lambda a, b: offset + (1 - select(a)).pow(power) @ (1 - select(b)).transpose(-1, -2).pow(power)
    if isinstance(kernel, GapAmplitudeKernel):
        p = kernel.power.detach().clone().reshape(-1)
        return lambda a, b: GapAmplitudeKernel.amplitude(select(a), p) @ GapAmplitudeKernel.amplitude(select(b), p).transpose(-1, -2)
    # The kernel applies its own active_dims when called.
    return lambda a, b: kernel(a, b).to_dense()


class CachedPosteriorGP(Model):
    """A fitted Surrogate whose posterior reuses one Cholesky factor of the training covariance.

    GPyTorch's exact prediction concatenates the training inputs to every t-batch
    of test points, so scoring ``b`` candidates costs ``b`` kernel matrices of size
    ``(n + q)^2`` (seconds for 2048 candidates and n = 300). Here the training
    solve is done once; a t-batch costs one ``[b q, n]`` cross-covariance and a
    triangular solve. The numbers are the exact-GP posterior (same kernel, mean,
    noise and transforms), differentiable in ``X``.

    ``model(X)`` returns the noise-free posterior MVN in the outcome scale; BoTorch's
    GIBBON calls the model this way for its batch term, and with a plain
    ``SingleTaskGP`` that call would skip the input and outcome transforms.

    With a ``prior`` (a fitted law, see :mod:`mixsearch.propose.law_prior`) the GP was
    fitted on residuals from it, and the posterior mean is the prior plus the GP's.

    Args:
        gp: A fitted ``SingleTaskGP`` in eval mode.
        train_X: ``[n, d]`` its untransformed training inputs.
        prior: A prior mean ``X [..., d] -> [...]`` in the outcome scale, or None.
    """

    def __init__(self, gp: SingleTaskGP, train_X: Tensor, prior: Callable[[Tensor], Tensor] | None = None) -> None:
        super().__init__()
        self.gp = gp
        self.prior = prior
        self.kernel = compile_kernel(gp.covar_module)
        with torch.no_grad():
            Xt = gp.transform_inputs(train_X)
            y = gp.train_targets  # standardised
            K = self.kernel(Xt, Xt)
            noise = gp.likelihood.noise.reshape(-1)[0]
            L = torch.linalg.cholesky(K + noise * torch.eye(len(Xt), dtype=K.dtype))
            resid = (y - gp.mean_module(Xt)).unsqueeze(-1)
            alpha = torch.cholesky_solve(resid, L).squeeze(-1)
        self.register_buffer("train_Xt", Xt)
        self.register_buffer("chol", L)
        self.register_buffer("alpha", alpha)
        self.register_buffer("noise", noise.detach())

    @property
    def num_outputs(self) -> int:
        return 1

    @property
    def batch_shape(self) -> torch.Size:
        return torch.Size([])

    def _standardised(self, X: Tensor) -> tuple[Tensor, Tensor]:
        """Noise-free posterior mean ``[..., q]`` and covariance ``[..., q, q]``, standardised."""
        gp = self.gp
        Xt = gp.transform_inputs(X)
        batch, q, d = Xt.shape[:-2], Xt.shape[-2], Xt.shape[-1]
        flat = Xt.reshape(-1, d)
        cross = self.kernel(flat, self.train_Xt)  # [B q, n]
        mean = gp.mean_module(flat) + cross @ self.alpha  # [B q]
        v = torch.linalg.solve_triangular(self.chol, cross.transpose(0, 1), upper=False)  # [n, B q]
        v = v.transpose(0, 1).reshape(*batch, q, -1)  # [..., q, n]
        prior = self.kernel(Xt, Xt)  # [..., q, q]
        cov = prior - v @ v.transpose(-1, -2)
        return mean.reshape(*batch, q), cov

    def _posterior(self, X: Tensor, observation_noise: bool) -> GPyTorchPosterior:
        mean, cov = self._standardised(X)
        if observation_noise:
            cov = cov + self.noise * torch.eye(cov.shape[-1], dtype=cov.dtype)
        # Lazy covariance: torch's MVN would Cholesky-factor it eagerly, which fails
        # for near-singular joint posteriors and is not needed for means and variances.
        post = GPyTorchPosterior(MultivariateNormal(mean, to_linear_operator(cov)))
        if self.gp.outcome_transform is not None:
            post = self.gp.outcome_transform.untransform_posterior(post)
        if self.prior is not None:
            dist = post.distribution
            post = GPyTorchPosterior(MultivariateNormal(dist.mean + self.prior(X), dist.lazy_covariance_matrix))
        return post

    def posterior(
        self,
        X: Tensor,
        output_indices: list[int] | None = None,
        observation_noise: bool | Tensor = False,
        posterior_transform: Any = None,
        **kwargs: Any,
    ) -> GPyTorchPosterior:
        """Posterior at ``X`` ``[..., q, d]``, in the outcome scale."""
        post = self._posterior(X, bool(observation_noise is True or isinstance(observation_noise, Tensor)))
        return posterior_transform(post) if posterior_transform is not None else post

    def forward(self, X: Tensor) -> MultivariateNormal:
        return self._posterior(X, False).distribution


def predict(model: SingleTaskGP, X: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and standard deviation (noise-free) at ``X`` ``[n, d]``.

    Returns:
        ``(mean [n], std [n])`` in the model's output orientation (maximise).
    """
    with torch.no_grad():
        post = model.posterior(X)
        mean = post.mean.squeeze(-1).cpu().numpy()
        std = post.variance.clamp_min(0.0).sqrt().squeeze(-1).cpu().numpy()
    return mean, std
