"""The Evaluator interface: turns a candidate into a TrialResult.

Two kinds exist: ``proxy`` trains a small GPT on the mixture
(:mod:`mixsearch.proxy.evaluator`), ``table`` replays published runs
(:mod:`mixsearch.bench.table_oracle`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from mixsearch.candidate import Candidate, TrialResult
from mixsearch.study import Rung

if TYPE_CHECKING:
    from mixsearch.propose.base import Pool
    from mixsearch.study import Study


@runtime_checkable
class Evaluator(Protocol):
    """Evaluates candidates. Must be picklable (executors ship it to workers)."""

    def prepare(self) -> None:
        """Do one-off set-up (build the corpus, load the table); idempotent."""
        ...

    def snapshot_id(self) -> str:
        """Id of the data the results depend on (corpus hash, table hash)."""
        ...

    def evaluate(self, candidate: Candidate, rung: Rung) -> TrialResult:
        """Run one candidate at ``rung`` and return its results.

        Raises:
            mixsearch.candidate.EvaluationError: a failure worth recording (diverged run).
        """
        ...

    def pool(self) -> "Pool | None":
        """The finite (mixture, rung) pool candidates must come from, or None."""
        ...


_KINDS = {
    "proxy": "mixsearch.proxy.evaluator:ProxyEvaluator",
    "table": "mixsearch.bench.table_oracle:TableOracle",
}


def make_evaluator(study: "Study") -> Evaluator:
    """Build the study's evaluator (cheap; heavy work waits for ``prepare``)."""
    module_name, _, attr = _KINDS[study.evaluator.kind].partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    return cls.from_study(study)
