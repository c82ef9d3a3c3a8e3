"""The report's figures: progress, mixtures, domain losses, cost, laws, held-out error, curves.

Each figure is drawn from a :class:`~mixsearch.report.gather.StudyData` and saved as a PNG; a
figure with nothing to draw becomes a note, and one that fails to draw becomes a note
naming the error: the report never crashes on a study's data.
"""

from __future__ import annotations

import math
import re
import traceback
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import EngFormatter

from mixsearch.report import style
from mixsearch.report.gather import FigureBlock, StudyData, one_line
from mixsearch.report.style import FRACTION, NATS, TOKENS, NothingToDraw, label_axes, new_figure, note, note_figure

MAX_MIXTURE_ROWS = 30  # per rung: beyond this a stacked-bar chart stops being readable
MAX_CURVES = 200  # per rung


def progress_table(data: StudyData) -> pd.DataFrame:
    """Best-so-far and regret per rung against the study's cumulative cost.

    Trials are taken in the order they finished (done and failed, every rung), and
    ``cum_cost`` is the cost of all of them up to and including each one, so each
    rung's best is placed at what the whole study had spent when it was found.
    Regret, for a real study whose optimum is unknown, is the best-so-far objective
    minus the best observed at that rung (sign flipped when maximising): it is
    never negative, never rises, and ends at 0.

    Returns:
        One row per done trial with a finite objective: ``number, rung, cum_cost,
        objective, best, regret``, in finishing order.
    """
    order = _finished_in_order(data.trials)
    cols = ["number", "rung", "cum_cost", "objective", "best", "regret"]
    if order.empty:
        return pd.DataFrame(columns=cols)
    done = order[(order["state"] == "done") & np.isfinite(order["objective"])].copy()
    if done.empty:
        return pd.DataFrame(columns=cols)
    grouped = done.groupby("rung", sort=False)["objective"]
    done["best"] = grouped.cummin() if data.minimize else grouped.cummax()
    final = done.groupby("rung", sort=False)["best"].transform("last")
    done["regret"] = (done["best"] - final) if data.minimize else (final - done["best"])
    return done[cols].reset_index(drop=True)


def progress_figure(data: StudyData) -> Figure:
    """Best objective so far at each rung (one panel per rung, objectives differ in scale
    between rungs) and the regret of every rung together, against the study's cumulative cost."""
    table = progress_table(data)
    if table.empty:
        raise NothingToDraw("No finished trials with a finite objective yet: nothing to track.")
    end = float(_finished_in_order(data.trials)["cum_cost"].iloc[-1])
    rungs = [r for r in data.rungs if (table["rung"] == r).any()]
    fig, _ = new_figure(max(11.0, 3.6 * len(rungs)), 7.4, 1, 1)
    fig.clear()
    mosaic = [[f"best:{r}" for r in rungs], ["regret"] * len(rungs)]
    axes = fig.subplot_mosaic(mosaic, sharex=True)
    for ax in axes.values():
        style.style_axes(ax)
    colors = style.palette(data.rungs)
    quantity, unit = data.objective_label()
    cu = data.cost_unit()
    ax_regret = axes["regret"]
    for rung in rungs:
        g = table[table["rung"] == rung]
        ax = axes[f"best:{rung}"]
        xs = g["cum_cost"].to_numpy(dtype=float)
        # Extend each line to the end of the study so a rung that stopped early still reads.
        xs_ext = np.append(xs, max(end, xs[-1]))
        best = np.append(g["best"].to_numpy(dtype=float), g["best"].iloc[-1])
        regret = np.append(g["regret"].to_numpy(dtype=float), 0.0)
        ax.step(xs_ext, best, where="post", color=colors[rung], lw=1.8, label="best so far")
        ax.plot(xs, g["objective"].to_numpy(dtype=float), "o", ms=3.5, alpha=0.45, color=colors[rung], label="each trial")
        label_axes(ax, "cumulative cost of finished trials, all rungs", quantity, cu, unit,
                   title=f"Rung {rung}: best of {len(g)} done trials")
        ax.legend(loc="best")
        ax_regret.step(xs_ext, regret, where="post", color=colors[rung], lw=1.8, label=f"rung {rung}")
    label_axes(ax_regret, "cumulative cost of finished trials, all rungs", "regret: best so far − best observed", cu, unit,
               title="Regret at each rung: best-so-far objective minus the best observed at that rung")
    ax_regret.legend(loc="upper right")
    x = table["cum_cost"].to_numpy(dtype=float)
    positive = x[x > 0]
    for ax in axes.values():
        if positive.size and positive.max() / positive.min() > 100:
            ax.set_xscale("log")
        ax.xaxis.set_major_formatter(EngFormatter())
        ax.xaxis.set_tick_params(labelbottom=True)
    return fig


