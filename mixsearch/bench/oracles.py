"""Oracles: worlds the harness (and table studies) evaluate mixtures in.

Two kinds, one interface (:class:`BenchOracle`):

* :class:`~mixsearch.bench.table_oracle.TableOracle` replays published runs from a table CSV.
* :class:`~mixsearch.bench.synthetic.SyntheticOracle` is a data mixing law whose optimum
  shifts with model scale, observed with noise.

:func:`load_oracle` turns the CLI spelling (``table:PATH.csv``, ``synthetic:NAME``) into one.
"""

from __future__ import annotations

from typing import Protocol, Sequence

from mixsearch.bench.synthetic import SYNTHETIC_LAWS, SYNTHETIC_RUNGS, MixingLaw, SyntheticOracle
from mixsearch.bench.table_oracle import MATCH_TOLERANCE, RunTable, TableOracle, read_table
from mixsearch.propose.base import Pool
from mixsearch.study import FidelityLadder, SearchSpace

__all__ = [
    "BenchOracle",
    "MATCH_TOLERANCE",
    "MixingLaw",
    "RunTable",
    "SYNTHETIC_LAWS",
    "SYNTHETIC_RUNGS",
    "SyntheticOracle",
    "TableOracle",
    "load_oracle",
    "read_table",
]


class BenchOracle(Protocol):
    """What the harness needs from a world: run mixtures, score recommendations.

    Attributes:
        name: Short description for reports.
        space: The search space (domains and bounds).
        ladder: Runnable rungs and the target rung (the target is always runnable here).
    """

    name: str

    @property
    def space(self) -> SearchSpace: ...

    @property
    def ladder(self) -> FidelityLadder: ...

    def pool(self) -> Pool | None:
        """The (mixture, rung) pairs proposers must choose from, or None (continuous)."""
        ...

    def observe(self, weights: Sequence[float], rung: str, seed: int) -> tuple[float, float]:
        """Run one mixture: ``(objective, cost)``; raises KeyError for a mixture not offered."""
        ...

    def target_value(self, weights: Sequence[float]) -> float:
        """True target objective of a recommended mixture (pool mode: of its nearest pool mixture)."""
        ...

    def best_target(self) -> float:
        """The best (smallest) target objective attainable."""
        ...

    def objective_range(self) -> float:
        """Worst minus best target objective: the scale regret thresholds are fractions of."""
        ...

    def target_run_cost(self) -> float:
        """Cost of one run at the target: the harness's cost unit."""
        ...


def load_oracle(spec: str, target: str | None = None) -> BenchOracle:
    """Build an oracle from ``table:PATH.csv`` or ``synthetic:NAME[?pool=N&seed=S&noise=X]``.

    Raises:
        ValueError: one line naming ``--oracle`` (or the table file) and the problem.
    """
    kind, sep, rest = str(spec).partition(":")
    if not sep or not rest:
        raise ValueError(f"--oracle: expected 'table:PATH.csv' or 'synthetic:NAME', got {spec!r}")
    if kind == "table":
        oracle = TableOracle(rest, target)
        oracle.prepare()
        if len(oracle.ladder.rungs) < 1:
            raise ValueError(f"{rest}: no fidelity at or below the target")
        return oracle
    if kind == "synthetic":
        name, _, query = rest.partition("?")
        opts: dict[str, float | int] = {}
        for part in filter(None, query.split("&")):
            key, eq, value = part.partition("=")
            if not eq or key not in ("pool", "seed", "noise"):
                raise ValueError(f"--oracle: bad synthetic option {part!r}; use pool=N, seed=S or noise=X")
            try:
                opts[key] = float(value) if key == "noise" else int(value)
            except ValueError:
                raise ValueError(f"--oracle: synthetic option {key!r} needs a number, got {value!r}") from None
        return SyntheticOracle(name, target=target, **opts)  # type: ignore[arg-type]
    raise ValueError(f"--oracle: unknown oracle kind {kind!r}; use 'table:PATH.csv' or 'synthetic:NAME'")
