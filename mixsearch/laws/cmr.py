"""Critical mixture ratio laws for continual pre-training (Gu et al. 2024, arXiv 2407.17467).

A base model is trained on for T more tokens with a fraction R of domain data and
1 − R of general (replay) data. The laws:

* loss against ratio at a fixed T: L(R) = α·R^s + β (general and domain loss);
* loss increments against tokens at a fixed R:
  ΔL_dom(T) = α1·T^s1 + β1 and ΔL_gen(T) = α2·T^s2 + α3·T^s3 + β2;
* the feasible set at T: ratios whose general loss stays within a tolerance ε of
  the base model's, L_gen(R, T) ≤ L_gen,0·(1 + ε) (or L_gen,0 + ε with ``relative=False``);
* the critical mixture ratio CMR(T) = the largest feasible R, and the CMR law
  R_CMR(T) = α4·T^s4 + β3.

These laws are fitted in linear space (an increment can be negative); T enters
every formula in billions of tokens (T / 1e9) so exponents and prefactors are
of order one.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Mapping

import numpy as np
from scipy.optimize import brentq

from mixsearch.laws.fit import FitError, FitOptions, fit_model
from mixsearch.laws.law import Law, broadcast_inputs, build_law, check_inputs
from mixsearch.study import DEFAULT_TOLERANCE

T_UNIT = 1e9  # tokens per unit of T in every formula
_S_GRID = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
_S_GRID_SIGNED = (-1.0, -0.5, -0.2, -0.1) + _S_GRID
RATIO_S_BOUNDS = (1e-3, 5.0)  # R can be 0, so s must stay positive
TOKENS_S_BOUNDS = (-3.0, 5.0)  # T > 0: a decaying term is allowed


def _powers(x: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x^s and x^s·log x, with 0^s = 0 and 0·log 0 = 0 (s > 0 when x can be 0)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_x = np.where(x > 0, np.log(np.where(x > 0, x, 1.0)), 0.0)
        p = np.where(x > 0, np.exp(s * log_x), 0.0)
    return p, p * log_x


class PowerOffsetFormula:
    """y = α·(x/u)^s + β; θ = (α, s, β), inputs ``[n, 1]``.

    Args:
        unit: u, the unit of x in the formula (1e9 for tokens, 1 for ratios).
        s_bounds: Bounds on s (keep s > 0 when x can be 0).
    """

    names = ("alpha", "s", "beta")
    log_space = False

    def __init__(self, unit: float = 1.0, s_bounds: tuple[float, float] = RATIO_S_BOUNDS) -> None:
        self.unit = float(unit)
        self.s_bounds = s_bounds
        self.s_grid = tuple(sorted({float(np.clip(s, *s_bounds)) for s in _S_GRID_SIGNED}))

    def value(self, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        theta = np.asarray(theta, dtype=float)
        alpha, s, beta = (theta[..., j, None] for j in range(3))
        return alpha * _powers(x[:, 0] / self.unit, s)[0] + beta

    def jacobian(self, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        alpha, s, _ = (float(v) for v in theta)
        p, plog = _powers(x[:, 0] / self.unit, np.asarray(s))
        return np.column_stack([p, alpha * plog, np.ones_like(p)])

    def initial_grid(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Each s on a grid with α, β solved by least squares (the law is linear in them)."""
        xs = x[:, 0] / self.unit
        rows = []
        for s in self.s_grid:
            design = np.column_stack([_powers(xs, np.asarray(s))[0], np.ones_like(xs)])
            (alpha, beta), *_ = np.linalg.lstsq(design, y, rcond=None)
            rows.append((alpha, s, beta))
        return np.array(rows)

    def bounds(self) -> list[tuple[float | None, float | None]]:
        return [(None, None), self.s_bounds, (None, None)]


