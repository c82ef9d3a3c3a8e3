"""The CMR surface: one law of the loss increment over every continual pre-training run.

Gu et al. (2024) find the critical mixture ratio CMR(T) with a grid: at each of several
token counts T, runs at several ratios R, a ratio law per T, then a law over the CMRs
(:func:`mixsearch.laws.cmr.fit_cmr`). A search that places its runs where they tell the
most needs one law over every run instead: the **surface**

    ΔL(R, T, N) = c + (1 − R^s) · a0 · t^p0 + R^s · a1 · ν^(−κ) · t^p1,   t = T / 1e9,  ν = N / n_ref,

the loss increment over the base model. At R = 0 (pure replay) it follows a0·t^p0, at
R = 1 (pure domain data) a1·ν^(−κ)·t^p1, and in between it moves between them as R^s.
At one T it is the paper's ratio law α·R^s + β; at one R the paper's increment law, a sum
of two power terms in T plus an offset; κ lets larger base models forget less (it is held
at 0, and so the surface size-free, when every run has one N). The critical ratio has a
closed form (:func:`surface_cmr`).

The fit is a maximum a-posteriori one: for each exponent on a grid the linear
coefficients (a1, a0, c) are solved by least squares, the best grid points are refined
by bounded robust least squares (a Huber loss at :data:`HUBER_SIGMAS` noise floors) over
every parameter, and the exponents carry a weak Gaussian prior (so a handful of runs gives
a definite, if uncertain, surface). Intervals come from a parametric bootstrap:
observations redrawn around the fit with its residual scale (at least ``noise_floor``)
and refitted. A parametric bootstrap rather than one over runs: with a dozen runs at a few
token counts, resampling runs often drops a whole token count and the surface with it.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
from scipy.optimize import least_squares

from mixsearch.laws.cmr import SURFACE_NAMES, T_UNIT, CMRLaw, surface_value
from mixsearch.laws.fit import FitError
from mixsearch.laws.law import base_provenance

_P_GRID = (0.0, 0.15, 0.3, 0.5, 0.75, 1.0, 1.5)
_S_GRID = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
_K_GRID = (-0.5, 0.0, 0.25, 0.5, 1.0)
# Bounds and the weak prior (mean, sd) of the exponents p1, p0, s, kappa.
_BOUNDS = {"p1": (0.0, 3.0), "p0": (0.0, 3.0), "s": (0.05, 5.0), "kappa": (-1.0, 2.0)}
_PRIOR = {"p1": (0.5, 1.0), "p0": (0.5, 1.0), "s": (1.0, 1.0), "kappa": (0.0, 1.0)}
MIN_POINTS = 3  # the three linear coefficients; the exponents lean on the prior below 7
SURFACE_DRAWS = 50
HUBER_SIGMAS = 1.345  # the Huber threshold in noise floors (95 % efficiency under Gaussian noise)


def surface_cmr(theta: np.ndarray, T: float, N: float, n_ref: float, limit: float) -> np.ndarray:
    """CMR(T, N): the largest R in [0, 1] whose increment stays at or below ``limit``, per row.

    With g0 = ΔL(0, T, N), g1 = ΔL(1, T, N) and ΔL(R) = g0 + R^s (g1 − g0): when g1 > g0 the
    increment grows with R and CMR = ((limit − g0) / (g1 − g0))^(1/s), clipped to [0, 1] (0
    when even pure replay exceeds the limit); when it does not grow, CMR is 1 if pure
    domain data stays within the limit, else 0.

    Args:
        theta: ``[B, 7]`` (or ``[7]``) parameter rows.
        T, N: The continued tokens and base-model size.
        n_ref: The surface's reference size.
        limit: The largest increment allowed (ε·L0, or ε).

    Returns:
        ``[B]`` critical ratios (a float for one row).
    """
    th = np.atleast_2d(np.asarray(theta, dtype=float))
    g0 = surface_value(th, np.array([0.0]), np.array([T]), np.array([N]), n_ref)[:, 0]
    g1 = surface_value(th, np.array([1.0]), np.array([T]), np.array([N]), n_ref)[:, 0]
    s = th[:, 4]
    d = g1 - g0
    with np.errstate(divide="ignore", invalid="ignore"):
        rising = np.clip((limit - g0) / np.where(d > 0, d, 1.0), 0.0, None) ** (1.0 / s)
    out = np.where(d > 0, np.where(g0 > limit, 0.0, np.minimum(rising, 1.0)), np.where(g1 <= limit, 1.0, 0.0))
    return float(out[0]) if np.ndim(theta) == 1 else out


@dataclass(frozen=True)
class SurfaceFit:
    """A fitted surface.

    Attributes:
        theta: ``[7]`` the MAP parameters (:data:`SURFACE_NAMES` order).
        draws: ``[B, 7]`` parametric-bootstrap refits, or None.
        sigma: The residual scale the draws were made with (at least the noise floor).
        rmse: In-sample residual RMS.
        n: Points fitted.
        n_ref: The reference size.
        fixed_kappa: Whether κ was held at 0 (one base-model size).
        residuals: ``[n]`` observed minus fitted.
        floor: The noise floor (the Huber threshold is ``HUBER_SIGMAS`` of it).
        cost: The fit's objective (robust data term plus prior), at the optimum.
        seed: Seed of the draws.
    """

    theta: np.ndarray
    draws: np.ndarray | None
    sigma: float
    rmse: float
    n: int
    n_ref: float
    fixed_kappa: bool
    residuals: np.ndarray = field(default_factory=lambda: np.zeros(0))
    floor: float = 0.0
    cost: float = 0.0
    seed: int = 0

    def value(self, R: Any, T: Any, N: Any) -> np.ndarray:
        """``[m]`` the point estimate at inputs (broadcast)."""
        r, t, n = np.broadcast_arrays(*(np.atleast_1d(np.asarray(v, dtype=float)) for v in (R, T, N)))
        return surface_value(self.theta, r, t, n, self.n_ref)

    def cmr(self, T: float, N: float, limit: float) -> float:
        """The point estimate of CMR(T, N)."""
        return float(surface_cmr(self.theta, T, N, self.n_ref, limit))


def _design(R: np.ndarray, t: np.ndarray, nu: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """``[G, n, 3]`` the columns multiplying (a1, a0, c) for each grid row (p1, p0, s, kappa)."""
    p1, p0, s, k = (grid[:, j, None] for j in range(4))
    with np.errstate(divide="ignore", invalid="ignore"):
        rs = np.where(R[None, :] > 0, np.power(np.where(R[None, :] > 0, R[None, :], 1.0), s), 0.0)
    g1 = rs * np.power(nu[None, :], -k) * np.power(t[None, :], p1)
    g0 = (1.0 - rs) * np.power(t[None, :], p0)
    return np.stack([g1, g0, np.ones_like(g1)], axis=-1)


def _prior_penalty(nonlinear: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """``[G]`` Σ ((θ − μ) / τ)² of exponent rows ``[G, len(names)]``."""
    mu = np.array([_PRIOR[n][0] for n in names])
    tau = np.array([_PRIOR[n][1] for n in names])
    return (((nonlinear - mu) / tau) ** 2).sum(axis=1)


def _fit_once(R: np.ndarray, t: np.ndarray, nu: np.ndarray, y: np.ndarray, sigma: float, fixed_kappa: bool, grid: np.ndarray, starts: int = 3) -> tuple[np.ndarray, float]:
    """The MAP parameters ``[7]`` for one data set (and the objective there): grid with linear
    solves, then bounded robust refinement."""
    X = _design(R, t, nu, grid)  # [G, n, 3]
    XtX = np.einsum("gni,gnj->gij", X, X) + 1e-10 * np.eye(3)
    Xty = np.einsum("gni,n->gi", X, y)
    beta = np.linalg.solve(XtX, Xty[..., None])[..., 0]  # [G, 3]
    resid = np.einsum("gni,gi->gn", X, beta) - y[None, :]
    score = (resid**2).sum(axis=1) / sigma**2 + _prior_penalty(grid, ("p1", "p0", "s", "kappa"))
    free = ("p1", "p0", "s") if fixed_kappa else ("p1", "p0", "s", "kappa")
    lo = [-np.inf, _BOUNDS["p1"][0], -np.inf, _BOUNDS["p0"][0], _BOUNDS["s"][0], -np.inf] + ([] if fixed_kappa else [_BOUNDS["kappa"][0]])
    hi = [np.inf, _BOUNDS["p1"][1], np.inf, _BOUNDS["p0"][1], _BOUNDS["s"][1], np.inf] + ([] if fixed_kappa else [_BOUNDS["kappa"][1]])
    mu = np.array([_PRIOR[n][0] for n in free])
    tau = np.array([_PRIOR[n][1] for n in free])

    def full(x: np.ndarray) -> np.ndarray:
        return np.array([x[0], x[1], x[2], x[3], x[4], x[5], 0.0 if fixed_kappa else x[6]])

    def residuals(x: np.ndarray) -> np.ndarray:
        th = full(x)
        model = surface_value(th, R, t * T_UNIT, nu, 1.0)
        nonlinear = np.array([th[1], th[3], th[4]] + ([] if fixed_kappa else [th[6]]))
        return np.concatenate([(model - y) / sigma, (nonlinear - mu) / tau])

    best, best_cost = None, math.inf
    for g in np.argsort(score)[:starts]:
        p1, p0, s, k = grid[g]
        a1, a0, c = beta[g]
        x0 = np.array([a1, p1, a0, p0, s, c] + ([] if fixed_kappa else [k]))
        x0 = np.clip(x0, np.array(lo) + 1e-9, np.array(hi) - 1e-9)
        try:
            res = least_squares(residuals, x0, bounds=(lo, hi), method="trf", x_scale="jac", loss="huber", f_scale=HUBER_SIGMAS, max_nfev=400)
        except (ValueError, np.linalg.LinAlgError):
            continue
        if np.isfinite(res.cost) and res.cost < best_cost:
            best, best_cost = res.x, float(res.cost)
    if best is None:
        raise FitError("the surface could not be fitted (no start converged)")
    return full(best), best_cost


def _grid(fixed_kappa: bool) -> np.ndarray:
    kappas = (0.0,) if fixed_kappa else _K_GRID
    return np.array(list(itertools.product(_P_GRID, _P_GRID, _S_GRID, kappas)), dtype=float)


def fit_surface(
    R: Any,
    T: Any,
    N: Any,
    increment: Any,
    noise_floor: float,
    draws: int = 0,
    seed: int = 0,
    n_ref: float | None = None,
    inflate: float = 1.0,
) -> SurfaceFit:
    """Fit the continual pre-training surface to loss increments.

    Args:
        R: ``[n]`` ratios of the new domain.
        T: ``[n]`` continued tokens (> 0).
        N: ``[n]`` base-model sizes.
        increment: ``[n]`` loss minus the base model's loss.
        noise_floor: The smallest residual scale assumed (a loss measurement is never exact).
        draws: Parametric-bootstrap refits (0: none).
        seed: Seed of the draws.
        n_ref: Reference size (default the largest N).
        inflate: Multiply the residual scale of the draws by this (>= 1: a measured
            extrapolation error larger than the draws alone explain).

    Raises:
        FitError: fewer than :data:`MIN_POINTS` points, or no start converged.
    """
    r, t_tok, n_arr, y = (np.asarray(v, dtype=float).reshape(-1) for v in (R, T, N, increment))
    if not (r.size == t_tok.size == n_arr.size == y.size):
        raise ValueError(f"R, T, N and the increments must have the same length, got {r.size}, {t_tok.size}, {n_arr.size}, {y.size}")
    ok = np.isfinite(r) & np.isfinite(t_tok) & np.isfinite(n_arr) & np.isfinite(y) & (t_tok > 0) & (n_arr > 0)
    r, t_tok, n_arr, y = r[ok], t_tok[ok], n_arr[ok], y[ok]
    if r.size < MIN_POINTS:
        raise FitError(f"the surface needs {MIN_POINTS} runs, got {r.size}")
    ref = float(n_ref if n_ref is not None else n_arr.max())
    fixed_kappa = np.unique(n_arr).size < 2
    t, nu = t_tok / T_UNIT, n_arr / ref
    grid = _grid(fixed_kappa)
    floor = max(float(noise_floor), 1e-9)
    theta, cost = _fit_once(r, t, nu, y, floor, fixed_kappa, grid)
    fitted = surface_value(theta, r, t_tok, nu, 1.0)
    resid = y - fitted
    n_free = 6 if fixed_kappa else 7
    rmse = float(np.sqrt(np.mean(resid**2)))
    sigma_hat = float(np.sqrt(np.sum(resid**2) / (r.size - n_free))) if r.size > n_free else 0.0
    sigma = max(sigma_hat, floor) * max(float(inflate), 1.0)
    samples = None
    if draws > 0:
        rng = np.random.default_rng(seed)
        rows = []
        for _ in range(draws):
            y_star = fitted + sigma * rng.standard_normal(y.size)
            try:
                rows.append(_fit_once(r, t, nu, y_star, max(floor, sigma), fixed_kappa, grid, starts=2)[0])
            except FitError:
                continue
        samples = np.array(rows) if rows else None
    return SurfaceFit(theta, samples, sigma, rmse, int(r.size), ref, bool(fixed_kappa), resid, floor, cost, int(seed))


def surface_law(fit: SurfaceFit, R: np.ndarray, T: np.ndarray, N: np.ndarray, y: np.ndarray, which: str, level: float, extra: Mapping[str, Any], provenance: Mapping[str, Any] | None = None) -> CMRLaw:
    """The fitted surface as a Law (kind ``cmr``, form ``surface``), ready for the JSON export.

    ``predict(R=, T=, N=)`` gives the ``which`` (general or domain) loss increment over the base model.
    """
    return CMRLaw(
        name=f"cmr.surface.{which}",
        form="surface",
        params=dict(zip(SURFACE_NAMES, (float(v) for v in fit.theta))),
        samples=fit.draws,
        level=level,
        inputs={
            "R": {"unit": "fraction", "normalisation": "none", "description": "domain-data ratio of the mixture"},
            "T": {"unit": "tokens", "normalisation": "divided by 1e9 in the formula", "description": "continual pre-training tokens"},
            "N": {"unit": "parameters", "normalisation": f"divided by n_ref = {fit.n_ref:.4g}", "description": "base model size"},
        },
        output={"name": f"{which} loss increment", "unit": "nats/token"},
        data_range={"R": (float(np.min(R)), float(np.max(R))), "T": (float(np.min(T)), float(np.max(T))), "N": (float(np.min(N)), float(np.max(N)))},
        diagnostics={
            "n_points": fit.n,
            "objective": fit.cost,
            "rmse": fit.rmse,
            "rmse_natural": fit.rmse,
            "residual_scale": fit.sigma,
            "residuals": [float(v) for v in fit.residuals],
            "bootstrap_resamples": 0 if fit.draws is None else int(fit.draws.shape[0]),
            "converged": True,
        },
        settings={
            "loss": "huber",
            "huber_delta": HUBER_SIGMAS * fit.floor,
            "space": "linear",
            "optimiser": "exponent grid with linear solves, then bounded trust-region least squares (MAP: weak Gaussian prior on the exponents)",
            "bootstrap": 0 if fit.draws is None else int(fit.draws.shape[0]),
            "seed": fit.seed,
        },
        provenance=base_provenance(provenance),
        extra={
            "loss": which,
            "n_ref": fit.n_ref,
            "kappa_fixed": fit.fixed_kappa,
            "noise_floor": fit.floor,
            "bootstrap_method": "parametric: observations redrawn around the fit with its residual scale, refitted",
            "prior": {k: {"mean": m, "sd": sd} for k, (m, sd) in _PRIOR.items() if not (fit.fixed_kappa and k == "kappa")},
            **dict(extra),
        },
        data={"R": [float(v) for v in R], "T": [float(v) for v in T], "N": [float(v) for v in N], "y": [float(v) for v in y]},
    )
