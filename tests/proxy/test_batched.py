"""Batched proxies equal independent ones; packs, seeds and divergence are handled."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mixsearch.candidate import EvaluationError
from mixsearch.proxy.batched import train_proxies
from mixsearch.proxy.train import train_proxy

TINY = {"seq_len": 32, "batch_size": 8, "eval_tokens": 1024}
MIXES = [[1.0, 0.0, 0.0], [0.2, 0.5, 0.3], [0.0, 0.4, 0.6]]
SEEDS = [0, 1, 2]


def assert_same_runs(batched, alone, atol):
    for b, a in zip(batched, alone):
        assert b.weights == pytest.approx(a.weights)
        assert b.domain_tokens == a.domain_tokens
        for name in a.domain_losses:
            assert b.domain_losses[name] == pytest.approx(a.domain_losses[name], abs=atol), name
        assert np.allclose([v for _, v in b.curve], [v for _, v in a.curve], atol=atol)


def test_batched_proxies_equal_independent_runs_on_cpu(tiny_corpus):
    kw = dict(n_params=50_000, tokens=8192, device="cpu", **TINY)
    batched = train_proxies(tiny_corpus, MIXES, seeds=SEEDS, **kw)
    alone = [train_proxy(tiny_corpus, m, seed=s, **kw) for m, s in zip(MIXES, SEEDS)]
    assert [r.pack_size for r in batched] == [3, 3, 3] and alone[0].pack_size == 1
    assert_same_runs(batched, alone, atol=1e-5)  # bitwise equal on our CPU
    # Different mixtures really are different runs.
    assert batched[0].domain_losses["prose"] < batched[2].domain_losses["prose"]


def test_packs_split_by_max_pack_give_the_same_runs(tiny_corpus):
    kw = dict(n_params=50_000, tokens=4096, device="cpu", **TINY)
    whole = train_proxies(tiny_corpus, MIXES, seeds=SEEDS, **kw)
    split = train_proxies(tiny_corpus, MIXES, seeds=SEEDS, max_pack=2, **kw)
    assert [r.pack_size for r in split] == [2, 2, 1]
    assert_same_runs(split, whole, atol=1e-5)


def test_one_seed_for_all_gives_common_random_numbers(tiny_corpus):
    runs = train_proxies(tiny_corpus, [MIXES[1], MIXES[1]], n_params=50_000, tokens=2048, seeds=7, device="cpu", **TINY)
    assert runs[0].seed == runs[1].seed == 7
    assert runs[0].domain_losses == pytest.approx(runs[1].domain_losses, abs=1e-6)


def test_bad_arguments_are_named(tiny_corpus):
    with pytest.raises(ValueError, match="seeds: need one seed per mixture"):
        train_proxies(tiny_corpus, MIXES, n_params=50_000, tokens=1024, seeds=[1, 2], device="cpu")
    with pytest.raises(ValueError, match="max_pack"):
        train_proxies(tiny_corpus, MIXES, n_params=50_000, tokens=1024, max_pack=0, device="cpu")
    with pytest.raises(ValueError, match="weights"):
        train_proxies(tiny_corpus, [[1.0, -1.0, 1.0]], n_params=50_000, tokens=1024, device="cpu")
    assert train_proxies(tiny_corpus, [], n_params=50_000, tokens=1024) == []


def test_divergence_is_reported_per_proxy_or_raised(tiny_corpus):
    kw = dict(n_params=50_000, tokens=4096, device="cpu", lr=1e4, warmup_frac=0.0, grad_clip=0.0, **TINY)
    runs = train_proxies(tiny_corpus, MIXES[:2], seeds=[0, 1], **kw)
    assert all(r.diverged and r.diverged.startswith("diverged") for r in runs)
    with pytest.raises(EvaluationError, match="2 of 2 proxies diverged"):
        train_proxies(tiny_corpus, MIXES[:2], seeds=[0, 1], raise_on_diverge=True, **kw)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_batched_proxies_equal_independent_runs_on_cuda(tiny_corpus):
    kw = dict(n_params=50_000, tokens=8192, device="cuda", compile=False, **TINY)
    batched = train_proxies(tiny_corpus, MIXES, seeds=SEEDS, **kw)
    alone = [train_proxy(tiny_corpus, m, seed=s, **kw) for m, s in zip(MIXES, SEEDS)]
    # bf16 autocast: the batched matmuls may round differently, so a looser tolerance.
    assert_same_runs(batched, alone, atol=0.05)
