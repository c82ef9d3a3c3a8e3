"""Plots of fitted laws against the data they were fitted on, with intervals.

Each function takes a fitted :class:`~mixsearch.laws.Law` (its ``data`` holds the
fitted points; pass ``data=`` to draw other points) and returns a matplotlib Figure
on an Agg canvas; :func:`save_law_plots` writes one PNG per law. Bands are the law's
central interval (bootstrap percentiles) at its level.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from scipy.stats import spearmanr

from mixsearch.laws.law import Law
from mixsearch.report.style import MIN_CORRELATION_N, NATS, label_axes, new_figure, note_figure, save_png

_BAND_ALPHA = 0.2


def _columns(law: Law, data: Mapping[str, Sequence[float]] | None) -> dict[str, np.ndarray] | None:
    src = data if data is not None else law.data
    if not src:
        return None
    return {k: np.asarray(v, dtype=float) for k, v in src.items()}


def _band(ax: Any, x: np.ndarray, pred: Any, color: Any, label: str | None = None) -> None:
    ax.plot(x, pred.value, color=color, lw=1.6, label=label)
    if pred.lower is not None:
        ax.fill_between(x, pred.lower, pred.upper, color=color, alpha=_BAND_ALPHA, lw=0)


def _span(lo: float, hi: float, log: bool, beyond: float = 4.0) -> np.ndarray:
    """A grid over the data range, extended to show the extrapolation."""
    if log:
        return np.geomspace(lo / 1.5, hi * beyond, 200)
    return np.linspace(lo, hi, 200)


def _output_label(law: Law) -> tuple[str, str | None]:
    unit = law.output.get("unit")
    return law.output.get("name", "loss"), (NATS if unit == "nats/token" else unit)


def plot_chinchilla(law: Law, data: Mapping[str, Sequence[float]] | None = None) -> Figure:
    """Loss against N, points coloured by D, fitted curves at a few D; and predicted vs observed."""
    cols = _columns(law, data)
    if cols is None:
        return note_figure(f"{law.name}: the law carries no data to plot")
    n, d, y = cols["N"], cols["D"], cols["loss"]
    fig, (ax, ax2) = new_figure(11.0, 4.5, ncols=2)
    sc = ax.scatter(n, y, c=np.log10(d), cmap="viridis", s=14, zorder=3)
    fig.colorbar(sc, ax=ax, label="log10 D (tokens)")
    grid = _span(n.min(), n.max(), log=True)
    cmap = sc.get_cmap()
    lo, hi = np.log10(d.min()), np.log10(d.max())
    for q in np.quantile(d, [0.1, 0.5, 0.9]):
        color = cmap((np.log10(q) - lo) / max(hi - lo, 1e-12))
        _band(ax, grid, law.predict(N=grid, D=np.full_like(grid, q)), color, f"D = {q:.3g}")
    ax.set_xscale("log")
    label_axes(ax, "model size N", "loss", "parameters", NATS, title=f"{law.name}: {law.formula}")
    ax.legend()
    pred = law.predict(N=n, D=d)
    _observed_vs_predicted(ax2, y, pred, "loss", NATS, law)
    return fig


def fit_quality(law: Law, y: np.ndarray, predicted: np.ndarray) -> str:
    """In-sample and held-out error side by side (an in-sample statistic never stands alone),
    and a rank correlation only with enough points."""
    d = law.diagnostics
    n = int(y.size)
    in_rmse = float(np.sqrt(np.mean((np.asarray(predicted) - y) ** 2)))
    held = d.get("cv_rmse")
    me = (law.extra or {}).get("model_error") or {}
    parts = [f"n={n}", f"in-sample RMSE {in_rmse:.3g}"]
    if held is not None:
        parts.append(f"held-out RMSE {float(held):.3g} ({d.get('cv_folds')} folds)")
    elif me.get("measured"):
        parts.append(f"held-out rung: {_held_rung(me)}")
    else:
        parts.append("held-out error: not measured" + (f" ({me['reason'].split(':')[0]})" if me.get("reason") else ""))
    if n >= MIN_CORRELATION_N:
        parts.append(f"in-sample Spearman ρ {spearmanr(predicted, y).statistic:.3f}")
    else:
        parts.append(f"no ρ below n={MIN_CORRELATION_N}")
    return ", ".join(parts)


def _held_rung(me: Mapping[str, Any]) -> str:
    cov = me.get("coverage")
    if isinstance(cov, Mapping):
        cov = cov.get("(total)", next(iter(cov.values()), None))
    rmse = me.get("rmse_log")
    if isinstance(rmse, Mapping):
        rmse = rmse.get("(total)", next(iter(rmse.values()), None))
    bits = []
    if rmse is not None:
        bits.append(f"log RMSE {float(rmse):.3g}")
    elif me.get("heldout_rmse") is not None:
        bits.append(f"{me.get('held_out', 'held-out')} RMSE {float(me['heldout_rmse']):.3g}")
    if cov is not None:
        bits.append(f"interval coverage {float(cov):.0%}")
    return ", ".join(bits) or "measured"


def _observed_vs_predicted(ax: Any, y: np.ndarray, pred: Any, quantity: str, unit: str | None, law: Law | None = None) -> None:
    if pred.lower is not None:
        ax.errorbar(pred.value, y, xerr=[pred.value - pred.lower, pred.upper - pred.value], fmt="o", ms=3, alpha=0.7, elinewidth=0.8,
                    label=f"run ({pred.level:.0%} interval of the law)")
    else:
        ax.plot(pred.value, y, "o", ms=3, alpha=0.7, label="run")
    both = np.concatenate([y, pred.value])
    ax.plot([both.min(), both.max()], [both.min(), both.max()], color="0.4", lw=1, ls="--", label="y = x")
    title = "predicted vs observed" if law is None else f"predicted vs observed\n{fit_quality(law, y, pred.value)}"
    label_axes(ax, f"predicted {quantity}", f"observed {quantity}", unit, unit, title=title)
    ax.legend()


def plot_mixing(law: Law, data: Mapping[str, Sequence[float]] | None = None) -> Figure:
    """Observed against predicted total loss of each run, with the law's interval per run."""
    cols = _columns(law, data)
    if cols is None:
        return note_figure(f"{law.name}: the law carries no data to plot")
    comps = list(law.extra["components"])
    targets = list(law.extra["targets"])
    missing = [f"w_{c}" for c in comps if f"w_{c}" not in cols] + [f"loss_{t}" for t in targets if f"loss_{t}" not in cols]
    if missing:
        return note_figure(f"{law.name}: data lacks columns {', '.join(missing)}")
    r = np.column_stack([cols[f"w_{c}"] for c in comps])
    tw = np.array([float((law.extra.get("target_weights") or {}).get(t, 1.0)) for t in targets])
    y = np.column_stack([cols[f"loss_{t}"] for t in targets]) @ tw / tw.sum()
    fig, ax = new_figure(6.0, 5.0)
    _observed_vs_predicted(ax, y, law.predict(weights=r), "loss", NATS, law)
    ax.set_title(f"{law.name}: {ax.get_title()}")
    return fig


