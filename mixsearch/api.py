"""The Python API behind the CLI: start, resume, fork, inspect and export studies.

Notebooks and scripts call these; ``mixsearch.cli`` only parses arguments and prints.
Every entry point checks everything that can be checked before it writes anything: the
study file, its world and data, its proposer, the executor and the storage URL; a study
whose definition changed since its trials were run is refused with the reason.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from mixsearch.answer import fit_objective_law, target_answer
from mixsearch.candidate import Candidate, Phases, TrialResult
from mixsearch.evaluate import Evaluator, make_evaluator
from mixsearch.evaluate.base import split_field
from mixsearch.execute import make_executor
from mixsearch.identity import definition_changes, study_definition
from mixsearch.jsonfile import write_json
from mixsearch.ledger import DONE, Ledger, LedgerError, StudyChanged, Trial, default_url
from mixsearch.orchestrator import Orchestrator, Progress, RunSummary, build_context, trial_context
from mixsearch.propose.base import Proposer, check_schedule
from mixsearch.propose.base import make_proposer as _make_proposer
from mixsearch.results import build_export
from mixsearch.schedule_answer import attach_schedule, cpt_answer
from mixsearch.storage import check_url, safe_url
from mixsearch.study import ContinualPretraining, Study, StudyError, TwoPhase
from mixsearch.studyfile import load_study, validate
from mixsearch.threads import limited
from mixsearch.worker import Worker

DEFAULT_ROOT = Path("runs")


@dataclass
class OpenStudy:
    """A study with its ledger, ready to inspect or run."""

    study: Study
    ledger: Ledger
    study_file: str | None


@dataclass
class CheckedStudy:
    """A study file that passed every check that writes nothing: the spec, its world, its proposer.

    Attributes:
        study: The validated study.
        study_file: The file it came from.
        evaluator: Its evaluator (options and data sources checked, not yet prepared).
        proposer: Its proposer (options checked, against the world's mode too).
    """

    study: Study
    study_file: str
    evaluator: Evaluator
    proposer: Proposer


def ledger_url(study: Study, storage: str | None = None, root: str | Path = DEFAULT_ROOT) -> str:
    """The ledger URL: ``storage`` if given, else the study's, else the default SQLite file."""
    return storage or study.storage or default_url(study.name, root)


def make_proposer(study: Study, study_file: str | Path | None = None) -> Proposer:
    """The study's proposer; a bad name or option, or one that does not search what the study's
    schedule asks for, is a :class:`StudyError` naming the file."""
    try:
        proposer = _make_proposer(study.proposer)
        check_schedule(proposer, study.proposer.name, study.schedule)
        return proposer
    except ValueError as exc:
        field, message = split_field(str(exc), "proposer.options")
        raise StudyError(field, message, str(study_file) if study_file else None) from exc


def check_study(study_path: str | Path) -> CheckedStudy:
    """Load a study file and check everything that can be checked without writing anything.

    The spec field by field, the world's options and data sources, the proposer's name
    and options (including options its mode would ignore, e.g. a Dirichlet ``alpha`` when
    the world is a finite pool).

    Raises:
        StudyError: one line naming the file and the field.
    """
    src = str(study_path)
    study = load_study(study_path)
    evaluator = make_evaluator(study, src)
    proposer = make_proposer(study, src)
    check_mode = getattr(proposer, "check_mode", None)
    if callable(check_mode):
        try:
            check_mode(pool=evaluator.pool() is not None)
        except ValueError as exc:
            field, message = split_field(str(exc), "proposer.options")
            raise StudyError(field if field.startswith("proposer") else f"proposer.options.{field}", message, src) from None
    return CheckedStudy(study, src, evaluator, proposer)


def prepare_world(checked: CheckedStudy) -> str:
    """Build what the world needs (a corpus, a table) and return its snapshot id.

    Runs before any ledger is opened, so bad data (an empty folder, a binary file named
    ``.txt``, a table that is not CSV) leaves nothing behind.

    Raises:
        StudyError: naming the field (``domains[i].source`` …) and the study file.
    """
    try:
        checked.evaluator.prepare()
        return checked.evaluator.snapshot_id()
    except StudyError as exc:
        raise StudyError(exc.field, exc.message, exc.source or checked.study_file) from None
    except ValueError as exc:
        field, message = split_field(str(exc), "evaluator")
        raise StudyError(field, message, checked.study_file) from None


def run_study(
    study_path: str | Path,
    storage: str | None = None,
    root: str | Path = DEFAULT_ROOT,
    executor: str = "local",
    workers: int = 1,
    pack: int = 1,
    address: str | None = None,
    progress: Progress | None = None,
    heartbeat_timeout: float = 120.0,
    fork: str | None = None,
    resume: str | None = None,
) -> RunSummary:
    """Run (or continue) the study in ``study_path`` until its budget is spent.

    Starting and resuming are the same operation: the ledger holds the state.

    Args:
        study_path: The study file.
        storage, root: Where the ledger is (see :func:`ledger_url`).
        executor, workers, pack, address: The executor (see :func:`mixsearch.execute.make_executor`).
        progress: A progress sink.
        heartbeat_timeout: Seconds before another process's running trial is orphaned.
        fork: Run the file's study under this new name, starting from the compatible
            trials of the study the file names (see :func:`fork_study`).
        resume: The name of the study being resumed: the file must still define it, and
            its ledger must exist (a resume never starts another study).

    Raises:
        StudyError, LedgerError: one line naming what is wrong.
    """
    checked = check_study(study_path)
    study = checked.study
    if resume is not None:
        study = study_named(study, resume, checked.study_file, storage, root)
    if fork is not None:
        study = _renamed(study, fork, checked.study_file)
    url = ledger_url(study, storage, root)
    check_url(url)
    if fork is not None and url == ledger_url(checked.study, storage, root):
        # A ledger holds one study: the fork cannot share the original's.
        raise StudyError(
            "fork",
            f"{fork!r} would share the ledger of {checked.study.name!r} ({safe_url(url)}), and a ledger holds one study; "
            "fork with the per-study default ledgers (no --storage and no Study.storage), or give each study its own storage",
            checked.study_file,
        )
    if resume is not None:
        Ledger(url, create=False).dispose()  # raises when there is no such study to resume
    ex = make_executor(executor, workers=workers, pack=pack, address=address)
    snapshot = prepare_world(checked)
    if fork is not None:
        fork_study(ledger_url(checked.study, storage, root), study, snapshot, url)
    ledger = Ledger(url)
    try:
        orch = Orchestrator(study, ledger, checked.evaluator, ex, checked.proposer, progress=progress, heartbeat_timeout=heartbeat_timeout, study_file=checked.study_file)
        return orch.run()
    finally:
        ledger.dispose()


def _renamed(study: Study, name: str, source: str) -> Study:
    if name == study.name:
        raise StudyError("fork", f"the new study needs a name other than {study.name!r}", source)
    try:
        return validate(dataclasses.replace(study, name=name), source)
    except StudyError as exc:
        raise StudyError("fork", f"{name!r}: {exc.message}", source) from None


def fork_study(source_url: str, study: Study, snapshot: str, url: str) -> int:
    """Start ``study`` in a new ledger at ``url`` with the compatible trials of another ledger.

    A done trial is carried over when its result keeps its meaning in the new study
    (:func:`carry_over`). Copies get new trial ids (the new study's) and remember where
    they came from (``metrics["forked_from"]``).

    Returns:
        The number of trials copied.

    Raises:
        LedgerError: the source ledger is missing, or the new study's ledger already holds trials.
    """
    source = Ledger(source_url, create=False)
    try:
        old_name = source.get_meta("study_name") or ""
        old_def = source.definition() or study_definition(json.loads(source.get_meta("study") or "{}"), source.get_meta("snapshot"))
        old_domains = list(source.domains or source.legacy_domains() or [])
        trials = [t for t in source.trials() if t.state == DONE]
    finally:
        source.dispose()
    target = Ledger(url)
    try:
        if target.counts_total():
            raise LedgerError(f"ledger {safe_url(url)}: study {study.name!r} already holds trials; fork into a new name")
        target.bind_study(study.name, study.to_dict(), None, study.definition(snapshot))
        target.set_meta("snapshot", snapshot)
        target.set_meta("forked_from", json.dumps({"ledger": safe_url(source_url), "definition": old_def, "offered": len(trials)}))
        target.set_meta(FILE_NAME_KEY, old_name)
        return target.import_done(carry_over(trials, old_domains, old_def, study, snapshot), trial_context(study, snapshot))
    finally:
        target.dispose()


def carry_over(trials: list[Trial], old_domains: list[str], old_def: dict, study: Study, snapshot: str) -> list[tuple[Candidate, TrialResult]]:
    """The done trials whose results keep their meaning in ``study``, remapped to its domains.

    A trial keeps its meaning when the world and its data snapshot are the same, its rung
    exists with the same size and cost, and its mixture, read by domain name, is a mixture
    of the new domains within the new bounds (a domain the new study lacks must have
    weight 0; a new domain gets 0). Its objective is recomputed from its stored losses and
    metrics under the new objective.
    """
    if old_def.get("snapshot") not in (None, snapshot) or old_def.get("evaluator") != study.evaluator.kind:
        return []
    assert study.space is not None
    new_rungs = {r.name: [r.n_params, r.tokens, r.cost] for r in study.ladder.rungs}
    out = []
    for t in trials:
        rung = t.candidate.rung
        if rung not in new_rungs or list((old_def.get("rungs") or {}).get(rung, new_rungs[rung])) != new_rungs[rung]:
            continue
        by_name = dict(zip(old_domains, t.candidate.weights))
        if any(w > 0 for d, w in by_name.items() if d not in study.domain_names):
            continue
        weights = tuple(by_name.get(d, 0.0) for d in study.domain_names)
        if not study.space.contains(weights, tol=1e-5):
            continue
        phases = None
        if t.candidate.schedule is not None:
            # A two-phase trial keeps its phases, read by domain name like its weights.
            doc = t.candidate.schedule.as_dict(old_domains)
            if any(w > 0 for part in ("first", "second") for d, w in doc[part].items() if d not in study.domain_names):
                continue
            phases = Phases.from_dict({k: ({d: doc[k].get(d, 0.0) for d in study.domain_names} if k != "switch" else doc[k]) for k in doc}, study.domain_names)
        objective = study.objective.value(t.domain_losses, t.metrics)
        if not math.isfinite(objective):
            continue
        metrics = {**t.metrics, "forked_from": t.trial_id}
        result = TrialResult(dict(t.domain_losses), objective, float(t.cost or 0.0), float(t.seconds or 0.0), [tuple(p) for p in t.curve], metrics)
        out.append((Candidate(() if phases else weights, rung, t.candidate.seed, phases), result))
    return out


def run_worker(
    study_path: str | Path,
    storage: str | None = None,
    root: str | Path = DEFAULT_ROOT,
    executor: str = "local",
    workers: int = 1,
    pack: int = 1,
    address: str | None = None,
    wait: bool = False,
    idle_timeout: float | None = None,
    heartbeat_timeout: float = 120.0,
    progress: Progress | None = None,
) -> RunSummary:
    """Run a worker on the study in ``study_path`` (see :class:`~mixsearch.worker.Worker`).

    Returns:
        What the worker saw when it stopped (counts are the whole study's).
    """
    checked = check_study(study_path)
    url = ledger_url(checked.study, storage, root)
    check_url(url)
    ex = make_executor(executor, workers=workers, pack=pack, address=address)
    prepare_world(checked)
    ledger = Ledger(url, create=False)
    try:
        worker = Worker(
            checked.study,
            ledger,
            checked.evaluator,
            ex,
            wait=wait,
            idle_timeout=idle_timeout,
            progress=progress,
            heartbeat_timeout=heartbeat_timeout,
            study_file=checked.study_file,
        )
        return worker.run()
    finally:
        ledger.dispose()


def find_study_file(name_or_path: str, storage: str | None = None, root: str | Path = DEFAULT_ROOT) -> str:
    """The study file for a study name (from its ledger) or a path given directly."""
    p = Path(name_or_path)
    if p.suffix == ".py":
        if not p.is_file():
            raise StudyError("file", "study file not found", name_or_path)
        return str(p)
    url = storage or default_url(name_or_path, root)
    ledger = Ledger(url, create=False)
    try:
        recorded = ledger.get_meta("study_file")
    finally:
        ledger.dispose()
    if not recorded:
        raise LedgerError(f"ledger {safe_url(url)}: records no study file; pass the study file instead of the name")
    if not Path(recorded).is_file():
        raise StudyError("file", "study file recorded in the ledger no longer exists", recorded)
    return recorded


def open_study(name_or_path: str, storage: str | None = None, root: str | Path = DEFAULT_ROOT) -> OpenStudy:
    """Open an existing study's ledger by name or study file (status, export, report).

    Raises:
        StudyError: the file no longer defines the study of that name.
        LedgerError: there is no such study's ledger.
    """
    path = find_study_file(name_or_path, storage, root)
    study = load_study(path)
    if Path(name_or_path).suffix != ".py":
        study = study_named(study, name_or_path, path, storage, root)
    ledger = Ledger(ledger_url(study, storage, root), create=False)
    return OpenStudy(study, ledger, path)


# Ledger meta of a forked study: the name its study file gives (the file is shared with the original).
FILE_NAME_KEY = "file_study_name"


def study_named(study: Study, name: str, source: str, storage: str | None = None, root: str | Path = DEFAULT_ROOT) -> Study:
    """The study called ``name`` that ``source`` defines: the file's own, or a fork of it.

    Raises:
        StudyError: the file defines another study (renamed since), and ``name`` is not a fork of it.
        LedgerError: there is no ledger for ``name``.
    """
    if study.name == name:
        return study
    url = ledger_url(dataclasses.replace(study, name=name), storage, root)
    ledger = Ledger(url, create=False)
    try:
        forked_from_file = ledger.get_meta(FILE_NAME_KEY)
    finally:
        ledger.dispose()
    if forked_from_file != study.name:
        raise StudyError("name", f"this file now defines study {study.name!r}, not {name!r}; a resume or status only follows the study it names", source)
    return dataclasses.replace(study, name=name)


def check_unchanged(opened: OpenStudy) -> None:
    """Refuse to build results from a study file that no longer matches its ledger.

    The stored trials were run under the ledger's definition; an export or report built
    with a changed file (other domains, objective or data) would relabel or mix them.

    Raises:
        StudyChanged: naming what changed.
    """
    stored = opened.ledger.definition()
    if stored is None:
        return
    src = opened.study_file or ""
    checked = CheckedStudy(opened.study, src, make_evaluator(opened.study, src), make_proposer(opened.study, src))
    changes = definition_changes(stored, opened.study.definition(prepare_world(checked)))
    if changes:
        raise StudyChanged(opened.study.name, opened.ledger.url, changes)


def file_changes(opened: OpenStudy) -> list[str]:
    """How the study file differs from its ledger's definition, data aside (cheap: builds nothing)."""
    stored = opened.ledger.definition()
    if stored is None:
        return []
    return definition_changes(stored, opened.study.definition(stored.get("snapshot")))


def status_table(opened: OpenStudy) -> pd.DataFrame:
    """The per-trial table, best first within each rung (weights under the ledger's own domain names)."""
    df = opened.ledger.to_dataframe()
    if df.empty:
        return df
    asc = opened.study.objective.direction == "minimize"
    return df.sort_values(["rung", "objective"], ascending=[True, asc], na_position="last")


def export_path(study: Study) -> Path:
    """Where ``mixsearch study export`` writes by default: ``fits/<study>.json``."""
    return Path("fits") / f"{study.name}.json"


def export_study(opened: OpenStudy, out: str | Path | None = None, with_laws: bool = True, say: Callable[[str], None] | None = None) -> Path:
    """Write ``fits/<study>.json`` (or ``out``) with the study's results and laws.

    Args:
        opened: The study and its ledger.
        out: The file to write (default :func:`export_path`).
        with_laws: Fit laws on the study's runs.
        say: Told each stage (a progress display).

    Raises:
        StudyChanged: the study file no longer matches the ledger's trials.
    """
    doc = export_document(opened, with_laws, say)
    path = Path(out) if out else export_path(opened.study)
    (say or (lambda _text: None))(f"writing {path}")
    return write_json(doc, path)


def export_document(opened: OpenStudy, with_laws: bool = True, say: Callable[[str], None] | None = None) -> dict:
    """The export document of a study (see :mod:`mixsearch.results`), not written anywhere."""
    say = say or (lambda _text: None)
    say("checking the study file against its ledger")
    check_unchanged(opened)
    study = opened.study
    evaluator = make_evaluator(study, opened.study_file)
    proposer = make_proposer(study, opened.study_file)
    ledger = opened.ledger
    trials = ledger.trials()
    ctx = build_context(study, ledger, ledger.next_ask(), evaluator.pool(), trials)
    say(f"asking {study.proposer.name} for its recommendation ({ctx.history.n} done trials)")
    with limited("surrogate"):
        rec = proposer.recommend(ctx) if ctx.history.n else None
    df = ledger.to_dataframe()
    done = df[df["state"] == "done"] if not df.empty else df
    if isinstance(study.schedule, ContinualPretraining):
        with limited("law"):
            if with_laws:
                say(f"fitting the continual pre-training laws on {len(done)} done trials (surface, bootstrap, the per-T CMR pipeline)")
                answer, laws, skipped = cpt_answer(done, study)
            else:
                answer, laws, skipped = cpt_answer(done, study, bootstrap=0)
            return build_export(
                study, trials, df, rec, ledger.get_meta("snapshot"), with_laws=with_laws, fingerprint=ledger.get_meta("fingerprint"),
                answer=answer, laws_fitted=(laws, skipped),
            )
    two_phase = isinstance(study.schedule, TwoPhase)
    with limited("law"):
        if two_phase:
            law = "no law models the order of two phases (the joint law sees one mixture per run): the answer is the best schedule observed"
        elif with_laws:
            say(f"fitting the joint law of mixture and scale on {len(done)} done trials (bootstrap, held-out rung)")
            law = fit_objective_law(done, study)
        else:
            law = "laws were not fitted (--no-laws)"
        pool = evaluator.pool()
        data_tokens = getattr(evaluator, "data_tokens", None)
        answer = None if done.empty else target_answer(
            done, study, law,
            fallback=None if rec is None else dict(zip(study.domain_names, rec.weights)),
            pool=None if pool is None else pool.weights,
            data_tokens=data_tokens() if callable(data_tokens) and study.evaluator.kind == "proxy" else None,
        )
        if two_phase and answer is not None:
            answer = attach_schedule(answer, done, study.domain_names)
        if with_laws and not two_phase:
            say("fitting the per-rung and across-rung laws")
        return build_export(
            study, trials, df, rec, ledger.get_meta("snapshot"), with_laws=with_laws, fingerprint=ledger.get_meta("fingerprint"),
            answer=answer, joint=None if isinstance(law, str) else law,
            laws_fitted=([], [f"mixing laws: {law}"]) if two_phase else None,
        )


def current_export(opened: OpenStudy, path: str | Path | None = None) -> dict | None:
    """The export at ``path`` (default :func:`export_path`) when it is up to date with the
    ledger (same definition, same trials, nothing finished since), else None."""
    from mixsearch.results import EXPORT_SCHEMA, ledger_state

    p = Path(path) if path else export_path(opened.study)
    try:
        doc = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("schema") != EXPORT_SCHEMA:
        return None
    state = ledger_state(opened.ledger.trials(), opened.ledger.get_meta("fingerprint"))
    return doc if doc.get("ledger_state") == json.loads(json.dumps(state)) else None
