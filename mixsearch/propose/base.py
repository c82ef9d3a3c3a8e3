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

from mixsearch.candidate import Candidate, Phases, Pool
from mixsearch.trial import DONE, FAILED, PENDING, RUNNING, Trial, finite
from mixsearch.study import FidelityLadder, Objective, ProposerSpec, Schedule, SearchSpace


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
        domain_losses: ``[n]`` per-domain losses of the finished trials (what a continual
            pre-training proposer reads its general and domain losses from).
        metrics: ``[n]`` their metrics (a continual pre-training trial's base-model losses).
        schedules: ``[n]`` their two-phase schedules (None for single-phase trials).
    """

    weights: np.ndarray
    rungs: tuple[str, ...]
    objective: np.ndarray
    pending_weights: np.ndarray
    pending_rungs: tuple[str, ...] = ()
    costs: np.ndarray | None = None
    failed_weights: np.ndarray | None = None
    failed_rungs: tuple[str, ...] = ()
    domain_losses: tuple[Any, ...] = ()
    metrics: tuple[Any, ...] = ()
    schedules: tuple[Phases | None, ...] = ()

    @staticmethod
    def empty(dim: int) -> "History":
        """A history with no trials over ``dim`` domains."""
        return History(np.zeros((0, dim)), (), np.zeros(0), np.zeros((0, dim)), ())

    @staticmethod
    def from_trials(trials: Sequence[Trial], dim: int, objective: Objective) -> "History":
        """The proposer's view of ledger trials.

        Done trials with a finite objective are observations (oriented smaller-is-better
        by :meth:`Objective.to_minimise`); pending and running trials are pending points;
        failed trials, and done ones without a finite objective, are remembered as failed.

        Args:
            trials: The ledger's trials.
            dim: K, the number of domains.
            objective: The study's objective (its direction).
        """
        done = [t for t in trials if t.state == DONE and finite(t.objective)]
        pend = [t for t in trials if t.state in (PENDING, RUNNING)]
        failed = [t for t in trials if t.state == FAILED or (t.state == DONE and not finite(t.objective))]

        def mixtures(ts: list[Trial]) -> np.ndarray:
            return np.array([t.candidate.weights for t in ts], dtype=float).reshape(-1, dim)

        return History(
            weights=mixtures(done),
            rungs=tuple(t.candidate.rung for t in done),
            objective=np.array([objective.to_minimise(float(t.objective)) for t in done], dtype=float),  # type: ignore[arg-type]
            pending_weights=mixtures(pend),
            pending_rungs=tuple(t.candidate.rung for t in pend),
            costs=np.array([float(t.cost or 0.0) for t in done], dtype=float),
            failed_weights=mixtures(failed),
            failed_rungs=tuple(t.candidate.rung for t in failed),
            domain_losses=tuple(dict(t.domain_losses) for t in done),
            metrics=tuple(dict(t.metrics) for t in done),
            schedules=tuple(t.candidate.schedule for t in done),
        )

    @property
    def n(self) -> int:
        return int(self.weights.shape[0])

    def at_rung(self, rung: str) -> tuple[np.ndarray, np.ndarray]:
        """Mixtures ``[n_r, K]`` and objectives ``[n_r]`` observed at one rung."""
        mask = np.array([r == rung for r in self.rungs], dtype=bool)
        return self.weights[mask], self.objective[mask]


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
        schedule: The study's schedule (None for a mixture study).
        domains: The study's domain names, in weight order.
    """

    space: SearchSpace
    ladder: FidelityLadder
    history: History
    seed: int
    pool: Pool | None = None
    trial_seed: int = 0
    schedule: Schedule | None = None
    domains: tuple[str, ...] = ()

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
        extra: Proposer-specific details.
        basis: What ``predicted`` rests on: ``"observed"`` (a trial's result),
            ``"surrogate"`` (a GP posterior), ``"regressor"`` (a fitted regression), ``"law"``,
            or ``"proposer"`` when the proposer does not say.
    """

    weights: tuple[float, ...]
    predicted: float | None = None
    std: float | None = None
    rung: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    basis: str = "proposer"


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
    return Recommendation(tuple(float(x) for x in w[i]), float(y[i]), None, top, basis="observed")


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
    "gp": "mixsearch.propose.gp:SingleFidelityBO",
    "regmix": "mixsearch.propose.regmix:RegMix",
    "optuna-tpe": "mixsearch.propose.external:OptunaTPE",
    "optuna-gp": "mixsearch.propose.external:OptunaGP",
    "ax": "mixsearch.propose.external:AxClient",
    "cmr-grid": "mixsearch.propose.cpt:CMRGrid",
    "cmr-search": "mixsearch.propose.cpt:CMRSearch",
}


def schedule_kind(schedule: Schedule | None) -> str | None:
    """``None`` for a mixture study, else the schedule's kind (``"continual"``, ``"two-phase"``)."""
    return None if schedule is None else schedule.kind


def check_schedule(proposer: Any, name: str, schedule: Schedule | None) -> None:
    """Refuse a proposer that does not search what the study's schedule asks for.

    A proposer names the kinds it handles in ``schedules`` (default ``(None,)``: mixture
    studies only). A continual pre-training study needs one that proposes ratios on the
    replay line; a two-phase study one that proposes both phases and the switch.

    Raises:
        ValueError: one line naming ``proposer.name``.
    """
    kinds = tuple(getattr(proposer, "schedules", (None,)))
    kind = schedule_kind(schedule)
    if kind in kinds:
        return
    fits = sorted(n for n, path in BUILTIN.items() if kind in _builtin_schedules(path))
    what = {None: "a mixture study", "continual": "a continual pre-training study", "two-phase": "a two-phase study"}[kind]
    handles = ", ".join("mixture" if k is None else k for k in kinds)
    raise ValueError(f"proposer.name: {name!r} searches {handles} studies, not {what}; use {', '.join(fits) or 'a proposer whose schedules include ' + repr(kind)}")


def _builtin_schedules(path: str) -> tuple[str | None, ...]:
    module_name, _, attr = path.partition(":")
    try:
        return tuple(getattr(getattr(importlib.import_module(module_name), attr), "schedules", (None,)))
    except Exception:  # noqa: BLE001 - an optional peer that does not import handles nothing here
        return ()


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
    except Exception as exc:  # noqa: BLE001 - a user's module may fail to import in any way
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ValueError(f"proposer.name: cannot load {spec.name!r} ({path}): {type(exc).__name__}: {text}") from exc
    options = {**dict(spec.options), **overrides}
    try:
        return cls(**options)
    except TypeError as exc:
        # An unknown or missing keyword: name the field, not the constructor's traceback.
        raise ValueError(f"proposer.options: {spec.name!r} does not take these options ({exc})") from exc
    except ValueError as exc:
        text = str(exc)
        raise ValueError(text if text.startswith("proposer") else f"proposer.options.{text}") from exc


def refuse_unused_options(proposer: Any, names: Sequence[str], pool: bool) -> None:
    """Raise a ValueError naming the first of ``names`` set to other than its default when
    the world is a finite pool, where that option does nothing.

    A setting that silently does nothing is a setting a user believes in: an option is
    either used or refused.

    Args:
        proposer: A dataclass proposer.
        names: Its options that only act on a continuous world (sampling, optimising).
        pool: Whether candidates must come from a finite pool.
    """
    if not pool:
        return
    import dataclasses

    defaults = {f.name: f.default for f in dataclasses.fields(proposer)}
    for name in names:
        if getattr(proposer, name) != defaults[name]:
            raise ValueError(f"{name}: does nothing when the world offers a finite pool of mixtures (a table): candidates are picked from the pool; remove the option")


def as_candidates(weights: Sequence[Sequence[float]], rungs: Sequence[str], seed: int) -> list[Candidate]:
    """Candidates from parallel lists of mixtures and rung names."""
    return [Candidate(tuple(float(x) for x in w), r, seed) for w, r in zip(weights, rungs)]


def require_positive(options: object, *names: str) -> None:
    """Raise a ValueError naming the first of ``names`` whose value on ``options`` is below 1."""
    for name in names:
        if int(getattr(options, name)) < 1:
            raise ValueError(f"{name}: must be >= 1, got {getattr(options, name)!r}")
