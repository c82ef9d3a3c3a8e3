"""The Study spec: what a study file declares, and what gives its results their meaning.

A study file builds a :class:`Study` at import time and runs nothing else;
:mod:`mixsearch.studyfile` imports the file and checks every field. Any problem surfaces
as a :class:`StudyError` naming the offending field.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Mapping, Sequence

from mixsearch.identity import study_definition

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# The general-loss tolerance of continual pre-training: the CMR laws' default too.
DEFAULT_TOLERANCE = 0.05


class StudyError(ValueError):
    """A study spec that cannot be run.

    Attributes:
        field: Dotted path of the offending field (``"budget.max_trials"``).
        source: The study file it came from, when known.
    """

    def __init__(self, field: str, message: str, source: str | None = None) -> None:
        self.field = field
        self.message = message
        self.source = source
        super().__init__(self.line())

    def line(self) -> str:
        """One line naming the file (when known), the field and the problem."""
        where = f"{self.source}: " if self.source else ""
        return f"{where}{self.field}: {self.message}"


@dataclass(frozen=True)
class Domain:
    """One data domain.

    Attributes:
        name: Identifier used in weights, columns (``w_<name>``) and reports.
        source: Where the text lives: ``"demo:<name>"`` for a built-in demo
            domain, or a folder / glob of ``.txt``, ``.jsonl`` or ``.parquet`` files.
            ``None`` for table oracles, where no text is needed.
    """

    name: str
    source: str | None = None


@dataclass(frozen=True)
class Rung:
    """One fidelity: a proxy scale a trial can be run at (or the target scale).

    Attributes:
        name: Label (``"1M"``, ``"s-200k"``); unique within a ladder.
        n_params: Proxy model size (non-embedding parameter count key in the
            size ladder). ``None`` for table rungs that only carry a cost.
        tokens: Training tokens D.
        cost: Explicit cost of one run at this rung; defaults to ``6 * N * D`` FLOPs.
    """

    name: str
    n_params: int | None = None
    tokens: int | None = None
    cost: float | None = None

    @property
    def flops(self) -> float:
        """Training FLOPs, ``6 * N * D`` (NaN when N or D is unknown)."""
        if self.n_params is None or self.tokens is None:
            return math.nan
        return 6.0 * self.n_params * self.tokens

    @property
    def run_cost(self) -> float:
        """The cost one trial at this rung charges to the budget."""
        return float(self.cost) if self.cost is not None else self.flops


@dataclass(frozen=True)
class FidelityLadder:
    """The rungs trials can run at, plus the target scale the answer is for.

    Attributes:
        rungs: Runnable fidelities, cheapest first by convention.
        target: The scale the recommendation is for. It may be one of ``rungs``
            (then it can be observed directly) or a larger scale that is only
            extrapolated to.
    """

    rungs: tuple[Rung, ...]
    target: Rung

    def __post_init__(self) -> None:
        object.__setattr__(self, "rungs", tuple(self.rungs))

    def rung(self, name: str) -> Rung:
        """The rung (or target) called ``name``."""
        for r in (*self.rungs, self.target):
            if r.name == name:
                return r
        raise KeyError(f"no rung named {name!r}")

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.rungs]


@dataclass(frozen=True)
class SearchSpace:
    """A simplex over domain weights with optional bounds and fixed weights.

    Attributes:
        domains: Domain names, in the order weights are given everywhere.
        lower: Per-domain lower bounds (missing names: 0).
        upper: Per-domain upper bounds (missing names: 1).
        fixed: Per-domain weights held fixed (lower = upper = value).
    """

    domains: tuple[str, ...]
    lower: Mapping[str, float] = field(default_factory=dict)
    upper: Mapping[str, float] = field(default_factory=dict)
    fixed: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "domains", tuple(self.domains))

    @property
    def dim(self) -> int:
        return len(self.domains)

    def bounds(self) -> tuple[list[float], list[float]]:
        """Lower and upper bound vectors, fixed weights folded in.

        Returns:
            ``(lo, hi)``, each a list of length K = ``dim``.
        """
        lo = [float(self.fixed.get(d, self.lower.get(d, 0.0))) for d in self.domains]
        hi = [float(self.fixed.get(d, self.upper.get(d, 1.0))) for d in self.domains]
        return lo, hi

    def contains(self, weights: Sequence[float], tol: float = 1e-6) -> bool:
        """Whether ``weights`` lie on the simplex within the bounds."""
        lo, hi = self.bounds()
        if len(weights) != self.dim or abs(sum(weights) - 1.0) > tol:
            return False
        return all(l - tol <= w <= h + tol for w, l, h in zip(weights, lo, hi))


@dataclass(frozen=True)
class Objective:
    """What is optimised: a weighted mean of per-domain losses, or one named metric.

    Attributes:
        domain_weights: Weight of each domain's validation loss; ``None`` means the
            plain average over all domains the evaluator reports.
        direction: ``"minimize"`` (losses) or ``"maximize"`` (accuracies, rewards).
        metric: Name of a metric the evaluator reports (``"accuracy"``, ``"reward"``)
            to optimise instead of the losses; ``None`` uses the losses.

    Proposers and the Surrogate work in one orientation, smaller is better:
    :meth:`to_minimise` and :meth:`from_minimise` are the only places that flip a sign.
    """

    domain_weights: Mapping[str, float] | None = None
    direction: str = "minimize"
    metric: str | None = None

    def value(self, domain_losses: Mapping[str, float], metrics: Mapping[str, Any] | None = None) -> float:
        """The objective from per-domain losses (and metrics); NaN if what it needs is missing."""
        if self.metric is not None:
            v = (metrics or {}).get(self.metric)
            return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan
        weights = self.domain_weights or {d: 1.0 for d in domain_losses}
        total = sum(weights.values())
        if not weights or total <= 0:
            return math.nan
        try:
            return float(sum(w * domain_losses[d] for d, w in weights.items()) / total)
        except KeyError:
            return math.nan

    @property
    def sign(self) -> float:
        """``+1`` when minimising, ``-1`` when maximising: the factor to the 'smaller is better' orientation."""
        return 1.0 if self.direction == "minimize" else -1.0

    def to_minimise(self, value: float) -> float:
        """The value in the 'smaller is better' orientation used by proposers."""
        return self.sign * value

    def from_minimise(self, value: float) -> float:
        """Back from the 'smaller is better' orientation to the study's own."""
        return self.sign * value

    @property
    def label(self) -> str:
        """What the objective is, in words (for reports and the CLI)."""
        if self.metric is not None:
            return f"{self.metric} ({'higher' if self.direction == 'maximize' else 'lower'} is better)"
        if self.domain_weights:
            return "weighted mean validation loss"
        return "mean validation loss"


