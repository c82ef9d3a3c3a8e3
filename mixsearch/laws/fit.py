"""Robust fitting of scaling laws.

Huber loss on residuals in log space where the law allows it (log L̂ is then a
logsumexp of terms, as in Hoffmann et al. 2022), multi-start L-BFGS-B from the best
points of a grid, analytic gradients and tight tolerances, a bootstrap over runs for
intervals, and K-fold (or leave-one-out) held-out error.

A law enters this module as a :class:`Formula`: named internal parameters θ, a
vectorised value function, its Jacobian, a grid of initial points and bounds.
Nothing here knows a particular law; :mod:`mixsearch.laws.tied` fits several curves of
one formula together with some parameters shared (one exponent for all domains, say).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np
from scipy.optimize import minimize

HUBER_DELTA = 1e-3  # Hoffmann et al. 2022, and Epoch's replication
_SCREEN_BLOCK = 512  # grid rows evaluated at once while screening starts


class FitError(RuntimeError):
    """A fit that failed: too few points, no finite start, or no optimiser run that ended usefully."""


@dataclass(frozen=True)
class FitOptions:
    """How a law is fitted.

    Attributes:
        huber_delta: Huber loss threshold δ, in the units of the fitting space
            (log loss for log-space laws, so 1e-3 is 0.1 %).
        n_starts: How many of the best grid points to optimise from; ``None``
            optimises from every grid point (Hoffmann's procedure, slower).
        method: ``"L-BFGS-B"`` (honours bounds) or ``"BFGS"`` (ignores them).
        ftol: Relative objective change at which L-BFGS-B stops, on the objective
            scaled to mean Huber / δ (about the mean |residual| / δ, so of order
            one or more). SciPy's defaults applied to the raw Σ Huber (of order
            1e-3) stop early on the Chinchilla objective; scaled and with this
            tolerance the fit ends at a stationary point (tests check it).
        gtol: Largest projected gradient component at which the optimiser stops,
            on the same scaled objective.
        maxiter: Iteration limit per start.
        bootstrap: Bootstrap resamples over runs (0: no intervals).
        bootstrap_starts: Starts per resample: the best optimum of the full fit,
            then the next distinct local optima.
        level: Central probability of reported intervals (0.95: 2.5 %–97.5 %).
        cv_folds: Folds of the held-out error (0: off, -1: leave-one-out).
        seed: Seed of the resampling and of the folds.
        keep_samples: Bootstrap parameter draws kept in an exported law (the rest
            are summarised by intervals and the covariance).
    """

    huber_delta: float = HUBER_DELTA
    n_starts: int | None = 32
    method: str = "L-BFGS-B"
    ftol: float = 1e-12
    gtol: float = 1e-8
    maxiter: int = 5000
    bootstrap: int = 200
    bootstrap_starts: int = 1
    level: float = 0.95
    cv_folds: int = 5
    seed: int = 0
    keep_samples: int = 200

    def __post_init__(self) -> None:
        if not (isinstance(self.huber_delta, (int, float)) and self.huber_delta > 0):
            raise ValueError(f"FitOptions.huber_delta: must be > 0, got {self.huber_delta!r}")
        if self.n_starts is not None and (not isinstance(self.n_starts, int) or self.n_starts < 1):
            raise ValueError(f"FitOptions.n_starts: must be an integer >= 1 or None, got {self.n_starts!r}")
        if self.method not in ("L-BFGS-B", "BFGS"):
            raise ValueError(f"FitOptions.method: must be 'L-BFGS-B' or 'BFGS', got {self.method!r}")
        for name in ("ftol", "gtol"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and v > 0):
                raise ValueError(f"FitOptions.{name}: must be > 0, got {v!r}")
        for name, low in (("maxiter", 1), ("bootstrap", 0), ("bootstrap_starts", 1), ("keep_samples", 0)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise ValueError(f"FitOptions.{name}: must be an integer >= {low}, got {v!r}")
        if not (isinstance(self.level, float) and 0.0 < self.level < 1.0):
            raise ValueError(f"FitOptions.level: must be a float in (0, 1), got {self.level!r}")
        if not isinstance(self.cv_folds, int) or self.cv_folds < -1 or self.cv_folds == 1:
            raise ValueError(f"FitOptions.cv_folds: must be 0 (off), -1 (leave-one-out) or >= 2, got {self.cv_folds!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"FitOptions.seed: must be a non-negative integer, got {self.seed!r}")

    def replace(self, **changes: object) -> "FitOptions":
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(d: dict[str, object]) -> "FitOptions":
        known = {f.name for f in dataclasses.fields(FitOptions)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"FitOptions: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return FitOptions(**d)  # type: ignore[arg-type]


class Formula(Protocol):
    """What the fitter needs to know about a law.

    Attributes:
        names: Internal parameter names, the order of θ.
        log_space: Whether ``value`` returns log L̂ (the targets are then log y).
    """

    names: tuple[str, ...]
    log_space: bool

    def value(self, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        """The law in the fitting space.

        Args:
            theta: ``[..., p]`` parameter vectors.
            x: ``[n, d]`` inputs.

        Returns:
            ``[..., n]`` predictions (log L̂ when ``log_space``).
        """
        ...

    def jacobian(self, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        """``[n, p]`` derivative of ``value(theta, x)`` with respect to θ ``[p]``.

        A formula may also define ``value_and_jacobian(theta [p], x) -> ([n], [n, p])``
        to share work between the two; the fitter uses it when present.
        """
        ...

    def initial_grid(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """``[G, p]`` initial points; may depend on the data ``x [n, d]``, ``y [n]`` (natural units)."""
        ...

    def bounds(self) -> list[tuple[float | None, float | None]] | None:
        """Box bounds on θ for L-BFGS-B, or ``None``."""
        ...


def logsumexp_terms(terms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stable log Σ_k exp(terms[k]) and the softmax weights.

    Args:
        terms: ``[k, ...]`` log-terms.

    Returns:
        ``(lse [...], weights [k, ...])``; the weights are d lse / d terms.
    """
    m = np.max(terms, axis=0)
    m = np.where(np.isfinite(m), m, 0.0)
    e = np.exp(terms - m)
    s = e.sum(axis=0)
    return m + np.log(s), e / s


