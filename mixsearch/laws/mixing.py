"""Data mixing laws (Ye et al. 2024, arXiv 2403.16952).

Per validation domain i, the loss as a function of the training mixture r:
L_i(r) = c_i + k_i · exp(Σ_j t_ij r_j), and the total as a weighted sum Σ_i w_i L_i.

Fitted in log space, log L̂_i = LSE(log c_i, v_i · r). Because the mixture sums to one,
k_i and a common shift of t_i are one degree of freedom; the fit uses v_i and reports
k_i = exp(mean_j v_ij), t_ij = v_ij − mean_j v_ij (so Σ_j t_ij = 0).

The nested pipeline predicts losses at a target scale first — a step law
L(S) = E + B/S^β per run, a size law L(N) = E + A/N^α per mixture across the ladder —
and fits the mixing law on those predictions.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np
from scipy.optimize import minimize

from mixsearch.laws.asymptote import SaturatingPowerFormula
from mixsearch.laws.fit import FitError, FitOptions, FitResult, fit_model, fit_tied, logsumexp_terms
from mixsearch.laws.law import Law, base_provenance, check_inputs, fit_settings, keep_draws

FORMULA = "L_i(r) = c_i + k_i * exp(sum_j t_ij * r_j); L(r) = sum_i w_i L_i(r) / sum_i w_i"
_C_FRACTIONS = (1e-3, 0.25, 0.5, 0.7, 0.85, 0.95)
SUM_TOL = 0.02  # published tables round weights to 3 decimals; more drift is a wrong column


class MixingFormula:
    """log L̂ = LSE(log c, v · r); θ = (log c, v_1 … v_K), inputs ``[n, K]`` mixtures."""

    log_space = True

    def __init__(self, n_components: int) -> None:
        self.names = ("log_c",) + tuple(f"v{j}" for j in range(n_components))

    def value(self, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        theta = np.asarray(theta, dtype=float)
        exponent = theta[..., 1:] @ x.T  # [..., n]
        return logsumexp_terms(np.stack(np.broadcast_arrays(theta[..., :1], exponent)))[0]

    def jacobian(self, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        return self.value_and_jacobian(theta, x)[1]

    def value_and_jacobian(self, theta: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        exponent = x @ theta[1:]
        lse, w = logsumexp_terms(np.stack([np.full_like(exponent, theta[0]), exponent]))
        return lse, np.column_stack([w[0], w[1][:, None] * x])

    def initial_grid(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """c at fractions of min(y); v by least squares of log(y − c) on the mixture."""
        rows = []
        for frac in _C_FRACTIONS:
            c = frac * float(np.min(y))
            z = np.log(np.maximum(y - c, 1e-12 * float(np.max(y))))
            # A whisper of ridge keeps components that are always zero from blowing up.
            a = np.vstack([x, 1e-3 * np.eye(x.shape[1])])
            b = np.concatenate([z, np.full(x.shape[1], 1e-3 * float(np.mean(z)))])
            v = np.linalg.lstsq(a, b, rcond=None)[0]
            rows.append(np.concatenate([[np.log(c)], v]))
            rows.append(np.concatenate([[np.log(c)], np.full(x.shape[1], float(np.mean(z)))]))
        return np.array(rows)

    def bounds(self) -> list[tuple[float | None, float | None]]:
        return [(-25.0, None)] + [(None, None)] * (len(self.names) - 1)


def to_public(theta: np.ndarray) -> np.ndarray:
    """Internal (log c, v) ``[..., K+1]`` → public (c, k, t_1 … t_K) ``[..., K+2]`` with Σ t = 0."""
    theta = np.asarray(theta, dtype=float)
    v = theta[..., 1:]
    shift = v.mean(axis=-1, keepdims=True)
    return np.concatenate([np.exp(theta[..., :1]), np.exp(shift), v - shift], axis=-1)


def param_names(targets: Sequence[str], components: Sequence[str]) -> list[str]:
    """Public names: per target ``c[i]``, ``k[i]``, then ``t[i,j]`` for each component j."""
    names = []
    for t in targets:
        names += [f"c[{t}]", f"k[{t}]"] + [f"t[{t},{c}]" for c in components]
    return names


@dataclass(frozen=True)
class MixtureOptimum:
    """The best mixture under a fitted mixing law.

    Attributes:
        weights: Domain → weight, on the simplex within the bounds.
        value: Predicted total loss at ``weights``.
        lower: Lower end of its interval (``None`` without uncertainty).
        upper: Upper end.
        extrapolated: Whether a weight lies outside the range seen in the fitted runs.
    """

    weights: dict[str, float]
    value: float
    lower: float | None
    upper: float | None
    extrapolated: bool


@dataclass(frozen=True, eq=False)
class MixingLaw(Law):
    """Data mixing law over ``extra["components"]`` (training domains) for ``extra["targets"]``.

    ``predict(weights=...)`` gives the weighted total; ``target=`` picks one domain.
    ``N=``, ``steps=`` and ``D=`` may be passed and must match the scale the law was
    fitted for (``extra["scale"]``), so a planner cannot silently use a 1M law at 1B.
    """

    kind: ClassVar[str] = "mixing"

    @property
    def formula(self) -> str:
        return FORMULA

    @property
    def components(self) -> list[str]:
        return list(self.extra["components"])

    @property
    def targets(self) -> list[str]:
        return list(self.extra["targets"])

    def target_weights(self) -> np.ndarray:
        """``[T]`` weights of the targets in the total."""
        tw = self.extra.get("target_weights") or {}
        return np.array([float(tw.get(t, 1.0)) for t in self.targets])

    def mixture_array(self, weights: Any) -> np.ndarray:
        """Mixtures as ``[m, K]`` in component order, renormalised to sum to one.

        Args:
            weights: ``{domain: w}`` (missing domains are 0), a ``[K]`` vector or ``[m, K]`` rows.
        """
        return mixture_rows(weights, self.components)

    def _check_scale(self, inputs: dict[str, Any]) -> None:
        scale = self.extra.get("scale") or {}
        for key, label in (("N", "N"), ("steps", "steps"), ("D", "tokens")):
            v = inputs.get(key)
            if v is None:
                continue
            known = scale.get(label)
            if known is None:
                raise ValueError(f"{self.name}: {key}= given but the law records no {label} scale; it predicts at the scale it was fitted on")
            if not np.allclose(np.asarray(v, dtype=float), float(known), rtol=1e-6):
                raise ValueError(f"{self.name}: fitted for {label}={known:.6g}, asked for {key}={v}; refit at that scale (fit_nested(target_{key}=...))")

    def _parse(self, inputs: dict[str, Any]) -> tuple[dict[str, np.ndarray], bool]:
        check_inputs(self, inputs, ("weights",), ("N", "steps", "D", "target"))
        self._check_scale(inputs)
        target = inputs.get("target")
        if target is not None and target not in self.targets:
            raise ValueError(f"target: unknown {target!r}; the law has {', '.join(self.targets)}")
        w = inputs["weights"]
        scalar = isinstance(w, Mapping) or np.ndim(w) == 1
        x = {f"w_{c}": col for c, col in zip(self.components, self.mixture_array(w).T)}
        x["__target__"] = np.full(len(next(iter(x.values()))), -1 if target is None else self.targets.index(target))
        return x, scalar

    def _outside(self, x: dict[str, np.ndarray]) -> np.ndarray:
        return super()._outside({k: v for k, v in x.items() if k != "__target__"})

    def domain_losses(self, P: np.ndarray, r: np.ndarray) -> np.ndarray:
        """Per-target losses ``[B, T, m]`` for parameter rows ``P [B, p]`` and mixtures ``r [m, K]``."""
        k = len(self.components)
        blocks = P.reshape(P.shape[0], len(self.targets), k + 2)
        c, scale, t = blocks[..., 0], blocks[..., 1], blocks[..., 2:]
        return c[..., None] + scale[..., None] * np.exp(t @ r.T)

    def _evaluate(self, P: np.ndarray, x: dict[str, np.ndarray]) -> np.ndarray:
        r = np.column_stack([x[f"w_{c}"] for c in self.components])
        losses = self.domain_losses(P, r)
        target = int(x["__target__"][0])
        if target >= 0:
            return losses[:, target, :]
        tw = self.target_weights()
        return np.einsum("t,btm->bm", tw, losses) / tw.sum()

    def predict_domains(self, weights: Any) -> dict[str, np.ndarray | float]:
        """Each target's predicted loss at the point estimate."""
        r = self.mixture_array(weights)
        losses = self.domain_losses(self.vector()[None, :], r)[0]
        scalar = isinstance(weights, Mapping) or np.ndim(weights) == 1
        return {t: (float(v[0]) if scalar else v) for t, v in zip(self.targets, losses)}

    def optimum(
        self,
        lower: Mapping[str, float] | None = None,
        upper: Mapping[str, float] | None = None,
        n_starts: int = 16,
        seed: int = 0,
    ) -> MixtureOptimum:
        """The mixture minimising the predicted total on the simplex within per-domain bounds.

        SLSQP with the analytic gradient from ``n_starts`` feasible starts (the
        centre and Dirichlet / hit-and-run samples of the bounded simplex).

        Args:
            lower: Domain → lower bound (missing: 0).
            upper: Domain → upper bound (missing: 1).
            n_starts: Starts.
            seed: Seed of the starts.

        Raises:
            ValueError: unknown domains or an empty feasible set.
        """
        P = self.vector()[None, :]
        tw = self.target_weights() / self.target_weights().sum()
        k = len(self.components)
        blocks = P.reshape(len(self.targets), k + 2)

        def total(r: np.ndarray) -> tuple[float, np.ndarray]:
            e = blocks[:, 1] * np.exp(blocks[:, 2:] @ r)  # [T]
            return float(tw @ (blocks[:, 0] + e)), (tw * e) @ blocks[:, 2:]

        best_r = minimise_on_simplex(total, self.components, lower, upper, n_starts, seed)
        pred = self.predict(weights=best_r)
        return MixtureOptimum(
            weights={c: float(w) for c, w in zip(self.components, best_r)},
            value=float(pred.value),
            lower=pred.lower,
            upper=pred.upper,
            extrapolated=bool(pred.extrapolated),
        )


