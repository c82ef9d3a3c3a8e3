"""Train many proxies of one size at once: one process, stacked weights, batched matmuls.

Proxies that differ in mixture and seed but share a shape are trained as one
:class:`~mixsearch.proxy.model.ProxyModel` holding ``P`` models: every weight is a
``[P, ...]`` stack, linear layers are ``torch.bmm`` and attention runs over ``P * B``
sequences in one call. Each proxy keeps its own initialisation (its seed), its own data
stream (its mixture's proportions, its seed's window order), its own loss, its own
gradient clipping and its own AdamW state (AdamW is element-wise), so a proxy trained
in a pack equals the same proxy trained alone up to floating-point noise.

Why stacked matmuls rather than ``torch.func.vmap`` over ``functional_call``: both
lower linear layers to the same batched matmul, but vmap has no batching rule for
fused attention (it falls back to a per-model loop) and was up to 23% slower on CPU in our
measurement (docs/benchmarks/proxy.md); stacked weights also keep the model one plain
module that ``torch.compile`` and fused AdamW handle directly on a GPU.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from mixsearch.candidate import EvaluationError
from mixsearch.proxy.corpus import Corpus
from mixsearch.proxy.model import ModelConfig
from mixsearch.proxy.batches import normalise_weights
from mixsearch.proxy.train import PhaseSpec, ProgressFn, ProxyRunResult, TrainConfig, train_stack


def train_proxies(
    corpus: Corpus,
    mixtures: Sequence[Mapping[str, float] | Sequence[float]],
    n_params: int,
    tokens: int,
    seeds: int | Sequence[int] = 0,
    device: str | torch.device = "auto",
    max_pack: int | None = None,
    raise_on_diverge: bool = False,
    progress: ProgressFn | None = None,
    phases: Sequence[PhaseSpec | None] | None = None,
    init: tuple[ModelConfig, Mapping[str, torch.Tensor]] | None = None,
    **train_options: Any,
) -> list[ProxyRunResult]:
    """Train one proxy per mixture, all of size ``n_params`` on ``tokens`` tokens, together.

    Args:
        corpus: The corpus.
        mixtures: P mixtures, each ``{domain: weight}`` or weights in corpus domain order.
        n_params: Target non-embedding size shared by all proxies.
        tokens: Training tokens per proxy.
        seeds: One seed per mixture, or one seed for all (common random numbers: every
            proxy then starts from the same weights and draws windows alike).
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` …
        max_pack: Most proxies trained at once (memory bound); more are run in
            consecutive packs. ``None``: all at once.
        raise_on_diverge: Raise :class:`EvaluationError` if any proxy diverged; by
            default a diverged proxy is returned with ``diverged`` set and the others
            are unaffected.
        progress: Called at each curve point with ``(step, steps, losses per proxy)``.
        phases: Per mixture, ``None`` or ``(second mixture, switch)``: a two-phase run that
            trains on ``mixtures[i]`` for the first ``switch`` of its steps, then on the second.
        init: ``(shape, state)`` of a trained model every proxy continues from (continual
            pre-training; see :func:`~mixsearch.proxy.train.train_stack`).
        **train_options: :class:`~mixsearch.proxy.train.TrainConfig` fields
            (``seq_len``, ``batch_size``, ``lr``, ``eval_tokens``, ``compile`` …).

    Returns:
        One result per mixture, in input order.

    Raises:
        ValueError: bad mixtures, seeds or settings.
    """
    if not mixtures:
        return []
    ws = [normalise_weights(m, corpus.domains) for m in mixtures]
    seed_list = [int(seeds)] * len(ws) if isinstance(seeds, int) else [int(s) for s in seeds]
    if len(seed_list) != len(ws):
        raise ValueError(f"seeds: need one seed per mixture ({len(ws)}), got {len(seed_list)}")
    if max_pack is not None and (not isinstance(max_pack, int) or max_pack < 1):
        raise ValueError(f"max_pack: must be a positive integer, got {max_pack!r}")
    plan: list[PhaseSpec | None] = [None] * len(ws)
    if phases is not None:
        if len(phases) != len(ws):
            raise ValueError(f"phases: need one entry per mixture ({len(ws)}), got {len(phases)}")
        plan = [None if ph is None else (normalise_weights(ph[0], corpus.domains), float(ph[1])) for ph in phases]
    cfg = TrainConfig(**train_options)
    pack = max_pack or len(ws)
    results: list[ProxyRunResult] = []
    for i in range(0, len(ws), pack):
        results.extend(train_stack(corpus, ws[i : i + pack], seed_list[i : i + pack], n_params, tokens, cfg, device, progress, phases=plan[i : i + pack], init=init))
    if raise_on_diverge:
        bad = [r.diverged for r in results if r.diverged]
        if bad:
            raise EvaluationError(f"{len(bad)} of {len(results)} proxies diverged; first: {bad[0]}")
    return results
