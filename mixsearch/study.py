"""The Study spec: what a study file declares, and its validation.

A study file builds a :class:`Study` at import time and runs nothing else. The CLI
imports the file, finds the single ``Study`` object in it and validates it; any
problem surfaces as a :class:`StudyError` naming the offending field.
"""

from __future__ import annotations

import glob
import hashlib
import importlib.util
import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


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
    """What is optimised: a weighted sum of per-domain losses.

    Attributes:
        domain_weights: Weight of each domain's validation loss; ``None`` means the
            plain average over all domains.
        direction: ``"minimize"`` (losses) or ``"maximize"`` (accuracies).
    """

    domain_weights: Mapping[str, float] | None = None
    direction: str = "minimize"

    def value(self, domain_losses: Mapping[str, float]) -> float:
        """Objective value from per-domain losses (NaN if any needed loss is missing)."""
        weights = self.domain_weights or {d: 1.0 for d in domain_losses}
        total = sum(weights.values())
        try:
            return float(sum(w * domain_losses[d] for d, w in weights.items()) / total)
        except KeyError:
            return math.nan

    def to_minimise(self, value: float) -> float:
        """The value in the 'smaller is better' orientation used by proposers."""
        return value if self.direction == "minimize" else -value


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
        kind: ``"proxy"`` (train a small GPT) or ``"table"`` (replay a run table).
        options: Keyword arguments for the evaluator (``device``, ``seq_len``,
            ``batch_size``, ``path`` for tables …).
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
        """Hash of what determines a trial's result, excluding the budget and proposer."""
        d = self.to_dict()
        keep = {k: d[k] for k in ("domains", "ladder", "objective", "evaluator")}
        return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    return str(obj)


BUILTIN_PROPOSERS = (
    "random",
    "uniform",
    "centre-random",
    "mfbo",
    "gp",
    "regmix",
    "optuna-tpe",
    "optuna-gp",
    "ax",
)


def validate(study: Any, source: str | None = None) -> Study:
    """Check a study spec field by field.

    Args:
        study: The object a study file built.
        source: The study file, named in errors.

    Returns:
        The study, unchanged.

    Raises:
        StudyError: naming the first bad field.
    """

    def fail(fld: str, msg: str) -> None:
        raise StudyError(fld, msg, source)

    if not isinstance(study, Study):
        fail("study", f"expected a mixsearch.Study, got {type(study).__name__}")
    if not isinstance(study.name, str) or not _NAME_RE.match(study.name):
        fail("name", f"must be letters, digits, '_', '-' or '.', got {study.name!r}")
    if len(study.domains) < 2:
        fail("domains", f"need at least 2 domains, got {len(study.domains)}")
    names: list[str] = []
    for i, d in enumerate(study.domains):
        if not isinstance(d, Domain):
            fail(f"domains[{i}]", f"expected a Domain, got {type(d).__name__}")
        if not isinstance(d.name, str) or not _NAME_RE.match(d.name):
            fail(f"domains[{i}].name", f"invalid domain name {d.name!r}")
        if d.name in names:
            fail(f"domains[{i}].name", f"duplicate domain {d.name!r}")
        names.append(d.name)
        if study.evaluator.kind == "proxy":
            _validate_source(d, i, fail)
    _validate_space(study.space, names, fail)
    _validate_ladder(study.ladder, study.evaluator.kind, fail)
    _validate_objective(study.objective, names, fail)
    _validate_budget(study.budget, fail)
    _validate_proposer(study.proposer, fail)
    if study.evaluator.kind not in ("proxy", "table"):
        fail("evaluator.kind", f"must be 'proxy' or 'table', got {study.evaluator.kind!r}")
    if study.evaluator.kind == "table":
        path = study.evaluator.options.get("path")
        if not path or not Path(path).is_file():
            fail("evaluator.options.path", f"table file not found: {path!r}")
    if not isinstance(study.seed, int) or isinstance(study.seed, bool) or study.seed < 0:
        fail("seed", f"must be a non-negative integer, got {study.seed!r}")
    if not isinstance(study.max_attempts, int) or study.max_attempts < 1:
        fail("max_attempts", f"must be an integer >= 1, got {study.max_attempts!r}")
    if study.storage is not None and "://" not in str(study.storage):
        fail("storage", f"must be an SQLAlchemy URL such as sqlite:///x.db, got {study.storage!r}")
    return study


def _validate_source(d: Domain, i: int, fail: Any) -> None:
    from mixsearch.proxy.sources import DEMO_DOMAINS  # local: keeps study import light

    src = d.source
    if src is None:
        fail(f"domains[{i}].source", f"domain {d.name!r} has no source (a folder, glob or 'demo:<name>')")
    if src.startswith("demo:"):
        if src[5:] not in DEMO_DOMAINS:
            fail(f"domains[{i}].source", f"unknown demo domain {src[5:]!r}; known: {', '.join(DEMO_DOMAINS)}")
        return
    p = Path(src).expanduser()
    if p.is_dir() or p.is_file() or glob.glob(str(p), recursive=True):
        return
    fail(f"domains[{i}].source", f"no data found for domain {d.name!r} at {src!r}")