def huber(r: np.ndarray, delta: float) -> np.ndarray:
    """Huber loss of residuals ``r`` (any shape): quadratic within δ, linear outside."""
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def huber_objective(formula: Formula, theta: np.ndarray, x: np.ndarray, target: np.ndarray, delta: float) -> tuple[float, np.ndarray]:
    """Σ Huber(value - target) and its gradient with respect to θ.

    This is the objective as Hoffmann et al. state it; the optimiser minimises it
    divided by ``δ · n`` so that tolerances mean the same for every law and table.

    Args:
        formula: The law.
        theta: ``[p]`` parameters.
        x: ``[n, d]`` inputs.
        target: ``[n]`` observations in the fitting space.
        delta: Huber threshold.

    Returns:
        ``(objective, gradient [p])``.
    """
    both = getattr(formula, "value_and_jacobian", None)
    if both is not None:
        f, jac = both(theta, x)
    else:
        f, jac = formula.value(theta, x), None
    r = f - target
    if not np.all(np.isfinite(r)):
        return math.inf, np.zeros_like(theta)
    psi = np.clip(r, -delta, delta)  # dHuber/dr
    if jac is None:
        jac = formula.jacobian(theta, x)
    return float(huber(r, delta).sum()), jac.T @ psi


@dataclass(frozen=True)
class FitResult:
    """A fitted formula: the optimum, how it was reached, and its uncertainty.

    Attributes:
        theta: ``[p]`` best internal parameters.
        names: Internal parameter names.
        objective: Σ Huber(residuals) at ``theta``.
        residuals: ``[n]`` observation minus prediction, in the fitting space.
        predictions: ``[n]`` predictions in natural units.
        converged: Whether the best start ended at a stationary point.
        n_iter: Iterations of the best start.
        message: The optimiser's message for the best start.
        grad_norm: Largest gradient component of the scaled objective at ``theta``.
        n_starts: Starts optimised.
        optima: ``[k, p]`` distinct local optima found, best first.
        bootstrap: ``[B, p]`` parameters refitted on resamples of the runs, or ``None``.
        bootstrap_failed: Resamples whose refit failed (left out of ``bootstrap``).
        cv_rmse: Held-out root-mean-square error in natural units, or ``None``.
        cv_folds: Folds used for ``cv_rmse`` (``n`` for leave-one-out; 0 when skipped).
        log_space: Whether residuals are in log space.
        options: The options used.
    """

    theta: np.ndarray
    names: tuple[str, ...]
    objective: float
    residuals: np.ndarray
    predictions: np.ndarray
    converged: bool
    n_iter: int
    message: str
    grad_norm: float
    n_starts: int
    optima: np.ndarray
    bootstrap: np.ndarray | None
    bootstrap_failed: int
    cv_rmse: float | None
    cv_folds: int
    log_space: bool
    options: FitOptions

    @property
    def n_points(self) -> int:
        return int(self.residuals.shape[0])

    @property
    def rmse(self) -> float:
        """Root-mean-square residual in the fitting space."""
        return float(np.sqrt(np.mean(self.residuals**2)))

    @property
    def residual_scale(self) -> float:
        """Robust standard deviation of the residuals (1.4826 · MAD), in the fitting space."""
        r = self.residuals
        return float(1.4826 * np.median(np.abs(r - np.median(r))))


