"""Trial identity: canonical weights, stable hashes."""

import math

import pytest

from mixsearch.candidate import Candidate, TrialResult, canonical_weights, trial_id


def test_canonical_weights_sum_to_one_and_absorb_float_noise():
    w = canonical_weights([0.1 + 1e-12, 0.2, 0.7 - 1e-12])
    assert abs(sum(w) - 1.0) < 1e-9
    assert w == canonical_weights([0.1, 0.2, 0.7])


def test_canonical_weights_renormalise():
    assert canonical_weights([1, 1, 2]) == (0.25, 0.25, 0.5)
    with pytest.raises(ValueError):
        canonical_weights([0, 0])


def test_trial_id_is_stable_and_sensitive():
    ctx = {"snapshot": "abc", "N": 10, "D": 20}
    a = Candidate((0.2, 0.8), "s", 0)
    assert trial_id(a, ctx) == trial_id(Candidate((0.2 + 1e-10, 0.8), "s", 0), ctx)
    assert trial_id(a, ctx) != trial_id(Candidate((0.21, 0.79), "s", 0), ctx)
    assert trial_id(a, ctx) != trial_id(Candidate((0.2, 0.8), "m", 0), ctx)
    assert trial_id(a, ctx) != trial_id(Candidate((0.2, 0.8), "s", 1), ctx)
    assert trial_id(a, ctx) != trial_id(a, {**ctx, "snapshot": "abd"})


def test_result_finite():
    ok = TrialResult({"a": 1.0}, 1.0, 1.0, 0.1)
    assert ok.finite
    assert not TrialResult({"a": math.nan}, 1.0, 1.0, 0.1).finite
    assert not TrialResult({"a": 1.0}, math.inf, 1.0, 0.1).finite


def test_trial_id_is_a_stored_interface_pinned_by_literal_values():
    """Every ledger finds its trials by these ids: a change to the hash would silently
    retrain every old study. The values were computed by mixsearch 0.1.0 (and are in
    tests/fixtures/ledgers/v1.sqlite)."""
    ctx = {"config": "legacy", "snapshot": "bowl-v1", "N": 1000000, "D": 1000}
    assert trial_id(Candidate((0.5, 0.3, 0.2), "s", 7), ctx) == "59a3e35bf71482009dc8"
    third = Candidate((1 / 3, 1 / 3, 1 / 3), "xs", 0)
    assert third.weights == (0.333334, 0.333333, 0.333333)
    assert trial_id(third, {"config": "abc", "snapshot": "table-0123", "N": None, "D": None}) == "8ed26675bdc65b7036ff"


def test_a_two_phase_candidate_carries_its_phases_and_their_token_weighted_mixture():
    from mixsearch.candidate import Phases

    c = Candidate.phased((1.0, 0.0, 0.0), (0.0, 0.5, 0.5), 0.25, "s", 3)
    assert c.schedule == Phases((1.0, 0.0, 0.0), (0.0, 0.5, 0.5), 0.25)
    assert c.weights == (0.25, 0.375, 0.375)
    assert Phases((0.2, 0.8), (0.5, 0.5), 0.3 + 1e-9).switch == 0.3  # a switch is rounded, like weights
    with pytest.raises(ValueError, match="switch"):
        Phases((0.2, 0.8), (0.5, 0.5), 1.0)
    with pytest.raises(ValueError, match="token-weighted"):
        Candidate((0.5, 0.25, 0.25), "s", 0, c.schedule)
    doc = c.schedule.as_dict(["a", "b", "c"])
    assert Phases.from_dict(doc, ["a", "b", "c"]) == c.schedule


def test_a_two_phase_trial_id_is_its_own_and_pinned():
    """The phases enter the id only when present: a one-phase candidate keeps the id pinned
    above, and a two-phase one with the same overall mixture is another trial."""
    ctx = {"config": "legacy", "snapshot": "bowl-v1", "N": 1000000, "D": 1000}
    c = Candidate.phased((1.0, 0.0, 0.0), (0.0, 0.5, 0.5), 0.25, "s", 7)
    assert trial_id(c, ctx) != trial_id(Candidate(c.weights, "s", 7), ctx)
    assert trial_id(c, ctx) != trial_id(Candidate.phased((1.0, 0.0, 0.0), (0.0, 0.5, 0.5), 0.3, "s", 7), ctx)
    assert trial_id(c, ctx) == "f3d78a09bb1d2cbe0389"
