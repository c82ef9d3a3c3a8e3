"""The fitted Law: named parameters, their uncertainty, diagnostics, and ``predict``.

A :class:`Law` is a frozen value. Each law kind (Chinchilla, mixing, CMR, asymptote)
subclasses it with how its inputs are read and how the formula is evaluated for a
batch of parameter vectors; intervals, extrapolation flags, summaries and JSON are
shared here and in :mod:`mixsearch.laws.export`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping

import numpy as np

from mixsearch.laws.fit import FitOptions, FitResult

_RANGE_TOL = 1e-9  # relative slack before an input counts as outside the data range
_NOISE_SEED = 20241123  # fixed: observation intervals must not change between calls


@dataclass(frozen=True)
class Prediction:
    """A law's prediction with its interval.

    Attributes:
        value: Prediction at the point estimate (float, or ``[m]`` array for array inputs).
        lower: Lower end of the central ``level`` interval, or ``None`` without uncertainty.
        upper: Upper end of that interval, or ``None``.
        extrapolated: Whether the inputs lie outside the range the law was fitted on.
        level: Central probability of the interval.
        factor_N: How far N lies beyond the fitted runs' sizes, max(1, N / max, min / N)
            (1 inside the range); ``None`` for a law without an ``N`` input.
        factor_D: The same for the tokens ``D`` (or ``steps``, for a law fitted on steps).
    """

    value: Any
    lower: Any
    upper: Any
    extrapolated: Any
    level: float
    factor_N: Any = None
    factor_D: Any = None

    def as_dict(self) -> dict[str, Any]:
        def plain(v: Any) -> Any:
            return v.tolist() if isinstance(v, np.ndarray) else v

        return {k: plain(getattr(self, k)) for k in ("value", "lower", "upper", "extrapolated", "level", "factor_N", "factor_D")}


@dataclass(frozen=True, eq=False)
class Law:
    """A fitted scaling law.

    Attributes:
        name: Label, unique within a file (``"chinchilla"``, ``"mixing@1M"``).
        form: Which formula of the kind (``"chinchilla"``, ``"mixing"``, ``"ratio"`` …).
        params: Named parameters at the point estimate, in formula order.
        samples: ``[B, p]`` bootstrap draws of ``params`` (same order), or ``None``.
        covariance: ``[p, p]`` parameter covariance when no draws are kept, or ``None``.
        level: Central probability of intervals.
        inputs: Per input name: ``unit``, ``normalisation`` and ``description``.
        output: The predicted quantity: ``name`` and ``unit``.
        data_range: Per input name: ``[min, max]`` over the fitted data.
        diagnostics: Objective, residual summary, held-out error, convergence.
        settings: Objective (loss, δ, space) and optimiser settings.
        provenance: Study, corpus hash, package version, creation time, source.
        extra: Kind-specific content (domains, scale, tied parameters …).
        data: The fitted data as columns, for plots, or ``None``.
    """

    kind: ClassVar[str] = ""
    name: str
    form: str
    params: Mapping[str, float]
    samples: np.ndarray | None = None
    covariance: np.ndarray | None = None
    level: float = 0.95
    inputs: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    output: Mapping[str, str] = field(default_factory=lambda: {"name": "loss", "unit": "nats/token"})
    data_range: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    diagnostics: Mapping[str, Any] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=dict)
    provenance: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)
    data: Mapping[str, list[float]] | None = None

    # -- what a kind provides -------------------------------------------------

    @property
    def formula(self) -> str:
        """The formula in plain text."""
        raise NotImplementedError

    def _parse(self, inputs: dict[str, Any]) -> tuple[dict[str, np.ndarray], bool]:
        """Named inputs as ``[m]`` arrays (``[m, K]`` for mixtures) and whether they were scalars."""
        raise NotImplementedError

    def _evaluate(self, P: np.ndarray, x: dict[str, np.ndarray]) -> np.ndarray:
        """The law for parameter rows ``P [B, p]`` at inputs ``x``: ``[B, m]``."""
        raise NotImplementedError

    # -- shared ---------------------------------------------------------------

    @property
    def param_names(self) -> list[str]:
        return list(self.params)

    def vector(self) -> np.ndarray:
        """``[p]`` parameters in ``param_names`` order."""
        return np.array([float(self.params[k]) for k in self.params])

    def draws(self) -> np.ndarray | None:
        """``[B, p]`` parameter draws: the bootstrap samples, or Gaussian draws from the covariance."""
        if self.samples is not None and len(self.samples):
            return np.asarray(self.samples, dtype=float)
        if self.covariance is not None:
            rng = np.random.default_rng(_NOISE_SEED)
            return rng.multivariate_normal(self.vector(), np.asarray(self.covariance), size=1000, method="eigh")
        return None

    @property
    def intervals(self) -> dict[str, tuple[float, float]]:
        """Percentile interval of each parameter at ``level`` (empty without uncertainty)."""
        d = self.draws()
        if d is None:
            return {}
        lo, hi = _quantiles(d, self.level)
        return {k: (float(a), float(b)) for k, a, b in zip(self.params, lo, hi)}

    def parameter_covariance(self) -> np.ndarray | None:
        """``[p, p]`` covariance of the parameters (from the draws), or ``None``."""
        if self.covariance is not None:
            return np.asarray(self.covariance, dtype=float)
        if self.samples is None or len(self.samples) < 2:
            return None
        return np.atleast_2d(np.cov(np.asarray(self.samples, dtype=float), rowvar=False))

    def predict(self, *, observation: bool = False, **inputs: Any) -> Prediction:
        """Predict at named inputs, with an interval and an extrapolation flag.

        Args:
            observation: Widen the interval by the fitted residual noise, so it
                covers a new run rather than the law's mean.
            **inputs: The law's inputs by name (see ``self.inputs``); scalars or arrays.

        Returns:
            The prediction; floats for scalar inputs, ``[m]`` arrays otherwise.

        Raises:
            ValueError: a missing, unknown or out-of-domain input.
        """
        x, scalar = self._parse(dict(inputs))
        value = self._evaluate(self.vector()[None, :], x)[0]
        lower = upper = None
        draws = self.draws()
        if draws is not None:
            with np.errstate(over="ignore", invalid="ignore"):
                sampled = self._evaluate(draws, x)
            if observation:
                sampled = self._add_noise(sampled)
            lower, upper = _quantiles(sampled, self.level)
        elif observation:
            sampled = self._add_noise(np.repeat(value[None, :], 1000, axis=0))
            lower, upper = _quantiles(sampled, self.level)
        outside = self._outside(x)
        fn, fd = (scale_factor(x.get(k), self.data_range.get(k)) for k in ("N", "D"))
        if scalar:
            return Prediction(float(value[0]), _item(lower), _item(upper), bool(outside[0]), self.level, _item(fn), _item(fd))
        return Prediction(value, lower, upper, outside, self.level, fn, fd)

    def _add_noise(self, sampled: np.ndarray) -> np.ndarray:
        scale = float(self.diagnostics.get("residual_scale") or 0.0)
        rng = np.random.default_rng(_NOISE_SEED)
        eps = rng.normal(0.0, scale, size=sampled.shape)
        return sampled * np.exp(eps) if self.settings.get("space") == "log" else sampled + eps

    def _outside(self, x: dict[str, np.ndarray]) -> np.ndarray:
        """``[m]`` whether any input lies outside its fitted data range."""
        m = next(iter(x.values())).shape[0]
        out = np.zeros(m, dtype=bool)
        for name, values in x.items():
            rng = self.data_range.get(name)
            if rng is None:
                continue
            lo, hi = float(rng[0]), float(rng[1])
            slack = _RANGE_TOL * max(abs(lo), abs(hi), 1e-300)
            with np.errstate(invalid="ignore"):
                out |= (values < lo - slack) | (values > hi + slack)
        return out

    def summary(self) -> str:
        """A few lines: the formula, each parameter with its interval, and the fit quality."""
        iv = self.intervals
        lines = [f"{self.name} ({self.kind}/{self.form}): {self.formula}"]
        shown = list(self.params.items())
        for k, v in shown[:24]:
            tail = f"  [{iv[k][0]:.6g}, {iv[k][1]:.6g}]" if k in iv else ""
            lines.append(f"  {k} = {v:.6g}{tail}")
        if len(shown) > 24:
            lines.append(f"  … {len(shown) - 24} more parameters")
        d = self.diagnostics
        # Compare like with like: the in-sample and held-out errors both in the objective's units.
        bits = [f"n={d.get('n_points')}", f"rmse={_fmt(d.get('rmse_natural', d.get('rmse')))}"]
        if d.get("cv_rmse") is not None:
            bits.append(f"held-out rmse={_fmt(d.get('cv_rmse'))}")
        bits.append(f"fitted in {self.settings.get('space', '?')} space")
        bits.append("converged" if d.get("converged") else "NOT converged")
        lines.append("  " + ", ".join(bits))
        return "\n".join(lines)


def scale_factor(values: np.ndarray | None, data_range: tuple[float, float] | None) -> np.ndarray | None:
    """``[m]`` extrapolation factors max(1, x / max, min / x) of a scale input, or ``None``.

    Args:
        values: ``[m]`` positive inputs (N, D or steps), or ``None`` when the law has no such input.
        data_range: ``(min, max)`` over the fitted runs, or ``None``.
    """
    if values is None or data_range is None:
        return None
    lo, hi = float(data_range[0]), float(data_range[1])
    v = np.asarray(values, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.maximum(1.0, np.maximum(v / hi, lo / v))


def _fmt(v: Any) -> str:
    return "n/a" if v is None else f"{float(v):.4g}"


def _item(v: np.ndarray | None) -> float | None:
    return None if v is None else float(v[0])


def _quantiles(samples: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Central ``level`` percentile interval over axis 0, ignoring non-finite draws."""
    tail = 50.0 * (1.0 - level)
    with np.errstate(invalid="ignore"):
        s = np.where(np.isfinite(samples), samples, np.nan)
        return np.nanpercentile(s, tail, axis=0), np.nanpercentile(s, 100.0 - tail, axis=0)


