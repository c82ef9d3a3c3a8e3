"""Reading a study file: import it, find its one Study, check every field.

A study file declares one :class:`~mixsearch.study.Study` and runs nothing on import.
:func:`load_study` imports it; :func:`validate` checks the spec field by field, types
first, then meaning. What a world or a proposer needs (data files, table columns,
options) is checked when it is built, before anything is written
(:func:`mixsearch.api.check_study`).
"""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path
from typing import Any, Mapping

from mixsearch.study import (
    NAME_RE,
    Budget,
    ContinualPretraining,
    Domain,
    EvaluatorSpec,
    FidelityLadder,
    Objective,
    ProposerSpec,
    Rung,
    SearchSpace,
    Study,
    StudyError,
    TwoPhase,
)


# Trial seeds are stored as database integers; PostgreSQL's INTEGER is 32-bit signed.
MAX_SEED = 2**31 - 1


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


def _kind(v: Any) -> str:
    """How a wrong value is described in an error: its type, and the value when short."""
    text = repr(v)
    return f"{type(v).__name__} {text}" if len(text) <= 40 else type(v).__name__


def validate(study: Any, source: str | None = None) -> Study:
    """Check a study spec field by field: types first, then meaning.

    Only the structure is checked here; what a world needs (data files, table
    columns, options) is checked when its evaluator is built
    (:func:`mixsearch.evaluate.make_evaluator`), and what a proposer needs when it is.

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
    if not isinstance(study.name, str) or not NAME_RE.match(study.name):
        fail("name", f"must be letters, digits, '_', '-' or '.', got {study.name!r}")
    if len(study.domains) < 2:
        fail("domains", f"need at least 2 domains, got {len(study.domains)}")
    names: list[str] = []
    for i, d in enumerate(study.domains):
        if not isinstance(d, Domain):
            fail(f"domains[{i}]", f"expected a Domain, got {_kind(d)}")
        if not isinstance(d.name, str) or not NAME_RE.match(d.name):
            fail(f"domains[{i}].name", f"invalid domain name {d.name!r}: use letters, digits, '_', '-' or '.'")
        if d.name in names:
            fail(f"domains[{i}].name", f"duplicate domain {d.name!r}")
        if d.source is not None and not isinstance(d.source, (str, os.PathLike)):
            fail(f"domains[{i}].source", f"must be a folder, file or glob (a string or path) or 'demo:<name>', got {_kind(d.source)}")
        names.append(d.name)
    _validate_space(study.space, names, fail)
    _validate_ladder(study.ladder, fail)
    _validate_objective(study.objective, names, fail)
    _validate_budget(study.budget, fail)
    _validate_proposer(study.proposer, fail)
    if not isinstance(study.evaluator, EvaluatorSpec):
        fail("evaluator", f"expected an EvaluatorSpec, got {_kind(study.evaluator)}")
    if not isinstance(study.evaluator.kind, str) or not study.evaluator.kind:
        fail("evaluator.kind", f"must be a world name or 'package.module:Class', got {_kind(study.evaluator.kind)}")
    if not isinstance(study.evaluator.options, Mapping):
        fail("evaluator.options", f"must be a mapping of option names to values, got {_kind(study.evaluator.options)}")
    if not _is_int(study.seed) or not 0 <= study.seed <= MAX_SEED:
        fail("seed", f"must be an integer in [0, {MAX_SEED}], got {study.seed!r}")
    if not _is_int(study.max_attempts) or study.max_attempts < 1:
        fail("max_attempts", f"must be an integer >= 1, got {study.max_attempts!r}")
    if study.storage is not None and (not isinstance(study.storage, str) or "://" not in study.storage):
        fail("storage", f"must be an SQLAlchemy URL such as sqlite:///x.db, got {_kind(study.storage)}")
    _validate_schedule(study.schedule, names, study.space, study.ladder, fail)
    return study


def _validate_schedule(schedule: Any, names: list[str], space: SearchSpace, ladder: FidelityLadder, fail: Any) -> None:
    """A schedule's fields: a continual pre-training study's new domain, tolerance and base model;
    a two-phase study's switch range."""
    if schedule is None:
        return
    if isinstance(schedule, TwoPhase):
        for attr in ("min_switch", "max_switch"):
            v = getattr(schedule, attr)
            if not _is_number(v) or not 0.0 < float(v) < 1.0:
                fail(f"schedule.{attr}", f"must be a fraction of the tokens in (0, 1), got {v!r}")
        if not schedule.min_switch < schedule.max_switch:
            fail("schedule.max_switch", f"must exceed min_switch ({schedule.min_switch}), got {schedule.max_switch}")
        return
    if not isinstance(schedule, ContinualPretraining):
        fail("schedule", f"expected None, a ContinualPretraining or a TwoPhase, got {_kind(schedule)}")
    s = schedule
    if s.new_domain not in names:
        fail("schedule.new_domain", f"must be one of the study's domains {names}, got {s.new_domain!r}")
    if not _is_number(s.tolerance) or float(s.tolerance) < 0:
        fail("schedule.tolerance", f"must be a number >= 0, got {s.tolerance!r}")
    if not isinstance(s.relative, bool):
        fail("schedule.relative", f"must be True or False, got {_kind(s.relative)}")
    if s.base_mixture is not None:
        if not isinstance(s.base_mixture, Mapping) or not s.base_mixture:
            fail("schedule.base_mixture", f"must be a non-empty mapping {{general domain: weight}} or None, got {_kind(s.base_mixture)}")
        for k, v in s.base_mixture.items():
            if k == s.new_domain:
                fail(f"schedule.base_mixture.{k}", "is the new domain; the base mixture is over the general domains")
            if k not in names:
                fail(f"schedule.base_mixture.{k}", f"unknown domain {k!r}")
            if not _is_number(v) or float(v) < 0:
                fail(f"schedule.base_mixture.{k}", f"must be a number >= 0, got {v!r}")
        if sum(float(v) for v in s.base_mixture.values()) <= 0:
            fail("schedule.base_mixture", "weights sum to 0")
    if s.base_tokens is not None and (not _is_int(s.base_tokens) or s.base_tokens <= 0):
        fail("schedule.base_tokens", f"must be a positive integer, got {s.base_tokens!r}")
    if s.base_tokens_per_param is not None and (not _is_number(s.base_tokens_per_param) or not float(s.base_tokens_per_param) > 0):
        fail("schedule.base_tokens_per_param", f"must be a positive number, got {s.base_tokens_per_param!r}")
    given = [a for a in ("base_tokens", "base_tokens_per_param", "base_checkpoint") if getattr(s, a) is not None]
    if len(given) > 1:
        fail(f"schedule.{given[1]}", f"set one of base_tokens, base_tokens_per_param, base_checkpoint, not {' and '.join(given)}")
    if s.base_checkpoint is not None and not isinstance(s.base_checkpoint, (str, os.PathLike)):
        fail("schedule.base_checkpoint", f"must be a checkpoint file path, got {_kind(s.base_checkpoint)}")
    for i, r in enumerate((*ladder.rungs, ladder.target)):
        if r.n_params is None or r.tokens is None:
            where = f"ladder.rungs[{i}]" if i < len(ladder.rungs) else "ladder.target"
            fail(where, "a continual pre-training rung needs n_params (the base model's size N) and tokens (the continued tokens T)")
    if space.lower or space.upper or space.fixed:
        fail("space", f"a continual pre-training study searches the ratio R of {s.new_domain!r} on the line from the base mixture; bounds on the mixture do not apply (leave space=None)")


