"""The ``mixsearch`` command (Typer). Parses arguments, calls :mod:`mixsearch.api`, prints.

Bad input ends with one line on stderr naming the field or file, and exit code 2.
"""

from __future__ import annotations

import os

# Idle OpenMP threads spin by default; beside other processes on the cores that made a GP
# fit 5-10x slower (docs/BENCHMARKS.md). Set before torch is imported; a user's value wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import functools  # noqa: E402
import json
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from mixsearch.interrupt import StudyInterrupted
from mixsearch.ledger import LedgerError
from mixsearch.study import StudyError

app = typer.Typer(help="Find the training-data mixture for a language model.", no_args_is_help=True, pretty_exceptions_enable=False)
study_app = typer.Typer(help="Run and inspect studies.", no_args_is_help=True)
data_app = typer.Typer(help="Build corpora.", no_args_is_help=True)
app.add_typer(study_app, name="study")
app.add_typer(data_app, name="data")

# Outside a terminal (a pipe, a log) Rich would cut lines at 80 columns: never wrap there.
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

USER_ERRORS = (StudyError, LedgerError, ValueError, FileNotFoundError, KeyError, PermissionError)


def _error(message: str) -> None:
    """One line on stderr: ``error: <message>``, the message printed as it is (a field name
    such as ``c[web]`` would otherwise read as Rich markup and vanish)."""
    line = Text("error: ", style="red")
    line.append(message)
    err_console.print(line, highlight=False, soft_wrap=True)


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn user errors into one line on stderr and exit 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except StudyInterrupted as stop:
            n = len(stop.returned)
            err_console.print(
                f"interrupted: {n} running trial{'s' if n != 1 else ''} back to pending (attempts not counted); "
                f"continue with: mixsearch study resume {stop.study}", highlight=False, markup=False,
            )
            raise typer.Exit(130) from None
        except KeyboardInterrupt:
            err_console.print("interrupted", highlight=False)
            raise typer.Exit(130) from None
        except USER_ERRORS as exc:
            msg = exc.line() if isinstance(exc, StudyError) else str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            _error(msg)
            raise typer.Exit(2) from None
        except BrokenPipeError:
            # The reader went away (`| head`): stop quietly, as other command-line tools do.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(0) from None
        except OSError as exc:
            _error(f"{exc.filename}: {exc.strerror or exc}" if exc.filename else str(exc.strerror or exc))
            raise typer.Exit(2) from None

    return wrapper


StorageOpt = typer.Option(None, "--storage", help="SQLAlchemy URL of the ledger (default: sqlite file under --root/<study>/).")
RootOpt = typer.Option(Path("runs"), "--root", help="Folder holding each study's default SQLite ledger.")
ExecutorOpt = typer.Option("local", help="local or ray.")
WorkersOpt = typer.Option(1, help="Evaluations in flight at once.")
PackOpt = typer.Option(1, help="Same-rung proxies trained together in one batch.")
AddressOpt = typer.Option(None, help="Ray cluster address (with --executor ray).")
QuietOpt = typer.Option(False, help="No progress bar.")
ExportOpt = typer.Option(True, help="Write fits/<study>.json at the end.")