def _finished_in_order(df: pd.DataFrame) -> pd.DataFrame:
    """Done and failed trials in the order they finished, with ``cum_cost``."""
    if df.empty:
        return df
    fin = df[df["state"].isin(["done", "failed"])].copy()
    fin["objective"] = pd.to_numeric(fin["objective"], errors="coerce")
    fin["finished"] = pd.to_numeric(fin["finished"], errors="coerce")
    fin = fin.sort_values(["finished", "number"], na_position="last", kind="stable")
    fin["cum_cost"] = pd.to_numeric(fin["cost"], errors="coerce").fillna(0.0).cumsum()
    return fin.reset_index(drop=True)


def mixture_figure(data: StudyData) -> Figure:
    """Stacked bars of each trial's mixture, best first within each rung; the recommendation on top.

    Done trials are sorted by objective; failed and unfinished trials follow, labelled
    by state. Beyond ``MAX_MIXTURE_ROWS`` per rung only the best are drawn.
    """
    rec = (data.export or {}).get("recommendation")
    df = data.trials
    panels: list[tuple[str, pd.DataFrame, str]] = []
    for rung in data.rungs:
        if df.empty:
            break
        g = df[df["rung"] == rung].copy()
        if g.empty:
            continue
        g["objective"] = pd.to_numeric(g["objective"], errors="coerce")
        done = g[(g["state"] == "done") & np.isfinite(g["objective"])].sort_values("objective", ascending=data.minimize)
        rest = g.drop(done.index).sort_values("number")
        shown = pd.concat([done.head(MAX_MIXTURE_ROWS), rest.head(max(0, MAX_MIXTURE_ROWS - len(done)))])
        hidden = len(g) - len(shown)
        panels.append((rung, shown, f" ({len(shown)} of {len(g)} shown)" if hidden else ""))
    if not panels and rec is None:
        raise NothingToDraw("No trials yet: no mixtures to show.")
    colors = style.palette(data.domains)
    # Inches per panel: the bars plus room for its title and x label.
    heights = ([1.7] if rec else []) + [max(len(p[1]), 1) * 0.28 + 1.1 for p in panels]
    fig, axes = new_figure(11, sum(heights) + 0.4, len(heights), 1, gridspec_kw={"height_ratios": heights}, sharex=True)
    axes = [axes] if len(heights) == 1 else list(axes)
    i = 0
    if rec:
        ax = axes[0]
        w = np.array([[rec["weights"].get(d, 0.0) for d in data.domains]])
        pred = rec.get("predicted_objective")
        label = "recommended"
        if pred is not None:
            label += f"\n{pred:.4f}"
            if rec.get("lower") is not None:
                label += f" [{rec['lower']:.3f}, {rec['upper']:.3f}]"
        target = rec.get("target") or {}
        basis = f"predicted objective at the target from the {rec.get('basis')}" if pred is not None else "no predicted objective at the target"
        _stack(ax, w, [label], colors, data.domains, edge="black", linewidth=2.0)
        ax.set_title(f"Recommended mixture for the target {target.get('name') if isinstance(target, dict) else target} ({basis})", fontweight="bold")
        ax.set_ylabel(style.axis_label("predicted objective", data.objective_label()[1]))
        i = 1
    for (rung, shown, suffix), ax in zip(panels, axes[i:]):
        w = shown[[f"w_{d}" for d in data.domains]].to_numpy(dtype=float)
        labels = [_row_label(r) for _, r in shown.iterrows()]
        _stack(ax, w, labels, colors, data.domains)
        for tick, (_, r) in zip(ax.get_yticklabels(), shown.iterrows()):
            if r["state"] != "done":
                tick.set_color("firebrick")
        ax.set_title(f"Rung {rung}: trials best first{suffix}")
        ax.set_ylabel(style.axis_label("trial #, objective", data.objective_label()[1]))
    for ax in axes:
        ax.set_xlabel(style.axis_label("mixture weight", FRACTION))
        ax.xaxis.set_tick_params(labelbottom=True)
    axes[-1].set_xlim(0, 1)
    handles = [Patch(facecolor=colors[d], label=d) for d in data.domains]
    fig.legend(handles=handles, loc="outside right upper", title="domain")
    return fig


