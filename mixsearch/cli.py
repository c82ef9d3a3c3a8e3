"""The ``mixsearch`` command (Typer). Parses arguments, calls :mod:`mixsearch.api`, prints.

Bad input ends with one line on stderr naming the field or file, and exit code 2.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from rich.console import Console
from rich.table import Table

from mixsearch.ledger import LedgerError
from mixsearch.study import StudyError

app = typer.Typer(help="Find the training-data mixture for a language model.", no_args_is_help=True, pretty_exceptions_enable=False)
study_app = typer.Typer(help="Run and inspect studies.", no_args_is_help=True)
data_app = typer.Typer(help="Build corpora.", no_args_is_help=True)
app.add_typer(study_app, name="study")
app.add_typer(data_app, name="data")

console = Console()
err_console = Console(stderr=True)

USER_ERRORS = (StudyError, LedgerError, ValueError, FileNotFoundError, KeyError, PermissionError)


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn user errors into one line on stderr and exit 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as exc:
            msg = exc.line() if isinstance(exc, StudyError) else str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            err_console.print(f"[red]error:[/red] {msg}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except OSError as exc:
            err_console.print(f"[red]error:[/red] {exc.filename or ''}: {exc.strerror or exc}", highlight=False, soft_wrap=True)
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


def _run(path_or_name: str, storage: Optional[str], root: Path, executor: str, workers: int, pack: int, address: Optional[str], quiet: bool, export: bool) -> None:
    from mixsearch import api
    from mixsearch.progress import RichProgress

    study_file = api.find_study_file(path_or_name, storage, root)
    study = api.load_study(study_file)
    if quiet:
        summary = api.run_study(study_file, storage, root, executor, workers, pack, address)
    else:
        with RichProgress(study.name, err_console) as progress:
            summary = api.run_study(study_file, storage, root, executor, workers, pack, address, progress=progress)
    c = summary.counts
    console.print(
        f"[bold]{study.name}[/bold]: {summary.stopped_because}; done {c['done']}, failed {c['failed']}, "
        f"cost {summary.spent:.3g}, {summary.elapsed:.0f} s"
    )
    rec = summary.recommendation
    if rec is not None:
        weights = ", ".join(f"{d}={w:.3f}" for d, w in zip(study.domain_names, rec.weights))
        pred = "" if rec.predicted is None else f" (objective {rec.predicted:.4f}{'' if rec.std is None else f' ± {rec.std:.4f}'} at {rec.rung})"
        console.print(f"recommended mixture: {weights}{pred}")
    if export:
        opened = api.open_study(study_file, storage, root)
        try:
            out = api.export_study(opened)
        finally:
            opened.ledger.dispose()
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
) -> None:
    """Run a study until its budget is spent (continues an existing ledger)."""
    _run(str(study_file), storage, root, executor, workers, pack, address, quiet, export)


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
    _run(name, storage, root, executor, workers, pack, address, quiet, export)


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

    opened = api.open_study(name, storage, root)
    try:
        df = api.status_table(opened)
        counts = opened.ledger.counts()
    finally:
        opened.ledger.dispose()
    if as_json:
        typer.echo(df.to_json(orient="records"))
        return
    study = opened.study
    console.print(f"[bold]{study.name}[/bold] " + " · ".join(f"{k} {v}" for k, v in counts.items()))
    if df.empty:
        console.print("no trials yet")
        return
    table = Table(show_lines=False)
    for col in ["#", "rung", "state", "objective", *study.domain_names, "cost", "s"]:
        table.add_column(col, justify="right" if col not in ("rung", "state") else "left")
    for _, g in df.groupby("rung", sort=False):
        for _, r in g.head(limit).iterrows():
            obj = "" if r["objective"] != r["objective"] or r["objective"] is None else f"{r['objective']:.4f}"
            table.add_row(
                str(r["number"]), str(r["rung"]), str(r["state"]), obj,
                *[f"{r[f'w_{d}']:.3f}" for d in study.domain_names],
                "" if r["cost"] != r["cost"] or r["cost"] is None else f"{r['cost']:.3g}",
                "" if r["seconds"] != r["seconds"] or r["seconds"] is None else f"{r['seconds']:.1f}",
            )
    console.print(table)
    done = df[df["state"] == "done"]
    if not done.empty:
        best = done.iloc[0] if len(done) == 1 else done.loc[done["objective"].idxmin() if study.objective.direction == "minimize" else done["objective"].idxmax()]
        weights = ", ".join(f"{d}={best[f'w_{d}']:.3f}" for d in study.domain_names)
        console.print(f"best so far: {best['objective']:.4f} at {best['rung']} ({weights})")


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

    opened = api.open_study(name, storage, root)
    try:
        path = api.export_study(opened, out, with_laws=laws)
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

    opened = api.open_study(name, storage, root)
    try:
        path = make_report(opened, out or Path("reports") / opened.study.name)
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
    from mixsearch.worker import run_worker

    study_file = api.find_study_file(name, storage, root)
    summary = run_worker(study_file, storage, root, executor, workers, pack, address, wait=wait, idle_timeout=idle_timeout)
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

    path = out or Path("fits") / f"{table.stem}.{law}.json"
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
) -> None:
    """Run proposers side by side on an oracle; write curves, summary and regret plot."""
    from mixsearch.bench.harness import run_bench

    names = [p.strip() for p in proposers.split(",") if p.strip()]
    summary = run_bench(oracle, names, seeds, budget, out, target=target, batch_size=batch_size)
    console.print(summary.to_string(index=False))
    console.print(f"wrote {out}/curves.csv, {out}/summary.csv, {out}/regret.png")


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