def plot_joint(law: Law, data: Mapping[str, Sequence[float]] | None = None) -> Figure:
    """The joint law against every run it was fitted on, coloured by rung (N, D)."""
    cols = _columns(law, data)
    if cols is None:
        return note_figure(f"{law.name}: the law carries no data to plot")
    comps = list(law.extra["components"])
    targets = list(law.extra["targets"])
    d_input = law.extra.get("d_input", "D")
    missing = [c for c in [*(f"w_{c}" for c in comps), "N", d_input] if c not in cols]
    if missing:
        return note_figure(f"{law.name}: data lacks columns {', '.join(missing)}")
    r = np.column_stack([cols[f"w_{c}"] for c in comps])
    tw = np.array([float((law.extra.get("target_weights") or {}).get(t, 1.0)) for t in targets])
    y = np.column_stack([cols[f"loss_{t}"] for t in targets]) @ tw / tw.sum() if all(f"loss_{t}" in cols for t in targets) else cols.get("loss")
    if y is None:
        return note_figure(f"{law.name}: data lacks the losses it was fitted on")
    pred = law.predict(weights=r, N=cols["N"], **{d_input: cols[d_input]})
    fig, ax = new_figure(7.0, 5.4)
    scales = sorted({(float(a), float(b)) for a, b in zip(cols["N"], cols[d_input])})
    from mixsearch.report.style import engineering, palette

    colors = palette([f"{engineering(a)}/{engineering(b)}" for a, b in scales])
    for (a, b), (label, color) in zip(scales, colors.items()):
        at = (cols["N"] == a) & (cols[d_input] == b)
        ax.plot(pred.value[at], y[at], "o", ms=4, alpha=0.75, color=color, label=f"N={label.split('/')[0]}, {d_input}={label.split('/')[1]}")
    both = np.concatenate([y, pred.value])
    ax.plot([both.min(), both.max()], [both.min(), both.max()], color="0.4", lw=1, ls="--", label="y = x")
    quantity, unit = _output_label(law)
    label_axes(ax, f"predicted {quantity}", f"observed {quantity}", unit, unit, title=f"{law.name}: every run at every rung\n{fit_quality(law, y, pred.value)}")
    ax.legend(fontsize=7)
    return fig


