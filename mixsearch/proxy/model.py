"""ProxyModel: a small GPT (pre-LN, RoPE or learned positions, tied embeddings), and the size ladder.

One file, read top to bottom. Every weight carries a leading "model" dimension ``P``, so
``P`` independent proxies (different mixtures, different seeds) train in one process
with batched matmuls (``torch.bmm`` on ``[P, d_in, d_out]`` weights) and one attention
call over ``P * B`` sequences. A single proxy is simply ``P = 1``; the arithmetic per
model is the same either way, so a batched proxy equals an independent one up to
floating-point noise.

Size convention: ``N`` is the **non-embedding** parameter count of one model (the
transformer blocks and final norm; token and position embeddings excluded), as in
Kaplan et al. (2020) and the ``6 * N * D`` training-FLOP estimate. The tied LM head
costs compute but is not in ``N``; :meth:`ModelConfig.flops_per_token` counts it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ModelConfig:
    """Shape of one ProxyModel.

    Attributes:
        vocab_size: Tokenizer vocabulary V.
        n_layer: Transformer blocks L.
        n_head: Attention heads H (``d_model % n_head == 0``).
        d_model: Residual width d.
        seq_len: Longest context T the model is built for (RoPE tables, learned positions).
        rope: Rotary position embeddings (True) or learned absolute positions (False).
        mlp_ratio: MLP hidden width as a multiple of ``d_model``.
    """

    vocab_size: int = 8192
    n_layer: int = 2
    n_head: int = 2
    d_model: int = 128
    seq_len: int = 256
    rope: bool = True
    mlp_ratio: int = 4

    def __post_init__(self) -> None:
        for name in ("vocab_size", "n_layer", "n_head", "d_model", "seq_len", "mlp_ratio"):
            v = getattr(self, name)
            if not isinstance(v, int) or v <= 0:
                raise ValueError(f"model.{name}: must be a positive integer, got {v!r}")
        if self.d_model % self.n_head or (self.d_model // self.n_head) % 2:
            raise ValueError(f"model.n_head: d_model={self.d_model} must split into {self.n_head} heads of even size")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    @property
    def n_params(self) -> int:
        """Non-embedding parameters N of one model (exact).

        Per block: attention ``4 d^2`` (qkv + output), MLP ``2 r d^2``, two norm weights
        ``2 d`` (no biases anywhere); plus the final norm ``d``.
        """
        d, r = self.d_model, self.mlp_ratio
        return self.n_layer * ((4 + 2 * r) * d * d + 2 * d) + d

    @property
    def n_embedding_params(self) -> int:
        """Token embedding (tied with the LM head) plus learned positions, if any."""
        return self.vocab_size * self.d_model + (0 if self.rope else self.seq_len * self.d_model)

    @property
    def n_params_total(self) -> int:
        """Every trainable parameter of one model."""
        return self.n_params + self.n_embedding_params

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per token (forward + backward) of one model.

        ``6 (N + V d)`` for the weight matmuls, the tied LM head included, plus
        ``12 L T d`` for attention scores and values at context T (PaLM's count,
        which ignores the causal mask's saving). Norms, softmax and the like are
        not counted.
        """
        t = self.seq_len if seq_len is None else seq_len
        return 6.0 * (self.n_params + self.vocab_size * self.d_model) + 12.0 * self.n_layer * t * self.d_model


# -- the size ladder ------------------------------------------------------------------

# Widths: multiples of 32 below 256 with 32-dimensional heads, then multiples of 64
# with 64-dimensional heads (tensor-core friendly).
_WIDTHS = tuple(range(32, 256, 32)) + tuple(range(256, 2049, 64))
_MAX_LAYERS = 48
_ASPECT = (32.0, 128.0)  # allowed d_model / n_layer; GPT-2 small is 64
_TIE = 0.02  # shapes within 2% of the best size count as equally close


def _head_count(d_model: int) -> int:
    return d_model // (32 if d_model < 256 else 64)


def size_config(n_params: int, vocab_size: int = 8192, seq_len: int = 256, rope: bool = True) -> ModelConfig:
    """The ladder shape whose non-embedding parameter count N is closest to ``n_params``.

    The ladder holds every (n_layer, d_model) with d_model in ``_WIDTHS`` (32 … 2048), 1 to 48
    layers and aspect ratio d_model / n_layer in [32, 128]. Closest means smallest
    ``|log(N / n_params)|``; shapes within 2% of the best are tie-broken towards an
    aspect ratio of 64 (GPT-2's). The choice depends on ``n_params`` only, not on the
    vocabulary or context.

    Args:
        n_params: Target non-embedding parameter count (a rung's ``n_params``).
        vocab_size: Vocabulary of the model built.
        seq_len: Context length of the model built.
        rope: Rotary (True) or learned (False) positions.

    Raises:
        ValueError: ``n_params`` is not a positive integer.
    """
    if not isinstance(n_params, int) or isinstance(n_params, bool) or n_params <= 0:
        raise ValueError(f"n_params: must be a positive integer, got {n_params!r}")
    shapes = []
    for d in _WIDTHS:
        for layers in range(1, _MAX_LAYERS + 1):
            if _ASPECT[0] <= d / layers <= _ASPECT[1]:
                cfg = ModelConfig(vocab_size, layers, _head_count(d), d, seq_len, rope)
                shapes.append((abs(math.log(cfg.n_params / n_params)), abs(math.log(d / layers / 64.0)), cfg))
    best = min(s[0] for s in shapes)
    near = [s for s in shapes if s[0] <= best + _TIE]
    return min(near, key=lambda s: (s[1], s[0]))[2]


