"""Training one proxy: loss falls, the mixture shapes what is learned, divergence is caught."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mixsearch.candidate import EvaluationError
from mixsearch.proxy.train import TrainConfig, clip_grad_norm_per_model_, lr_at, train_proxy

TINY = {"n_params": 50_000, "seq_len": 32, "batch_size": 8, "eval_tokens": 1024}


def test_loss_falls_on_a_tiny_run(tiny_corpus):
    r = train_proxy(tiny_corpus, {"prose": 1, "code": 1, "math": 1}, tokens=16_384, seed=0, device="cpu", **TINY)
    first, last = r.curve[0][1], r.curve[-1][1]
    assert first > math.log(tiny_corpus.vocab_size) - 0.5
    assert last < first - 2.0
    assert r.curve[-1][0] == r.tokens == 64 * 8 * 32
    assert set(r.domain_losses) == {"prose", "code", "math"}
    assert all(v < math.log(tiny_corpus.vocab_size) - 1.0 for v in r.domain_losses.values())
    assert r.flops == 6 * r.n_params * r.tokens and r.n_params == 49_344
    assert r.tokens_per_s > 0 and r.device == "cpu" and r.diverged is None


def test_same_seed_same_result_other_seed_other_result(tiny_corpus):
    kw = dict(tokens=4096, device="cpu", **TINY)
    a = train_proxy(tiny_corpus, [0.5, 0.5, 0.0], seed=3, **kw)
    b = train_proxy(tiny_corpus, [0.5, 0.5, 0.0], seed=3, **kw)
    c = train_proxy(tiny_corpus, [0.5, 0.5, 0.0], seed=4, **kw)
    assert a.domain_losses == b.domain_losses and a.curve == b.curve
    assert a.domain_losses != c.domain_losses


def test_the_mixture_shapes_what_is_learned(tiny_corpus):
    kw = dict(tokens=12_288, seed=0, device="cpu", **TINY)
    code_only = train_proxy(tiny_corpus, {"code": 1.0}, **kw)
    prose_only = train_proxy(tiny_corpus, {"prose": 1.0}, **kw)
    assert code_only.domain_tokens["prose"] == 0 and code_only.domain_tokens["math"] == 0
    assert code_only.domain_losses["code"] < prose_only.domain_losses["code"] - 0.5
    assert prose_only.domain_losses["prose"] < code_only.domain_losses["prose"] - 0.5


def test_divergence_raises_evaluation_error(tiny_corpus):
    with pytest.raises(EvaluationError, match="^diverged"):
        train_proxy(tiny_corpus, [1, 1, 1], tokens=8192, lr=1e4, warmup_frac=0.0, grad_clip=0.0, device="cpu", **TINY)


def test_lr_schedule_warms_up_then_decays_to_the_floor():
    lrs = [lr_at(s, 100, 1.0, 0.1, 0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))
    assert lrs[-1] == pytest.approx(0.1)


def test_per_model_clipping_caps_each_model_alone():
    a = torch.zeros(3, 4, requires_grad=True)
    b = torch.zeros(3, 2, 2, requires_grad=True)
    a.grad = torch.tensor([[3.0, 0, 0, 0], [0.1, 0, 0, 0], [0, 0, 0, 0]])
    b.grad = torch.zeros(3, 2, 2)
    b.grad[0, 0, 0] = 4.0
    norms = clip_grad_norm_per_model_([a, b], 1.0)
    assert torch.allclose(norms, torch.tensor([5.0, 0.1, 0.0]))
    assert torch.allclose(a.grad[0, 0] ** 2 + b.grad[0, 0, 0] ** 2, torch.tensor(1.0), atol=1e-5)
    assert a.grad[1, 0] == pytest.approx(0.1)  # under the cap: untouched


def test_train_config_names_bad_fields():
    with pytest.raises(ValueError, match="seq_len"):
        TrainConfig(seq_len=0)
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(lr=-1.0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_bf16_on_cuda_tracks_fp32_on_cpu(tiny_corpus):
    kw = dict(tokens=8192, seed=0, log_every=4, **TINY)
    cpu = train_proxy(tiny_corpus, [1, 1, 1], device="cpu", **kw)
    gpu = train_proxy(tiny_corpus, [1, 1, 1], device="cuda", compile=False, **kw)
    first_cpu = [v for _, v in cpu.curve[:5]]
    first_gpu = [v for _, v in gpu.curve[:5]]
    assert np.allclose(first_cpu, first_gpu, rtol=0.02)
    for name in cpu.domain_losses:
        assert abs(cpu.domain_losses[name] - gpu.domain_losses[name]) < 0.1


def test_a_two_phase_run_trains_on_each_phase_for_its_share_of_the_steps(tiny_corpus):
    from mixsearch.proxy.batched import train_proxies

    kw = {"seq_len": 32, "batch_size": 8, "eval_tokens": 1024, "device": "cpu"}
    (run,) = train_proxies(tiny_corpus, [[1.0, 0.0, 0.0]], 50_000, 8192, 0, phases=[([0.0, 0.0, 1.0], 0.25)], **kw)
    steps = run.config["train"]["steps"]
    assert run.config["phases"]["switch_step"] == round(0.25 * steps)
    assert run.domain_tokens == {"prose": run.config["phases"]["switch_step"] * 256, "code": 0, "math": (steps - run.config["phases"]["switch_step"]) * 256}


def test_a_run_can_continue_a_trained_model(tiny_corpus):
    from mixsearch.proxy.batched import train_proxies
    from mixsearch.proxy.train import TrainConfig, train_stack

    kw = {"seq_len": 32, "batch_size": 8, "eval_tokens": 1024}
    kept = {}
    (base,) = train_stack(tiny_corpus, [np.array([1.0, 0.0, 0.0])], [0], 50_000, 8192, TrainConfig(**kw), "cpu", finish=lambda m: kept.update(m.state_dict()))
    cfg = __import__("mixsearch.proxy.model", fromlist=["size_config"]).size_config(50_000, tiny_corpus.vocab_size, 32)
    # One tiny step at a tiny learning rate barely moves it: a continued run starts from the base.
    (cont,) = train_proxies(tiny_corpus, [[1.0, 0.0, 0.0]], 50_000, 256, 0, init=(cfg, kept), lr=1e-6, device="cpu", **kw)
    (fresh,) = train_proxies(tiny_corpus, [[1.0, 0.0, 0.0]], 50_000, 256, 0, lr=1e-6, device="cpu", **kw)
    assert cont.domain_losses["prose"] == pytest.approx(base.domain_losses["prose"], abs=0.02)
    assert fresh.domain_losses["prose"] > base.domain_losses["prose"] + 1.0
