"""The nested pipeline: a one-scale mixing law at a target scale, from runs at several scales.

It predicts every mixture's loss at the target first — a step law L(S) = E + B/S^β per run,
a size law L(N) = E + A/N^α per mixture across the ladder — and fits the mixing law of
:mod:`mixsearch.laws.mixing` on those predictions. The joint law (:mod:`mixsearch.laws.joint`)
is the default across scales; this pipeline stays as ``fit_table(..., pipeline="nested")``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

import numpy as np

from mixsearch.laws.asymptote import SaturatingPowerFormula
from mixsearch.laws.fit import FitError, FitOptions, fit_model
from mixsearch.laws.tied import fit_tied
from mixsearch.laws.mixing import MixingLaw, fit_mixing
from mixsearch.laws.mixture import loss_matrix


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


__all__ = ["StageSummary", "fit_nested"]
