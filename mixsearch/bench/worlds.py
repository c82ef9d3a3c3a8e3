"""The worlds the bench runs in: ``table:PATH.csv`` and ``synthetic:NAME[?pool=N&seed=S&noise=X]``.

A :class:`World` is what a bench study needs besides its proposer, seed and budget: the
domains, the ladder up to the target, the evaluator spec (the same spec a study file would
declare) and the :class:`~mixsearch.bench.truth.Truth` that scores recommendations.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mixsearch.bench.truth import Truth, cpt_truth, synthetic_truth, table_truth
from mixsearch.evaluate.synthetic import OPTIONS as SYNTHETIC_OPTIONS
from mixsearch.evaluate.synthetic import SyntheticEvaluator
from mixsearch.evaluate.worlds import SYNTHETIC_WORLDS, CPTWorld, default_ladder
from mixsearch.evaluate.table import TableEvaluator
from mixsearch.study import ContinualPretraining, EvaluatorSpec, FidelityLadder, Objective, Schedule


@dataclass(frozen=True)
class World:
    """A benchmark world.

    Attributes:
        spec: The CLI spelling it came from.
        title: A short name for plot titles (a table's file name, not its full path).
        domains: Domain names, in weight order.
        ladder: Runnable rungs up to the target, and the target (runnable here).
        evaluator: The study's evaluator spec for this world.
        objective: The study's objective.
        truth: Scores recommendations.
        schedule: The study's schedule (a continual pre-training world's), or None.
    """

    spec: str
    title: str
    domains: tuple[str, ...]
    ladder: FidelityLadder
    evaluator: EvaluatorSpec
    objective: Objective
    truth: Truth
    schedule: Schedule | None = None

    @property
    def pool(self) -> bool:
        """Whether candidates must come from a finite pool."""
        return self.evaluator.kind == "table" or self.evaluator.options.get("pool") is not None


def load_world(spec: str, target: str | None = None) -> World:
    """Build a world from ``table:PATH.csv`` or ``synthetic:NAME[?pool=N&seed=S&noise=X]``.

    Args:
        spec: The world.
        target: Target fidelity label (default: the costliest).

    Raises:
        ValueError: one line naming ``--oracle`` (or the table file) and the problem.
    """
    kind, sep, rest = str(spec).partition(":")
    if not sep or not rest:
        raise ValueError(f"--oracle: expected 'table:PATH.csv' or 'synthetic:NAME', got {spec!r}")
    if kind == "table":
        table = TableEvaluator(rest, target)
        table.prepare()
        options: dict[str, Any] = {"path": str(Path(rest).resolve())}
        if target is not None:
            options["target"] = target
        return World(spec, f"table:{Path(rest).name}", table.domains, table.ladder, EvaluatorSpec("table", options), Objective(), table_truth(table))
    if kind == "synthetic":
        name, _, query = rest.partition("?")
        if name not in SYNTHETIC_WORLDS:
            raise ValueError(f"--oracle: unknown synthetic world {name!r}; known: {', '.join(SYNTHETIC_WORLDS)}")
        options = {"world": name, **_synthetic_options(query)}
        ladder = default_ladder(name, target)
        objective = SYNTHETIC_WORLDS[name].objective
        try:
            world = SyntheticEvaluator(name, None, objective, options.get("noise"), options.get("seed", 0), options.get("pool"), ladder.names)
        except ValueError as exc:
            raise ValueError(f"--oracle: {str(exc).removeprefix('evaluator.options.')}") from None
        law = SYNTHETIC_WORLDS[name]
        if isinstance(law, CPTWorld):
            if world.pool_size is not None:
                raise ValueError(f"--oracle: the {name!r} world is continual pre-training; it offers no pool")
            schedule = ContinualPretraining(law.new_domain, tolerance=law.tolerance)
            return World(spec, spec, world.domains, ladder, EvaluatorSpec("synthetic", options), objective, cpt_truth(world, ladder, schedule), schedule)
        return World(spec, spec, world.domains, ladder, EvaluatorSpec("synthetic", options), objective, synthetic_truth(world, ladder))
    raise ValueError(f"--oracle: unknown oracle kind {kind!r}; use 'table:PATH.csv' or 'synthetic:NAME'")


def _synthetic_options(query: str) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    known = [o for o in SYNTHETIC_OPTIONS if o != "world"]
    for part in filter(None, query.split("&")):
        key, eq, value = part.partition("=")
        if not eq or key not in known:
            raise ValueError(f"--oracle: bad synthetic option {part!r}; use {', '.join(f'{k}=…' for k in known)}")
        try:
            opts[key] = float(value) if key == "noise" else int(value)
        except ValueError:
            raise ValueError(f"--oracle: synthetic option {key!r} needs a number, got {value!r}") from None
    return opts