def mixture_rows(weights: Any, components: Sequence[str]) -> np.ndarray:
    """Mixtures to predict at, as ``[m, K]`` in component order, renormalised to sum to one.

    Args:
        weights: ``{domain: w}`` (missing domains are 0), a ``[K]`` vector or ``[m, K]`` rows.
        components: The K domain names, in column order.

    Raises:
        ValueError: unknown domains, a wrong width, negative weights, rows not summing to 1.
    """
    comps = list(components)
    if isinstance(weights, Mapping):
        unknown = sorted(set(weights) - set(comps))
        if unknown:
            raise ValueError(f"weights: unknown domain(s) {', '.join(unknown)}; the law knows {', '.join(comps)}")
        w = np.array([[float(weights.get(c, 0.0)) for c in comps]])
    else:
        w = np.atleast_2d(np.asarray(weights, dtype=float))
    if w.ndim != 2 or w.shape[1] != len(comps):
        raise ValueError(f"weights: expected {len(comps)} components ({', '.join(comps)}), got shape {np.shape(weights)}")
    if not np.all(np.isfinite(w)) or np.any(w < -1e-12):
        raise ValueError("weights: must be non-negative finite numbers")
    sums = w.sum(axis=1)
    if np.any(np.abs(sums - 1.0) > SUM_TOL):
        raise ValueError(f"weights: each mixture must sum to 1, got sums {np.round(sums[np.abs(sums - 1.0) > SUM_TOL][:3], 4).tolist()}")
    return np.clip(w, 0.0, None) / sums[:, None]


