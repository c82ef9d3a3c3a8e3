"""The per-study report: every figure, with units, on real studies, and odd studies survive."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mixsearch import api
from mixsearch.ledger import Ledger
from mixsearch.report import study_report
from mixsearch.report.figures import (
    cost_figure,
    curve_figure,
    domain_loss_figure,
    mixture_figure,
    progress_figure,
    progress_table,
    study_figures,
)
from mixsearch.report.gather import StudyData, collect
from mixsearch.study import Budget, Domain, FidelityLadder, Objective, Rung, Study

FIGURES = ("progress", "mixtures", "domain_losses", "cost", "heldout", "curves")
# Axes whose x or y shows categories (domains, rungs, trials), not a quantity with a unit.
CATEGORICAL = {"domain", "fidelity rung", "trial #, objective", "predicted objective"}


def axis_labels(fig: Figure) -> list[tuple[str, str]]:
    """(x label, y label) of every visible axes of a figure (colour bars included)."""
    return [(ax.get_xlabel(), ax.get_ylabel()) for ax in fig.axes if ax.axison]


def assert_labelled_with_units(fig: Figure) -> None:
    labels = axis_labels(fig)
    assert labels, "figure has no visible axes"
    for x, y in labels:
        if x == "" and y:  # a colour bar: its label is on y
            assert "(" in y and y.endswith(")"), f"colour bar label without a unit: {y!r}"
            continue
        for label in (x, y):
            assert label, f"unlabelled axis in {labels}"
            if label not in CATEGORICAL:
                assert "(" in label and label.endswith(")"), f"axis label without a unit: {label!r}"


def test_report_writes_every_figure_and_a_self_contained_page(table_report):
    out = table_report.parent
    assert table_report.name == "index.html"
    for key in FIGURES:
        png = out / f"{key}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", key
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == 20 and set(trials["rung"]) == {"s", "m"}
    export = json.loads((out / "tablestudy.export.json").read_text())
    assert export["schema"] == "mixsearch.export/v1" and export["recommendation"] is not None
    page = table_report.read_text()
    # Every figure drawn and embedded, except training curves, which a table study has none of.
    assert page.count('src="data:image/png;base64,') >= len(FIGURES) - 1
    assert "No training curves: a table study replays final losses only." in page
    assert "http://" not in page and "https://" not in page  # nothing fetched from the network
    for heading in ("Recommendation at the target scale", "Best objective so far and regret", "Mixture weights", "Per-domain validation losses",
                    "Cost spent per rung", "Predicted vs observed at held-out trials", "Training curves", "Trials"):
        assert f">{heading}</h2>" in page, heading
    # One section per fitted law ("Fitted law: <name>"), or one "Fitted laws" section saying why none was fitted.
    assert ">Fitted law: " in page or ">Fitted laws</h2>" in page
    assert "best-so-far trial minus the best objective observed at that rung" in page  # regret defined in the caption


def test_every_figure_has_labelled_axes_with_units(table_study):
    opened = table_study.open()
    try:
        data = collect(opened)
    finally:
        opened.ledger.dispose()
    for build in (progress_figure, mixture_figure, domain_loss_figure, cost_figure):
        assert_labelled_with_units(build(data))


def test_progress_table_is_best_so_far_and_regret_per_rung():
    # Finishing order: s(5.0) m(3.0) s(4.0) s-failed m(3.5) s(4.5) m(2.5)
    df = pd.DataFrame(
        {
            "trial_id": list("abcdefg"),
            "number": range(1, 8),
            "state": ["done", "done", "done", "failed", "done", "done", "done"],
            "rung": ["s", "m", "s", "s", "m", "s", "m"],
            "objective": [5.0, 3.0, 4.0, None, 3.5, 4.5, 2.5],
            "cost": [1.0, 4.0, 1.0, 1.0, 4.0, 1.0, 4.0],
            "finished": [10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0],
            "w_a": 0.5,
            "w_b": 0.5,
        }
    )
    study = Study("p", (Domain("a"), Domain("b")), FidelityLadder((Rung("s", 10, 10), Rung("m", 20, 10)), Rung("t", 99, 99)), Budget(max_trials=7))
    t = progress_table(StudyData(study, df))
    assert list(t["number"]) == [1, 2, 3, 5, 6, 7]
    assert list(t["cum_cost"]) == [1.0, 5.0, 6.0, 11.0, 12.0, 16.0]  # the failed trial's cost counts too
    assert list(t["best"]) == [5.0, 3.0, 4.0, 3.0, 4.0, 2.5]
    assert list(t["regret"]) == [1.0, 0.5, 0.0, 0.5, 0.0, 0.0]
    maximise = Study(**{**study.__dict__, "objective": Objective(direction="maximize")})
    t = progress_table(StudyData(maximise, df))
    assert list(t["best"]) == [5.0, 3.0, 5.0, 3.5, 5.0, 3.5]
    assert list(t["regret"]) == [0.0, 0.5, 0.0, 0.0, 0.0, 0.0]


def test_report_of_a_study_with_no_trials(tmp_path, run_table_study):
    folder = tmp_path / "empty"
    run = run_table_study(folder, "emptystudy", "random", 1)
    # A second study file on the same table whose ledger is created but never run.
    (folder / "never.py").write_text(run.study_file.read_text().replace('name="emptystudy"', 'name="never"'))
    study = api.load_study(folder / "never.py")
    ledger = Ledger(api.ledger_url(study, root=folder / "runs"))
    ledger.bind_study(study.name, study.to_dict(), str(folder / "never.py"))
    try:
        page = study_report(api.OpenStudy(study, ledger, str(folder / "never.py")), tmp_path / "report")
    finally:
        ledger.dispose()
    text = page.read_text()
    assert "No finished trials with a finite objective yet: nothing to track." in text
    assert "No trials yet: no mixtures to show." in text and "No trials yet." in text
    assert "data:image/png" not in text  # nothing to draw: notes only, no empty pictures
    for key in FIGURES:
        assert (tmp_path / "report" / f"{key}.png").is_file()


OFF_POOL_PROPOSER = '''
import numpy as np
from mixsearch.propose.base import as_candidates, best_observed


class OffPool:
    """Proposes random mixtures at the costliest rung, ignoring the table's pool."""

    def propose(self, ctx, q):
        rung = max(ctx.ladder.rungs, key=lambda r: r.run_cost).name
        return as_candidates(ctx.rng().dirichlet(np.ones(ctx.space.dim), q), [rung] * q, ctx.trial_seed)

    def recommend(self, ctx):
        return best_observed(ctx)