class TwoPowerOffsetFormula:
    """y = α2·(x/u)^s2 + α3·(x/u)^s3 + β; θ = (α2, s2, α3, s3, β), inputs ``[n, 1]``."""

    names = ("alpha2", "s2", "alpha3", "s3", "beta2")
    log_space = False

    def __init__(self, unit: float = T_UNIT, s_bounds: tuple[float, float] = (1e-3, 5.0)) -> None:
        self.unit = float(unit)
        self.s_bounds = s_bounds

    def value(self, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        theta = np.asarray(theta, dtype=float)
        a2, s2, a3, s3, b = (theta[..., j, None] for j in range(5))
        xs = x[:, 0] / self.unit
        return a2 * _powers(xs, s2)[0] + a3 * _powers(xs, s3)[0] + b

    def jacobian(self, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        a2, s2, a3, s3, _ = (float(v) for v in theta)
        xs = x[:, 0] / self.unit
        p2, l2 = _powers(xs, np.asarray(s2))
        p3, l3 = _powers(xs, np.asarray(s3))
        return np.column_stack([p2, a2 * l2, p3, a3 * l3, np.ones_like(p2)])

    def initial_grid(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Pairs s2 < s3 from a grid with α2, α3, β solved by least squares."""
        xs = x[:, 0] / self.unit
        rows = []
        for s2, s3 in itertools.combinations(_S_GRID, 2):
            design = np.column_stack([_powers(xs, np.asarray(s2))[0], _powers(xs, np.asarray(s3))[0], np.ones_like(xs)])
            (a2, a3, b), *_ = np.linalg.lstsq(design, y, rcond=None)
            rows.append((a2, s2, a3, s3, b))
        return np.array(rows)

    def bounds(self) -> list[tuple[float | None, float | None]]:
        return [(None, None), self.s_bounds, (None, None), self.s_bounds, (None, None)]


def _two_power_public(theta: np.ndarray) -> np.ndarray:
    """Order the two power terms so s2 <= s3 (the law is symmetric in them)."""
    out = np.asarray(theta, dtype=float).copy()
    swap = out[..., 1] > out[..., 3]
    out[swap] = out[swap][..., [2, 3, 0, 1, 4]]
    return out


SURFACE_NAMES = ("a1", "p1", "a0", "p0", "s", "c", "kappa")


def surface_value(theta: np.ndarray, R: np.ndarray, T: np.ndarray, N: np.ndarray, n_ref: float) -> np.ndarray:
    """ΔL of parameter rows at inputs.

    Args:
        theta: ``[B, 7]`` (or ``[7]``) parameters in :data:`SURFACE_NAMES` order.
        R, T, N: ``[m]`` ratios, continued tokens and base-model sizes.
        n_ref: The size at which ν = 1.

    Returns:
        ``[B, m]`` increments (``[m]`` for one parameter row).
    """
    th = np.atleast_2d(np.asarray(theta, dtype=float))
    a1, p1, a0, p0, s, c, kappa = (th[:, j, None] for j in range(7))
    r, t, nu = (np.asarray(v, dtype=float)[None, :] for v in (R, np.asarray(T, dtype=float) / T_UNIT, np.asarray(N, dtype=float) / n_ref))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        rs = np.where(r > 0, np.power(np.where(r > 0, r, 1.0), s), 0.0)
        out = c + (1.0 - rs) * a0 * np.power(t, p0) + rs * a1 * np.power(nu, -kappa) * np.power(t, p1)
    return out[0] if np.ndim(theta) == 1 else out


_T_INPUT = {"unit": "tokens", "normalisation": "divided by 1e9 in the formula", "description": "continual pre-training tokens"}
_R_INPUT = {"unit": "fraction", "normalisation": "none", "description": "domain-data ratio of the mixture"}
_FORMS = {
    # form: (input, parameter names, formula, output)
    "ratio": ("R", ("alpha", "s", "beta"), "L(R) = alpha * R^s + beta", None),
    "increment_domain": ("T", ("alpha1", "s1", "beta1"), "dL_dom(T) = alpha1 * (T/1e9)^s1 + beta1", {"name": "domain loss increment", "unit": "nats/token"}),
    "increment_general": (
        "T",
        ("alpha2", "s2", "alpha3", "s3", "beta2"),
        "dL_gen(T) = alpha2 * (T/1e9)^s2 + alpha3 * (T/1e9)^s3 + beta2",
        {"name": "general loss increment", "unit": "nats/token"},
    ),
    "cmr": ("T", ("alpha4", "s4", "beta3"), "R_CMR(T) = alpha4 * (T/1e9)^s4 + beta3", {"name": "critical mixture ratio", "unit": "fraction"}),
    # Fitted on a study's own runs (mixsearch.laws.cpt): every run at every (R, T, N) at once.
    "surface": (
        "R,T,N",
        SURFACE_NAMES,
        "dL(R, T, N) = c + (1 - R^s) * a0 * (T/1e9)^p0 + R^s * a1 * (N/n_ref)^-kappa * (T/1e9)^p1",
        None,
    ),
}


@dataclass(frozen=True, eq=False)
class CMRLaw(Law):
    """One of the CMR laws; ``predict(R=)`` for ``ratio``, ``predict(T=)`` otherwise."""

    kind: ClassVar[str] = "cmr"

    @property
    def formula(self) -> str:
        return _FORMS[self.form][2]

    @property
    def variable(self) -> str:
        return _FORMS[self.form][0]

    def _parse(self, inputs: dict[str, Any]) -> tuple[dict[str, np.ndarray], bool]:
        if self.form == "surface":
            check_inputs(self, inputs, ("R", "T", "N"))
            arrays = {k: np.atleast_1d(np.asarray(inputs[k], dtype=float)).reshape(-1) for k in ("R", "T", "N")}
            if any(a.size == 0 or not np.all(np.isfinite(a)) for a in arrays.values()) or np.any((arrays["R"] < 0) | (arrays["R"] > 1)) or np.any(arrays["T"] <= 0) or np.any(arrays["N"] <= 0):
                raise ValueError(f"{self.name}: R must be in [0, 1], T and N positive")
            return broadcast_inputs(arrays), all(np.ndim(inputs[k]) == 0 for k in arrays)
        var = self.variable
        check_inputs(self, inputs, (var,))
        a = np.atleast_1d(np.asarray(inputs[var], dtype=float)).reshape(-1)
        low_ok = a >= 0 if var == "R" else a > 0
        if a.size == 0 or not np.all(np.isfinite(a)) or not np.all(low_ok) or (var == "R" and np.any(a > 1)):
            raise ValueError(f"{var}: must be {'in [0, 1]' if var == 'R' else 'positive'}, got {inputs[var]!r}")
        return broadcast_inputs({var: a}), np.ndim(inputs[var]) == 0

    def _evaluate(self, P: np.ndarray, x: dict[str, np.ndarray]) -> np.ndarray:
        if self.form == "surface":
            return surface_value(np.atleast_2d(P), x["R"], x["T"], x["N"], float(self.extra["n_ref"]))
        var = self.variable
        xs = x[var][None, :] / (T_UNIT if var == "T" else 1.0)
        if self.form == "increment_general":
            a2, s2, a3, s3, b = (P[:, j, None] for j in range(5))
            return a2 * _powers(xs, s2)[0] + a3 * _powers(xs, s3)[0] + b
        alpha, s, beta = (P[:, j, None] for j in range(3))
        return alpha * _powers(xs, s)[0] + beta


def _fit_form(form: str, x: np.ndarray, y: np.ndarray, options: FitOptions, name: str, extra: Mapping[str, Any], provenance: Mapping[str, Any] | None) -> CMRLaw:
    var, names, _, output = _FORMS[form]
    unit = T_UNIT if var == "T" else 1.0
    if form == "increment_general":
        formula: Any = TwoPowerOffsetFormula(unit)
    else:
        formula = PowerOffsetFormula(unit, RATIO_S_BOUNDS if var == "R" else TOKENS_S_BOUNDS)
    fit = fit_model(formula, x, y, options)
    to_public = _two_power_public if form == "increment_general" else (lambda t: np.asarray(t, dtype=float))
    output = output or {"name": f"{extra.get('loss', 'general')} loss", "unit": "nats/token"}
    return build_law(
        CMRLaw,
        fit,
        y,
        names,
        to_public,
        name=name,
        form=form,
        inputs={var: _R_INPUT if var == "R" else _T_INPUT},
        data_range={var: (x.min(), x.max())},
        provenance=provenance,
        extra=extra,
        data={var: x, "y": y},
        output=output,
    )


def fit_ratio_law(R: Any, loss: Any, which: str = "general", T: float | None = None, options: FitOptions | None = None, provenance: Mapping[str, Any] | None = None) -> CMRLaw:
    """L(R) = α·R^s + β at one token count T, for the ``general`` or ``domain`` loss."""
    if which not in ("general", "domain"):
        raise ValueError(f"which: must be 'general' or 'domain', got {which!r}")
    r, y = _xy(R, loss, "R")
    if np.any(r > 1):
        raise ValueError("R: must be in [0, 1]")
    label = f"cmr.ratio.{which}" + (f"@T={T:.4g}" if T is not None else "")
    return _fit_form("ratio", r, y, options or FitOptions(), label, {"loss": which, "T": T}, provenance)


def fit_increment_law(T: Any, increment: Any, which: str, R: float | None = None, options: FitOptions | None = None, provenance: Mapping[str, Any] | None = None) -> CMRLaw:
    """ΔL(T) for the ``domain`` (one power term) or ``general`` (two power terms) loss at ratio R."""
    if which not in ("general", "domain"):
        raise ValueError(f"which: must be 'general' or 'domain', got {which!r}")
    t, y = _xy(T, increment, "T", positive_y=False)
    if np.any(t <= 0):
        raise ValueError("T: increments need T > 0 (the T = 0 rows are the base losses)")
    label = f"cmr.increment.{which}" + (f"@R={R:.4g}" if R is not None else "")
    return _fit_form(f"increment_{which}", t, y, options or FitOptions(), label, {"loss": which, "R": R}, provenance)


def fit_cmr_law(T: Any, r_cmr: Any, options: FitOptions | None = None, provenance: Mapping[str, Any] | None = None) -> CMRLaw:
    """R_CMR(T) = α4·T^s4 + β3 over critical ratios found at several token counts."""
    t, y = _xy(T, r_cmr, "T", positive_y=False)
    return _fit_form("cmr", t, y, options or FitOptions(), "cmr", {}, provenance)


def _xy(x: Any, y: Any, var: str, positive_y: bool = True) -> tuple[np.ndarray, np.ndarray]:
    xa, ya = np.asarray(x, dtype=float).reshape(-1), np.asarray(y, dtype=float).reshape(-1)
    if xa.size != ya.size:
        raise ValueError(f"{var} and the losses must have the same length, got {xa.size} and {ya.size}")
    if not (np.all(np.isfinite(xa)) and np.all(np.isfinite(ya))) or np.any(xa < 0):
        raise ValueError(f"{var}: must be non-negative finite numbers (and the losses finite)")
    if positive_y and np.any(ya <= 0):
        raise ValueError("loss: must be positive")
    return xa, ya


def general_loss_limit(loss_general_0: float, tolerance: float = DEFAULT_TOLERANCE, relative: bool = True) -> float:
    """The largest general loss still feasible: L0·(1 + ε), or L0 + ε when not relative."""
    if not tolerance >= 0:
        raise ValueError(f"tolerance: must be >= 0, got {tolerance!r}")
    return loss_general_0 * (1.0 + tolerance) if relative else loss_general_0 + tolerance


def feasible_set(ratio_law: CMRLaw, limit: float, resolution: int = 2001) -> list[tuple[float, float]]:
    """Intervals of R in [0, 1] where the general-loss ratio law stays at or below ``limit``."""
    if ratio_law.form != "ratio":
        raise ValueError(f"ratio_law: need a 'ratio' law, got {ratio_law.form!r}")
    grid = np.linspace(0.0, 1.0, resolution)
    ok = ratio_law.predict(R=grid).value <= limit
    intervals, start, prev = [], None, 0.0
    for r, good in zip(grid, ok):
        if good and start is None:
            start = r
        if not good and start is not None:
            intervals.append((float(start), float(prev)))
            start = None
        prev = r
    if start is not None:
        intervals.append((float(start), 1.0))
    return intervals


def critical_ratio(ratio_law: CMRLaw, limit: float) -> float:
    """CMR: the largest R in [0, 1] whose predicted general loss is at or below ``limit``.

    Returns 1.0 when every ratio is feasible and 0.0 when none is (then even pure
    replay exceeds the tolerance).
    """
    f = lambda r: float(ratio_law.predict(R=r).value) - limit  # noqa: E731
    if f(1.0) <= 0:
        return 1.0
    feasible = feasible_set(ratio_law, limit)
    if not feasible:
        return 0.0
    hi = feasible[-1][1]
    step = 1.0 / 2000
    return float(brentq(f, hi, min(hi + step, 1.0), xtol=1e-10)) if f(min(hi + step, 1.0)) > 0 else hi


@dataclass(frozen=True)
class CMRResult:
    """Everything the CMR pipeline found.

    Attributes:
        laws: The fitted laws: ratio laws at the largest T, increment laws per R, the CMR law.
        cmr: Token count → critical mixture ratio (from that T's general ratio law).
        feasible: Token count → feasible R intervals.
        limit: The general-loss limit L0·(1 + ε) (or L0 + ε).
        skipped: Reasons for laws not fitted.
    """

    laws: tuple[CMRLaw, ...]
    cmr: dict[float, float]
    feasible: dict[float, list[tuple[float, float]]]
    limit: float
    skipped: tuple[str, ...]

    def law(self, form: str) -> CMRLaw:
        """The first law of a form (``ratio``, ``increment_general``, ``cmr`` …)."""
        for law in self.laws:
            if law.form == form:
                return law
        raise KeyError(f"no {form!r} law was fitted; skipped: {'; '.join(self.skipped) or 'none'}")


def fit_cmr(
    R: Any,
    T: Any,
    loss_general: Any,
    loss_domain: Any,
    loss_general_0: float | None = None,
    loss_domain_0: float | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    relative: bool = True,
    options: FitOptions | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> CMRResult:
    """The CMR pipeline on a table of continual pre-training checkpoints.

    Rows with T = 0 are the base model (their losses give L_gen,0 and L_dom,0 unless
    passed). At every T with >= 4 ratios a general ratio law gives CMR(T); the CMR law
    is fitted when >= 4 token counts have a CMR strictly inside (0, 1). Increment
    laws are fitted per ratio with >= 4 (domain) or >= 6 (general) token counts.

    Args:
        R: ``[n]`` domain ratios in [0, 1].
        T: ``[n]`` continual pre-training tokens (0 for the base model).
        loss_general: ``[n]`` general validation loss.
        loss_domain: ``[n]`` domain validation loss.
        loss_general_0: The base model's general loss (default: mean over T = 0 rows).
        loss_domain_0: The base model's domain loss (default: mean over T = 0 rows).
        tolerance: ε on the general loss.
        relative: ε relative to L_gen,0 (True) or in loss units (False).
        options: Fit options.
        provenance: Recorded in every law.

    Raises:
        ValueError: bad columns or no base loss. FitError: no law could be fitted.
    """
    r, t = (np.asarray(v, dtype=float).reshape(-1) for v in (R, T))
    lg, ld = (np.asarray(v, dtype=float).reshape(-1) for v in (loss_general, loss_domain))
    if not (r.size == t.size == lg.size == ld.size):
        raise ValueError(f"R, T, loss_general, loss_domain must have the same length, got {r.size}, {t.size}, {lg.size}, {ld.size}")
    for label, arr in (("R", r), ("T", t), ("loss_general", lg), ("loss_domain", ld)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{label}: must be finite numbers")
    if np.any((r < 0) | (r > 1)):
        raise ValueError("R: must be in [0, 1]")
    if np.any(t < 0):
        raise ValueError("T: must be >= 0")
    base = t == 0
    if loss_general_0 is None:
        if not base.any():
            raise ValueError("loss_general_0: not given and no T = 0 rows to take it from")
        loss_general_0 = float(lg[base].mean())
    if loss_domain_0 is None and base.any():
        loss_domain_0 = float(ld[base].mean())
    opts = options or FitOptions()
    limit = general_loss_limit(float(loss_general_0), tolerance, relative)
    laws: list[CMRLaw] = []
    skipped: list[str] = []
    cmr: dict[float, float] = {}
    feasible: dict[float, list[tuple[float, float]]] = {}
    trained = ~base
    t_values = np.unique(t[trained])
    quick = opts.replace(bootstrap=0, cv_folds=0)
    for tv in t_values:
        rows = trained & (t == tv)
        if np.unique(r[rows]).size < 4:
            continue
        try:
            gen = fit_ratio_law(r[rows], lg[rows], "general", float(tv), quick if tv != t_values[-1] else opts, provenance)
        except FitError as exc:
            skipped.append(f"ratio law at T={tv:.4g}: {exc}")
            continue
        cmr[float(tv)] = critical_ratio(gen, limit)
        feasible[float(tv)] = feasible_set(gen, limit)
        if tv == t_values[-1]:
            laws.append(gen)
            try:
                laws.append(fit_ratio_law(r[rows], ld[rows], "domain", float(tv), opts, provenance))
            except FitError as exc:
                skipped.append(f"domain ratio law at T={tv:.4g}: {exc}")
    if not cmr:
        skipped.append("ratio laws: no token count has >= 4 distinct ratios")
    for rv in np.unique(r[trained]):
        rows = trained & (r == rv)
        n_t = np.unique(t[rows]).size
        for which, loss, base_loss, need in (("domain", ld, loss_domain_0, 4), ("general", lg, loss_general_0, 6)):
            if base_loss is None:
                skipped.append(f"{which} increments: no base loss")
                continue
            if n_t < need:
                skipped.append(f"{which} increments at R={rv:.4g}: {n_t} token counts, need {need}")
                continue
            try:
                laws.append(fit_increment_law(t[rows], loss[rows] - base_loss, which, float(rv), opts, provenance))
            except FitError as exc:
                skipped.append(f"{which} increments at R={rv:.4g}: {exc}")
    interior = {k: v for k, v in cmr.items() if 0.0 < v < 1.0}
    if len(interior) >= 4:
        try:
            laws.append(fit_cmr_law(list(interior), list(interior.values()), opts, provenance))
        except FitError as exc:
            skipped.append(f"CMR law: {exc}")
    else:
        skipped.append(f"CMR law: {len(interior)} token counts with a CMR inside (0, 1), need 4")
    if not laws:
        raise FitError("no CMR law could be fitted: " + "; ".join(skipped))
    context = {"tolerance": tolerance, "relative": relative, "loss_general_0": loss_general_0, "loss_domain_0": loss_domain_0, "limit": limit}
    laws = [replace(law, extra={**law.extra, **context}) for law in laws]
    return CMRResult(tuple(laws), cmr, feasible, limit, tuple(skipped))
