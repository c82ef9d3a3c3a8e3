"""Bad input through the real CLI: one line on stderr naming the field or file, exit
code 2, and nothing written (no runs/<study>/ folder, no fits file, no bench output).

Each case builds its own inputs in an empty working folder, runs ``mixsearch`` (Typer's
CliRunner on :data:`mixsearch.cli.app`, in this process) and compares the folder's
contents before and after.
"""

from __future__ import annotations

import importlib
import json
import sqlite3
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mixsearch.cli import app
from mixsearch.ledger import SCHEMA_VERSION, Ledger

from .conftest import error_lines

OPT = np.array([0.5, 0.3, 0.2])

STUDY = """
from mixsearch import Budget, ContinualPretraining, Domain, EvaluatorSpec, FidelityLadder, Objective, ProposerSpec, Rung, SearchSpace, Study, TwoPhase
DOMAINS = ("a", "b", "c")
study = Study(
    name={name!r},
    domains={domains},
    ladder={ladder},
    budget={budget},
    space={space},
    objective={objective},
    proposer={proposer},
    evaluator={evaluator},
    seed=0,
    max_attempts={max_attempts},
    storage={storage},
    schedule={schedule},
)
"""


def table(path: Path, mutate: Callable[[pd.DataFrame], pd.DataFrame] | None = None, text: str | None = None) -> Path:
    """A valid run table (or a mutation of it, or raw text) at ``path``."""
    if text is not None:
        path.write_text(text)
        return path
    w = np.random.default_rng(0).dirichlet(np.ones(3), size=12)
    df = pd.DataFrame(
        [
            {"w_a": x[0], "w_b": x[1], "w_c": x[2], "fidelity": lab, "cost": cost, "objective": float(((x - OPT) ** 2).sum() + 1 / cost), "N": n, "D": 20 * n}
            for lab, cost, n in (("s", 1.0, 10**6), ("m", 4.0, 4 * 10**6))
            for x in w
        ]
    )
    (mutate(df) if mutate else df).to_csv(path, index=False)
    return path


def study_file(folder: Path, filename: str = "study.py", **over: str) -> Path:
    """A table study file with any field's source text overridden."""
    fields = dict(
        name="'bad'",
        domains="tuple(Domain(d) for d in DOMAINS)",
        ladder="FidelityLadder((Rung('s', cost=1.0), Rung('m', cost=4.0)), target=Rung('m', cost=4.0))",
        budget="Budget(max_trials=4)",
        space="None",
        objective="Objective()",
        proposer="ProposerSpec('random', batch_size=2)",
        evaluator=f"EvaluatorSpec('table', {{'path': {str(folder / 'table.csv')!r}}})",
        max_attempts="3",
        storage="None",
        schedule="None",
    )
    fields.update(over)
    src = STUDY.replace("{name!r}", fields.pop("name"))
    for k, v in fields.items():
        src = src.replace("{" + k + "}", v)
    if not (folder / "table.csv").exists():
        table(folder / "table.csv")
    path = folder / filename
    path.write_text(src)
    return path