def training_mixtures(weights: Any, components: Sequence[str]) -> np.ndarray:
    """The fitted runs' mixtures as ``[n, K]``, checked and renormalised to sum to one.

    Raises:
        ValueError: a wrong width, negative or non-finite weights, a row not summing to 1 (named).
    """
    r = np.atleast_2d(np.asarray(weights, dtype=float))
    if r.shape[1] != len(components):
        raise ValueError(f"weights: expected {len(components)} columns ({', '.join(components)}), got {r.shape[1]}")
    if not np.all(np.isfinite(r)) or np.any(r < 0):
        raise ValueError("weights: must be non-negative finite numbers")
    sums = r.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > SUM_TOL)
    if bad.size:
        raise ValueError(f"weights: row {int(bad[0])} sums to {sums[bad[0]]:.4g}, not 1")
    return r / sums[:, None]


def target_weight_map(names: Sequence[str], target_weights: Mapping[str, float] | None) -> dict[str, float]:
    """Each target's weight in the total (default 1), checked against the target names."""
    tw = {t: float((target_weights or {}).get(t, 1.0)) for t in names}
    if target_weights:
        unknown = sorted(set(target_weights) - set(names))
        if unknown:
            raise ValueError(f"target_weights: unknown target(s) {', '.join(unknown)}")
    if sum(tw.values()) <= 0:
        raise ValueError("target_weights: sum to 0")
    return tw


