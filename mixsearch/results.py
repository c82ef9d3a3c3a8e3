"""A study's results: best mixture per rung, the recommendation, and the export document.

``fits/<study>.json`` (schema ``mixsearch.export/v1``) holds the study, the best
mixture per fidelity, the recommendation at the target, the per-trial table and
the laws fitted on the study's runs (each law in schema ``mixsearch.law/v1``, so
``mixsearch.laws.load`` reads them straight from this file).
"""

from __future__ import annotations

import math
import time
from typing import Any, Sequence

import numpy as np
import pandas as pd

from mixsearch import __version__
from mixsearch.laws.law import Law
from mixsearch.trial import Trial, best_done
from mixsearch.propose.base import Recommendation
from mixsearch.study import Study

EXPORT_SCHEMA = "mixsearch.export/v1"


def best_per_rung(trials: Sequence[Trial], study: Study) -> dict[str, dict[str, Any]]:
    """The best done trial at each rung that has one.

    Args:
        trials: The ledger's trials.
        study: The study (domain order, objective direction).

    Returns:
        ``{rung: {"trial_id", "objective", "weights": {domain: w}, "n_trials"}}``.
    """
    out: dict[str, dict[str, Any]] = {}
    for rung in dict.fromkeys(t.candidate.rung for t in trials):
        best = best_done(trials, study.objective, rung)
        if best is None:
            continue
        out[rung] = {
            "trial_id": best.trial_id,
            "objective": float(best.objective),  # type: ignore[arg-type]
            "weights": dict(zip(study.domain_names, best.candidate.weights)),
            "n_trials": sum(1 for t in trials if t.candidate.rung == rung and t.state == "done"),
        }
        if best.candidate.schedule is not None:
            out[rung]["schedule"] = best.candidate.schedule.as_dict(study.domain_names)
    return out


def search_dict(rec: Recommendation | None, study: Study, observed_rungs: set[str]) -> dict[str, Any] | None:
    """The proposer's own pick, as JSON: its mixture, and its Surrogate's value only at a rung
    the study ran (a posterior at a fidelity no trial ran is not a measurement of anything)."""
    if rec is None:
        return None
    seen = rec.rung in observed_rungs
    return {
        "weights": {d: float(w) for d, w in zip(study.domain_names, rec.weights)},
        "basis": rec.basis,
        "rung": rec.rung,
        "surrogate_mean": None if rec.predicted is None or not seen else study.objective.from_minimise(float(rec.predicted)),
        "surrogate_std": None if rec.std is None or not seen else float(rec.std),
        "note": None if seen else f"the Surrogate's value at {rec.rung!r}, where no trial ran, is not reported",
    }


def recommendation_dict(answer: Any, rec: Recommendation | None, study: Study, observed_rungs: set[str]) -> dict[str, Any] | None:
    """The study's answer at the target and the proposer's pick beside it.

    ``answer`` is a :class:`~mixsearch.answer.TargetAnswer`, or for a continual pre-training
    study a :class:`~mixsearch.schedule_answer.CPTAnswer` (``"kind": "cmr"``: the critical ratio).
    """
    if answer is None and rec is None:
        return None
    out: dict[str, Any] = answer.as_dict() if answer is not None else {}
    out["predicted_objective"] = out.pop("predicted", None)
    out["objective"] = study.objective.label
    out["search"] = search_dict(rec, study, observed_rungs)
    return out


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    clean = df.replace({np.nan: None})
    return [{k: _plain(v) for k, v in r.items()} for r in clean.to_dict(orient="records")]


def _plain(v: Any) -> Any:
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return None if not math.isfinite(float(v)) else float(v)
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def fit_study_laws(df: pd.DataFrame, study: Study) -> tuple[list[dict[str, Any]], list[str]]:
    """Laws fitted on the study's done runs, as JSON dicts, and reasons for laws skipped."""
    from mixsearch.laws import law_to_dict, study_laws

    done = df[df["state"] == "done"] if not df.empty else df
    result = study_laws(done, study)
    laws, skipped = [], []
    for item in result:
        if isinstance(item, str):
            skipped.append(item)
        else:
            laws.append(law_to_dict(item))
    return laws, skipped


def ledger_state(trials: Sequence[Trial], fingerprint: str | None) -> dict[str, Any]:
    """What an export was built from: the study definition's fingerprint and the trials'
    states. An export whose state equals the ledger's is up to date and may be reused."""
    finished = [t.finished for t in trials if t.finished is not None]
    return {
        "fingerprint": fingerprint,
        "trials": len(trials),
        "done": sum(t.state == "done" for t in trials),
        "failed": sum(t.state == "failed" for t in trials),
        "last_finished": max(finished) if finished else None,
    }


def build_export(
    study: Study,
    trials: Sequence[Trial],
    df: pd.DataFrame,
    rec: Recommendation | None,
    snapshot: str | None,
    with_laws: bool = True,
    fingerprint: str | None = None,
    answer: Any = None,
    joint: Law | None = None,
    laws_fitted: tuple[list[Law], list[str]] | None = None,
) -> dict[str, Any]:
    """The export document for a study.

    Args:
        study: The study.
        trials: The ledger's trials.
        df: The same trials as the ledger's ``to_dataframe()``.
        rec: The recommendation, if any.
        snapshot: The data snapshot id.
        with_laws: Fit laws on the done trials.
        fingerprint: The ledger's study fingerprint (part of ``ledger_state``).
        answer: The answer at the target scale (a ``TargetAnswer``, or a ``CPTAnswer``).
        joint: The joint law the answer comes from (exported first in ``laws``).
        laws_fitted: ``(laws, reasons skipped)`` already fitted for a study with a schedule,
            in place of the per-rung and across-rung laws of a mixture study.
    """
    from mixsearch.laws import law_to_dict

    laws: list[dict[str, Any]] = []
    skipped: list[str] = []
    if with_laws and laws_fitted is not None:
        laws, skipped = [law_to_dict(law) for law in laws_fitted[0]], list(laws_fitted[1])
    elif with_laws:
        laws, skipped = fit_study_laws(df, study)
    if joint is not None:
        laws.insert(0, law_to_dict(joint))
    observed = {t.candidate.rung for t in trials if t.state == "done"}
    counts = df["state"].value_counts().to_dict() if not df.empty else {}
    return {
        "schema": EXPORT_SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "mixsearch_version": __version__,
        "study": study.to_dict(),
        "snapshot": snapshot,
        "ledger_state": ledger_state(trials, fingerprint),
        "counts": {k: int(v) for k, v in counts.items()},
        "best_per_rung": best_per_rung(trials, study),
        "recommendation": recommendation_dict(answer, rec, study, observed),
        "laws": laws,
        "laws_skipped": skipped,
        "trials": _records(df),
    }
