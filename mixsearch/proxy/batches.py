"""What a proxy trains and is scored on: mixtures as batches of token windows.

:class:`MixtureSampler` draws training windows in a mixture's exact proportions (one or two
phases), :func:`eval_windows` fixes the validation windows every run is scored on, and
:class:`Prefetcher` stacks the batches of several models ahead of the training loop
(:mod:`mixsearch.proxy.train`).
"""

from __future__ import annotations

import queue
import threading
from typing import Iterator, Mapping, Sequence

import numpy as np
import torch

from mixsearch.proxy.corpus import Corpus


def normalise_weights(weights: Mapping[str, float] | Sequence[float], domains: Sequence[str]) -> np.ndarray:
    """Mixture as a probability vector ``[K]`` in ``domains`` order.

    Args:
        weights: ``{domain: weight}`` (missing domains get 0) or a sequence in domain order.
        domains: The corpus's domain names.

    Raises:
        ValueError: unknown domains, wrong length, negative or all-zero weights.
    """
    if isinstance(weights, Mapping):
        unknown = set(weights) - set(domains)
        if unknown:
            raise ValueError(f"weights: unknown domains {sorted(unknown)}; the corpus has {list(domains)}")
        w = np.array([float(weights.get(d, 0.0)) for d in domains])
    else:
        w = np.asarray([float(x) for x in weights], dtype=float)
        if w.shape != (len(domains),):
            raise ValueError(f"weights: expected {len(domains)} weights (one per domain {list(domains)}), got {len(w)}")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"weights: must be finite, non-negative and not all zero, got {w.tolist()}")
    return w / w.sum()


class MixtureSampler:
    """Training windows drawn from the domains in a mixture's proportions.

    Rows are assigned to domains deterministically so that, after ``n`` rows, domain
    ``k`` has supplied ``w_k * n`` rows to within one (smooth weighted round-robin):
    the realised mixture equals the requested one instead of scattering around it as
    i.i.d. draws would. The order of rows within a batch and each window's position in
    its domain are random, seeded by ``seed``. A domain of weight 0 is never drawn.

    A two-phase schedule switches to the ``then`` mixture at batch ``switch_batch``: from
    there the round-robin counts start again, so each phase realises its own mixture, and
    the random stream runs on unbroken (the same seed gives the same windows up to the switch).

    Args:
        tokens: One uint16 token array ``[n_k]`` per domain.
        weights: Mixture ``[K]`` (sums to 1), of the first phase when there are two.
        seq_len: T; each window holds ``T + 1`` tokens (inputs and shifted targets).
        batch_size: Rows per batch B.
        seed: Seed of the window positions and row order.
        names: Domain names, for errors.
        then: The second phase's mixture ``[K]``, or None for one phase.
        switch_batch: The first batch drawn from ``then``.
    """

    def __init__(
        self,
        tokens: Sequence[np.ndarray],
        weights: np.ndarray,
        seq_len: int,
        batch_size: int,
        seed: int,
        names: Sequence[str] | None = None,
        then: np.ndarray | None = None,
        switch_batch: int | None = None,
    ) -> None:
        self.tokens = list(tokens)
        self.weights = np.asarray(weights, dtype=float)
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.rng = np.random.default_rng([int(seed), 0x5EED])
        self.counts = np.zeros(len(self.tokens), dtype=np.int64)
        self.earlier = np.zeros(len(self.tokens), dtype=np.int64)  # rows of phases already over
        self.then = None if then is None else np.asarray(then, dtype=float)
        self.switch_batch = switch_batch
        self.batches = 0
        names = names or [str(k) for k in range(len(self.tokens))]
        for mix in (self.weights, self.then):
            if mix is None:
                continue
            for k, (arr, w) in enumerate(zip(self.tokens, mix)):
                if w > 0 and arr.shape[0] < seq_len + 1:
                    raise ValueError(f"domain {names[k]!r} has {arr.shape[0]} training tokens; need at least seq_len + 1 = {seq_len + 1}")

    @property
    def rows_per_domain(self) -> np.ndarray:
        """``[K]`` rows drawn from each domain so far, over every phase."""
        return self.earlier + self.counts

    def _domains(self) -> np.ndarray:
        out = np.empty(self.batch_size, dtype=np.int64)
        active = self.weights > 0
        for i in range(self.batch_size):
            n = self.counts.sum() + 1
            deficit = np.where(active, self.weights * n - self.counts, -np.inf)
            k = int(np.argmax(deficit))
            self.counts[k] += 1
            out[i] = k
        return self.rng.permutation(out)

    def next_batch(self) -> np.ndarray:
        """The next batch of windows, ``[B, T + 1]`` int32."""
        if self.then is not None and self.batches == self.switch_batch:
            self.earlier, self.counts, self.weights = self.earlier + self.counts, np.zeros_like(self.counts), self.then
        self.batches += 1
        rows = self._domains()
        batch = np.empty((self.batch_size, self.seq_len + 1), dtype=np.int32)
        span = np.arange(self.seq_len + 1)
        for k in np.unique(rows):
            sel = np.flatnonzero(rows == k)
            arr = self.tokens[k]
            starts = self.rng.integers(0, arr.shape[0] - self.seq_len, size=sel.size)
            batch[sel] = arr[starts[:, None] + span]
        return batch


