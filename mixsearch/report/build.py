"""The per-study report: gather a study's results, draw each figure, write the folder.

``study_report(opened, out)`` writes PNGs, ``trials.csv``, the export JSON the page
was built from and one self-contained ``index.html``. Gathering is
:mod:`mixsearch.report.gather`, drawing :mod:`mixsearch.report.figures`, the page
:mod:`mixsearch.report.html`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

from mixsearch.report.figures import study_figures
from mixsearch.report.gather import collect
from mixsearch.report.html import study_page
from mixsearch.storage import safe_url

if TYPE_CHECKING:
    from mixsearch.api import OpenStudy


def study_report(opened: "OpenStudy", out: str | Path, say: Callable[[str], None] | None = None) -> Path:
    """Write a study's report: PNGs, ``trials.csv``, the export JSON and ``index.html``.

    Args:
        opened: The study and its ledger (:func:`mixsearch.api.open_study`).
        out: Output folder (created).
        say: Told each stage (a progress display).

    Returns:
        Path of the HTML page.
    """
    from mixsearch import api

    say = say or (lambda _text: None)
    # Before anything is written: a report from a changed study file would relabel or mix
    # the stored results (an up-to-date export is no exception).
    say("checking the study file against its ledger")
    api.check_unchanged(opened)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = collect(opened, out, say)
    say("drawing the figures")
    blocks = study_figures(data, out)
    say("writing the page")
    if not data.trials.empty:
        data.trials.to_csv(out / "trials.csv", index=False)
    page = out / "index.html"
    page.write_text(study_page(data, blocks, ledger_url=safe_url(opened.ledger.url)), encoding="utf-8")
    return page