def fit_model(
    formula: Formula,
    x: np.ndarray,
    y: np.ndarray,
    options: FitOptions | None = None,
    strata: np.ndarray | None = None,
    warm_starts: np.ndarray | None = None,
) -> FitResult:
    """Fit a law to data by robust multi-start optimisation, with bootstrap and held-out error.

    Args:
        formula: The law to fit.
        x: ``[n, d]`` (or ``[n]``) inputs.
        y: ``[n]`` observations in natural units (positive for log-space laws).
        options: Fit options; defaults to :class:`FitOptions()`.
        strata: ``[n]`` labels; bootstrap resamples and folds are drawn within each
            label (for tied fits, every curve stays represented).
        warm_starts: ``[s, p]`` extra initial points tried beside the grid.

    Returns:
        The fit.

    Raises:
        ValueError: bad shapes or non-finite data, or non-positive ``y`` for a log-space law.
        FitError: fewer points than parameters, or no start that ended with a finite objective.
    """
    opts = options or FitOptions()
    x, y = _check_data(formula, x, y)
    n, p = x.shape[0], len(formula.names)
    if n < p:
        raise FitError(f"{n} points cannot determine {p} parameters ({', '.join(formula.names)})")
    target = np.log(y) if formula.log_space else y
    grid = np.asarray(formula.initial_grid(x, y), dtype=float)
    if warm_starts is not None:
        grid = np.vstack([np.asarray(warm_starts, dtype=float).reshape(-1, p), grid])
    starts = screen_starts(formula, grid, x, target, opts)
    runs = run_starts(formula, x, target, starts, opts)
    if not runs:
        raise FitError(f"no start of {len(starts)} reached a finite objective")
    best = runs[0]
    theta = np.asarray(best.x, dtype=float)
    optima = _distinct_optima([r.x for r in runs])
    objective, grad = huber_objective(formula, theta, x, target, opts.huber_delta)
    fitted = formula.value(theta, x)
    samples, failed = _bootstrap(formula, x, target, optima, opts, strata)
    cv_rmse, folds = _cross_validate(formula, x, y, target, optima, opts, strata)
    return FitResult(
        theta=theta,
        names=tuple(formula.names),
        objective=objective,
        residuals=target - fitted,
        predictions=np.exp(fitted) if formula.log_space else fitted,
        converged=_converged(best, grad, opts, n),
        n_iter=int(getattr(best, "nit", 0)),
        message=str(best.message),
        grad_norm=float(np.max(np.abs(_project(grad / (opts.huber_delta * n), theta, formula.bounds())))),
        n_starts=len(starts),
        optima=optima,
        bootstrap=samples,
        bootstrap_failed=failed,
        cv_rmse=cv_rmse,
        cv_folds=folds,
        log_space=formula.log_space,
        options=opts,
    )


