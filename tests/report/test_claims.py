"""A quickstart-size report only claims what it shows: held-out error beside every law, no
statistic below its minimum n, units on every axis (read from the figure objects), one
interval convention."""

from __future__ import annotations

import re

import pytest
from matplotlib.figure import Figure

from mixsearch import api
from mixsearch.evaluate.worlds import SYNTHETIC_WORLDS
from mixsearch.report import study_report
from mixsearch.report.figures import _law_figure, domain_loss_figure, heldout_figure_for, mixture_figure, progress_figure
from mixsearch.report.gather import collect
from mixsearch.report.style import MIN_BOX_N, MIN_CORRELATION_N

# The quickstart's shape: five or six domains, a 2 x 2 ladder in N and D, 14 trials.
STUDY = f"""
from mixsearch import *
study = Study(
    name="claims",
    domains=tuple(Domain(d) for d in {SYNTHETIC_WORLDS["mixing-shift"].domains!r}),
    ladder=FidelityLadder(
        (Rung("xs", 10_000_000, 200_000_000), Rung("xs-long", 10_000_000, 800_000_000),
         Rung("s", 40_000_000, 200_000_000), Rung("s-long", 40_000_000, 800_000_000)),
        target=Rung("big", 160_000_000, 3_200_000_000),
    ),
    budget=Budget(max_trials=14),
    proposer=ProposerSpec("centre-random", batch_size=2),
    evaluator=EvaluatorSpec("synthetic", {{"world": "mixing-shift", "noise": 0.003}}),
)
"""


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("claims")
    (folder / "claims.py").write_text(STUDY)
    api.run_study(folder / "claims.py", root=folder / "runs")
    opened = api.open_study(str(folder / "claims.py"), root=folder / "runs")
    try:
        page = study_report(opened, folder / "report")
        data = collect(opened)
    finally:
        opened.ledger.dispose()
    return page.read_text(), data


def _texts(fig: Figure) -> list[str]:
    out = [t.get_text() for t in fig.texts]
    for ax in fig.axes:
        out += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
        out += [t.get_text() for t in ax.texts]
    return out


def test_every_law_shows_its_held_out_error_beside_any_in_sample_statistic(report):
    page, data = report
    laws = (data.export or {}).get("laws") or []
    assert laws, "the quickstart-size study fits laws"
    for doc in laws:
        section = page.split(f"<h3>{doc['name']} ")[1].split("<h3>")[0]
        assert "held-out" in section, doc["name"]
        titles = " ".join(_texts(_law_figure(doc)))
        if "in-sample" in titles:
            assert "held-out" in titles, (doc["name"], titles)


def test_no_statistic_is_drawn_below_its_minimum_n(report):
    _, data = report
    heldout = heldout_figure_for(data)
    for ax in heldout.axes:
        n = int(re.search(r"n=(\d+)", ax.get_title()).group(1))
        assert ("ρ=" in ax.get_title()) == (n >= MIN_CORRELATION_N), ax.get_title()
    done = data.done()
    boxes = domain_loss_figure(data)
    for ax in boxes.axes:
        rung = ax.get_title().split(":")[0].removeprefix("Rung ")
        n = int((done["rung"] == rung).sum())
        has_box = any(line.get_color() == "0.2" for line in ax.get_lines())  # the median line of a box
        assert has_box == (n >= MIN_BOX_N), (rung, n)
    for doc in (data.export or {}).get("laws") or []:
        for text in _texts(_law_figure(doc)):
            m = re.search(r"n=(\d+)", text)
            if m and "Spearman" in text:
                assert int(m.group(1)) >= MIN_CORRELATION_N, text


def test_every_axis_has_a_unit_and_every_interval_is_the_same_one(report):
    from .test_build import assert_labelled_with_units

    page, data = report
    for build in (progress_figure, mixture_figure, domain_loss_figure, heldout_figure_for):
        assert_labelled_with_units(build(data))
    for doc in (data.export or {}).get("laws") or []:
        assert_labelled_with_units(_law_figure(doc))
    assert "±2" not in page and "±1" not in page and "standard deviation" not in page
    assert "90 %" in page or "90%" in page
    assert "Left" not in page and "Right:" not in page  # captions follow the stacked layout


def test_the_recommendation_states_its_basis_and_extrapolation(report):
    page, data = report
    rec = data.export["recommendation"]
    assert rec["basis"] == "law" and rec["extrapolated"] is True and rec["factors"]["N"] == pytest.approx(4.0)
    section = page.split('id="recommendation"')[1].split("<h2")[0]
    assert "basis: <b>law</b>" in section and "extrapolated" in section and "90% interval" in section
