"""Fit a law to a CSV table of runs: what ``mixsearch fit TABLE.csv --law KIND`` calls.

Columns by law (see docs/laws.md):

* ``chinchilla``: ``N``, ``D``, ``loss``.
* ``mixing``: ``w_<domain>`` (two or more), then ``loss`` or ``loss_<target>`` columns;
  optional ``N`` and ``D`` (tokens) or ``steps``. When one of them varies, the joint law
  of mixture and scale is fitted on every run (``pipeline="joint"``, the default);
  ``pipeline="nested"`` (or ``target_N`` / ``target_steps``) runs the step → size →
  mixing pipeline instead, which returns a one-scale law at the target.
* ``cmr``: ``R``, ``T``, ``loss_general``, ``loss_domain``; rows with ``T = 0`` are the
  base model (or give ``loss_general_0`` / ``loss_domain_0`` columns).
* ``asymptote``: ``loss`` and one of ``K`` (with ``N``: joint asymptote), ``N`` (size
  law) or ``D`` (data law); optional ``recipe`` fits one law per recipe.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mixsearch.csvfile import read_csv
from mixsearch.laws.fit import FitError, FitOptions
from mixsearch.laws.law import Law

LAWS = ("chinchilla", "mixing", "cmr", "asymptote")
_LAW_OPTIONS = {
    "chinchilla": (),
    "mixing": ("pipeline", "form", "priors", "target_N", "target_steps", "tie_exponents", "target_weights"),
    "cmr": ("tolerance", "relative"),
    "asymptote": ("tie_ensemble_exponent",),
}


class LawSet(tuple):
    """Several laws fitted from one table (a tuple of :class:`Law`), with notes on what was skipped."""

    skipped: tuple[str, ...] = ()

    def summary(self) -> str:
        parts = [law.summary() for law in self]
        if self.skipped:
            parts.append("skipped: " + "; ".join(self.skipped))
        return "\n".join(parts)


def _law_set(laws: list[Law], skipped: tuple[str, ...] = ()) -> LawSet:
    out = LawSet(laws)
    out.skipped = tuple(skipped)
    return out


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV of runs; one-line ValueError naming the file when it cannot be read."""
    return read_csv(path)


def numeric_column(df: pd.DataFrame, column: str, path: str | Path, positive: bool = False, non_negative: bool = False) -> np.ndarray:
    """A column as floats; one-line ValueError naming the file and column when missing or bad."""
    if column not in df.columns:
        raise ValueError(f"{path}: missing column {column!r} (columns: {', '.join(df.columns)})")
    values = pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(values)
    if positive:
        bad |= values <= 0
    if non_negative:
        bad |= values < 0
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        need = "a positive number" if positive else ("a non-negative number" if non_negative else "a number")
        raise ValueError(f"{path}: column {column!r}: row {row + 2} is {df[column].iloc[row]!r}, need {need}")
    return values


def _split_options(law: str, options: dict[str, Any], path: Path) -> tuple[FitOptions, dict[str, Any]]:
    fit_fields = {f.name for f in dataclasses.fields(FitOptions)}
    allowed = set(_LAW_OPTIONS[law])
    unknown = sorted(set(options) - fit_fields - allowed)
    if unknown:
        raise ValueError(f"{path}: unknown option(s) {', '.join(unknown)} for --law {law}; known: {', '.join(sorted(fit_fields | allowed))}")
    fit_opts = FitOptions(**{k: v for k, v in options.items() if k in fit_fields})
    return fit_opts, {k: v for k, v in options.items() if k in allowed}


