"""Continual pre-training of proxies: base checkpoints, trained once and shared, and continuing them.

A continual pre-training study continues one base model per size N. :func:`base_model`
trains it on the base (general) mixture once and caches it on disk under the corpus's
folder, keyed by a hash of everything that fixes its weights (corpus, shape, mixture,
tokens, training settings, seed), so every trial, process and worker on the machine
finds the same file. The first process to need it trains it while holding a file lock;
the others wait and load it. The file is written to a temporary name and renamed, so a
reader never sees half of it. :func:`load_checkpoint` reads a user's checkpoint instead,
written by :func:`save_checkpoint`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch

from mixsearch.proxy.corpus import Corpus
from mixsearch.proxy.model import ModelConfig, ProxyModel, size_config
from mixsearch.proxy.batches import eval_windows
from mixsearch.proxy.train import TrainConfig, eval_autocast, evaluate_losses, resolve_device, train_stack

CHECKPOINT_FORMAT = "mixsearch.proxy-checkpoint/v1"


@dataclass(frozen=True)
class BaseModel:
    """A trained model to continue from.

    Attributes:
        config: Its shape.
        state: Its weights, a ``P = 1`` state dict on the CPU.
        losses: Its validation loss per domain (nats/token) on the corpus's fixed windows.
        meta: Where it came from: ``key``, ``tokens``, ``mixture``, ``seed``, ``seconds``
            (time spent training it in this process; 0 when it was found), ``path``.
    """

    config: ModelConfig
    state: Mapping[str, torch.Tensor]
    losses: Mapping[str, float]
    meta: Mapping[str, Any]

    @property
    def n_params(self) -> int:
        return self.config.n_params


def base_key(corpus: Corpus, cfg: ModelConfig, mixture: Sequence[float], tokens: int, train: TrainConfig, seed: int) -> str:
    """A short hash of everything that fixes a base model's weights (its cache file's name)."""
    settings = {k: v for k, v in train.as_dict().items() if k not in ("compile", "log_every")}
    payload = {
        "corpus": corpus.hash,
        "model": asdict(cfg),
        "mixture": [round(float(w), 6) for w in mixture],
        "tokens": int(tokens),
        "train": settings,
        "seed": int(seed),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (waiting for it); the kernel frees it if the holder dies."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the lock


def save_checkpoint(path: str | Path, cfg: ModelConfig, state: Mapping[str, torch.Tensor], losses: Mapping[str, float], meta: Mapping[str, Any]) -> Path:
    """Write a checkpoint atomically (a temporary file renamed into place).

    Args:
        path: Where to write it.
        cfg: The model's shape.
        state: Its ``P = 1`` state dict.
        losses: Its validation losses per domain.
        meta: Anything else worth keeping (corpus hash, tokens, mixture …).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"format": CHECKPOINT_FORMAT, "config": asdict(cfg), "state": {k: v.detach().cpu() for k, v in state.items()}, "losses": dict(losses), "meta": dict(meta)}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(doc, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | Path, corpus: Corpus | None = None, device: str | torch.device = "cpu", seq_len: int | None = None, eval_tokens: int = 32768) -> BaseModel:
    """Read a checkpoint written by :func:`save_checkpoint`.

    With ``corpus`` the model is checked against it (vocabulary, and the corpus it was
    trained on when recorded) and its validation losses are measured on the corpus's
    windows of ``seq_len`` tokens, so they are comparable with the continued runs'.

    Raises:
        ValueError: not a mixsearch checkpoint, or made for another corpus.
    """
    p = Path(path).expanduser()
    try:
        doc = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same error to the user
        raise ValueError(f"schedule.base_checkpoint: {p} is not a readable checkpoint ({type(exc).__name__})") from None
    if not isinstance(doc, dict) or doc.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"schedule.base_checkpoint: {p} is not a mixsearch proxy checkpoint (format {CHECKPOINT_FORMAT})")
    cfg = ModelConfig(**doc["config"])
    meta = {**doc.get("meta", {}), "path": str(p), "seconds": 0.0}
    losses = dict(doc.get("losses", {}))
    if corpus is not None:
        if cfg.vocab_size != corpus.vocab_size:
            raise ValueError(f"schedule.base_checkpoint: {p} has a vocabulary of {cfg.vocab_size}, the corpus {corpus.vocab_size}")
        if meta.get("corpus") not in (None, corpus.hash):
            raise ValueError(f"schedule.base_checkpoint: {p} was trained on corpus {meta['corpus']}, the study's is {corpus.hash}")
        losses = measure(corpus, cfg, doc["state"], device, seq_len or cfg.seq_len, eval_tokens)
    return BaseModel(cfg, doc["state"], losses, meta)


def measure(corpus: Corpus, cfg: ModelConfig, state: Mapping[str, torch.Tensor], device: str | torch.device, seq_len: int, eval_tokens: int) -> dict[str, float]:
    """Validation loss per domain of one model on the corpus's fixed windows."""
    dev = resolve_device(device)
    model = ProxyModel(cfg, 1, [0])
    model.load_state_dict(dict(state))
    model = model.to(dev)
    losses = evaluate_losses(model, eval_windows(corpus, seq_len, eval_tokens), dev, eval_autocast(dev))
    return {d: float(v) for d, v in zip(corpus.domains, losses[0])}


def base_model(
    corpus: Corpus,
    n_params: int,
    mixture: Sequence[float],
    tokens: int,
    train: TrainConfig,
    seed: int = 0,
    device: str | torch.device = "auto",
) -> BaseModel:
    """The base model of size ``n_params`` trained on ``mixture`` for ``tokens``: from the cache, or trained now.

    Args:
        corpus: The corpus (the cache lives in its folder, ``checkpoints/``).
        n_params: Target non-embedding size (the ladder's nearest shape is built).
        mixture: ``[K]`` the base mixture in corpus domain order.
        tokens: Training tokens.
        train: Training settings (the continued runs use the same).
        seed: Initialisation and data-order seed.
        device: Where to train it if it is not cached.

    Raises:
        mixsearch.candidate.EvaluationError: the base run diverged.
    """
    from mixsearch.candidate import EvaluationError

    cfg = size_config(n_params, corpus.vocab_size, train.seq_len)
    key = base_key(corpus, cfg, mixture, tokens, train, seed)
    folder = Path(corpus.path) / "checkpoints"
    path = folder / f"base-{key}.pt"
    with file_lock(folder / f"base-{key}.lock"):
        if path.is_file():
            found = load_checkpoint(path)
            return BaseModel(found.config, found.state, found.losses, {**found.meta, "key": key, "seconds": 0.0})
        start = time.perf_counter()
        kept: dict[str, torch.Tensor] = {}

        def keep(model: ProxyModel) -> None:
            kept.update({k: v.detach().cpu().clone() for k, v in model.state_dict().items()})

        (run,) = train_stack(corpus, [np.asarray(mixture, dtype=float)], [seed], n_params, tokens, train, device, finish=keep)
        if run.diverged:
            raise EvaluationError(f"the base model diverged: {run.diverged}")
        meta = {"corpus": corpus.hash, "key": key, "tokens": run.tokens, "mixture": [float(w) for w in mixture], "seed": int(seed), "flops": run.flops}
        save_checkpoint(path, cfg, kept, run.domain_losses, meta)
    return BaseModel(cfg, kept, dict(run.domain_losses), {**meta, "path": str(path), "seconds": time.perf_counter() - start})