def newer_ledger(folder: Path) -> None:
    url = f"sqlite:///{folder / 'runs' / 'bad' / 'ledger.sqlite'}"
    Ledger(url).dispose()
    conn = sqlite3.connect(folder / "runs" / "bad" / "ledger.sqlite")
    with conn:
        conn.execute("UPDATE mixsearch_meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
    conn.close()


def other_studys_ledger(folder: Path) -> None:
    led = Ledger(f"sqlite:///{folder / 'shared.sqlite'}")
    led.bind_study("someone-else", {"domains": []}, None)
    led.dispose()


def needs(module: str, attr: str) -> pytest.MarkDecorator:
    """Skip a case whose command lives in a module another part of mixsearch provides."""
    try:
        ok = hasattr(importlib.import_module(module), attr)
    except ImportError:
        ok = False
    return pytest.mark.skipif(not ok, reason=f"{module}.{attr} not available yet")


def case(name: str, setup: Callable[[Path], list[str]], *expected: str, marks=()):
    """One bad input: ``setup(folder)`` writes the inputs and returns the argv; the error
    line must contain every ``expected`` string."""
    return pytest.param(setup, expected, id=name, marks=marks)


def start(**over: str) -> Callable[[Path], list[str]]:
    return lambda f: ["study", "start", str(study_file(f, **over)), "--quiet"]


def start_with(prepare: Callable[[Path], object], *extra: str) -> Callable[[Path], list[str]]:
    """Prepare something (a bad table, an old ledger) then start the template study."""
    return lambda f: (prepare(f), ["study", "start", str(study_file(f)), "--quiet", *[e.format(f=f) for e in extra]])[1]


def bench(prepare: Callable[[Path], Path]) -> Callable[[Path], list[str]]:
    return lambda f: ["bench", "--oracle", f"table:{prepare(f)}", "--proposers", "random", "--seeds", "1", "--budget", "2", "--out", "bench-out"]


BENCH = needs("mixsearch.bench.harness", "run_bench")
FIT = needs("mixsearch.laws", "fit_table")
PROXY_DOMAINS = "(Domain('a', 'corpus/a/*.txt'), Domain('b', 'corpus/b'), Domain('c', 'demo:code'))"
PROXY_LADDER = "FidelityLadder((Rung('s', 1000, 1000),), target=Rung('t', 10**6, 10**6))"

CASES = [
    # -- the study file
    case("study-file-missing", lambda f: ["study", "start", "nope.py"], "nope.py", "not found"),
    case("study-file-syntax-error", lambda f: ["study", "start", str(_write(f / "s.py", "study = Study(\n"))], "s.py", "file:", "SyntaxError"),
    case("study-file-defines-no-study", lambda f: ["study", "start", str(_write(f / "s.py", "x = 1\n"))], "s.py", "no mixsearch.Study"),
    case("invalid-study-name", start(name="'my study!'"), "name:"),
    case("duplicate-domain", start(domains="(Domain('a'), Domain('a'), Domain('c'))"), "domains[1].name", "duplicate"),
    case("missing-domain-data", start(domains=PROXY_DOMAINS, evaluator="EvaluatorSpec('proxy')", ladder=PROXY_LADDER), "domains[0].source", "corpus/a/*.txt"),
    case("fixed-weights-sum-above-1", start(space="SearchSpace(DOMAINS, fixed={'a': 0.7, 'b': 0.6})"), "space.lower", "simplex is empty"),
    case("bounds-make-simplex-empty", start(space="SearchSpace(DOMAINS, upper={'a': 0.2, 'b': 0.2, 'c': 0.2})"), "space.upper", "simplex is empty"),
    case("lower-above-upper", start(space="SearchSpace(DOMAINS, lower={'a': 0.6}, upper={'a': 0.4})"), "space.lower.a"),
    case("weight-out-of-range", start(space="SearchSpace(DOMAINS, lower={'a': -0.1})"), "space.lower.a", "[0, 1]"),
    case("unknown-proposer", start(proposer="ProposerSpec('bayes-magic')"), "proposer.name", "bayes-magic"),
    case("unknown-proposer-option", start(proposer="ProposerSpec('random', options={'colour': 'red'})"), "study.py", "proposer.options", "colour"),
    case("proposer-class-not-importable", start(proposer="ProposerSpec('nosuchmodule:Thing')"), "study.py", "proposer.name", "nosuchmodule"),
    case("bad-proposer-option-value", start(proposer="ProposerSpec('mfbo', options={'acquisition': 'magic'})"), "study.py", "acquisition", "magic"),
    case("negative-trial-budget", start(budget="Budget(max_trials=-5)"), "budget.max_trials", "-5"),
    case("negative-cost-budget", start(budget="Budget(max_cost=-1.0)"), "budget.max_cost"),
    case("no-budget", start(budget="Budget()"), "budget", "at least one"),
    case("objective-unknown-domain", start(objective="Objective({'zz': 1.0})"), "objective.domain_weights.zz"),
    case("rung-negative-tokens", start(ladder="FidelityLadder((Rung('s', 1000, -5, cost=1.0),), target=Rung('m', cost=4.0))"), "ladder.rungs[0].tokens"),
    case("zero-max-attempts", start(max_attempts="0"), "max_attempts"),
    case("storage-in-study-not-a-url", start(storage="'ledger.db'"), "storage", "SQLAlchemy URL"),
    # -- the run table of a table study
    case("table-file-missing", start(evaluator="EvaluatorSpec('table', {'path': 'missing.csv'})"), "evaluator.options.path", "missing.csv"),
    case("table-weights-do-not-sum-to-1", start_with(lambda f: table(f / "table.csv", lambda d: d.assign(w_a=d.w_a + 0.3))), "table.csv", "sum to"),
    case(
        "table-non-numeric-cost",
        start_with(lambda f: table(f / "table.csv", lambda d: d.astype({"cost": object}).assign(cost=["cheap"] + [1.0] * (len(d) - 1)))),
        "table.csv", "'cost'", "cheap",
    ),
    case("table-domains-differ-from-study", start_with(lambda f: table(f / "table.csv", lambda d: d.rename(columns={"w_c": "w_web"}))), "table.csv", "domains"),
    case("table-unknown-option", lambda f: ["study", "start", str(study_file(f, evaluator=f"EvaluatorSpec('table', {{'path': {str(f / 'table.csv')!r}, 'tagret': 'm'}})")), "--quiet"], "evaluator.options.tagret", "unknown option"),
    case("table-objective-reweighted", start(objective="Objective({'a': 2.0, 'b': 1.0})"), "objective.domain_weights", "objective column"),
    case("table-rung-not-in-table", start(ladder="FidelityLadder((Rung('xl', cost=2.0),), target=Rung('m', cost=4.0))"), "table.csv", "'xl'"),
    # -- the ledger and --storage
    case("ledger-from-newer-schema", start_with(newer_ledger), "ledger", "newer than this mixsearch"),
    case("ledger-of-another-study", start_with(other_studys_ledger, "--storage", "sqlite:///{f}/shared.sqlite"), "belongs to study 'someone-else'"),
    case("storage-not-a-url", start_with(lambda f: None, "--storage", "my ledger"), "ledger", "not an SQLAlchemy URL"),
    case("storage-unsupported-database", start_with(lambda f: None, "--storage", "mysql://u@h/db"), "unsupported database"),
    case("storage-unreachable-postgres", start_with(lambda f: None, "--storage", "postgresql+psycopg://u:secret@127.0.0.1:1/db"), "127.0.0.1:1", "cannot open"),
    case("storage-not-a-database-file", start_with(lambda f: _write(f / "notes.txt", "hello " * 500), "--storage", "sqlite:///{f}/notes.txt"), "notes.txt", "not a database"),
    # -- input that is not what it claims, or of the wrong type (issue: never a traceback)
    case("study-file-exits-on-import", lambda f: ["study", "start", str(_write(f / "s.py", "import sys\nsys.exit(0)\n"))], "s.py", "sys.exit(0)"),
    case("domain-source-is-a-number", start(domains="(Domain('a', 3), Domain('b'), Domain('c'))", evaluator="EvaluatorSpec('proxy')", ladder=PROXY_LADDER), "study.py", "domains[0].source", "int 3"),
    case("domain-folder-empty", lambda f: ((f / "empty").mkdir(), ["study", "start", str(study_file(f, domains="(Domain('a', 'empty'), Domain('b', 'demo:code'), Domain('c', 'demo:math'))", evaluator="EvaluatorSpec('proxy')", ladder=PROXY_LADDER)), "--quiet"])[1], "study.py", "domains[0].source", "no .txt, .jsonl or .parquet"),
    case("bounds-given-as-a-list", start(space="SearchSpace(DOMAINS, lower=[0.1, 0.1, 0.1])"), "study.py", "space.lower", "mapping"),
    case("objective-weights-as-a-list", start(objective="Objective([1.0, 2.0, 3.0])"), "study.py", "objective.domain_weights", "mapping"),
    case("table-path-is-a-number", start(evaluator="EvaluatorSpec('table', {'path': 42})"), "study.py", "evaluator.options.path", "42"),
    case("seed-too-large-for-the-ledger", lambda f: ["study", "start", str(_write(f / "s.py", study_file(f).read_text().replace("seed=0", "seed=2**40"))), "--quiet"], "s.py", "seed", str(2**31 - 1)),
    case("target-smaller-than-a-rung", start(ladder="FidelityLadder((Rung('s', 10**6, 10**7, cost=1.0), Rung('m', cost=4.0)), target=Rung('big', 10**5, 10**8, cost=4.0))"), "ladder.target.n_params", "below rung 's'"),
    case("target-reuses-a-rung-name-with-another-cost", start(ladder="FidelityLadder((Rung('s', cost=1.0), Rung('m', cost=4.0)), target=Rung('m', cost=9.0))"), "ladder.target.name", "another size or cost"),
    case("option-the-proposer-ignores-in-pool-mode", start(proposer="ProposerSpec('random', options={'alpha': 0.5})"), "study.py", "proposer.options.alpha", "finite pool"),
    case("negative-synthetic-noise", start(evaluator="EvaluatorSpec('synthetic', {'world': 'mixing-shift', 'noise': -0.1})", domains="tuple(Domain(d) for d in ('web', 'code', 'books', 'wiki', 'math', 'papers'))", ladder=PROXY_LADDER), "study.py", "evaluator.options.noise"),
    case("binary-file-named-txt", lambda f: (_binary(f / "bin" / "weights.txt"), ["study", "start", str(study_file(f, domains="(Domain('a', 'bin'), Domain('b', 'demo:code'), Domain('c', 'demo:math'))", evaluator="EvaluatorSpec('proxy', {'cache_dir': 'cache'})", ladder=PROXY_LADDER)), "--quiet"])[1], "study.py", "domains[0].source", "weights.txt", "not a text file"),
    case("table-with-a-repeated-column", start_with(lambda f: table(f / "table.csv", lambda d: d.rename(columns={"w_c": "w_b"}))), "table.csv", "'w_b' appears 2 times"),
    case("storage-sqlite-with-no-path", start_with(lambda f: None, "--storage", "sqlite:///"), "storage", "names no database file"),
    case("storage-sqlite-in-memory", start_with(lambda f: None, "--storage", "sqlite://"), "storage", "names no database file"),
    case("storage-secret-in-the-query", start_with(lambda f: None, "--storage", "postgresql+psycopg://u@127.0.0.1:1/db?password=secret&sslmode=disable"), "127.0.0.1:1", "password=%2A%2A%2A"),
    # -- schedules: continual pre-training and two-phase studies
    case("schedule-unknown-new-domain", start(schedule="ContinualPretraining('zz')"), "study.py", "schedule.new_domain", "'zz'"),
    case("schedule-switch-range-empty", start(schedule="TwoPhase(min_switch=0.7, max_switch=0.3)"), "study.py", "schedule.max_switch"),
    case("schedule-on-a-run-table", start(schedule="TwoPhase()"), "study.py", "schedule", "run table"),
    case("schedule-cpt-rung-without-size", start(schedule="ContinualPretraining('c')"), "study.py", "ladder.rungs[0]", "continued tokens"),
    case(
        "schedule-mixture-proposer-on-a-cpt-study",
        start(schedule="ContinualPretraining('finance')", domains="(Domain('general'), Domain('finance'))", evaluator="EvaluatorSpec('synthetic', {'world': 'cpt-finance'})",
              ladder="__import__('mixsearch.evaluate.worlds', fromlist=['x']).default_ladder('cpt-finance')", proposer="ProposerSpec('mfbo')"),
        "study.py", "proposer.name", "'mfbo' searches mixture studies", "cmr-search",
    ),
    case("schedule-cmr-proposer-on-a-mixture-study", start(proposer="ProposerSpec('cmr-search')"), "study.py", "proposer.name", "not a mixture study"),
    case(
        "schedule-base-checkpoint-missing",
        start(schedule="ContinualPretraining('c', base_checkpoint='nope.pt')", domains="(Domain('a', 'demo:code'), Domain('b', 'demo:math'), Domain('c', 'demo:legal'))",
              evaluator="EvaluatorSpec('proxy')", ladder=PROXY_LADDER),
        "study.py", "schedule.base_checkpoint", "nope.pt",
    ),
    # -- command options
    case("unknown-executor", start_with(lambda f: None, "--executor", "slurm"), "executor", "slurm"),
    case("zero-workers", start_with(lambda f: None, "--workers", "0"), "executor", "workers"),
    case("resume-unknown-study", lambda f: ["study", "resume", "never-started"], "never-started", "no such file"),
    case("status-unknown-study", lambda f: ["study", "status", "never-started"], "never-started", "no such file"),
    case("worker-unknown-study", lambda f: ["worker", "never-started"], "never-started", "no such file"),
    # -- tables for `mixsearch bench` and `mixsearch fit`
    case("bench-table-weights-do-not-sum-to-1", bench(lambda f: table(f / "runs.csv", lambda d: d.assign(w_b=d.w_b * 2))), "runs.csv", "sum to", marks=BENCH),
    case("bench-table-missing-column", bench(lambda f: table(f / "runs.csv", lambda d: d.drop(columns=["objective"]))), "runs.csv", "objective", marks=BENCH),
    case("bench-table-not-csv", bench(lambda f: table(f / "runs.csv", text="\0" * 10 + "garbage")), "runs.csv", marks=BENCH),
    case("fit-table-missing-column", lambda f: ["fit", str(table(f / "runs.csv", lambda d: d.drop(columns=["objective"]))), "--law", "chinchilla"], "runs.csv", marks=FIT),
    case(
        "fit-table-non-numeric",
        lambda f: ["fit", str(table(f / "runs.csv", lambda d: d.astype({"N": object}).assign(N=["big"] + list(d.N[1:])))), "--law", "chinchilla"],
        "runs.csv", "N", marks=FIT,
    ),
    case("fit-unknown-law", lambda f: ["fit", str(table(f / "runs.csv")), "--law", "moore"], "moore", marks=FIT),
]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _binary(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)))
    return path


