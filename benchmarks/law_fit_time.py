"""Wall time of fitting a Chinchilla law to a 250-run table, and how well it recovers the truth.

Generates ``--points`` runs from Hoffmann et al.'s published law (E=1.69, A=406.4, B=410.7,
α=0.34, β=0.28) on a grid of model sizes (10M–3B) and tokens-per-parameter (2–80), with
multiplicative log-normal noise ``--noise``, then times :func:`mixsearch.laws.fit_chinchilla`
with the package defaults (Huber δ = 1e-3 in log space, 32 L-BFGS-B starts from a grid,
200 bootstrap resamples, 5-fold held-out error) and with the bootstrap and the folds off
(the point fit alone). Each setting is timed ``--repeats`` times; the median and the minimum
are printed beside the recovered parameters.

Run::

    python benchmarks/law_fit_time.py                      # 250 points, 3 repeats
    python benchmarks/law_fit_time.py --points 250 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np

from mixsearch.laws import FitOptions, fit_chinchilla

TRUTH = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}


def make_runs(points: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``points`` runs (N [n], D [n], loss [n]) from the published law with log-normal noise."""
    rng = np.random.default_rng(seed)
    n = np.exp(rng.uniform(np.log(1e7), np.log(3e9), points))
    d = n * np.exp(rng.uniform(np.log(2.0), np.log(80.0), points))
    loss = TRUTH["E"] + TRUTH["A"] / n ** TRUTH["alpha"] + TRUTH["B"] / d ** TRUTH["beta"]
    return n, d, loss * np.exp(rng.normal(0.0, noise, points))


def time_fit(n: np.ndarray, d: np.ndarray, y: np.ndarray, options: FitOptions, repeats: int) -> tuple[list[float], dict[str, float]]:
    """Seconds of each of ``repeats`` fits and the parameters of the last one."""
    seconds = []
    law = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        law = fit_chinchilla(n, d, y, options)
        seconds.append(time.perf_counter() - t0)
    assert law is not None
    return seconds, {k: float(law.params[k]) for k in TRUTH}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=250)
    ap.add_argument("--noise", type=float, default=0.01, help="Std of the log-normal noise on the loss.")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="Also write the figures here.")
    args = ap.parse_args()

    n, d, y = make_runs(args.points, args.noise, args.seed)
    settings = {
        "defaults (bootstrap 200, 5 folds)": FitOptions(),
        "point fit (no bootstrap, no folds)": FitOptions(bootstrap=0, cv_folds=0),
    }
    rows = []
    print(f"Chinchilla fit on {args.points} runs, noise {args.noise:g}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    print(f"{'setting':<38} {'median s':>9} {'min s':>7}  " + "  ".join(f"{k:>7}" for k in TRUTH))
    print(f"{'truth':<38} {'':>9} {'':>7}  " + "  ".join(f"{v:>7.4g}" for v in TRUTH.values()))
    for label, options in settings.items():
        seconds, params = time_fit(n, d, y, options, args.repeats)
        rows.append({"setting": label, "median_s": statistics.median(seconds), "min_s": min(seconds), "params": params})
        print(f"{label:<38} {statistics.median(seconds):>9.2f} {min(seconds):>7.2f}  " + "  ".join(f"{params[k]:>7.4g}" for k in TRUTH))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"points": args.points, "noise": args.noise, "truth": TRUTH, "rows": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