def _validate_space(space: SearchSpace | None, names: list[str], fail: Any) -> None:
    if not isinstance(space, SearchSpace):
        fail("space", f"expected a SearchSpace, got {_kind(space)}")
    if list(space.domains) != names:
        fail("space.domains", f"must list the study's domains in order {names}, got {list(space.domains)}")
    for label, mapping in (("lower", space.lower), ("upper", space.upper), ("fixed", space.fixed)):
        if not isinstance(mapping, Mapping):
            fail(f"space.{label}", f"must be a mapping {{domain: weight}}, got {_kind(mapping)}")
        for k, v in mapping.items():
            if k not in names:
                fail(f"space.{label}.{k}", f"unknown domain {k!r}")
            if not _is_number(v) or not 0.0 <= float(v) <= 1.0:
                fail(f"space.{label}.{k}", f"must be a number in [0, 1], got {v!r}")
    lo, hi = space.bounds()
    for name, l, h in zip(names, lo, hi):
        if l > h + 1e-12:
            fail(f"space.lower.{name}", f"lower bound {l} exceeds upper bound {h}")
    if sum(lo) > 1.0 + 1e-9:
        fail("space.lower", f"lower bounds sum to {sum(lo):.4g} > 1: the simplex is empty")
    if sum(hi) < 1.0 - 1e-9:
        fail("space.upper", f"upper bounds sum to {sum(hi):.4g} < 1: the simplex is empty")


def _validate_ladder(ladder: FidelityLadder, fail: Any) -> None:
    if not isinstance(ladder, FidelityLadder):
        fail("ladder", f"expected a FidelityLadder, got {_kind(ladder)}")
    if not ladder.rungs:
        fail("ladder.rungs", "need at least one rung")
    seen: dict[str, Rung] = {}
    for i, r in enumerate((*ladder.rungs, ladder.target)):
        where = f"ladder.rungs[{i}]" if i < len(ladder.rungs) else "ladder.target"
        if not isinstance(r, Rung):
            fail(where, f"expected a Rung, got {_kind(r)}")
        if not isinstance(r.name, str) or not r.name.strip():
            fail(f"{where}.name", f"must be a non-empty string, got {_kind(r.name)}")
        if r.name in seen and where != "ladder.target":
            fail(f"{where}.name", f"duplicate rung {r.name!r}")
        for attr in ("n_params", "tokens"):
            v = getattr(r, attr)
            if v is not None and (not _is_int(v) or v <= 0):
                fail(f"{where}.{attr}", f"must be a positive integer, got {v!r}")
        if r.cost is not None and (not _is_number(r.cost) or not r.cost > 0):
            fail(f"{where}.cost", f"must be a positive number, got {r.cost!r}")
        if not math.isfinite(r.run_cost):
            fail(where, "needs a cost, or n_params and tokens")
        if where == "ladder.target" and r.name in seen and seen[r.name] != r:
            fail("ladder.target.name", f"{r.name!r} is the name of a rung with another size or cost; give the target its own name, or make it exactly that rung")
        seen.setdefault(r.name, r)
    _validate_target_scale(ladder, fail)


