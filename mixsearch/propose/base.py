"""The Proposer interface and the history proposers read.

Proposers keep no state of their own: every ``propose`` call rebuilds what it needs
from the :class:`ProposalContext` (observed trials, pending trials, seed). Crashes,
restarts and several orchestrators are then safe by construction.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from mixsearch.candidate import Candidate
from mixsearch.study import FidelityLadder, ProposerSpec, SearchSpace


@dataclass(frozen=True)
class History:
    """Finished and pending trials, as arrays.

    Attributes:
        weights: ``[n, K]`` mixtures of finished (done, finite) trials.
        rungs: ``[n]`` rung names of those trials.
        objective: ``[n]`` objective values, oriented so smaller is better.
        pending_weights: ``[m, K]`` mixtures of pending or running trials.
        pending_rungs: ``[m]`` their rung names.
        costs: ``[n]`` cost charged by each finished trial.
        failed_weights: ``[f, K]`` mixtures of failed trials (never fitted on, but a
            proposer should not propose them again: the ledger would find, not rerun, them).
        failed_rungs: ``[f]`` their rung names.
    """

    weights: np.ndarray
    rungs: tuple[str, ...]
    objective: np.ndarray
    pending_weights: np.ndarray
    pending_rungs: tuple[str, ...] = ()
    costs: np.ndarray | None = None
    failed_weights: np.ndarray | None = None
    failed_rungs: tuple[str, ...] = ()

    @staticmethod
    def empty(dim: int) -> "History":
        """A history with no trials over ``dim`` domains."""
        return History(np.zeros((0, dim)), (), np.zeros(0), np.zeros((0, dim)), ())

    @property
    def n(self) -> int:
        return int(self.weights.shape[0])

    def at_rung(self, rung: str) -> tuple[np.ndarray, np.ndarray]:
        """Mixtures ``[n_r, K]`` and objectives ``[n_r]`` observed at one rung."""
        mask = np.array([r == rung for r in self.rungs], dtype=bool)
        return self.weights[mask], self.objective[mask]


@dataclass(frozen=True)
class Pool:
    """A finite set of (mixture, rung) pairs a proposer must choose from (table oracles).

    Attributes:
        weights: ``[P, K]`` mixtures.
        rungs: ``[P]`` rung names.
    """

    weights: np.ndarray
    rungs: tuple[str, ...]


@dataclass(frozen=True)
class ProposalContext:
    """Everything a proposer may read to propose.

    Attributes:
        space: The search space (domains, bounds).
        ladder: Fidelity rungs and the target scale.
        history: Observed and pending trials.
        seed: Seed for this ask; the orchestrator derives it from the study seed and
            the number of trials already in the ledger, so a resumed study proposes
            what the uninterrupted one would have.
        pool: When set, candidates must come from it (table oracles).
        trial_seed: Training seed to give new candidates.
    """

    space: SearchSpace
    ladder: FidelityLadder
    history: History
    seed: int
    pool: Pool | None = None
    trial_seed: int = 0

    def rng(self) -> np.random.Generator:
        """A generator seeded for this ask."""
        return np.random.default_rng(self.seed)

    def rung_costs(self) -> dict[str, float]:
        """Cost of one run at each runnable rung."""
        return {r.name: r.run_cost for r in self.ladder.rungs}


@dataclass(frozen=True)
class Recommendation:
    """A proposer's answer: the mixture it believes best at the target scale.

    Attributes:
        weights: ``[K]`` the recommended mixture.
        predicted: Predicted objective at the target (smaller is better), if the
            proposer has a model; else the observed value it is based on.
        std: Predictive standard deviation, when known.
        rung: The rung the prediction is for.
    """

    weights: tuple[float, ...]
    predicted: float | None = None
    std: float | None = None
    rung: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Proposer(Protocol):
    """Proposes candidates from a context. Stateless between calls."""

    def propose(self, ctx: ProposalContext, q: int) -> list[Candidate]:
        """Return ``q`` candidates (fewer only if a pool is exhausted)."""
        ...

    def recommend(self, ctx: ProposalContext) -> Recommendation | None:
        """The mixture currently believed best at the target (None with no data)."""
        ...


def best_observed(ctx: ProposalContext) -> Recommendation | None:
    """Recommend the best observed mixture at the highest rung that has observations.

    The default recommendation for proposers without a model of the target.
    """
    h = ctx.history
    if h.n == 0:
        return None
    names = [r.name for r in ctx.ladder.rungs] + [ctx.ladder.target.name]
    observed = {r for r in h.rungs}
    # Prefer the target, then the costliest observed rung.
    order = sorted(observed, key=lambda r: (r == ctx.ladder.target.name, _rung_cost(ctx, r), names.index(r) if r in names else -1))
    top = order[-1]
    w, y = h.at_rung(top)
    i = int(np.argmin(y))
    return Recommendation(tuple(float(x) for x in w[i]), float(y[i]), None, top)


def _rung_cost(ctx: ProposalContext, name: str) -> float:
    try:
        return ctx.ladder.rung(name).run_cost
    except KeyError:
        return -np.inf


# Built-in proposer names map to import paths; no class registry to keep in sync.
BUILTIN = {
    "random": "mixsearch.propose.baselines:RandomDirichlet",
    "uniform": "mixsearch.propose.baselines:UniformStratified",
    "centre-random": "mixsearch.propose.baselines:CentreThenRandom",
    "mfbo": "mixsearch.propose.mfbo:MultiFidelityBO",
    "gp": "mixsearch.propose.mfbo:SingleFidelityGP",
    "regmix": "mixsearch.propose.regmix:RegMix",
    "optuna-tpe": "mixsearch.propose.external:OptunaTPE",
    "optuna-gp": "mixsearch.propose.external:OptunaGP",
    "ax": "mixsearch.propose.external:AxClient",
}


def make_proposer(spec: ProposerSpec | str, **overrides: Any) -> Proposer:
    """Build a proposer from a spec, a built-in name or a ``module:Class`` path."""
    if isinstance(spec, str):
        spec = ProposerSpec(name=spec)
    path = BUILTIN.get(spec.name, spec.name)
    if ":" not in path:
        raise ValueError(f"proposer.name: unknown proposer {spec.name!r}; known: {', '.join(BUILTIN)}")
    module_name, _, attr = path.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"proposer.name: cannot load {spec.name!r} ({path}): {type(exc).__name__}: {exc}") from exc
    options = {**dict(spec.options), **overrides}
    try:
        return cls(**options)
    except TypeError as exc:
        # An unknown or missing keyword: name the field, not the constructor's traceback.
        raise ValueError(f"proposer.options: {spec.name!r} does not take these options ({exc})") from exc
    except ValueError as exc:
        text = str(exc)
        raise ValueError(text if text.startswith("proposer") else f"proposer.options.{text}") from exc


def as_candidates(weights: Sequence[Sequence[float]], rungs: Sequence[str], seed: int) -> list[Candidate]:
    """Candidates from parallel lists of mixtures and rung names."""
    return [Candidate(tuple(float(x) for x in w), r, seed) for w, r in zip(weights, rungs)]
