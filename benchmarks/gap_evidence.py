"""Can a study's own runs choose the Surrogate's gap form (``ar`` or ``ar-power``)?

On the weak-proxy world (``synthetic:weak-proxy``) the two multi-fidelity kernels behave
very differently in the search (docs/BENCHMARKS.md), so a default that picked the right one
from the study's own runs would notice weak proxies by itself. This measures whether the
runs can tell them apart. For each seed, ``mfbo?kernel=ar-power`` searches the world (q = 1,
``--budget`` target runs); then, at each target run ``k`` of its history, both kernels are
fitted on every trial up to and including it, and two scores are compared:

* the log marginal likelihood of all the data (the model evidence at the fitted
  hyperparameters; ``ar-power`` has one hyperparameter fewer than ``ar``);
* the leave-one-out log predictive density of the target runs alone (closed form at the
  fitted hyperparameters), the part of the data that speaks to the target.

A difference of a few nats, consistently of one sign, would be evidence to choose by. For
a world where proxies are informative, ``--oracle`` and ``--proposer`` run another search
(the comparisons are then made every ``--every`` trials as well, since it may run no target
at all):

    OMP_NUM_THREADS=1 python benchmarks/gap_evidence.py --seeds 5 --budget 8
    OMP_NUM_THREADS=1 python benchmarks/gap_evidence.py --oracle 'synthetic:mixing-shift?pool=256' \
        --proposer mfbo --batch-size 4 --budget 4 --seeds 3 --every 8
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import pandas as pd
import torch

from mixsearch.bench.harness import run_one
from mixsearch.bench.worlds import load_world
from mixsearch.propose.fidelity import DTYPE, FidelityEncoder, as_inputs
from mixsearch.propose.surrogate import fit_surrogate

KINDS = ("ar", "ar-power")


def scores(model, target_rows: list[int]) -> tuple[float, float]:
    """``(log marginal likelihood of all rows, LOO log density of the target rows)``, nats.

    Args:
        model: A fitted Surrogate.
        target_rows: Indices of the target runs among its training rows.
    """
    model.train()
    with torch.no_grad():
        out = model.likelihood(model(*model.train_inputs))
        lml = float(out.log_prob(model.train_targets))
        inv = torch.linalg.inv(out.covariance_matrix)
        var = 1.0 / torch.diag(inv)
        resid = (inv @ (model.train_targets - out.mean)) * var  # y_i - mean_{-i}
        loo = -0.5 * torch.log(2 * math.pi * var) - 0.5 * resid**2 / var
    model.eval()
    return lml, float(loo[target_rows].sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--budget", type=float, default=8.0)
    ap.add_argument("--oracle", default="synthetic:weak-proxy")
    ap.add_argument("--proposer", default="mfbo?kernel=ar-power")
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--every", type=int, default=0, help="also compare every N trials (0: at target runs only)")
    ap.add_argument("--out", default=None, help="CSV of every comparison")
    args = ap.parse_args()
    world = load_world(args.oracle)
    enc = FidelityEncoder.from_ladder(world.ladder)
    rows = []
    for seed in range(args.seeds):
        trials: list = []
        run_one(world, args.proposer, seed, args.budget, args.batch_size, trials=trials)
        done = sorted((t for t in trials if t.objective is not None), key=lambda t: t.number)
        w = np.array([t.candidate.weights for t in done])
        rungs = [t.candidate.rung for t in done]
        y = np.array([t.objective for t in done])
        targets = [i for i, r in enumerate(rungs) if r == enc.target]
        ends = {i + 1 for i in targets}
        if args.every:
            ends |= set(range(w.shape[1] + 2, len(done) + 1, args.every))
        for n in sorted(ends):
            seen = [i for i in targets if i < n]
            X = as_inputs(w[:n], enc.encode(rungs[:n]))
            Y = torch.tensor(-y[:n], dtype=DTYPE).unsqueeze(-1)
            got = {kind: scores(fit_surrogate(X, Y, w.shape[1], kind, "log"), seen) for kind in KINDS}
            rows.append(
                {
                    "seed": seed,
                    "trials": n,
                    "target_runs": len(seen),
                    "lml_diff": got["ar-power"][0] - got["ar"][0],
                    "target_loo_diff": got["ar-power"][1] - got["ar"][1] if seen else float("nan"),
                }
            )
            print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    if args.out:
        df.to_csv(args.out, index=False)
    summary = df.groupby("target_runs")[["lml_diff", "target_loo_diff"]].agg(["count", "median", "min", "max"])
    print("\nar-power minus ar, nats (positive favours ar-power), over seeds:")
    print(summary.round(2).to_string())


if __name__ == "__main__":
    main()
