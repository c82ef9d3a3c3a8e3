"""Data mixing laws (Ye et al. 2024, arXiv 2403.16952).

Per validation domain i, the loss as a function of the training mixture r:
L_i(r) = c_i + k_i · exp(Σ_j t_ij r_j), and the total as a weighted sum Σ_i w_i L_i.

Fitted in log space, log L̂_i = LSE(log c_i, v_i · r). Because the mixture sums to one,
k_i and a common shift of t_i are one degree of freedom; the fit uses v_i and reports
k_i = exp(mean_j v_ij), t_ij = v_ij − mean_j v_ij (so Σ_j t_ij = 0).

A mixing law holds at one scale; across scales see :mod:`mixsearch.laws.joint` (one law on
every run) and :mod:`mixsearch.laws.nested` (the step → size → mixing pipeline).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from mixsearch.laws.fit import FitOptions, FitResult, fit_model, logsumexp_terms
from mixsearch.laws.law import Law, base_provenance, check_inputs, fit_settings, keep_draws
from mixsearch.laws.mixture import SUM_TOL, MixtureOptimum, loss_matrix, minimise_on_simplex, mixture_rows, target_weight_map, training_mixtures

FORMULA = "L_i(r) = c_i + k_i * exp(sum_j t_ij * r_j); L(r) = sum_i w_i L_i(r) / sum_i w_i"
_C_FRACTIONS = (1e-3, 0.25, 0.5, 0.7, 0.85, 0.95)


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


__all__ = [
    "SUM_TOL",
    "MixingLaw",
    "MixingFormula",
    "MixtureOptimum",
    "fit_mixing",
    "param_names",
    "to_public",
]
