"""The benchmark harness: run proposers side by side on an oracle and measure regret vs cost.

For each proposer and seed it replays what the orchestrator does, without a ledger: ask the
proposer (a fresh :class:`~mixsearch.propose.base.ProposalContext` from the simulated history,
seed derived from (seed, step)), evaluate the candidates that fit the remaining budget on the
oracle, add them to the history, then ask the proposer for its recommendation and score it.

Regret is the target objective of the recommendation minus the best target objective (in
pool mode the recommendation is first mapped to the nearest pool mixture at the target);
with no recommendation it is the objective's range. Cost is cumulative, in target-run units.

Outputs in ``out``: ``curves.csv`` (``proposer,seed,step,cost,regret``), ``summary.csv``
(per proposer, medians over seeds) and ``regret.png``; ``bench.json`` records the setup.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from mixsearch.bench.oracles import BenchOracle, load_oracle
from mixsearch.candidate import canonical_weights
from mixsearch.orchestrator import ask_seed
from mixsearch.propose.base import BUILTIN, History, ProposalContext, Proposer, make_proposer
from mixsearch.study import ProposerSpec

CURVE_COLUMNS = ["proposer", "seed", "step", "cost", "regret"]
# Asks repeated with a salted seed when a proposal only repeats known trials (as the orchestrator).
MAX_EMPTY_ASKS = 4


@dataclass
class _Run:
    """The simulated history of one proposer on one seed."""

    dim: int
    weights: list[tuple[float, ...]] = field(default_factory=list)
    rungs: list[str] = field(default_factory=list)
    objective: list[float] = field(default_factory=list)
    costs: list[float] = field(default_factory=list)
    failed_weights: list[tuple[float, ...]] = field(default_factory=list)
    failed_rungs: list[str] = field(default_factory=list)

    def history(self) -> History:
        k = self.dim
        return History(
            weights=np.array(self.weights, dtype=float).reshape(-1, k),
            rungs=tuple(self.rungs),
            objective=np.array(self.objective, dtype=float),
            pending_weights=np.zeros((0, k)),
            pending_rungs=(),
            costs=np.array(self.costs, dtype=float),
            failed_weights=np.array(self.failed_weights, dtype=float).reshape(-1, k),
            failed_rungs=tuple(self.failed_rungs),
        )

    def known(self) -> set[tuple[tuple[float, ...], str]]:
        return set(zip(self.weights, self.rungs)) | set(zip(self.failed_weights, self.failed_rungs))


def parse_proposer(text: str) -> ProposerSpec:
    """``name`` or ``name?key=value&key=value`` -> a proposer spec.

    Values are read as JSON when they parse (``n_samples=20000``, ``rung="1M"``), else kept
    as strings (``rung=1M``), so a benchmark can compare settings of one proposer.

    Raises:
        ValueError: an unknown name or a malformed option.
    """
    name, _, query = text.strip().partition("?")
    if name not in BUILTIN and ":" not in name:
        raise ValueError(f"--proposers: unknown proposer {name!r}; known: {', '.join(BUILTIN)} or 'module:Class'")
    options: dict[str, Any] = {}
    for part in filter(None, query.split("&")):
        key, eq, value = part.partition("=")
        if not eq or not key.isidentifier():
            raise ValueError(f"--proposers: bad option {part!r} for {name!r}; use key=value")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return ProposerSpec(name=name, options=options)


def _check_inputs(proposers: Sequence[str], seeds: int, budget: float, batch_size: int, thresholds: Sequence[float]) -> list[str]:
    names = [p.strip() for p in proposers if p.strip()]
    if not names:
        raise ValueError("--proposers: name at least one proposer")
    for p in names:
        parse_proposer(p)
    if len(set(names)) != len(names):
        raise ValueError(f"--proposers: a proposer is named twice in {','.join(names)}")
    if not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"--seeds: must be an integer >= 1, got {seeds!r}")
    if not isinstance(budget, (int, float)) or not math.isfinite(budget) or budget <= 0:
        raise ValueError(f"--budget: must be a positive number of target runs, got {budget!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"--batch-size: must be an integer >= 1, got {batch_size!r}")
    if not thresholds or any(not 0 < t < 1 for t in thresholds):
        raise ValueError(f"thresholds: must be fractions of the objective's range in (0, 1), got {tuple(thresholds)}")
    return names


def _build(text: str) -> Proposer:
    spec = parse_proposer(text)
    try:
        return make_proposer(spec)
    except ValueError as exc:
        raise ValueError(f"--proposers: {exc}") from exc


def run_one(oracle: BenchOracle, proposer: Proposer, name: str, seed: int, budget: float, batch_size: int = 1, on_step: Any = None) -> list[dict[str, Any]]:
    """Run one proposer with one seed until the budget is spent.

    Args:
        oracle: The world to evaluate in.
        proposer: The proposer (stateless; rebuilt from the context at every ask).
        name: Its name in the curve rows.
        seed: The run's seed (ask seeds and the oracle's noise derive from it).
        budget: Budget in target-run units.
        batch_size: Candidates asked per step (q).
        on_step: Called with the cumulative cost after each step (progress display).

    Returns:
        Curve rows ``{proposer, seed, step, cost, regret}``; step 0 is before any trial.
    """
    space, ladder, pool = oracle.space, oracle.ladder, oracle.pool()
    unit = oracle.target_run_cost()
    best, span = oracle.best_target(), oracle.objective_range()
    run = _Run(space.dim)
    spent = 0.0
    rows = [{"proposer": name, "seed": seed, "step": 0, "cost": 0.0, "regret": span}]
    step, idle = 0, 0
    while spent < budget * (1 - 1e-9) and idle < MAX_EMPTY_ASKS:
        step += 1
        added = _step(oracle, proposer, run, seed, step, budget - spent, batch_size, unit)
        if added is None:
            break  # nothing new fits the budget, or the proposer has nothing left
        # Steps whose every candidate failed cost nothing; a proposer stuck on them stops.
        idle = idle + 1 if added == 0 else 0
        spent += added
        ctx = ProposalContext(space, ladder, run.history(), ask_seed(seed, step * 1000 + 999), pool, seed)
        rec = proposer.recommend(ctx)
        regret = span if rec is None else oracle.target_value(rec.weights) - best
        rows.append({"proposer": name, "seed": seed, "step": step, "cost": spent, "regret": max(float(regret), 0.0)})
        if on_step is not None:
            on_step(spent)
    return rows


def _step(oracle: BenchOracle, proposer: Proposer, run: _Run, seed: int, step: int, room: float, q: int, unit: float) -> float | None:
    """One ask/evaluate round; the cost it spent (target-run units), or None when nothing ran.

    Mirrors the orchestrator: candidates that do not fit the remaining budget are dropped
    and, if none fits, the run ends; an ask that only repeats known trials is asked again
    with a salted seed a few times before the run ends.
    """
    space, ladder, pool = oracle.space, oracle.ladder, oracle.pool()
    known = run.known()
    for salt in range(MAX_EMPTY_ASKS):
        ctx = ProposalContext(space, ladder, run.history(), ask_seed(seed, step if salt == 0 else step * 1000 + salt), pool, seed)
        fitting, cost = [], 0.0
        for c in proposer.propose(ctx, q)[:q]:
            c_cost = ladder.rung(c.rung).run_cost / unit
            if cost + c_cost <= room * (1 + 1e-9):
                fitting.append((canonical_weights(c.weights), c.rung))
                cost += c_cost
        if not fitting:
            return None
        new = list(dict.fromkeys(k for k in fitting if k not in known))
        if new:
            return _evaluate(oracle, run, new, seed, unit)
    return None


def _evaluate(oracle: BenchOracle, run: _Run, keys: list[tuple[tuple[float, ...], str]], seed: int, unit: float) -> float:
    """Run new (weights, rung) pairs on the oracle; the cost spent in target-run units."""
    spent = 0.0
    for w, rung in keys:
        try:
            y, c_cost = oracle.observe(w, rung, seed)
        except KeyError:
            # Not offered by the oracle: recorded as failed at no cost, as the ledger would.
            run.failed_weights.append(w)
            run.failed_rungs.append(rung)
            continue
        run.weights.append(w)
        run.rungs.append(rung)
        run.objective.append(y)
        run.costs.append(c_cost)
        spent += c_cost / unit
    return spent


def cost_to_reach(curve: pd.DataFrame, level: float) -> float:
    """Cost after which a run's regret stays at or below ``level`` (inf if it never does).

    Args:
        curve: One run's rows, sorted by step (columns ``cost``, ``regret``).
        level: Regret level in objective units.
    """
    above = np.flatnonzero(curve["regret"].to_numpy() > level + 1e-12)
    if above.size == 0:
        return 0.0
    last = int(above[-1])
    if last == len(curve) - 1:
        return math.inf
    return float(curve["cost"].iloc[last + 1])


def summarise(curves: pd.DataFrame, span: float, thresholds: Sequence[float], order: Sequence[str] | None = None, seconds: dict[str, list[float]] | None = None) -> pd.DataFrame:
    """Per proposer, medians over seeds: cost to reach each regret threshold, final regret.

    Columns: ``proposer``, ``seeds``, ``cost_to_<p>pct`` (target-run units; inf if the median
    seed never stays below ``p``% of the range), ``reached_<p>pct`` (fraction of seeds that
    did), ``final_regret``, ``final_regret_pct`` (of the range), ``final_cost``, ``steps``,
    ``seconds`` (median wall time of a run).
    """
    rows = []
    for p in order or list(dict.fromkeys(curves["proposer"])):
        sub = curves[curves["proposer"] == p]
        runs = [g.sort_values("step") for _, g in sub.groupby("seed")]
        row: dict[str, Any] = {"proposer": p, "seeds": len(runs)}
        for t in thresholds:
            costs = [cost_to_reach(r, t * span) for r in runs]
            tag = f"{100 * t:g}pct"
            row[f"cost_to_{tag}"] = float(np.median(costs))
            row[f"reached_{tag}"] = float(np.mean(np.isfinite(costs)))
        finals = [float(r["regret"].iloc[-1]) for r in runs]
        row["final_regret"] = float(np.median(finals))
        row["final_regret_pct"] = 100.0 * row["final_regret"] / span if span > 0 else 0.0
        row["final_cost"] = float(np.median([float(r["cost"].iloc[-1]) for r in runs]))
        row["steps"] = float(np.median([int(r["step"].iloc[-1]) for r in runs]))
        if seconds is not None:
            row["seconds"] = float(np.median(seconds.get(p, [math.nan])))
        rows.append(row)
    return pd.DataFrame(rows)


def run_bench(
    oracle: str,
    proposers: list[str],
    seeds: int,
    budget: float,
    out: Path,
    target: str | None = None,
    batch_size: int = 1,
    thresholds: Sequence[float] = (0.05, 0.01),
    progress: bool = True,
) -> pd.DataFrame:
    """Run every proposer with every seed on an oracle; write curves, summary and plot.

    Args:
        oracle: ``table:PATH.csv`` or ``synthetic:NAME`` (see :func:`~mixsearch.bench.oracles.load_oracle`).
        proposers: Proposer names (built-in or ``module:Class``), each optionally with
            constructor options: ``regmix?n_samples=20000`` (see :func:`parse_proposer`).
        seeds: Number of seeds, ``0 .. seeds-1``.
        budget: Budget per run in target-run units (total cost / mean target-run cost).
        out: Output folder (created).
        target: Target fidelity label; default the costliest.
        batch_size: Candidates per ask (q).
        thresholds: Regret thresholds as fractions of the objective's range.
        progress: Show a Rich progress bar.

    Returns:
        The summary table (also written to ``out/summary.csv``).

    Raises:
        ValueError: one line naming the bad input (oracle spec, file, proposer, number).
    """
    names = _check_inputs(proposers, seeds, budget, batch_size, thresholds)
    world = load_oracle(oracle, target)
    built = {p: _build(p) for p in names}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    seconds: dict[str, list[float]] = {p: [] for p in names}
    with _progress(progress, len(names) * seeds * budget) as bar:
        for p in names:
            for s in range(seeds):
                done_before = bar.completed
                bar.describe(f"{p} seed {s}")
                t0 = time.perf_counter()
                rows += run_one(world, built[p], p, s, budget, batch_size, on_step=lambda c: bar.set(done_before + c))
                seconds[p].append(time.perf_counter() - t0)
                bar.set(done_before + budget)
    curves = pd.DataFrame(rows, columns=CURVE_COLUMNS)
    span = world.objective_range()
    summary = summarise(curves, span, thresholds, names, seconds)
    curves.to_csv(out / "curves.csv", index=False)
    summary.to_csv(out / "summary.csv", index=False)
    meta = {
        "oracle": oracle,
        "target": world.ladder.target.name,
        "rungs": {r.name: r.run_cost for r in world.ladder.rungs},
        "pool": world.pool() is not None,
        "best_target": world.best_target(),
        "objective_range": span,
        "budget": budget,
        "seeds": seeds,
        "batch_size": batch_size,
        "thresholds": list(thresholds),
        "proposers": names,
    }
    (out / "bench.json").write_text(json.dumps(meta, indent=2))
    from mixsearch.report.bench import plot_regret

    kind, _, where = oracle.partition(":")
    shown = f"{kind}:{Path(where).name}" if kind == "table" else oracle  # a full path would not fit the title
    plot_regret(curves, out / "regret.png", span, thresholds, budget, title=f"{shown} (target {world.ladder.target.name}, {seeds} seeds)")
    return summary


class _progress:
    """A Rich progress bar over the total cost of all runs (or nothing when disabled)."""

    def __init__(self, enabled: bool, total: float) -> None:
        self.enabled = enabled
        self.total = total
        self.completed = 0.0
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> "_progress":
        if self.enabled:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("{task.description:<28}"), BarColumn(), TextColumn("{task.completed:.1f}/{task.total:.0f} target runs"), TimeElapsedColumn())
            self._bar.__enter__()
            self._task = self._bar.add_task("bench", total=self.total)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def describe(self, text: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task, description=text)

    def set(self, completed: float) -> None:
        self.completed = completed
        if self._bar is not None:
            self._bar.update(self._task, completed=completed)