def _check_data(formula: Formula, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float).reshape(-1)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"x must be [n, d] with n = len(y) = {y.shape[0]}, got shape {x.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("inputs and observations must be finite numbers")
    if formula.log_space and np.any(y <= 0):
        raise ValueError("a log-space law needs positive observations")
    return x, y


def _scaled(theta: np.ndarray, formula: Formula, x: np.ndarray, target: np.ndarray, delta: float) -> tuple[float, np.ndarray]:
    # Mean Huber / δ is about the mean |residual| in the linear regime: the same
    # tolerances then suit every law, table size and δ.
    f, g = huber_objective(formula, theta, x, target, delta)
    scale = 1.0 / (delta * x.shape[0])
    if not math.isfinite(f):
        return 1e300, np.zeros_like(theta)
    return f * scale, g * scale


def screen_starts(formula: Formula, grid: np.ndarray, x: np.ndarray, target: np.ndarray, opts: FitOptions) -> np.ndarray:
    """The ``n_starts`` grid points ``[s, p]`` with the smallest objective."""
    grid = _clip(grid, formula.bounds())
    if opts.n_starts is None or grid.shape[0] <= opts.n_starts:
        return grid
    scores = np.empty(grid.shape[0])
    for i in range(0, grid.shape[0], _SCREEN_BLOCK):
        block = grid[i : i + _SCREEN_BLOCK]
        with np.errstate(over="ignore", invalid="ignore"):
            r = formula.value(block, x) - target
        s = huber(r, opts.huber_delta).sum(axis=-1)
        scores[i : i + _SCREEN_BLOCK] = np.where(np.isfinite(s), s, np.inf)
    order = np.argsort(scores, kind="stable")[: opts.n_starts]
    return grid[order]


def _clip(grid: np.ndarray, bounds: list[tuple[float | None, float | None]] | None) -> np.ndarray:
    if not bounds:
        return grid
    lo = np.array([-np.inf if b[0] is None else b[0] for b in bounds])
    hi = np.array([np.inf if b[1] is None else b[1] for b in bounds])
    return np.clip(grid, lo, hi)


def run_starts(formula: Formula, x: np.ndarray, target: np.ndarray, starts: np.ndarray, opts: FitOptions) -> list:
    """Optimise from every start; the results with a finite objective, best first."""
    bounds = formula.bounds() if opts.method == "L-BFGS-B" else None
    if opts.method == "L-BFGS-B":
        settings = {"ftol": opts.ftol, "gtol": opts.gtol, "maxiter": opts.maxiter, "maxfun": 4 * opts.maxiter, "maxcor": 20, "maxls": 50}
    else:
        settings = {"gtol": opts.gtol, "maxiter": opts.maxiter}
    runs = []
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for s in starts:
            res = minimize(_scaled, s, args=(formula, x, target, opts.huber_delta), jac=True, method=opts.method, bounds=bounds, options=settings)
            if np.isfinite(res.fun) and res.fun < 1e299:
                runs.append(res)
    runs.sort(key=lambda r: r.fun)
    return runs


def _project(grad: np.ndarray, theta: np.ndarray, bounds: list[tuple[float | None, float | None]] | None) -> np.ndarray:
    """The gradient with components pushing into an active bound removed (KKT check)."""
    if not bounds:
        return grad
    g = grad.copy()
    for j, (lo, hi) in enumerate(bounds):
        if lo is not None and theta[j] <= lo + 1e-12 and g[j] > 0:
            g[j] = 0.0
        if hi is not None and theta[j] >= hi - 1e-12 and g[j] < 0:
            g[j] = 0.0
    return g