def build_law(
    cls: type,
    fit: FitResult,
    y: np.ndarray,
    names: tuple[str, ...],
    to_public: Callable[[np.ndarray], np.ndarray],
    *,
    name: str,
    form: str,
    inputs: Mapping[str, Mapping[str, str]],
    data_range: Mapping[str, tuple[float, float]],
    provenance: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    data: Mapping[str, list[float]] | None = None,
    output: Mapping[str, str] | None = None,
) -> Any:
    """A Law of class ``cls`` from a fit: public parameters, kept draws, diagnostics, settings.

    Args:
        cls: The Law subclass.
        fit: The fit.
        y: ``[n]`` observations in natural units.
        names: Public parameter names, in the order ``to_public`` returns them.
        to_public: Internal θ ``[..., p]`` → public parameters ``[..., p]``.
        name, form, inputs, data_range, provenance, extra, data, output: See :class:`Law`.
    """
    opts = fit.options
    samples = None if fit.bootstrap is None else to_public(fit.bootstrap)
    kwargs: dict[str, Any] = {}
    if output is not None:
        kwargs["output"] = dict(output)
    return cls(
        name=name,
        form=form,
        params=dict(zip(names, (float(v) for v in to_public(fit.theta)))),
        samples=keep_draws(samples, opts.keep_samples),
        covariance=np.cov(samples, rowvar=False) if samples is not None and samples.shape[0] > 1 and not opts.keep_samples else None,
        level=opts.level,
        inputs={k: dict(v) for k, v in inputs.items()},
        data_range={k: (float(v[0]), float(v[1])) for k, v in data_range.items()},
        diagnostics=fit_diagnostics(fit, y),
        settings=fit_settings(fit),
        provenance=base_provenance(provenance),
        extra=dict(extra or {}),
        data=None if data is None else {k: [float(v) for v in vals] for k, vals in data.items()},
        **kwargs,
    )