def eval_windows(corpus: Corpus, seq_len: int, eval_tokens: int) -> dict[str, np.ndarray]:
    """Fixed validation windows per domain, ``{name: [n_windows, T + 1]}`` int32.

    Windows tile the first ``eval_tokens`` held-out tokens with stride T (each token is
    predicted once), so every run on the corpus is scored on the same tokens.

    Raises:
        ValueError: a domain has fewer than ``seq_len + 1`` validation tokens.
    """
    out = {}
    for name in corpus.domains:
        val = corpus.val_tokens(name)
        n = min(eval_tokens, val.shape[0] - 1) // seq_len
        if n < 1:
            raise ValueError(
                f"domain {name!r} has {val.shape[0]} validation tokens; need at least seq_len + 1 = {seq_len + 1} "
                "(raise max_bytes_per_domain or lower seq_len)"
            )
        idx = np.arange(n)[:, None] * seq_len + np.arange(seq_len + 1)
        out[name] = np.asarray(val[idx], dtype=np.int32)
    return out


class Prefetcher:
    """Stacked batches ``[P, B, T + 1]`` for P samplers, made ahead of time.

    On CUDA a background thread fills pinned host buffers and the copy to the device
    does not block the host; elsewhere batches are made on demand (a thread would only
    compete with the compute for the same cores).
    """

    def __init__(self, samplers: Sequence[MixtureSampler], device: torch.device, steps: int, depth: int = 3) -> None:
        self.samplers = samplers
        self.device = device
        self.steps = steps
        self._threaded = device.type == "cuda"
        if self._threaded:
            self._queue: queue.Queue = queue.Queue(maxsize=depth)
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._fill, daemon=True, name="mixsearch-prefetch")
            self._thread.start()

    def _make(self) -> torch.Tensor:
        return torch.from_numpy(np.stack([s.next_batch() for s in self.samplers]))

    def _fill(self) -> None:
        try:
            for _ in range(self.steps):
                batch = self._make().pin_memory()
                while not self._stop.is_set():
                    try:
                        self._queue.put(batch, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            self._queue.put(exc)

    def __iter__(self) -> Iterator[torch.Tensor]:
        for _ in range(self.steps):
            if self._threaded:
                item = self._queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item.to(self.device, non_blocking=True).long()
            else:
                yield self._make().to(self.device).long()

    def close(self) -> None:
        if self._threaded:
            self._stop.set()
            self._thread.join(timeout=5)
