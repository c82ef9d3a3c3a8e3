"""A trial as the ledger stores it: its states, its record, and the row codec.

:class:`~mixsearch.ledger.Ledger` moves trials between the states below and reads and
writes their rows through these functions; everything that reads trials back (the
orchestrator, the report, the answer) works with :class:`Trial` and :func:`best_done`.
Weights are stored by domain name (schema 2); a schema-1 row stored them by position.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import pandas as pd
import sqlalchemy as sa

from mixsearch.candidate import Candidate, Phases, TrialResult
from mixsearch.storage import LedgerError, trials_table

PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"
STATES = (PENDING, RUNNING, DONE, FAILED)


@dataclass(frozen=True)
class Trial:
    """One row of the ledger.

    Attributes:
        trial_id: Hash of the canonical candidate and its context.
        number: Insertion order (1-based).
        ask: Index of the ask that proposed it.
        candidate: The candidate.
        state: One of ``STATES``.
        attempts: How many times it was claimed.
        result: Results once done.
        error: Reason once failed.
    """

    trial_id: str
    number: int
    ask: int
    candidate: Candidate
    state: str
    attempts: int
    worker: str | None = None
    heartbeat: float | None = None
    created: float | None = None
    started: float | None = None
    finished: float | None = None
    cost: float | None = None
    seconds: float | None = None
    objective: float | None = None
    domain_losses: Mapping[str, float] = field(default_factory=dict)
    curve: Sequence[Sequence[float]] = field(default_factory=list)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None


def weights_json(weights: Sequence[float], domains: Sequence[str]) -> str:
    """Weights as stored: by domain name (schema 2; :func:`read_weights` reads them back)."""
    return json.dumps(dict(zip(domains, weights)))


def candidate_columns(c: Candidate, domains: Sequence[str]) -> dict[str, Any]:
    """The columns a candidate fills: its weights and phases by domain name, rung and seed
    (:func:`row_to_trial` reads them back)."""
    return {
        "weights": weights_json(c.weights, domains),
        "schedule": None if c.schedule is None else json.dumps(c.schedule.as_dict(domains)),
        "rung": c.rung,
        "seed": c.seed,
    }


def row_to_trial(row: Mapping[str, Any], domains: Sequence[str] | None) -> Trial:
    """A ledger row as a :class:`Trial`, weights read in ``domains`` order (see :func:`read_weights`)."""
    raw = row.get("schedule")
    if raw:
        if domains is None:
            raise LedgerError("a trial stores a two-phase schedule but the ledger names no domains")
        cand = Candidate((), row["rung"], int(row["seed"]), Phases.from_dict(json.loads(raw), domains))
    else:
        cand = Candidate(read_weights(row["weights"], domains), row["rung"], int(row["seed"]))
    return Trial(
        trial_id=row["trial_id"],
        number=int(row["number"]),
        ask=int(row["ask"]),
        candidate=cand,
        state=row["state"],
        attempts=int(row["attempts"]),
        worker=row["worker"],
        heartbeat=row["heartbeat"],
        created=row["created"],
        started=row["started"],
        finished=row["finished"],
        cost=row["cost"],
        seconds=row["seconds"],
        objective=row["objective"],
        domain_losses=json.loads(row["domain_losses"]) if row["domain_losses"] else {},
        curve=json.loads(row["curve"]) if row["curve"] else [],
        metrics=json.loads(row["metrics"]) if row["metrics"] else {},
        error=row["error"],
    )


def result_columns(result: TrialResult) -> dict[str, Any]:
    """The columns a finished trial's result fills."""
    return {
        "cost": float(result.cost),
        "seconds": float(result.seconds),
        "objective": float(result.objective),
        "domain_losses": json.dumps({k: float(v) for k, v in result.domain_losses.items()}),
        "curve": json.dumps([list(map(float, p)) for p in result.curve]),
        "metrics": json.dumps(dict(result.metrics), default=str),
        "error": None,
    }


