"""ProxyModel and the size ladder: parameter counts, stacking, causality, initialisation."""

from __future__ import annotations

import math

import pytest
import torch

from mixsearch.proxy.model import GPT2_SMALL, PRESETS, ModelConfig, ProxyModel, preset_config, size_config


def count_non_embedding(model: ProxyModel) -> int:
    """Parameters of one model of the stack, token and position embeddings excluded."""
    total = sum(p.numel() for name, p in model.named_parameters() if name not in ("wte", "wpe")) // model.n_models
    return total


@pytest.mark.parametrize("target", [50_000, 100_000, 400_000, 1_000_000, 3_000_000])
def test_ladder_count_is_the_built_models_count(target):
    cfg = size_config(target, vocab_size=512, seq_len=64)
    model = ProxyModel(cfg)
    assert count_non_embedding(model) == cfg.n_params
    assert sum(p.numel() for p in model.parameters()) == cfg.n_params_total
    assert abs(math.log(cfg.n_params / target)) < 0.1


def test_ladder_covers_50k_to_124M_with_sane_shapes():
    assert list(PRESETS)[0] == "50k" and list(PRESETS)[-1] == "124M"
    sizes = []
    for name, target in PRESETS.items():
        cfg = preset_config(name)
        sizes.append(cfg.n_params)
        assert abs(cfg.n_params / target - 1) < 0.1, name
        assert 32 <= cfg.d_model / cfg.n_layer <= 128
        assert cfg.head_dim in (32, 64)
    assert sizes == sorted(sizes)


def test_ladder_picks_the_closest_shape():
    cfg = size_config(400_000)
    assert (cfg.n_layer, cfg.d_model) == (2, 128)  # 393,856: closer than any other shape
    for target in (10_000, 2_000_000, 60_000_000):
        best = size_config(target)
        # No ladder shape with another width is more than 2% closer.
        for d in (best.d_model - 64, best.d_model + 64):
            for layers in range(1, 49):
                if d > 0 and 32 <= d / layers <= 128:
                    other = ModelConfig(n_layer=layers, n_head=d // (32 if d < 256 else 64), d_model=d)
                    assert abs(math.log(other.n_params / target)) >= abs(math.log(best.n_params / target)) - 0.02


def test_ladder_rejects_bad_sizes():
    for bad in (0, -5, 1.5, True):
        with pytest.raises(ValueError, match="n_params"):
            size_config(bad)


def test_gpt2_small_shape_has_the_known_count():
    assert GPT2_SMALL.n_params == 84_953_856  # GPT-2 small without embeddings (biases excluded)


def test_flops_per_token_formula():
    cfg = ModelConfig(vocab_size=1000, n_layer=2, n_head=2, d_model=64, seq_len=128)
    assert cfg.flops_per_token() == 6 * (cfg.n_params + 1000 * 64) + 12 * 2 * 128 * 64


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="n_head"):
        ModelConfig(n_head=3, d_model=64)
    with pytest.raises(ValueError, match="model.n_layer"):
        ModelConfig(n_layer=0)


@pytest.mark.parametrize("rope", [True, False])
def test_stacked_models_equal_single_models_with_the_same_seed(rope):
    cfg = ModelConfig(vocab_size=97, n_layer=2, n_head=2, d_model=32, seq_len=16, rope=rope)
    stack = ProxyModel(cfg, 3, seeds=[5, 7, 5])
    singles = [ProxyModel(cfg, 1, seeds=[s]) for s in (5, 7, 5)]
    for p, single in enumerate(singles):
        for (name, a), (_, b) in zip(stack.named_parameters(), single.named_parameters()):
            assert torch.equal(a[p], b[0]), name
    idx = torch.randint(0, 97, (3, 4, 16), generator=torch.Generator().manual_seed(0))
    losses = stack(idx, idx.roll(-1, dims=-1))
    assert losses.shape == (3,)
    for p, single in enumerate(singles):
        alone = single(idx[p : p + 1], idx[p : p + 1].roll(-1, dims=-1))
        assert torch.allclose(losses[p], alone[0], atol=1e-5)
    logits = stack(idx)
    assert logits.shape == (3, 4, 16, 97)


def test_models_are_causal():
    cfg = ModelConfig(vocab_size=50, n_layer=2, n_head=2, d_model=32, seq_len=12)
    model = ProxyModel(cfg, 2).eval()
    idx = torch.randint(0, 50, (2, 3, 12))
    changed = idx.clone()
    changed[..., 8:] = (changed[..., 8:] + 1) % 50
    with torch.no_grad():
        a, b = model(idx), model(changed)
    assert torch.allclose(a[..., :8, :], b[..., :8, :], atol=1e-6)
    assert not torch.allclose(a[..., 8:, :], b[..., 8:, :])


def test_initial_loss_is_near_uniform_and_embeddings_are_tied():
    cfg = ModelConfig(vocab_size=300, n_layer=1, n_head=2, d_model=64, seq_len=32)
    model = ProxyModel(cfg, 1, seeds=[0])
    g = torch.Generator().manual_seed(0)
    idx, targets = torch.randint(0, 300, (2, 1, 8, 32), generator=g)
    loss = model(idx, targets)
    assert abs(loss.item() - math.log(300)) < 0.3
    loss.backward()
    # The LM head is the embedding: rows of tokens never fed in still get gradient.
    unseen = sorted(set(range(300)) - set(idx.flatten().tolist()))
    assert model.wte.grad[0, unseen].abs().sum() > 0


def test_decay_groups_split_matrices_from_norm_gains():
    model = ProxyModel(ModelConfig(vocab_size=64, n_layer=1, n_head=1, d_model=32, seq_len=8))
    decay, keep = model.decay_groups(0.1)
    assert decay["weight_decay"] == 0.1 and keep["weight_decay"] == 0.0
    assert all(p.dim() == 3 for p in decay["params"]) and all(p.dim() == 2 for p in keep["params"])
    assert len(decay["params"]) + len(keep["params"]) == len(list(model.parameters()))
