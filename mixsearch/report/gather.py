"""Gathering a study's data for the report: trials, curves, and the export document.

Everything the report shows is read here once (:func:`collect`) into a :class:`StudyData`;
the figures (:mod:`mixsearch.report.figures`) and the page (:mod:`mixsearch.report.html`)
only draw what it holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import pandas as pd

from mixsearch.report.style import FLOPS, NATS
from mixsearch.study import Study

if TYPE_CHECKING:
    from mixsearch.api import OpenStudy


@dataclass
class StudyData:
    """Everything the report draws, gathered once.

    Attributes:
        study: The study.
        trials: The ledger's per-trial table (``Ledger.to_dataframe``): columns
            ``trial_id, number, state, rung, objective, cost, seconds, finished,
            w_<domain>..., loss_<domain>...``.
        curves: Training curve per trial id, ``[(tokens_seen, train_loss), ...]``.
        export: The export document (schema ``mixsearch.export/v1``): ``counts``,
            ``best_per_rung``, ``recommendation``, ``laws``, ``laws_skipped``.
        export_path: Where that document was written, if it was.
        notes: Things the reader should know that no figure shows (a law fit that
            failed, a recommendation that could not be made).
    """

    study: Study
    trials: pd.DataFrame
    curves: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    export: dict[str, Any] = field(default_factory=dict)
    export_path: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def domains(self) -> list[str]:
        return self.study.domain_names

    @property
    def minimize(self) -> bool:
        return self.study.objective.direction == "minimize"

    @property
    def loss_domains(self) -> list[str]:
        """Domains with a loss column (evaluation domains may differ from training domains)."""
        return [c[5:] for c in self.trials.columns if c.startswith("loss_")]

    @property
    def rungs(self) -> list[str]:
        """Rung names in ladder order, then any rung seen in the ledger but not in the ladder."""
        names = list(self.study.ladder.names)
        if not self.trials.empty:
            names += [r for r in dict.fromkeys(self.trials["rung"]) if r not in names]
        return names

    def done(self) -> pd.DataFrame:
        """Done trials with a finite objective."""
        if self.trials.empty:
            return self.trials
        obj = pd.to_numeric(self.trials["objective"], errors="coerce")
        return self.trials[(self.trials["state"] == "done") & np.isfinite(obj)]

    def cost_unit(self) -> str:
        """FLOPs when every rung costs 6·N·D, else the study's own cost unit."""
        if all(r.cost is None for r in self.study.ladder.rungs):
            return FLOPS
        return "cost units"

    def objective_label(self) -> tuple[str, str | None]:
        """(quantity, unit) for the objective axis."""
        if self.minimize:
            return "objective: mean validation loss", NATS
        return "objective", None


@dataclass(frozen=True)
class FigureBlock:
    """One figure of the report page.

    Attributes:
        key: File stem of its PNG (``progress`` -> ``progress.png``).
        title: Heading on the page.
        caption: What it shows and how to read it.
        png: The PNG, when drawn.
        note: Why it is missing or incomplete, when it is.
        empty: True when the PNG only carries ``note`` (there was nothing to draw).
    """

    key: str
    title: str
    caption: str
    png: Path | None = None
    note: str | None = None
    empty: bool = False


def collect(opened: "OpenStudy", out: Path | None = None, say: Callable[[str], None] | None = None) -> StudyData:
    """Read a study's trials, curves, recommendation and laws.

    The export document is the study's up-to-date ``fits/<study>.json`` when there is one
    (nothing is refitted), else it is built with :func:`mixsearch.api.export_study`, so
    the report shows exactly what ``mixsearch study export`` writes. Either way a copy is
    written into ``out``. A law fit or recommendation that fails leaves a note, not an error.
    """
    say = say or (lambda _text: None)
    say("reading the ledger")
    study = opened.study
    trials = opened.ledger.trials()
    df = opened.ledger.to_dataframe()
    curves = {t.trial_id: [(float(a), float(b)) for a, b in t.curve] for t in trials if t.curve}
    data = StudyData(study=study, trials=df, curves=curves)
    data.export, data.export_path = _export(opened, data, out, say)
    return data


def _export(opened: "OpenStudy", data: StudyData, out: Path | None, say: Callable[[str], None]) -> tuple[dict[str, Any], Path | None]:
    from mixsearch import api
    from mixsearch.jsonfile import write_json

    path = None if out is None else out / f"{opened.study.name}.export.json"
    current = api.current_export(opened)
    if current is not None:
        say(f"reusing the up-to-date export {api.export_path(opened.study)} (no refit)")
        data.notes.append(f"built from {api.export_path(opened.study)}, which is up to date with the ledger")
        return current, (write_json(current, path) if path else None)
    for with_laws in (True, False):
        try:
            doc = api.export_document(opened, with_laws=with_laws, say=say)
            return doc, (write_json(doc, path) if path else None)
        except Exception as exc:  # noqa: BLE001 - a report must survive a failing fit
            what = "fitting laws" if with_laws else "recommending"
            data.notes.append(f"export failed while {what}: {type(exc).__name__}: {one_line(exc)}")
    return {}, None


def one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""
