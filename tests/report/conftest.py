"""Real studies for the report tests: a two-rung table study run through the orchestrator.

The table is a small run table written here (three domains, 30 mixtures at two
fidelities, losses from a smooth bowl plus noise), replayed by the real ``table``
evaluator; the study is run with ``mixsearch.api.run_study`` exactly as the CLI does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mixsearch import api

DOMAINS = ("web", "code", "books")
RUNG_COSTS = {"s": 1.0e15, "m": 8.0e15}

STUDY_FILE = '''
from mixsearch import Budget, Domain, EvaluatorSpec, FidelityLadder, ProposerSpec, Rung, Study

study = Study(
    name="{name}",
    domains=(Domain("web"), Domain("code"), Domain("books")),
    ladder=FidelityLadder(({rungs}), target=Rung("m", cost=8.0e15)),
    budget=Budget(max_trials={trials}),
    proposer=ProposerSpec("{proposer}", batch_size=4, options={options}),
    evaluator=EvaluatorSpec("table", {{"path": "{csv}"}}),
    seed=0,
)
'''


def write_run_table(path: Path, n: int = 30, seed: int = 0) -> Path:
    """A two-fidelity run table in the ``mixsearch bench`` format (``docs/tables.md``)."""
    rng = np.random.default_rng(seed)
    w = rng.dirichlet(np.ones(len(DOMAINS)), n)
    opt = np.array([0.5, 0.3, 0.2])
    rows = []
    for fid, base in (("s", 3.6), ("m", 3.1)):
        for i in range(n):
            gap = float((w[i] - opt) @ (w[i] - opt))
            losses = {f"loss_{d}": base + 0.8 * (0.6 - w[i, j]) ** 2 + 0.3 * gap + rng.normal(0, 0.004) for j, d in enumerate(DOMAINS)}
            rows.append({**{f"w_{d}": w[i, j] for j, d in enumerate(DOMAINS)}, "fidelity": fid, "cost": RUNG_COSTS[fid], **losses,
                         "objective": float(np.mean(list(losses.values())))})
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@dataclass
class RanStudy:
    """A study file, its ledger root and the run table it replays."""

    study_file: Path
    root: Path
    table: Path

    def open(self) -> api.OpenStudy:
        return api.open_study(str(self.study_file), root=self.root)


def _run_table_study(folder: Path, name: str, proposer: str, trials: int, options: str = "{}", rungs: str | None = None) -> RanStudy:
    """Write a table and a study file into ``folder`` and run the study to its budget."""
    folder.mkdir(parents=True, exist_ok=True)
    table = write_run_table(folder / "runs.csv")
    rungs = rungs or 'Rung("s", cost=1.0e15), Rung("m", cost=8.0e15)'
    study_file = folder / f"{name}.py"
    study_file.write_text(STUDY_FILE.format(name=name, rungs=rungs, trials=trials, proposer=proposer, options=options, csv=table))
    api.run_study(study_file, root=folder / "runs")
    return RanStudy(study_file, folder / "runs", table)


@pytest.fixture
def run_table_study():
    """``run_table_study(folder, name, proposer, trials, options="{}", rungs=None) -> RanStudy``."""
    return _run_table_study


@pytest.fixture(scope="session")
def table_study(tmp_path_factory: pytest.TempPathFactory) -> RanStudy:
    """RegMix on a two-rung table: many cheap runs at ``s``, then its picks at ``m``."""
    folder = tmp_path_factory.mktemp("table_study")
    return _run_table_study(folder, "tablestudy", "regmix", 20, '{"proxy_budget": 1.5, "n_estimators": 50}')


@pytest.fixture(scope="session")
def table_report(table_study: RanStudy, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of ``table_study`` (its ``index.html``)."""
    from mixsearch.report import study_report

    opened = table_study.open()
    try:
        return study_report(opened, tmp_path_factory.mktemp("table_report"))
    finally:
        opened.ledger.dispose()