def minimise_on_simplex(
    total: Callable[[np.ndarray], tuple[float, np.ndarray]],
    components: Sequence[str],
    lower: Mapping[str, float] | None = None,
    upper: Mapping[str, float] | None = None,
    n_starts: int = 16,
    seed: int = 0,
) -> np.ndarray:
    """The mixture ``[K]`` minimising ``total`` on the simplex within per-domain bounds.

    SLSQP with the analytic gradient from ``n_starts`` feasible starts (the centre and
    Dirichlet / hit-and-run samples of the bounded simplex).

    Args:
        total: ``r [K] -> (value, gradient [K])``.
        components: The K domain names.
        lower: Domain → lower bound (missing: 0).
        upper: Domain → upper bound (missing: 1).
        n_starts: Starts.
        seed: Seed of the starts.

    Raises:
        ValueError: unknown domains or an empty feasible set.
    """
    from mixsearch import simplex
    from mixsearch.study import SearchSpace

    comps = list(components)
    for label, bounds in (("lower", lower or {}), ("upper", upper or {})):
        unknown = sorted(set(bounds) - set(comps))
        if unknown:
            raise ValueError(f"{label}: unknown domain(s) {', '.join(unknown)}")
    space = SearchSpace(tuple(comps), dict(lower or {}), dict(upper or {}))
    lo, hi = simplex.bounds_arrays(space)
    if lo.sum() > 1 + 1e-9 or hi.sum() < 1 - 1e-9 or np.any(lo > hi):
        raise ValueError("bounds: the bounded simplex is empty")
    rng = np.random.default_rng(seed)
    starts = np.vstack([simplex.centre(space)[None, :], simplex.sample(max(n_starts - 1, 0), space, rng)])
    cons = [{"type": "eq", "fun": lambda r: r.sum() - 1.0, "jac": lambda r: np.ones_like(r)}]
    best_r, best_v = None, np.inf
    for s in starts:
        res = minimize(total, s, jac=True, method="SLSQP", bounds=list(zip(lo, hi)), constraints=cons, options={"ftol": 1e-12, "maxiter": 500})
        r = simplex.project(res.x, space)
        v = total(r)[0]
        if v < best_v:
            best_r, best_v = r, v
    assert best_r is not None
    return best_r


def loss_matrix(losses: Any, n: int) -> tuple[np.ndarray, list[str]]:
    if isinstance(losses, Mapping):
        names = list(losses)
        y = np.column_stack([np.asarray(losses[k], dtype=float).reshape(-1) for k in names])
    else:
        y = np.asarray(losses, dtype=float)
        y = y[:, None] if y.ndim == 1 else y
        names = ["loss"] if y.shape[1] == 1 else [f"target{i}" for i in range(y.shape[1])]
    if y.shape[0] != n:
        raise ValueError(f"losses: expected {n} rows (one per mixture), got {y.shape[0]}")
    if not np.all(np.isfinite(y)) or np.any(y <= 0):
        raise ValueError("losses: must be positive finite numbers")
    return y, names