# Named sizes (target N, non-embedding) spanning the range proxies are run at.
PRESETS: dict[str, int] = {
    "50k": 50_000,
    "100k": 100_000,
    "400k": 400_000,
    "1M": 1_000_000,
    "3M": 3_000_000,
    "10M": 10_000_000,
    "25M": 25_000_000,
    "50M": 50_000_000,
    "124M": 124_000_000,
}

# GPT-2 small's shape (12 x 768, 12 heads): 85M non-embedding parameters, "124M" with
# GPT-2's 50257-token vocabulary and learned positions.
GPT2_SMALL = ModelConfig(vocab_size=50304, n_layer=12, n_head=12, d_model=768, seq_len=1024, rope=False)


def preset_config(name: str, vocab_size: int = 8192, seq_len: int = 256, rope: bool = True) -> ModelConfig:
    """The ladder shape of a named preset (``"1M"``, ``"124M"`` …)."""
    if name not in PRESETS:
        raise ValueError(f"model preset: unknown {name!r}; known: {', '.join(PRESETS)}")
    return size_config(PRESETS[name], vocab_size, seq_len, rope)


# -- layers, each holding P stacked models ----------------------------------------------


class StackedLinear(nn.Module):
    """``P`` independent bias-free linear maps: ``y[p] = x[p] @ W[p]``.

    Args:
        n_models: P.
        d_in: Input width.
        d_out: Output width.
    """

    def __init__(self, n_models: int, d_in: int, d_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_models, d_in, d_out))  # [P, d_in, d_out]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.bmm(x, self.weight)  # [P, N, d_in] @ [P, d_in, d_out] -> [P, N, d_out]


class StackedLayerNorm(nn.Module):
    """Bias-free LayerNorm with a separate gain per model."""

    def __init__(self, n_models: int, d: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n_models, d))  # [P, d]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [P, N, d]
        return F.layer_norm(x, x.shape[-1:]) * self.weight[:, None, :].to(x.dtype)


def rope_tables(seq_len: int, head_dim: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotary cos/sin tables, each ``[seq_len, head_dim // 2]``."""
    inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float64), inv_freq)
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (i, i + hd/2) of ``x`` ``[n, T, H, hd]`` by position."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    c = cos[None, : x.shape[1], None, :].to(x.dtype)  # [1, T, 1, hd/2]
    s = sin[None, : x.shape[1], None, :].to(x.dtype)
    return torch.cat((x1 * c - x2 * s, x1 * s + x2 * c), dim=-1)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig, n_models: int) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.qkv = StackedLinear(n_models, cfg.d_model, 3 * cfg.d_model)
        self.proj = StackedLinear(n_models, cfg.d_model, cfg.d_model)

    def forward(self, x: torch.Tensor, batch: int, rope: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        p, n, d = x.shape  # [P, B*T, d]
        t, h = n // batch, self.n_head
        qkv = self.qkv(x).view(p * batch, t, 3, h, d // h)  # [P*B, T, 3, H, hd]
        q, k, v = qkv.unbind(dim=2)  # each [P*B, T, H, hd]
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        # All P*B sequences attend in one call: models never see each other's tokens.
        y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)
        y = y.transpose(1, 2).reshape(p, n, d)  # [P*B, H, T, hd] -> [P, B*T, d]
        return self.proj(y)


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig, n_models: int) -> None:
        super().__init__()
        self.fc = StackedLinear(n_models, cfg.d_model, cfg.mlp_ratio * cfg.d_model)
        self.proj = StackedLinear(n_models, cfg.mlp_ratio * cfg.d_model, cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x), approximate="tanh"))  # [P, N, d] -> [P, N, r*d] -> [P, N, d]


class Block(nn.Module):
    """Pre-LN transformer block: ``x + attn(ln(x))``, then ``x + mlp(ln(x))``."""

    def __init__(self, cfg: ModelConfig, n_models: int) -> None:
        super().__init__()
        self.ln1 = StackedLayerNorm(n_models, cfg.d_model)
        self.attn = CausalSelfAttention(cfg, n_models)
        self.ln2 = StackedLayerNorm(n_models, cfg.d_model)
        self.mlp = MLP(cfg, n_models)

    def forward(self, x: torch.Tensor, batch: int, rope: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), batch, rope)
        return x + self.mlp(self.ln2(x))