def _converged(res: object, grad: np.ndarray, opts: FitOptions, n: int) -> bool:
    # L-BFGS-B reports ABNORMAL_TERMINATION_IN_LNSRCH when it is already at the optimum
    # to machine precision; a small projected gradient is the honest test.
    if getattr(res, "success", False):
        return True
    theta = np.asarray(getattr(res, "x"))
    return bool(np.max(np.abs(grad)) / (opts.huber_delta * n) <= max(1e3 * opts.gtol, 1e-6)) and np.all(np.isfinite(theta))


def _distinct_optima(thetas: Sequence[np.ndarray], limit: int = 8) -> np.ndarray:
    kept: list[np.ndarray] = []
    for t in thetas:
        t = np.asarray(t, dtype=float)
        if all(not np.allclose(t, k, rtol=1e-4, atol=1e-6) for k in kept):
            kept.append(t)
        if len(kept) >= limit:
            break
    return np.stack(kept)


def _resample(rng: np.random.Generator, n: int, strata: np.ndarray | None) -> np.ndarray:
    if strata is None:
        return rng.integers(0, n, size=n)
    parts = []
    for s in np.unique(strata):
        rows = np.flatnonzero(strata == s)
        parts.append(rows[rng.integers(0, rows.size, size=rows.size)])
    return np.concatenate(parts)


def _bootstrap(formula: Formula, x: np.ndarray, target: np.ndarray, optima: np.ndarray, opts: FitOptions, strata: np.ndarray | None) -> tuple[np.ndarray | None, int]:
    if opts.bootstrap == 0:
        return None, 0
    rng = np.random.default_rng(opts.seed)
    starts = optima[: opts.bootstrap_starts]
    samples, failed = [], 0
    for _ in range(opts.bootstrap):
        idx = _resample(rng, x.shape[0], strata)
        runs = run_starts(formula, x[idx], target[idx], starts, opts)
        if runs:
            samples.append(np.asarray(runs[0].x, dtype=float))
        else:
            failed += 1
    return (np.stack(samples) if samples else None), failed


def _folds(rng: np.random.Generator, n: int, k: int, strata: np.ndarray | None) -> list[np.ndarray]:
    fold_of = np.empty(n, dtype=int)
    groups = [np.arange(n)] if strata is None else [np.flatnonzero(strata == s) for s in np.unique(strata)]
    offset = 0
    for rows in groups:
        perm = rng.permutation(rows)
        fold_of[perm] = (np.arange(perm.size) + offset) % k
        offset += perm.size
    return [np.flatnonzero(fold_of == f) for f in range(k)]


def _cross_validate(
    formula: Formula, x: np.ndarray, y: np.ndarray, target: np.ndarray, optima: np.ndarray, opts: FitOptions, strata: np.ndarray | None
) -> tuple[float | None, int]:
    n, p = x.shape[0], len(formula.names)
    if opts.cv_folds == 0:
        return None, 0
    k = n if opts.cv_folds == -1 else min(opts.cv_folds, n)
    folds = _folds(np.random.default_rng(opts.seed + 1), n, k, strata)
    if n - max(f.size for f in folds) < p + 1:
        return None, 0  # too few points left to refit without leaving the law undetermined
    starts = optima[: opts.bootstrap_starts]
    errors = np.empty(n)
    for test in folds:
        train = np.setdiff1d(np.arange(n), test)
        runs = run_starts(formula, x[train], target[train], starts, opts)
        if not runs:
            return None, 0
        pred = formula.value(np.asarray(runs[0].x), x[test])
        errors[test] = y[test] - (np.exp(pred) if formula.log_space else pred)
    return float(np.sqrt(np.mean(errors**2))), k
