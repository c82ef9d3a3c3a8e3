"""Bounded-simplex sampling and projection."""

import numpy as np
import pytest

from mixsearch import simplex
from mixsearch.study import SearchSpace

SPACES = [
    SearchSpace(("a", "b", "c", "d")),
    SearchSpace(("a", "b", "c", "d"), lower={"a": 0.1, "b": 0.2}),
    SearchSpace(("a", "b", "c", "d"), upper={"a": 0.1, "b": 0.15, "c": 0.3}),
    SearchSpace(("a", "b", "c", "d"), lower={"d": 0.05}, upper={"a": 0.4, "b": 0.4}, fixed={"c": 0.1}),
]


def feasible(w: np.ndarray, space: SearchSpace, tol: float = 1e-6) -> bool:
    lo, hi = simplex.bounds_arrays(space)
    return bool(np.all(w >= lo - tol) and np.all(w <= hi + tol) and abs(w.sum() - 1) <= tol)


@pytest.mark.parametrize("space", SPACES)
def test_samples_are_feasible_and_deterministic(space):
    a = simplex.sample(64, space, np.random.default_rng(3))
    b = simplex.sample(64, space, np.random.default_rng(3))
    assert a.shape == (64, 4)
    assert all(feasible(w, space) for w in a)
    np.testing.assert_array_equal(a, b)
    assert np.unique(a.round(6), axis=0).shape[0] > 32  # spread, not collapsed


@pytest.mark.parametrize("space", SPACES)
def test_projection_lands_in_the_set_and_fixes_feasible_points(space):
    rng = np.random.default_rng(0)
    for _ in range(50):
        w = rng.normal(size=4)
        p = simplex.project(w, space)
        assert feasible(p, space, 1e-9)
    x = simplex.sample(5, space, rng)
    for w in x:
        np.testing.assert_allclose(simplex.project(w, space), w, atol=1e-9)


def test_centre_is_uniform_without_bounds():
    np.testing.assert_allclose(simplex.centre(SPACES[0]), np.full(4, 0.25))


def test_upper_bounds_bind_detection():
    assert not simplex.upper_bounds_bind(SPACES[1])
    assert simplex.upper_bounds_bind(SPACES[2])
