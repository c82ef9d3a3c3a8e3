"""Executors: where evaluations run (``local`` threads, ``inline`` in the caller, ``ray``)."""

from __future__ import annotations

import importlib
from typing import Any

from mixsearch.execute.base import Executor

EXECUTORS = ("local", "inline", "ray")


def make_executor(kind: str = "local", workers: int = 1, pack: int = 1, address: str | None = None, **options: Any) -> Executor:
    """Build an executor by name.

    Args:
        kind: ``local`` (threads of this process), ``inline`` (the calling thread, one
            batch of ``workers`` jobs per round) or ``ray``.
        workers: Jobs (or packs) in flight at once.
        pack: Same-rung jobs evaluated together.
        address: Ray cluster address.
        **options: Executor-specific options (Ray: ``num_cpus``, ``num_gpus`` …).

    Raises:
        ValueError: an unknown kind, naming ``executor``.
    """
    if kind == "local":
        from mixsearch.execute.local import LocalExecutor

        return LocalExecutor(workers=workers, pack=pack)
    if kind == "inline":
        from mixsearch.execute.inline import InlineExecutor

        return InlineExecutor(capacity=workers, pack=pack)
    if kind == "ray":
        module = importlib.import_module("mixsearch.execute.ray")
        return module.RayExecutor(address=address, workers=workers, pack=pack, **options)
    raise ValueError(f"executor: unknown executor {kind!r}; use one of {', '.join(EXECUTORS)}")
