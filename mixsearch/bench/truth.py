"""Truth: what the bench scores a recommendation against.

A study never knows the true target value of a mixture; a benchmark world does: a
table holds the measured runs at the target fidelity, a synthetic world is a formula.
:class:`Truth` holds that knowledge (the target value of any mixture, the best and
worst attainable, the cost of one target run) and turns a recommendation into regret.
In a continual pre-training world the answer is a ratio, not a mixture to rank:
:class:`RatioTruth` scores it by its distance to the true critical ratio at the target.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from mixsearch.evaluate.synthetic import SyntheticEvaluator
from mixsearch.evaluate.table import TableEvaluator
from mixsearch.study import ContinualPretraining, FidelityLadder, Objective


@dataclass(frozen=True)
class Truth:
    """Scores recommendations in one world.

    Attributes:
        target_value: True target objective of a mixture ``[K]`` (study orientation).
        best: The best attainable target objective.
        worst: The worst target objective (over the pool, or the simplex).
        target_run_cost: Cost of one run at the target: the bench's cost unit.
        objective: The objective (its direction decides which way regret points).
    """

    target_value: Callable[[np.ndarray], float]
    best: float
    worst: float
    target_run_cost: float
    objective: Objective

    @property
    def span(self) -> float:
        """Worst minus best, as a positive number: regret thresholds are fractions of it."""
        return abs(self.worst - self.best)

    def regret(self, weights: Sequence[float] | None) -> float:
        """How much worse the target value of ``weights`` is than the best (the span with no recommendation)."""
        if weights is None:
            return self.span
        value = self.target_value(np.asarray(weights, dtype=float))
        return max(self.objective.to_minimise(value) - self.objective.to_minimise(self.best), 0.0)


def table_truth(table: TableEvaluator) -> Truth:
    """The truth of a run table: its runs at the target fidelity.

    A recommended mixture is scored by the target-fidelity run nearest to it (Euclidean),
    which is exact for recommendations taken from the pool.
    """
    rows = table.target_rows()
    weights, values = table.table.weights[rows], table.table.objective[rows]

    def value(w: np.ndarray) -> float:
        return float(values[int(np.argmin(np.linalg.norm(weights - w[None, :], axis=1)))])

    return Truth(value, float(values.min()), float(values.max()), float(table.ladder.target.run_cost), Objective())


def synthetic_truth(world: SyntheticEvaluator, ladder: FidelityLadder) -> Truth:
    """The truth of a synthetic world: its noise-free law at the target rung.

    In pool mode a recommendation is scored by its nearest pool mixture, and the best is
    the best pool mixture; otherwise the best is the law's optimum over the simplex.
    """
    target = ladder.target
    pool = world.pool_mixtures
    best = world.optimum(target)[1]
    worst = world.worst(target)

    def value(w: np.ndarray) -> float:
        if pool is not None:
            w = pool[int(np.argmin(np.linalg.norm(pool - w[None, :], axis=1)))]
        return float(world.true_objective(w, target)[0])

    return Truth(value, best, worst, float(target.run_cost), world.objective)


@dataclass(frozen=True)
class RatioTruth(Truth):
    """Scores a continual pre-training answer: regret is ``|R_rec − CMR_true|`` at the target.

    The span is the range of R (1), so the bench's regret thresholds are errors in R: its
    5 % threshold is the ``|error| <= 0.05`` of a critical ratio.

    Attributes:
        ratio_of: The ratio R of a recommended mixture ``[K]``.
        cmr: The true critical ratio at the target.
    """

    ratio_of: Callable[[np.ndarray], float] = lambda w: float("nan")  # noqa: E731 - set by cpt_truth
    cmr: float = float("nan")

    @property
    def span(self) -> float:
        return 1.0

    def regret(self, weights: Sequence[float] | None) -> float:
        if weights is None:
            return self.span
        return abs(self.ratio_of(np.asarray(weights, dtype=float)) - self.cmr)


def cpt_truth(world: SyntheticEvaluator, ladder: FidelityLadder, schedule: ContinualPretraining) -> RatioTruth:
    """The truth of a continual pre-training world: its critical ratio at the target's (T, N)."""
    t = ladder.target
    cmr = world.true_cmr(float(t.tokens), float(t.n_params), schedule.tolerance, schedule.relative)  # type: ignore[arg-type]
    domains = list(world.domains)
    return RatioTruth(
        target_value=lambda w: schedule.ratio(w, domains),
        best=cmr,
        worst=float(max(cmr, 1.0 - cmr)),
        target_run_cost=float(t.run_cost),
        objective=Objective(),
        ratio_of=lambda w: schedule.ratio(w, domains),
        cmr=cmr,
    )