def _row_label(r: pd.Series) -> str:
    obj = r["objective"]
    if r["state"] == "done" and obj is not None and math.isfinite(obj):
        return f"#{int(r['number'])}  {obj:.4f}"
    return f"#{int(r['number'])}  {r['state']}"


def _stack(ax: Any, w: np.ndarray, labels: Sequence[str], colors: dict[str, Any], domains: Sequence[str], edge: str = "white", linewidth: float = 0.4) -> None:
    """Horizontal stacked bars: ``w`` is ``[rows, K]``, first row on top."""
    y = np.arange(len(w))[::-1]
    left = np.zeros(len(w))
    for k, d in enumerate(domains):
        ax.barh(y, w[:, k], left=left, color=colors[d], edgecolor=edge, linewidth=linewidth, height=0.8)
        left += w[:, k]
    ax.set_yticks(y, labels, fontsize=8 if len(w) < 20 else 7)
    ax.set_ylim(-0.6, len(w) - 0.4)
    ax.grid(False)


def domain_loss_figure(data: StudyData) -> Figure:
    """Per-domain validation losses of done trials at each rung (box + points), best trial marked."""
    done = data.done()
    domains = data.loss_domains
    if done.empty or not domains:
        raise NothingToDraw("No per-domain losses recorded yet (no done trials).")
    rungs = [r for r in data.rungs if (done["rung"] == r).any()]
    fig, axes = new_figure(max(8.0, 0.55 * len(domains) + 3), 3.2 * len(rungs), len(rungs), 1, sharex=True)
    axes = [axes] if len(rungs) == 1 else list(axes)
    rng = np.random.default_rng(0)  # jitter only; fixed so reports are reproducible
    pos = np.arange(len(domains))
    for rung, ax in zip(rungs, axes):
        g = done[done["rung"] == rung]
        values = [pd.to_numeric(g[f"loss_{d}"], errors="coerce").dropna().to_numpy() for d in domains]
        keep = [i for i, v in enumerate(values) if v.size]
        if not keep:
            note(ax, f"Rung {rung}: no per-domain losses recorded.")
            continue
        boxed = [i for i in keep if values[i].size >= style.MIN_BOX_N]
        if boxed:
            ax.boxplot([values[i] for i in boxed], positions=pos[boxed], widths=0.6, showfliers=False,
                       medianprops={"color": "0.2"}, boxprops={"color": "0.5"}, whiskerprops={"color": "0.5"}, capprops={"color": "0.5"})
        for i in keep:
            ax.plot(pos[i] + rng.uniform(-0.18, 0.18, values[i].size), values[i], "o", ms=3, alpha=0.45, color="tab:blue")
        best = g.loc[g["objective"].idxmin() if data.minimize else g["objective"].idxmax()]
        bl = np.array([pd.to_numeric(best.get(f"loss_{d}"), errors="coerce") for d in domains], dtype=float)
        ax.plot(pos, bl, "D-", color="crimson", ms=5, lw=1, label=f"best trial #{int(best['number'])} (objective {best['objective']:.4f})")
        few = "" if len(g) >= style.MIN_BOX_N else f" (points only: no box below {style.MIN_BOX_N} trials)"
        label_axes(ax, "domain", "validation loss", None, NATS, title=f"Rung {rung}: per-domain loss of {len(g)} done trials{few}")
        ax.legend(loc="upper right")
    for ax in axes:
        ax.set_xticks(pos, domains, rotation=30 if len(domains) > 6 else 0, ha="right" if len(domains) > 6 else "center")
        ax.xaxis.set_tick_params(labelbottom=True)
    return fig


