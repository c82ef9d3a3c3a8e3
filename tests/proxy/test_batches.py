"""Batches of token windows: the sampler follows the mixture exactly, evaluation windows are fixed."""

from __future__ import annotations

import numpy as np
import pytest

from mixsearch.proxy.batches import MixtureSampler, eval_windows, normalise_weights


def domain_arrays() -> list[np.ndarray]:
    """Three domains whose tokens identify them: domain k holds only ids 100k … 100k + 9."""
    return [np.arange(5000, dtype=np.uint16) % 10 + 100 * k for k in range(3)]


def test_sampler_follows_the_weights_exactly():
    w = np.array([0.6, 0.3, 0.1])
    s = MixtureSampler(domain_arrays(), w, seq_len=16, batch_size=10, seed=0)
    rows = np.concatenate([s.next_batch() for _ in range(50)])  # [500, 17]
    domain = rows[:, 0] // 100
    assert (rows // 100 == domain[:, None]).all()  # a window never crosses domains
    counts = np.bincount(domain, minlength=3)
    assert np.abs(counts - w * 500).max() <= 1
    assert (s.counts == counts).all()


def test_zero_weight_domain_is_never_sampled():
    s = MixtureSampler(domain_arrays(), np.array([0.0, 0.999, 0.001]), seq_len=8, batch_size=7, seed=1)
    rows = np.concatenate([s.next_batch() for _ in range(300)])
    assert not (rows // 100 == 0).any()
    assert (rows // 100 == 2).any()


def test_sampler_is_seeded():
    a = MixtureSampler(domain_arrays(), np.array([0.5, 0.5, 0.0]), 8, 4, seed=1).next_batch()
    b = MixtureSampler(domain_arrays(), np.array([0.5, 0.5, 0.0]), 8, 4, seed=1).next_batch()
    c = MixtureSampler(domain_arrays(), np.array([0.5, 0.5, 0.0]), 8, 4, seed=2).next_batch()
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_sampler_rejects_a_domain_shorter_than_a_window():
    with pytest.raises(ValueError, match="domain 'b' has 5 training tokens"):
        MixtureSampler([np.zeros(100, np.uint16), np.zeros(5, np.uint16)], np.array([0.5, 0.5]), 8, 2, 0, ["a", "b"])


def test_eval_windows_are_fixed_and_tile_the_validation_tokens(tiny_corpus):
    a = eval_windows(tiny_corpus, seq_len=32, eval_tokens=512)
    b = eval_windows(tiny_corpus, seq_len=32, eval_tokens=512)
    for name, win in a.items():
        assert win.shape == (16, 33)
        assert np.array_equal(win, b[name])
        val = np.asarray(tiny_corpus.val_tokens(name))
        assert np.array_equal(win[1, 0], val[32]) and np.array_equal(win[0, -1], val[32])
    with pytest.raises(ValueError, match="validation tokens; need at least seq_len"):
        eval_windows(tiny_corpus, seq_len=100_000, eval_tokens=10**6)


def test_weights_are_checked_and_normalised():
    assert normalise_weights({"a": 2, "b": 2}, ["a", "b", "c"]).tolist() == [0.5, 0.5, 0.0]
    with pytest.raises(ValueError, match="unknown domains"):
        normalise_weights({"z": 1}, ["a"])
    with pytest.raises(ValueError, match="expected 2 weights"):
        normalise_weights([1.0], ["a", "b"])
    with pytest.raises(ValueError, match="not all zero"):
        normalise_weights([0.0, 0.0], ["a", "b"])


def test_a_two_phase_sampler_switches_at_its_batch_and_realises_each_phase():
    from mixsearch.proxy.train import switch_step

    s = MixtureSampler(domain_arrays(), np.array([1.0, 0.0, 0.0]), 8, 10, seed=0, then=np.array([0.0, 0.5, 0.5]), switch_batch=3)
    domain_of = lambda b: b[:, 0] // 100  # noqa: E731 - each domain's tokens identify it
    first = [domain_of(s.next_batch()) for _ in range(3)]
    second = [domain_of(s.next_batch()) for _ in range(4)]
    assert all((b == 0).all() for b in first)
    assert all((np.bincount(b, minlength=3) == [0, 5, 5]).all() for b in second)
    assert s.rows_per_domain.tolist() == [30, 20, 20]
    # The same seed draws the same windows up to the switch as a one-phase sampler does.
    one = MixtureSampler(domain_arrays(), np.array([1.0, 0.0, 0.0]), 8, 10, seed=0)
    again = MixtureSampler(domain_arrays(), np.array([1.0, 0.0, 0.0]), 8, 10, seed=0, then=np.array([0.0, 0.5, 0.5]), switch_batch=3)
    assert all((one.next_batch() == again.next_batch()).all() for _ in range(3))
    assert switch_step(0.5, 31) == 16 and switch_step(0.01, 31) == 1 and switch_step(0.99, 31) == 30 and switch_step(0.5, 1) == 1
