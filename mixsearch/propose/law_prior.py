"""The fitted joint law as the Surrogate's prior mean: the GP models what the law misses.

A GP with a constant (or fidelity-linear) mean knows nothing about how loss falls with model
size and tokens, so at a target far beyond the rungs it reverts to its mean. The joint law
of mixture and scale (:func:`mixsearch.laws.fit_joint`) does know: fitted on every finished
trial at every rung, it predicts the objective of any mixture at any (N, D). With it as the
prior mean, the GP is fitted on the residuals (observed minus law) and the posterior at the
target is the law's prediction corrected by what the rungs show the law gets wrong.

The law is refitted on each ask from the trials (a point fit: no bootstrap, no held-out
error), and fits are reused by a hash of the data, as GP fits are.
"""

from __future__ import annotations

import hashlib
import threading
import warnings
from collections import OrderedDict
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from mixsearch.propose.fidelity import DTYPE, FidelityEncoder

# One-sided finite-difference step in the mixture weights for the prior's gradient.
_STEP = 1e-5
_CACHE: "OrderedDict[str, Any]" = OrderedDict()
_CACHE_SIZE = 8
_LOCK = threading.Lock()


def rung_scales(ladder: Any) -> dict[str, tuple[float, float]] | None:
    """``{rung: (N, D)}`` for every rung and the target, or None when any lacks N or D."""
    rungs = [*ladder.rungs, ladder.target]
    if any(r.n_params is None or r.tokens is None for r in rungs):
        return None
    return {r.name: (float(r.n_params), float(r.tokens)) for r in rungs}


def fit_law_prior(weights: np.ndarray, objective: np.ndarray, rungs: Sequence[str], scales: Mapping[str, tuple[float, float]]) -> Any | None:
    """The joint law of the objective fitted on finished trials, or None when it cannot be.

    It cannot be when the objective is not a positive loss (an accuracy, oriented to be
    minimised, is negative), when the trials span fewer than two distinct (N, D), when the
    fit fails (too few trials for the law's parameters), or when the law cannot predict at
    some rung or at the target (every trial shared one D, and the target has another).

    Args:
        weights: ``[n, K]`` mixtures.
        objective: ``[n]`` objective values (smaller is better).
        rungs: ``[n]`` rung names.
        scales: ``{rung: (N, D)}``.
    """
    from mixsearch.laws.fit import FitError, FitOptions
    from mixsearch.laws.guarded import fit_study_joint

    y = np.asarray(objective, dtype=float)
    if y.size == 0 or not np.all(np.isfinite(y)) or np.any(y <= 0):
        return None
    nd = np.array([scales[r] for r in rungs], dtype=float)
    if np.unique(nd, axis=0).shape[0] < 2:
        return None
    key = hashlib.sha256(np.ascontiguousarray(weights, dtype=float).tobytes() + y.tobytes() + nd.tobytes()).hexdigest()
    with _LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    k = weights.shape[1]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            law = fit_study_joint(
                weights, {"objective": y}, [f"d{j}" for j in range(k)], N=nd[:, 0], D=nd[:, 1],
                options=FitOptions(bootstrap=0, cv_folds=0), include_data=False, measure_error=False, name="prior",
            )
        # A law that cannot speak at every rung and the target (a D no run varies towards,
        # say) is no prior at all.
        probe = np.full(k, 1.0 / k)
        for n, d in scales.values():
            law.predict(weights=probe, N=n, D=d)
    except (FitError, ValueError, np.linalg.LinAlgError):
        law = None
    with _LOCK:
        _CACHE[key] = law
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return law


class LawPrior:
    """A fitted law as a prior mean over Surrogate inputs ``[w_1 .. w_K, s_1 .. s_S]``.

    An input's fidelity features are mapped to the nearest rung of the ladder (inputs only
    ever sit at a rung or at the target), whose (N, D) the law is evaluated at. The value
    is in the Surrogate's orientation: the law's predicted objective, negated (BoTorch
    maximises).

    Args:
        law: A fitted law with ``predict(weights=, N=, D=)``.
        enc: The fidelity encoder of the ladder.
        scales: ``{rung: (N, D)}`` for every name of ``enc``.
    """

    def __init__(self, law: Any, enc: FidelityEncoder, scales: Mapping[str, tuple[float, float]]) -> None:
        self.law = law
        self.features = np.asarray(enc.features, dtype=float)
        self.nd = np.array([scales[name] for name in enc.names], dtype=float)
        # Acquisitions score the same candidate sets again and again: keep recent answers.
        self._memo: "OrderedDict[bytes, np.ndarray]" = OrderedDict()

    def values(self, X: np.ndarray) -> np.ndarray:
        """Prior mean ``[m]`` at inputs ``[m, K + S]`` (numpy)."""
        key = X.tobytes()
        hit = self._memo.get(key)
        if hit is not None:
            return hit
        out = self._values(X)
        self._memo[key] = out
        if len(self._memo) > 64:
            self._memo.popitem(last=False)
        return out

    def _values(self, X: np.ndarray) -> np.ndarray:
        s = self.features.shape[1]
        w = np.clip(X[:, : X.shape[1] - s], 0.0, None)
        w = w / w.sum(axis=1, keepdims=True)
        feats = X[:, X.shape[1] - s :]
        idx = np.argmin(((feats[:, None, :] - self.features[None, :, :]) ** 2).sum(-1), axis=1)
        n, d = self.nd[idx, 0], self.nd[idx, 1]
        return -np.asarray(self.law.predict(weights=w, N=n, D=d).value, dtype=float)

    def __call__(self, X: Tensor) -> Tensor:
        """Prior mean ``[...]`` at inputs ``[..., K + S]``, differentiable in the weights."""
        return _PriorMean.apply(X, self)


class _PriorMean(torch.autograd.Function):
    """The law's value with a finite-difference gradient in the mixture weights.

    Acquisition optimisers need gradients in the weights; the law is NumPy, so its
    gradient is taken by forward differences (one law evaluation per weight).
    """

    @staticmethod
    def forward(ctx: Any, X: Tensor, prior: LawPrior) -> Tensor:
        flat = X.detach().reshape(-1, X.shape[-1]).cpu().numpy().astype(float)
        ctx.prior = prior
        ctx.save_for_backward(X)
        return torch.as_tensor(prior.values(flat), dtype=X.dtype, device=X.device).reshape(X.shape[:-1])

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, None]:
        (X,) = ctx.saved_tensors
        prior: LawPrior = ctx.prior
        flat = X.detach().reshape(-1, X.shape[-1]).cpu().numpy().astype(float)
        s = prior.features.shape[1]
        m, k = flat.shape[0], flat.shape[1] - s
        # One law evaluation for the point and its K shifted copies.
        stacked = np.repeat(flat[None, :, :], k + 1, axis=0)
        stacked[np.arange(1, k + 1), :, np.arange(k)] += _STEP
        vals = prior.values(stacked.reshape(-1, flat.shape[1])).reshape(k + 1, m)
        grad = np.zeros_like(flat)
        grad[:, :k] = ((vals[1:] - vals[0]) / _STEP).T
        g = torch.as_tensor(grad, dtype=X.dtype, device=X.device).reshape(X.shape)
        return g * grad_out.unsqueeze(-1), None


def prior_tensor(prior: LawPrior | None, X: Tensor) -> Tensor:
    """The prior mean at ``X`` ``[..., d]``, or zeros without a prior."""
    if prior is None:
        return torch.zeros(X.shape[:-1], dtype=X.dtype if X.is_floating_point() else DTYPE)
    return prior(X)