def plot_power(law: Law, data: Mapping[str, Sequence[float]] | None = None) -> Figure:
    """A one-variable law (asymptote or CMR) against its points, extrapolated, with its band."""
    cols = _columns(law, data)
    var = getattr(law, "variable", None) or next(iter(law.inputs))
    quantity, unit = _output_label(law)
    fig, ax = new_figure(7.0, 4.5)
    lo, hi = law.data_range.get(var, (None, None))
    if cols is not None and var in cols:
        yk = "loss" if "loss" in cols else "y"
        ax.plot(cols[var], cols[yk], "o", color="k", ms=4, zorder=3, label="data")
        lo, hi = float(cols[var].min()), float(cols[var].max())
    if lo is None:
        return note_figure(f"{law.name}: no data range to plot over")
    log = var != "R"
    x = _span(max(lo, 1e-12) if log else 0.0, hi, log) if log else np.linspace(0.0, 1.0, 200)
    _band(ax, x, law.predict(**{var: x}), "C0", "fit")
    if "E" in law.params and law.kind == "asymptote":
        E, elo, ehi = law.asymptote  # type: ignore[attr-defined]
        ax.axhline(E, color="C3", lw=1, ls="--", label=f"asymptote E = {E:.4g}")
        if elo is not None:
            ax.axhspan(elo, ehi, color="C3", alpha=0.1, lw=0)
    limit = law.extra.get("limit")
    if law.form == "ratio" and law.extra.get("loss") == "general" and limit is not None:
        ax.axhline(float(limit), color="C3", lw=1, ls="--", label="general-loss limit")
    if log:
        ax.set_xscale("log")
    units = {"N": "parameters", "D": "tokens", "K": "members", "T": "tokens", "R": "fraction"}
    names = {"N": "model size N", "D": "training tokens D", "K": "ensemble members K", "T": "continual pre-training tokens T", "R": "domain ratio R"}
    label_axes(ax, names.get(var, var), quantity, units.get(var), unit, title=f"{law.name}: {law.formula}")
    ax.legend()
    return fig


