"""The Evaluator protocol, the registry of built-in worlds, and what plugged-in worlds share.

Every world a study can run in sits behind one protocol: ``proxy`` trains small GPTs,
``table`` replays published runs, ``synthetic`` is a known law observed with noise,
``command`` runs the user's own training command per trial, and ``package.module:Class``
is the user's own Python evaluator. :func:`make_evaluator` turns a study's
``EvaluatorSpec`` into one; every error it raises names the field (and the study file).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
from typing import TYPE_CHECKING, Any, Mapping, Protocol, runtime_checkable

from mixsearch.candidate import Candidate, EvaluationError, Pool, TrialResult
from mixsearch.study import Objective, Rung, StudyError

if TYPE_CHECKING:
    from mixsearch.study import Study


@runtime_checkable
class Evaluator(Protocol):
    """Turns a candidate into results. Must be picklable (executors ship it to workers)."""

    def prepare(self) -> None:
        """Do one-off set-up (build the corpus, read the table); idempotent."""
        ...

    def snapshot_id(self) -> str:
        """Id of what the results depend on besides the candidate (corpus hash, table hash)."""
        ...

    def evaluate(self, candidate: Candidate, rung: Rung) -> TrialResult:
        """Run one candidate at ``rung`` and return its results.

        Raises:
            mixsearch.candidate.EvaluationError: a failure worth recording (diverged run,
                a mixture the world does not offer, a command that exited non-zero).
        """
        ...

    def pool(self) -> Pool | None:
        """The finite (mixture, rung) pool candidates must come from, or None."""
        ...


# Built-in world kinds -> import paths: the one list of them (no class registry to keep in sync).
EVALUATORS: Mapping[str, str] = {
    "proxy": "mixsearch.evaluate.proxy:ProxyEvaluator",
    "table": "mixsearch.evaluate.table:TableEvaluator",
    "synthetic": "mixsearch.evaluate.synthetic:SyntheticEvaluator",
    "command": "mixsearch.evaluate.command:CommandEvaluator",
}


def make_evaluator(study: "Study", source: str | None = None) -> Evaluator:
    """Build the study's evaluator (cheap: heavy work waits for ``prepare``).

    Args:
        study: The validated study.
        source: The study file, named in errors.

    Raises:
        StudyError: an unknown kind, an import path that does not load, or options the
            evaluator refuses; the field and file are named.
    """
    kind = study.evaluator.kind
    path = EVALUATORS.get(kind, kind)
    if ":" not in path:
        raise StudyError("evaluator.kind", f"unknown evaluator {kind!r}; known: {', '.join(EVALUATORS)} or 'package.module:Class'", source)
    module_name, _, attr = path.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except Exception as exc:  # noqa: BLE001 - a user's module may fail to import in any way
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise StudyError("evaluator.kind", f"cannot load {kind!r}: {type(exc).__name__}: {text}", source) from None
    try:
        if kind in EVALUATORS:
            return cls.from_study(study)
        return PluginEvaluator.from_study(study, cls)
    except StudyError as exc:
        raise StudyError(exc.field, exc.message, exc.source or source) from None
    except (ValueError, TypeError) as exc:
        field, message = split_field(str(exc), "evaluator.options")
        raise StudyError(field, message, source) from None


def split_field(text: str, default: str) -> tuple[str, str]:
    """``"evaluator.options.x: bad"`` -> ``("evaluator.options.x", "bad")``; a message with no
    field prefix is filed under ``default``."""
    head, sep, tail = text.partition(": ")
    if sep and " " not in head and head and head[0].isalpha():
        return head, tail
    return default, text


def check_options(options: Mapping[str, Any], known: tuple[str, ...], what: str) -> None:
    """Raise a ValueError naming ``evaluator.options.<key>`` for the first unknown option."""
    for key in options:
        if key not in known:
            raise ValueError(f"evaluator.options.{key}: unknown option of the {what} evaluator; known: {', '.join(known)}")


RESERVED_KEYS = ("domain_losses", "metrics", "cost", "curve", "seconds")


def result_from_mapping(doc: Any, objective: Objective, rung: Rung, seconds: float, where: str) -> TrialResult:
    """A TrialResult from what a user's trainer reports (a metrics JSON or a returned dict).

    The document holds ``domain_losses`` (``{domain: loss}``), ``metrics`` (``{name: value}``,
    e.g. an accuracy or a reward), an optional ``cost`` (default: the rung's cost) and an
    optional ``curve`` (``[[tokens, loss], ...]``). Other top-level numbers count as metrics,
    so ``{"accuracy": 0.71}`` is enough. The objective is the study's :class:`Objective` of
    these: a named metric, or the weighted mean of the domain losses.

    Raises:
        EvaluationError: the document is not a JSON object, a value is not a number, or
            the objective cannot be computed from it (one line naming ``where``).
    """
    if not isinstance(doc, Mapping):
        raise EvaluationError(f"{where}: expected a JSON object of results, got {type(doc).__name__}")
    losses = _numbers(doc.get("domain_losses", {}), f"{where}: domain_losses")
    metrics = _numbers(doc.get("metrics", {}), f"{where}: metrics")
    for key, value in doc.items():
        if key not in RESERVED_KEYS and isinstance(value, (int, float)) and not isinstance(value, bool):
            metrics.setdefault(str(key), float(value))
    value = objective.value(losses, metrics)
    if not math.isfinite(value):
        wanted = f"metric {objective.metric!r}" if objective.metric else f"losses for {', '.join(objective.domain_weights or ['each domain'])}"
        raise EvaluationError(f"{where}: cannot compute the objective: need {wanted}, got domain_losses {sorted(losses)} and metrics {sorted(metrics)}")
    cost = doc.get("cost", rung.run_cost)
    if not isinstance(cost, (int, float)) or isinstance(cost, bool) or not math.isfinite(cost) or cost < 0:
        raise EvaluationError(f"{where}: cost must be a non-negative number, got {cost!r}")
    curve = doc.get("curve") or []
    try:
        curve = [(float(a), float(b)) for a, b in curve]
    except (TypeError, ValueError):
        raise EvaluationError(f"{where}: curve must be a list of [tokens, loss] pairs") from None
    return TrialResult(domain_losses=losses, objective=value, cost=float(cost), seconds=float(doc.get("seconds", seconds)), curve=curve, metrics=metrics)


def _numbers(mapping: Any, where: str) -> dict[str, float]:
    if not isinstance(mapping, Mapping):
        raise EvaluationError(f"{where}: expected an object of numbers, got {type(mapping).__name__}")
    out = {}
    for key, value in mapping.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise EvaluationError(f"{where}.{key}: expected a number, got {value!r}")
        out[str(key)] = float(value)
    return out


def options_digest(payload: Any) -> str:
    """A short stable hash of JSON-able settings (part of a snapshot id)."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


class PluginEvaluator:
    """A user's Python evaluator (``EvaluatorSpec("package.module:Class", {...})``), made whole.

    The class is built with ``Class.from_study(study)`` when it has one, else
    ``Class(**options)``. It must have ``evaluate(candidate, rung)``, returning a
    :class:`~mixsearch.candidate.TrialResult` or a mapping read by
    :func:`result_from_mapping`; ``prepare``, ``snapshot_id`` and ``pool`` are optional
    (defaults: nothing to prepare, a hash of the class path and options, no pool).

    Args:
        inner: The user's evaluator object.
        path: Its ``package.module:Class`` path.
        options: Its options (for the default snapshot id).
        objective: The study's objective, for mapping results.
    """

    def __init__(self, inner: Any, path: str, options: Mapping[str, Any], objective: Objective) -> None:
        if not callable(getattr(inner, "evaluate", None)):
            raise ValueError(f"evaluator.kind: {path} has no evaluate(candidate, rung) method")
        self.inner = inner
        self.path = path
        self.options = dict(options)
        self.objective = objective

    @classmethod
    def from_study(cls, study: "Study", user_cls: type) -> "PluginEvaluator":
        path = study.evaluator.kind
        from_study = getattr(user_cls, "from_study", None)
        try:
            inner = from_study(study) if callable(from_study) else user_cls(**dict(study.evaluator.options))
        except TypeError as exc:
            raise ValueError(f"evaluator.options: {path} does not take these options ({exc})") from None
        return cls(inner, path, study.evaluator.options, study.objective)

    def prepare(self) -> None:
        fn = getattr(self.inner, "prepare", None)
        if callable(fn):
            fn()

    def snapshot_id(self) -> str:
        fn = getattr(self.inner, "snapshot_id", None)
        if callable(fn):
            return str(fn())
        return f"plugin-{options_digest({'class': self.path, 'options': self.options})}"

    def pool(self) -> Pool | None:
        fn = getattr(self.inner, "pool", None)
        return fn() if callable(fn) else None

    def evaluate(self, candidate: Candidate, rung: Rung) -> TrialResult:
        import time

        start = time.perf_counter()
        out = self.inner.evaluate(candidate, rung)
        if isinstance(out, TrialResult):
            return out
        return result_from_mapping(out, self.objective, rung, time.perf_counter() - start, f"{self.path}.evaluate")
