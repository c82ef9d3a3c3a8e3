"""Shared matplotlib style for every mixsearch plot: units on axes, colours, PNG output.

Figures are built with :class:`matplotlib.figure.Figure` and an Agg canvas rather than
``pyplot``: no global figure registry, no GUI backend, safe from worker threads and
inside notebooks (a ``Figure`` displays itself there). The study report and the bench
regret plot both draw through these helpers so units and colours read the same.
"""

from __future__ import annotations

import base64
import math
from pathlib import Path
from typing import Any, Sequence

import matplotlib
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

# Units, spelled once so every axis says the same thing.
FLOPS = "FLOPs"
TOKENS = "tokens"
NATS = "nats/token"
SECONDS = "s"
FRACTION = "fraction of training tokens"

STYLE: dict[str, Any] = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "figure.dpi": 100,
    "savefig.bbox": "tight",
}

DPI = 110

# One interval convention for every figure and table of a report: the central 90 % range
# (the answer at the target, the laws' bands, held-out predictions).
INTERVAL_LEVEL = 0.9
# Below these counts a box plot or a rank correlation says more about chance than data:
# the figure draws the points and says why there is no box or correlation.
MIN_BOX_N = 5
MIN_CORRELATION_N = 8


def interval_text(level: float = INTERVAL_LEVEL) -> str:
    """How captions name the interval: ``"central 90 % interval"``."""
    return f"central {level:.0%} interval"


def z_of(level: float = INTERVAL_LEVEL) -> float:
    """The normal quantile of a central interval (1.645 for 90 %)."""
    from scipy.stats import norm

    return float(norm.ppf(0.5 + level / 2.0))


class NothingToDraw(Exception):
    """A figure has no data to show; the message says why (the report shows it as a note)."""


def axis_label(quantity: str, unit: str | None = None) -> str:
    """``"quantity (unit)"``, or just the quantity for unitless things.

    Args:
        quantity: What the axis shows (``"cumulative cost"``).
        unit: Its unit (``"FLOPs"``), or None.
    """
    return f"{quantity} ({unit})" if unit else quantity


def label_axes(ax: Axes, x: str, y: str, x_unit: str | None = None, y_unit: str | None = None, title: str | None = None) -> Axes:
    """Label both axes with units (and optionally a title); returns ``ax``."""
    ax.set_xlabel(axis_label(x, x_unit))
    ax.set_ylabel(axis_label(y, y_unit))
    if title:
        ax.set_title(title)
    return ax


def new_figure(
    width: float = 8.0, height: float = 4.5, nrows: int = 1, ncols: int = 1, squeeze: bool = True, **subplot_kw: Any
) -> tuple[Figure, Any]:
    """A styled figure on an Agg canvas, with its axes.

    Args:
        width: Inches.
        height: Inches.
        nrows: Subplot rows.
        ncols: Subplot columns.
        squeeze: As in ``Figure.subplots``: a lone Axes for a 1x1 grid, 1-D arrays for one row or column.
        **subplot_kw: Passed to ``Figure.subplots`` (``sharex``, ``gridspec_kw`` …).

    Returns:
        ``(figure, axes)``; with ``squeeze``, one Axes for a 1x1 grid, else an array.
    """
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(width, height), layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(nrows, ncols, squeeze=squeeze, **subplot_kw)
        for ax in _flat(axes):
            style_axes(ax)
    return fig, axes


def _flat(axes: Any) -> list[Axes]:
    if isinstance(axes, Axes):
        return [axes]
    return list(getattr(axes, "flat", axes))


def style_axes(ax: Axes) -> None:
    """Grid and open top/right spines (for axes added after :func:`new_figure`)."""
    # rc_context only styles artists created inside it; set the lasting bits explicitly.
    ax.grid(True, alpha=STYLE["grid.alpha"])
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)


def note(ax: Axes, text: str) -> Axes:
    """Turn ``ax`` into a placeholder that says why there is nothing to plot."""
    ax.clear()
    ax.set_axis_off()
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=10, color="0.35", transform=ax.transAxes)
    return ax


def note_figure(text: str, width: float = 8.0, height: float = 1.6) -> Figure:
    """A small figure that only carries a note (used when a plot has no data)."""
    fig, ax = new_figure(width, height)
    note(ax, text)
    return fig


def palette(names: Sequence[str], cmap: str | None = None) -> dict[str, Any]:
    """Stable colours for named things (domains, rungs, proposers), in the given order.

    Args:
        names: Names in display order.
        cmap: A qualitative colormap; default ``tab10`` up to 10 names, ``tab20`` up to
            20, else evenly spaced ``turbo``.

    Returns:
        ``{name: RGBA tuple}``.
    """
    n = len(names)
    if cmap is None:
        cmap = "tab10" if n <= 10 else "tab20" if n <= 20 else "turbo"
    cm = matplotlib.colormaps[cmap]
    if cmap.startswith("tab"):
        return {name: cm(i % cm.N) for i, name in enumerate(names)}
    return {name: cm(i / max(n - 1, 1)) for i, name in enumerate(names)}


def engineering(x: float, digits: int = 3) -> str:
    """A number in compact engineering form (``1.2e+15`` -> ``1.2P``); FLOPs are huge."""
    if x is None or not math.isfinite(x):
        return "–"
    if x == 0:
        return "0"
    exp = int(math.floor(math.log10(abs(x)) / 3) * 3)
    prefixes = {-6: "µ", -3: "m", 0: "", 3: "k", 6: "M", 9: "G", 12: "T", 15: "P", 18: "E", 21: "Z", 24: "Y"}
    if exp not in prefixes:
        return f"{x:.{digits}g}"
    return f"{x / 10**exp:.{digits}g}{prefixes[exp]}"


def save_png(fig: Figure, path: str | Path, dpi: int = DPI) -> Path:
    """Write ``fig`` as a PNG (folders created) and return the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=dpi, format="png", bbox_inches="tight")  # legends outside the axes stay in
    return p


def png_data_uri(path: str | Path) -> str:
    """A PNG file as a ``data:image/png;base64,...`` URI (for self-contained HTML)."""
    data = Path(path).read_bytes()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")