@dataclass(frozen=True)
class Budget:
    """When to stop. Any limit reached ends the study; at least one must be set.

    Attributes:
        max_trials: Number of trials (done or failed).
        max_cost: Total cost in the ladder's cost unit (FLOPs unless rungs set ``cost``).
        max_seconds: Wall-clock seconds of trial time.
    """

    max_trials: int | None = None
    max_cost: float | None = None
    max_seconds: float | None = None


@dataclass(frozen=True)
class ProposerSpec:
    """Which proposer to use and how.

    Attributes:
        name: A built-in name (``"random"``, ``"mfbo"``, ``"regmix"`` …) or an import
            path ``"package.module:Class"``.
        batch_size: Candidates proposed per ask (q).
        options: Keyword arguments for the proposer's constructor.
    """

    name: str = "random"
    batch_size: int = 1
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EvaluatorSpec:
    """How a candidate becomes results.

    Attributes:
        kind: A built-in world (``"proxy"`` trains small GPTs, ``"table"`` replays a run
            table, ``"synthetic"`` observes a known law, ``"command"`` runs your own
            training command) or an import path ``"package.module:Class"`` (see
            :mod:`mixsearch.evaluate`).
        options: Keyword arguments for the evaluator (``device``, ``seq_len``,
            ``batch_size`` for proxies, ``path`` for tables, ``world`` for synthetic …).
    """

    kind: str = "proxy"
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ContinualPretraining:
    """A continual pre-training study: continue a base model on a new domain mixed with replay.

    Each trial continues the base model (a ProxyModel trained on the general domains,
    or ``base_checkpoint``) for T tokens of the mixture ``(1 - R) * base_mixture + R *
    e_new``: a fraction R of the new domain, the rest replayed general data. A trial's
    candidate is that mixture over the study's domains (R is its weight on
    ``new_domain``); its rung carries the base model's size N and the continued tokens T.
    The answer is the critical mixture ratio CMR(T) of Gu et al. (2024) at the target's T
    and N: the largest R whose general loss stays within ``tolerance`` of the base model's.

    Attributes:
        new_domain: The domain the model is continued on (a study domain); the others are general.
        tolerance: ε: the general loss may rise to ``L0 * (1 + ε)`` (``relative``) or ``L0 + ε``.
        relative: Whether ε is relative to the base model's general loss L0.
        base_mixture: Weights of the general domains in the base model's training data and in
            the replay (normalised); ``None`` is uniform over them. The general loss is the
            validation loss averaged with these weights.
        base_tokens: Tokens the base model is trained on (the same at every size).
        base_tokens_per_param: Or tokens per parameter: ``base_tokens_per_param * N`` at each size.
        base_checkpoint: A ProxyModel checkpoint file (see :mod:`mixsearch.proxy.continual`)
            to continue instead of training a base model; its size must be every rung's.
    """

    kind: ClassVar[str] = "continual"
    new_domain: str
    tolerance: float = DEFAULT_TOLERANCE
    relative: bool = True
    base_mixture: Mapping[str, float] | None = None
    base_tokens: int | None = None
    base_tokens_per_param: float | None = None
    base_checkpoint: str | None = None

    def general_domains(self, domains: Sequence[str]) -> list[str]:
        """The study's domains other than the new one, in study order."""
        return [d for d in domains if d != self.new_domain]

    def base_weights(self, domains: Sequence[str]) -> tuple[float, ...]:
        """The base (replay) mixture over ``domains`` ``[K]``: 0 on the new domain, sums to 1."""
        general = self.general_domains(domains)
        raw = {d: float((self.base_mixture or {}).get(d, 0.0)) if self.base_mixture else 1.0 for d in general}
        total = sum(raw.values())
        return tuple(raw.get(d, 0.0) / total for d in domains)

    def mixture(self, ratio: float, domains: Sequence[str]) -> tuple[float, ...]:
        """The continued-training mixture ``(1 - R) * base + R * e_new`` over ``domains`` ``[K]``."""
        base = self.base_weights(domains)
        return tuple((1.0 - ratio) * b + (ratio if d == self.new_domain else 0.0) for d, b in zip(domains, base))

    def ratio(self, weights: Sequence[float], domains: Sequence[str]) -> float:
        """R: a mixture's weight on the new domain."""
        return float(weights[list(domains).index(self.new_domain)])

    def general_loss(self, losses: Mapping[str, float], domains: Sequence[str]) -> float:
        """The general validation loss: the general domains' losses averaged with the base mixture's weights."""
        return float(sum(w * float(losses[d]) for d, w in zip(domains, self.base_weights(domains)) if w > 0))

    def limit(self, loss_general_0: float) -> float:
        """How far the general loss may rise above the base model's: ``ε * L0``, or ``ε`` when not relative."""
        return self.tolerance * loss_general_0 if self.relative else self.tolerance

    def base_tokens_for(self, n_params: int) -> int:
        """Tokens the base model of size ``n_params`` is trained on."""
        if self.base_tokens is not None:
            return int(self.base_tokens)
        if self.base_tokens_per_param is not None:
            return int(round(float(self.base_tokens_per_param) * n_params))
        raise ValueError("schedule.base_tokens: set base_tokens or base_tokens_per_param (or base_checkpoint)")

    def identity(self, domains: Sequence[str]) -> dict[str, Any]:
        """What about the schedule fixes a trial's result (part of trial ids and the study's
        definition). The tolerance only shapes the answer, so it may change between runs."""
        return {
            "kind": self.kind,
            "new_domain": self.new_domain,
            "base_mixture": [round(w, 9) for w in self.base_weights(domains)],
            "base_tokens": self.base_tokens,
            "base_tokens_per_param": self.base_tokens_per_param,
            "base_checkpoint": self.base_checkpoint,
        }

    def observation(self, weights: Sequence[float], losses: Mapping[str, float], metrics: Mapping[str, Any], domains: Sequence[str]) -> dict[str, float] | None:
        """One trial as the CMR laws read it, or None when its losses or base losses are missing.

        Returns:
            ``{"R", "loss_general", "loss_domain", "loss_general_0", "loss_domain_0"}``: the
            trial's ratio, its general and new-domain losses, and its base model's.
        """
        base = metrics.get("base_losses")
        try:
            out = {
                "R": self.ratio(weights, domains),
                "loss_general": self.general_loss(losses, domains),
                "loss_domain": float(losses[self.new_domain]),
                "loss_general_0": self.general_loss(base, domains),  # type: ignore[arg-type]
                "loss_domain_0": float(base[self.new_domain]),  # type: ignore[index]
            }
        except (KeyError, TypeError, ValueError):
            return None
        return out if all(math.isfinite(v) for v in out.values()) else None