def cost_figure(data: StudyData) -> Figure:
    """Cost spent per rung (done and failed stacked), with the trial counts."""
    df = data.trials
    if df.empty:
        raise NothingToDraw("No trials yet: no cost spent.")
    fin = df[df["state"].isin(["done", "failed"])]
    if fin.empty:
        raise NothingToDraw("No finished trials yet: no cost spent.")
    rungs = [r for r in data.rungs if (fin["rung"] == r).any()]
    cost = pd.to_numeric(fin["cost"], errors="coerce").fillna(0.0)
    spent_done = np.array([cost[(fin["rung"] == r) & (fin["state"] == "done")].sum() for r in rungs])
    spent_failed = np.array([cost[(fin["rung"] == r) & (fin["state"] == "failed")].sum() for r in rungs])
    n_done = [int(((fin["rung"] == r) & (fin["state"] == "done")).sum()) for r in rungs]
    n_failed = [int(((fin["rung"] == r) & (fin["state"] == "failed")).sum()) for r in rungs]
    fig, ax = new_figure(max(5.0, 1.3 * len(rungs) + 3), 3.8)
    x = np.arange(len(rungs))
    ax.bar(x, spent_done, color="tab:blue", label="done")
    if spent_failed.any() or any(n_failed):
        ax.bar(x, spent_failed, bottom=spent_done, color="firebrick", label="failed")
    total = float(spent_done.sum() + spent_failed.sum())
    for xi, d, f, nd, nf in zip(x, spent_done, spent_failed, n_done, n_failed):
        share = (d + f) / total if total > 0 else 0.0
        text = f"{style.engineering(d + f)}\n{nd} done" + (f", {nf} failed" if nf else "") + f"\n{share:.0%}"
        ax.annotate(text, (xi, d + f), ha="center", va="bottom", fontsize=8, xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(x, rungs)
    # Head-room for the annotations above the tallest bar.
    ax.set_ylim(0, float(max(spent_done + spent_failed)) * 1.4 or 1.0)
    budget = data.study.budget.max_cost
    title = f"Cost per rung — total {style.engineering(total)}"
    if budget:
        title += f" of budget {style.engineering(budget)} ({total / budget:.0%})"
    label_axes(ax, "fidelity rung", "cost spent", None, data.cost_unit(), title=title)
    ax.yaxis.set_major_formatter(EngFormatter())
    fig.legend(loc="outside right upper")
    return fig


def curve_figure(data: StudyData) -> Figure:
    """Training curves (train loss vs tokens seen), one panel per rung, coloured by final objective.

    Objectives are only comparable within a rung, so each panel has its own colour scale.
    """
    if not data.curves or data.trials.empty:
        if data.study.evaluator.kind == "table":
            raise NothingToDraw("No training curves: a table study replays final losses only.")
        raise NothingToDraw("No training curves recorded yet: no proxy trial has finished.")
    df = data.trials.drop_duplicates("trial_id").set_index("trial_id")
    by_rung: dict[str, list[str]] = {}
    for t in data.curves:
        if t in df.index:
            by_rung.setdefault(str(df.loc[t, "rung"]), []).append(t)
    rungs = [r for r in data.rungs if r in by_rung]
    if not rungs:
        raise NothingToDraw("No training curves recorded for the ladder's rungs.")
    fig, axes = new_figure(11, 3.4 * len(rungs) + 0.4, len(rungs), 1, squeeze=False)
    obj = pd.to_numeric(df["objective"], errors="coerce")
    # Darker is better, whichever way the objective points: the eye goes to the best runs.
    cmap = style.matplotlib.colormaps["Blues_r" if data.minimize else "Blues"]
    quantity, unit = data.objective_label()
    for rung, ax in zip(rungs, axes[:, 0]):
        ids = by_rung[rung][:MAX_CURVES]
        scored = [t for t in ids if math.isfinite(obj.get(t, math.nan))]
        values = obj[scored].to_numpy(dtype=float)
        norm = Normalize(float(values.min()), float(values.max())) if values.size else Normalize(0, 1)
        for t in ids:
            c = np.asarray(data.curves[t], dtype=float).reshape(-1, 2)
            o = obj.get(t, math.nan)
            ax.plot(c[:, 0], c[:, 1], color=cmap(norm(o)) if math.isfinite(o) else "firebrick", lw=0.9, alpha=0.8)
        if scored:
            best_id = scored[int(np.argmin(values) if data.minimize else np.argmax(values))]
            c = np.asarray(data.curves[best_id], dtype=float).reshape(-1, 2)
            ax.plot(c[:, 0], c[:, 1], color="black", lw=2, label=f"best trial #{int(df.loc[best_id, 'number'])}")
            ax.legend(loc="upper right")
        _zoom_to_tail(ax, [np.asarray(data.curves[t], dtype=float).reshape(-1, 2) for t in ids])
        label_axes(ax, "training progress", "training loss", TOKENS, NATS, title=f"Rung {rung}: {len(ids)} training curves")
        ax.xaxis.set_major_formatter(EngFormatter())
        sm = style.matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap)
        fig.colorbar(sm, ax=ax, label=style.axis_label(quantity.replace("objective: ", "final ") + ", darker is better", unit), shrink=0.9)
    return fig


