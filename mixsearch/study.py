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
from typing import Any, Mapping, Sequence

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


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

    def __post_init__(self) -> None:
        object.__setattr__(self, "domains", tuple(self.domains))
        if self.space is None and all(isinstance(d, Domain) for d in self.domains):
            object.__setattr__(self, "space", SearchSpace(tuple(d.name for d in self.domains)))

    @property
    def domain_names(self) -> list[str]:
        return [d.name for d in self.domains]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description of the study (used in the ledger and exports)."""
        return json.loads(json.dumps(asdict(self), default=_jsonable))

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


def study_definition(study: Mapping[str, Any], snapshot: str | None) -> dict[str, Any]:
    """What gives a study's stored results their meaning, from its JSON form.

    The domains and their order, the search space, each rung's size and cost, the
    objective, the kind of world and the id of its data snapshot (a corpus hash, a run
    table's content hash). Two studies with the same definition may share a ledger; the
    budget, the proposer, the seed and the target scale may change between runs.

    Args:
        study: ``Study.to_dict()`` (or the JSON a ledger recorded).
        snapshot: The evaluator's snapshot id.
    """
    space = study.get("space") or {}
    ladder = study.get("ladder") or {}
    return {
        "domains": [d["name"] for d in study.get("domains", [])],
        "space": {k: dict(space.get(k) or {}) for k in ("lower", "upper", "fixed")},
        "rungs": {r["name"]: [r.get("n_params"), r.get("tokens"), r.get("cost")] for r in ladder.get("rungs", [])},
        "objective": dict(study.get("objective") or {}),
        "evaluator": (study.get("evaluator") or {}).get("kind"),
        "snapshot": snapshot,
    }


def definition_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """What differs between two study definitions, in words (empty when the new one may
    continue the old one's ledger). Rungs may be added; a rung that keeps its name must
    keep its size and cost."""
    out: list[str] = []
    od, nd = list(old.get("domains", [])), list(new.get("domains", []))
    if od != nd:
        added, removed = [d for d in nd if d not in od], [d for d in od if d not in nd]
        if added or removed:
            bits = ([f"added {', '.join(added)}"] if added else []) + ([f"removed {', '.join(removed)}"] if removed else [])
            out.append(f"domains {'; '.join(bits)}")
        else:
            out.append(f"domains reordered ({', '.join(od)} -> {', '.join(nd)})")
    if old.get("space") != new.get("space"):
        out.append("the search space (bounds or fixed weights) changed")
    for name, spec in (old.get("rungs") or {}).items():
        now = (new.get("rungs") or {}).get(name)
        if now is not None and list(now) != list(spec):
            out.append(f"rung {name!r} changed (N, D, cost: {spec} -> {list(now)})")
    if old.get("objective") != new.get("objective"):
        out.append(f"the objective changed ({old.get('objective')} -> {new.get('objective')})")
    if old.get("evaluator") != new.get("evaluator"):
        out.append(f"the world changed ({old.get('evaluator')} -> {new.get('evaluator')})")
    elif old.get("snapshot") is not None and old.get("snapshot") != new.get("snapshot"):
        out.append(f"the data changed (snapshot {old.get('snapshot')} -> {new.get('snapshot')}: an edited run table, corpus or training setting)")
    return out


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    return str(obj)
