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


@dataclass(frozen=True)
class Candidate:
    """A point to evaluate: a mixture at a fidelity rung with a training seed.

    Attributes:
        weights: Domain weights in the study's domain order, on the simplex.
        rung: Name of the fidelity rung (model size N and tokens D live on the rung).
        seed: Training seed.
    """

    weights: tuple[float, ...]
    rung: str
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "weights", canonical_weights(self.weights))


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
    payload = {
        "weights": [f"{w:.{WEIGHT_DECIMALS}f}" for w in candidate.weights],
        "rung": candidate.rung,
        "seed": candidate.seed,
        "context": context,
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
