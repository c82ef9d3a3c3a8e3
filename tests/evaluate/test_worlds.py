"""The continual pre-training worlds: the CMR paper's forms, a known critical ratio, a ladder beyond which the target lies."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import brentq

from mixsearch.evaluate.worlds import SYNTHETIC_WORLDS, CPTWorld, default_ladder


@pytest.mark.parametrize(
    "name, expected",
    [("cpt-finance", [0.945, 0.729, 0.572, 0.459, 0.379]), ("cpt-math", [1.0, 1.0, 0.778, 0.599, 0.461])],
)
def test_the_critical_ratio_is_known_and_moves_with_the_continued_tokens(name, expected):
    w = SYNTHETIC_WORLDS[name]
    assert isinstance(w, CPTWorld)
    got = [w.cmr(t * 1e9, 5e8) for t in (0.25, 0.5, 1.0, 2.0, 4.0)]
    assert got == pytest.approx(expected, abs=1e-3)


@pytest.mark.parametrize("name", ["cpt-finance", "cpt-math"])
def test_the_closed_form_is_where_the_general_loss_crosses_the_tolerance(name):
    w = SYNTHETIC_WORLDS[name]
    k = w.domains.index("general")
    for T, N, eps in ((4e9, 5e8, 0.05), (1e9, 1e9, 0.03), (2e9, 2.5e8, 0.08)):
        L0 = w.base_losses(N)[k]

        def excess(r: float) -> float:
            losses, _ = w.truth(np.array([[1.0 - r, r]]), N, T)
            return float(losses[0, k]) - L0 * (1 + eps)

        expected = 1.0 if excess(1.0) <= 0 else brentq(excess, 0.0, 1.0, xtol=1e-12)
        assert w.cmr(T, N, eps) == pytest.approx(expected, abs=1e-9)


def test_domain_data_lowers_the_domain_loss_and_a_larger_base_forgets_less():
    w = SYNTHETIC_WORLDS["cpt-finance"]
    losses, _ = w.truth(np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]), 5e8, 1e9)
    assert losses[0, 1] > losses[1, 1] > losses[2, 1]  # finance loss falls with R
    assert losses[0, 0] < losses[1, 0] < losses[2, 0]  # general loss rises with R
    assert w.cmr(2e9, 2e9) > w.cmr(2e9, 5e8)


def test_the_ladder_ends_below_the_target_unless_a_rung_is_named():
    ladder = default_ladder("cpt-finance")
    assert [r.tokens for r in ladder.rungs] == [250_000_000, 500_000_000, 1_000_000_000, 2_000_000_000]
    assert ladder.target.tokens == 4_000_000_000 and ladder.target.name not in ladder.names
    assert default_ladder("cpt-finance", "1B").target.name == "1B"
