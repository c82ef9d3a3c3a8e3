"""Acquisition optimisation on the bounded simplex."""

import numpy as np
import pytest
import torch
from botorch.acquisition import AcquisitionFunction
from botorch.utils.transforms import t_batch_mode_transform

from mixsearch import simplex
from mixsearch.propose.acqopt import greedy_batch, optimise_on_simplex, pool_batch, raw_mixtures
from mixsearch.propose.fidelity import FidelityEncoder
from mixsearch.study import SearchSpace


class Bowl(AcquisitionFunction):
    """``-||w - centre||^2 - fidelity penalty``, with a repulsion from pending points.

    An analytic stand-in with a known maximiser, so the optimiser can be checked exactly.
    """

    def __init__(self, centre: np.ndarray, k: int) -> None:
        torch.nn.Module.__init__(self)
        self.centre = torch.tensor(centre, dtype=torch.double)
        self.k = k
        self.X_pending = None

    @t_batch_mode_transform(expected_q=1)
    def forward(self, X: torch.Tensor) -> torch.Tensor:
        w = X[..., 0, : self.k]
        value = -((w - self.centre) ** 2).sum(-1) - 0.1 * X[..., 0, self.k :].sum(-1)
        if self.X_pending is not None:
            d = ((w.unsqueeze(-2) - self.X_pending[:, : self.k]) ** 2).sum(-1)
            value = value - torch.exp(-d / 0.01).sum(-1)
        return value


SPACE = SearchSpace(("a", "b", "c", "d"), lower={"a": 0.05}, upper={"b": 0.3}, fixed={"d": 0.1})


def feasible(w: np.ndarray, space: SearchSpace, tol: float = 1e-6) -> bool:
    lo, hi = simplex.bounds_arrays(space)
    return bool(np.all(w >= lo - tol) and np.all(w <= hi + tol) and abs(w.sum() - 1) <= tol)


def test_raw_mixtures_are_feasible_and_include_the_anchors():
    anchors = simplex.sample(3, SPACE, np.random.default_rng(0))
    raw = raw_mixtures(SPACE, 20, np.random.default_rng(1), anchors)
    assert raw.shape == (23, 4)
    assert all(feasible(w, SPACE) for w in raw)
    np.testing.assert_array_equal(raw[-3:], anchors)


@pytest.mark.parametrize("centre", [[0.4, 0.2, 0.3, 0.1], [0.9, 0.05, 0.0, 0.05]])
def test_optimiser_finds_the_constrained_maximiser(centre):
    acq = Bowl(np.array(centre), 4)
    raw = raw_mixtures(SPACE, 64, np.random.default_rng(0), np.zeros((0, 4)))
    x, value = optimise_on_simplex(acq, SPACE, np.array([0.5]), raw, num_restarts=3, maxiter=100)
    w = x.reshape(-1)[:4].numpy()
    assert feasible(w, SPACE, 1e-9)
    assert w[3] == pytest.approx(0.1, abs=1e-12)  # fixed weight untouched
    assert float(x.reshape(-1)[4]) == 0.5  # fidelity held
    best = simplex.project(np.array(centre), SPACE)  # the bowl's maximiser is the projection
    np.testing.assert_allclose(w, best, atol=2e-3)
    assert value == pytest.approx(float(acq(x.unsqueeze(0))), abs=1e-12)


def test_greedy_batch_spreads_slots_and_picks_the_cheaper_penalised_rung():
    enc = FidelityEncoder(("lo", "hi"), np.array([[0.0], [1.0]]), {"lo": 1.0, "hi": 2.0}, "hi", True)
    acq = Bowl(np.array([0.4, 0.2, 0.3, 0.1]), 4)
    raw = raw_mixtures(SPACE, 64, np.random.default_rng(0), np.zeros((0, 4)))
    picks = greedy_batch(acq, SPACE, enc, ("lo", "hi"), 3, raw, 2, 60)
    assert [r for _, r in picks] == ["lo", "lo", "lo"]  # the bowl penalises fidelity
    ws = np.array([w for w, _ in picks])
    assert all(feasible(w, SPACE) for w in ws)
    assert np.linalg.norm(ws[0] - ws[1]) > 0.05  # the pending repulsion moved slot 2
    assert acq.X_pending is None  # restored


def test_greedy_batch_never_returns_a_trial_the_ledger_already_has():
    # A bowl whose maximiser is an existing trial (the incumbent a noisy world's acquisition
    # values again): the pick must be new, else the ledger returns the old trial and the
    # study stops with budget left.
    enc = FidelityEncoder(("lo", "hi"), np.array([[0.0], [1.0]]), {"lo": 1.0, "hi": 2.0}, "hi", True)
    centre = simplex.project(np.array([0.4, 0.2, 0.3, 0.1]), SPACE)
    raw = raw_mixtures(SPACE, 64, np.random.default_rng(0), centre[None, :])
    free = greedy_batch(Bowl(centre, 4), SPACE, enc, ("lo", "hi"), 1, raw, 2, 60)
    np.testing.assert_allclose(free[0][0], centre, atol=2e-3)
    calls = []

    def known(w, rung):
        calls.append(rung)
        return rung == "lo" and np.linalg.norm(w - centre) < 5e-3

    picks = greedy_batch(Bowl(centre, 4), SPACE, enc, ("lo", "hi"), 2, raw, 2, 60, known=known)
    ws = np.array([w for w, _ in picks])
    assert calls and all(r == "lo" for _, r in picks)
    assert all(np.linalg.norm(w - centre) >= 5e-3 and feasible(w, SPACE) for w in ws)
    assert np.linalg.norm(ws[0] - ws[1]) > 1e-6  # and not the same new point twice


def test_pool_batch_returns_distinct_rows_best_first():
    choices = torch.tensor(simplex.sample(30, SearchSpace(("a", "b", "c", "d")), np.random.default_rng(0)))
    choices = torch.cat([choices, torch.zeros(30, 1, dtype=torch.double)], dim=1)
    acq = Bowl(np.array([0.25, 0.25, 0.25, 0.25]), 4)
    picked = pool_batch(acq, choices, 5)
    assert len(set(picked)) == 5
    first = int(torch.argmax(acq(choices.unsqueeze(1))))
    assert picked[0] == first
