"""load_world: the CLI spelling of a bench world, its truth, and its errors."""

from __future__ import annotations

import numpy as np
import pytest

from mixsearch.bench.worlds import load_world


@pytest.mark.parametrize(
    "spec, message",
    [
        ("nonsense", "--oracle: expected 'table:PATH.csv' or 'synthetic:NAME'"),
        ("csv:x.csv", "unknown oracle kind 'csv'"),
        ("synthetic:nope", "unknown synthetic world 'nope'; known: mixing-shift"),
        ("synthetic:mixing-shift?pool=abc", "synthetic option 'pool' needs a number"),
        ("synthetic:mixing-shift?colour=red", "bad synthetic option 'colour=red'"),
        ("synthetic:mixing-shift?noise=-1", "noise: must be a number >= 0"),
        ("table:/no/such/file.csv", "/no/such/file.csv: table file not found"),
    ],
)
def test_load_world_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        load_world(spec)


def test_synthetic_target_and_pool():
    w = load_world("synthetic:mixing-shift?pool=8", target="100M")
    assert w.ladder.target.name == "100M" and w.ladder.names == ["25M", "50M", "100M"]
    assert w.pool and w.evaluator.kind == "synthetic" and w.evaluator.options == {"world": "mixing-shift", "pool": 8}
    with pytest.raises(ValueError, match="--target: '1B' is not a rung"):
        load_world("synthetic:mixing-shift", target="1B")


def test_table_world_and_its_truth(tiny_table, objective_fn):
    w = load_world(f"table:{tiny_table}")
    assert w.domains == ("a", "b", "c") and w.ladder.target.name == "big" and w.pool
    assert w.title == f"table:{tiny_table.name}"
    truth = w.truth
    assert truth.target_run_cost == 8.0
    import pandas as pd

    df = pd.read_csv(tiny_table)
    big = df[df["fidelity"] == "big"]
    assert truth.best == pytest.approx(big["objective"].min())
    assert truth.span == pytest.approx(big["objective"].max() - big["objective"].min())
    best_w = big[[c for c in df.columns if c.startswith("w_")]].to_numpy()[int(np.argmin(big["objective"]))]
    # A recommendation off the pool is scored as its nearest target mixture.
    assert truth.regret(best_w + 1e-3) == pytest.approx(0.0)
    assert truth.regret(None) == pytest.approx(truth.span)


def test_a_continual_pretraining_world_is_scored_by_its_critical_ratio():
    from mixsearch.bench.truth import RatioTruth

    w = load_world("synthetic:cpt-finance")
    assert w.schedule is not None and w.schedule.new_domain == "finance" and w.ladder.target.tokens == 4_000_000_000
    assert isinstance(w.truth, RatioTruth) and w.truth.cmr == pytest.approx(0.379, abs=1e-3)
    assert w.truth.span == 1.0  # thresholds are errors in R: 5 % is |error| <= 0.05
    assert w.truth.regret([0.6, 0.4]) == pytest.approx(abs(0.4 - w.truth.cmr))
    assert w.truth.regret(None) == 1.0
    assert load_world("synthetic:cpt-finance", target="1B").truth.cmr == pytest.approx(0.572, abs=1e-3)
    with pytest.raises(ValueError, match="offers no pool"):
        load_world("synthetic:cpt-finance?pool=8")
