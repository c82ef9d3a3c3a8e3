"""Laws fitted on a study's own runs, for ``mixsearch study export``.

What the data supports is fitted, the rest is skipped with a reason; nothing here
raises on small or odd data:

* a mixing law per rung, once the rung has enough done trials (K + 3 and at least 6);
* a size law across rungs on comparable mixtures (mixtures run at two or more
  scales): L_m(x) = E_m + A/x^α with the exponent shared by all mixtures (and A too
  when only two scales exist), reported for the reference mixture (the best at the
  largest scale it was run at);
* a Chinchilla law when one mixture was run at five or more (N, D) pairs with both
  N and D varying.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from mixsearch.laws.asymptote import AsymptoteLaw, SaturatingPowerFormula
from mixsearch.laws.chinchilla import fit_chinchilla
from mixsearch.laws.fit import FitError, FitOptions
from mixsearch.laws.tied import fit_tied
from mixsearch.laws.law import Law, base_provenance, fit_diagnostics, fit_settings, keep_draws
from mixsearch.laws.mixing import fit_mixing
from mixsearch.study import Study

MIN_MIXING_TRIALS = 6
STUDY_BOOTSTRAP = 50  # enough for intervals on an export, cheap enough to run on every export


def study_laws(df: pd.DataFrame, study: Study, snapshot: str | None = None, options: FitOptions | None = None) -> list[Law | str]:
    """Fit the laws a study's done trials support.

    Args:
        df: The ledger's ``to_dataframe()`` (done trials are used; other states ignored).
        study: The study (domains, ladder, objective).
        snapshot: Data snapshot id (corpus or table hash), recorded as provenance.
        options: Fit options (default: 50 bootstrap resamples, the study's seed).

    Returns:
        Fitted laws and, as strings, reasons for laws skipped; never raises on data.
    """
    out: list[Law | str] = []
    if df is None or df.empty:
        return ["no trials: no laws fitted"]
    done = df[df["state"] == "done"] if "state" in df.columns else df
    if done.empty:
        return ["no done trials: no laws fitted"]
    opts = options or FitOptions(bootstrap=STUDY_BOOTSTRAP, seed=int(study.seed), keep_samples=STUDY_BOOTSTRAP)
    prov = {"study": study.name, "corpus_hash": snapshot, "study_config": study.config_hash(), "source": "ledger"}
    out += _mixing_per_rung(done, study, opts, prov)
    out += _across_rungs(done, study, opts, prov)
    return out


def _targets(done: pd.DataFrame, study: Study) -> list[str]:
    wanted = list(study.objective.domain_weights) if study.objective.domain_weights else study.domain_names
    return [d for d in wanted if f"loss_{d}" in done.columns]


def _mixing_per_rung(done: pd.DataFrame, study: Study, opts: FitOptions, prov: dict[str, Any]) -> list[Law | str]:
    out: list[Law | str] = []
    domains = study.domain_names
    wcols = [f"w_{d}" for d in domains]
    if any(c not in done.columns for c in wcols):
        return ["mixing laws: the ledger has no weight column for some domain"]
    targets = _targets(done, study)
    if not targets:
        return ["mixing laws: the ledger holds no per-domain losses"]
    need = max(MIN_MIXING_TRIALS, len(domains) + 3)
    for rung in study.ladder.rungs:
        sub = done[done["rung"] == rung.name]
        if sub.empty:
            continue
        w = sub[wcols].to_numpy(dtype=float)
        y = sub[[f"loss_{t}" for t in targets]].to_numpy(dtype=float)
        ok = np.all(np.isfinite(w), axis=1) & np.all(np.isfinite(y) & (y > 0), axis=1)
        if int(ok.sum()) < need:
            out.append(f"mixing law at rung {rung.name}: {int(ok.sum())} usable done trials, need {need}")
            continue
        try:
            out.append(
                fit_mixing(
                    w[ok],
                    {t: y[ok, i] for i, t in enumerate(targets)},
                    domains,
                    target_weights=dict(study.objective.domain_weights) if study.objective.domain_weights else None,
                    scale={"N": rung.n_params, "tokens": rung.tokens},
                    options=opts,
                    name=f"mixing@{rung.name}",
                    provenance=prov,
                )
            )
        except (FitError, ValueError, np.linalg.LinAlgError) as exc:
            out.append(f"mixing law at rung {rung.name}: {exc}")
    return out


def _scale_variable(study: Study, rung_names: list[str]) -> tuple[str, dict[str, float]] | None:
    rungs = [study.ladder.rung(r) for r in rung_names]
    for attr, label in (("n_params", "N"), ("tokens", "D")):
        values = [getattr(r, attr) for r in rungs]
        if all(v is not None for v in values) and len(set(values)) == len(values):
            return label, {r.name: float(getattr(r, attr)) for r in rungs}
    return None


def _across_rungs(done: pd.DataFrame, study: Study, opts: FitOptions, prov: dict[str, Any]) -> list[Law | str]:
    present = [r.name for r in study.ladder.rungs if (done["rung"] == r.name).any()]
    if len(present) < 2:
        return [f"size law across rungs: trials at {len(present)} rung(s), need 2"]
    if study.objective.direction != "minimize":
        return ["size law across rungs: the objective is maximised; a saturating loss law does not apply"]
    scale = _scale_variable(study, present)
    if scale is None:
        return ["size law across rungs: the rungs do not differ in n_params or tokens"]
    var, x_of = scale
    rows = done[done["rung"].isin(present) & done["objective"].notna()]
    rows = rows[np.isfinite(rows["objective"].to_numpy(dtype=float)) & (rows["objective"].to_numpy(dtype=float) > 0)]
    wcols = [f"w_{d}" for d in study.domain_names]
    keys = [tuple(np.round(r, 6)) for r in rows[wcols].to_numpy(dtype=float)]
    groups: dict[tuple, dict[float, list[float]]] = {}
    for key, rung, obj in zip(keys, rows["rung"], rows["objective"].to_numpy(dtype=float)):
        groups.setdefault(key, {}).setdefault(x_of[rung], []).append(float(obj))
    comparable = {k: v for k, v in groups.items() if len(v) >= 2}
    out: list[Law | str] = []
    if not comparable:
        return ["size law across rungs: no mixture was run at two or more rungs"]
    n_scales = len({x for v in comparable.values() for x in v})
    tied = ("a", "alpha") if n_scales == 2 else ("alpha",)
    n_points = sum(len(v) for v in comparable.values())
    n_params = len(tied) + (3 - len(tied)) * len(comparable)
    if n_points <= n_params:
        return [f"size law across rungs: {len(comparable)} comparable mixture(s) at {n_scales} scales give {n_points} points for {n_params} parameters"]
    mixtures = list(comparable)
    xs = [np.array(sorted(comparable[m])) for m in mixtures]
    ys = [np.array([float(np.mean(comparable[m][x])) for x in sorted(comparable[m])]) for m in mixtures]
    # Reference: the mixture with the best objective at the largest scale any comparable mixture reached.
    top = max(x for v in comparable.values() for x in v)
    at_top = [(float(np.mean(comparable[m][top])), i) for i, m in enumerate(mixtures) if top in comparable[m]]
    ref = min(at_top)[1] if at_top else 0
    formula = SaturatingPowerFormula.for_data(np.concatenate(xs))
    try:
        fit, tied_formula = fit_tied(formula, xs, ys, tied, opts.replace(cv_folds=0))
    except (FitError, ValueError) as exc:
        return [f"size law across rungs: {exc}"]
    theta = formula.to_public(tied_formula.curve_theta(fit.theta, ref))
    samples = None if fit.bootstrap is None else formula.to_public(tied_formula.curve_theta(fit.bootstrap, ref))
    exponent = "alpha" if var == "N" else "beta"
    target = study.ladder.target
    target_x = target.n_params if var == "N" else target.tokens
    law = AsymptoteLaw(
        name="size-across-rungs",
        form="size" if var == "N" else "data",
        params={"E": float(theta[0]), "A": float(theta[1]), exponent: float(theta[2])},
        samples=keep_draws(samples, opts.keep_samples),
        level=opts.level,
        inputs={var: {"unit": "parameters" if var == "N" else "tokens", "normalisation": "none", "description": "rung scale"}},
        output={"name": "objective", "unit": "objective units (a loss)"},
        data_range={var: (float(min(x.min() for x in xs)), float(max(x.max() for x in xs)))},
        diagnostics=fit_diagnostics(fit, np.concatenate(ys)),
        settings=fit_settings(fit),
        provenance=base_provenance(prov),
        extra={
            "mixture": {d: float(w) for d, w in zip(study.domain_names, mixtures[ref])},
            "tied": list(tied),
            "comparable_mixtures": len(mixtures),
            "scales": sorted({x for v in comparable.values() for x in v}),
            "target": target.name,
            "target_scale": None if target_x is None else float(target_x),
        },
        data={var: xs[ref].tolist(), "loss": ys[ref].tolist()},
    )
    out.append(law)
    out += _chinchilla_if_supported(rows, keys, mixtures[ref], study, opts, prov)
    return out


def _chinchilla_if_supported(rows: pd.DataFrame, keys: list[tuple], ref: tuple, study: Study, opts: FitOptions, prov: dict[str, Any]) -> list[Law | str]:
    mask = np.array([k == ref for k in keys])
    sub = rows[mask]
    n = np.array([study.ladder.rung(r).n_params or math.nan for r in sub["rung"]], dtype=float)
    d = np.array([study.ladder.rung(r).tokens or math.nan for r in sub["rung"]], dtype=float)
    ok = np.isfinite(n) & np.isfinite(d)
    pairs = {(a, b) for a, b in zip(n[ok], d[ok])}
    if len(pairs) < 5 or np.unique(n[ok]).size < 2 or np.unique(d[ok]).size < 2:
        return [f"chinchilla law: the reference mixture has {len(pairs)} distinct (N, D) pairs, need 5 with both varying"]
    try:
        return [fit_chinchilla(n[ok], d[ok], sub["objective"].to_numpy(dtype=float)[ok], opts, name="chinchilla", provenance=prov)]
    except (FitError, ValueError) as exc:
        return [f"chinchilla law: {exc}"]
