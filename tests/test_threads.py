"""Thread counts per kind of work: defaults, the one override, and a block that restores them."""

from __future__ import annotations

import pytest
import torch

from mixsearch.threads import ENV, available_cores, limited, threads_for


def test_defaults_give_proxies_every_core_and_fits_one_thread(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    assert threads_for("proxy") == available_cores()
    assert threads_for("surrogate") == 1 and threads_for("law") == 1


def test_one_number_or_per_kind_overrides(monkeypatch):
    monkeypatch.setenv(ENV, "3")
    assert [threads_for(k) for k in ("proxy", "surrogate", "law")] == [3, 3, 3]
    monkeypatch.setenv(ENV, "proxy=1, law=2")
    assert (threads_for("proxy"), threads_for("surrogate"), threads_for("law")) == (1, 1, 2)


@pytest.mark.parametrize("value, message", [("0", "positive integer"), ("two", "positive integer"), ("gpu=2", "unknown kind 'gpu'")])
def test_a_bad_override_names_the_variable(monkeypatch, value, message):
    monkeypatch.setenv(ENV, value)
    with pytest.raises(ValueError, match=f"{ENV}: .*{message}"):
        threads_for("law")
    with pytest.raises(ValueError, match="unknown kind"):
        threads_for("disk")


def test_a_limited_block_sets_torch_and_blas_threads_then_restores(monkeypatch):
    from threadpoolctl import threadpool_info

    monkeypatch.setenv(ENV, "surrogate=1")
    torch.set_num_threads(2)
    with limited("surrogate") as n:
        assert n == 1 and torch.get_num_threads() == 1
        assert all(pool["num_threads"] == 1 for pool in threadpool_info())
    assert torch.get_num_threads() == 2
