"""The Python API behind the CLI: start, resume, inspect and export studies.

Notebooks and scripts call these; ``mixsearch.cli`` only parses arguments and prints.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mixsearch.evaluate import make_evaluator
from mixsearch.execute.base import Executor
from mixsearch.ledger import Ledger, LedgerError, default_url
from mixsearch.orchestrator import Orchestrator, Progress, RunSummary, build_context
from mixsearch.propose.base import Proposer
from mixsearch.propose.base import make_proposer as _make_proposer
from mixsearch.results import build_export, write_json
from mixsearch.study import Study, StudyError, load_study

DEFAULT_ROOT = Path("runs")


@dataclass
class OpenStudy:
    """A study with its ledger, ready to inspect or run."""

    study: Study
    ledger: Ledger
    study_file: str | None


def ledger_url(study: Study, storage: str | None = None, root: str | Path = DEFAULT_ROOT) -> str:
    """The ledger URL: ``storage`` if given, else the study's, else the default SQLite file."""
    return storage or study.storage or default_url(study.name, root)


def make_executor(kind: str = "local", workers: int = 1, pack: int = 1, address: str | None = None, **options: Any) -> Executor:
    """Build an executor by name (``local`` or ``ray``)."""
    if kind == "local":
        from mixsearch.execute.local import LocalExecutor

        return LocalExecutor(workers=workers, pack=pack)
    if kind == "ray":
        module = importlib.import_module("mixsearch.execute.ray")
        return module.RayExecutor(address=address, workers=workers, pack=pack, **options)
    raise ValueError(f"executor: unknown executor {kind!r}; use 'local' or 'ray'")


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
) -> RunSummary:
    """Run (or continue) the study in ``study_path`` until its budget is spent.

    Starting and resuming are the same operation: the ledger holds the state.
    """
    study = load_study(study_path)
    # Everything that can reject bad input comes before the ledger, which creates
    # runs/<study>/: a bad table, proposer or executor option writes nothing.
    evaluator = make_evaluator(study)
    ex = make_executor(executor, workers=workers, pack=pack, address=address)
    proposer = make_proposer(study, study_path)
    ledger = Ledger(ledger_url(study, storage, root))
    try:
        orch = Orchestrator(
            study,
            ledger,
            evaluator,
            ex,
            proposer,
            progress=progress,
            heartbeat_timeout=heartbeat_timeout,
            study_file=str(study_path),
        )
        return orch.run()
    finally:
        ledger.dispose()


def make_proposer(study: Study, study_file: str | Path | None = None) -> Proposer:
    """The study's proposer; a bad name or option is a :class:`StudyError` naming the file."""
    try:
        return _make_proposer(study.proposer)
    except ValueError as exc:
        field, _, message = str(exc).partition(": ")
        raise StudyError(field, message or field, str(study_file) if study_file else None) from exc


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
        raise LedgerError(f"ledger {url}: records no study file; pass the study file instead of the name")
    if not Path(recorded).is_file():
        raise StudyError("file", "study file recorded in the ledger no longer exists", recorded)
    return recorded


def open_study(name_or_path: str, storage: str | None = None, root: str | Path = DEFAULT_ROOT) -> OpenStudy:
    """Open an existing study's ledger by name or study file."""
    path = find_study_file(name_or_path, storage, root)
    study = load_study(path)
    ledger = Ledger(ledger_url(study, storage, root), create=False)
    return OpenStudy(study, ledger, path)


def status_table(opened: OpenStudy) -> pd.DataFrame:
    """The per-trial table, best first within each rung."""
    df = opened.ledger.to_dataframe(opened.study.domain_names)
    if df.empty:
        return df
    asc = opened.study.objective.direction == "minimize"
    return df.sort_values(["rung", "objective"], ascending=[True, asc], na_position="last")


def export_study(opened: OpenStudy, out: str | Path | None = None, with_laws: bool = True) -> Path:
    """Write ``fits/<study>.json`` (or ``out``) with the study's results and laws."""
    study = opened.study
    evaluator = make_evaluator(study)
    proposer = make_proposer(study, opened.study_file)
    ledger = opened.ledger
    pool = evaluator.pool() if study.evaluator.kind == "table" else None
    if pool is None and study.evaluator.kind == "table":
        evaluator.prepare()
        pool = evaluator.pool()
    ctx = build_context(study, ledger, ledger.next_ask(), pool)
    rec = proposer.recommend(ctx) if ctx.history.n else None
    df = ledger.to_dataframe(study.domain_names)
    doc = build_export(study, df, rec, ledger.get_meta("snapshot"), with_laws=with_laws)
    path = Path(out) if out else Path("fits") / f"{study.name}.json"
    return write_json(doc, path)