def _validate_target_scale(ladder: FidelityLadder, fail: Any) -> None:
    """The target is the scale the answer is for: at or above every rung in N, D and cost."""
    t = ladder.target
    for attr, what in (("n_params", "parameters"), ("tokens", "tokens")):
        tv = getattr(t, attr)
        sizes = [(getattr(r, attr), r.name) for r in ladder.rungs if getattr(r, attr) is not None]
        if tv is not None and sizes:
            top, name = max(sizes)
            if tv < top:
                fail(f"ladder.target.{attr}", f"the target ({tv:,} {what}) is below rung {name!r} ({top:,}); the target is the scale the answer is for, at or above every rung")
    if t.n_params is None and t.tokens is None:
        top_cost = max(r.run_cost for r in ladder.rungs)
        if t.run_cost < top_cost * (1 - 1e-9):
            fail("ladder.target.cost", f"the target costs less ({t.run_cost:.4g}) than the costliest rung ({top_cost:.4g}); the target is the scale the answer is for")


def _validate_objective(obj: Objective, names: list[str], fail: Any) -> None:
    if not isinstance(obj, Objective):
        fail("objective", f"expected an Objective, got {_kind(obj)}")
    if obj.direction not in ("minimize", "maximize"):
        fail("objective.direction", f"must be 'minimize' or 'maximize', got {obj.direction!r}")
    if obj.metric is not None:
        if not isinstance(obj.metric, str) or not obj.metric.strip():
            fail("objective.metric", f"must be the name of a metric the evaluator reports, got {obj.metric!r}")
        if obj.domain_weights is not None:
            fail("objective.domain_weights", "cannot be combined with objective.metric (the objective is the metric)")
    if obj.domain_weights is not None:
        if not isinstance(obj.domain_weights, Mapping):
            fail("objective.domain_weights", f"must be a mapping {{domain: weight}}, got {_kind(obj.domain_weights)}")
        if not obj.domain_weights:
            fail("objective.domain_weights", "is empty")
        for k, v in obj.domain_weights.items():
            if k not in names:
                fail(f"objective.domain_weights.{k}", f"unknown domain {k!r}")
            if not _is_number(v) or v < 0:
                fail(f"objective.domain_weights.{k}", f"must be a number >= 0, got {v!r}")
        if sum(obj.domain_weights.values()) <= 0:
            fail("objective.domain_weights", "weights sum to 0")


def _validate_budget(b: Budget, fail: Any) -> None:
    if not isinstance(b, Budget):
        fail("budget", f"expected a Budget, got {_kind(b)}")
    if b.max_trials is None and b.max_cost is None and b.max_seconds is None:
        fail("budget", "set at least one of max_trials, max_cost, max_seconds")
    if b.max_trials is not None and (not _is_int(b.max_trials) or b.max_trials <= 0):
        fail("budget.max_trials", f"must be a positive integer, got {b.max_trials!r}")
    for attr in ("max_cost", "max_seconds"):
        v = getattr(b, attr)
        if v is not None and (not _is_number(v) or not v > 0):
            fail(f"budget.{attr}", f"must be a positive number, got {v!r}")


def _validate_proposer(p: ProposerSpec, fail: Any) -> None:
    if not isinstance(p, ProposerSpec):
        fail("proposer", f"expected a ProposerSpec, got {_kind(p)}")
    if not isinstance(p.name, str) or not p.name:
        fail("proposer.name", f"must be a proposer name or 'package.module:Class', got {_kind(p.name)}")
    if not _is_int(p.batch_size) or p.batch_size < 1:
        fail("proposer.batch_size", f"must be an integer >= 1, got {p.batch_size!r}")
    if not isinstance(p.options, Mapping):
        fail("proposer.options", f"must be a mapping of option names to values, got {_kind(p.options)}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


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
    except SystemExit as exc:
        # A study file declares a Study and runs nothing: an exit on import is not a success.
        raise StudyError("file", f"called sys.exit({exc.code!r}) while being imported; a study file only declares a mixsearch.Study", src) from None
    except Exception as exc:  # noqa: BLE001 - any import error is the file's fault
        raise StudyError("file", f"failed to import: {type(exc).__name__}: {_first_line(exc)}", src) from exc
    # One object under two names (``alias = study``) is one study.
    studies = list({id(v): v for v in vars(module).values() if isinstance(v, Study)}.values())
    if not studies:
        raise StudyError("study", "the file defines no mixsearch.Study object (a study file assigns one at module level: study = Study(...))", src)
    if len(studies) > 1:
        raise StudyError("study", f"the file defines {len(studies)} Study objects; keep one", src)
    return validate(studies[0], src)
