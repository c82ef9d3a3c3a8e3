"""A study's results: best mixture per rung, the recommendation, and the export file.

``fits/<study>.json`` (schema ``mixsearch.export/v1``) holds the study, the best
mixture per fidelity, the recommendation at the target, the per-trial table and
the laws fitted on the study's runs (each law in schema ``mixsearch.law/v1``, so
``mixsearch.laws.load`` reads them straight from this file).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mixsearch import __version__
from mixsearch.propose.base import Recommendation
from mixsearch.study import Study

EXPORT_SCHEMA = "mixsearch.export/v1"


def best_per_rung(df: pd.DataFrame, study: Study) -> dict[str, dict[str, Any]]:
    """The best done trial at each rung.

    Args:
        df: The ledger's ``to_dataframe()``.
        study: The study (domain order, objective direction).

    Returns:
        ``{rung: {"trial_id", "objective", "weights": {domain: w}, "n_trials"}}``.
    """
    out: dict[str, dict[str, Any]] = {}
    if df.empty:
        return out
    done = df[(df["state"] == "done") & df["objective"].notna()]
    for rung, g in done.groupby("rung", sort=False):
        i = g["objective"].idxmin() if study.objective.direction == "minimize" else g["objective"].idxmax()
        row = g.loc[i]
        out[str(rung)] = {
            "trial_id": row["trial_id"],
            "objective": float(row["objective"]),
            "weights": {d: float(row[f"w_{d}"]) for d in study.domain_names},
            "n_trials": int(len(g)),
        }
    return out


def recommendation_dict(rec: Recommendation | None, study: Study) -> dict[str, Any] | None:
    """The recommendation as JSON (objective back in the study's orientation)."""
    if rec is None:
        return None
    sign = 1.0 if study.objective.direction == "minimize" else -1.0
    return {
        "weights": {d: float(w) for d, w in zip(study.domain_names, rec.weights)},
        "predicted_objective": None if rec.predicted is None else sign * float(rec.predicted),
        "std": None if rec.std is None else float(rec.std),
        "rung": rec.rung,
        "target": study.ladder.target.name,
    }


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


def build_export(study: Study, df: pd.DataFrame, rec: Recommendation | None, snapshot: str | None, with_laws: bool = True) -> dict[str, Any]:
    """The export document for a study."""
    laws: list[dict[str, Any]] = []
    skipped: list[str] = []
    if with_laws:
        laws, skipped = fit_study_laws(df, study)
    counts = df["state"].value_counts().to_dict() if not df.empty else {}
    return {
        "schema": EXPORT_SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "mixsearch_version": __version__,
        "study": study.to_dict(),
        "snapshot": snapshot,
        "counts": {k: int(v) for k, v in counts.items()},
        "best_per_rung": best_per_rung(df, study),
        "recommendation": recommendation_dict(rec, study),
        "laws": laws,
        "laws_skipped": skipped,
        "trials": _records(df),
    }


def write_json(doc: dict[str, Any], path: str | Path) -> Path:
    """Write JSON atomically: a temp file in the same folder, then rename (never half a file)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(doc, fh, indent=2, allow_nan=False)
            fh.write("\n")
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p
