"""The ``table`` world: published runs replayed.

:class:`TableEvaluator` reads a run table CSV (format in ``docs/tables.md``): columns
``w_<domain>``, ``fidelity``, ``cost``, ``objective`` and optional ``loss_<domain>``.
Proposers may only pick (mixture, fidelity) pairs present in the table (pool mode); a
mixture the table does not hold is recorded as failed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from mixsearch.candidate import Candidate, EvaluationError, Pool, TrialResult
from mixsearch.csvfile import read_csv
from mixsearch.evaluate.base import check_options
from mixsearch.study import FidelityLadder, Rung, SearchSpace

if TYPE_CHECKING:
    from mixsearch.study import Study

WEIGHT_PREFIX = "w_"
LOSS_PREFIX = "loss_"
REQUIRED_COLUMNS = ("fidelity", "cost", "objective")
SCALE_COLUMNS = ("N", "D")
OPTIONS = ("path", "target")
SUM_TOLERANCE = 1e-3
# A proposed mixture matches a table row when no weight differs by more than this
# (table weights are often printed to 3 decimals; candidates are rounded to 6).
MATCH_TOLERANCE = 1e-4


@dataclass(frozen=True)
class RunTable:
    """A validated run table, duplicates of a (mixture, fidelity) pair averaged.

    Attributes:
        domains: Domain names (from the ``w_<domain>`` columns), in table order.
        weights: ``[P, K]`` mixtures, each row renormalised to sum to exactly 1.
        fidelity: ``[P]`` fidelity labels.
        cost: ``[P]`` run costs.
        objective: ``[P]`` objective values (smaller is better).
        losses: Per-domain loss columns (``loss_<name>`` -> ``[P]``); empty if none.
        scale: Per fidelity label, its model size and training tokens ``(N, D)`` from the
            optional ``N`` and ``D`` columns (one value per label); empty without them.
    """

    domains: tuple[str, ...]
    weights: np.ndarray
    fidelity: np.ndarray
    cost: np.ndarray
    objective: np.ndarray
    losses: dict[str, np.ndarray] = field(default_factory=dict)
    scale: dict[str, tuple[int, int]] = field(default_factory=dict)

    def labels_by_cost(self) -> list[tuple[str, float]]:
        """``(label, mean cost)`` pairs, cheapest first."""
        out = [(str(f), float(self.cost[self.fidelity == f].mean())) for f in pd.unique(self.fidelity)]
        return sorted(out, key=lambda x: (x[1], x[0]))


def read_table(path: str | Path) -> RunTable:
    """Read and validate a run table CSV.

    Args:
        path: The CSV file (columns ``w_<domain>``..., ``fidelity``, ``cost``, ``objective``,
            optional ``loss_<name>``...; other columns are ignored).

    Returns:
        The validated table.

    Raises:
        ValueError: one line naming the file and the offending column (and row).
    """
    if not Path(path).is_file():
        raise ValueError(f"{path}: table file not found")
    df = read_csv(path, dtype={"fidelity": str})
    wcols = [c for c in df.columns if c.startswith(WEIGHT_PREFIX)]
    if len(wcols) < 2:
        raise ValueError(f"{path}: need at least two weight columns named 'w_<domain>', found {len(wcols)}")
    for col in REQUIRED_COLUMNS:
        if col not in df.columns:
            raise ValueError(f"{path}: missing column {col!r}")
    if len(df) == 0:
        raise ValueError(f"{path}: the table has no rows")
    lcols = [c for c in df.columns if c.startswith(LOSS_PREFIX)]
    numeric = {c: _numeric_column(df, c, path) for c in (*wcols, "cost", "objective", *lcols)}
    fid = df["fidelity"]
    bad = fid.isna() | (fid.astype(str).str.strip() == "")
    if bad.any():
        raise ValueError(f"{path}: column 'fidelity' has an empty value (row {_row(bad)})")
    w = np.stack([numeric[c] for c in wcols], axis=1)
    if (w < 0).any():
        i, j = np.argwhere(w < 0)[0]
        raise ValueError(f"{path}: column {wcols[j]!r} has a negative weight {w[i, j]:g} (row {i + 2})")
    sums = w.sum(axis=1)
    off = np.abs(sums - 1.0) > SUM_TOLERANCE
    if off.any():
        i = int(np.argmax(off))
        raise ValueError(f"{path}: columns w_*: weights in row {i + 2} sum to {sums[i]:.6g}, not 1 ± {SUM_TOLERANCE:g}")
    if (numeric["cost"] <= 0).any():
        i = int(np.argmax(numeric["cost"] <= 0))
        raise ValueError(f"{path}: column 'cost' must be positive, got {numeric['cost'][i]:g} (row {i + 2})")
    w = w / sums[:, None]
    domains = tuple(c[len(WEIGHT_PREFIX) :] for c in wcols)
    labels = fid.astype(str).str.strip().to_numpy()
    table = _merge_duplicates(domains, w, labels, numeric, lcols)
    return RunTable(table.domains, table.weights, table.fidelity, table.cost, table.objective, table.losses, _label_scale(df, labels, path))


def _label_scale(df: pd.DataFrame, labels: np.ndarray, path: str | Path) -> dict[str, tuple[int, int]]:
    """``{label: (N, D)}`` from the optional ``N`` and ``D`` columns (both or neither; one value per label)."""
    present = [c for c in SCALE_COLUMNS if c in df.columns]
    if not present:
        return {}
    if len(present) == 1:
        missing = next(c for c in SCALE_COLUMNS if c not in present)
        raise ValueError(f"{path}: column {present[0]!r} needs column {missing!r} too (model size N and training tokens D of each fidelity)")
    values = {c: _numeric_column(df, c, path) for c in SCALE_COLUMNS}
    out: dict[str, tuple[int, int]] = {}
    for label in pd.unique(labels):
        rows = labels == label
        pair = []
        for c in SCALE_COLUMNS:
            v = np.unique(values[c][rows])
            if v.size != 1 or v[0] <= 0:
                raise ValueError(f"{path}: column {c!r} must hold one positive value per fidelity; {label!r} has {', '.join(f'{x:g}' for x in v[:3])}")
            pair.append(int(round(float(v[0]))))
        out[str(label)] = (pair[0], pair[1])
    return out


def _numeric_column(df: pd.DataFrame, col: str, path: str | Path) -> np.ndarray:
    """A column as floats; a one-line error naming the column and row otherwise."""
    values = pd.to_numeric(df[col], errors="coerce")
    bad = values.isna() & df[col].notna()
    if bad.any():
        i = _row(bad)
        raise ValueError(f"{path}: column {col!r} has a non-numeric value {df[col][bad].iloc[0]!r} (row {i})")
    if values.isna().any():
        raise ValueError(f"{path}: column {col!r} has an empty value (row {_row(values.isna())})")
    arr = values.to_numpy(dtype=float)
    if not np.isfinite(arr).all():
        raise ValueError(f"{path}: column {col!r} has a non-finite value (row {_row(pd.Series(~np.isfinite(arr)))})")
    return arr


def _row(mask: pd.Series) -> int:
    """1-based CSV line number (header is line 1) of the first True in ``mask``."""
    return int(np.argmax(np.asarray(mask))) + 2


def _merge_duplicates(domains: tuple[str, ...], w: np.ndarray, fid: np.ndarray, numeric: dict[str, np.ndarray], lcols: list[str]) -> RunTable:
    """Average rows that repeat a (mixture, fidelity) pair (replicate seeds)."""
    key = pd.DataFrame(np.round(w, 6), columns=list(domains))
    key["__fid"] = fid
    groups = key.groupby(list(key.columns), sort=False).ngroup().to_numpy()
    n = int(groups.max()) + 1

    def mean(x: np.ndarray) -> np.ndarray:
        return np.bincount(groups, weights=x, minlength=n) / np.bincount(groups, minlength=n)

    first = np.array([np.argmax(groups == g) for g in range(n)])
    weights = np.stack([mean(w[:, j]) for j in range(w.shape[1])], axis=1)
    weights = weights / weights.sum(axis=1, keepdims=True)
    losses = {c[len(LOSS_PREFIX) :]: mean(numeric[c]) for c in lcols}
    return RunTable(domains, weights, fid[first], mean(numeric["cost"]), mean(numeric["objective"]), losses)


class TableEvaluator:
    """Replays a run table: the ``table`` world of studies (and of the bench).

    Args:
        path: The table CSV.
        target: Fidelity label the answer is for; default the costliest label. Labels
            costlier than the target are left out of the ladder.
        domains: Domain order to use (must be the table's ``w_`` domains); default table order.

    The table is read on :meth:`prepare` (called by every accessor), so building one is cheap
    and it pickles small until used.
    """

    def __init__(self, path: str | Path, target: str | None = None, domains: Sequence[str] | None = None) -> None:
        self.path = str(path)
        self.target = target
        self._domains = tuple(domains) if domains is not None else None
        self._table: RunTable | None = None
        self._hash: str | None = None
        self._ladder: FidelityLadder | None = None
        self.name = f"table:{Path(self.path).name}"

    # -- Evaluator protocol ------------------------------------------------------------

    @classmethod
    def from_study(cls, study: "Study") -> "TableEvaluator":
        """The table evaluator of a study (``evaluator.options``: ``path``, optional ``target``)."""
        opts = dict(study.evaluator.options)
        check_options(opts, OPTIONS, "table")
        if study.schedule is not None:
            raise ValueError(f"schedule: a run table holds single-phase pre-training runs; a {study.schedule.kind} schedule needs the proxy or synthetic evaluator")
        path = opts.get("path")
        if not isinstance(path, (str, Path)) or not str(path):
            raise ValueError(f"evaluator.options.path: a table evaluator needs the table CSV path, got {path!r}")
        if not Path(path).is_file():
            raise ValueError(f"evaluator.options.path: table file not found: {str(path)!r}")
        if study.objective.metric is not None:
            raise ValueError("objective.metric: a table study optimises the table's objective column; remove metric")
        if study.objective.domain_weights:
            # The table's objective column is what was measured; a reweighting of per-domain
            # losses the table may not even hold would silently not happen.
            raise ValueError("objective.domain_weights: a table study optimises the table's objective column; remove domain_weights (or build the objective column you want into the table)")
        table = cls(path, opts.get("target"), study.domain_names)
        table.prepare()
        if study.objective.direction != "minimize":
            raise ValueError(f"{table.path}: table objectives are minimised; negate accuracies in the table and use Objective(direction='minimize')")
        labels = set(table.ladder.names)
        for r in study.ladder.rungs:
            if r.name not in labels:
                raise ValueError(f"{table.path}: study rung {r.name!r} is not a fidelity in the table; labels: {', '.join(table.ladder.names)}")
        return table

    def prepare(self) -> None:
        """Read and validate the table (idempotent)."""
        if self._table is not None:
            return
        table = read_table(self.path)
        if self._domains is not None:
            if sorted(self._domains) != sorted(table.domains):
                raise ValueError(f"{self.path}: table domains {list(table.domains)} do not match the study's {list(self._domains)}")
            order = [table.domains.index(d) for d in self._domains]
            table = RunTable(self._domains, table.weights[:, order], table.fidelity, table.cost, table.objective, table.losses, table.scale)
        labels = [lab for lab, _ in table.labels_by_cost()]
        if self.target is not None and self.target not in labels:
            raise ValueError(f"{self.path}: target fidelity {self.target!r} is not in the table; labels: {', '.join(labels)}")
        self._table = table
        self._hash = hashlib.sha256(Path(self.path).read_bytes()).hexdigest()[:16]

    def snapshot_id(self) -> str:
        """Hash of the table file."""
        self.prepare()
        assert self._hash is not None
        return f"table-{self._hash}"

    def evaluate(self, candidate: Candidate, rung: Rung) -> TrialResult:
        """The table's result for a candidate at a rung.

        Raises:
            EvaluationError: the mixture is not in the table at that fidelity.
        """
        try:
            i = self._row(candidate.weights, rung.name)
        except KeyError as exc:
            raise EvaluationError(str(exc.args[0])) from None
        t = self.table
        losses = {name: float(v[i]) for name, v in t.losses.items()} or {"objective": float(t.objective[i])}
        return TrialResult(
            domain_losses=losses,
            objective=float(t.objective[i]),
            cost=float(t.cost[i]),
            seconds=0.0,
            metrics={"table_row": int(i), "fidelity": rung.name},
        )

    def pool(self) -> Pool:
        """Every (mixture, fidelity) pair of the ladder's rungs."""
        t = self.table
        keep = np.isin(t.fidelity, self.ladder.names)
        return Pool(t.weights[keep], tuple(str(f) for f in t.fidelity[keep]))

    # -- table access ------------------------------------------------------------------

    @property
    def table(self) -> RunTable:
        self.prepare()
        assert self._table is not None
        return self._table

    @property
    def domains(self) -> tuple[str, ...]:
        return self.table.domains

    @property
    def space(self) -> SearchSpace:
        return SearchSpace(self.domains)

    @property
    def ladder(self) -> FidelityLadder:
        """Rungs = fidelity labels (cost = mean cost of the label, N and D when the table
        has them) up to the target."""
        if self._ladder is None:
            by_cost = self.table.labels_by_cost()
            target = self.target or by_cost[-1][0]
            target_cost = dict(by_cost)[target]
            scale = self.table.scale

            def rung(label: str, cost: float) -> Rung:
                n, d = scale.get(label, (None, None))
                return Rung(label, n_params=n, tokens=d, cost=cost)

            rungs = tuple(rung(lab, c) for lab, c in by_cost if lab == target or c < target_cost)
            self._ladder = FidelityLadder(rungs, rung(target, target_cost))
        return self._ladder

    def _row(self, weights: Sequence[float], rung: str) -> int:
        t = self.table
        idx = np.flatnonzero(t.fidelity == rung)
        if idx.size:
            gap = np.abs(t.weights[idx] - np.asarray(weights, dtype=float)[None, :]).max(axis=1)
            j = int(np.argmin(gap))
            if gap[j] <= MATCH_TOLERANCE:
                return int(idx[j])
        shown = ", ".join(f"{x:.4f}" for x in weights)
        raise KeyError(f"{self.path}: mixture ({shown}) is not in the table at fidelity {rung!r}")

    def target_rows(self) -> np.ndarray:
        """Row indices of the target fidelity."""
        return np.flatnonzero(self.table.fidelity == self.ladder.target.name)