class ProxyModel(nn.Module):
    """``P`` GPT language models of one shape, trained side by side.

    Args:
        cfg: The shape.
        n_models: P, how many independent models the weights hold.
        seeds: One initialisation seed per model (default ``0 … P-1``). Model ``p`` is
            initialised exactly as a ``P = 1`` model with seed ``seeds[p]``.
    """

    def __init__(self, cfg: ModelConfig, n_models: int = 1, seeds: Sequence[int] | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.n_models = n_models
        self.wte = nn.Parameter(torch.empty(n_models, cfg.vocab_size, cfg.d_model))  # [P, V, d], tied LM head
        self.wpe = None if cfg.rope else nn.Parameter(torch.empty(n_models, cfg.seq_len, cfg.d_model))  # [P, T, d]
        self.blocks = nn.ModuleList(Block(cfg, n_models) for _ in range(cfg.n_layer))
        self.ln_f = StackedLayerNorm(n_models, cfg.d_model)
        if cfg.rope:
            cos, sin = rope_tables(cfg.seq_len, cfg.head_dim)
            self.register_buffer("rope_cos", cos, persistent=False)  # [T, hd/2]
            self.register_buffer("rope_sin", sin, persistent=False)
        self.init_weights(list(range(n_models)) if seeds is None else seeds)

    @torch.no_grad()
    def init_weights(self, seeds: Sequence[int]) -> None:
        """GPT-2 initialisation, model by model, each from its own seed.

        Matrices and embeddings ~ N(0, 0.02); the two residual output projections of
        each block are scaled down by ``sqrt(2 L)``; norm gains are 1.
        """
        if len(seeds) != self.n_models:
            raise ValueError(f"seeds: need {self.n_models} seeds, got {len(seeds)}")
        residual = {f"blocks.{i}.{m}.proj.weight" for i in range(self.cfg.n_layer) for m in ("attn", "mlp")}
        std_res = 0.02 / math.sqrt(2 * self.cfg.n_layer)
        for p, seed in enumerate(seeds):
            g = torch.Generator().manual_seed(int(seed))
            for name, param in self.named_parameters():
                if name.endswith("ln1.weight") or name.endswith("ln2.weight") or name == "ln_f.weight":
                    param[p].fill_(1.0)
                    continue
                # Drawn on the CPU so every device starts from the same numbers.
                values = torch.empty(param.shape[1:]).normal_(0.0, std_res if name in residual else 0.02, generator=g)
                param[p].copy_(values)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        """Logits, or each model's mean next-token loss.

        Args:
            idx: Token ids ``[P, B, T]`` (long), model p reads ``idx[p]``.
            targets: Next-token ids ``[P, B, T]``; when given, the losses are returned.

        Returns:
            Logits ``[P, B, T, V]`` without targets; else loss per model ``[P]`` (fp32).
        """
        p, b, t = idx.shape
        cfg = self.cfg
        # One embedding lookup for all models: model p's rows sit at p*V … p*V + V-1.
        offsets = torch.arange(p, device=idx.device).view(p, 1, 1) * cfg.vocab_size
        x = F.embedding(idx + offsets, self.wte.view(p * cfg.vocab_size, cfg.d_model))  # [P, B, T, d]
        if self.wpe is not None:
            x = x + self.wpe[:, None, :t, :]
        x = x.view(p, b * t, cfg.d_model)  # [P, B*T, d]
        rope = (self.rope_cos, self.rope_sin) if cfg.rope else None
        for block in self.blocks:
            x = block(x, b, rope)
        x = self.ln_f(x)
        logits = torch.bmm(x, self.wte.transpose(1, 2).to(x.dtype))  # [P, B*T, d] @ [P, d, V] -> [P, B*T, V]
        if targets is None:
            return logits.view(p, b, t, cfg.vocab_size)
        loss = F.cross_entropy(logits.float().view(-1, cfg.vocab_size), targets.reshape(-1), reduction="none")
        return loss.view(p, b * t).mean(dim=1)  # [P]

    def decay_groups(self, weight_decay: float) -> list[dict]:
        """AdamW parameter groups: weight decay on matrices and embeddings, none on norm gains."""
        decay = [prm for prm in self.parameters() if prm.dim() >= 3]
        keep = [prm for prm in self.parameters() if prm.dim() < 3]
        return [{"params": decay, "weight_decay": weight_decay}, {"params": keep, "weight_decay": 0.0}]


def with_seq_len(cfg: ModelConfig, seq_len: int) -> ModelConfig:
    """``cfg`` built for context ``seq_len``."""
    return replace(cfg, seq_len=seq_len)
