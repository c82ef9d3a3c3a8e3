"""Saturating power laws and the asymptotes of "Pre-training under infinite compute".

Kim, Kotha, Liang & Hashimoto (2025) compare recipes by the asymptote E of a
parameter scaling law L(N) = E + A/N^α rather than by the loss at one size; ensemble
K members and the ensemble law L(K) = E_N + A_N/K^α has its own asymptote; the joint
asymptote takes K → ∞ at each N, then N → ∞ on those asymptotes; and a recipe's
data efficiency is the token multiplier at which a baseline data law
L(D) = E + A/D^β reaches the same loss.

The one-variable law x ↦ E + A/x^α (:class:`SaturatingPowerFormula`) is also the
step law and the size law of the nested data-mixing pipeline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from mixsearch.laws.fit import FitError, FitOptions, fit_model, logsumexp_terms
from mixsearch.laws.tied import fit_tied
from mixsearch.laws.law import Law, as_positive_array, build_law, check_inputs, keep_draws

LOG_E_FLOOR = -25.0
_E_FRACTIONS = (1e-3, 0.25, 0.5, 0.75, 0.9, 0.97, 0.99)
_EXPONENTS = (0.1, 0.5, 1.0)


class SaturatingPowerFormula:
    """log L̂ = LSE(e, a − α (log x − c)): L(x) = E + A/x^α with θ = (e, a, α), inputs ``[n, 1]``.

    Internally the log input is centred on a fixed reference ``c = log_ref`` (the
    median log x of the data, say): a and α are then nearly uncorrelated and
    L-BFGS-B needs a fraction of the iterations. The public A is e^(a + α c).

    Args:
        log_ref: The reference c; 0 means the plain parametrisation.
    """

    names = ("e", "a", "alpha")
    log_space = True

    def __init__(self, log_ref: float = 0.0) -> None:
        self.log_ref = float(log_ref)

    def value(self, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        theta = np.asarray(theta, dtype=float)
        e, a, alpha = (theta[..., j, None] for j in range(3))
        log_x = np.log(x[:, 0]) - self.log_ref
        return logsumexp_terms(np.stack(np.broadcast_arrays(e, a - alpha * log_x)))[0]

    def jacobian(self, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        return self.value_and_jacobian(theta, x)[1]

    def value_and_jacobian(self, theta: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        e, a, alpha = (float(v) for v in theta)
        log_x = np.log(x[:, 0]) - self.log_ref
        lse, w = logsumexp_terms(np.stack([np.full_like(log_x, e), a - alpha * log_x]))
        return lse, np.column_stack([w[0], w[1], -w[1] * log_x])

    def rows_value_and_jacobian(self, theta_rows: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each row with its own parameters: θ ``[..., n, 3]``, x ``[n, 1]`` → (``[..., n]``, ``[..., n, 3]``).

        Lets :class:`~mixsearch.laws.tied.TiedFormula` evaluate many curves without a Python loop.
        """
        e, a, alpha = theta_rows[..., 0], theta_rows[..., 1], theta_rows[..., 2]
        log_x = np.log(x[:, 0]) - self.log_ref
        lse, w = logsumexp_terms(np.stack(np.broadcast_arrays(e, a - alpha * log_x)))
        return lse, np.stack([w[0], w[1], -w[1] * log_x], axis=-1)

    def initial_grid(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """E at fractions of min(y); (a, α) by least squares of log(y − E) on log x, and α on a grid.

        Few enough points (28) that every one is optimised: the screen must not drop
        the basin of the true E when a near-pure power law (E → 0, α → 0) screens better.
        """
        log_x = np.log(x[:, 0]) - self.log_ref
        rows = []
        for frac in _E_FRACTIONS:
            e_val = frac * float(np.min(y))
            gap = np.log(np.maximum(y - e_val, 1e-12 * np.max(y)))
            if np.ptp(log_x) > 0:
                slope, intercept = np.polyfit(log_x, gap, 1)
                rows.append((math.log(e_val), float(intercept), float(np.clip(-slope, 0.0, 10.0))))
            for alpha in _EXPONENTS:
                rows.append((math.log(e_val), float(np.median(gap + alpha * log_x)), alpha))
        return np.array(rows)

    def bounds(self) -> list[tuple[float | None, float | None]]:
        # E may vanish, but an unbounded e lets a start crawl towards -inf for
        # thousands of iterations on a flat objective; E >= 1e-11 is zero for any loss.
        return [(LOG_E_FLOOR, None), (None, None), (0.0, 10.0)]

    def to_public(self, theta: np.ndarray) -> np.ndarray:
        """Internal (e, a, α) ``[..., 3]`` → public (E, A, α)."""
        out = np.asarray(theta, dtype=float).copy()
        out[..., 0] = np.exp(out[..., 0])
        out[..., 1] = np.exp(out[..., 1] + out[..., 2] * self.log_ref)
        return out

    @staticmethod
    def for_data(x: np.ndarray) -> "SaturatingPowerFormula":
        """A formula centred on the median log of ``x``."""
        return SaturatingPowerFormula(float(np.median(np.log(np.asarray(x, dtype=float)))))


def power_to_public(theta: np.ndarray) -> np.ndarray:
    """Internal (e, a, α) ``[..., 3]`` of an uncentred formula → public (E, A, α)."""
    return SaturatingPowerFormula().to_public(theta)


_FORMS = {
    # form: (input, exponent name, formula, input description)
    "size": ("N", "alpha", "L(N) = E + A / N^alpha", {"unit": "parameters", "normalisation": "none", "description": "model size"}),
    "ensemble": ("K", "alpha", "L(K) = E + A / K^alpha", {"unit": "members", "normalisation": "none", "description": "ensemble member count"}),
    "data": ("D", "beta", "L(D) = E + A / D^beta", {"unit": "tokens", "normalisation": "none", "description": "training tokens"}),
    "joint": ("N", "alpha", "L(N, K -> inf) = E + A / N^alpha", {"unit": "parameters", "normalisation": "none", "description": "member size"}),
}


@dataclass(frozen=True, eq=False)
class AsymptoteLaw(Law):
    """A saturating power law with its asymptote E.

    Forms: ``size`` (``predict(N=)``), ``ensemble`` (``predict(K=)``), ``data``
    (``predict(D=)``) and ``joint`` (``predict(N=)`` gives the K → ∞ loss;
    ``predict(N=, K=)`` at a fitted member size uses that size's ensemble law).
    """

    kind: ClassVar[str] = "asymptote"

    @property
    def formula(self) -> str:
        return _FORMS[self.form][2]

    @property
    def variable(self) -> str:
        """The input the law scales in (``N``, ``K`` or ``D``)."""
        return _FORMS[self.form][0]

    @property
    def asymptote(self) -> tuple[float, float | None, float | None]:
        """``(E, lower, upper)``: the loss as the scaled quantity grows without bound."""
        lo_hi = self.intervals.get("E")
        return float(self.params["E"]), (lo_hi[0] if lo_hi else None), (lo_hi[1] if lo_hi else None)

    def _parse(self, inputs: dict[str, Any]) -> tuple[dict[str, np.ndarray], bool]:
        var = self.variable
        optional = ("K",) if self.form == "joint" else ()
        check_inputs(self, inputs, (var,), optional)
        if self.form == "joint" and inputs.get("K") is not None and not np.all(np.isinf(np.asarray(inputs["K"], dtype=float))):
            raise ValueError(f"{self.name}: a joint law predicts K -> inf; use ensemble_law(N) for a finite K")
        return {var: as_positive_array(var, inputs[var])}, np.ndim(inputs[var]) == 0

    def _evaluate(self, P: np.ndarray, x: dict[str, np.ndarray]) -> np.ndarray:
        E, A, alpha = (P[:, j, None] for j in range(3))
        return E + np.exp(np.log(A) - alpha * np.log(x[self.variable])[None, :])

    def inverse(self, loss: Any) -> np.ndarray | float:
        """The input at which the law reaches ``loss`` (inf at or below the asymptote)."""
        target = np.atleast_1d(np.asarray(loss, dtype=float))
        E, A, alpha = (self.params[k] for k in self.param_names)
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.where(target > E, (A / (target - E)) ** (1.0 / alpha), np.inf)
        return float(out[0]) if np.ndim(loss) == 0 else out

    def ensemble_law(self, N: float) -> "AsymptoteLaw":
        """The ensemble law L(K) at a member size the joint law was fitted at."""
        if self.form != "joint":
            raise ValueError(f"{self.name}: ensemble_law needs a joint law, this is {self.form!r}")
        for item in self.extra.get("ensembles", []):
            if math.isclose(float(item["N"]), float(N), rel_tol=1e-9):
                return AsymptoteLaw(
                    name=f"{self.name}.ensemble@N={item['N']:.4g}",
                    form="ensemble",
                    params={"E": item["E"], "A": item["A"], "alpha": item["alpha"]},
                    level=self.level,
                    inputs={"K": _FORMS["ensemble"][3]},
                    output=self.output,
                    data_range={"K": tuple(item["K_range"])},
                    settings=self.settings,
                    provenance=self.provenance,
                    extra={"N": item["N"]},
                )
        fitted = [item["N"] for item in self.extra.get("ensembles", [])]
        raise ValueError(f"{self.name}: no ensemble law at N={N}; fitted member sizes: {fitted}")


def fit_power_law(
    x: Any,
    loss: Any,
    form: str = "size",
    options: FitOptions | None = None,
    name: str | None = None,
    provenance: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    include_data: bool = True,
) -> AsymptoteLaw:
    """Fit L(x) = E + A/x^α (``form`` names x: ``size`` N, ``ensemble`` K, ``data`` D).

    Args:
        x: ``[n]`` positive values of the scaled quantity.
        loss: ``[n]`` positive losses.
        form: ``"size"``, ``"ensemble"`` or ``"data"``.
        options: Fit options.
        name: Law name (default: the form).
        provenance: Recorded in the law.
        extra: Kind-specific notes (recipe, N of an ensemble …).
        include_data: Keep the fitted points in the law.

    Raises:
        ValueError: bad form or data. FitError: fewer than 3 points, or no usable start.
    """
    if form not in ("size", "ensemble", "data"):
        raise ValueError(f"form: must be 'size', 'ensemble' or 'data', got {form!r}")
    var, exponent = _FORMS[form][0], _FORMS[form][1]
    xa, y = _pair(x, loss, var)
    formula = SaturatingPowerFormula.for_data(xa)
    fit = fit_model(formula, xa, y, options or FitOptions())
    return build_law(
        AsymptoteLaw,
        fit,
        y,
        ("E", "A", exponent),
        formula.to_public,
        name=name or form,
        form=form,
        inputs={var: _FORMS[form][3]},
        data_range={var: (xa.min(), xa.max())},
        provenance=provenance,
        extra=extra,
        data={var: xa, "loss": y} if include_data else None,
    )


def fit_size_law(N: Any, loss: Any, recipe: str | None = None, **kwargs: Any) -> AsymptoteLaw:
    """L(N) = E + A/N^α for one recipe; ``law.asymptote`` is E with its interval."""
    extra = dict(kwargs.pop("extra", None) or {})
    if recipe is not None:
        extra["recipe"] = recipe
    kwargs.setdefault("name", f"size[{recipe}]" if recipe else "size")
    return fit_power_law(N, loss, "size", extra=extra, **kwargs)


def fit_ensemble_law(K: Any, loss: Any, N: float | None = None, **kwargs: Any) -> AsymptoteLaw:
    """L(K) = E + A/K^α over ensemble member counts K at member size N."""
    extra = dict(kwargs.pop("extra", None) or {})
    if N is not None:
        extra["N"] = float(N)
    kwargs.setdefault("name", "ensemble")
    return fit_power_law(K, loss, "ensemble", extra=extra, **kwargs)


def fit_data_law(D: Any, loss: Any, **kwargs: Any) -> AsymptoteLaw:
    """L(D) = E + A/D^β: a baseline recipe's loss against training tokens."""
    kwargs.setdefault("name", "data")
    return fit_power_law(D, loss, "data", **kwargs)


def _pair(x: Any, loss: Any, var: str) -> tuple[np.ndarray, np.ndarray]:
    xa, y = np.asarray(x, dtype=float).reshape(-1), np.asarray(loss, dtype=float).reshape(-1)
    if xa.size != y.size:
        raise ValueError(f"{var} and loss must have the same length, got {xa.size} and {y.size}")
    for label, arr in ((var, xa), ("loss", y)):
        if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
            raise ValueError(f"{label}: must be positive finite numbers")
    return xa, y


@dataclass(frozen=True)
class DataEfficiency:
    """How many times more data the baseline needs to match a loss.

    Attributes:
        multiplier: D_eff / D0 (inf when the loss is at or below the baseline's asymptote).
        effective_tokens: D_eff, the baseline tokens reaching the same loss.
        interval: ``(lower, upper)`` of the multiplier at the law's level, or ``None``.
    """

    multiplier: float
    effective_tokens: float
    interval: tuple[float, float] | None


def data_efficiency(data_law: AsymptoteLaw, loss: float, tokens: float) -> DataEfficiency:
    """The data-efficiency multiplier of a recipe that reaches ``loss`` with ``tokens``.

    Inverts the baseline data law: D_eff = (A / (loss − E))^(1/β); multiplier = D_eff / tokens.

    Args:
        data_law: The baseline's fitted ``data`` (or ``size``) law.
        loss: The loss the recipe reaches.
        tokens: The tokens it used.
    """
    if data_law.form not in ("data", "size"):
        raise ValueError(f"data_law: need a 'data' law, got form {data_law.form!r}")
    if not (tokens > 0 and math.isfinite(tokens)):
        raise ValueError(f"tokens: must be positive, got {tokens!r}")
    d_eff = float(data_law.inverse(float(loss)))
    interval = None
    draws = data_law.draws()
    if draws is not None:
        E, A, beta = draws[:, 0], draws[:, 1], draws[:, 2]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            d = np.where(loss > E, (A / (loss - E)) ** (1.0 / beta), np.inf) / tokens
        tail = 50.0 * (1.0 - data_law.level)
        interval = (float(np.percentile(d, tail)), float(np.percentile(d, 100.0 - tail)))
    return DataEfficiency(d_eff / tokens, d_eff, interval)


@dataclass(frozen=True)
class JointAsymptote:
    """The joint asymptote: K → ∞ at each member size N, then N → ∞.

    Attributes:
        law: The ``joint`` law E + A/N^α over the per-N ensemble asymptotes; its E is
            the joint asymptote, with an interval carrying both stages' uncertainty.
        ensembles: Per member size, the ensemble law L(K) (exponent shared when tied).
    """

    law: AsymptoteLaw
    ensembles: tuple[AsymptoteLaw, ...]


def joint_asymptote(
    N: Any,
    K: Any,
    loss: Any,
    tie_ensemble_exponent: bool = True,
    options: FitOptions | None = None,
    name: str = "joint",
    provenance: Mapping[str, Any] | None = None,
) -> JointAsymptote:
    """Fit ensemble laws in K at each N, then a size law on their asymptotes.

    Args:
        N: ``[n]`` member sizes.
        K: ``[n]`` ensemble member counts.
        loss: ``[n]`` ensemble losses.
        tie_ensemble_exponent: Share the exponent of K across member sizes (then
            each size needs 2 member counts, else 3).
        options: Fit options; bootstrap draws of stage one feed stage two.
        name: Name of the joint law.
        provenance: Recorded in the laws.

    Raises:
        ValueError: bad inputs. FitError: fewer than 3 member sizes, or too few
        member counts at a size.
    """
    n_arr, y = _pair(N, loss, "N")
    k_arr, _ = _pair(K, loss, "K")
    opts = options or FitOptions()
    sizes = np.unique(n_arr)
    if sizes.size < 3:
        raise FitError(f"a joint asymptote needs ensembles at >= 3 member sizes, got {sizes.size}")
    xs = [k_arr[n_arr == s] for s in sizes]
    ys = [y[n_arr == s] for s in sizes]
    tied = ("alpha",) if tie_ensemble_exponent else ()
    inner = SaturatingPowerFormula.for_data(k_arr)
    fit, formula = fit_tied(inner, xs, ys, tied, opts.replace(cv_folds=0))
    per_size = inner.to_public(np.stack([formula.curve_theta(fit.theta, c) for c in range(sizes.size)]))
    ensembles = tuple(
        AsymptoteLaw(
            name=f"{name}.ensemble@N={s:.4g}",
            form="ensemble",
            params={"E": float(p[0]), "A": float(p[1]), "alpha": float(p[2])},
            level=opts.level,
            inputs={"K": _FORMS["ensemble"][3]},
            data_range={"K": (float(xk.min()), float(xk.max()))},
            extra={"N": float(s), "tied": list(tied)},
            data={"K": xk.tolist(), "loss": yk.tolist()},
        )
        for s, p, xk, yk in zip(sizes, per_size, xs, ys)
    )
    stage_two = opts.replace(bootstrap=0, cv_folds=0)
    asymptotes = per_size[:, 0]
    size_formula = SaturatingPowerFormula.for_data(sizes)
    outer = fit_model(size_formula, sizes, asymptotes, stage_two)
    samples = None
    if fit.bootstrap is not None:
        # Each stage-one draw gives a set of ensemble asymptotes; refitting the size law
        # on each set carries both stages' uncertainty into the joint asymptote.
        quick = stage_two.replace(n_starts=4)
        rows = []
        for draw in fit.bootstrap:
            e_draw = np.exp(np.array([formula.curve_theta(draw, c)[0] for c in range(sizes.size)]))
            try:
                rows.append(fit_model(size_formula, sizes, e_draw, quick, warm_starts=outer.theta[None, :]).theta)
            except FitError:
                continue
        samples = size_formula.to_public(np.stack(rows)) if rows else None
    law = build_law(
        AsymptoteLaw,
        outer,
        asymptotes,
        ("E", "A", "alpha"),
        size_formula.to_public,
        name=name,
        form="joint",
        inputs={"N": _FORMS["joint"][3]},
        data_range={"N": (sizes.min(), sizes.max())},
        provenance=provenance,
        extra={
            "ensembles": [
                {"N": float(s), "E": float(p[0]), "A": float(p[1]), "alpha": float(p[2]), "K_range": [float(xk.min()), float(xk.max())]}
                for s, p, xk in zip(sizes, per_size, xs)
            ],
            "tied": list(tied),
            "stage_one_rmse": fit.rmse,
        },
        data={"N": sizes, "loss": asymptotes},
    )
    law = _with_samples(law, samples, opts)
    return JointAsymptote(law=law, ensembles=ensembles)


def _with_samples(law: AsymptoteLaw, samples: np.ndarray | None, opts: FitOptions) -> AsymptoteLaw:
    from dataclasses import replace

    diagnostics = dict(law.diagnostics)
    diagnostics["bootstrap_resamples"] = 0 if samples is None else int(samples.shape[0])
    settings = dict(law.settings)
    settings["bootstrap"] = opts.bootstrap
    return replace(law, samples=keep_draws(samples, opts.keep_samples), diagnostics=diagnostics, settings=settings)


def compare_recipes(laws: Sequence[AsymptoteLaw]) -> list[dict[str, Any]]:
    """Recipes ranked by asymptote (best first), with intervals, as table rows."""
    rows = []
    for law in laws:
        E, lo, hi = law.asymptote
        rows.append({"name": law.name, "recipe": law.extra.get("recipe"), "E": E, "E_lower": lo, "E_upper": hi, "alpha": law.vector()[2]})
    return sorted(rows, key=lambda r: r["E"])


__all__ = [
    "AsymptoteLaw",
    "DataEfficiency",
    "JointAsymptote",
    "SaturatingPowerFormula",
    "compare_recipes",
    "data_efficiency",
    "fit_data_law",
    "fit_ensemble_law",
    "fit_power_law",
    "fit_size_law",
    "joint_asymptote",
    "power_to_public",
]
