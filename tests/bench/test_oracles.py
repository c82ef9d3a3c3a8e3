"""load_oracle: the CLI spelling of an oracle, and its errors."""

from __future__ import annotations

import pytest

from mixsearch.bench.oracles import load_oracle


@pytest.mark.parametrize(
    "spec, message",
    [
        ("nonsense", "--oracle: expected 'table:PATH.csv' or 'synthetic:NAME'"),
        ("csv:x.csv", "unknown oracle kind 'csv'"),
        ("synthetic:nope", "unknown synthetic oracle 'nope'; known: mixing-shift"),
        ("synthetic:mixing-shift?pool=abc", "synthetic option 'pool' needs a number"),
        ("synthetic:mixing-shift?colour=red", "bad synthetic option 'colour=red'"),
        ("table:/no/such/file.csv", "/no/such/file.csv: table file not found"),
    ],
)
def test_load_oracle_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        load_oracle(spec)


def test_load_oracle_synthetic_target():
    o = load_oracle("synthetic:mixing-shift?pool=8", target="100M")
    assert o.ladder.target.name == "100M" and o.ladder.names == ["25M", "50M", "100M"]
    with pytest.raises(ValueError, match="--target: '1B' is not a rung"):
        load_oracle("synthetic:mixing-shift", target="1B")
