"""The Chinchilla law L(N, D) = E + A/N^α + B/D^β and compute-optimal allocation.

Fitted as Hoffmann et al. (2022) and Epoch's replication (Besiroglu et al. 2024) do:
log L̂ = LSE(a − α log N, b − β log D, e) with E = eᵉ, A = eᵃ, B = eᵇ, Huber loss
(δ = 1e-3) on log residuals, L-BFGS-B started from the best points of their grid.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import numpy as np

from mixsearch.laws.fit import FitOptions, fit_model, logsumexp_terms
from mixsearch.laws.law import Law, _quantiles, as_positive_array, broadcast_inputs, build_law, check_inputs

PARAMS = ("E", "A", "B", "alpha", "beta")
FORMULA = "L(N, D) = E + A / N^alpha + B / D^beta"
INPUTS = {
    "N": {"unit": "parameters", "normalisation": "none", "description": "model size (parameter count)"},
    "D": {"unit": "tokens", "normalisation": "none", "description": "training tokens"},
}


class ChinchillaFormula:
    """log L̂ = LSE(e, a − α log N, b − β log D); θ = (e, a, b, α, β), inputs ``[n, 2]`` = (N, D)."""

    names = ("e", "a", "b", "alpha", "beta")
    log_space = True

    def value(self, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        theta = np.asarray(theta, dtype=float)
        e, a, b, alpha, beta = (theta[..., j, None] for j in range(5))
        log_n, log_d = np.log(x[:, 0]), np.log(x[:, 1])
        terms = np.stack(np.broadcast_arrays(e, a - alpha * log_n, b - beta * log_d))
        return logsumexp_terms(terms)[0]

    def jacobian(self, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        return self.value_and_jacobian(theta, x)[1]

    def value_and_jacobian(self, theta: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``([n], [n, 5])``: log L̂ and its derivative; the softmax weights of the terms are the chain rule."""
        e, a, b, alpha, beta = (float(v) for v in theta)
        log_n, log_d = np.log(x[:, 0]), np.log(x[:, 1])
        terms = np.stack([np.full_like(log_n, e), a - alpha * log_n, b - beta * log_d])
        lse, w = logsumexp_terms(terms)
        return lse, np.column_stack([w[0], w[1], w[2], -w[1] * log_n, -w[2] * log_d])

    def initial_grid(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Hoffmann et al.'s grid: 5 × 6 × 6 × 5 × 5 = 4500 points."""
        es = np.linspace(-1.0, 1.0, 5)
        abs_ = np.arange(0.0, 30.0, 5.0)
        exps = np.linspace(0.0, 2.0, 5)
        return np.array(list(itertools.product(es, abs_, abs_, exps, exps)))

    def bounds(self) -> list[tuple[float | None, float | None]]:
        # A floor on e (E >= 1e-11) keeps starts from crawling towards E = 0 on a flat objective.
        return [(-25.0, None), (None, None), (None, None), (0.0, None), (0.0, None)]


def to_public(theta: np.ndarray) -> np.ndarray:
    """Internal (e, a, b, α, β) ``[..., 5]`` → public (E, A, B, α, β)."""
    theta = np.asarray(theta, dtype=float)
    out = theta.copy()
    out[..., :3] = np.exp(theta[..., :3])
    return out


@dataclass(frozen=True)
class ComputeOptimal:
    """The compute-optimal allocation of a FLOP budget C = 6·N·D under a Chinchilla law.

    Each field is a float (scalar C) or ``[m]`` array; ``*_interval`` are
    ``(lower, upper)`` at the law's level, or ``None`` without uncertainty.
    """

    flops: Any
    N: Any
    D: Any
    tokens_per_param: Any
    loss: Any
    N_interval: tuple[Any, Any] | None
    D_interval: tuple[Any, Any] | None
    tokens_per_param_interval: tuple[Any, Any] | None
    loss_interval: tuple[Any, Any] | None


def optimal_allocation(P: np.ndarray, flops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """N*, D* minimising L(N, D) subject to 6·N·D = C.

    N* = G·(C/6)^(β/(α+β)), D* = (C/6)^(α/(α+β)) / G, G = (αA / (βB))^(1/(α+β)).

    Args:
        P: ``[B, 5]`` rows of (E, A, B, α, β).
        flops: ``[m]`` budgets C.

    Returns:
        ``(N* [B, m], D* [B, m])``.
    """
    _, A, B, alpha, beta = (P[:, j, None] for j in range(5))
    s = alpha + beta
    log_c6 = np.log(flops / 6.0)[None, :]
    log_g = (np.log(alpha * A) - np.log(beta * B)) / s
    log_n = log_g + beta / s * log_c6
    return np.exp(log_n), np.exp(log_c6 - log_n)


@dataclass(frozen=True, eq=False)
class ChinchillaLaw(Law):
    """L(N, D) = E + A/N^α + B/D^β; ``predict(N=..., D=...)``."""

    kind: ClassVar[str] = "chinchilla"

    @property
    def formula(self) -> str:
        return FORMULA

    def _parse(self, inputs: dict[str, Any]) -> tuple[dict[str, np.ndarray], bool]:
        check_inputs(self, inputs, ("N", "D"))
        scalar = all(np.ndim(inputs[k]) == 0 for k in ("N", "D"))
        return broadcast_inputs({k: as_positive_array(k, inputs[k]) for k in ("N", "D")}), scalar

    def _evaluate(self, P: np.ndarray, x: dict[str, np.ndarray]) -> np.ndarray:
        E, A, B, alpha, beta = (P[:, j, None] for j in range(5))
        log_n, log_d = np.log(x["N"])[None, :], np.log(x["D"])[None, :]
        return E + np.exp(np.log(A) - alpha * log_n) + np.exp(np.log(B) - beta * log_d)

    def compute_optimal(self, flops: Any) -> ComputeOptimal:
        """Compute-optimal N*, D*, tokens per parameter and loss for FLOP budget(s) C = 6·N·D.

        Args:
            flops: A budget or ``[m]`` budgets in FLOPs.
        """
        c = as_positive_array("flops", flops)
        scalar = np.ndim(flops) == 0
        n, d = optimal_allocation(self.vector()[None, :], c)
        loss = self._evaluate(self.vector()[None, :], {"N": n[0], "D": d[0]})[0]
        intervals: list[tuple[Any, Any] | None] = [None] * 4
        draws = self.draws()
        if draws is not None:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                nb, db = optimal_allocation(draws, c)
                lb = np.stack([self._evaluate(draws[i : i + 1], {"N": nb[i], "D": db[i]})[0] for i in range(draws.shape[0])])
            intervals = [_pair(_quantiles(v, self.level), scalar) for v in (nb, db, db / nb, lb)]
        pick = (lambda v: float(v[0])) if scalar else (lambda v: v)
        return ComputeOptimal(
            flops=pick(c),
            N=pick(n[0]),
            D=pick(d[0]),
            tokens_per_param=pick(d[0] / n[0]),
            loss=pick(loss),
            N_interval=intervals[0],
            D_interval=intervals[1],
            tokens_per_param_interval=intervals[2],
            loss_interval=intervals[3],
        )


def _pair(q: tuple[np.ndarray, np.ndarray], scalar: bool) -> tuple[Any, Any]:
    return (float(q[0][0]), float(q[1][0])) if scalar else (q[0], q[1])


def fit_chinchilla(
    N: Any,
    D: Any,
    loss: Any,
    options: FitOptions | None = None,
    name: str = "chinchilla",
    provenance: Mapping[str, Any] | None = None,
    include_data: bool = True,
) -> ChinchillaLaw:
    """Fit L(N, D) = E + A/N^α + B/D^β to runs.

    Args:
        N: ``[n]`` model sizes (parameters).
        D: ``[n]`` training tokens.
        loss: ``[n]`` final losses (positive).
        options: Fit options (Huber δ, starts, bootstrap, folds, seed).
        name: Law name in exported files.
        provenance: Study, corpus hash, source … recorded in the law.
        include_data: Keep the fitted runs in the law (for plots).

    Returns:
        The fitted law.

    Raises:
        ValueError: inputs of different lengths, non-positive or non-finite values.
        FitError: fewer than 5 runs, or no start converging to a finite objective.
    """
    n_arr, d_arr, y = (np.asarray(v, dtype=float).reshape(-1) for v in (N, D, loss))
    if not (n_arr.size == d_arr.size == y.size):
        raise ValueError(f"N, D and loss must have the same length, got {n_arr.size}, {d_arr.size}, {y.size}")
    for label, arr in (("N", n_arr), ("D", d_arr), ("loss", y)):
        if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
            raise ValueError(f"{label}: must be positive finite numbers")
    fit = fit_model(ChinchillaFormula(), np.column_stack([n_arr, d_arr]), y, options or FitOptions())
    return build_law(
        ChinchillaLaw,
        fit,
        y,
        PARAMS,
        to_public,
        name=name,
        form="chinchilla",
        inputs=INPUTS,
        data_range={"N": (n_arr.min(), n_arr.max()), "D": (d_arr.min(), d_arr.max())},
        provenance=provenance,
        extra={"tokens_per_param_range": [float((d_arr / n_arr).min()), float((d_arr / n_arr).max())]},
        data={"N": n_arr, "D": d_arr, "loss": y} if include_data else None,
    )
