"""The critical mixture ratio from a study's own continual pre-training runs.

:func:`fit_cpt` fits the surface (:mod:`mixsearch.laws.cpt_surface`) to the general and
the new domain's loss increments over every run, reads the critical ratio at the
target (T, N) with its interval, measures the surface's error on the largest-T runs
when fitted without them, and runs the CMR paper's per-T pipeline beside it where the
runs allow (:func:`mixsearch.laws.cmr.fit_cmr`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from mixsearch.laws.cmr import CMRResult, fit_cmr, surface_value
from mixsearch.laws.cpt_surface import SURFACE_DRAWS, SurfaceFit, fit_surface, surface_cmr
from mixsearch.laws.fit import FitError, FitOptions


@dataclass
class CPTFit:
    """What a study's continual pre-training runs say about the critical ratio at the target.

    Attributes:
        cmr: CMR at the target (T, N), or None.
        lower, upper: Its central ``level`` interval (None without draws).
        level: Central probability of the intervals.
        basis: ``"law"`` (the surface fitted on every run), ``"observed"`` (the largest ratio
            run at the target that stayed within the tolerance), or None.
        reason: Why there is no CMR (when ``cmr`` is None), or why it is only observed.
        limit: The increment allowed at the target, ε·L0(N) (or ε).
        loss_general_0: L0 at the target's N and where it comes from.
        general, domain: The fitted surfaces (general and new-domain loss increments).
        pipeline: The CMR paper's per-T pipeline on the runs (ratio laws, increment laws,
            CMR law), or None with ``pipeline_reason``.
        general_loss, domain_loss: Predicted losses at the answer (value, lower, upper).
        factors: How far the target lies beyond the runs: ``{"T": x, "N": y}`` (1 inside).
        model_error: The surface's error on the largest-T runs when fitted without them.
        cmr_by_T: Per observed T (at the target N): the surface's CMR.
    """

    cmr: float | None
    lower: float | None = None
    upper: float | None = None
    level: float = 0.9
    basis: str | None = None
    reason: str | None = None
    limit: float | None = None
    loss_general_0: dict[str, Any] = field(default_factory=dict)
    general: SurfaceFit | None = None
    domain: SurfaceFit | None = None
    pipeline: CMRResult | None = None
    pipeline_reason: str | None = None
    general_loss: tuple[float, float | None, float | None] | None = None
    domain_loss: tuple[float, float | None, float | None] | None = None
    factors: dict[str, float] = field(default_factory=dict)
    model_error: dict[str, Any] = field(default_factory=dict)
    cmr_by_T: dict[float, float] = field(default_factory=dict)


def _quantiles(x: np.ndarray, level: float) -> tuple[float, float]:
    tail = 50.0 * (1.0 - level)
    return float(np.nanpercentile(x, tail)), float(np.nanpercentile(x, 100.0 - tail))


def default_noise_floor(limit: float) -> float:
    """The smallest residual scale assumed: 5 % of the allowed increment (the runs cannot place
    the boundary closer than that), and never below 1e-4 nats."""
    return max(0.05 * abs(float(limit)), 1e-4)


def base_loss_at(N_target: float, N: np.ndarray, loss0: np.ndarray) -> tuple[float, str]:
    """L0 at a size: measured there, or a saturating size law over >= 3 sizes, or the nearest size's.

    Returns:
        ``(L0, where it comes from)``.
    """
    sizes = np.unique(N)
    per = np.array([float(np.mean(loss0[N == s])) for s in sizes])
    hit = np.isclose(sizes, N_target, rtol=1e-9)
    if hit.any():
        return float(per[hit][0]), "measured: the base model at the target size"
    if sizes.size >= 3:
        from mixsearch.laws.asymptote import fit_size_law

        try:
            law = fit_size_law(sizes, per, options=FitOptions(bootstrap=0, cv_folds=0))
            return float(law.predict(N=N_target).value), f"a size law over the base models' {sizes.size} sizes"
        except (FitError, ValueError):
            pass
    i = int(np.argmin(np.abs(np.log(sizes / N_target))))
    return float(per[i]), f"the base model nearest in size ({sizes[i]:.4g} parameters): no law of L0 in N"


def fit_cpt(
    R: Any,
    T: Any,
    N: Any,
    loss_general: Any,
    loss_domain: Any,
    loss_general_0: Any,
    loss_domain_0: Any,
    target_T: float,
    target_N: float,
    tolerance: float,
    relative: bool = True,
    draws: int = SURFACE_DRAWS,
    level: float = 0.9,
    seed: int = 0,
    noise_floor: float | None = None,
    pipeline: bool = True,
    options: FitOptions | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> CPTFit:
    """The critical ratio at the target from continual pre-training runs.

    Args:
        R, T, N: ``[n]`` each run's ratio, continued tokens and base-model size.
        loss_general, loss_domain: ``[n]`` its general and new-domain validation losses.
        loss_general_0, loss_domain_0: ``[n]`` its base model's.
        target_T, target_N: Where the answer is wanted.
        tolerance, relative: ε, and whether it is relative to L0.
        draws: Bootstrap refits behind the interval (0: a point estimate only, as a
            proposer's recommendation needs).
        level: Central probability of the intervals.
        seed: Seed of the draws.
        noise_floor: Smallest residual scale assumed; default :func:`default_noise_floor`.
        pipeline: Also run the paper's per-T pipeline (:func:`~mixsearch.laws.cmr.fit_cmr`).
        options: Fit options of that pipeline's laws.
        provenance: Recorded in the laws.

    Never raises on thin data: without a surface the answer is the observed one, or None with
    the reason.
    """
    r, t, n, lg, ld, lg0, ld0 = (np.asarray(v, dtype=float).reshape(-1) for v in (R, T, N, loss_general, loss_domain, loss_general_0, loss_domain_0))
    out = CPTFit(cmr=None, level=level)
    if r.size == 0:
        out.reason = "no done trials yet"
        return out
    L0, where = base_loss_at(target_N, n, lg0)
    limit = tolerance * L0 if relative else tolerance
    out.limit, out.loss_general_0 = limit, {"value": L0, "from": where}
    floor = noise_floor if noise_floor is not None else default_noise_floor(limit)
    dg, dd = lg - lg0, ld - ld0
    out.factors = {
        "T": float(max(1.0, target_T / t.max(), t.min() / target_T)),
        "N": float(max(1.0, target_N / n.max(), n.min() / target_N)),
    }
    inflate = 1.0
    if draws > 0:
        out.model_error = _heldout_error(r, t, n, dg, floor, draws, seed)
        if out.model_error.get("measured") and (out.factors["T"] > 1.0 or out.factors["N"] > 1.0):
            inflate = float(out.model_error["inflation"])
    try:
        out.general = fit_surface(r, t, n, dg, floor, draws, seed, inflate=inflate)
        out.domain = fit_surface(r, t, n, dd, floor, draws, seed + 1, n_ref=out.general.n_ref, inflate=inflate)
    except FitError as exc:
        out.reason = f"the surface could not be fitted: {exc}"
    if out.general is not None:
        g = out.general
        out.cmr, out.basis = g.cmr(target_T, target_N, limit), "law"
        out.cmr_by_T = {float(tv): g.cmr(float(tv), target_N, limit) for tv in np.unique(t)}
        if g.draws is not None:
            out.lower, out.upper = _quantiles(surface_cmr(g.draws, target_T, target_N, g.n_ref, limit), level)
        out.general_loss = _at(g, out.cmr, target_T, target_N, L0, level)
        assert out.domain is not None
        Ld0, _ = base_loss_at(target_N, n, ld0)
        out.domain_loss = _at(out.domain, out.cmr, target_T, target_N, Ld0, level)
    else:
        _observed(out, r, t, n, dg, target_T, target_N, limit)
    if pipeline:
        _paper_pipeline(out, r, t, n, lg, ld, lg0, ld0, target_N, tolerance, relative, options, provenance)
    return out


def _at(fit: SurfaceFit, R: float, T: float, N: float, base: float, level: float) -> tuple[float, float | None, float | None]:
    """(value, lower, upper) of base + increment at one point."""
    value = base + float(fit.value(R, T, N)[0])
    if fit.draws is None:
        return value, None, None
    lo, hi = _quantiles(base + surface_value(fit.draws, np.array([R]), np.array([T]), np.array([N]), fit.n_ref)[:, 0], level)
    return value, lo, hi


def _observed(out: CPTFit, r: np.ndarray, t: np.ndarray, n: np.ndarray, dg: np.ndarray, T: float, N: float, limit: float) -> None:
    """Without a surface: the largest ratio run at the target that stayed within the limit."""
    at = np.isclose(t, T, rtol=1e-9) & np.isclose(n, N, rtol=1e-9)
    if not at.any():
        out.reason = (out.reason or "no surface") + "; and no run at the target's T and N to observe the critical ratio"
        return
    ok = at & (dg <= limit)
    bad = at & (dg > limit)
    out.basis = "observed"
    out.cmr = float(r[ok].max()) if ok.any() else 0.0
    above = r[bad & (r > out.cmr)]
    out.lower, out.upper = out.cmr, float(above.min()) if above.size else 1.0
    out.reason = (out.reason or "") + "; the answer is the largest ratio run at the target within the tolerance, bracketed by the smallest one above it that was not"
    out.reason = out.reason.lstrip("; ")


def _heldout_error(r: np.ndarray, t: np.ndarray, n: np.ndarray, dg: np.ndarray, floor: float, draws: int, seed: int) -> dict[str, Any]:
    """The surface fitted without the runs at the largest T, scored on them: its extrapolation error in T.

    Each held-out run's error is divided by the refit's predictive sd there (its draws'
    spread and its residual scale together); the root mean square of those, when above 1,
    is how much wider the answer's draws must be to have covered them (``inflation``).
    """
    top = t.max()
    keep = t < top
    if np.unique(t[keep]).size < 2 or keep.sum() < 6 or (~keep).sum() < 1:
        return {"measured": False, "reason": "needs runs at 3 or more token counts, 6 of them below the largest"}
    try:
        fit = fit_surface(r[keep], t[keep], n[keep], dg[keep], floor, max(draws // 2, 20), seed + 7)
    except FitError as exc:
        return {"measured": False, "reason": str(exc)}
    pred = fit.value(r[~keep], t[~keep], n[~keep])
    err = dg[~keep] - pred
    spread = np.zeros_like(err) if fit.draws is None else np.var(surface_value(fit.draws, r[~keep], t[~keep], n[~keep], fit.n_ref), axis=0)
    z = err / np.sqrt(spread + fit.sigma**2)
    rms_z = float(np.sqrt(np.mean(z**2)))
    return {
        "measured": True,
        "held_out": f"T={top:.4g}",
        "n_held_out": int((~keep).sum()),
        "heldout_rmse": float(np.sqrt(np.mean(err**2))),
        "in_sample_rmse": fit.rmse,
        "heldout_rms_z": rms_z,
        "inflation": max(1.0, rms_z),
        "rule": "the answer's draws are widened by max(1, rms z) when the target lies beyond the runs",
    }


def _paper_pipeline(out: CPTFit, r, t, n, lg, ld, lg0, ld0, target_N: float, tolerance: float, relative: bool, options: FitOptions | None, provenance: Mapping[str, Any] | None) -> None:
    """The paper's per-T pipeline on the runs at one base size (the target's, else the largest run)."""
    sizes = np.unique(n)
    size = sizes[np.argmin(np.abs(np.log(sizes / target_N)))]
    rows = np.isclose(n, size, rtol=1e-9)
    try:
        out.pipeline = fit_cmr(
            np.concatenate([[0.0], r[rows]]), np.concatenate([[0.0], t[rows]]),
            np.concatenate([[lg0[rows].mean()], lg[rows]]), np.concatenate([[ld0[rows].mean()], ld[rows]]),
            tolerance=tolerance, relative=relative, options=options or FitOptions(bootstrap=0, cv_folds=0), provenance=provenance,
        )
    except (FitError, ValueError):
        out.pipeline_reason = (
            "the CMR paper's per-T pipeline fitted nothing: it needs 4 or more ratios at one token count (a ratio law), "
            "4 token counts with a CMR inside (0, 1) (the CMR law), or one ratio at 4 (domain) or 6 (general) token counts (increment laws)"
        )