def _provenance(path: Path) -> dict[str, Any]:
    return {"source": str(path), "source_sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "study": None, "corpus_hash": None}


def fit_table(table_path: str | Path, law: str, out: str | Path | None = None, **options: Any) -> Law | LawSet:
    """Fit a law of kind ``law`` to a CSV table; write it as JSON when ``out`` is given.

    Args:
        table_path: The CSV file (columns: see the module docstring / docs/laws.md).
        law: ``"chinchilla"``, ``"mixing"``, ``"cmr"`` or ``"asymptote"``.
        out: JSON file to write (one law, or a collection when several).
        **options: :class:`FitOptions` fields (``bootstrap=``, ``seed=`` …) and law
            options (mixing: ``pipeline`` (``"joint"`` or ``"nested"``), ``form`` and
            ``priors`` of the joint law, ``target_N``, ``target_steps`` and
            ``tie_exponents`` of the nested pipeline, ``target_weights``; cmr:
            ``tolerance``, ``relative``; asymptote: ``tie_ensemble_exponent``).

    Returns:
        The law, or a :class:`LawSet` when the table gives several (CMR, recipes).

    Raises:
        ValueError: unknown law, unreadable table, missing or bad column (one line
            naming the file and column), or a table the law cannot be fitted to.
    """
    if law not in LAWS:
        raise ValueError(f"--law: unknown law {law!r}; choose one of {', '.join(LAWS)}")
    path = Path(table_path)
    df = read_table(path)
    fit_opts, law_opts = _split_options(law, dict(options), path)
    prov = _provenance(path)
    try:
        result = {"chinchilla": _chinchilla, "mixing": _mixing, "cmr": _cmr, "asymptote": _asymptote}[law](df, path, fit_opts, law_opts, prov)
    except FitError as exc:
        raise ValueError(f"{path}: the {law} law could not be fitted: {exc}") from exc
    if out is not None:
        from mixsearch.laws.export import save

        save(result, out)
    return result


def _chinchilla(df: pd.DataFrame, path: Path, opts: FitOptions, law_opts: dict[str, Any], prov: dict[str, Any]) -> Law:
    from mixsearch.laws.chinchilla import fit_chinchilla

    n, d, y = (numeric_column(df, c, path, positive=True) for c in ("N", "D", "loss"))
    return fit_chinchilla(n, d, y, opts, name=path.stem, provenance=prov)


def _mixing(df: pd.DataFrame, path: Path, opts: FitOptions, law_opts: dict[str, Any], prov: dict[str, Any]) -> Law:
    from mixsearch.laws.mixing import fit_mixing
    from mixsearch.laws.mixture import SUM_TOL
    from mixsearch.laws.nested import fit_nested

    wcols = [c for c in df.columns if c.startswith("w_")]
    if len(wcols) < 2:
        raise ValueError(f"{path}: missing columns 'w_<domain>': need two or more mixture weight columns, found {wcols or 'none'}")
    weights = np.column_stack([numeric_column(df, c, path, non_negative=True) for c in wcols])
    sums = weights.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > SUM_TOL)
    if bad.size:
        raise ValueError(f"{path}: columns 'w_*': row {int(bad[0]) + 2} sums to {sums[bad[0]]:.4g}, need 1")
    if "loss" in df.columns:
        losses = {"loss": numeric_column(df, "loss", path, positive=True)}
    else:
        lcols = [c for c in df.columns if c.startswith("loss_")]
        if not lcols:
            raise ValueError(f"{path}: missing column 'loss' (or 'loss_<target>' columns)")
        losses = {c[5:]: numeric_column(df, c, path, positive=True) for c in lcols}
    comps = [c[2:] for c in wcols]
    n, d, steps = (numeric_column(df, c, path, positive=True) if c in df.columns else None for c in ("N", "D", "steps"))
    if d is not None and steps is not None:
        raise ValueError(f"{path}: columns 'D' and 'steps': give one of them (tokens or steps), not both")
    varying = any(v is not None and np.unique(v).size > 1 for v in (n, d, steps))
    targeted = law_opts.get("target_N") is not None or law_opts.get("target_steps") is not None
    pipeline = law_opts.get("pipeline", "nested" if targeted else "joint")
    if pipeline not in ("joint", "nested"):
        raise ValueError(f"{path}: option pipeline: must be 'joint' or 'nested', got {pipeline!r}")
    if pipeline == "joint" and targeted:
        raise ValueError(f"{path}: target_N / target_steps are options of pipeline='nested'; the joint law predicts at any scale (law.predict(N=..., D=...))")
    if pipeline == "nested" and any(law_opts.get(k) is not None for k in ("form", "priors")):
        raise ValueError(f"{path}: form / priors are options of pipeline='joint'")
    common = {"options": opts, "name": path.stem, "provenance": prov, "target_weights": law_opts.get("target_weights")}
    if pipeline == "joint" and (varying or "pipeline" in law_opts):
        from mixsearch.laws.joint import fit_joint

        return fit_joint(weights, losses, comps, N=n, D=d, steps=steps, form=law_opts.get("form", "auto"), priors=law_opts.get("priors"), **common)
    if pipeline == "nested":
        return fit_nested(
            weights,
            losses,
            comps,
            N=n,
            steps=steps if steps is not None else d,  # the step law runs over tokens as well as over steps
            target_N=law_opts.get("target_N"),
            target_steps=law_opts.get("target_steps"),
            tie_exponents=law_opts.get("tie_exponents", True),
            **common,
        )
    scale = {"N": None if n is None else float(n[0]), "steps": None if steps is None else float(steps[0])}
    if d is not None:
        scale["tokens"] = float(d[0])
    return fit_mixing(weights, losses, comps, scale=scale, **common)


