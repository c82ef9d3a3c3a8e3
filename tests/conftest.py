"""Fixtures every test folder shares: tiny run tables and tiny text corpora the tests write
for themselves (never the published data), and one torch thread per test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mixsearch.progress import is_stage_line
from mixsearch.proxy.corpus import build_corpus
from mixsearch.study import Domain

from .corpora import write_domains

DOMAINS = ("a", "b", "c")


def error_lines(stderr: str) -> list[str]:
    """The non-empty lines of a command's stderr, less its stage progress lines.

    Outside a terminal a stage that lasts a second prints a progress line (on a loaded
    machine even 'checking the study file'); what the user must get is still one error line.
    """
    return [ln for ln in stderr.splitlines() if ln.strip() and not is_stage_line(ln)]


def tiny_objective(w: np.ndarray, shift: float) -> np.ndarray:
    """A smooth loss over 3-domain mixtures ``[n, 3]`` whose optimum moves with ``shift``."""
    return 3.0 + (w[:, 0] - 0.5 + 0.15 * shift) ** 2 + (w[:, 1] - 0.3) ** 2 + 0.5 * w[:, 2] * w[:, 0]


def write_tiny_table(path: Path, n: int = 24, seed: int = 0, losses: bool = False) -> Path:
    """A two-fidelity table: ``small`` (cost 1) and ``big`` (cost 8) over the same ``n`` mixtures."""
    rng = np.random.default_rng(seed)
    w = rng.dirichlet(np.ones(len(DOMAINS)), n).round(4)
    w[:, -1] = 1.0 - w[:, :-1].sum(axis=1)
    frames = []
    for label, cost, shift in (("small", 1.0, 0.0), ("big", 8.0, 1.0)):
        df = pd.DataFrame(w, columns=[f"w_{d}" for d in DOMAINS])
        df["fidelity"] = label
        df["cost"] = cost
        df["objective"] = tiny_objective(w, shift)
        if losses:
            for j, d in enumerate(DOMAINS):
                df[f"loss_{d}"] = df["objective"] + 0.1 * j
        frames.append(df)
    pd.concat(frames, ignore_index=True).to_csv(path, index=False)
    return path


@pytest.fixture
def tiny_table(tmp_path: Path) -> Path:
    return write_tiny_table(tmp_path / "tiny.csv")


@pytest.fixture
def table_writer():
    """The tiny-table writer, for tests that need variants (``n``, ``seed``, ``losses``)."""
    return write_tiny_table


@pytest.fixture
def objective_fn():
    return tiny_objective


@pytest.fixture(scope="session")
def tiny_domains(tmp_path_factory: pytest.TempPathFactory) -> list[Domain]:
    return write_domains(tmp_path_factory.mktemp("text"))


@pytest.fixture(scope="session")
def tiny_corpus(tiny_domains: list[Domain], tmp_path_factory: pytest.TempPathFactory):
    return build_corpus(tiny_domains, cache_dir=tmp_path_factory.mktemp("cache"), vocab_size=512, max_bytes_per_domain=60_000)


@pytest.fixture(autouse=True)
def _one_thread():
    # Tests train real models and fit GPs on 2 shared cores: one thread keeps them
    # predictable (extra threads only add synchronisation on tiny matrices).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
