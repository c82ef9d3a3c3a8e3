"""The Surrogate: a GP over (mixture weights, fidelity features) for the BO proposers.

Inputs are ``[w_1 .. w_K, s_1 .. s_S]``: the mixture on the simplex followed by the
fidelity features of the rung it ran at (see :class:`FidelityEncoder`; the target
scale has every feature equal to 1). Outputs are the objective negated, because
BoTorch maximises while histories are "smaller is better".

Kernels (``kind``):

* ``"ar"`` (default): an autoregressive split
  ``sigma^2 [k_T(w, w') + gamma b(s) b(s') k_E(w, w')]``: one GP for the objective at
  the target plus an independent discrepancy GP whose amplitude
  ``b(s)^2 ~ (1 - s)^(2 + 2 delta)`` (BoTorch's downsampling kernel) grows with the
  distance from the target. ``gamma`` (the discrepancy's share) has a prior mean of
  0.1: cheap rungs inform the target through ``k_T`` unless the data say otherwise.
* ``"downsampling"``: BoTorch's ``SingleTaskMultiFidelityGP`` kernel with
  ``linear_truncated=False`` (one RBF over weights times a downsampling kernel per
  fidelity feature).
* ``"product"``: an RBF over weights times an RBF over fidelity features (an
  intrinsic-coregionalisation-like model with a learned cross-fidelity correlation).

Every kind uses a mean that is linear in the fidelity features, because larger
rungs reach systematically lower losses and a constant mean would force the
kernel to explain that offset with a short fidelity lengthscale (killing the
transfer from cheap rungs).
"""

from __future__ import annotations

import copy
import hashlib
import math
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import gpytorch
import numpy as np
import torch
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.models.deterministic import DeterministicModel
from botorch.models.model import Model
from botorch.posteriors import GPyTorchPosterior
from botorch.utils.sampling import manual_seed
from gpytorch.distributions import MultivariateNormal
from linear_operator import to_linear_operator
from botorch.models.kernels.downsampling import DownsamplingKernel
from botorch.models.transforms.input import ReversibleInputTransform
from botorch.models.transforms.outcome import Standardize
from botorch.models.transforms.utils import subset_transform
from botorch.models.utils.gpytorch_modules import get_covar_module_with_dim_scaled_prior
from gpytorch.kernels import AdditiveKernel, ProductKernel, RBFKernel, ScaleKernel
from gpytorch.mlls import ExactMarginalLogLikelihood
from gpytorch.priors import GammaPrior, LogNormalPrior
from torch import Tensor

from mixsearch.study import FidelityLadder, Rung

# GPyTorch's interpolation builds a sparse tensor on import paths every fit touches, and
# torch then prints a warning about sparse invariant checks into the user's study output.
warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled", category=UserWarning)

KERNELS = ("ar", "downsampling", "product")
WEIGHT_TRANSFORMS = ("identity", "log")
DTYPE = torch.double


def check_kernel(kind: str) -> None:
    """Raise a ValueError naming ``kernel`` unless ``kind`` is one of :data:`KERNELS`."""
    if kind not in KERNELS:
        raise ValueError(f"kernel: unknown kernel {kind!r}; known: {', '.join(KERNELS)}")


def check_weight_transform(name: str) -> None:
    """Raise a ValueError naming ``weight_transform`` unless ``name`` is one of :data:`WEIGHT_TRANSFORMS`."""
    if name not in WEIGHT_TRANSFORMS:
        raise ValueError(f"weight_transform: unknown transform {name!r}; known: {', '.join(WEIGHT_TRANSFORMS)}")


