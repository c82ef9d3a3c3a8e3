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