def tree(folder: Path) -> dict[str, int]:
    """Every file under ``folder`` with its size (what 'nothing written' compares)."""
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("setup, expected", CASES)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(setup, expected, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = setup(tmp_path)
    before = tree(tmp_path)
    res = CliRunner().invoke(app, argv)
    lines = error_lines(res.stderr)
    assert res.exit_code == 2, f"exit {res.exit_code}\nstdout: {res.stdout}\nstderr: {res.stderr}\n{res.exception!r}"
    assert len(lines) == 1, res.stderr
    for text in expected:
        assert text in lines[0], f"{text!r} not in {lines[0]!r}"
    assert "secret" not in lines[0]
    assert tree(tmp_path) == before, "bad input must write nothing"
    assert not (tmp_path / "fits").exists() and not (tmp_path / "bench-out").exists()


def test_there_are_at_least_15_cases():
    assert len(CASES) >= 15


@needs("mixsearch.laws", "load")
@pytest.mark.parametrize(
    "text, expected",
    [("{ this is not json", "law.json"), ('{"schema": "mixsearch.law/v999"}', "law.json"), ("[1, 2, 3]", "law.json"), ("", "law.json")],
    ids=["not-json", "unknown-schema", "not-an-object", "empty"],
)
def test_corrupted_law_file_is_one_clear_error(tmp_path, text, expected):
    """A planner's ``mixsearch.laws.load`` on a damaged file: ValueError naming the file."""
    from mixsearch import laws

    path = tmp_path / "law.json"
    path.write_text(text)
    with pytest.raises(ValueError) as info:
        laws.load(path)
    message = str(info.value)
    assert expected in message and "\n" not in message.strip()


def test_a_good_table_study_still_runs(tmp_path, monkeypatch):
    """The template the cases break is itself valid (so each case fails for its own reason)."""
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["study", "start", str(study_file(tmp_path)), "--quiet", "--no-export"])
    assert res.exit_code == 0, res.stderr
    led = Ledger(f"sqlite:///{tmp_path / 'runs' / 'bad' / 'ledger.sqlite'}", create=False)
    assert led.counts()["done"] == 4
    assert json.loads(led.get_meta("study"))["name"] == "bad"
    led.dispose()