def fit_diagnostics(fit: FitResult, y: np.ndarray) -> dict[str, Any]:
    """The JSON-ready diagnostics of a fit (residuals in the fitting space).

    Args:
        fit: The fit.
        y: ``[n]`` observations in natural units.
    """
    y = np.asarray(y, dtype=float)
    natural = y - fit.predictions
    return {
        "n_points": fit.n_points,
        "objective": fit.objective,
        "rmse": fit.rmse,
        "rmse_natural": float(np.sqrt(np.mean(natural**2))),
        "max_abs_residual": float(np.max(np.abs(fit.residuals))),
        "residual_scale": fit.residual_scale,
        "residuals": [float(r) for r in fit.residuals],
        "cv_rmse": fit.cv_rmse,
        "cv_folds": fit.cv_folds,
        "converged": fit.converged,
        "n_iter": fit.n_iter,
        "grad_norm": fit.grad_norm,
        "optimiser_message": fit.message,
        "bootstrap_resamples": 0 if fit.bootstrap is None else int(fit.bootstrap.shape[0]),
        "bootstrap_failed": fit.bootstrap_failed,
        "distinct_optima": int(fit.optima.shape[0]),
    }


def fit_settings(fit: FitResult) -> dict[str, Any]:
    """The JSON-ready objective and optimiser settings of a fit."""
    o: FitOptions = fit.options
    return {
        "loss": "huber",
        "huber_delta": o.huber_delta,
        "space": "log" if fit.log_space else "linear",
        "optimiser": o.method,
        "n_starts": fit.n_starts,
        "ftol": o.ftol,
        "gtol": o.gtol,
        "maxiter": o.maxiter,
        "bootstrap": o.bootstrap,
        "bootstrap_starts": o.bootstrap_starts,
        "cv_folds": o.cv_folds,
        "seed": o.seed,
    }


