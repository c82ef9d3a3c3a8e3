"""The table world: validation, lookup, duplicates, the Evaluator protocol, snapshots."""

from __future__ import annotations

import pickle

import pandas as pd
import pytest

from mixsearch import Budget, Domain, EvaluatorSpec, FidelityLadder, Rung, Study
from mixsearch.evaluate.table import TableEvaluator, read_table
from mixsearch.candidate import Candidate, EvaluationError
from mixsearch.evaluate import Evaluator, make_evaluator


# -- table: reading and validation -------------------------------------------------------


def _objective(ev, w, rung, cost):
    return ev.evaluate(Candidate(tuple(w), rung), Rung(rung, cost=cost)).objective


def test_table_ladder_pool_and_lookup(tiny_table, objective_fn):
    o = TableEvaluator(tiny_table)
    assert o.domains == ("a", "b", "c")
    assert o.ladder.names == ["small", "big"] and o.ladder.target.name == "big"
    assert o.ladder.rung("small").run_cost == 1.0 and o.ladder.target.run_cost == 8.0
    pool = o.pool()
    assert pool.weights.shape == (48, 3) and pool.rungs.count("big") == 24
    w = pool.weights[pool.rungs.index("big")]
    assert _objective(o, w, "big", 8.0) == pytest.approx(objective_fn(w[None, :], 1.0)[0])
    big = o.table.weights[o.target_rows()]
    assert len(big) == 24
    with pytest.raises(EvaluationError, match="not in the table"):
        _objective(o, [0.2, 0.2, 0.6], "big", 8.0)


def test_target_option_drops_costlier_labels(tiny_table):
    o = TableEvaluator(tiny_table, target="small")
    assert o.ladder.names == ["small"] and o.ladder.target.name == "small"
    assert set(o.pool().rungs) == {"small"}


def test_duplicate_rows_are_averaged(tmp_path):
    df = pd.DataFrame(
        {"w_a": [0.5, 0.5, 0.2], "w_b": [0.5, 0.5, 0.8], "fidelity": ["x", "x", "x"], "cost": [1.0, 3.0, 2.0], "objective": [1.0, 2.0, 5.0]}
    )
    df.to_csv(tmp_path / "t.csv", index=False)
    t = read_table(tmp_path / "t.csv")
    assert len(t.objective) == 2
    o = TableEvaluator(tmp_path / "t.csv")
    res = o.evaluate(Candidate((0.5, 0.5), "x"), Rung("x", cost=2.0))
    assert (res.objective, res.cost) == (pytest.approx(1.5), pytest.approx(2.0))


def _write(tmp_path, **changes):
    df = pd.DataFrame({"w_a": [0.5, 0.25], "w_b": [0.5, 0.75], "fidelity": ["1M", "60M"], "cost": [1.0, 60.0], "objective": [3.0, 2.5]})
    for col, value in changes.items():
        if value is None:
            df = df.drop(columns=[col])
        else:
            df[col] = value
    path = tmp_path / "bad.csv"
    df.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"cost": None}, "missing column 'cost'"),
        ({"objective": None}, "missing column 'objective'"),
        ({"fidelity": None}, "missing column 'fidelity'"),
        ({"w_b": None}, "at least two weight columns"),
        ({"w_a": [0.5, 0.3]}, r"columns w_\*: weights in row 3 sum to 1.05"),
        ({"w_a": [-0.1, 0.25], "w_b": [1.1, 0.75]}, "column 'w_a' has a negative weight"),
        ({"cost": [1.0, -60.0]}, "column 'cost' must be positive"),
        ({"objective": ["3.0", "abc"]}, "column 'objective' has a non-numeric value 'abc' \\(row 3\\)"),
        ({"objective": [3.0, None]}, "column 'objective' has an empty value"),
        ({"fidelity": ["1M", None]}, "column 'fidelity' has an empty value"),
    ],
)
def test_table_errors_name_file_and_column(tmp_path, changes, message):
    path = _write(tmp_path, **changes)
    with pytest.raises(ValueError, match=message) as info:
        TableEvaluator(path).prepare()
    text = str(info.value)
    assert text.startswith(str(path)) and "\n" not in text


def test_missing_file_and_unknown_target(tmp_path, tiny_table):
    with pytest.raises(ValueError, match="table file not found"):
        TableEvaluator(tmp_path / "nope.csv").prepare()
    with pytest.raises(ValueError, match="target fidelity '1B' is not in the table; labels: small, big"):
        TableEvaluator(tiny_table, target="1B").prepare()


# -- table: the Evaluator protocol --------------------------------------------------------