# -- a study's results are never relabelled, mixed or lost --------------------------------

PLUGIN = '''
import numpy as np
from mixsearch.candidate import TrialResult

OPTIMUM = {"a": 0.5, "b": 0.3, "c": 0.2, "d": 0.0}


class Bowl:
    """Per-domain losses that depend on each domain's weight by name (so order matters)."""

    def __init__(self, domains):
        self.domains = list(domains)

    @classmethod
    def from_study(cls, study):
        return cls(study.domain_names)

    def evaluate(self, candidate, rung):
        w = dict(zip(self.domains, candidate.weights))
        return {"domain_losses": {d: 1.0 + (w[d] - OPTIMUM[d]) ** 2 + 0.1 * i for i, d in enumerate(sorted(w))}}
'''


def bowl_study(folder: Path, domains: str = "'a', 'b', 'c'", name: str = "bowl", objective: str = "Objective()") -> Path:
    """A study on a tiny plugin world whose results depend on each domain's weight by name."""
    (folder / "bowlworld.py").write_text(PLUGIN)
    path = folder / "bowl.py"
    path.write_text(
        "from mixsearch import *\n"
        f"DOMAINS = ({domains},)\n"
        "study = Study(\n"
        f"    name={name!r},\n"
        "    domains=tuple(Domain(d) for d in DOMAINS),\n"
        "    ladder=FidelityLadder((Rung('s', 1000, 1000),), target=Rung('t', 10**6, 10**6)),\n"
        "    budget=Budget(max_trials=6),\n"
        f"    objective={objective},\n"
        "    proposer=ProposerSpec('random', batch_size=2),\n"
        "    evaluator=EvaluatorSpec('bowlworld:Bowl'),\n"
        ")\n"
    )
    return path