def base_provenance(extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Package version and creation time, plus what the caller knows (study, corpus hash, source)."""
    out: dict[str, Any] = {"package_version": package_version(), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    out.update({k: v for k, v in (extra or {}).items()})
    return out


def package_version() -> str:
    """The installed mixsearch version (from the distribution metadata, so no package import is needed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mixsearch")
    except PackageNotFoundError:
        return "unknown"


def keep_draws(samples: np.ndarray | None, keep: int) -> np.ndarray | None:
    """At most ``keep`` draws (evenly spaced, so the set stays representative)."""
    if samples is None or keep == 0:
        return None
    if samples.shape[0] <= keep:
        return samples
    idx = np.linspace(0, samples.shape[0] - 1, keep).round().astype(int)
    return samples[idx]


def as_positive_array(name: str, value: Any) -> np.ndarray:
    """An input as a ``[m]`` float array of positive numbers (ValueError naming the input)."""
    a = np.atleast_1d(np.asarray(value, dtype=float)).reshape(-1)
    if a.size == 0 or not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise ValueError(f"{name}: must be positive finite numbers, got {value!r}")
    return a


def broadcast_inputs(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Broadcast ``[m]`` input arrays against each other (ValueError naming the shapes)."""
    try:
        out = np.broadcast_arrays(*arrays.values())
    except ValueError as exc:
        shapes = ", ".join(f"{k}: {v.shape}" for k, v in arrays.items())
        raise ValueError(f"inputs do not broadcast ({shapes})") from exc
    return {k: np.asarray(v, dtype=float) for k, v in zip(arrays, out)}


def check_inputs(law: Law, inputs: dict[str, Any], required: tuple[str, ...], optional: tuple[str, ...] = ()) -> None:
    """Raise a one-line ValueError for unknown or missing inputs."""
    unknown = sorted(set(inputs) - set(required) - set(optional))
    if unknown:
        raise ValueError(f"{law.name}: unknown input(s) {', '.join(unknown)}; this {law.kind}/{law.form} law takes {', '.join(required + optional)}")
    missing = [k for k in required if inputs.get(k) is None]
    if missing:
        raise ValueError(f"{law.name}: missing input(s) {', '.join(missing)}")


def finite_or_none(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(float(v)) else float(v)