@dataclass(frozen=True)
class FidelityEncoder:
    """Maps rung names to fidelity features and costs.

    Proxy ladders (every rung and the target has ``n_params`` and ``tokens``) get
    the features ``log N`` and ``log D``; table ladders (rungs with only a cost)
    get ``log cost``. A feature constant over the ladder is dropped. Each feature
    is scaled so the target is 1 and the spread of the ladder is 1:
    ``s = 1 + (log v - log v_target) / (max log v - min log v)``, clipped to
    [0, 1]; with the target the largest rung, the smallest maps to 0.

    Attributes:
        names: Runnable rung names, then the target's name if it is not runnable.
        features: ``[len(names), S]`` fidelity features (S >= 1).
        costs: Cost of one run per runnable rung name.
        target: The target rung's name.
        target_runnable: Whether the target is one of the runnable rungs.
    """

    names: tuple[str, ...]
    features: np.ndarray
    costs: Mapping[str, float]
    target: str
    target_runnable: bool

    @staticmethod
    def from_ladder(
        ladder: FidelityLadder,
        cost_model: Mapping[str, float] | Callable[[Rung], float] | None = None,
    ) -> "FidelityEncoder":
        """Build the encoder of a ladder.

        Args:
            ladder: The study's fidelity ladder.
            cost_model: Per-rung cost override: a mapping rung name -> cost, or a
                callable ``rung -> cost``; default ``rung.run_cost``.

        Raises:
            ValueError: a rung without a usable cost.
        """
        rungs = list(ladder.rungs)
        runnable = any(r.name == ladder.target.name for r in rungs)
        every = rungs if runnable else [*rungs, ladder.target]
        costs = {r.name: _rung_cost(r, cost_model) for r in rungs}
        proxy = all(r.n_params is not None and r.tokens is not None for r in every)
        if proxy:
            raw = np.log(np.array([[float(r.n_params), float(r.tokens)] for r in every]))  # type: ignore[arg-type]
        else:
            target_cost = _rung_cost(ladder.target, cost_model) if not runnable else costs[ladder.target.name]
            raw = np.log(np.array([[costs.get(r.name, target_cost)] for r in every]))
        span = raw.max(axis=0) - raw.min(axis=0)
        keep = span > 1e-12
        if not keep.any():
            # A single-rung ladder: one constant feature, so the model is a plain GP.
            feats = np.ones((len(every), 1))
        else:
            t = [r.name for r in every].index(ladder.target.name)
            feats = 1.0 + (raw[:, keep] - raw[t, keep]) / span[keep]
            # A rung beyond the target in some feature (more tokens than the target,
            # say) is treated as target-like in it: the fidelity kernels are defined
            # on [0, 1] with the target at 1.
            feats = np.clip(feats, 0.0, 1.0)
        return FidelityEncoder(
            names=tuple(r.name for r in every),
            features=feats,
            costs=costs,
            target=ladder.target.name,
            target_runnable=runnable,
        )

    @property
    def n_features(self) -> int:
        return int(self.features.shape[1])

    @property
    def runnable(self) -> tuple[str, ...]:
        """Runnable rung names in ladder order."""
        return tuple(n for n in self.names if n in self.costs)

    def encode(self, rungs: Sequence[str]) -> np.ndarray:
        """Fidelity features ``[n, S]`` of ``n`` rung names.

        Raises:
            ValueError: a name not in the ladder.
        """
        index = {n: i for i, n in enumerate(self.names)}
        try:
            return self.features[[index[r] for r in rungs]].reshape(len(rungs), self.n_features)
        except KeyError as exc:
            raise ValueError(f"rung: {exc.args[0]!r} is not in the fidelity ladder {list(self.names)}") from None

    @property
    def target_features(self) -> np.ndarray:
        """Fidelity features ``[S]`` of the target."""
        return self.encode([self.target])[0]

    def cost_model(self, n_weights: int) -> "RungCostModel":
        """A BoTorch cost model over ``[w, s]`` inputs, costs scaled by the costliest rung."""
        names = self.runnable
        top = max(self.costs.values())
        return RungCostModel(
            torch.tensor(self.encode(names), dtype=DTYPE),
            torch.tensor([self.costs[n] / top for n in names], dtype=DTYPE),
            n_weights,
        )


def _rung_cost(rung: Rung, cost_model: Mapping[str, float] | Callable[[Rung], float] | None) -> float:
    if callable(cost_model):
        cost = float(cost_model(rung))
    elif cost_model is not None and rung.name in cost_model:
        cost = float(cost_model[rung.name])
    else:
        cost = rung.run_cost
    if not (math.isfinite(cost) and cost > 0):
        raise ValueError(f"cost_model: rung {rung.name!r} has no positive finite cost (got {cost!r})")
    return cost


class RungCostModel(DeterministicModel):
    """Cost of a run as a function of its fidelity features: the nearest rung's cost.

    Args:
        rung_features: ``[R, S]`` fidelity features of the runnable rungs.
        rung_costs: ``[R]`` their costs.
        n_weights: K, the number of weight columns before the fidelity features.
    """

    def __init__(self, rung_features: Tensor, rung_costs: Tensor, n_weights: int) -> None:
        super().__init__()
        self.register_buffer("rung_features", rung_features)
        self.register_buffer("rung_costs", rung_costs)
        self.n_weights = n_weights
        self._num_outputs = 1

    def forward(self, X: Tensor) -> Tensor:
        """Costs ``[..., q, 1]`` of inputs ``[..., q, K + S]``."""
        s = X[..., self.n_weights :]
        d = (s.unsqueeze(-2) - self.rung_features.to(s)).pow(2).sum(-1)  # [..., q, R]
        return self.rung_costs.to(s)[d.argmin(dim=-1)].unsqueeze(-1)