def _table_study(path, rungs=("small", "big")):
    return Study(
        name="tbl",
        domains=tuple(Domain(d) for d in ("a", "b", "c")),
        ladder=FidelityLadder(tuple(Rung(r, cost=1.0) for r in rungs), Rung("big", cost=8.0)),
        budget=Budget(max_trials=4),
        evaluator=EvaluatorSpec("table", {"path": str(path)}),
    )


def test_a_table_study_builds_the_table_evaluator(tmp_path, table_writer):
    path = table_writer(tmp_path / "t.csv", losses=True)
    ev = make_evaluator(_table_study(path))
    assert isinstance(ev, TableEvaluator) and isinstance(ev, Evaluator)
    ev.prepare()
    sid = ev.snapshot_id()
    assert sid.startswith("table-") and sid == TableEvaluator(path).snapshot_id()
    pool = ev.pool()
    w = pool.weights[0]
    res = ev.evaluate(Candidate(tuple(w), pool.rungs[0]), Rung(pool.rungs[0], cost=1.0))
    assert res.objective == pytest.approx(ev.table.objective[0])
    assert res.cost == 1.0 and res.finite
    assert set(res.domain_losses) == {"a", "b", "c"}
    with pytest.raises(EvaluationError, match="not in the table"):
        ev.evaluate(Candidate((0.9, 0.05, 0.05), "big"), Rung("big", cost=8.0))
    clone = pickle.loads(pickle.dumps(ev))
    assert _objective(clone, w, pool.rungs[0], 1.0) == res.objective


def test_evaluator_without_loss_columns_reports_the_objective(tiny_table):
    ev = TableEvaluator(tiny_table)
    w = ev.pool().weights[0]
    res = ev.evaluate(Candidate(tuple(w), "small"), Rung("small", cost=1.0))
    assert res.domain_losses == {"objective": res.objective}


def test_study_rung_missing_from_table(tiny_table):
    with pytest.raises(ValueError, match="study rung 'medium' is not a fidelity in the table"):
        TableEvaluator.from_study(_table_study(tiny_table, rungs=("small", "medium")))


@pytest.mark.parametrize(
    "options, message",
    [
        ({}, "evaluator.options.path: a table evaluator needs the table CSV path"),
        ({"path": 3}, "evaluator.options.path: a table evaluator needs the table CSV path, got 3"),
        ({"path": "/no/such.csv"}, "evaluator.options.path: table file not found"),
        ({"path": "x", "colour": "red"}, "evaluator.options.colour: unknown option of the table evaluator"),
    ],
)
def test_bad_table_options_name_the_field(tiny_table, options, message):
    study = _table_study(tiny_table)
    bad = Study(**{**study.__dict__, "evaluator": EvaluatorSpec("table", options)})
    with pytest.raises(ValueError, match=message):
        TableEvaluator.from_study(bad)


def test_snapshot_changes_with_content(tmp_path, table_writer):
    a = TableEvaluator(table_writer(tmp_path / "a.csv", seed=0)).snapshot_id()
    b = TableEvaluator(table_writer(tmp_path / "b.csv", seed=1)).snapshot_id()
    assert a != b


def test_optional_n_and_d_columns_give_the_ladder_its_scale(tmp_path):
    df = pd.DataFrame({"w_a": [0.5, 0.2, 0.5, 0.2], "w_b": [0.5, 0.8, 0.5, 0.8], "fidelity": ["s", "s", "m", "m"], "cost": [1.0, 1.0, 4.0, 4.0], "objective": [3.0, 2.9, 2.5, 2.4], "N": [1e6, 1e6, 4e6, 4e6], "D": [1e8, 1e8, 1e8, 1e8]})
    df.to_csv(tmp_path / "t.csv", index=False)
    ladder = TableEvaluator(tmp_path / "t.csv").ladder
    assert [(r.name, r.n_params, r.tokens, r.cost) for r in ladder.rungs] == [("s", 1_000_000, 100_000_000, 1.0), ("m", 4_000_000, 100_000_000, 4.0)]
    assert ladder.target.n_params == 4_000_000
    df.assign(N=[1e6, 2e6, 4e6, 4e6]).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match="column 'N' must hold one positive value per fidelity; 's' has 1e\\+06, 2e\\+06"):
        TableEvaluator(tmp_path / "bad.csv").prepare()
    df.drop(columns=["D"]).to_csv(tmp_path / "half.csv", index=False)
    with pytest.raises(ValueError, match="column 'N' needs column 'D' too"):
        TableEvaluator(tmp_path / "half.csv").prepare()