def fit_mixing(
    weights: Any,
    losses: Any,
    components: Sequence[str],
    targets: Sequence[str] | None = None,
    target_weights: Mapping[str, float] | None = None,
    scale: Mapping[str, float | None] | None = None,
    options: FitOptions | None = None,
    name: str = "mixing",
    provenance: Mapping[str, Any] | None = None,
    include_data: bool = True,
) -> MixingLaw:
    """Fit a data mixing law, one exponential-linear curve per target domain.

    Every target is fitted with the same seed, so bootstrap draw b of every target
    comes from the same resample of runs and the total's interval is coherent.

    Args:
        weights: ``[n, K]`` training mixtures (rows renormalised to sum to one).
        losses: ``[n]`` or ``[n, T]`` positive losses, or ``{target: [n]}``.
        components: The K training domain names, in column order.
        targets: Target names when ``losses`` is an array (default ``loss`` / ``target<i>``).
        target_weights: Weight of each target in the total (default: equal).
        scale: The scale the runs were at: ``{"N": …, "steps": …, "tokens": …}``.
        options: Fit options.
        name: Law name.
        provenance: Recorded in the law.
        include_data: Keep the fitted runs in the law.

    Raises:
        ValueError: inconsistent shapes, rows not on the simplex, non-positive losses.
        FitError: fewer runs than K + 1, or no usable start.
    """
    comps = [str(c) for c in components]
    r = training_mixtures(weights, comps)
    y, default_names = loss_matrix(losses, r.shape[0])
    names = [str(t) for t in targets] if targets is not None else default_names
    if len(names) != y.shape[1]:
        raise ValueError(f"targets: {len(names)} names for {y.shape[1]} loss columns")
    tw = target_weight_map(names, target_weights)
    opts = options or FitOptions()
    formula = MixingFormula(len(comps))
    fits = [fit_model(formula, r, y[:, i], opts) for i in range(y.shape[1])]
    return _assemble(fits, r, y, comps, names, tw, scale, opts, name, provenance, include_data)


def _assemble(
    fits: list[FitResult],
    r: np.ndarray,
    y: np.ndarray,
    comps: list[str],
    names: list[str],
    tw: dict[str, float],
    scale: Mapping[str, float | None] | None,
    opts: FitOptions,
    name: str,
    provenance: Mapping[str, Any] | None,
    include_data: bool,
) -> MixingLaw:
    point = np.concatenate([to_public(f.theta) for f in fits])
    samples = None
    if all(f.bootstrap is not None for f in fits):
        b = min(f.bootstrap.shape[0] for f in fits)  # type: ignore[union-attr]
        samples = np.concatenate([to_public(f.bootstrap[:b]) for f in fits], axis=1)  # type: ignore[index]
    weights = np.array([tw[t] for t in names])
    total_obs = y @ weights / weights.sum()
    total_pred = np.column_stack([f.predictions for f in fits]) @ weights / weights.sum()
    log_res = np.log(total_obs) - np.log(total_pred)
    per_target = {
        t: {"rmse": f.rmse, "cv_rmse": f.cv_rmse, "converged": f.converged, "objective": f.objective, "n_iter": f.n_iter}
        for t, f in zip(names, fits)
    }
    diagnostics = {
        "n_points": int(r.shape[0]),
        "objective": float(sum(f.objective for f in fits)),
        "rmse": float(np.sqrt(np.mean(log_res**2))),
        "rmse_natural": float(np.sqrt(np.mean((total_obs - total_pred) ** 2))),
        "max_abs_residual": float(np.max(np.abs(log_res))),
        "residual_scale": float(1.4826 * np.median(np.abs(log_res - np.median(log_res)))),
        "residuals": [float(v) for v in log_res],
        "cv_rmse": fits[0].cv_rmse if len(fits) == 1 else None,
        "cv_folds": fits[0].cv_folds,
        "converged": all(f.converged for f in fits),
        "n_iter": max(f.n_iter for f in fits),
        "grad_norm": max(f.grad_norm for f in fits),
        "optimiser_message": fits[0].message,
        "bootstrap_resamples": 0 if samples is None else int(samples.shape[0]),
        "bootstrap_failed": max(f.bootstrap_failed for f in fits),
        "distinct_optima": max(int(f.optima.shape[0]) for f in fits),
        "per_target": per_target,
    }
    data = None
    if include_data:
        data = {f"w_{c}": r[:, j].tolist() for j, c in enumerate(comps)}
        data.update({f"loss_{t}": y[:, i].tolist() for i, t in enumerate(names)})
    return MixingLaw(
        name=name,
        form="mixing",
        params=dict(zip(param_names(names, comps), (float(v) for v in point))),
        samples=keep_draws(samples, opts.keep_samples),
        covariance=np.cov(samples, rowvar=False) if samples is not None and samples.shape[0] > 1 and not opts.keep_samples else None,
        level=opts.level,
        inputs={
            "weights": {"unit": "fraction", "normalisation": "each mixture renormalised to sum to 1", "description": f"training mixture over {', '.join(comps)}"},
            "N": {"unit": "parameters", "normalisation": "none", "description": "optional; must equal the fitted scale"},
            "steps": {"unit": "steps", "normalisation": "none", "description": "optional; must equal the fitted scale"},
            "D": {"unit": "tokens", "normalisation": "none", "description": "optional; must equal the fitted scale"},
        },
        data_range={f"w_{c}": (float(r[:, j].min()), float(r[:, j].max())) for j, c in enumerate(comps)},
        diagnostics=diagnostics,
        settings=fit_settings(fits[0]),
        provenance=base_provenance(provenance),
        extra={
            "components": comps,
            "targets": names,
            "target_weights": tw,
            "scale": {k: (None if v is None else float(v)) for k, v in (scale or {}).items()},
            "parametrisation": "sum_j t_ij = 0 (k_i absorbs the common shift)",
        },
        data=data,
    )