def _run(path_or_name: str, storage: Optional[str], root: Path, executor: str, workers: int, pack: int, address: Optional[str], quiet: bool, export: bool, fork: Optional[str] = None, resume: bool = False) -> None:
    from mixsearch import api
    from mixsearch.progress import study_progress

    study_file = api.find_study_file(path_or_name, storage, root)
    study = api.load_study(study_file)
    # A resume continues the study it names (the name given, or the one the file names) or fails.
    expected = (study.name if path_or_name.endswith(".py") else path_or_name) if resume else None
    name = fork or study.name
    kwargs = {"fork": fork, "resume": expected}
    if quiet:
        summary = api.run_study(study_file, storage, root, executor, workers, pack, address, **kwargs)
    else:
        with study_progress(name, err_console) as progress:
            summary = api.run_study(study_file, storage, root, executor, workers, pack, address, progress=progress, **kwargs)
    c = summary.counts
    console.print(
        f"[bold]{name}[/bold]: {summary.stopped_because}; done {c['done']}, failed {c['failed']}, "
        f"cost {summary.spent:.3g}, {summary.elapsed:.0f} s"
    )
    if not export:
        rec = summary.recommendation
        if rec is not None:
            weights = ", ".join(f"{d}={w:.3f}" for d, w in zip(study.domain_names, rec.weights))
            console.print(f"the search's current pick: {weights} (run 'mixsearch study export {name}' for the answer at the target {study.ladder.target.name})", markup=False)
        return
    from mixsearch.answer import TargetAnswer
    from mixsearch.progress import stages

    opened = api.open_study(name, storage, root)
    try:
        with stages(err_console, quiet=quiet) as say:
            out = api.export_study(opened, say=say)
    finally:
        opened.ledger.dispose()
    doc = json.loads(out.read_text())
    if (doc.get("recommendation") or {}).get("kind") == "cmr":
        from mixsearch.schedule_answer import CPTAnswer

        cmr = CPTAnswer.from_export(doc["recommendation"])
        console.print(cmr.line(), markup=False)
        for warning in cmr.warnings:
            console.print(f"warning: {warning}", markup=False)
    elif doc.get("recommendation"):
        answer = TargetAnswer.from_export(doc["recommendation"])
        unit = "nats/token" if study.objective.metric is None and study.evaluator.kind == "proxy" else None
        console.print(answer.line(study.domain_names, study.objective.label, unit), markup=False)
        for warning in answer.warnings:
            console.print(f"warning: {warning}", markup=False)
    console.print(f"wrote {out}")


@study_app.command("start")
@user_errors
def study_start(
    study_file: Path = typer.Argument(..., help="Study file (Python) that defines one mixsearch.Study."),
    storage: Optional[str] = StorageOpt,
    root: Path = RootOpt,
    executor: str = ExecutorOpt,
    workers: int = WorkersOpt,
    pack: int = PackOpt,
    address: Optional[str] = AddressOpt,
    quiet: bool = QuietOpt,
    export: bool = ExportOpt,
    fork: Optional[str] = typer.Option(None, "--fork", help="Run this file as a new study NEW, starting from the compatible trials of the study it names (when the file changed)."),
) -> None:
    """Run a study until its budget is spent (continues an existing ledger)."""
    _run(str(study_file), storage, root, executor, workers, pack, address, quiet, export, fork=fork)


@study_app.command("resume")
@user_errors
def study_resume(
    name: str = typer.Argument(..., help="Study name (its ledger records the study file) or study file."),
    storage: Optional[str] = StorageOpt,
    root: Path = RootOpt,
    executor: str = ExecutorOpt,
    workers: int = WorkersOpt,
    pack: int = PackOpt,
    address: Optional[str] = AddressOpt,
    quiet: bool = QuietOpt,
    export: bool = ExportOpt,
) -> None:
    """Continue a stopped or crashed study: orphaned trials rerun, finished ones never do."""
    _run(name, storage, root, executor, workers, pack, address, quiet, export, resume=True)


