"""Ladders and a smooth toy objective the proposer tests share."""

import numpy as np
import torch

from mixsearch.propose.fidelity import FidelityEncoder, as_inputs
from mixsearch.study import FidelityLadder, Rung

PROXY = FidelityLadder(
    (Rung("s", n_params=1_000_000, tokens=100_000_000), Rung("m", n_params=4_000_000, tokens=400_000_000)),
    Rung("T", n_params=64_000_000, tokens=6_400_000_000),
)
TABLE = FidelityLadder((Rung("1M", cost=6e15), Rung("60M", cost=3.6e17)), Rung("60M", cost=3.6e17))


def gp_data(n: int, k: int, rungs: tuple[str, ...], enc: FidelityEncoder, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    w = rng.dirichlet(np.ones(k), size=n)
    r = [rungs[i % len(rungs)] for i in range(n)]
    s = enc.encode(r)
    y = -(((w - 1.0 / k) ** 2).sum(1) * 5 + 2.0 - s[:, 0] + 0.01 * rng.normal(size=n))
    return as_inputs(w, s), torch.tensor(y).unsqueeze(-1)