@dataclass(frozen=True)
class StageSummary:
    """One stage of the nested pipeline: how many curves were fitted and the shared exponent.

    ``shared`` names the parameters every curve shares: ``["alpha"]`` when tied, and
    ``["alpha", "a"]`` (the amplitude too) when the curves have too few points to give
    each its own amplitude — two sizes per mixture, say (as ``study_laws`` does).
    """

    curves: int
    exponent: float | None
    tied: bool
    rmse: float | None
    shared: tuple[str, ...] = ()


def _extrapolate_stage(
    keys: list[tuple],
    x: np.ndarray,
    y: np.ndarray,
    target: float,
    tie: bool,
    options: FitOptions,
) -> tuple[dict[tuple, float], StageSummary, list[str]]:
    """For each key, the loss at ``x = target``: observed when the key was run there, else extrapolated.

    Curves with several x are fitted with the saturating power law (exponent shared
    when ``tie``); a key seen at one x only is kept when that x is the target.

    Returns:
        ``(key → loss at target, summary, reasons for keys dropped)``.
    """
    out: dict[tuple, float] = {}
    dropped: list[str] = []
    curves_x, curves_y, curve_keys = [], [], []
    for key in dict.fromkeys(keys):
        rows = [i for i, k in enumerate(keys) if k == key]
        xs = x[rows]
        if np.unique(xs).size == 1:
            if np.isclose(xs[0], target, rtol=1e-9):
                out[key] = float(np.mean(y[rows]))
            else:
                dropped.append(f"{key}: one point at {xs[0]:.4g}, target {target:.4g}")
            continue
        curves_x.append(xs)
        curves_y.append(y[rows])
        curve_keys.append(key)
    if not curve_keys:
        return out, StageSummary(0, None, tie, None), dropped
    formula = SaturatingPowerFormula.for_data(np.concatenate(curves_x))
    quick = options.replace(bootstrap=0, cv_folds=0)
    shared: tuple[str, ...] = ()
    if tie and len(curve_keys) > 1:
        n_points = sum(xs.size for xs in curves_x)
        # A shared exponent leaves 2 parameters per curve: with 2 points per curve that is one too many.
        shared = ("alpha",) if n_points > 2 * len(curve_keys) + 1 else ("alpha", "a")
        fit, tied = fit_tied(formula, curves_x, curves_y, shared, quick)
        thetas = [tied.curve_theta(fit.theta, c) for c in range(len(curve_keys))]
        exponent, rmse = float(fit.theta[0]), fit.rmse
    else:
        thetas, res = [], []
        for xs, ys in zip(curves_x, curves_y):
            f = fit_model(formula, xs, ys, quick.replace(n_starts=8)) if xs.size >= 3 else None
            if f is None:
                raise FitError(f"an untied curve needs >= 3 points, got {xs.size}; tie the exponent")
            thetas.append(f.theta)
            res.append(f.residuals)
        exponent, rmse = None, float(np.sqrt(np.mean(np.concatenate(res) ** 2)))
    for key, theta in zip(curve_keys, thetas):
        out[key] = float(np.exp(formula.value(theta, np.array([[target]]))[0]))
    return out, StageSummary(len(curve_keys), exponent, tie and len(curve_keys) > 1, rmse, shared), dropped