@study_app.command("status")
@user_errors
def study_status(
    name: str = typer.Argument(..., help="Study name or study file."),
    storage: Optional[str] = StorageOpt,
    root: Path = RootOpt,
    limit: int = typer.Option(20, help="Rows shown per rung."),
    as_json: bool = typer.Option(False, "--json", help="Print the table as JSON records."),
) -> None:
    """Table of trials and the best so far."""
    from mixsearch import api

    from mixsearch.trial import best_done

    opened = api.open_study(name, storage, root)
    try:
        df = api.status_table(opened)
        counts = opened.ledger.counts()
        best = best_done(opened.ledger.trials(), opened.study.objective)
        domains = list(opened.ledger.domains or opened.ledger.legacy_domains() or opened.study.domain_names)
        changes = api.file_changes(opened)
    finally:
        opened.ledger.dispose()
    if as_json:
        typer.echo(df.to_json(orient="records"))
        return
    study = opened.study
    console.print(f"[bold]{study.name}[/bold] " + " · ".join(f"{k} {v}" for k, v in counts.items()))
    if changes:
        console.print(f"note: {opened.study_file} has changed since these trials ran ({'; '.join(changes)}); they are shown as stored", markup=False)
    if df.empty:
        console.print("no trials yet")
        return
    rows = []
    for _, g in df.groupby("rung", sort=False):
        for _, r in g.head(limit).iterrows():
            rows.append([
                str(r["number"]), str(r["rung"]), str(r["state"]), _num(r["objective"], ".4f"),
                *[_num(r.get(f"w_{d}"), ".3f") for d in domains],
                _num(r["cost"], ".3g"), _num(r["seconds"], ".1f"),
            ])
    emit_table(["#", "rung", "state", "objective", *domains, "cost", "s"], rows, left=("rung", "state"))
    if best is not None:
        weights = ", ".join(f"{d}={w:.3f}" for d, w in zip(domains, best.candidate.weights))
        console.print(f"best so far: {best.objective:.4f} at {best.candidate.rung} ({weights})", markup=False)


def _num(v: Any, spec: str) -> str:
    """A number formatted, or empty for a missing one (NaN, None)."""
    if v is None or (isinstance(v, float) and v != v):
        return ""
    return format(float(v), spec)


def emit_table(header: list[str], rows: list[list[str]], left: tuple[str, ...] = ()) -> None:
    """A table: boxed in a terminal; plain aligned text, never cut, in a pipe or a log."""
    if console.is_terminal:
        table = Table(show_lines=False)
        for col in header:
            table.add_column(col, justify="left" if col in left else "right", overflow="fold")
        for r in rows:
            table.add_row(*r)
        console.print(table)
        return
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    for r in [header, *rows]:
        cells = [str(x).ljust(w) if h in left else str(x).rjust(w) for x, w, h in zip(r, widths, header)]
        typer.echo("  ".join(cells).rstrip())


@study_app.command("export")
@user_errors
def study_export(
    name: str = typer.Argument(..., help="Study name or study file."),
    out: Optional[Path] = typer.Option(None, help="Output file (default fits/<study>.json)."),
    storage: Optional[str] = StorageOpt,
    root: Path = RootOpt,
    laws: bool = typer.Option(True, help="Fit laws on the study's runs and include them."),
) -> None:
    """Write the study's results, best mixtures and fitted laws as JSON."""
    from mixsearch import api

    from mixsearch.progress import stages

    opened = api.open_study(name, storage, root)
    try:
        with stages(err_console) as say:
            path = api.export_study(opened, out, with_laws=laws, say=say)
    finally:
        opened.ledger.dispose()
    console.print(f"wrote {path}")


@study_app.command("report")
@user_errors
def study_report(
    name: str = typer.Argument(..., help="Study name or study file."),
    out: Optional[Path] = typer.Option(None, help="Output folder (default reports/<study>/)."),
    storage: Optional[str] = StorageOpt,
    root: Path = RootOpt,
) -> None:
    """Write PNG plots and one self-contained HTML page for the study."""
    from mixsearch import api
    from mixsearch.report import study_report as make_report

    from mixsearch.progress import stages

    opened = api.open_study(name, storage, root)
    try:
        with stages(err_console) as say:
            path = make_report(opened, out or Path("reports") / opened.study.name, say=say)
    finally:
        opened.ledger.dispose()
    console.print(f"wrote {path}")