def _validate_space(space: SearchSpace | None, names: list[str], fail: Any) -> None:
    if not isinstance(space, SearchSpace):
        fail("space", f"expected a SearchSpace, got {type(space).__name__}")
    if list(space.domains) != names:
        fail("space.domains", f"must list the study's domains in order {names}, got {list(space.domains)}")
    for label, mapping in (("lower", space.lower), ("upper", space.upper), ("fixed", space.fixed)):
        for k, v in mapping.items():
            if k not in names:
                fail(f"space.{label}.{k}", f"unknown domain {k!r}")
            if not isinstance(v, (int, float)) or not 0.0 <= float(v) <= 1.0 or math.isnan(float(v)):
                fail(f"space.{label}.{k}", f"must be a number in [0, 1], got {v!r}")
    lo, hi = space.bounds()
    for name, l, h in zip(names, lo, hi):
        if l > h + 1e-12:
            fail(f"space.lower.{name}", f"lower bound {l} exceeds upper bound {h}")
    if sum(lo) > 1.0 + 1e-9:
        fail("space.lower", f"lower bounds sum to {sum(lo):.4g} > 1: the simplex is empty")
    if sum(hi) < 1.0 - 1e-9:
        fail("space.upper", f"upper bounds sum to {sum(hi):.4g} < 1: the simplex is empty")


def _validate_ladder(ladder: FidelityLadder, kind: str, fail: Any) -> None:
    if not isinstance(ladder, FidelityLadder):
        fail("ladder", f"expected a FidelityLadder, got {type(ladder).__name__}")
    if not ladder.rungs:
        fail("ladder.rungs", "need at least one rung")
    seen: set[str] = set()
    for i, r in enumerate((*ladder.rungs, ladder.target)):
        where = f"ladder.rungs[{i}]" if i < len(ladder.rungs) else "ladder.target"
        if not isinstance(r, Rung):
            fail(where, f"expected a Rung, got {type(r).__name__}")
        if r.name in seen and where != "ladder.target":
            fail(f"{where}.name", f"duplicate rung {r.name!r}")
        seen.add(r.name)
        for attr in ("n_params", "tokens"):
            v = getattr(r, attr)
            if v is not None and (not isinstance(v, int) or v <= 0):
                fail(f"{where}.{attr}", f"must be a positive integer, got {v!r}")
        if r.cost is not None and (not isinstance(r.cost, (int, float)) or not r.cost > 0):
            fail(f"{where}.cost", f"must be positive, got {r.cost!r}")
        if kind == "proxy" and where != "ladder.target" and (r.n_params is None or r.tokens is None):
            fail(where, "a proxy rung needs n_params and tokens")
        if not math.isfinite(r.run_cost):
            fail(where, "needs a cost, or n_params and tokens")


def _validate_objective(obj: Objective, names: list[str], fail: Any) -> None:
    if not isinstance(obj, Objective):
        fail("objective", f"expected an Objective, got {type(obj).__name__}")
    if obj.direction not in ("minimize", "maximize"):
        fail("objective.direction", f"must be 'minimize' or 'maximize', got {obj.direction!r}")
    if obj.domain_weights is not None:
        if not obj.domain_weights:
            fail("objective.domain_weights", "is empty")
        for k, v in obj.domain_weights.items():
            if k not in names:
                fail(f"objective.domain_weights.{k}", f"unknown domain {k!r}")
            if not isinstance(v, (int, float)) or v < 0 or math.isnan(v):
                fail(f"objective.domain_weights.{k}", f"must be >= 0, got {v!r}")
        if sum(obj.domain_weights.values()) <= 0:
            fail("objective.domain_weights", "weights sum to 0")


def _validate_budget(b: Budget, fail: Any) -> None:
    if not isinstance(b, Budget):
        fail("budget", f"expected a Budget, got {type(b).__name__}")
    if b.max_trials is None and b.max_cost is None and b.max_seconds is None:
        fail("budget", "set at least one of max_trials, max_cost, max_seconds")
    if b.max_trials is not None and (not isinstance(b.max_trials, int) or b.max_trials <= 0):
        fail("budget.max_trials", f"must be a positive integer, got {b.max_trials!r}")
    for attr in ("max_cost", "max_seconds"):
        v = getattr(b, attr)
        if v is not None and (not isinstance(v, (int, float)) or not v > 0):
            fail(f"budget.{attr}", f"must be positive, got {v!r}")


def _validate_proposer(p: ProposerSpec, fail: Any) -> None:
    if not isinstance(p, ProposerSpec):
        fail("proposer", f"expected a ProposerSpec, got {type(p).__name__}")
    if p.name not in BUILTIN_PROPOSERS and ":" not in p.name:
        fail("proposer.name", f"unknown proposer {p.name!r}; known: {', '.join(BUILTIN_PROPOSERS)} or 'module:Class'")
    if not isinstance(p.batch_size, int) or p.batch_size < 1:
        fail("proposer.batch_size", f"must be an integer >= 1, got {p.batch_size!r}")


def load_study(path: str | Path) -> Study:
    """Import a study file and return its validated Study.

    Args:
        path: A Python file that defines exactly one ``Study`` at module level.

    Raises:
        StudyError: the file is missing, fails to import, defines no or several
            studies, or the study is invalid.
    """
    p = Path(path)
    src = str(path)
    if not p.is_file():
        raise StudyError("file", "study file not found", src)
    spec = importlib.util.spec_from_file_location(f"mixsearch_study_{p.stem}", p)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - any import error is the file's fault
        raise StudyError("file", f"failed to import: {type(exc).__name__}: {exc}", src) from exc
    studies = [v for v in vars(module).values() if isinstance(v, Study)]
    if not studies:
        raise StudyError("study", "the file defines no mixsearch.Study object", src)
    if len(studies) > 1:
        raise StudyError("study", f"the file defines {len(studies)} Study objects; keep one", src)
    return validate(studies[0], src)
