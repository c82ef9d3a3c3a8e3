"""The benchmark harness: proposers side by side in one world, through the real study loop.

For each proposer and seed it builds the study a user would write for the world (its
domains, ladder, evaluator, the proposer, the seed, a cost budget in target-run units),
and runs the product's :class:`~mixsearch.orchestrator.Orchestrator` on an in-memory
ledger with an inline executor. After each round of results it asks the proposer for its
recommendation and scores it with the world's :class:`~mixsearch.bench.truth.Truth`.

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
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from mixsearch.bench.worlds import World, load_world
from mixsearch.evaluate import make_evaluator
from mixsearch.execute.inline import InlineExecutor
from mixsearch.ledger import Ledger, Trial
from mixsearch.orchestrator import Orchestrator, TrialLoop
from mixsearch.propose.base import BUILTIN, check_schedule, make_proposer
from mixsearch.study import Budget, Domain, ProposerSpec, Schedule, Study
from mixsearch.threads import limited

CURVE_COLUMNS = ["proposer", "seed", "step", "cost", "regret"]


def parse_proposer(text: str, batch_size: int = 1) -> ProposerSpec:
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
    return ProposerSpec(name=name, batch_size=batch_size, options=options)


def _check_inputs(proposers: Sequence[str], seeds: int, budget: float, batch_size: int, thresholds: Sequence[float], pool: bool, schedule: Schedule | None = None) -> list[str]:
    names = [p.strip() for p in proposers if p.strip()]
    if not names:
        raise ValueError("--proposers: name at least one proposer")
    for p in names:
        try:
            spec = parse_proposer(p)
            proposer = make_proposer(spec)
            check_schedule(proposer, spec.name, schedule)
            check_mode = getattr(proposer, "check_mode", None)
            if callable(check_mode):
                check_mode(pool=pool)
        except ValueError as exc:
            raise ValueError(f"--proposers: {p}: {exc}") from None
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


def bench_study(world: World, proposer: str, seed: int, budget: float, batch_size: int = 1) -> Study:
    """The study one bench run is: what a user would declare to search this world.

    Args:
        world: The world.
        proposer: Proposer name with options (``regmix?n_samples=20000``).
        seed: The study seed.
        budget: Budget in target-run units.
        batch_size: Candidates per ask (q).

    The cost budget is ``budget`` target runs. Failed trials cost nothing, so a trial cap
    (enough for the whole budget at the cheapest rung, several times over) stops a proposer
    that keeps proposing what the world refuses.
    """
    unit = world.truth.target_run_cost
    cheapest = min(r.run_cost for r in world.ladder.rungs)
    cap = int(math.ceil(budget * unit / cheapest)) * 2 + 8 * batch_size
    return Study(
        name="bench",
        domains=tuple(Domain(d) for d in world.domains),
        ladder=world.ladder,
        budget=Budget(max_trials=cap, max_cost=budget * unit),
        objective=world.objective,
        proposer=parse_proposer(proposer, batch_size),
        evaluator=world.evaluator,
        seed=seed,
        schedule=world.schedule,
    )


def run_one(world: World, proposer: str, seed: int, budget: float, batch_size: int = 1, on_step: Any = None, trials: list[Trial] | None = None) -> list[dict[str, Any]]:
    """Run one proposer with one seed through the study loop until the budget is spent.

    Args:
        world: The world to search.
        proposer: Proposer name with options; also its name in the curve rows.
        seed: The study seed (ask seeds and the world's noise stream derive from it).
        budget: Budget in target-run units.
        batch_size: Candidates asked per step (q); the inline executor runs them as one round.
        on_step: Called with the cumulative cost after each step (progress display).
        trials: When given, filled with the ledger's trials at the end (tests compare them
            with a study's).

    Returns:
        Curve rows ``{proposer, seed, step, cost, regret}``; step 0 is before any trial.
    """
    study = bench_study(world, proposer, seed, budget, batch_size)
    unit, truth = world.truth.target_run_cost, world.truth
    rows = [{"proposer": proposer, "seed": seed, "step": 0, "cost": 0.0, "regret": truth.span}]

    def score(loop: TrialLoop) -> None:
        spent, _ = loop.spent(loop.ledger.trials())
        rec = loop.recommend()
        regret = truth.regret(None if rec is None else rec.weights)
        rows.append({"proposer": proposer, "seed": seed, "step": len(rows), "cost": spent / unit, "regret": float(regret)})
        if on_step is not None:
            on_step(spent / unit)

    ledger = Ledger.in_memory()
    try:
        loop = Orchestrator(
            study,
            ledger,
            make_evaluator(study),
            InlineExecutor(capacity=batch_size),
            make_proposer(study.proposer),
            heartbeat_interval=0.0,
            after_tell=score,
        )
        loop.run()
        if trials is not None:
            trials.extend(ledger.trials())
    finally:
        ledger.dispose()
    return rows


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
    did), ``steps_to_<p>pct`` (rounds of results after which it stays below: trials, at batch
    size 1), ``final_regret``, ``final_regret_pct`` (of the range), ``final_cost``, ``steps``,
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
            row[f"steps_to_{tag}"] = float(np.median([cost_to_reach(r.assign(cost=r["step"].astype(float)), t * span) for r in runs]))
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
    force: bool = False,
) -> pd.DataFrame:
    """Run every proposer with every seed in a world; write curves, summary and plot.

    Args:
        oracle: ``table:PATH.csv`` or ``synthetic:NAME`` (see :func:`~mixsearch.bench.worlds.load_world`).
        proposers: Proposer names (built-in or ``module:Class``), each optionally with
            constructor options: ``regmix?n_samples=20000`` (see :func:`parse_proposer`).
        seeds: Number of seeds, ``0 .. seeds-1``.
        budget: Budget per run in target-run units (total cost / target-run cost).
        out: Output folder (created; refused when it holds files, unless ``force``).
        target: Target fidelity label; default the costliest.
        batch_size: Candidates per ask (q).
        thresholds: Regret thresholds as fractions of the objective's range.
        progress: Show a Rich progress bar.
        force: Overwrite the outputs of an earlier bench in ``out``.

    Returns:
        The summary table (also written to ``out/summary.csv``).

    Raises:
        ValueError: one line naming the bad input (oracle spec, file, proposer, number, folder).
    """
    world = load_world(oracle, target)
    names = _check_inputs(proposers, seeds, budget, batch_size, thresholds, world.pool, world.schedule)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out: {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ValueError(f"--out: {out} already holds files (an earlier bench?); choose another folder or pass --force to overwrite")
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    seconds: dict[str, list[float]] = {p: [] for p in names}
    # The bench's worlds answer at once: its time is the proposers' (GP fits, acquisitions).
    with _progress(progress, len(names) * seeds * budget) as bar, limited("surrogate"):
        for p in names:
            for s in range(seeds):
                done_before = bar.completed
                bar.describe(f"{p} seed {s}")
                t0 = time.perf_counter()
                rows += run_one(world, p, s, budget, batch_size, on_step=lambda c: bar.set(done_before + c))
                seconds[p].append(time.perf_counter() - t0)
                bar.set(done_before + budget)
    curves = pd.DataFrame(rows, columns=CURVE_COLUMNS)
    span = world.truth.span
    summary = summarise(curves, span, thresholds, names, seconds)
    curves.to_csv(out / "curves.csv", index=False)
    summary.to_csv(out / "summary.csv", index=False)
    meta = {
        "oracle": oracle,
        "target": world.ladder.target.name,
        "rungs": {r.name: r.run_cost for r in world.ladder.rungs},
        "pool": world.pool,
        "best_target": world.truth.best,
        "objective_range": span,
        "budget": budget,
        "seeds": seeds,
        "batch_size": batch_size,
        "thresholds": list(thresholds),
        "proposers": names,
        "loop": "mixsearch.orchestrator.Orchestrator, in-memory ledger, inline executor",
    }
    (out / "bench.json").write_text(json.dumps(meta, indent=2))
    from mixsearch.report.bench import plot_regret

    plot_regret(curves, out / "regret.png", span, thresholds, budget, title=f"{world.title} (target {world.ladder.target.name}, {seeds} seeds)")
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
