"""A trial as the ledger stores it: the row codec, best_done, and the per-trial table."""

import json
import math

import pytest

from mixsearch.candidate import Candidate, TrialResult
from mixsearch.storage import LedgerError
from mixsearch.study import Objective
from mixsearch.trial import (
    DONE,
    FAILED,
    PENDING,
    Trial,
    best_done,
    candidate_columns,
    read_weights,
    result_columns,
    row_to_trial,
    trials_frame,
)

DOMAINS = ("web", "code")


def row(candidate: Candidate, state: str = DONE, number: int = 1, result: TrialResult | None = None) -> dict:
    """A ledger row as the trials table holds it."""
    base = {
        "trial_id": f"t{number}",
        "number": number,
        "ask": 0,
        **candidate_columns(candidate, DOMAINS),
        "state": state,
        "attempts": 1,
        "worker": None,
        "heartbeat": None,
        "created": 1.0,
        "started": None,
        "finished": None,
        "cost": None,
        "seconds": None,
        "objective": None,
        "domain_losses": None,
        "curve": None,
        "metrics": None,
        "error": None,
    }
    if result is not None:
        base.update(result_columns(result))
    return base


def trial(weights, objective, state=DONE, number=1, rung="s") -> Trial:
    return Trial(f"t{number}", number, 0, Candidate(weights, rung), state, 1, objective=objective)


def test_a_row_round_trips_through_the_codec():
    cand = Candidate((0.25, 0.75), "s", seed=3)
    res = TrialResult({"web": 2.5, "code": 1.5}, 2.0, cost=7.0, seconds=1.5, curve=[(1.0, 3.0)], metrics={"n_params": 10})
    back = row_to_trial(row(cand, result=res), DOMAINS)
    assert back.candidate == cand
    assert (back.objective, back.cost, back.seconds) == (2.0, 7.0, 1.5)
    assert back.domain_losses == {"web": 2.5, "code": 1.5}
    assert back.curve == [[1.0, 3.0]] and back.metrics == {"n_params": 10}
    phased = Candidate.phased((1.0, 0.0), (0.0, 1.0), 0.25, "s")
    assert row_to_trial(row(phased), DOMAINS).candidate == phased
    with pytest.raises(LedgerError, match="names no domains"):
        row_to_trial(row(phased), None)


def test_weights_are_read_by_name_in_the_study_order_and_a_schema_1_row_by_position():
    assert read_weights(json.dumps({"code": 0.75, "web": 0.25}), DOMAINS) == (0.25, 0.75)
    assert read_weights(json.dumps([0.4, 0.6]), DOMAINS) == (0.4, 0.6)
    with pytest.raises(LedgerError, match="not the study's"):
        read_weights(json.dumps({"web": 0.5, "math": 0.5}), DOMAINS)


def test_best_done_follows_the_objective_direction_and_skips_what_is_not_a_done_finite_result():
    trials = [
        trial((0.5, 0.5), 3.0, number=1),
        trial((0.2, 0.8), 1.0, number=2),
        trial((0.8, 0.2), math.nan, number=3),
        trial((0.1, 0.9), 0.5, state=FAILED, number=4),
        trial((0.9, 0.1), None, state=PENDING, number=5),
        trial((0.3, 0.7), 1.0, number=6),
        trial((0.6, 0.4), 0.1, number=7, rung="m"),
    ]
    assert best_done(trials, Objective()).number == 7
    assert best_done(trials, Objective(), rung="s").number == 2  # a tie goes to the earlier trial
    assert best_done(trials, Objective(direction="maximize", metric="accuracy")).number == 1
    assert best_done(trials[2:5], Objective()) is None


def test_the_trials_frame_names_weights_as_stored_and_adds_phase_and_base_columns():
    plain = Trial("a", 1, 0, Candidate((0.25, 0.75), "s"), DONE, 1, objective=2.0, domain_losses={"web": 2.5, "code": 1.5})
    phased = Trial(
        "b", 2, 0, Candidate.phased((1.0, 0.0), (0.0, 1.0), 0.25, "s"), DONE, 1, objective=2.1, metrics={"base_losses": {"web": 3.0, "code": 2.0}}
    )
    df = trials_frame([plain, phased], DOMAINS)
    assert list(df["trial_id"]) == ["a", "b"]
    assert df.loc[0, "w_code"] == 0.75 and df.loc[0, "loss_web"] == 2.5
    assert df.loc[1, "switch"] == 0.25 and df.loc[1, "w1_web"] == 1.0 and df.loc[1, "w2_code"] == 1.0
    assert df.loc[1, "w_web"] == pytest.approx(0.25) and df.loc[1, "base_loss_code"] == 2.0
    assert {"w_d0", "w_d1"} <= set(trials_frame([plain], None).columns)
