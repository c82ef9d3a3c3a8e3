"""The continual pre-training proposers: the paper's grid, the boundary search, and who refuses what."""

from __future__ import annotations

import pytest

from mixsearch import Budget, ContinualPretraining, Domain, EvaluatorSpec, Objective, ProposerSpec, Study, TwoPhase
from mixsearch.evaluate import make_evaluator
from mixsearch.evaluate.worlds import default_ladder
from mixsearch.execute.inline import InlineExecutor
from mixsearch.ledger import Ledger
from mixsearch.orchestrator import Orchestrator, build_context
from mixsearch.propose.base import check_schedule, make_proposer
from mixsearch.propose.cpt import CMRGrid, CMRSearch, observations


def cpt_study(proposer: str, trials: int, **options) -> Study:
    return Study(
        name="cpt",
        domains=(Domain("general"), Domain("finance")),
        ladder=default_ladder("cpt-finance"),
        budget=Budget(max_trials=trials),
        objective=Objective(domain_weights={"finance": 1.0}),
        proposer=ProposerSpec(proposer, options=options),
        evaluator=EvaluatorSpec("synthetic", {"world": "cpt-finance"}),
        schedule=ContinualPretraining("finance"),
    )


def run(study: Study) -> Ledger:
    """The study run through the real loop on an in-memory ledger (returned open)."""
    ledger = Ledger.in_memory()
    Orchestrator(study, ledger, make_evaluator(study), InlineExecutor(), make_proposer(study.proposer), heartbeat_interval=0.0).run()
    return ledger


def keys(ctx, cands):
    return [(round(ctx.schedule.ratio(c.weights, ctx.domains), 4), c.rung) for c in cands]


def test_the_grid_runs_every_ratio_at_every_rung_cheapest_first_and_never_twice():
    study = cpt_study("cmr-grid", 5, ratios=[0.2, 0.5, 0.8])
    ledger = run(study)
    ctx = build_context(study, ledger, ledger.next_ask())
    grid = CMRGrid(ratios=(0.2, 0.5, 0.8))
    assert grid.grid(ctx)[:4] == [(0.2, "0.25B"), (0.5, "0.25B"), (0.8, "0.25B"), (0.2, "0.5B")]
    ran = {(round(t.candidate.weights[1], 4), t.candidate.rung) for t in ledger.trials()}
    assert ran == set(grid.grid(ctx)[:5])
    assert keys(ctx, grid.propose(ctx, 3)) == grid.grid(ctx)[5:8]
    with pytest.raises(ValueError, match="ratios"):
        CMRGrid(ratios=(0.5, 1.5))
    ledger.dispose()


def test_the_search_opens_with_its_design_then_is_deterministic_and_never_repeats():
    study = cpt_study("cmr-search", 6)
    ledger = run(study)
    trials = ledger.trials()
    assert [(round(t.candidate.weights[1], 4), t.candidate.rung) for t in trials[:3]] == [(0.25, "0.25B"), (0.75, "0.25B"), (0.5, "2B")]
    ctx = build_context(study, ledger, ledger.next_ask())
    assert observations(ctx).n == 6
    search = CMRSearch()
    batch = search.propose(ctx, 3)
    assert keys(ctx, batch) == keys(ctx, CMRSearch().propose(ctx, 3))  # same context, same proposals
    done = {(round(t.candidate.weights[1], 4), t.candidate.rung) for t in trials}
    assert len(set(keys(ctx, batch))) == 3 and not set(keys(ctx, batch)) & done
    rec = search.recommend(ctx)
    assert rec is not None and rec.rung == "4B" and rec.extra["basis"] == "law" and 0.0 <= rec.extra["cmr"] <= 1.0
    assert rec.weights == pytest.approx((1 - rec.extra["cmr"], rec.extra["cmr"]), abs=1e-6)
    ledger.dispose()


def test_the_search_conditions_on_pending_trials():
    study = cpt_study("cmr-search", 6)
    ledger = run(study)
    ctx = build_context(study, ledger, ledger.next_ask())
    (first,) = CMRSearch().propose(ctx, 1)
    ledger.add([first], {r.name: {} for r in study.ladder.rungs}, ask=ledger.next_ask())  # now pending
    ctx2 = build_context(study, ledger, ledger.next_ask())
    (second,) = CMRSearch().propose(ctx2, 1)
    assert keys(ctx2, [second]) != keys(ctx2, [first])
    ledger.dispose()


def test_proposers_refuse_studies_they_do_not_search():
    cpt = ContinualPretraining("finance")
    with pytest.raises(ValueError, match=r"proposer.name: 'mfbo' searches mixture studies, not a continual pre-training study; use cmr-grid, cmr-search"):
        check_schedule(make_proposer("mfbo"), "mfbo", cpt)
    with pytest.raises(ValueError, match=r"'cmr-search' searches continual studies, not a mixture study"):
        check_schedule(CMRSearch(), "cmr-search", None)
    with pytest.raises(ValueError, match="use random"):
        check_schedule(make_proposer("mfbo"), "mfbo", TwoPhase())
    check_schedule(make_proposer("random"), "random", TwoPhase())
    check_schedule(CMRGrid(), "cmr-grid", cpt)
    with pytest.raises(ValueError, match="finite pool"):
        CMRSearch().check_mode(pool=True)
    with pytest.raises(ValueError, match="draws"):
        CMRSearch(draws=2)
