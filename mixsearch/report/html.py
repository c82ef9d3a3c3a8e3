"""One self-contained HTML page for a study: summary, recommendation, figures, laws, trials.

Images are embedded as base64 ``data:`` URIs and the style sheet is inline, so the
page is a single file that opens anywhere (mail it, attach it to an issue) and needs
no network. Every string from the study or the ledger is HTML-escaped.
"""

from __future__ import annotations

import html
import math
import time
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import pandas as pd

from mixsearch import __version__
from mixsearch.report.style import engineering, png_data_uri

if TYPE_CHECKING:
    from mixsearch.report.gather import FigureBlock, StudyData

MAX_TRIAL_ROWS = 60
MAX_LAW_PARAMS = 16  # a mixing law over many domains has K² parameters; the JSON has them all

CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 0; color: #1d232a; background: #f6f7f9; }
main { max-width: 1240px; margin: 0 auto; padding: 24px 32px 64px; background: #fff; }
h1 { font-size: 26px; margin: 8px 0 4px; }
h2 { font-size: 19px; margin: 36px 0 8px; border-bottom: 1px solid #e3e6ea; padding-bottom: 4px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
.sub { color: #5b6570; font-size: 13px; margin-bottom: 12px; }
table { border-collapse: collapse; font-size: 13px; margin: 6px 0 12px; }
th, td { padding: 3px 10px; border-bottom: 1px solid #eceff2; text-align: right; }
th { background: #f1f3f5; font-weight: 600; }
td.l, th.l { text-align: left; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 12px 0; }
.card { border: 1px solid #e3e6ea; border-radius: 6px; padding: 8px 14px; min-width: 150px; }
.card .k { color: #5b6570; font-size: 12px; }
.card .v { font-size: 18px; font-weight: 600; }
.rec { border: 2px solid #1d232a; border-radius: 6px; padding: 10px 16px; display: inline-block; }
.bar { display: inline-block; height: 10px; background: #3b75af; vertical-align: middle; }
figure { margin: 8px 0 24px; }
figure img { max-width: 100%; border: 1px solid #eceff2; }
figcaption { color: #3d4650; font-size: 13px; max-width: 1000px; margin-top: 4px; line-height: 1.45; }
.note { background: #fff7e6; border-left: 4px solid #e0a100; padding: 6px 10px; font-size: 13px; margin: 6px 0; }
nav a { margin-right: 12px; font-size: 13px; }
code { background: #f1f3f5; padding: 1px 4px; border-radius: 3px; }
"""


def esc(x: Any) -> str:
    """HTML-escaped text of anything."""
    return html.escape(str(x), quote=True)


def fmt(x: Any, digits: int = 4) -> str:
    """A table cell: floats to ``digits`` significant places, None/NaN as a dash."""
    if x is None:
        return "–"
    if isinstance(x, float):
        if not math.isfinite(x):
            return "–"
        return f"{x:.{digits}g}" if abs(x) >= 1e5 or (x != 0 and abs(x) < 1e-3) else f"{x:.{digits}f}".rstrip("0").rstrip(".") or "0"
    return str(x)


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], left: int = 1, raw_cols: Sequence[int] = ()) -> str:
    """An HTML table.

    Args:
        header: Column names.
        rows: Cell values (formatted with :func:`fmt`, then escaped).
        left: How many leading columns are left-aligned (labels).
        raw_cols: Columns whose cells are trusted HTML (already escaped).
    """

    def cell(tag: str, i: int, v: Any, raw: bool = False) -> str:
        cls = ' class="l"' if i < left else ""
        return f"<{tag}{cls}>{v if raw else esc(fmt(v))}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(cell("td", i, v, i in raw_cols) for i, v in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def cards(items: Sequence[tuple[str, str]]) -> str:
    """A row of key/value cards."""
    inner = "".join(f'<div class="card"><div class="k">{esc(k)}</div><div class="v">{esc(v)}</div></div>' for k, v in items)
    return f'<div class="cards">{inner}</div>'


def note_html(text: str) -> str:
    return f'<div class="note">{esc(text)}</div>'


def figure_html(block: "FigureBlock") -> str:
    """A figure with its heading, embedded PNG, caption and note."""
    parts = [f'<h2 id="{esc(block.key)}">{esc(block.title)}</h2>']
    if block.note:
        parts.append(note_html(block.note))
    if block.png is not None and block.png.is_file() and not block.empty:
        parts.append(
            f'<figure><img alt="{esc(block.title)}" src="{png_data_uri(block.png)}">'
            f"<figcaption>{esc(block.caption)} <span class=\"sub\">({esc(block.png.name)})</span></figcaption></figure>"
        )
    return "\n".join(parts)


def page(title: str, subtitle: str, body: Sequence[str]) -> str:
    """A complete HTML document."""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{esc(title)}</title>"
        f"<style>{CSS}</style></head><body><main>\n<h1>{esc(title)}</h1><div class=\"sub\">{esc(subtitle)}</div>\n"
        + "\n".join(body)
        + "\n</main></body></html>\n"
    )


# -- the study page ------------------------------------------------------------------


def study_page(data: "StudyData", blocks: Sequence["FigureBlock"], ledger_url: str | None = None) -> str:
    """The study report page.

    Args:
        data: What the report gathered.
        blocks: Figures in page order.
        ledger_url: The ledger, named in the subtitle (password hidden by the caller).
    """
    study = data.study
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    subtitle = f"generated {when} by mixsearch {__version__}"
    if ledger_url:
        subtitle += f" · ledger {ledger_url}"
    snapshot = (data.export or {}).get("snapshot")
    if snapshot:
        subtitle += f" · data snapshot {snapshot}"
    body = [
        _nav(blocks),
        _summary(data),
        _recommendation(data),
        _best_per_rung(data),
        *[figure_html(b) for b in blocks],
        _laws(data),
        _notes(data),
        _trials(data),
    ]
    return page(f"mixsearch report: {study.name}", subtitle, [b for b in body if b])


def _nav(blocks: Sequence["FigureBlock"]) -> str:
    links = [("summary", "Summary"), ("recommendation", "Recommendation")] + [(b.key, b.title) for b in blocks]
    links += [("laws-summary", "Law parameters"), ("trials", "Trials")]
    return "<nav>" + "".join(f'<a href="#{esc(k)}">{esc(t)}</a>' for k, t in links) + "</nav>"


def _summary(data: "StudyData") -> str:
    study = data.study
    df = data.trials
    counts = {s: int((df["state"] == s).sum()) if not df.empty else 0 for s in ("done", "failed", "running", "pending")}
    spent = float(pd.to_numeric(df["cost"], errors="coerce").fillna(0).sum()) if not df.empty else 0.0
    unit = data.cost_unit()
    budget = study.budget
    limits = []
    if budget.max_trials:
        limits.append(f"{budget.max_trials} trials")
    if budget.max_cost:
        limits.append(f"{engineering(budget.max_cost)} {unit}")
    if budget.max_seconds:
        limits.append(f"{budget.max_seconds:g} s")
    target = study.ladder.target
    target_text = target.name
    if target.n_params and target.tokens:
        target_text += f" (N={engineering(target.n_params)}, D={engineering(target.tokens)} tokens)"
    items = [
        ("trials done", str(counts["done"])),
        ("failed", str(counts["failed"])),
        ("running / pending", f"{counts['running']} / {counts['pending']}"),
        (f"cost spent ({unit})", engineering(spent)),
        ("budget", " or ".join(limits) or "–"),
        ("target scale", target_text),
    ]
    rungs = [
        (r.name, engineering(r.n_params) if r.n_params else "–", engineering(r.tokens) if r.tokens else "–", engineering(r.run_cost))
        for r in (*study.ladder.rungs, target)
    ]
    obj = study.objective
    objective = "mean validation loss over all domains" if obj.domain_weights is None else "weighted loss: " + ", ".join(
        f"{d} × {w:g}" for d, w in obj.domain_weights.items()
    )
    details = [
        ("domains", ", ".join(study.domain_names)),
        ("objective", f"{objective} ({obj.direction})"),
        ("proposer", f"{study.proposer.name} (batch {study.proposer.batch_size})"),
        ("evaluator", study.evaluator.kind),
        ("seed", str(study.seed)),
    ]
    return (
        '<h2 id="summary">Summary</h2>'
        + cards(items)
        + table(["", ""], details)
        + "<h3>Fidelity ladder</h3>"
        + table(["rung", "N (params)", "D (tokens)", f"cost of one run ({unit})"], [list(r[:3]) + [r[3]] for r in rungs[:-1]]
                + [[f"{target.name} (target)", rungs[-1][1], rungs[-1][2], rungs[-1][3]]])
    )


def _recommendation(data: "StudyData") -> str:
    rec = (data.export or {}).get("recommendation")
    head = '<h2 id="recommendation">Recommendation at the target scale</h2>'
    if rec and rec.get("kind") == "cmr":
        return head + _cmr_recommendation(data, rec)
    if not rec or not rec.get("weights"):
        return head + note_html("No recommendation: the study has no done trial with a finite objective yet.")
    rows = []
    for d in data.domains:
        w = float(rec["weights"].get(d, 0.0))
        bar = f'<span class="bar" style="width:{max(w, 0) * 300:.0f}px"></span>'
        rows.append([d, w, bar])
    quantity, unit = data.objective_label()
    what = quantity.split(": ", 1)[-1]
    t = rec.get("target") or {}
    where = f"<b>{esc(t.get('name'))}</b>"
    if t.get("N") and t.get("D"):
        where += f" (N={esc(engineering(t['N']))}, D={esc(engineering(t['D']))} tokens)"
    line = f"The mixture for the target {where} comes from {esc(rec.get('mixture_from', '?'))}."
    pred = rec.get("predicted_objective")
    if pred is None:
        line += f" <b>No predicted {esc(what)} at the target</b>: {esc(rec.get('reason') or 'no law could be fitted')}."
    else:
        level = float(rec.get("level") or 0.9)
        interval = "" if rec.get("lower") is None else f" ({level:.0%} interval {esc(fmt(rec['lower']))} to {esc(fmt(rec['upper']))})"
        line += f" Predicted {esc(what)} there: <b>{esc(fmt(pred))}</b> {esc(unit or '')}{interval}; basis: <b>{esc(rec.get('basis'))}</b>"
        if rec.get("law"):
            line += f" (law <code>{esc(rec['law'])}</code>)"
        if rec.get("extrapolated"):
            factors = rec.get("factors") or {}
            bits = [f"×{float(v):.3g} in {k}" for k, v in factors.items() if v is not None and float(v) > 1.0]
            line += f", <b>extrapolated</b> {esc(' and '.join(bits))} beyond the runs the law was fitted on"
        line += "."
        me = rec.get("model_error") or {}
        if me and not me.get("measured", False):
            line += f" The law's extrapolation error could not be measured: {esc(me.get('reason', ''))}."
            if me.get("assumed_tau"):
                line += f" The interval assumes one of {esc(fmt(me['assumed_tau'], 3))} in log loss per e-fold beyond the runs instead."
    warnings = "".join(note_html(f"Warning: {w}") for w in rec.get("warnings") or [])
    search = rec.get("search")
    search_html = ""
    if search:
        picks = ", ".join(f"{d} {float(search['weights'].get(d, 0.0)):.3f}" for d in data.domains)
        search_html = f"<p>The {esc(data.study.proposer.name)} proposer's own pick (basis: {esc(search.get('basis'))}, at rung {esc(search.get('rung'))}): {esc(picks)}.</p>"
    return head + f'<div class="rec"><p>{line}</p>' + table(["domain", "weight", ""], rows, raw_cols=(2,)) + "</div>" + warnings + search_html


def _cmr_recommendation(data: "StudyData", rec: Mapping[str, Any]) -> str:
    """A continual pre-training study's answer: the critical ratio at the target, its basis and interval."""
    t = rec.get("target") or {}
    where = f"<b>{esc(t.get('name'))}</b> (N={esc(engineering(t['N']))}, T={esc(engineering(t['T']))} continued tokens)" if t.get("N") and t.get("T") else esc(t.get("name"))
    tol = f"{float(rec.get('tolerance', 0)):.3g}" + (" of the base model's general loss" if rec.get("relative") else " nats/token")
    if rec.get("ratio") is None:
        return note_html(f"No critical ratio of {rec.get('new_domain')} at the target: {rec.get('reason') or 'no law could be fitted'}.")
    level = float(rec.get("level") or 0.9)
    interval = "" if rec.get("lower") is None else f" ({level:.0%} interval {esc(fmt(rec['lower'], 3))} to {esc(fmt(rec['upper'], 3))})"
    line = (
        f"The critical mixture ratio of <b>{esc(rec.get('new_domain'))}</b> at the target {where}, the largest share of new-domain data "
        f"that keeps the general loss within {esc(tol)}: <b>R = {esc(fmt(rec['ratio'], 3))}</b>{interval}; basis: <b>{esc(rec.get('basis'))}</b>"
    )
    if rec.get("law"):
        line += f" (law <code>{esc(rec['law'])}</code>)"
    if rec.get("extrapolated"):
        bits = [f"×{float(v):.3g} in {k}" for k, v in (rec.get("factors") or {}).items() if v is not None and float(v) > 1.0]
        line += f", <b>extrapolated</b> {esc(' and '.join(bits))} beyond the runs"
    line += f". It comes from {esc(rec.get('mixture_from', '?'))}."
    for key, what in (("predicted_general_loss", "general loss"), ("predicted_domain_loss", f"{rec.get('new_domain')} loss")):
        v = rec.get(key) or {}
        if v.get("value") is not None:
            span = "" if v.get("lower") is None else f" ({level:.0%} interval {esc(fmt(v['lower']))} to {esc(fmt(v['upper']))})"
            line += f" Predicted {esc(what)} there: {esc(fmt(v['value']))} nats/token{span}."
    me = rec.get("model_error") or {}
    if me.get("measured"):
        line += f" Fitted without the runs at {esc(me.get('held_out'))}, the surface missed them by {esc(fmt(me.get('heldout_rmse'), 3))} nats/token (RMS)."
    elif me.get("reason"):
        line += f" Its extrapolation error could not be measured: {esc(me['reason'])}."
    rows = [[d, float(w), f'<span class="bar" style="width:{max(float(w), 0) * 300:.0f}px"></span>'] for d, w in (rec.get("weights") or {}).items()]
    by_t = rec.get("cmr_by_T") or []
    t_rows = [[engineering(r["T"]), fmt(r.get("surface"), 3), fmt(r.get("ratio_law"), 3)] for r in by_t]
    warnings = "".join(note_html(f"Warning: {w}") for w in rec.get("warnings") or [])
    return (
        f'<div class="rec"><p>{line}</p>' + table(["domain", "weight at the critical ratio", ""], rows, raw_cols=(2,)) + "</div>"
        + ("<h3>Critical ratio at each token count run</h3>" + table(["T (tokens)", "surface", "per-T ratio law (the paper's)"], t_rows) if t_rows else "")
        + warnings
    )


def _best_per_rung(data: "StudyData") -> str:
    best = (data.export or {}).get("best_per_rung") or {}
    if not best:
        return ""
    num = {}
    if not data.trials.empty:
        num = dict(zip(data.trials["trial_id"], data.trials["number"]))
    rows = [
        [rung, b.get("n_trials"), num.get(b.get("trial_id"), "–"), b.get("objective"), *[b["weights"].get(d) for d in data.domains]]
        for rung, b in best.items()
    ]
    return "<h3>Best observed mixture per rung</h3>" + table(["rung", "done trials", "trial #", "objective", *data.domains], rows)


def _laws(data: "StudyData") -> str:
    export = data.export or {}
    laws: list[Mapping[str, Any]] = export.get("laws") or []
    skipped: list[str] = export.get("laws_skipped") or []
    parts = ['<h2 id="laws-summary">Laws: parameters and fit quality</h2>']
    if not laws:
        parts.append(note_html("No law was fitted on this study's runs."))
    for law in laws:
        parts.append(_law_table(law))
    for s in skipped:
        parts.append(note_html(f"skipped: {s}"))
    parts.append(
        '<p class="sub">Each law is stored in the export JSON in schema <code>mixsearch.law/v1</code>; '
        "a planner reads it with <code>mixsearch.laws.load(path).predict(...)</code> (see docs/laws.md).</p>"
    )
    return "\n".join(parts)


def _law_table(law: Mapping[str, Any]) -> str:
    """One law (a ``mixsearch.law/v1`` document): formula, parameters with intervals, fit quality."""
    name = law.get("name") or law.get("kind") or "law"
    head = f"<h3>{esc(name)} <span class=\"sub\">({esc(law.get('kind', '?'))}/{esc(law.get('form', '?'))})</span></h3>"
    if law.get("formula"):
        head += f"<p><code>{esc(law['formula'])}</code></p>"
    params = law.get("parameters") or {}
    intervals = law.get("intervals") or {}
    level = law.get("level")
    shown = list(params.items())[:MAX_LAW_PARAMS]
    fixed = _fixed_parameters(law)
    rows = []
    flagged = 0
    for k, v in shown:
        iv = intervals.get(k) or {}
        ci = f"[{fmt(iv.get('lower'))}, {fmt(iv.get('upper'))}]" if iv else "–"
        status = fixed.get(k.split("[", 1)[0]) or ("not determined by the data" if undetermined(v, iv) else "")
        flagged += status == "not determined by the data"
        rows.append([k, v, ci, status])
    text = head
    if rows:
        interval = f"{float(level):.0%} interval" if level else "interval"
        text += table(["parameter", "value", interval, "note"], rows)
        if flagged:
            text += (f'<p class="sub">{flagged} parameter(s) marked "not determined by the data": their interval spans more '
                     "than a factor of 10 (or crosses zero by more than the value), so the runs do not pin them down; "
                     "predictions may still be fine where the runs are, but do not read these values.</p>")
        if len(params) > MAX_LAW_PARAMS:
            text += f'<p class="sub">… and {len(params) - MAX_LAW_PARAMS} more parameters (all in the export JSON).</p>'
    d = law.get("diagnostics") or {}
    me = (law.get("extra") or {}).get("model_error") or {}
    held = d.get("cv_rmse")
    quality = [
        ("points", d.get("n_points")),
        ("in-sample rmse (nats/token)", d.get("rmse_natural")),
        ("held-out rmse", held if held is not None else ("not measured" if not me.get("measured") else None)),
        ("held-out folds", d.get("cv_folds") or None),
        ("held-out rung: interval coverage", _total(me.get("coverage")) if me.get("measured") else None),
        ("converged", d.get("converged")),
        ("bootstrap resamples", d.get("bootstrap_resamples")),
    ]
    quality = [(k, v) for k, v in quality if v is not None]
    if quality:
        text += table([k for k, _ in quality], [[v for _, v in quality]], left=0)
    if me and not me.get("measured", True):
        assumed = f"; its intervals assume {fmt(me['assumed_tau'], 3)} in log loss per e-fold beyond the runs" if me.get("assumed_tau") else ""
        text += note_html(f"The law's extrapolation error was not measured: {me.get('reason', '')}{assumed}")
    return text


def undetermined(value: Any, interval: Mapping[str, Any]) -> bool:
    """Whether the data leave a parameter undetermined: an interval spanning more than a
    factor of 10 for a positive parameter, or wider than twice the value's size otherwise."""
    lo, hi, v = _num(interval.get("lower")), _num(interval.get("upper")), _num(value)
    if not (math.isfinite(lo) and math.isfinite(hi) and math.isfinite(v)):
        return False
    if lo > 0 and hi > 0:
        return hi / lo > 10.0
    return (hi - lo) > 2.0 * max(abs(v), 1e-12)


def _fixed_parameters(law: Mapping[str, Any]) -> dict[str, str]:
    """Parameter base names held at a given value rather than fitted (and why)."""
    extra = law.get("extra") or {}
    out = {name: "fixed, not fitted" for name in (extra.get("fixed") or {})}
    for name, why in (extra.get("exponents") or {}).items():
        if why != "fitted":
            out[name] = why
    return out


def _total(v: Any) -> Any:
    if isinstance(v, Mapping):
        return v.get("(total)", next(iter(v.values()), None))
    return v


def _num(x: Any) -> float:
    """A cell as a float (NaN for None or text)."""
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def _notes(data: "StudyData") -> str:
    if not data.notes:
        return ""
    return "<h2 id=\"notes\">Notes</h2>" + "".join(note_html(n) for n in data.notes)


def _trials(data: "StudyData") -> str:
    df = data.trials
    head = '<h2 id="trials">Trials</h2>'
    if df.empty:
        return head + note_html("No trials yet.")
    order = df.copy()
    order["objective"] = pd.to_numeric(order["objective"], errors="coerce")
    order = order.sort_values(["rung", "objective"], ascending=[True, data.minimize], na_position="last")
    shown = order.head(MAX_TRIAL_ROWS)
    header = ["#", "rung", "state", "objective", f"cost ({data.cost_unit()})", "seconds", *data.domains, "error"]
    rows = [
        [r["number"], r["rung"], r["state"], r["objective"], engineering(_num(r["cost"])), _num(r["seconds"]),
         *[r.get(f"w_{d}") for d in data.domains], r.get("error") or ""]
        for _, r in shown.iterrows()
    ]
    more = f"<p class=\"sub\">{len(shown)} of {len(df)} trials shown; all of them are in trials.csv beside this page.</p>"
    return head + more + table(header, rows, left=3)
