"""The joint law of mixture and scale on RegMix, and on a synthetic world whose optimum moves.

Data: the published RegMix runs (sail-sg/regmix, ``data/``), read in place from ``--data``
(default ``../shared/data/regmix`` beside the repository root; never copied into the repo).
The objective is the Pile-CC validation loss (``metric/the_pile_pile_cc_val_loss``):

* 1M-parameter runs on 1B tokens: 512 training mixtures and 256 test mixtures;
* 60M-parameter runs on 1B tokens of the same 256 test mixtures;
* 1B-parameter runs on 25B tokens of 64 *other* mixtures: the held-out rung.

Three parts (``--parts``):

``select``
    The form of the law, chosen on the development runs only (no 1B loss is read): at one
    scale (fit the 512 1M training runs, predict the 256 1M test runs; and a shifted split:
    hold out the most balanced quarter of the 768 1M mixtures, by entropy, since the
    target mixtures are more balanced than the proxies) and across scales (hold out test
    mixtures at both scales, predict their 60M loss from every other run: 2-fold random,
    and the most balanced quarter). Spearman ρ, RMSE, and paired-bootstrap standard errors
    of the differences to the chosen form.
``target``
    Fit on every 1M and 60M run, predict the 64 1B mixtures at N = 1e9, D = 25e9: the
    joint law (``mixsearch.laws.fit_joint``, default form), LightGBM (as regmix_ranking.py:
    1000 rounds, lr 0.01, seed 42) trained on the 60M runs only and on every run with log N
    as a feature, the nested step/size/mixing pipeline (``fit_nested``), and the one-scale
    mixing law at 1M for reference. D is 1B tokens in every fitted run, so the D term is
    not identified by them: the law takes it from a prior, Hoffmann et al.'s (2022)
    B = 410.7, beta = 0.28, and says so in its ``identifiability``. The law's 90 % intervals
    (for a new run) on the 64 1B losses give the held-out coverage.
``synthetic``
    A world whose optimum moves with N and D (``moving-optimum`` of
    ``mixsearch.evaluate.worlds``; older layouts are tried in turn), six domains, 48 random
    mixtures at each of five rungs that vary N and D apart (25M/0.5B, 25M/2B, 50M/1B,
    100M/0.5B, 100M/2B), noise as the world's evaluator draws it. Leave-one-rung-out with
    the law's own calibration inside (``leave_one_scale_out(calibrated=True)``): the law
    fitted on four rungs, with the model error it measured by leaving out *its* largest,
    predicts the fifth; and the law fitted on all five predicts the world's target rung
    (400M on 8B tokens, 4x beyond in N and D). Coverage of the 90 % intervals, ρ and MAE,
    beside the one-scale mixing law fitted at the largest rung.

Example::

    OMP_NUM_THREADS=1 python benchmarks/regmix_joint.py --json joint.json
    OMP_NUM_THREADS=1 python benchmarks/regmix_joint.py --parts target --bootstrap 50
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from regmix_ranking import DEFAULT_DATA, OBJECTIVE, WEIGHT_PREFIX, _read_pair  # noqa: E402

from mixsearch.laws import FitError, FitOptions, fit_joint, fit_mixing, fit_nested, leave_one_scale_out  # noqa: E402

D_PRIOR = {"B": 410.7, "beta": 0.28}  # Hoffmann et al. 2022: the D term, which runs on one D cannot identify
N_SMALL, N_MID, N_TARGET = 1e6, 6e7, 1e9
D_RUNS, D_TARGET = 1e9, 25e9
LEVEL = 0.9
SELECT_FORMS = ("ye", "log", "log-c", "ll", "l2l")
SUBSAMPLES = (60, 120, 250)
CHOSEN = "ll"


# -- data ---------------------------------------------------------------------------------------


def load(data_dir: Path) -> dict[str, Any]:
    """The RegMix runs: 1M train and test, 60M test, 1B held out (mixtures renormalised to sum to one)."""
    names = ["train_mixture_1m.csv", "train_pile_loss_1m.csv", "test_mixture_1m.csv", "test_pile_loss_1m.csv", "test_pile_loss_60m.csv", "test_mixture_1B.csv", "test_pile_loss_1B.csv"]
    missing = [n for n in names if not (data_dir / n).is_file()]
    if missing:
        raise SystemExit(f"{data_dir}: missing {', '.join(missing)} (pass the RegMix data directory with --data)")
    comps = [c for c in pd.read_csv(data_dir / "train_mixture_1m.csv", nrows=0).columns if c.startswith(WEIGHT_PREFIX)]
    train = _read_pair(data_dir / "train_mixture_1m.csv", data_dir / "train_pile_loss_1m.csv")
    t1 = _read_pair(data_dir / "test_mixture_1m.csv", data_dir / "test_pile_loss_1m.csv")
    t60 = _read_pair(data_dir / "test_mixture_1m.csv", data_dir / "test_pile_loss_60m.csv")
    b = _read_pair(data_dir / "test_mixture_1B.csv", data_dir / "test_pile_loss_1B.csv")
    if not np.array_equal(t1["index"].to_numpy(), t60["index"].to_numpy()):
        raise SystemExit("test_pile_loss_1m.csv and test_pile_loss_60m.csv cover different mixtures")

    def mix(df: pd.DataFrame) -> np.ndarray:
        w = df[comps].to_numpy(float)
        return w / w.sum(axis=1, keepdims=True)

    return {
        "components": [c.removeprefix(WEIGHT_PREFIX) for c in comps],
        "x_train": mix(train), "y_train": train[OBJECTIVE].to_numpy(float),
        "x_test": mix(t1), "y_test_1m": t1[OBJECTIVE].to_numpy(float), "y_test_60m": t60[OBJECTIVE].to_numpy(float),
        "x_1b": mix(b), "y_1b": b[OBJECTIVE].to_numpy(float),
    }


def entropy(w: np.ndarray) -> np.ndarray:
    """``[n]`` Shannon entropy of each mixture (nats)."""
    p = np.clip(w, 1e-300, 1.0)
    return -(np.where(w > 0, w * np.log(p), 0.0)).sum(axis=1)


def rho(a: np.ndarray, b: np.ndarray) -> float:
    return float(spearmanr(a, b).statistic)


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


def paired_se(pred: dict[str, np.ndarray], y: np.ndarray, ref: str, seed: int = 0, draws: int = 1000) -> dict[str, dict[str, float]]:
    """Paired bootstrap over held-out mixtures: mean and sd of (form − ref) in ρ and RMSE."""
    rng = np.random.default_rng(seed)
    idx = [rng.integers(0, y.size, y.size) for _ in range(draws)]
    out = {}
    for name, p in pred.items():
        if name == ref:
            continue
        dr = [rho(p[i], y[i]) - rho(pred[ref][i], y[i]) for i in idx]
        de = [rmse(p[i], y[i]) - rmse(pred[ref][i], y[i]) for i in idx]
        out[name] = {"d_rho": float(np.mean(dr)), "se_rho": float(np.std(dr)), "d_rmse": float(np.mean(de)), "se_rmse": float(np.std(de))}
    return out


def lightgbm(x: np.ndarray, y: np.ndarray, seed: int = 42) -> Callable[[np.ndarray], np.ndarray]:
    import lightgbm as lgb

    model = lgb.LGBMRegressor(boosting_type="gbdt", objective="regression", n_estimators=1000, learning_rate=0.01, random_state=seed, n_jobs=1, verbosity=-1)
    return model.fit(x, y).predict


POINT = FitOptions(bootstrap=0, cv_folds=0)


# -- select ---------------------------------------------------------------------------------------


def part_select(d: dict[str, Any]) -> dict[str, Any]:
    """Held-out evidence for the form, on the 1M and 60M runs only."""
    comps = d["components"]
    out: dict[str, Any] = {"one_scale": {}, "cross_scale": {}}
    x_all = np.vstack([d["x_train"], d["x_test"]])
    y_all = np.concatenate([d["y_train"], d["y_test_1m"]])
    shift_1m = entropy(x_all) >= np.quantile(entropy(x_all), 0.75)
    splits_1m = {
        "test (512 -> 256)": (np.arange(768) < 512, np.arange(768) >= 512),
        "most balanced quarter held out": (~shift_1m, shift_1m),
    }
    for label, (fit_rows, test_rows) in splits_1m.items():
        res, preds = {}, {}
        for form in SELECT_FORMS[:2] + SELECT_FORMS[3:]:  # log-c is log at one scale
            t0 = time.perf_counter()
            law = fit_joint(x_all[fit_rows], y_all[fit_rows], comps, form=form, options=POINT, measure_error=False)
            preds[form] = np.asarray(law.predict(weights=x_all[test_rows]).value)
            res[form] = {"rho": rho(preds[form], y_all[test_rows]), "rmse": rmse(preds[form], y_all[test_rows]), "params": law.diagnostics["n_parameters"], "fit_s": time.perf_counter() - t0}
            print(f"  one scale, {label}: {form:6s} rho {res[form]['rho']:.4f} rmse {res[form]['rmse']:.4f} ({res[form]['params']} parameters, {res[form]['fit_s']:.1f} s)", flush=True)
        p = lightgbm(x_all[fit_rows], y_all[fit_rows])(x_all[test_rows])
        res["lightgbm"] = {"rho": rho(p, y_all[test_rows]), "rmse": rmse(p, y_all[test_rows])}
        print(f"  one scale, {label}: lightgbm rho {res['lightgbm']['rho']:.4f} rmse {res['lightgbm']['rmse']:.4f}", flush=True)
        out["one_scale"][label] = {"n_fit": int(fit_rows.sum()), "n_held_out": int(test_rows.sum()), "results": res, "vs_" + CHOSEN: paired_se(preds, y_all[test_rows], CHOSEN)}
    # Fewer runs: which form for how many runs (the rule of form="auto").
    rng = np.random.default_rng(1)
    out["subsamples"] = {}
    for n_runs in SUBSAMPLES:
        picks = [rng.choice(512, n_runs, replace=False) for _ in range(3)]
        row = {}
        for form in ("ye", "log", "ll", "l2l"):
            r_, e_ = [], []
            for idx in picks:
                try:
                    law = fit_joint(d["x_train"][idx], d["y_train"][idx], comps, form=form, options=POINT, measure_error=False)
                except FitError:
                    continue
                pred = np.asarray(law.predict(weights=d["x_test"]).value)
                r_.append(rho(pred, d["y_test_1m"]))
                e_.append(rmse(pred, d["y_test_1m"]))
            row[form] = {"rho": float(np.mean(r_)) if r_ else None, "rmse": float(np.mean(e_)) if e_ else None, "fits": len(r_), "params": law.diagnostics["n_parameters"]}
        out["subsamples"][str(n_runs)] = row
        print(f"  one scale, {n_runs} random training runs (3 draws), 256 test runs: " + ", ".join(f"{f} rho {v['rho']:.4f} rmse {v['rmse']:.4f}" if v["rho"] is not None else f"{f} unfittable" for f, v in row.items()), flush=True)
    # Across scales: hold out test mixtures at both scales, predict their 60M loss.
    xt, y1, y60 = d["x_test"], d["y_test_1m"], d["y_test_60m"]
    shift = entropy(xt) >= np.quantile(entropy(xt), 0.75)
    folds = {"2-fold random": [np.arange(256) % 2 == k for k in (0, 1)], "most balanced quarter held out": [shift]}
    for label, holds in folds.items():
        res, preds = {}, {}
        held_all = np.zeros(256, dtype=bool)
        for hold in holds:
            held_all |= hold
        for form in SELECT_FORMS:
            pred = np.full(256, np.nan)
            t0 = time.perf_counter()
            alphas, converged = [], True
            for hold in holds:
                w = np.vstack([d["x_train"], xt[~hold], xt[~hold]])
                n = np.concatenate([np.full(512 + (~hold).sum(), N_SMALL), np.full((~hold).sum(), N_MID)])
                y = np.concatenate([d["y_train"], y1[~hold], y60[~hold]])
                law = fit_joint(w, y, comps, N=n, D=D_RUNS, form=form, options=POINT, measure_error=False)
                pred[hold] = law.predict(weights=xt[hold], N=N_MID, D=D_RUNS).value
                alphas.append(law.params["alpha[loss]"])
                converged &= bool(law.diagnostics["converged"])
            preds[form] = pred[held_all]
            res[form] = {"rho": rho(preds[form], y60[held_all]), "rmse": rmse(preds[form], y60[held_all]), "params": law.diagnostics["n_parameters"], "alpha": alphas, "converged": converged, "fit_s": time.perf_counter() - t0}
            print(f"  across scales, {label}: {form:6s} rho {res[form]['rho']:.4f} rmse {res[form]['rmse']:.4f} alpha {np.round(alphas, 3).tolist()} converged {converged} ({res[form]['fit_s']:.0f} s)", flush=True)
        # One-scale laws on the kept 60M runs alone: does the joint fit gain from the 1M runs?
        for form in ("ye", CHOSEN):
            pred = np.full(256, np.nan)
            for hold in holds:
                law = fit_joint(xt[~hold], y60[~hold], comps, form=form, options=POINT, measure_error=False)
                pred[hold] = law.predict(weights=xt[hold]).value
            key = f"{form}, 60M runs only"
            preds[key] = pred[held_all]
            res[key] = {"rho": rho(preds[key], y60[held_all]), "rmse": rmse(preds[key], y60[held_all]), "params": law.diagnostics["n_parameters"]}
            print(f"  across scales, {label}: {key} rho {res[key]['rho']:.4f} rmse {res[key]['rmse']:.4f}", flush=True)
        p = np.full(256, np.nan)
        for hold in holds:
            xf = np.vstack([np.column_stack([d["x_train"], np.full(512, math.log(N_SMALL))]), np.column_stack([xt[~hold], np.full((~hold).sum(), math.log(N_SMALL))]), np.column_stack([xt[~hold], np.full((~hold).sum(), math.log(N_MID))])])
            p[hold] = lightgbm(xf, np.concatenate([d["y_train"], y1[~hold], y60[~hold]]))(np.column_stack([xt[hold], np.full(hold.sum(), math.log(N_MID))]))
        res["lightgbm (log N feature)"] = {"rho": rho(p[held_all], y60[held_all]), "rmse": rmse(p[held_all], y60[held_all])}
        print(f"  across scales, {label}: lightgbm (log N) rho {res['lightgbm (log N feature)']['rho']:.4f} rmse {res['lightgbm (log N feature)']['rmse']:.4f}", flush=True)
        out["cross_scale"][label] = {"n_held_out": int(held_all.sum()), "results": res, "vs_" + CHOSEN: paired_se(preds, y60[held_all], CHOSEN)}
    return out


# -- target ---------------------------------------------------------------------------------------


def part_target(d: dict[str, Any], bootstrap: int) -> dict[str, Any]:
    """Every 1M and 60M run in, the 64 1B mixtures out."""
    comps = d["components"]
    w = np.vstack([d["x_train"], d["x_test"], d["x_test"]])
    n = np.concatenate([np.full(768, N_SMALL), np.full(256, N_MID)])
    y = np.concatenate([d["y_train"], d["y_test_1m"], d["y_test_60m"]])
    xb, yb = d["x_1b"], d["y_1b"]
    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    opts = FitOptions(bootstrap=bootstrap, cv_folds=0, level=LEVEL)
    law = fit_joint(w, y, comps, N=n, D=D_RUNS, targets=["pile_cc"], priors=D_PRIOR, options=opts, name="regmix-joint")
    fit_s = time.perf_counter() - t0
    p = law.predict(weights=xb, N=N_TARGET, D=D_TARGET, observation=True)
    mean_only = law.predict(weights=xb, N=N_TARGET, D=D_TARGET)
    inside = (yb >= p.lower) & (yb <= p.upper)
    out["joint"] = {
        "rho": rho(p.value, yb),
        "mae": float(np.mean(np.abs(p.value - yb))),
        "bias": float(np.mean(p.value - yb)),
        "coverage_90": float(np.mean(inside)),
        "coverage_90_mean_interval": float(np.mean((yb >= mean_only.lower) & (yb <= mean_only.upper))),
        "interval_width": float(np.mean(p.upper - p.lower)),
        "factor_N": float(p.factor_N[0]),
        "factor_D": float(p.factor_D[0]),
        "extrapolated": int(np.sum(p.extrapolated)),
        "preset": law.extra["preset"],
        "preset_reason": law.extra["preset_reason"],
        "n_parameters": law.diagnostics["n_parameters"],
        "alpha": law.params["alpha[pile_cc]"],
        "alpha_interval": law.intervals.get("alpha[pile_cc]"),
        "converged": law.diagnostics["converged"],
        "identifiability": law.extra["identifiability"],
        "model_error": law.model_error,
        "bootstrap": bootstrap,
        "fit_s": fit_s,
    }
    j = out["joint"]
    print(f"  joint law ({j['preset']}, {j['n_parameters']} parameters, {fit_s:.0f} s with {bootstrap} resamples): rho {j['rho']:.4f} MAE {j['mae']:.4f} "
          f"(mean bias {j['bias']:+.4f}), 90% coverage {j['coverage_90']:.3f} (width {j['interval_width']:.4f}), alpha {j['alpha']:.4f}", flush=True)
    print(f"    model error: {law.model_error.get('reason') or law.model_error}", flush=True)
    # Every form on the 1B rung, after the fact: reported, not used for the choice (that is part "select").
    out["forms_on_1b"] = {}
    for form in SELECT_FORMS:
        other = fit_joint(w, y, comps, N=n, D=D_RUNS, targets=["pile_cc"], form=form, priors=D_PRIOR, options=POINT, measure_error=False)
        po = other.predict(weights=xb, N=N_TARGET, D=D_TARGET).value
        out["forms_on_1b"][form] = {"rho": rho(po, yb), "mae": float(np.mean(np.abs(po - yb))), "alpha": other.params["alpha[pile_cc]"], "params": other.diagnostics["n_parameters"]}
        print(f"  form {form:6s} on the 1B rung (after the fact): rho {out['forms_on_1b'][form]['rho']:.4f} MAE {out['forms_on_1b'][form]['mae']:.4f} alpha {out['forms_on_1b'][form]['alpha']:.3f}", flush=True)
    # LightGBM cannot extrapolate the level: trained on 60M, or on every run with log N as a feature.
    p60 = lightgbm(d["x_test"], d["y_test_60m"])(xb)
    out["lightgbm_60m"] = {"rho": rho(p60, yb), "mae": float(np.mean(np.abs(p60 - yb)))}
    xf = np.column_stack([w, np.log(n)])
    pn = lightgbm(xf, y)(np.column_stack([xb, np.full(len(xb), math.log(N_TARGET))]))
    out["lightgbm_logN"] = {"rho": rho(pn, yb), "mae": float(np.mean(np.abs(pn - yb)))}
    p1 = lightgbm(np.vstack([d["x_train"], d["x_test"]]), np.concatenate([d["y_train"], d["y_test_1m"]]))(xb)
    out["lightgbm_1m"] = {"rho": rho(p1, yb), "mae": float(np.mean(np.abs(p1 - yb)))}
    for k in ("lightgbm_60m", "lightgbm_logN", "lightgbm_1m"):
        print(f"  {k}: rho {out[k]['rho']:.4f} MAE {out[k]['mae']:.4f}", flush=True)
    # The nested pipeline: size law per mixture (the exponent tied), then the mixing law at the target.
    for target_n in (N_TARGET, N_MID):
        key = f"nested_target_N={target_n:.0e}"
        try:
            t0 = time.perf_counter()
            nested = fit_nested(w, y, comps, N=n, target_N=target_n, options=POINT, name="regmix-nested")
            pq = nested.predict(weights=xb).value
            out[key] = {"rho": rho(pq, yb), "mae": float(np.mean(np.abs(pq - yb))), "fit_s": time.perf_counter() - t0, "mixtures": int(nested.diagnostics["n_points"])}
            print(f"  {key}: rho {out[key]['rho']:.4f} MAE {out[key]['mae']:.4f} ({out[key]['mixtures']} mixtures reached the target)", flush=True)
        except (FitError, ValueError) as exc:
            out[key] = {"failed": str(exc)[:300]}
            print(f"  {key}: cannot be fitted: {str(exc)[:160]}", flush=True)
    one = fit_mixing(np.vstack([d["x_train"], d["x_test"]]), np.concatenate([d["y_train"], d["y_test_1m"]]), comps, options=POINT)
    po = one.predict(weights=xb).value
    out["mixing_1m"] = {"rho": rho(po, yb), "mae": float(np.mean(np.abs(po - yb)))}
    print(f"  mixing law at 1M (Ye et al. form): rho {out['mixing_1m']['rho']:.4f} MAE {out['mixing_1m']['mae']:.4f}", flush=True)
    return out


# -- synthetic ----------------------------------------------------------------------------------


def synthetic_world() -> tuple[Any, str]:
    """The ground truth whose optimum moves with N and D, wherever this checkout keeps it."""
    tries = (
        ("mixsearch.evaluate.worlds", "SYNTHETIC_WORLDS", "moving-optimum"),
        ("mixsearch.evaluate.synthetic", "SYNTHETIC_WORLDS", "mixing-shift"),
        ("mixsearch.bench.synthetic", "SYNTHETIC_LAWS", "mixing-shift"),
    )
    import importlib

    for module, table, name in tries:
        try:
            worlds = getattr(importlib.import_module(module), table)
        except (ImportError, AttributeError):
            continue
        if name in worlds:
            return worlds[name], f"{module}.{table}[{name!r}]"
    raise SystemExit("no synthetic world found (mixsearch.evaluate.worlds / evaluate.synthetic / bench.synthetic)")


SYN_RUNGS = ((25e6, 5e8), (25e6, 2e9), (50e6, 1e9), (100e6, 5e8), (100e6, 2e9))
SYN_TARGET = (400e6, 8e9)


def part_synthetic(seeds: list[int], per_rung: int, bootstrap: int) -> dict[str, Any]:
    world, where = synthetic_world()
    domains = list(world.domains)
    k = len(domains)

    def noise_sd(n: float) -> float:
        if hasattr(world, "noise_sd"):
            return float(world.noise_sd(n, world.noise)[0])
        return 0.006 * math.sqrt(k) * (n / 25e6) ** -0.35  # the evaluator's rule before worlds.py

    out: dict[str, Any] = {"world": where, "rungs": [list(r) for r in SYN_RUNGS], "target": list(SYN_TARGET), "per_rung": per_rung, "seeds": {}}
    opts = FitOptions(bootstrap=bootstrap, cv_folds=0, level=LEVEL)
    for seed in seeds:
        rng = np.random.default_rng(seed)
        w, n, dd, y = [], [], [], []
        for rn, rd in SYN_RUNGS:
            mix = rng.dirichlet(np.ones(k), per_rung)
            clean = world.losses(mix, rn, rd)
            w.append(mix)
            y.append(clean + noise_sd(rn) * rng.standard_normal(clean.shape))
            n += [rn] * per_rung
            dd += [rd] * per_rung
        w, y, n, dd = np.vstack(w), np.vstack(y), np.array(n), np.array(dd)
        losses = {dom: y[:, i] for i, dom in enumerate(domains)}
        t0 = time.perf_counter()
        held = leave_one_scale_out(w, losses, domains, N=n, D=dd, options=opts, level=LEVEL, calibrated=True)
        t_held = time.perf_counter() - t0
        inner = held.law.model_error
        t0 = time.perf_counter()
        law = fit_joint(w, losses, domains, N=n, D=dd, options=opts, name="synthetic-joint")
        t_law = time.perf_counter() - t0
        wt = rng.dirichlet(np.ones(k), 64)
        clean_t = world.losses(wt, *SYN_TARGET)
        obs_t = (clean_t + noise_sd(SYN_TARGET[0]) * rng.standard_normal(clean_t.shape)).mean(axis=1)
        p = law.predict(weights=wt, N=SYN_TARGET[0], D=SYN_TARGET[1], observation=True)
        x_t, _ = law._parse({"weights": wt, "N": SYN_TARGET[0], "D": SYN_TARGET[1]})
        lo0, hi0 = np.exp(np.nanpercentile(law.predictive_log_samples(x_t, observation=True, model_error=False), [50 * (1 - LEVEL), 50 * (1 + LEVEL)], axis=0))
        big = (n == SYN_RUNGS[-1][0]) & (dd == SYN_RUNGS[-1][1])
        one = fit_mixing(w[big], {dom: y[big, i] for i, dom in enumerate(domains)}, domains, options=POINT)
        po = one.predict(weights=wt).value
        res = {
            "leave_one_rung_out": {
                "held_out": held.held_out,
                "coverage_90": held.coverage,
                "rmse_log": held.rmse_log,
                "bias": held.bias,
                "distance": held.distance,
                "inner_model_error": {k2: inner.get(k2) for k2 in ("measured", "held_out", "distance", "tau", "coverage", "reason") if k2 in inner},
                "rho_total": rho(held.predicted["(total)"], held.observed["(total)"]),
                "seconds": t_held,
            },
            "target": {
                "rho": rho(p.value, clean_t.mean(axis=1)),
                "mae": float(np.mean(np.abs(p.value - obs_t))),
                "coverage_90": float(np.mean((obs_t >= p.lower) & (obs_t <= p.upper))),
                "coverage_90_without_model_error": float(np.mean((obs_t >= lo0) & (obs_t <= hi0))),
                "bias_log": float(np.mean(np.log(obs_t) - np.log(p.value))),
                "factor_N": float(p.factor_N[0]),
                "factor_D": float(p.factor_D[0]),
                "model_error_tau_total": law.model_error.get("tau", {}).get("(total)"),
                "preset": law.extra["preset"],
                "seconds": t_law,
            },
            "largest_rung_mixing_law_rho": rho(po, clean_t.mean(axis=1)),
        }
        out["seeds"][str(seed)] = res
        lo, tg = res["leave_one_rung_out"], res["target"]
        print(f"  seed {seed}: leave-one-rung-out {lo['held_out']}: 90% coverage total {lo['coverage_90']['(total)']:.3f}, per domain "
              f"{np.round([lo['coverage_90'][dm] for dm in domains], 3).tolist()}, rho {lo['rho_total']:.3f} ({t_held:.0f} s)", flush=True)
        print(f"  seed {seed}: target {SYN_TARGET}: 90% coverage {tg['coverage_90']:.3f} (without the model error {tg['coverage_90_without_model_error']:.3f}), rho {tg['rho']:.3f} (largest-rung mixing law {res['largest_rung_mixing_law_rho']:.3f}), "
              f"MAE {tg['mae']:.4f}, log bias {tg['bias_log']:+.4f} ({t_law:.0f} s)", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="RegMix data directory")
    ap.add_argument("--parts", default="select,target,synthetic", help="comma-separated subset of select,target,synthetic")
    ap.add_argument("--bootstrap", type=int, default=100, help="bootstrap resamples of the RegMix joint law (default 100)")
    ap.add_argument("--syn-seeds", default="0,1", help="seeds of the synthetic world (default 0,1)")
    ap.add_argument("--syn-per-rung", type=int, default=48, help="mixtures per synthetic rung (default 48)")
    ap.add_argument("--syn-bootstrap", type=int, default=50, help="bootstrap resamples of the synthetic laws (default 50)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    args = ap.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - {"select", "target", "synthetic"})
    if unknown:
        ap.error(f"--parts: unknown {', '.join(unknown)}")
    out: dict[str, Any] = {
        "benchmark": "regmix_joint",
        "python": platform.python_version(),
        "nproc": os.cpu_count(),
        "load_at_start": os.getloadavg()[0],
        "date": time.strftime("%Y-%m-%d"),
        "d_prior": D_PRIOR,
    }
    t_all = time.perf_counter()
    d = load(args.data.resolve()) if {"select", "target"} & set(parts) else None
    if "select" in parts:
        print("form selection on the 1M and 60M runs (no 1B loss read):", flush=True)
        out["select"] = part_select(d)
    if "target" in parts:
        print("fit on every 1M and 60M run, predict the 64 1B mixtures (N=1e9, D=25e9):", flush=True)
        out["target"] = part_target(d, args.bootstrap)
    if "synthetic" in parts:
        print("synthetic world, five rungs varying N and D:", flush=True)
        out["synthetic"] = part_synthetic([int(s) for s in args.syn_seeds.split(",")], args.syn_per_rung, args.syn_bootstrap)
    out["seconds"] = time.perf_counter() - t_all
    out["load_at_end"] = os.getloadavg()[0]
    print(f"\ndone in {out['seconds']:.0f} s; load average {out['load_at_start']:.2f} at the start, {out['load_at_end']:.2f} at the end")
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=2, default=lambda v: v.tolist() if isinstance(v, np.ndarray) else str(v)) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