@app.command("worker")
@user_errors
def worker(
    name: str = typer.Argument(..., help="Study name (its ledger records the study file) or study file."),
    storage: Optional[str] = StorageOpt,
    root: Path = RootOpt,
    executor: str = ExecutorOpt,
    workers: int = WorkersOpt,
    pack: int = PackOpt,
    address: Optional[str] = AddressOpt,
    wait: bool = typer.Option(False, help="Keep waiting for new trials until the study's budget is spent."),
    idle_timeout: Optional[float] = typer.Option(None, help="With --wait: stop after this many seconds without work."),
) -> None:
    """Claim and run a study's pending trials; never propose (one per machine or GPU, beside `study start`)."""
    from mixsearch import api
    study_file = api.find_study_file(name, storage, root)
    summary = api.run_worker(study_file, storage, root, executor, workers, pack, address, wait=wait, idle_timeout=idle_timeout)
    c = summary.counts
    console.print(f"worker stopped: {summary.stopped_because}; study has done {c['done']}, failed {c['failed']}, pending {c['pending']}, running {c['running']}")


@app.command("fit")
@user_errors
def fit(
    table: Path = typer.Argument(..., help="CSV table of runs (columns: see docs/laws.md)."),
    law: str = typer.Option(..., "--law", help="chinchilla, mixing, cmr or asymptote."),
    out: Optional[Path] = typer.Option(None, help="Output JSON (default fits/<table stem>.<law>.json)."),
) -> None:
    """Fit a scaling law to a table of runs and write it as JSON."""
    from mixsearch.laws import fit_table

    from mixsearch.progress import stages
    from mixsearch.threads import limited

    path = out or Path("fits") / f"{table.stem}.{law}.json"
    with stages(err_console) as say, limited("law"):
        say(f"fitting the {law} law to {table} (multi-start fit, bootstrap intervals, held-out error)")
        result = fit_table(table, law, out=path)
    console.print(f"wrote {path}")
    summary = getattr(result, "summary", None)
    if callable(summary):
        # Parameter names such as c[web] would read as Rich markup tags and vanish.
        console.print(summary(), markup=False, highlight=False)


@app.command("bench")
@user_errors
def bench(
    oracle: str = typer.Option(..., help="table:PATH.csv or synthetic:NAME."),
    proposers: str = typer.Option("mfbo,random,regmix", help="Comma-separated proposer names."),
    seeds: int = typer.Option(5, help="Seeds per proposer."),
    budget: float = typer.Option(10.0, help="Budget in target-run units."),
    out: Path = typer.Option(Path("bench-out"), help="Output folder."),
    target: Optional[str] = typer.Option(None, help="Target fidelity label (default: costliest)."),
    batch_size: int = typer.Option(1, help="Candidates per ask."),
    force: bool = typer.Option(False, "--force", help="Overwrite an earlier bench's outputs in --out."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON records (for scripts)."),
    quiet: bool = QuietOpt,
) -> None:
    """Run proposers side by side on an oracle through the study loop; write curves, summary and regret plot."""
    from mixsearch.bench.harness import run_bench

    names = [p.strip() for p in proposers.split(",") if p.strip()]
    summary = run_bench(oracle, names, seeds, budget, out, target=target, batch_size=batch_size, progress=not (quiet or as_json), force=force)
    if as_json:
        typer.echo(summary.to_json(orient="records"))
        return
    # Plain text, never cut or wrapped (a log or a pipe gets every value in full).
    typer.echo(summary.to_string(index=False))
    typer.echo(f"wrote {out}/curves.csv, {out}/summary.csv, {out}/regret.png")


@data_app.command("demo")
@user_errors
def data_demo() -> None:
    """Build (or find cached) the demo corpus: five domains of real text."""
    from mixsearch.proxy.corpus import build_demo_corpus

    corpus = build_demo_corpus()
    console.print(f"demo corpus {corpus.hash} at {corpus.path}")
    manifest = json.loads((Path(corpus.path) / "manifest.json").read_text())
    table = Table("domain", "train tokens", "val tokens", "source", "licence")
    for name, d in manifest.get("domains", {}).items():
        table.add_row(name, str(d.get("train_tokens")), str(d.get("val_tokens")), str(d.get("source", ""))[:40], str(d.get("licence", ""))[:40])
    console.print(table)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