def _rows(url: str) -> list[tuple]:
    led = Ledger(url, create=False)
    try:
        return [(t.trial_id, t.state, t.objective, t.candidate.weights) for t in led.trials()]
    finally:
        led.dispose()


@pytest.fixture
def bowl(tmp_path, monkeypatch):
    """A finished 6-trial study on the plugin world, in an empty working folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    path = bowl_study(tmp_path)
    res = CliRunner().invoke(app, ["study", "start", str(path), "--quiet", "--no-export"])
    assert res.exit_code == 0, res.stderr
    return path, f"sqlite:///{tmp_path / 'runs' / 'bowl' / 'ledger.sqlite'}"


def _refused(argv: list[str], *expected: str) -> str:
    res = CliRunner().invoke(app, argv)
    lines = error_lines(res.stderr)
    assert res.exit_code == 2 and len(lines) == 1, res.stderr + res.stdout
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def test_reordered_domains_are_refused_and_nothing_is_relabelled(bowl, tmp_path):
    path, url = bowl
    before = _rows(url)
    assert CliRunner().invoke(app, ["study", "export", "bowl", "--no-laws"]).exit_code == 0  # an up-to-date export is no excuse
    bowl_study(tmp_path, domains="'c', 'a', 'b'")
    _refused(["study", "start", str(path), "--quiet"], "study 'bowl' changed", "domains reordered (a, b, c -> c, a, b)", "--fork")
    _refused(["study", "export", "bowl"], "domains reordered")
    _refused(["study", "report", "bowl", "--out", str(tmp_path / "rep")], "domains reordered")
    assert not (tmp_path / "rep").exists()
    assert _rows(url) == before
    # status still reads the stored trials under the names they were stored with, and says so
    res = CliRunner().invoke(app, ["study", "status", "bowl"])
    assert res.exit_code == 0, res.stderr
    assert "has changed since these trials ran" in res.stdout
    header = next(ln for ln in res.stdout.splitlines() if ln.lstrip().startswith("#"))
    assert header.split()[4:7] == ["a", "b", "c"]


def test_an_added_domain_is_refused_and_status_keeps_working(bowl, tmp_path):
    path, url = bowl
    bowl_study(tmp_path, domains="'a', 'b', 'c', 'd'")
    _refused(["study", "start", str(path), "--quiet"], "domains added d")
    res = CliRunner().invoke(app, ["study", "status", "bowl"])
    assert res.exit_code == 0 and "done 6" in res.stdout, res.stderr


def test_an_edited_run_table_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = study_file(tmp_path)
    assert CliRunner().invoke(app, ["study", "start", str(path), "--quiet", "--no-export"]).exit_code == 0
    url = f"sqlite:///{tmp_path / 'runs' / 'bad' / 'ledger.sqlite'}"
    before = _rows(url)
    table(tmp_path / "table.csv", lambda d: d.assign(objective=d.objective + 0.5))
    _refused(["study", "start", str(path), "--quiet"], "the data changed")
    assert _rows(url) == before


def test_a_changed_objective_is_refused(bowl, tmp_path):
    path, _ = bowl
    bowl_study(tmp_path, objective="Objective({'a': 2.0, 'b': 1.0})")
    _refused(["study", "start", str(path), "--quiet"], "the objective changed")


def test_fork_copies_compatible_trials_by_domain_name(bowl, tmp_path):
    path, url = bowl
    original = _rows(url)
    old = {tid: dict(zip(("a", "b", "c"), w)) for tid, state, _, w in original}
    bowl_study(tmp_path, domains="'c', 'a', 'd', 'b'", objective="Objective({'a': 1.0, 'b': 1.0})")
    res = CliRunner().invoke(app, ["study", "start", str(path), "--quiet", "--no-export", "--fork", "bowl2"])
    assert res.exit_code == 0, res.stderr
    led = Ledger(f"sqlite:///{tmp_path / 'runs' / 'bowl2' / 'ledger.sqlite'}", create=False)
    try:
        trials = led.trials()
        copied = [t for t in trials if "forked_from" in t.metrics]
        assert len(copied) == 6 and len(trials) == 6  # the budget of 6 was met by the copies
        for t in copied:
            by_name = dict(zip(("c", "a", "d", "b"), t.candidate.weights))
            source = old[t.metrics["forked_from"]]
            assert by_name["d"] == 0.0
            assert all(by_name[d] == pytest.approx(w, abs=1e-6) for d, w in source.items())
            # the objective was recomputed under the new objective from the stored losses
            assert t.objective == pytest.approx((t.domain_losses["a"] + t.domain_losses["b"]) / 2)
        assert led.domains == ("c", "a", "d", "b")
    finally:
        led.dispose()
    assert _rows(url) == original  # the original study is untouched
    # The fork has a name of its own: status and resume follow it; the original is still refused.
    assert CliRunner().invoke(app, ["study", "status", "bowl2"]).exit_code == 0
    assert CliRunner().invoke(app, ["study", "resume", "bowl2", "--quiet", "--no-export"]).exit_code == 0
    _refused(["study", "start", str(path), "--quiet"], "study 'bowl' changed")


def test_a_fork_into_an_existing_study_is_refused(bowl, tmp_path):
    path, _ = bowl
    _refused(["study", "start", str(path), "--quiet", "--fork", "bowl"], "fork", "a name other than 'bowl'")


def test_a_fork_that_would_share_the_original_ledger_is_refused(bowl, tmp_path):
    path, _ = bowl
    shared = f"sqlite:///{tmp_path / 'one.sqlite'}"
    _refused(["study", "start", str(path), "--quiet", "--storage", shared, "--fork", "bowl2"], "fork", "a ledger holds one study")


def test_resume_of_a_renamed_study_fails_and_starts_nothing(bowl, tmp_path):
    path, _ = bowl
    bowl_study(tmp_path, name="renamed")
    before = tree(tmp_path)
    _refused(["study", "resume", "bowl", "--quiet"], "now defines study 'renamed', not 'bowl'")
    _refused(["study", "status", "bowl"], "now defines study 'renamed'")
    assert tree(tmp_path) == before and not (tmp_path / "runs" / "renamed").exists()


def test_resume_of_a_study_never_started_from_its_file_fails(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = study_file(tmp_path)
    before = tree(tmp_path)
    _refused(["study", "resume", str(path), "--quiet"], "no such file")
    assert tree(tmp_path) == before