def _cmr(df: pd.DataFrame, path: Path, opts: FitOptions, law_opts: dict[str, Any], prov: dict[str, Any]) -> LawSet:
    from mixsearch.laws.cmr import DEFAULT_TOLERANCE, fit_cmr

    r = numeric_column(df, "R", path, non_negative=True)
    if np.any(r > 1):
        raise ValueError(f"{path}: column 'R': row {int(np.flatnonzero(r > 1)[0]) + 2} is above 1, need a ratio in [0, 1]")
    t = numeric_column(df, "T", path, non_negative=True)
    lg = numeric_column(df, "loss_general", path, positive=True)
    ld = numeric_column(df, "loss_domain", path, positive=True)
    base = {}
    for col in ("loss_general_0", "loss_domain_0"):
        if col in df.columns:
            values = numeric_column(df, col, path, positive=True)
            if np.ptp(values) > 0:
                raise ValueError(f"{path}: column {col!r}: must hold one value (the base model's loss)")
            base[col] = float(values[0])
    res = fit_cmr(
        r, t, lg, ld,
        loss_general_0=base.get("loss_general_0"),
        loss_domain_0=base.get("loss_domain_0"),
        tolerance=law_opts.get("tolerance", DEFAULT_TOLERANCE),
        relative=law_opts.get("relative", True),
        options=opts,
        provenance=prov,
    )
    return _law_set(list(res.laws), res.skipped)


def _asymptote(df: pd.DataFrame, path: Path, opts: FitOptions, law_opts: dict[str, Any], prov: dict[str, Any]) -> Law | LawSet:
    from mixsearch.laws.asymptote import fit_data_law, fit_size_law, joint_asymptote

    y = numeric_column(df, "loss", path, positive=True)
    recipes = df["recipe"].astype(str).to_numpy() if "recipe" in df.columns else np.full(len(df), "")
    laws: list[Law] = []
    for recipe in dict.fromkeys(recipes):
        rows = recipes == recipe
        suffix = f"[{recipe}]" if recipe else ""
        if "K" in df.columns:
            n = numeric_column(df, "N", path, positive=True)[rows]
            k = numeric_column(df, "K", path, positive=True)[rows]
            joint = joint_asymptote(n, k, y[rows], law_opts.get("tie_ensemble_exponent", True), opts, name=f"joint{suffix}", provenance=prov)
            laws.append(joint.law)
        elif "N" in df.columns:
            n = numeric_column(df, "N", path, positive=True)[rows]
            laws.append(fit_size_law(n, y[rows], recipe=recipe or None, options=opts, provenance=prov))
        elif "D" in df.columns:
            d = numeric_column(df, "D", path, positive=True)[rows]
            laws.append(fit_data_law(d, y[rows], options=opts, provenance=prov, name=f"data{suffix}"))
        else:
            raise ValueError(f"{path}: missing column 'N' (or 'K' with 'N', or 'D') for --law asymptote")
    return laws[0] if len(laws) == 1 else _law_set(laws)
