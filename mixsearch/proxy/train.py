"""Train ProxyModels on mixtures and measure their per-domain validation loss.

The loop reads top to bottom: sample a batch per model in its mixture's proportions,
forward, backward, clip each model's gradient, AdamW step, and every ``log_every``
steps read the accumulated loss off the device (the only host sync) to record the
curve and catch divergence. One loop serves one proxy (:func:`train_proxy`) and many
(:func:`mixsearch.proxy.batched.train_proxies`): it always trains ``P`` stacked models.

Speed on a GPU: bf16 autocast, ``torch.compile``, fused AdamW, batches prepared by a
background thread in pinned memory and copied without blocking. On a CPU the same code
runs in fp32.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from mixsearch.candidate import EvaluationError
from mixsearch.interrupt import check_stop
from mixsearch.proxy.batches import MixtureSampler, Prefetcher, eval_windows, normalise_weights
from mixsearch.proxy.corpus import Corpus
from mixsearch.proxy.model import ModelConfig, ProxyModel, size_config

# Largest number of logits (P * rows * T * V) one evaluation forward may hold.
_EVAL_LOGITS = 1 << 26


@dataclass(frozen=True)
class TrainConfig:
    """How proxies are trained (the model size and token budget come per run).

    Attributes:
        seq_len: Context length T of training and evaluation windows.
        batch_size: Sequences per step per model B.
        lr: Peak learning rate; ``None`` picks :func:`default_lr` for the model width.
        min_lr_ratio: Final learning rate as a fraction of the peak (cosine decay).
        warmup_frac: Share of the steps spent warming up linearly from 0.
        weight_decay: AdamW decoupled weight decay on matrices and embeddings.
        betas: AdamW betas.
        grad_clip: Per-model gradient-norm clip; ``0`` disables it.
        eval_tokens: Held-out tokens per domain the validation loss is measured on
            (the first ``eval_tokens`` of the domain's validation split: the same for
            every run on the corpus).
        log_every: Steps between curve points; ``None`` gives about 50 points.
        compile: ``torch.compile`` the model; ``None`` means on for CUDA, off elsewhere.
    """

    seq_len: int = 256
    batch_size: int = 16
    lr: float | None = None
    min_lr_ratio: float = 0.1
    warmup_frac: float = 0.05
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    eval_tokens: int = 32768
    log_every: int | None = None
    compile: bool | None = None

    def __post_init__(self) -> None:
        for name in ("seq_len", "batch_size", "eval_tokens"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"{name}: must be a positive integer, got {v!r}")
        if self.lr is not None and not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ValueError(f"lr: must be a positive number, got {self.lr!r}")
        if not 0.0 <= self.warmup_frac < 1.0:
            raise ValueError(f"warmup_frac: must be in [0, 1), got {self.warmup_frac!r}")
        if self.log_every is not None and (not isinstance(self.log_every, int) or self.log_every <= 0):
            raise ValueError(f"log_every: must be a positive integer, got {self.log_every!r}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ProxyRunResult:
    """What one proxy run measured.

    Attributes:
        domain_losses: Validation loss (nats/token) per domain name.
        curve: Training loss over the run, ``[(tokens_seen, mean loss since last point)]``.
        weights: The mixture trained on, in corpus domain order.
        seed: Initialisation and data-order seed.
        n_params: Non-embedding parameters N of the model actually built.
        n_params_total: All parameters, embeddings included.
        tokens: Training tokens D actually seen (whole steps of ``batch_size * seq_len``).
        flops: ``6 * N * D``.
        seconds: Wall time charged to this run (its share when trained in a pack).
        tokens_per_s: ``tokens / seconds``.
        device: Where it ran.
        domain_tokens: Training tokens drawn from each domain.
        config: Model shape and training settings.
        diverged: Why the run diverged, or ``None``.
        pack_size: Proxies trained together with this one (1 when alone).
    """

    domain_losses: dict[str, float]
    curve: list[tuple[int, float]]
    weights: tuple[float, ...]
    seed: int
    n_params: int
    n_params_total: int
    tokens: int
    flops: float
    seconds: float
    tokens_per_s: float
    device: str
    domain_tokens: dict[str, int] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    diverged: str | None = None
    pack_size: int = 1


# -- optimisation ---------------------------------------------------------------------


def default_lr(cfg: ModelConfig) -> float:
    """Peak learning rate for a width: ``6e-4 * 768 / d_model``, capped at 3e-3.

    A 1/width rule anchored at GPT-2 small's 6e-4; small proxies get the cap.
    """
    return min(3e-3, 6e-4 * 768 / cfg.d_model)


def lr_at(step: int, steps: int, peak: float, warmup_frac: float, min_ratio: float) -> float:
    """Linear warm-up to ``peak`` then cosine decay to ``min_ratio * peak`` at the last step."""
    warmup = max(1, int(round(warmup_frac * steps))) if warmup_frac > 0 else 0
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup - 1)
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def clip_grad_norm_per_model_(params: Sequence[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Clip each stacked model's gradient to ``max_norm`` in place (no host sync).

    Args:
        params: Parameters whose dim 0 indexes the P models.
        max_norm: Largest allowed global gradient norm of one model.

    Returns:
        Each model's gradient norm before clipping, ``[P]``.
    """
    grads = [p.grad for p in params if p.grad is not None]
    norms = torch.stack([torch.linalg.vector_norm(g.float().flatten(1), dim=1) for g in grads])  # [n_params, P]
    total = torch.linalg.vector_norm(norms, dim=0)  # [P]
    coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(coef.view(-1, *([1] * (g.dim() - 1))).to(g.dtype))
    return total


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` → CUDA when available, else CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} requested but CUDA is not available")
    return dev


# -- the loop -------------------------------------------------------------------------

ProgressFn = Callable[[int, int, list[float]], None]
StepFn = Callable[[torch.Tensor, float], torch.Tensor]
# A two-phase schedule of one proxy: (the second phase's mixture [K], fraction of steps in phase 1).
PhaseSpec = tuple[np.ndarray, float]


def switch_step(switch: float, steps: int) -> int:
    """The first step of phase 2: ``round(switch * steps)``, leaving each phase at least one
    step when the run has two or more."""
    if steps < 2:
        return steps
    return int(min(max(round(switch * steps), 1), steps - 1))


def make_train_step(model: ProxyModel, train: TrainConfig, device: torch.device) -> StepFn:
    """The optimisation step for ``model`` on ``device``: ``step(xy, lr) -> loss [P]``.

    bf16 autocast, ``torch.compile`` and fused AdamW on CUDA; fp32 eager elsewhere
    (``train.compile`` overrides the compile choice). The step never reads a value back
    to the host, so GPU work queues up without stalls.

    Args:
        model: P stacked models, already on ``device``.
        train: Training settings (weight decay, betas, clipping, compile).
        device: The model's device.

    Returns:
        ``step(xy, lr)``: takes windows ``[P, B, T + 1]`` (long, on ``device``) and the
        learning rate, updates the weights, returns each model's loss ``[P]`` (on device).
    """
    use_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if use_bf16 else nullcontext()
    compiled = train.compile if train.compile is not None else device.type == "cuda"
    forward = torch.compile(model) if compiled else model
    opt = torch.optim.AdamW(model.decay_groups(train.weight_decay), lr=1e-3, betas=train.betas, fused=device.type == "cuda")
    params = list(model.parameters())

    def step(xy: torch.Tensor, lr: float) -> torch.Tensor:
        for group in opt.param_groups:
            group["lr"] = lr
        with autocast:
            loss = forward(xy[..., :-1], xy[..., 1:])  # [P]
        loss.sum().backward()  # each model's gradient is that of its own mean loss
        if train.grad_clip > 0:
            clip_grad_norm_per_model_(params, train.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    return step


def eval_autocast(device: torch.device) -> Any:
    """The autocast context evaluation runs under on ``device`` (bf16 on CUDA)."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def train_stack(
    corpus: Corpus,
    mixtures: Sequence[np.ndarray],
    seeds: Sequence[int],
    n_params: int,
    tokens: int,
    train: TrainConfig,
    device: str | torch.device = "auto",
    progress: ProgressFn | None = None,
    phases: Sequence[PhaseSpec | None] | None = None,
    init: tuple[ModelConfig, Mapping[str, torch.Tensor]] | None = None,
    finish: Callable[[ProxyModel], None] | None = None,
) -> list[ProxyRunResult]:
    """Train P proxies of one size side by side, each on its own mixture and seed.

    Args:
        corpus: The corpus (domains, token files).
        mixtures: P mixtures, each ``[K]`` on the simplex in corpus domain order (the first
            phase's, for a proxy with two).
        seeds: P seeds (initialisation and data order).
        n_params: Target non-embedding size; the ladder shape closest to it is built.
        tokens: Training tokens per proxy; rounded to whole steps (at least one).
        train: Training settings.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"`` …
        progress: Called at each curve point with ``(step, steps, losses per model)``.
        phases: Per proxy, ``None`` or ``(second mixture [K], switch)``: from step
            :func:`switch_step` on it trains on the second mixture (one learning-rate
            schedule over the whole run).
        init: ``(shape, state)`` of one trained model (a ``P = 1`` state dict) every proxy
            starts from instead of a fresh initialisation: continual pre-training. The
            shape then decides the size and ``n_params`` is not used.
        finish: Called with the trained model before it is scored (to save a checkpoint).

    Returns:
        P results, in input order; a diverged proxy has ``diverged`` set and NaN losses.
    """
    t_start = time.perf_counter()
    dev = resolve_device(device)
    P, domains = len(mixtures), corpus.domains
    cfg = init[0] if init is not None else size_config(n_params, corpus.vocab_size, train.seq_len)
    B, T = train.batch_size, train.seq_len
    steps = max(1, int(round(tokens / (B * T))))
    peak = train.lr if train.lr is not None else default_lr(cfg)
    log_every = train.log_every or max(1, steps // 50)

    # Same seed -> same initial weights and same data, alone or in a pack.
    model = ProxyModel(cfg, P, seeds)
    if init is not None:
        # Every proxy continues the same trained model: its [1, ...] weights copied P times.
        model.load_state_dict({k: v.expand(P, *v.shape[1:]).clone() for k, v in init[1].items()})
    model = model.to(dev)
    step_fn = make_train_step(model, train, dev)
    arrays = [corpus.train_tokens(d) for d in domains]
    plan = list(phases) if phases is not None else [None] * P
    if len(plan) != P:
        raise ValueError(f"phases: need one entry per mixture ({P}), got {len(plan)}")
    samplers = [
        MixtureSampler(arrays, m, T, B, s, domains, None if ph is None else ph[0], None if ph is None else switch_step(ph[1], steps))
        for m, s, ph in zip(mixtures, seeds, plan)
    ]
    windows = eval_windows(corpus, T, train.eval_tokens)

    curve: list[list[tuple[int, float]]] = [[] for _ in range(P)]
    diverged: list[str | None] = [None] * P
    loss_sum = torch.zeros(P, device=dev)
    since = 0
    batches = Prefetcher(samplers, dev, steps)
    model.train()
    try:
        for step, xy in enumerate(batches):
            check_stop(f"step {step + 1}/{steps}")  # Ctrl-C: stop here, the trial reruns on resume
            loss_sum += step_fn(xy, lr_at(step, steps, peak, train.warmup_frac, train.min_lr_ratio))
            since += 1
            if since == log_every or step == steps - 1:
                means = (loss_sum / since).tolist()  # the one host sync, every log_every steps
                loss_sum.zero_()
                since = 0
                seen = (step + 1) * B * T
                for p, v in enumerate(means):
                    curve[p].append((seen, float(v)))
                    if diverged[p] is None and not math.isfinite(v):
                        diverged[p] = f"diverged: training loss {v} at step {step + 1}/{steps} (peak lr {peak:.3g})"
                if progress is not None:
                    progress(step + 1, steps, means)
                if all(diverged):
                    break
    finally:
        batches.close()

    if finish is not None and not all(diverged):
        finish(model)
    losses = evaluate_losses(model, windows, dev, eval_autocast(dev)) if not all(diverged) else np.full((P, len(domains)), np.nan)
    seconds = time.perf_counter() - t_start
    D = steps * B * T
    results = []
    for p in range(P):
        dl = {d: float(losses[p, k]) for k, d in enumerate(domains)}
        reason = diverged[p]
        if reason is None and not all(math.isfinite(v) for v in dl.values()):
            reason = f"diverged: non-finite validation loss {dl} (peak lr {peak:.3g})"
        counts = samplers[p].rows_per_domain * T
        run_config: dict[str, Any] = {"model": asdict(cfg), "train": {**train.as_dict(), "lr": peak, "steps": steps, "log_every": log_every}}
        if plan[p] is not None:
            run_config["phases"] = {"second": [float(x) for x in plan[p][0]], "switch": float(plan[p][1]), "switch_step": samplers[p].switch_batch}
        results.append(
            ProxyRunResult(
                domain_losses=dl,
                curve=curve[p],
                weights=tuple(float(x) for x in mixtures[p]),
                seed=int(seeds[p]),
                n_params=cfg.n_params,
                n_params_total=cfg.n_params_total,
                tokens=D,
                flops=6.0 * cfg.n_params * D,
                seconds=seconds / P,
                tokens_per_s=D * P / seconds,
                device=str(dev),
                domain_tokens={d: int(c) for d, c in zip(domains, counts)},
                config=run_config,
                diverged=reason,
                pack_size=P,
            )
        )
    return results


@torch.no_grad()
def evaluate_losses(model: ProxyModel, windows: Mapping[str, np.ndarray], device: torch.device, autocast: Any = None) -> np.ndarray:
    """Mean validation loss of each stacked model on each domain's fixed windows.

    Args:
        model: P stacked models.
        windows: ``{domain: [n, T + 1]}`` windows (the same for every model).
        device: Where the model lives.
        autocast: Autocast context for the forward (bf16 on CUDA), or None.

    Returns:
        ``[P, K]`` losses in nats/token, domains in ``windows`` order.
    """
    was_training = model.training
    model.eval()
    P, V = model.n_models, model.cfg.vocab_size
    out = np.zeros((P, len(windows)))
    for k, (name, win) in enumerate(windows.items()):
        n, t = win.shape[0], win.shape[1] - 1
        rows = max(1, _EVAL_LOGITS // (P * t * V))
        total = torch.zeros(P, device=device, dtype=torch.float64)
        for i in range(0, n, rows):
            chunk = torch.from_numpy(win[i : i + rows]).to(device).long()  # [b, T+1]
            xy = chunk.unsqueeze(0).expand(P, -1, -1)  # [P, b, T+1]: every model reads the same tokens
            with autocast or nullcontext():
                loss = model(xy[..., :-1], xy[..., 1:])  # [P]
            total += loss.double() * chunk.shape[0]
        out[:, k] = (total / n).cpu().numpy()
    model.train(was_training)
    return out


def train_proxy(
    corpus: Corpus,
    weights: Mapping[str, float] | Sequence[float],
    n_params: int,
    tokens: int,
    seed: int = 0,
    device: str | torch.device = "auto",
    seq_len: int = 256,
    batch_size: int = 16,
    lr: float | None = None,
    eval_tokens: int = 32768,
    compile: bool | None = None,
    progress: ProgressFn | None = None,
    **train_options: Any,
) -> ProxyRunResult:
    """Train one proxy on a mixture and measure its per-domain validation loss.

    Args:
        corpus: The corpus.
        weights: ``{domain: weight}`` or weights in corpus domain order (normalised here).
        n_params: Target non-embedding parameter count (the ladder picks the shape).
        tokens: Training tokens D (rounded to whole steps).
        seed: Initialisation and data-order seed.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` …
        seq_len: Context length.
        batch_size: Sequences per step.
        lr: Peak learning rate (default: :func:`default_lr`).
        eval_tokens: Held-out tokens per domain to score on.
        compile: ``torch.compile`` (default: on for CUDA).
        progress: Called at each curve point with ``(step, steps, [loss])``.
        **train_options: Further :class:`TrainConfig` fields (``warmup_frac``, ``grad_clip`` …).

    Returns:
        The run's result.

    Raises:
        mixsearch.candidate.EvaluationError: the loss became NaN or infinite ("diverged: …").
        ValueError: bad weights or settings, naming the field.
    """
    cfg = TrainConfig(seq_len=seq_len, batch_size=batch_size, lr=lr, eval_tokens=eval_tokens, compile=compile, **train_options)
    w = normalise_weights(weights, corpus.domains)
    (result,) = train_stack(corpus, [w], [seed], n_params, tokens, cfg, device, progress)
    if result.diverged:
        raise EvaluationError(result.diverged)
    return result