def fit_nested(
    weights: Any,
    losses: Any,
    components: Sequence[str],
    N: Any = None,
    steps: Any = None,
    target_N: float | None = None,
    target_steps: float | None = None,
    tie_exponents: bool = True,
    targets: Sequence[str] | None = None,
    target_weights: Mapping[str, float] | None = None,
    options: FitOptions | None = None,
    name: str = "mixing",
    provenance: Mapping[str, Any] | None = None,
) -> MixingLaw:
    """The nested pipeline: step law per run, size law per mixture, mixing law at the target.

    Rows are runs (or checkpoints of runs): a mixture, a model size N, a step count
    and the losses. Mixtures are matched by their weights rounded to 6 decimals.

    Args:
        weights: ``[n, K]`` mixtures.
        losses: ``[n]``/``[n, T]`` losses or ``{target: [n]}``.
        components: Training domain names.
        N: ``[n]`` model sizes, or ``None`` when all runs share one size.
        steps: ``[n]`` step counts, or ``None`` when only final losses are given.
        target_N: Size to predict at (default: the largest N).
        target_steps: Steps to predict at (default: the largest step count).
        tie_exponents: Share β across runs and α across mixtures (each curve then
            needs 2 points rather than 3).
        targets, target_weights, options, name, provenance: As in :func:`fit_mixing`.

    Returns:
        The mixing law at (target_N, target_steps); ``extra["pipeline"]`` records the
        stages and any mixtures dropped.
    """
    r = np.atleast_2d(np.asarray(weights, dtype=float))
    n = r.shape[0]
    y, default_names = loss_matrix(losses, n)
    names = [str(t) for t in targets] if targets is not None else default_names
    n_arr = np.ones(n) if N is None else np.asarray(N, dtype=float).reshape(-1)
    s_arr = np.ones(n) if steps is None else np.asarray(steps, dtype=float).reshape(-1)
    for label, arr in (("N", n_arr), ("steps", s_arr)):
        if arr.size != n or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
            raise ValueError(f"{label}: need {n} positive finite values")
    t_n = float(target_N if target_N is not None else n_arr.max())
    t_s = float(target_steps if target_steps is not None else s_arr.max())
    opts = options or FitOptions()
    mix_key = [tuple(np.round(row / row.sum(), 6)) for row in r]
    per_target: list[dict[tuple, float]] = []
    summaries: dict[str, Any] = {}
    dropped: list[str] = []
    for i, t in enumerate(names):
        run_keys = [(m, float(nv)) for m, nv in zip(mix_key, n_arr)]
        at_steps, step_summary, d1 = _extrapolate_stage(run_keys, s_arr, y[:, i], t_s, tie_exponents, opts)
        run_list = list(at_steps)
        size_keys = [k[0] for k in run_list]
        size_x = np.array([k[1] for k in run_list])
        size_y = np.array([at_steps[k] for k in run_list])
        at_target, size_summary, d2 = _extrapolate_stage(size_keys, size_x, size_y, t_n, tie_exponents, opts)
        per_target.append(at_target)
        summaries[t] = {"step": step_summary.__dict__, "size": size_summary.__dict__}
        dropped += [f"{t}: {d}" for d in d1 + d2]
    common = [m for m in per_target[0] if all(m in pt for pt in per_target)]
    if not common:
        raise FitError("no mixture has a loss at the target scale after the step and size stages")
    r_target = np.array(common)
    y_target = np.column_stack([[pt[m] for m in common] for pt in per_target])
    law = fit_mixing(
        r_target,
        y_target,
        components,
        targets=names,
        target_weights=target_weights,
        scale={"N": None if N is None else t_n, "steps": None if steps is None else t_s},
        options=opts,
        name=name,
        provenance=provenance,
    )
    extra = dict(law.extra)
    extra["pipeline"] = {"target": {"N": t_n if N is not None else None, "steps": t_s if steps is not None else None}, "stages": summaries, "dropped": dropped[:50], "n_dropped": len(dropped)}
    return replace(law, extra=extra)


__all__ = [
    "MixingLaw",
    "MixingFormula",
    "MixtureOptimum",
    "fit_mixing",
    "fit_nested",
    "loss_matrix",
    "minimise_on_simplex",
    "mixture_rows",
    "param_names",
    "target_weight_map",
    "training_mixtures",
    "to_public",
]