class LogWeights(ReversibleInputTransform):
    """``w -> log(w + eps)`` rescaled to [0, 1] on the weight columns.

    Losses respond to a domain's weight roughly logarithmically (going from 1% to 10%
    of a domain matters nearly as much as 10% to 100%), which a stationary kernel on raw
    weights cannot express.

    Args:
        indices: Weight columns.
        eps: Floor added before the log; sets how much near-zero weights are spread.
            0.01 was chosen on the RegMix table (1e-3, 1e-2 and 3e-2 tried: cost to 1 %
            regret 0.60, 0.53 and 1.72 target runs): below a 1% share, differences
            matter less, and a smaller floor also makes smooth objectives harder to fit.
    """

    def __init__(self, indices: Sequence[int], eps: float = 1e-2) -> None:
        super().__init__()
        self.register_buffer("indices", torch.tensor(list(indices), dtype=torch.long))
        self.eps = eps
        self.transform_on_train = True
        self.transform_on_eval = True
        self.transform_on_fantasize = True
        self.reverse = False

    @subset_transform
    def _transform(self, X: Tensor) -> Tensor:
        lo, hi = math.log(self.eps), math.log(1.0 + self.eps)
        return ((X.clamp_min(0.0) + self.eps).log() - lo) / (hi - lo)

    @subset_transform
    def _untransform(self, X: Tensor) -> Tensor:
        lo, hi = math.log(self.eps), math.log(1.0 + self.eps)
        return (X * (hi - lo) + lo).exp() - self.eps


class FidelityLinearMean(gpytorch.means.Mean):
    """``m(w, s) = c + beta . s``: a constant plus a slope per fidelity feature."""

    def __init__(self, fidelity_dims: Sequence[int]) -> None:
        super().__init__()
        self.fidelity_dims = list(fidelity_dims)
        self.register_parameter("constant", torch.nn.Parameter(torch.zeros(1, dtype=DTYPE)))
        self.register_parameter("slopes", torch.nn.Parameter(torch.zeros(len(self.fidelity_dims), dtype=DTYPE)))

    def forward(self, x: Tensor) -> Tensor:
        return self.constant + x[..., self.fidelity_dims] @ self.slopes


def _weights_kernel(n_weights: int) -> RBFKernel:
    # Dimension-scaled lengthscale prior (Hvarfner et al. 2024): sensible in 17-D.
    return get_covar_module_with_dim_scaled_prior(ard_num_dims=n_weights, active_dims=list(range(n_weights)))


def build_kernel(kind: str, n_weights: int, n_fidelity: int) -> gpytorch.kernels.Kernel:
    """The covariance over ``[w, s]`` inputs.

    Args:
        kind: One of :data:`KERNELS`.
        n_weights: K.
        n_fidelity: S.
    """
    check_kernel(kind)
    fid = list(range(n_weights, n_weights + n_fidelity))
    if kind == "product":
        k_s = RBFKernel(ard_num_dims=n_fidelity, active_dims=fid, lengthscale_prior=LogNormalPrior(0.5, 1.0))
        return ScaleKernel(ProductKernel(_weights_kernel(n_weights), k_s), outputscale_prior=GammaPrior(2.0, 2.0))
    if kind == "downsampling":
        parts = [_weights_kernel(n_weights)]
        parts += [DownsamplingKernel(offset_prior=GammaPrior(3.0, 6.0), power_prior=GammaPrior(3.0, 6.0), active_dims=[i]) for i in fid]
        return ScaleKernel(ProductKernel(*parts), outputscale_prior=GammaPrior(2.0, 2.0))
    assert kind == "ar"
    # sigma^2 [k_T(w, w') + gamma * b(s) b(s') k_E(w, w')]: gamma is the discrepancy's
    # share of the variance, a priori small (proxies usually rank mixtures much as the
    # target does) but free to grow when the rungs disagree. One downsampling term per
    # feature, added, so a rung below the target in any feature carries a discrepancy.
    gaps = [DownsamplingKernel(offset_prior=GammaPrior(1.0, 100.0), power_prior=GammaPrior(3.0, 6.0), active_dims=[i]) for i in fid]
    gap_s = gaps[0] if len(gaps) == 1 else AdditiveKernel(*gaps)
    k_gap = ScaleKernel(ProductKernel(_weights_kernel(n_weights), gap_s), outputscale_prior=GammaPrior(2.0, 20.0))
    return ScaleKernel(AdditiveKernel(_weights_kernel(n_weights), k_gap), outputscale_prior=GammaPrior(2.0, 2.0))