def plot_surface(law: Law, data: Mapping[str, Sequence[float]] | None = None) -> Figure:
    """A continual pre-training surface: the loss increment against the ratio R at every T run.

    Points are the runs, one colour per T; curves are the surface at those T (at the target's
    base size), with its band; the dashed curve is the target's T. For the general loss the
    tolerance is the horizontal line and the critical ratio at each T the marker where a curve
    crosses it; at the target, the shaded span is the critical ratio's interval.
    """
    from mixsearch.laws.cpt_surface import surface_cmr

    cols = _columns(law, data)
    if cols is None:
        return note_figure(f"{law.name}: the law carries no data to plot")
    R, T, N, y = cols["R"], cols["T"], cols["N"], cols["y"]
    ex = law.extra
    n_plot = float(ex.get("target_N") or N.max())
    quantity, unit = _output_label(law)
    fig, ax = new_figure(7.5, 4.8)
    grid = np.linspace(0.0, 1.0, 101)
    token_counts = sorted(set(T.tolist()))
    colours = matplotlib_colormap("viridis", len(token_counts))
    limit = ex.get("limit") if ex.get("loss") == "general" else None
    for colour, tv in zip(colours, token_counts):
        at = T == tv
        ax.plot(R[at], y[at], "o", color=colour, ms=4, zorder=3)
        _band(ax, grid, law.predict(R=grid, T=tv, N=n_plot), colour, f"T = {tv / 1e9:.3g}B tokens")
        if limit is not None:
            r_star = float(surface_cmr(law.vector(), tv, n_plot, float(ex["n_ref"]), float(limit)))
            ax.plot([r_star], [float(limit)], "v", color=colour, ms=7, zorder=4)
    target_T = ex.get("target_T")
    if target_T:
        pred = law.predict(R=grid, T=float(target_T), N=n_plot)
        ax.plot(grid, pred.value, color="k", lw=1.4, ls="--", label=f"target T = {float(target_T) / 1e9:.3g}B tokens (surface)")
        if pred.lower is not None:
            ax.fill_between(grid, pred.lower, pred.upper, color="k", alpha=0.08, lw=0)
    if limit is not None:
        ax.axhline(float(limit), color="C3", lw=1, ls=":", label=f"tolerance: increment {float(limit):.3g}")
        cmr = ex.get("cmr") or {}
        if cmr.get("value") is not None:
            ax.axvline(float(cmr["value"]), color="C3", lw=1.2, label=f"CMR at the target {float(cmr['value']):.3f}")
            if cmr.get("lower") is not None:
                ax.axvspan(float(cmr["lower"]), float(cmr["upper"]), color="C3", alpha=0.1, lw=0)
    at_points = np.asarray(law.predict(R=R, T=T, N=N).value)
    label_axes(ax, "ratio R of the new domain", f"{quantity} over the base model", "fraction", unit, title=f"{law.name}\n{fit_quality(law, y, at_points)}")
    ax.set_xlim(0.0, 1.0)
    ax.legend(fontsize=7)
    return fig


def matplotlib_colormap(name: str, n: int) -> list[Any]:
    """``n`` colours spread over a colormap (darker first)."""
    from matplotlib import colormaps

    cmap = colormaps[name]
    return [cmap(x) for x in np.linspace(0.1, 0.85, max(n, 1))]


def plot_law(law: Law, data: Mapping[str, Sequence[float]] | None = None) -> Figure:
    """The right plot for a law's kind."""
    if law.kind == "cmr" and law.form == "surface":
        return plot_surface(law, data)
    if law.kind == "chinchilla":
        return plot_chinchilla(law, data)
    if law.kind == "mixing":
        return plot_mixing(law, data)
    if law.kind == "joint":
        return plot_joint(law, data)
    return plot_power(law, data)


def save_law_plots(laws: Sequence[Law], folder: str | Path) -> list[Path]:
    """One PNG per law in ``folder`` (``law-<name>.png``); returns the paths."""
    out = []
    for law in laws:
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", law.name).strip("_") or law.kind
        out.append(save_png(plot_law(law), Path(folder) / f"law-{safe}.png"))
    return out
