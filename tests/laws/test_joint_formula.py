"""The joint law's formula: gradients, public parameters, coordinates and bounds."""

from __future__ import annotations

import numpy as np
import pytest

from mixsearch.laws.joint_formula import JointFormula, Term, term_values


def test_jacobian_matches_finite_differences(jacobian_error) -> None:
    rng = np.random.default_rng(1)
    w = rng.dirichlet(np.ones(4), 30)
    x = np.column_stack([w, np.exp(rng.uniform(14, 19, 30)), np.exp(rng.uniform(19, 23, 30))])
    terms = [Term("c", "E", "const"), Term("E1", "E", "both"), Term("E2", "E", "log"), Term("E3", "E", "linear"), Term("A", "A", "log"), Term("B", "B", "fixed")]
    formula = JointFormula.for_data(4, terms, 0.01, x, fixed={"B": 300.0, "beta": 0.3})
    theta = rng.normal(0.0, 0.3, len(formula.names))
    assert jacobian_error(formula, theta, x) < 1e-5
    # The public parameters evaluate to the same law, and the coordinates round-trip.
    public = formula.to_public(theta[None, :])
    assert np.log(term_values(public, terms, w, np.log(x[:, 4]), np.log(x[:, 5]), 0.01).sum(axis=0)[0]) == pytest.approx(formula.value(theta, x), abs=1e-12)
    assert formula.internal(formula.natural(theta)) == pytest.approx(theta, abs=1e-12)


def test_log_share_exponents_are_bounded_in_natural_units() -> None:
    """Internal u are scaled natural u: the box bounds must mean -1 <= u <= 0 on the raw log shares."""
    rng = np.random.default_rng(2)
    w = rng.dirichlet(np.ones(3), 40)
    x = np.column_stack([w, np.full(40, 1e7), np.full(40, 1e9)])
    formula = JointFormula.for_data(3, [Term("c", "E", "const"), Term("E1", "E", "log")], 0.01, x)
    lo = np.array([b[0] for b in formula.bounds()][2:])
    hi = np.array([b[1] for b in formula.bounds()][2:])
    theta = np.zeros(len(formula.names))
    theta[2:] = lo
    assert formula.natural(theta)[2:] == pytest.approx([-1.0] * 3)
    theta[2:] = hi
    assert formula.natural(theta)[2:] == pytest.approx([0.0] * 3)
