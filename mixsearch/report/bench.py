"""The bench regret plot: median regret at the target vs cost, one line per proposer."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from mixsearch.report.style import label_axes, new_figure, palette, save_png

# Zero regret (the best mixture found) is drawn at this fraction of the range on the log axis.
FLOOR_FRACTION = 1e-4


def regret_on_grid(curves: pd.DataFrame, grid: np.ndarray) -> np.ndarray:
    """Each run's regret as a step function of cost, read on a cost grid.

    A run's regret at cost ``c`` is that of its last step with cost <= ``c``; a run that
    stopped before the end of the grid keeps its last regret.

    Args:
        curves: Rows of one proposer (``seed, step, cost, regret``).
        grid: ``[G]`` costs, increasing.

    Returns:
        ``[S, G]`` regrets, one row per seed.
    """
    out = []
    for _, run in curves.groupby("seed"):
        run = run.sort_values("step")
        cost, regret = run["cost"].to_numpy(), run["regret"].to_numpy()
        idx = np.searchsorted(cost, grid, side="right") - 1
        out.append(regret[np.clip(idx, 0, len(regret) - 1)])
    return np.array(out)


def plot_regret(
    curves: pd.DataFrame,
    path: str | Path,
    objective_range: float,
    thresholds: Sequence[float] = (0.05, 0.01),
    budget: float | None = None,
    title: str | None = None,
) -> Path:
    """Draw median regret (log scale) against cumulative cost, with the seeds' quartile band.

    Args:
        curves: The harness's ``curves.csv`` table (``proposer, seed, step, cost, regret``).
        path: PNG to write.
        objective_range: Worst minus best target objective; sets the threshold lines and
            the floor zero regrets are drawn at.
        thresholds: Regret levels to mark, as fractions of the range.
        budget: Right end of the cost axis (default: the largest cost in ``curves``).
        title: Figure title.

    Returns:
        The written path.
    """
    end = float(budget if budget is not None else max(curves["cost"].max(), 1e-9))
    grid = np.linspace(0.0, end, 400)
    floor = max(objective_range * FLOOR_FRACTION, 1e-12)
    names = list(dict.fromkeys(curves["proposer"]))
    colours = palette(names)
    fig, ax = new_figure(8.0, 4.8)
    for name in names:
        r = np.maximum(regret_on_grid(curves[curves["proposer"] == name], grid), floor)
        n_seeds = r.shape[0]
        ax.step(grid, np.median(r, axis=0), where="post", color=colours[name], lw=1.8, label=f"{name} (median of {n_seeds})")
        if n_seeds > 1:
            q25, q75 = np.percentile(r, [25, 75], axis=0)
            ax.fill_between(grid, q25, q75, step="post", color=colours[name], alpha=0.12, lw=0)
    for t in thresholds:
        ax.axhline(t * objective_range, color="0.4", lw=0.8, ls="--")
        ax.annotate(f"{100 * t:g}% of range", (end, t * objective_range), xytext=(-4, 3), textcoords="offset points", ha="right", fontsize=8, color="0.3")
    ax.set_yscale("log")
    ax.set_xlim(0.0, end)
    ax.set_ylim(bottom=floor * 0.8)
    label_axes(ax, "cumulative cost", "regret at the target", "target-run units", "objective units", title)
    ax.text(0.01, 0.01, f"median over seeds, band: quartiles; regret 0 drawn at {FLOOR_FRACTION:g} × range", transform=ax.transAxes, fontsize=7, color="0.4")
    # Proposer names may carry options (mfbo?raw_samples=16): keep the legend below the axes.
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=min(3, len(ax.get_lines()) or 1), fontsize=8, frameon=False)
    return save_png(fig, path)
