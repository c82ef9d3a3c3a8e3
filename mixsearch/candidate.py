"""Candidates, trial results and trial identity: the values that cross every room."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

WEIGHT_DECIMALS = 6


def canonical_weights(weights: Sequence[float]) -> tuple[float, ...]:
    """Weights rounded to ``WEIGHT_DECIMALS`` and renormalised onto the simplex.

    Rounding first makes two proposals that differ only by float noise the same trial.
    """
    rounded = [round(max(float(w), 0.0), WEIGHT_DECIMALS) for w in weights]
    total = sum(rounded)
    if total <= 0:
        raise ValueError("weights sum to zero")
    scaled = [round(w / total, WEIGHT_DECIMALS) for w in rounded]
    # Put the rounding residue on the largest weight so the sum is exactly 1 to 1e-6.
    residue = round(1.0 - sum(scaled), WEIGHT_DECIMALS)
    i = max(range(len(scaled)), key=scaled.__getitem__)
    scaled[i] = round(scaled[i] + residue, WEIGHT_DECIMALS)
    return tuple(scaled)


SWITCH_DECIMALS = 4


@dataclass(frozen=True)
class Phases:
    """A two-phase schedule: the ``first`` mixture for a ``switch`` fraction of the tokens, then ``second``.

    Attributes:
        first: ``[K]`` phase-1 weights (study domain order), on the simplex.
        second: ``[K]`` phase-2 weights.
        switch: Fraction of the run's tokens trained in phase 1, in (0, 1), rounded to
            ``SWITCH_DECIMALS`` decimals (a trial identity, like the weights).
    """

    first: tuple[float, ...]
    second: tuple[float, ...]
    switch: float

    def __post_init__(self) -> None:
        if len(self.first) != len(self.second):
            raise ValueError(f"phases: phase 1 has {len(self.first)} weights, phase 2 has {len(self.second)}")
        switch = round(float(self.switch), SWITCH_DECIMALS)
        if not 0.0 < switch < 1.0:
            raise ValueError(f"phases: switch must be in (0, 1), got {self.switch!r}")
        object.__setattr__(self, "first", canonical_weights(self.first))
        object.__setattr__(self, "second", canonical_weights(self.second))
        object.__setattr__(self, "switch", switch)

    def overall(self) -> tuple[float, ...]:
        """The token-weighted mixture over the whole run, ``switch * first + (1 - switch) * second``."""
        return canonical_weights([self.switch * a + (1.0 - self.switch) * b for a, b in zip(self.first, self.second)])

    def as_dict(self, domains: Sequence[str]) -> dict[str, Any]:
        """``{"first": {domain: w}, "second": {domain: w}, "switch": s}`` (how the ledger and exports store it)."""
        return {"first": dict(zip(domains, self.first)), "second": dict(zip(domains, self.second)), "switch": self.switch}

    @staticmethod
    def from_dict(doc: Mapping[str, Any], domains: Sequence[str]) -> "Phases":
        """Back from :meth:`as_dict` (weights read by domain name)."""
        return Phases(tuple(float(doc["first"][d]) for d in domains), tuple(float(doc["second"][d]) for d in domains), float(doc["switch"]))


@dataclass(frozen=True)
class Candidate:
    """A point to evaluate: a mixture at a fidelity rung with a training seed.

    Attributes:
        weights: Domain weights in the study's domain order, on the simplex. With a
            schedule, the token-weighted overall mixture (computed from it when left empty).
        rung: Name of the fidelity rung (model size N and tokens D live on the rung).
        seed: Training seed.
        schedule: A two-phase schedule, or ``None`` for one mixture throughout.
    """

    weights: tuple[float, ...]
    rung: str
    seed: int = 0
    schedule: Phases | None = None

    def __post_init__(self) -> None:
        if self.schedule is not None:
            overall = self.schedule.overall()
            if len(self.weights) and max(abs(a - b) for a, b in zip(canonical_weights(self.weights), overall)) > 1e-5:
                raise ValueError(f"weights: a two-phase candidate's weights are its token-weighted mixture {overall}, got {tuple(self.weights)}")
            object.__setattr__(self, "weights", overall)
            return
        object.__setattr__(self, "weights", canonical_weights(self.weights))

    @staticmethod
    def phased(first: Sequence[float], second: Sequence[float], switch: float, rung: str, seed: int = 0) -> "Candidate":
        """A two-phase candidate; its ``weights`` are the token-weighted mixture."""
        return Candidate((), rung, seed, Phases(tuple(first), tuple(second), switch))


def trial_id(candidate: Candidate, context: Mapping[str, Any]) -> str:
    """Stable id of a trial: hash of the canonical candidate and what determines its result.

    Args:
        candidate: The candidate.
        context: What else fixes the result: the rung's N and D, the evaluator
            config and the data snapshot id (corpus hash or table hash).

    Returns:
        A 20-hex-digit id; equal candidates in equal contexts share it, so a re-run
        is found in the ledger rather than retrained.
    """
    payload: dict[str, Any] = {
        "weights": [f"{w:.{WEIGHT_DECIMALS}f}" for w in candidate.weights],
        "rung": candidate.rung,
        "seed": candidate.seed,
        "context": context,
    }
    if candidate.schedule is not None:
        # Only when present: a candidate without a schedule keeps the id it always had.
        ph = candidate.schedule
        payload["schedule"] = {
            "first": [f"{w:.{WEIGHT_DECIMALS}f}" for w in ph.first],
            "second": [f"{w:.{WEIGHT_DECIMALS}f}" for w in ph.second],
            "switch": f"{ph.switch:.{SWITCH_DECIMALS}f}",
        }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class TrialResult:
    """What an evaluator returns for one candidate.

    Attributes:
        domain_losses: Validation loss per domain name.
        objective: The study objective computed from ``domain_losses`` (NaN if not
            computable; the orchestrator then records the trial as failed).
        cost: Cost charged to the budget (FLOPs for proxies, the table's cost column
            for table oracles).
        seconds: Wall time of the evaluation.
        curve: Training curve as ``[(tokens_seen, train_loss), ...]``.
        metrics: Anything else worth keeping (tokens/s, device, N, D …).
    """

    domain_losses: Mapping[str, float]
    objective: float
    cost: float
    seconds: float
    curve: Sequence[tuple[float, float]] = field(default_factory=tuple)
    metrics: Mapping[str, Any] = field(default_factory=dict)

    @property
    def finite(self) -> bool:
        """Whether the objective and every domain loss are finite numbers."""
        values = [self.objective, *self.domain_losses.values()]
        return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


@dataclass(frozen=True)
class Pool:
    """A finite set of (mixture, rung) pairs a proposer must choose from (table worlds).

    Attributes:
        weights: ``[P, K]`` mixtures.
        rungs: ``[P]`` rung names.
    """

    weights: np.ndarray
    rungs: tuple[str, ...]


class EvaluationError(RuntimeError):
    """An evaluation that failed in a way worth recording (diverged run, bad data)."""
