"""Fidelity features and costs: how the Surrogate sees a rung.

Inputs to the Surrogate are ``[w_1 .. w_K, s_1 .. s_S]``: the mixture on the simplex
followed by the fidelity features of the rung it ran at (:class:`FidelityEncoder`; the
target scale has every feature equal to 1). :class:`RungCostModel` tells a cost-aware
acquisition what a run at those features costs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from botorch.models.deterministic import DeterministicModel
from torch import Tensor

from mixsearch.study import FidelityLadder, Rung

DTYPE = torch.double


@dataclass(frozen=True)
class FidelityEncoder:
    """Maps rung names to fidelity features and costs.

    Proxy ladders (every rung and the target has ``n_params`` and ``tokens``) get
    the features ``log N`` and ``log D``; table ladders (rungs with only a cost)
    get ``log cost``. A feature constant over the ladder is dropped. Each feature
    is scaled so the target is 1 and the spread of the ladder is 1:
    ``s = 1 + (log v - log v_target) / (max log v - min log v)``, clipped to
    [0, 1]; with the target the largest rung, the smallest maps to 0.

    Attributes:
        names: Runnable rung names, then the target's name if it is not runnable.
        features: ``[len(names), S]`` fidelity features (S >= 1).
        costs: Cost of one run per runnable rung name.
        target: The target rung's name.
        target_runnable: Whether the target is one of the runnable rungs.
    """

    names: tuple[str, ...]
    features: np.ndarray
    costs: Mapping[str, float]
    target: str
    target_runnable: bool

    @staticmethod
    def from_ladder(
        ladder: FidelityLadder,
        cost_model: Mapping[str, float] | Callable[[Rung], float] | None = None,
    ) -> "FidelityEncoder":
        """Build the encoder of a ladder.

        Args:
            ladder: The study's fidelity ladder.
            cost_model: Per-rung cost override: a mapping rung name -> cost, or a
                callable ``rung -> cost``; default ``rung.run_cost``.

        Raises:
            ValueError: a rung without a usable cost.
        """
        rungs = list(ladder.rungs)
        runnable = any(r.name == ladder.target.name for r in rungs)
        every = rungs if runnable else [*rungs, ladder.target]
        costs = {r.name: _rung_cost(r, cost_model) for r in rungs}
        proxy = all(r.n_params is not None and r.tokens is not None for r in every)
        if proxy:
            raw = np.log(np.array([[float(r.n_params), float(r.tokens)] for r in every]))  # type: ignore[arg-type]
        else:
            target_cost = _rung_cost(ladder.target, cost_model) if not runnable else costs[ladder.target.name]
            raw = np.log(np.array([[costs.get(r.name, target_cost)] for r in every]))
        span = raw.max(axis=0) - raw.min(axis=0)
        keep = span > 1e-12
        if not keep.any():
            # A single-rung ladder: one constant feature, so the model is a plain GP.
            feats = np.ones((len(every), 1))
        else:
            t = [r.name for r in every].index(ladder.target.name)
            feats = 1.0 + (raw[:, keep] - raw[t, keep]) / span[keep]
            # A rung beyond the target in some feature (more tokens than the target,
            # say) is treated as target-like in it: the fidelity kernels are defined
            # on [0, 1] with the target at 1.
            feats = np.clip(feats, 0.0, 1.0)
        return FidelityEncoder(
            names=tuple(r.name for r in every),
            features=feats,
            costs=costs,
            target=ladder.target.name,
            target_runnable=runnable,
        )

    @property
    def n_features(self) -> int:
        return int(self.features.shape[1])

    @property
    def runnable(self) -> tuple[str, ...]:
        """Runnable rung names in ladder order."""
        return tuple(n for n in self.names if n in self.costs)

    def encode(self, rungs: Sequence[str]) -> np.ndarray:
        """Fidelity features ``[n, S]`` of ``n`` rung names.

        Raises:
            ValueError: a name not in the ladder.
        """
        index = {n: i for i, n in enumerate(self.names)}
        try:
            return self.features[[index[r] for r in rungs]].reshape(len(rungs), self.n_features)
        except KeyError as exc:
            raise ValueError(f"rung: {exc.args[0]!r} is not in the fidelity ladder {list(self.names)}") from None

    @property
    def target_features(self) -> np.ndarray:
        """Fidelity features ``[S]`` of the target."""
        return self.encode([self.target])[0]

    def cost_model(self, n_weights: int) -> "RungCostModel":
        """A BoTorch cost model over ``[w, s]`` inputs, costs scaled by the costliest rung."""
        names = self.runnable
        top = max(self.costs.values())
        return RungCostModel(
            torch.tensor(self.encode(names), dtype=DTYPE),
            torch.tensor([self.costs[n] / top for n in names], dtype=DTYPE),
            n_weights,
        )


def _rung_cost(rung: Rung, cost_model: Mapping[str, float] | Callable[[Rung], float] | None) -> float:
    if callable(cost_model):
        cost = float(cost_model(rung))
    elif cost_model is not None and rung.name in cost_model:
        cost = float(cost_model[rung.name])
    else:
        cost = rung.run_cost
    if not (math.isfinite(cost) and cost > 0):
        raise ValueError(f"cost_model: rung {rung.name!r} has no positive finite cost (got {cost!r})")
    return cost


class RungCostModel(DeterministicModel):
    """Cost of a run as a function of its fidelity features: the nearest rung's cost.

    Args:
        rung_features: ``[R, S]`` fidelity features of the runnable rungs.
        rung_costs: ``[R]`` their costs.
        n_weights: K, the number of weight columns before the fidelity features.
    """

    def __init__(self, rung_features: Tensor, rung_costs: Tensor, n_weights: int) -> None:
        super().__init__()
        self.register_buffer("rung_features", rung_features)
        self.register_buffer("rung_costs", rung_costs)
        self.n_weights = n_weights
        self._num_outputs = 1

    def forward(self, X: Tensor) -> Tensor:
        """Costs ``[..., q, 1]`` of inputs ``[..., q, K + S]``."""
        s = X[..., self.n_weights :]
        d = (s.unsqueeze(-2) - self.rung_features.to(s)).pow(2).sum(-1)  # [..., q, R]
        return self.rung_costs.to(s)[d.argmin(dim=-1)].unsqueeze(-1)


def as_inputs(weights: np.ndarray, fidelity: np.ndarray) -> Tensor:
    """Stack weights ``[n, K]`` and fidelity features ``[n, S]`` into a ``[n, K + S]`` tensor."""
    return torch.tensor(np.concatenate([weights, fidelity], axis=1), dtype=DTYPE)