def _zoom_to_tail(ax: Any, curves: list[np.ndarray]) -> None:
    """Clip the y range to the curves after their first 5 % so the early spike does not flatten the rest."""
    tails = [c[int(len(c) * 0.05):, 1] for c in curves if len(c) > 4]
    tails = [t[np.isfinite(t)] for t in tails]
    tails = [t for t in tails if t.size]
    if not tails:
        return
    lo = min(float(t.min()) for t in tails)
    hi = max(float(t.max()) for t in tails)
    pad = 0.05 * (hi - lo) if hi > lo else 0.1
    ax.set_ylim(lo - pad, hi + pad)


# -- the report ----------------------------------------------------------------------

CAPTIONS = {
    "progress": (
        "Best objective so far and regret",
        "Top row, one panel per rung: the best objective found so far at that rung against the cumulative cost of "
        "all finished trials (every rung, done and failed, in the order they finished); dots are individual trials. "
        "Bottom: regret, defined for a real study (whose true optimum is unknown) as the objective of the best-so-far "
        "trial minus the best objective observed at that rung over the whole study; it reaches 0 when the study's "
        "best trial at that rung is found. Objectives are only comparable within a rung.",
    ),
    "mixtures": (
        "Mixture weights",
        "Each bar is one trial's mixture (share of training tokens per domain), best objective first within each "
        "rung; the label gives the trial number and its objective, or its state in red when it did not finish. "
        "The boxed bar on top is the recommended mixture for the target scale (see Recommendation), with its "
        "predicted objective there and the central 90 % interval in brackets when a law of mixture and scale could "
        "be fitted on the study's runs.",
    ),
    "domain_losses": (
        "Per-domain validation losses",
        "Validation loss on each domain for every done trial at each rung (box: quartiles, drawn only with at least 5 "
        "trials; dots: trials). The red diamonds join the per-domain losses of the trial with the best objective at "
        "that rung.",
    ),
    "cost": (
        "Cost spent per rung",
        "Cost charged to the budget at each rung, split into done and failed trials, with the trial counts and each "
        "rung's share of the total. FLOPs are 6·N·D per proxy run unless the study's rungs set their own cost.",
    ),
    "laws": (
        "Fitted laws",
        "Each scaling law fitted on the study's runs, drawn against the data it was fitted on with its interval band.",
    ),
    "heldout": (
        "Predicted vs observed at held-out trials",
        "Each done trial's objective predicted by the multi-fidelity Surrogate (the Gaussian process behind the mfbo "
        "proposer, with the study's kernel settings when it uses one) from all the other done trials: exact "
        "leave-one-out predictions of a GP fitted once on every done trial (hyperparameters from that fit, so the "
        "error is slightly optimistic). Bars are the central 90 % interval of the predictive distribution, "
        "observation noise included; points on the dashed identity line are predicted perfectly. The held-out RMSE "
        "is given per rung, and the Spearman rank correlation where a rung has at least 8 trials.",
    ),
    "curves": (
        "Training curves",
        "Training loss against tokens seen for each proxy run, coloured by the trial's final objective (darker is "
        "better, on a scale of its own per rung); the best trial at each rung is drawn in black.",
    ),
}


FigureBuilder = Callable[[StudyData], "Figure | list[tuple[str, str, str, Figure]]"]


def study_figures(data: StudyData, out: Path) -> list[FigureBlock]:
    """Draw every figure of the report into ``out`` as PNGs.

    Returns:
        The figure blocks in page order; a figure that failed to draw carries a note.
    """
    blocks: list[FigureBlock] = []
    builders: list[tuple[str, Callable[[StudyData], Figure]]] = [
        ("progress", progress_figure),
        ("mixtures", mixture_figure),
        ("domain_losses", domain_loss_figure),
        ("cost", cost_figure),
    ]
    for key, build in builders:
        blocks.append(_draw(key, *CAPTIONS[key], lambda b=build: b(data), out, data))
    blocks.extend(law_blocks(data, out))
    blocks.append(_draw("heldout", *CAPTIONS["heldout"], lambda: heldout_figure_for(data), out, data))
    blocks.append(_draw("curves", *CAPTIONS["curves"], lambda: curve_figure(data), out, data))
    return blocks