def finite(x: float | None) -> bool:
    """Whether ``x`` is a real, finite number (a stored objective may be None or NaN)."""
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def best_done(trials: Sequence[Trial], objective: Any, rung: str | None = None) -> Trial | None:
    """The best done trial with a finite objective (at ``rung`` when given), or None.

    Args:
        trials: Ledger trials.
        objective: The study's :class:`~mixsearch.study.Objective` (its direction decides "best").
        rung: Only trials at this rung.
    """
    done = [t for t in trials if t.state == DONE and finite(t.objective) and (rung is None or t.candidate.rung == rung)]
    if not done:
        return None
    return min(done, key=lambda t: (objective.to_minimise(float(t.objective)), t.number))  # type: ignore[arg-type]


def read_weights(raw: str, domains: Sequence[str] | None) -> tuple[float, ...]:
    """Stored weights in ``domains`` order: by name (schema 2), or by position in a schema-1 row.

    Raises:
        LedgerError: the stored names are not the study's domains.
    """
    stored = json.loads(raw)
    if isinstance(stored, list):
        return tuple(float(w) for w in stored)
    if domains is None or set(stored) != set(domains):
        raise LedgerError(f"stored weights name domains {sorted(stored)}, not the study's {list(domains or [])}")
    return tuple(float(stored[d]) for d in domains)


def migrate_positional_weights(conn: sa.Connection, domains: Sequence[str]) -> int:
    """Rewrite schema-1 rows (weights by position) as weights by name; the number rewritten."""
    t = trials_table
    rows = conn.execute(sa.select(t.c.trial_id, t.c.weights)).all()
    n = 0
    for tid, raw in rows:
        stored = json.loads(raw)
        if isinstance(stored, list):
            if len(stored) != len(domains):
                raise LedgerError(f"trial {tid} has {len(stored)} weights for {len(domains)} domains")
            conn.execute(sa.update(t).where(t.c.trial_id == tid).values(weights=weights_json(stored, domains)))
            n += 1
    return n


def trials_frame(trials: Sequence[Trial], domains: Sequence[str] | None) -> pd.DataFrame:
    """One row per trial: ids, state, rung, costs, objective, ``w_<domain>`` and ``loss_<domain>`` columns.

    Args:
        trials: Trials in ledger order.
        domains: The names the weights were stored under (``d0, d1, ...`` when None).

    Two-phase trials add ``switch``, ``w1_<domain>`` and ``w2_<domain>`` (their ``w_`` is
    the token-weighted mixture); continual pre-training trials add ``base_loss_<domain>``,
    their base model's losses.
    """
    records = []
    for tr in trials:
        names = domains or [f"d{i}" for i in range(len(tr.candidate.weights))]
        rec: dict[str, Any] = {
            "trial_id": tr.trial_id,
            "number": tr.number,
            "ask": tr.ask,
            "state": tr.state,
            "rung": tr.candidate.rung,
            "seed": tr.candidate.seed,
            "attempts": tr.attempts,
            "objective": tr.objective,
            "cost": tr.cost,
            "seconds": tr.seconds,
            "n_params": tr.metrics.get("n_params"),
            "tokens": tr.metrics.get("tokens"),
            "error": tr.error,
            "worker": tr.worker,
            "created": tr.created,
            "finished": tr.finished,
        }
        rec.update({f"w_{d}": w for d, w in zip(names, tr.candidate.weights)})
        ph = tr.candidate.schedule
        if ph is not None:
            # A two-phase trial: ``w_`` is its token-weighted mixture, these its phases.
            rec["switch"] = ph.switch
            rec.update({f"w1_{d}": w for d, w in zip(names, ph.first)})
            rec.update({f"w2_{d}": w for d, w in zip(names, ph.second)})
        rec.update({f"loss_{d}": v for d, v in tr.domain_losses.items()})
        base = tr.metrics.get("base_losses")
        if isinstance(base, Mapping):
            # A continual pre-training trial: the base model it continued, for the CMR laws.
            rec.update({f"base_loss_{d}": v for d, v in base.items()})
        records.append(rec)
    return pd.DataFrame.from_records(records)