def fit_surrogate(
    X: Tensor,
    Y: Tensor,
    n_weights: int,
    kind: str = "ar",
    weight_transform: str = "identity",
    maxiter: int = 200,
) -> SingleTaskGP:
    """Fit the Surrogate by maximising the marginal likelihood (MAP under the priors).

    Args:
        X: ``[n, K + S]`` inputs: weights then fidelity features.
        Y: ``[n, 1]`` outputs to maximise (the negated objective).
        n_weights: K.
        kind: Kernel, one of :data:`KERNELS`. Ignored when S = 0.
        weight_transform: ``"identity"`` or ``"log"`` (see :class:`LogWeights`).
        maxiter: L-BFGS-B iterations.

    Returns:
        The fitted model in eval mode.

    Raises:
        ValueError: an unknown kernel or transform, or non-finite data.
    """
    check_weight_transform(weight_transform)
    if not torch.isfinite(X).all() or not torch.isfinite(Y).all():
        raise ValueError("surrogate: training data contain NaN or infinite values")
    key = _fit_key(X, Y, n_weights, kind, weight_transform, maxiter)
    model = _build_model(X, Y, n_weights, kind, weight_transform)
    with _FIT_LOCK:
        state = _FIT_CACHE.get(key)
        if state is not None:
            _FIT_CACHE.move_to_end(key)
    if state is not None:
        model.load_state_dict(state)
        model.eval()
        return model
    mll = ExactMarginalLogLikelihood(model.likelihood, model)
    # The fit's randomness (restarts after a failed optimisation) is drawn from the data
    # themselves, so a fit is a function of (data, settings) and may be reused by any
    # caller, whatever seed it runs under.
    with warnings.catch_warnings(), manual_seed(int.from_bytes(bytes.fromhex(key[:8]), "big")):
        # Inputs are weights and fidelity features already on a unit scale; the
        # scale-check warnings are noise here, as are optimiser restarts messages.
        warnings.simplefilter("ignore")
        fit_gpytorch_mll(mll, optimizer_kwargs={"options": {"maxiter": maxiter}})
    model.eval()
    with _FIT_LOCK:
        _FIT_CACHE[key] = copy.deepcopy(model.state_dict())
        while len(_FIT_CACHE) > _FIT_CACHE_SIZE:
            _FIT_CACHE.popitem(last=False)
    return model


# Proposers refit on every call, and recommend() follows propose() on the same
# history (the bench harness calls both each step), so the last few fits are kept:
# hyperparameters only, keyed by a hash of the data and settings.
_FIT_CACHE: "OrderedDict[str, dict[str, Tensor]]" = OrderedDict()
_FIT_CACHE_SIZE = 16
_FIT_LOCK = threading.Lock()


def _fit_key(X: Tensor, Y: Tensor, n_weights: int, kind: str, weight_transform: str, maxiter: int) -> str:
    h = hashlib.sha256()
    for t in (X, Y):
        a = t.detach().to(dtype=DTYPE).contiguous().numpy()
        h.update(repr(a.shape).encode())
        h.update(a.tobytes())
    h.update(repr((n_weights, kind if X.shape[-1] > n_weights else "", weight_transform, maxiter)).encode())
    return h.hexdigest()


def _build_model(X: Tensor, Y: Tensor, n_weights: int, kind: str, weight_transform: str) -> SingleTaskGP:
    n_fid = X.shape[-1] - n_weights
    fid = list(range(n_weights, n_weights + n_fid))
    transform = LogWeights(list(range(n_weights))) if weight_transform == "log" else None
    if n_fid == 0:
        covar = None
        mean = None
    else:
        covar = build_kernel(kind, n_weights, n_fid)
        mean = FidelityLinearMean(fid)
    return SingleTaskGP(
        X,
        Y,
        covar_module=covar,
        mean_module=mean,
        outcome_transform=Standardize(m=1),
        input_transform=transform,
    )


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
    Product, Additive and BoTorch's Downsampling kernels with ``active_dims``;
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

    Args:
        gp: A fitted ``SingleTaskGP`` in eval mode.
        train_X: ``[n, d]`` its untransformed training inputs.
    """

    def __init__(self, gp: SingleTaskGP, train_X: Tensor) -> None:
        super().__init__()
        self.gp = gp
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


def as_inputs(weights: np.ndarray, fidelity: np.ndarray) -> Tensor:
    """Stack weights ``[n, K]`` and fidelity features ``[n, S]`` into a ``[n, K + S]`` tensor."""
    return torch.tensor(np.concatenate([weights, fidelity], axis=1), dtype=DTYPE)


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
