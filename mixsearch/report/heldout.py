"""Held-out (leave-one-out) predictions of the Surrogate against observed objectives.

The report asks how well the model behind the multi-fidelity proposer predicts a
trial it has not seen. The Surrogate is fitted once on the study's done trials
(:func:`mixsearch.propose.surrogate.fit_surrogate`, with the study's kernel settings
when its proposer is a GP); each trial is then predicted from all the others by the
exact leave-one-out identities of a Gaussian process (Rasmussen & Williams 2006,
eq. 5.12), which cost one Cholesky factorisation instead of one fit per trial. The
hyperparameters are those of the full fit, so the held-out error is slightly
optimistic; the points themselves are never seen by their own prediction.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from scipy.stats import spearmanr

from mixsearch.report import style
from mixsearch.study import Study
from mixsearch.threads import limited

MIN_TRIALS = 4  # below this a held-out prediction has too little to learn from


def surrogate_options(study: Study) -> dict[str, Any]:
    """The Surrogate settings of the study's own proposer, as it resolved them; the
    multi-fidelity proposer's defaults when the study's proposer fits no GP.

    Read from the proposer object, never re-derived here, so the figure shows the model
    the study used.
    """
    from mixsearch.propose.base import make_proposer
    from mixsearch.propose.mfbo import MultiFidelityBO

    try:
        proposer = make_proposer(study.proposer)
    except ValueError:
        proposer = None
    settings = getattr(proposer, "surrogate_settings", None)
    return dict(settings() if callable(settings) else MultiFidelityBO().surrogate_settings())


def loo_predictions(model: Any) -> tuple[np.ndarray, np.ndarray]:
    """Exact leave-one-out predictive mean and std of a fitted exact GP at its training points.

    With ``K = k(X, X) + σ² I`` on the model's (transformed) training data, the
    prediction of ``y_i`` from every other point has mean ``y_i - [K⁻¹(y - m)]_i /
    [K⁻¹]_ii`` and variance ``1 / [K⁻¹]_ii`` (observation noise included).

    Args:
        model: A fitted BoTorch ``SingleTaskGP`` in eval mode, single output, with a
            homoskedastic Gaussian likelihood and optionally a ``Standardize``
            outcome transform.

    Returns:
        ``(mean [n], std [n])`` in the model's original output units.
    """
    with torch.no_grad():
        X = model.train_inputs[0]  # [n, d], already input-transformed in eval mode
        y = model.train_targets  # [n], standardised
        prior = model.forward(X)
        noise = model.likelihood.noise.reshape(-1)
        K = prior.covariance_matrix + torch.diag(noise.expand(y.shape[-1]))
        L = torch.linalg.cholesky(K)
        K_inv = torch.cholesky_inverse(L)
        alpha = K_inv @ (y - prior.mean)
        diag = torch.diagonal(K_inv)
        mean = y - alpha / diag
        var = 1.0 / diag
        transform = getattr(model, "outcome_transform", None)
        if transform is not None:
            mean_t, var_t = transform.untransform(mean.reshape(-1, 1), var.reshape(-1, 1))
            mean, var = mean_t.reshape(-1), var_t.reshape(-1)
    return mean.cpu().numpy(), var.clamp_min(0.0).sqrt().cpu().numpy()


def surrogate_loo(study: Study, trials: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Leave-one-out Surrogate predictions for every done trial.

    Args:
        study: The study (domains, ladder, objective direction, proposer options).
        trials: The ledger's ``to_dataframe()``.
        seed: Seed of the GP fit.

    Returns:
        One row per done trial at a ladder rung: ``number, rung, observed, predicted,
        std``, objectives in the study's orientation. Empty when fewer than
        ``MIN_TRIALS`` trials are usable or their objectives are all equal.
    """
    from mixsearch.propose.fidelity import DTYPE, FidelityEncoder, as_inputs
    from mixsearch.propose.surrogate import fit_surrogate

    cols = ["number", "rung", "observed", "predicted", "std"]
    if trials.empty:
        return pd.DataFrame(columns=cols)
    enc = FidelityEncoder.from_ladder(study.ladder)
    obj = pd.to_numeric(trials["objective"], errors="coerce")
    done = trials[(trials["state"] == "done") & np.isfinite(obj) & trials["rung"].isin(enc.names)]
    observed = pd.to_numeric(done["objective"]).to_numpy(dtype=float)
    if len(done) < MIN_TRIALS or np.ptp(observed) == 0:
        return pd.DataFrame(columns=cols)
    weights = done[[f"w_{d}" for d in study.domain_names]].to_numpy(dtype=float)
    rungs = list(done["rung"])
    X = as_inputs(weights, enc.encode(rungs))
    # The Surrogate maximises the negated 'smaller is better' objective, as the proposers fit it.
    Y = torch.tensor(-study.objective.to_minimise(observed), dtype=DTYPE).unsqueeze(-1)
    opts = surrogate_options(study)
    with limited("surrogate"):
        torch.manual_seed(seed)
        model = fit_surrogate(X, Y, weights.shape[1], opts["kind"], opts["weight_transform"], opts["maxiter"])
        mean, std = loo_predictions(model)
    return pd.DataFrame(
        {"number": done["number"].to_numpy(), "rung": rungs, "observed": observed, "predicted": study.objective.from_minimise(-mean), "std": std}
    )[cols]


