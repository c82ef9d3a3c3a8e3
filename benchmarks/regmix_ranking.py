"""RegMix ranking benchmark: how well does each regressor rank held-out mixtures by Pile-CC loss?

Data: the published RegMix runs (sail-sg/regmix, ``data/``), read in place from ``--data``
(default ``../shared/data/regmix`` beside the repository root; never copied into the repo):

* fit on the 512 training mixtures of 17 Pile domains at 1M parameters
  (``train_mixture_1m.csv`` + ``train_pile_loss_1m.csv``, joined on ``index``);
* predict the 256 held-out test mixtures (``test_mixture_1m.csv``) and compare with their
  measured Pile-CC validation loss at 1M (``test_pile_loss_1m.csv``) and at 60M parameters
  (``test_pile_loss_60m.csv``).

The objective is the Pile-CC validation loss (column ``metric/the_pile_pile_cc_val_loss``).
What is measured, per method, is Spearman's ρ between predicted and actual loss on the 256
test mixtures at each scale (the 60M column asks whether a ranking learnt at 1M transfers
up the ladder), the RMSE of the predictions against the 1M losses, and the wall time of the fit:

* ``mixing_law``: the data mixing law of Ye et al. 2024, L(r) = c + k·exp(Σ_j t_j r_j), fitted
  to the Pile-CC loss with the package's own :func:`mixsearch.laws.fit_mixing` (default
  :class:`~mixsearch.laws.FitOptions` except no bootstrap and no cross-validation, which only
  give intervals and held-out error, not the point fit that is ranked here).
* ``lightgbm``: ``lightgbm.LGBMRegressor`` as in sail-sg/regmix's ``regression.ipynb``
  (``objective='regression'``, gbdt, 1000 rounds, learning rate 0.01, seed 42), fitted on all
  512 runs. The notebook also stops early on its evaluation set; here that set would be the
  test set, so early stopping is left out (all 1000 rounds are used).
* ``linear``: ordinary least squares of the loss on the 17 weights (no separate intercept:
  the weights sum to one, so the intercept is absorbed and the predictions equal those of
  an OLS fit with an intercept).

Published reference (RegMix paper / data README): LightGBM 0.990 / 0.986, linear 0.902 / 0.893.

Example::

    OMP_NUM_THREADS=1 python benchmarks/regmix_ranking.py
    OMP_NUM_THREADS=1 python benchmarks/regmix_ranking.py --data /path/to/regmix --json out.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO / ".." / "shared" / "data" / "regmix"
OBJECTIVE = "metric/the_pile_pile_cc_val_loss"
WEIGHT_PREFIX = "train_the_pile_"
PUBLISHED = {"lightgbm": (0.990, 0.986), "linear": (0.902, 0.893)}


@dataclass(frozen=True)
class RegMixData:
    """The RegMix 1M training runs and the held-out test mixtures.

    Attributes:
        components: The 17 training-domain weight columns, in file order.
        x_train: ``[512, 17]`` training mixtures.
        y_train: ``[512]`` Pile-CC loss of the training runs (1M parameters).
        x_test: ``[256, 17]`` test mixtures.
        y_test: Scale label (``"1m"``, ``"60m"``) → ``[256]`` Pile-CC loss of the test mixtures.
    """

    components: list[str]
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: dict[str, np.ndarray]


@dataclass
class MethodResult:
    """One method's fit time and ranking quality.

    Attributes:
        method: Method name.
        settings: The settings used, for the record.
        fit_seconds: Wall time of the fit.
        spearman: Scale label → Spearman ρ between predicted and actual test loss.
        rmse_1m: RMSE of the predictions against the 1M test losses.
        notes: Extra diagnostics (the mixing law's fitted parameters, say).
    """

    method: str
    settings: dict[str, Any]
    fit_seconds: float
    spearman: dict[str, float]
    rmse_1m: float
    notes: dict[str, Any] = field(default_factory=dict)


def _read_pair(mixture: Path, losses: Path) -> pd.DataFrame:
    """Join a mixture file and a loss file on ``index``; every mixture must have a loss."""
    m, l = pd.read_csv(mixture), pd.read_csv(losses)
    joined = m.merge(l, on="index", how="inner", validate="one_to_one")
    if len(joined) != len(m):
        raise SystemExit(f"{losses.name}: {len(m) - len(joined)} of the {len(m)} mixtures in {mixture.name} have no loss row")
    return joined.sort_values("index").reset_index(drop=True)


def load_regmix(data_dir: Path) -> RegMixData:
    """Read the RegMix 1M training runs and the 256 test mixtures at 1M and 60M.

    Args:
        data_dir: Directory holding the RegMix CSV files.

    Returns:
        The training and test arrays, test rows in ``index`` order at both scales.

    Raises:
        SystemExit: a missing file or column, or test files whose rows do not match.
    """
    names = ["train_mixture_1m.csv", "train_pile_loss_1m.csv", "test_mixture_1m.csv", "test_pile_loss_1m.csv", "test_pile_loss_60m.csv"]
    missing = [n for n in names if not (data_dir / n).is_file()]
    if missing:
        raise SystemExit(f"{data_dir}: missing {', '.join(missing)} (pass the RegMix data directory with --data)")
    train = _read_pair(data_dir / "train_mixture_1m.csv", data_dir / "train_pile_loss_1m.csv")
    components = [c for c in pd.read_csv(data_dir / "train_mixture_1m.csv", nrows=0).columns if c.startswith(WEIGHT_PREFIX)]
    test = {s: _read_pair(data_dir / "test_mixture_1m.csv", data_dir / f"test_pile_loss_{s}.csv") for s in ("1m", "60m")}
    for df, label in ((train, "train"), *((d, f"test {s}") for s, d in test.items())):
        absent = [c for c in components + [OBJECTIVE] if c not in df.columns]
        if absent:
            raise SystemExit(f"{label}: missing column(s) {', '.join(absent)}")
    if not np.array_equal(test["1m"]["index"].to_numpy(), test["60m"]["index"].to_numpy()):
        raise SystemExit("test_pile_loss_1m.csv and test_pile_loss_60m.csv cover different mixtures")
    return RegMixData(
        components=components,
        x_train=train[components].to_numpy(float),
        y_train=train[OBJECTIVE].to_numpy(float),
        x_test=test["1m"][components].to_numpy(float),
        y_test={s: d[OBJECTIVE].to_numpy(float) for s, d in test.items()},
    )


def fit_mixing_law(data: RegMixData, huber_delta: float | None) -> tuple[Callable[[np.ndarray], np.ndarray], dict[str, Any], dict[str, Any]]:
    """Fit the data mixing law to the Pile-CC loss with :func:`mixsearch.laws.fit_mixing`.

    Args:
        data: The runs.
        huber_delta: Huber threshold in log-loss units, or ``None`` for the package default.

    Returns:
        ``(predict, settings, notes)``: a predictor of ``[m, 17]`` mixtures, the fit options,
        and the fitted law's parameters and diagnostics.
    """
    from mixsearch.laws import FitOptions, fit_mixing

    opts = FitOptions(bootstrap=0, cv_folds=0)
    if huber_delta is not None:
        opts = opts.replace(huber_delta=huber_delta)
    law = fit_mixing(data.x_train, data.y_train, data.components, targets=["pile_cc"], options=opts, name="regmix_pile_cc")
    d = law.diagnostics
    p = law.params
    t = {c.removeprefix(WEIGHT_PREFIX): round(p[f"t[pile_cc,{c}]"], 4) for c in data.components}
    notes = {
        "c": p["c[pile_cc]"],
        "k": p["k[pile_cc]"],
        "t": t,
        "converged": d["converged"],
        "grad_norm": d["grad_norm"],
        "distinct_optima": d["distinct_optima"],
        "train_rmse_log": d["rmse"],
        "train_rmse": d["rmse_natural"],
        "train_runs_below_c": int(np.sum(data.y_train < p["c[pile_cc]"])),
    }
    settings = {"api": "mixsearch.laws.fit_mixing", **{k: v for k, v in opts.to_dict().items() if k in ("huber_delta", "n_starts", "method", "ftol", "gtol", "maxiter", "bootstrap", "cv_folds", "seed")}}

    def predict(x: np.ndarray) -> np.ndarray:
        pred = law.predict(weights=x)
        notes["test_extrapolated"] = int(np.sum(pred.extrapolated))
        return np.asarray(pred.value, dtype=float)

    return predict, settings, notes


def fit_lightgbm(data: RegMixData, seed: int, threads: int) -> tuple[Callable[[np.ndarray], np.ndarray], dict[str, Any], dict[str, Any]]:
    """Fit ``LGBMRegressor`` with the settings of sail-sg/regmix's regression notebook.

    Args:
        data: The runs.
        seed: LightGBM ``random_state``.
        threads: LightGBM ``n_jobs``.

    Returns:
        ``(predict, settings, notes)``.
    """
    import lightgbm as lgb

    settings = {"boosting_type": "gbdt", "objective": "regression", "n_estimators": 1000, "learning_rate": 0.01, "random_state": seed, "n_jobs": threads, "verbosity": -1}
    model = lgb.LGBMRegressor(**settings).fit(data.x_train, data.y_train)
    return model.predict, {"api": f"lightgbm.LGBMRegressor {lgb.__version__}", **settings, "early_stopping": None}, {}


def fit_linear(data: RegMixData) -> tuple[Callable[[np.ndarray], np.ndarray], dict[str, Any], dict[str, Any]]:
    """Fit ordinary least squares of the loss on the mixture weights.

    Args:
        data: The runs.

    Returns:
        ``(predict, settings, notes)``.
    """
    coef, _, rank, _ = np.linalg.lstsq(data.x_train, data.y_train, rcond=None)
    return (lambda x: x @ coef), {"api": "numpy.linalg.lstsq", "intercept": "absorbed (weights sum to 1)"}, {"rank": int(rank)}


def run_method(name: str, fit: Callable[[], tuple[Callable[[np.ndarray], np.ndarray], dict[str, Any], dict[str, Any]]], data: RegMixData) -> MethodResult:
    """Fit one method (timed), predict the test mixtures and score the ranking at each scale."""
    t0 = time.perf_counter()
    predict, settings, notes = fit()
    seconds = time.perf_counter() - t0
    pred = np.asarray(predict(data.x_test), dtype=float)
    rho = {s: float(spearmanr(pred, y).statistic) for s, y in data.y_test.items()}
    rmse = float(np.sqrt(np.mean((pred - data.y_test["1m"]) ** 2)))
    return MethodResult(name, settings, seconds, rho, rmse, notes)


def format_table(results: list[MethodResult]) -> str:
    """A plain-text table: ρ at 1M and 60M, the published ρ where known, RMSE at 1M and fit time."""
    head = f"{'method':<12} {'rho_1m':>7} {'rho_60m':>8} {'published':>12} {'rmse_1m':>8} {'fit_s':>7}"
    lines = [head, "-" * len(head)]
    for r in results:
        pub = PUBLISHED.get(r.method)
        pub_s = f"{pub[0]:.3f}/{pub[1]:.3f}" if pub else "-"
        lines.append(f"{r.method:<12} {r.spearman['1m']:>7.4f} {r.spearman['60m']:>8.4f} {pub_s:>12} {r.rmse_1m:>8.4f} {r.fit_seconds:>7.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table; write JSON when asked.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="RegMix data directory (default: ../shared/data/regmix from the repository root)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    ap.add_argument("--seed", type=int, default=42, help="LightGBM seed (default 42, as in sail-sg/regmix)")
    ap.add_argument("--threads", type=int, default=1, help="LightGBM threads (default 1)")
    ap.add_argument("--mixing-huber-delta", type=float, default=None, help="Huber threshold of the mixing-law fit (default: the package's)")
    ap.add_argument("--methods", default="mixing_law,lightgbm,linear", help="comma-separated subset of mixing_law,lightgbm,linear")
    args = ap.parse_args(argv)

    data = load_regmix(args.data.resolve())
    fits = {
        "mixing_law": lambda: fit_mixing_law(data, args.mixing_huber_delta),
        "lightgbm": lambda: fit_lightgbm(data, args.seed, args.threads),
        "linear": lambda: fit_linear(data),
    }
    chosen = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(chosen) - set(fits))
    if unknown:
        ap.error(f"--methods: unknown {', '.join(unknown)}; known: {', '.join(fits)}")
    print(f"RegMix ranking: fit on {len(data.y_train)} 1M runs, rank {len(data.x_test)} test mixtures by {OBJECTIVE}", flush=True)
    results = []
    for name in chosen:
        results.append(run_method(name, fits[name], data))
        print(f"  {name}: fitted in {results[-1].fit_seconds:.2f} s", flush=True)
    print()
    print(format_table(results))
    if "mixing_law" in chosen:
        n = next(r for r in results if r.method == "mixing_law").notes
        print(
            f"\nmixing law: c={n['c']:.4f} k={n['k']:.4f} converged={n['converged']} distinct optima={n['distinct_optima']} "
            f"train RMSE={n['train_rmse']:.4f} ({n['train_runs_below_c']} of {len(data.y_train)} training losses below c); "
            f"{n['test_extrapolated']} of {len(data.x_test)} test mixtures outside the fitted weight ranges"
        )
    if args.json is not None:
        out = {
            "benchmark": "regmix_ranking",
            "data": str(args.data.resolve()),
            "objective": OBJECTIVE,
            "n_train": int(len(data.y_train)),
            "n_test": int(len(data.x_test)),
            "published": {k: {"1m": v[0], "60m": v[1]} for k, v in PUBLISHED.items()},
            "python": platform.python_version(),
            "results": [asdict(r) for r in results],
        }
        args.json.write_text(json.dumps(out, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