@dataclass(frozen=True)
class TwoPhase:
    """A two-phase pre-training schedule as the search space: a phase-1 mixture for the first
    ``switch`` fraction of each run's tokens, then a phase-2 mixture.

    A trial's candidate carries both mixtures and the switch
    (:class:`mixsearch.candidate.Phases`); its ``weights`` are the token-weighted overall mixture.

    Attributes:
        min_switch: Smallest switch point searched (fraction of the tokens in phase 1), in (0, 1).
        max_switch: Largest switch point searched, in (min_switch, 1).
    """

    kind: ClassVar[str] = "two-phase"
    min_switch: float = 0.1
    max_switch: float = 0.9

    def identity(self, domains: Sequence[str]) -> dict[str, Any]:
        """The search space the schedule spans (part of the study's definition)."""
        return {"kind": self.kind, "min_switch": float(self.min_switch), "max_switch": float(self.max_switch)}


Schedule = ContinualPretraining | TwoPhase


@dataclass(frozen=True)
class Study:
    """Everything a study run needs, declared in a study file.

    Attributes:
        name: Study name; names ``runs/<name>/`` and ``fits/<name>.json``.
        domains: The data domains.
        ladder: Fidelity ladder and target scale.
        budget: Stopping rule.
        space: Search space; defaults to the full simplex over ``domains``.
        objective: What to optimise; defaults to the mean validation loss.
        proposer: Proposer spec.
        evaluator: Evaluator spec.
        seed: Master seed; the same study with the same seed proposes the same trials.
        storage: SQLAlchemy URL of the ledger; default ``sqlite:///runs/<name>/ledger.sqlite``.
        max_attempts: Attempts per trial before it is left failed.
        schedule: ``None`` for a mixture study; :class:`ContinualPretraining` to search the
            replay ratio of continued training; :class:`TwoPhase` to search two-phase schedules.
    """

    name: str
    domains: tuple[Domain, ...]
    ladder: FidelityLadder
    budget: Budget
    space: SearchSpace | None = None
    objective: Objective = field(default_factory=Objective)
    proposer: ProposerSpec = field(default_factory=ProposerSpec)
    evaluator: EvaluatorSpec = field(default_factory=EvaluatorSpec)
    seed: int = 0
    storage: str | None = None
    max_attempts: int = 3
    schedule: Schedule | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "domains", tuple(self.domains))
        if self.space is None and all(isinstance(d, Domain) for d in self.domains):
            object.__setattr__(self, "space", SearchSpace(tuple(d.name for d in self.domains)))

    @property
    def domain_names(self) -> list[str]:
        return [d.name for d in self.domains]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description of the study (used in the ledger and exports).

        A schedule is written with its ``kind`` and, for continual pre-training, its
        ``identity`` (the resolved base mixture), which :func:`study_definition` reads.
        """
        d = json.loads(json.dumps(asdict(self), default=_jsonable))
        if self.schedule is not None:
            names = [x.name for x in self.domains if isinstance(x, Domain)]
            d["schedule"] = {"kind": self.schedule.kind, **d["schedule"], "identity": json.loads(json.dumps(self.schedule.identity(names)))}
        return d

    def config_hash(self) -> str:
        """Hash of what determines a trial's result, excluding the budget and proposer.

        Part of every trial id (a stored interface): unchanged since mixsearch 0.1.0.
        """
        d = self.to_dict()
        keep = {k: d[k] for k in ("domains", "ladder", "objective", "evaluator")}
        return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]

    def definition(self, snapshot: str) -> dict[str, Any]:
        """What gives the study's stored results their meaning (see :func:`study_definition`)."""
        return study_definition(self.to_dict(), snapshot)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    return str(obj)