def heldout_figure(cv: pd.DataFrame, rungs: list[str], label: tuple[str, str | None]) -> Figure:
    """Held-out prediction against observed objective per rung, with the report's interval as bars
    and the identity line; a rank correlation only where a rung has enough trials.

    Args:
        cv: :func:`surrogate_loo` output.
        rungs: Rung names in display order.
        label: ``(quantity, unit)`` of the objective.
    """
    cv = cv[np.isfinite(cv["predicted"].astype(float))] if not cv.empty else cv
    if cv.empty:
        raise style.NothingToDraw(
            f"Too few done trials with distinct objectives for held-out predictions (need at least {MIN_TRIALS})."
        )
    shown = [r for r in rungs if (cv["rung"] == r).any()]
    fig, axes = style.new_figure(4.6 * len(shown) + 0.6, 4.6, 1, len(shown), squeeze=False)
    colors = style.palette(rungs)
    quantity, unit = label
    for rung, ax in zip(shown, axes[0]):
        g = cv[cv["rung"] == rung]
        x = g["observed"].to_numpy(dtype=float)
        y = g["predicted"].to_numpy(dtype=float)
        e = style.z_of() * g["std"].to_numpy(dtype=float)
        ax.errorbar(x, y, yerr=e, fmt="o", ms=4, color=colors[rung], ecolor=colors[rung], elinewidth=0.8, alpha=0.8, capsize=2,
                    label=f"held-out trial ({style.INTERVAL_LEVEL:.0%} predictive interval)")
        lo = float(np.nanmin(np.concatenate([x, y - e])))
        hi = float(np.nanmax(np.concatenate([x, y + e])))
        pad = 0.05 * (hi - lo) if hi > lo else 0.05
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "--", color="0.4", lw=1, label="identity (perfect prediction)")
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_aspect("equal", adjustable="box")
        rmse = float(np.sqrt(np.mean((y - x) ** 2)))
        enough = len(x) >= style.MIN_CORRELATION_N and np.ptp(x) > 0 and np.ptp(y) > 0
        rho = spearmanr(x, y).statistic if enough else math.nan
        stats = f"n={len(x)}  held-out RMSE={rmse:.3g}" + (f"  Spearman ρ={rho:.2f}" if enough else f"  (no ρ below n={style.MIN_CORRELATION_N})")
        style.label_axes(ax, f"observed {quantity.split(': ')[-1]}", f"held-out prediction of the {quantity.split(': ')[-1]}", unit, unit, title=f"Rung {rung}\n{stats}")
        ax.legend(loc="upper left")
    return fig
