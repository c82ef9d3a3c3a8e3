"""CPU threads chosen on purpose, per kind of work, with one override.

Three kinds of work run on the CPU, and they want different thread counts:

* ``proxy``: training a proxy is a stream of matrix products big enough to split; it gets
  every core this process may use.
* ``surrogate``: a GP fit and its acquisition are thousands of tiny matrix operations;
  extra threads only add synchronisation, and beside other processes spinning threads
  make a fit many times slower. One thread.
* ``law``: scaling-law fits (SciPy's optimisers on NumPy arrays, BLAS underneath) are the
  same kind of work. One thread.

The counts were chosen by measurement, idle and with another CPU-heavy process on the
cores (``benchmarks/threads.py``, figures in docs/BENCHMARKS.md). Override them with the
environment variable ``MIXSEARCH_THREADS``: one number for every kind (``2``), or per kind
(``proxy=2,surrogate=1,law=1``).
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

KINDS = ("proxy", "surrogate", "law")
ENV = "MIXSEARCH_THREADS"
# 0 means "every core this process may use".
DEFAULTS = {"proxy": 0, "surrogate": 1, "law": 1}


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, else the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def threads_for(kind: str) -> int:
    """The thread count for one kind of work: :data:`DEFAULTS`, overridden by ``MIXSEARCH_THREADS``.

    Raises:
        ValueError: an unknown kind, or an override that is not a positive integer,
            naming ``MIXSEARCH_THREADS``.
    """
    if kind not in KINDS:
        raise ValueError(f"threads: unknown kind {kind!r}; known: {', '.join(KINDS)}")
    value = DEFAULTS[kind]
    raw = os.environ.get(ENV, "").strip()
    if raw:
        parts = dict(p.split("=", 1) if "=" in p else ("*", p) for p in raw.replace(" ", "").split(",") if p)
        unknown = sorted(set(parts) - set(KINDS) - {"*"})
        if unknown:
            raise ValueError(f"{ENV}: unknown kind {unknown[0]!r}; use a number, or {', '.join(f'{k}=N' for k in KINDS)}")
        text = parts.get(kind, parts.get("*"))
        if text is not None:
            if not text.isdigit() or int(text) < 1:
                raise ValueError(f"{ENV}: threads must be a positive integer, got {text!r}")
            value = int(text)
    return value if value > 0 else available_cores()


@contextlib.contextmanager
def limited(kind: str) -> Iterator[int]:
    """Run a block with ``kind``'s thread count for torch and for the BLAS under NumPy/SciPy.

    Yields:
        The thread count in force.
    """
    import torch
    from threadpoolctl import threadpool_limits

    n = threads_for(kind)
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield n
    finally:
        torch.set_num_threads(before)
