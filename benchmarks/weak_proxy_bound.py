"""What could any search spend on the weak-proxy world, if it knew the world's formula?

The issue's goal for ``synthetic:weak-proxy`` is a median cost to 5 % regret at the target
of at most half the best single-fidelity peer's (the GP: about seven target runs). This
script asks how low that cost can go for a searcher far better informed than any real
one: it knows the world's exact formula (:class:`mixsearch.evaluate.worlds.AccuracyWorld`),
its noise, and every constant except the two vectors the mixtures' ranking depends on,
the target's weights of the log shares ``u`` and their change with scale ``d`` (the part
that makes small models rank mixtures unlike the target). It estimates them by maximum a
posteriori from ``n1`` runs at 0.5B, ``n2`` at 3B and ``n3`` at 7B, with a Gaussian prior
whose scale is the true vectors' own (an oracle's prior), and recommends the mixture its
estimate puts best at the target.

Designs: the cheap runs at space-filling random mixtures; the target runs either random
(``random``) or each at the current estimate's best mixture (``greedy``, as a search that
exploits would). For each allocation the regret of the recommendation after the last run is
measured over ``--reps`` replicates of the noise and designs; a search is within reach of
the goal at a cost only if such an oracle reaches 5 % there in at least half the replicates.

    OMP_NUM_THREADS=1 python benchmarks/weak_proxy_bound.py --reps 100
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from mixsearch import simplex
from mixsearch.bench.worlds import load_world
from mixsearch.evaluate.worlds import SYNTHETIC_WORLDS, AccuracyWorld
from mixsearch.study import SearchSpace


def centred_basis(k: int) -> np.ndarray:
    """``[K, K - 1]`` orthonormal basis of the sum-zero subspace (centred log shares live in it)."""
    q, _ = np.linalg.qr(np.eye(k) - 1.0 / k)
    return q[:, : k - 1]


class StructureOracle:
    """The world's own formula with ``u`` and ``d`` unknown (in the sum-zero subspace).

    Args:
        world: The accuracy world.
        rungs: ``(n_params, tokens)`` of the three rungs, cheapest first (the last the target).
    """

    def __init__(self, world: AccuracyWorld, rungs: list[tuple[float, float]]) -> None:
        self.world = world
        self.k = len(world.domains)
        self.basis = centred_basis(self.k)
        self.rungs = rungs
        self.sd = [world.noise_sd(n, world.noise)[1] for n, _ in rungs]
        self.true_theta = np.concatenate([self.basis.T @ world.u, self.basis.T @ world.d])
        # The oracle's prior: centred, with the true coefficients' own scale.
        self.prior_sd = float(np.sqrt(np.mean(self.true_theta**2)))

    def accuracy(self, theta: np.ndarray, r: np.ndarray, rung: int) -> np.ndarray:
        """``[n]`` noise-free accuracy of mixtures ``r [n, K]`` at rung index ``rung``, the world's
        formula with its ``u`` and ``d`` taken from ``theta`` ``[2 (K - 1)]``."""
        u, d = self.basis @ theta[: self.k - 1], self.basis @ theta[self.k - 1 :]
        return replace(self.world, u=u, d=d).truth(r, *self.rungs[rung])[1]["accuracy"]

    def fit(self, r: np.ndarray, rung: np.ndarray, y: np.ndarray) -> np.ndarray:
        """MAP coefficients from observations: mixtures ``[n, K]``, rung indices ``[n]``, accuracies ``[n]``."""
        sd = np.array(self.sd)[rung]

        def residuals(theta: np.ndarray) -> np.ndarray:
            pred = np.empty(len(y))
            for i in np.unique(rung):
                pred[rung == i] = self.accuracy(theta, r[rung == i], i)
            return np.concatenate([(pred - y) / sd, theta / self.prior_sd])

        return least_squares(residuals, np.zeros(2 * (self.k - 1)), method="lm").x


def run_allocation(oracle: StructureOracle, truth, n: tuple[int, int, int], greedy: bool, rng: np.random.Generator, cands: np.ndarray) -> float:
    """Regret after ``n = (n1, n2, n3)`` runs (cheapest rung first), as a fraction of the span."""
    space = SearchSpace(oracle.world.domains)
    w = np.concatenate([simplex.sample(n[i], space, rng) for i in (0, 1)])
    rungs = np.repeat([0, 1], n[:2])

    def measure(w: np.ndarray, rung: int) -> np.ndarray:
        return oracle.accuracy(oracle.true_theta, w, rung) + rng.normal(0.0, oracle.sd[rung], len(w))

    y = np.concatenate([measure(w[rungs == i], i) for i in (0, 1)])
    for _ in range(n[2]):
        if greedy and len(w):
            theta = oracle.fit(w, rungs, y)
            nxt = cands[[int(np.argmax(oracle.accuracy(theta, cands, 2)))]]
        else:
            nxt = simplex.sample(1, space, rng)
        w = np.concatenate([w, nxt])
        rungs = np.append(rungs, 2)
        y = np.append(y, measure(nxt, 2))
    theta = oracle.fit(w, rungs, y)
    rec = cands[int(np.argmax(oracle.accuracy(theta, cands, 2)))]
    return truth.regret(rec) / truth.span


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=100)
    ap.add_argument("--n1", default="0,6,12,24", help="runs at the cheapest rung (comma list)")
    ap.add_argument("--n2", default="0,1,2,4", help="runs at the middle rung")
    ap.add_argument("--n3", default="1,2,3,4,5", help="runs at the target")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    world = load_world("synthetic:weak-proxy")
    formula = SYNTHETIC_WORLDS["weak-proxy"]
    assert isinstance(formula, AccuracyWorld)
    rungs = [(r.n_params, r.tokens) for r in world.ladder.rungs]
    costs = [r.run_cost / world.truth.target_run_cost for r in world.ladder.rungs]
    oracle = StructureOracle(formula, rungs)
    space = SearchSpace(formula.domains)
    cands = np.concatenate([np.eye(oracle.k), simplex.sample(20000, space, np.random.default_rng(1)), simplex.sample(20000, space, np.random.default_rng(2), alpha=0.2)])
    rows = []
    for n1 in map(int, args.n1.split(",")):
        for n2 in map(int, args.n2.split(",")):
            for n3 in map(int, args.n3.split(",")):
                for greedy in (False, True):
                    rng = np.random.default_rng([args.seed, n1, n2, n3, int(greedy)])
                    regrets = np.array([run_allocation(oracle, world.truth, (n1, n2, n3), greedy, rng, cands) for _ in range(args.reps)])
                    rows.append({
                        "n_0.5B": n1, "n_3B": n2, "n_7B": n3, "target_runs": "greedy" if greedy else "random",
                        "cost": n1 * costs[0] + n2 * costs[1] + n3 * costs[2],
                        "median_regret_pct": 100 * float(np.median(regrets)),
                        "within_5pct": float(np.mean(regrets <= 0.05)),
                    })
                    print(rows[-1], flush=True)
    df = pd.DataFrame(rows).sort_values("cost")
    print(df.to_string(index=False))
    ok = df[df["within_5pct"] >= 0.5]
    print("\ncheapest allocation within 5 % in at least half the replicates:")
    print(ok.head(5).to_string(index=False) if len(ok) else "none")


if __name__ == "__main__":
    main()