'''


def test_report_of_a_single_rung_study_where_every_trial_failed(tmp_path, run_table_study, monkeypatch):
    # A user's proposer (an import path in the study file) that ignores the table's pool:
    # every mixture it proposes is missing from the table, so every trial fails.
    (tmp_path / "offpool.py").write_text(OFF_POOL_PROPOSER)
    monkeypatch.syspath_prepend(str(tmp_path))
    run = run_table_study(tmp_path / "failed", "allfailed", "offpool:OffPool", 4, rungs='Rung("m", cost=8.0e15),')
    opened = run.open()
    try:
        assert opened.ledger.counts()["failed"] == 4
        page = study_report(opened, tmp_path / "report")
    finally:
        opened.ledger.dispose()
    text = page.read_text()
    assert "failed" in text and "is not in the table" in text  # the error is in the trials table
    assert "No recommendation" in text
    assert "No per-domain losses recorded yet" in text and "a table study replays final losses only" in text
    for key in FIGURES:
        assert (tmp_path / "report" / f"{key}.png").is_file()


def test_a_figure_that_raises_becomes_a_note(table_study, tmp_path):
    opened = table_study.open()
    try:
        data = collect(opened)
    finally:
        opened.ledger.dispose()
    data.trials = data.trials.drop(columns=["w_web"])  # a table the mixture figure cannot read
    blocks = {b.key: b for b in study_figures(data, tmp_path)}
    assert blocks["mixtures"].note is not None and "KeyError" in blocks["mixtures"].note
    assert blocks["cost"].note is None  # the others still draw
    assert any("Mixture weights" in n for n in data.notes)


def test_curves_figure_draws_one_panel_per_rung_with_the_best_in_black():
    study = Study("c", (Domain("a"), Domain("b")), FidelityLadder((Rung("s", 10, 100), Rung("m", 20, 100)), Rung("t", 99, 99)), Budget(max_trials=4))
    df = pd.DataFrame(
        {"trial_id": list("abcd"), "number": [1, 2, 3, 4], "state": "done", "rung": ["s", "s", "m", "m"],
         "objective": [4.0, 3.5, 3.0, 2.8], "cost": 1.0, "finished": [1.0, 2.0, 3.0, 4.0], "w_a": 0.5, "w_b": 0.5}
    )
    tokens = np.linspace(10, 100, 10)
    curves = {t: [(x, o + 5.0 * np.exp(-x / 30)) for x in tokens] for t, o in zip("abcd", [4.0, 3.5, 3.0, 2.8])}
    fig = curve_figure(StudyData(study, df, curves=curves))
    assert_labelled_with_units(fig)
    panels = [ax for ax in fig.axes if ax.get_title().startswith("Rung")]
    assert [ax.get_title() for ax in panels] == ["Rung s: 2 training curves", "Rung m: 2 training curves"]
    for ax, best in zip(panels, ("#2", "#4")):
        black = [line for line in ax.get_lines() if line.get_color() == "black"]
        assert len(black) == 1 and black[0].get_label() == f"best trial {best}"


def test_a_report_reuses_an_up_to_date_export_and_refits_a_stale_one(tmp_path, run_table_study, monkeypatch):
    from mixsearch.report import study_report

    ran = run_table_study(tmp_path / "s", "reuse", "random", 6)
    monkeypatch.chdir(tmp_path)
    opened = ran.open()
    try:
        api.export_study(opened)
        fits = []
        import mixsearch.results as results

        real = results.fit_study_laws
        monkeypatch.setattr(results, "fit_study_laws", lambda *a, **k: (fits.append(1), real(*a, **k))[1])
        said: list[str] = []
        study_report(opened, tmp_path / "r1", say=said.append)
        assert fits == [] and any("reusing the up-to-date export" in s for s in said)
        # A ledger that moved on since the export (here: its state no longer matches) makes it stale: the report refits.
        led = Ledger(opened.ledger.url)
        led.set_meta("fingerprint", "changed-on-purpose")
        led.dispose()
        study_report(opened, tmp_path / "r2", say=said.append)
        assert fits == [1]
    finally:
        opened.ledger.dispose()