def heldout_figure_for(data: StudyData) -> Figure:
    """Cross-validated Surrogate predictions against observed objectives (see :mod:`mixsearch.report.heldout`)."""
    from mixsearch.report.heldout import heldout_figure, surrogate_loo

    cv = surrogate_loo(data.study, data.trials, seed=data.study.seed)
    return heldout_figure(cv, data.rungs, data.objective_label())


def law_blocks(data: StudyData, out: Path) -> list[FigureBlock]:
    """One figure per law in the export: the law against its data, with its interval band.

    The drawing is :func:`mixsearch.report.laws.plot_law` (the laws' own plots); with no
    law fitted, one block says why (the export's ``laws_skipped`` reasons).
    """
    docs = (data.export or {}).get("laws") or []
    if not docs:
        skipped = (data.export or {}).get("laws_skipped") or []
        why = "; ".join(skipped) if skipped else "the export holds no laws"
        return [_draw("laws", *CAPTIONS["laws"], lambda: _no_laws(why), out, data)]
    blocks = []
    for doc in docs:
        name = str(doc.get("name") or doc.get("kind") or "law")
        key = "law-" + (re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "law")
        title = f"Fitted law: {name}"
        blocks.append(_draw(key, title, _law_caption(doc), lambda d=doc: _law_figure(d), out, data))
    return blocks


def _no_laws(why: str) -> Figure:
    raise NothingToDraw(f"No law was fitted on this study's runs: {why}.")


def _law_figure(doc: dict[str, Any]) -> Figure:
    from mixsearch.laws import law_from_dict
    from mixsearch.report.laws import plot_law

    return plot_law(law_from_dict(doc))


def _law_caption(doc: dict[str, Any]) -> str:
    kind = doc.get("kind", "?")
    what = {
        "mixing": "Observed against predicted loss of every run the data-mixing law was fitted on (one rung's mixtures)",
        "chinchilla": "Loss against model size N for runs of one mixture, with the law's curves at a few token budgets D, "
                      "and observed against predicted loss",
        "asymptote": "The law against the points it was fitted on, extrapolated beyond them",
        "cmr": "The continual pre-training law against the runs it was fitted on (for the surface: the loss increment over the base model against the ratio R, one colour per continued-token count T, the target's T dashed; the tolerance dotted, the critical ratio at each T marked where its curve crosses it, the answer's interval shaded)",
        "joint": "Observed against predicted loss of every run at every rung, one colour per rung (N, D): the joint law of "
                 "mixture and scale the answer at the target comes from",
    }.get(kind, "The law against the points it was fitted on")
    diag = doc.get("diagnostics") or {}
    level = doc.get("level")
    text = f"{what}. Formula: {doc.get('formula', '?')}."
    if diag.get("n_points"):
        text += f" Fitted on {diag['n_points']} points."
    if level:
        text += f" Bands and bars are the law's central {float(level):.0%} interval from its bootstrap over runs."
    text += " The title gives the in-sample error beside the held-out one (cross-validation over runs, or the held-out largest rung), so an in-sample statistic never stands alone."
    text += " The dashed line, where drawn, is perfect agreement."
    return text


def _draw(key: str, title: str, caption: str, build: Callable[[], Figure], out: Path, data: StudyData) -> FigureBlock:
    """Build and save one figure; on any error save a note figure and say why."""
    try:
        fig = build()
        return FigureBlock(key, title, caption, style.save_png(fig, out / f"{key}.png"))
    except NothingToDraw as empty:
        return FigureBlock(key, title, caption, style.save_png(note_figure(str(empty)), out / f"{key}.png"), str(empty), empty=True)
    except Exception as exc:  # noqa: BLE001 - one bad figure must not sink the report
        msg = f"could not draw this figure: {type(exc).__name__}: {one_line(exc)}"
        data.notes.append(f"{title}: {msg}")
        _debug_trace()
        png = style.save_png(note_figure(msg), out / f"{key}.png")
        return FigureBlock(key, title, caption, png, msg, empty=True)


def _debug_trace() -> None:
    import os
    import sys

    if os.environ.get("MIXSEARCH_REPORT_DEBUG"):
        traceback.print_exc(file=sys.stderr)
