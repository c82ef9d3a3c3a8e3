"""Convert the published RegMix runs (sail-sg/regmix ``data/``) into a run table CSV.

Usage::

    python -m mixsearch.bench.regmix_table /work/shared/data/regmix regmix.csv [--with-1b] [--with-train]

By default the table has two fidelities over the same 256 held-out mixtures
(``test_mixture_1m.csv`` with ``test_pile_loss_1m.csv`` and ``test_pile_loss_60m.csv``):
``1M`` and ``60M``. The objective is the Pile-CC validation loss, as in the RegMix paper;
the 13 per-domain validation losses are kept as ``loss_<domain>`` columns.

Costs are ``6 * N * D`` with the nominal sizes of the RegMix paper (Liu et al., 2024,
arXiv 2407.01492): the 1M and 60M models are trained on 1B tokens, the 1B models on 25B
tokens. Real parameter counts differ from the nominal names; only ratios matter to the
harness (a 60M run costs 60 1M runs; a 1B run 25,000).

``--with-1b`` adds the 64 1B-parameter runs (other mixtures, so they share no mixture
with the 1M/60M rows); ``--with-train`` adds the 512 training mixtures at 1M. Both change
the pool; the default two-rung table is the setting benchmarks use.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

MIXTURE_PREFIX = "train_the_pile_"
LOSS_PREFIX = "metric/the_pile_"
LOSS_SUFFIX = "_val_loss"
OBJECTIVE_DOMAIN = "pile_cc"

# Nominal model sizes and token budgets of the RegMix runs (paper, Section 3 and 4).
RUNGS = {
    "1M": (1_000_000, 1_000_000_000),
    "60M": (60_000_000, 1_000_000_000),
    "1B": (1_000_000_000, 25_000_000_000),
}

# (fidelity label, mixture file, loss file) of each part of the table.
TEST_PARTS = [("1M", "test_mixture_1m.csv", "test_pile_loss_1m.csv"), ("60M", "test_mixture_60m.csv", "test_pile_loss_60m.csv")]
ONE_B_PART = ("1B", "test_mixture_1B.csv", "test_pile_loss_1B.csv")
TRAIN_PART = ("1M", "train_mixture_1m.csv", "train_pile_loss_1m.csv")


def _read(folder: Path, name: str) -> pd.DataFrame:
    path = folder / name
    if not path.is_file():
        raise ValueError(f"{path}: file not found (is {folder} the RegMix data folder?)")
    df = pd.read_csv(path)
    if "index" not in df.columns:
        raise ValueError(f"{path}: missing column 'index'")
    return df


def convert_part(folder: Path, label: str, mixture_file: str, loss_file: str, id_prefix: str) -> pd.DataFrame:
    """One fidelity's rows: weights joined with losses on ``index``.

    Returns:
        A frame with ``mixture_id``, ``w_<domain>``..., ``fidelity``, ``cost``, ``objective``
        and ``loss_<domain>``... columns.
    """
    mix = _read(folder, mixture_file)
    loss = _read(folder, loss_file)
    wcols = [c for c in mix.columns if c.startswith(MIXTURE_PREFIX)]
    lcols = [c for c in loss.columns if c.startswith(LOSS_PREFIX) and c.endswith(LOSS_SUFFIX)]
    if not wcols:
        raise ValueError(f"{folder / mixture_file}: no '{MIXTURE_PREFIX}<domain>' columns")
    objective_col = f"{LOSS_PREFIX}{OBJECTIVE_DOMAIN}{LOSS_SUFFIX}"
    if objective_col not in lcols:
        raise ValueError(f"{folder / loss_file}: missing column {objective_col!r}")
    joined = mix.merge(loss, on="index", how="inner", validate="one_to_one")
    if len(joined) != len(mix):
        raise ValueError(f"{folder / loss_file}: {len(mix) - len(joined)} mixtures of {mixture_file} have no losses")
    w = joined[wcols].to_numpy(dtype=float)
    # Published weights are rounded to 3 decimals (row sums 0.997-1.003): renormalise.
    w = w / w.sum(axis=1, keepdims=True)
    n_params, tokens = RUNGS[label]
    out = pd.DataFrame({"mixture_id": [f"{id_prefix}{i}" for i in joined["index"]]})
    for j, c in enumerate(wcols):
        out[f"w_{c[len(MIXTURE_PREFIX):]}"] = w[:, j]
    out["fidelity"] = label
    out["N"] = n_params
    out["D"] = tokens
    out["cost"] = 6.0 * n_params * tokens
    out["objective"] = joined[objective_col].to_numpy(dtype=float)
    for c in lcols:
        out[f"loss_{c[len(LOSS_PREFIX):-len(LOSS_SUFFIX)]}"] = joined[c].to_numpy(dtype=float)
    return out


def convert(folder: str | Path, with_1b: bool = False, with_train: bool = False) -> pd.DataFrame:
    """The RegMix runs as one run table.

    Args:
        folder: The RegMix ``data/`` folder.
        with_1b: Add the 64 1B runs (fidelity ``1B``).
        with_train: Add the 512 training mixtures at fidelity ``1M``.

    Raises:
        ValueError: a file is missing or malformed (one line naming it).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: RegMix data folder not found")
    parts = [convert_part(folder, lab, m, l, "test-") for lab, m, l in TEST_PARTS]
    ids = [set(p["mixture_id"]) for p in parts]
    if ids[0] != ids[1]:
        raise ValueError(f"{folder}: the 1M and 60M test files do not cover the same mixtures")
    wcols = [c for c in parts[0].columns if c.startswith("w_")]
    a = parts[0].set_index("mixture_id")[wcols].sort_index()
    b = parts[1].set_index("mixture_id")[wcols].sort_index()
    if not np.allclose(a.to_numpy(), b.to_numpy(), atol=1e-9):
        raise ValueError(f"{folder / TEST_PARTS[1][1]}: mixtures differ from {TEST_PARTS[0][1]} for the same index")
    if with_train:
        parts.append(convert_part(folder, *TRAIN_PART, "train-"))
    if with_1b:
        parts.append(convert_part(folder, *ONE_B_PART, "1b-"))
    return pd.concat(parts, ignore_index=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mixsearch.bench.regmix_table", description="Convert the RegMix published runs into a mixsearch run table.")
    parser.add_argument("source", help="the RegMix data folder (test_mixture_1m.csv, test_pile_loss_1m.csv, ...)")
    parser.add_argument("out", help="the table CSV to write")
    parser.add_argument("--with-1b", action="store_true", help="add the 64 1B-parameter runs (other mixtures)")
    parser.add_argument("--with-train", action="store_true", help="add the 512 training mixtures at 1M")
    args = parser.parse_args(argv)
    try:
        table = convert(args.source, args.with_1b, args.with_train)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    counts = ", ".join(f"{lab}: {n}" for lab, n in table["fidelity"].value_counts(sort=False).items())
    print(f"wrote {args.out}: {len(table)} runs ({counts}), {sum(c.startswith('w_') for c in table.columns)} domains")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
