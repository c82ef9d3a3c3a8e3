"""Proposal latency of the BO proposers on a RegMix-sized history, on the CPU.

What is measured: the wall time of one ``propose(ctx, q)`` call -- everything a study's
ask pays for (model fit, acquisition set-up and optimisation, mapping to candidates) -- for
the multi-fidelity BO proposer ``mfbo`` and, on the same history, its peers: ``gp``
(SingleFidelityBO), ``regmix``, Ax (``ax``) and Optuna (``optuna-gp``, ``optuna-tpe``).
Each proposer is built as a study builds it (:func:`mixsearch.propose.base.make_proposer`
with the default options, unless a spec overrides one) and is rebuilt before every timed
call, and the Surrogate's fit cache is emptied first, so no fit carries over between repeats. Library imports happen before any
timing. Each call is repeated ``--repeats`` times with the same context; the median and the
minimum wall time are reported (the minimum is the least disturbed by other work on the
machine), with the median CPU time of the process during the call (all threads; less
sensitive to other load, though OpenMP threads that spin while waiting count too).

The requirement checked: ``mfbo`` proposes q = 8 candidates for 17 domains from 300
observed trials in at most 20 s on 2 CPU cores (``--limit``).

The history:

* 17 domains (unbounded simplex), a RegMix-like ladder: runnable rungs ``1M`` (1M
  parameters, 1B tokens) and ``60M`` (60M parameters, 1B tokens); the target ``1B`` (1B
  parameters, 25B tokens) is not runnable and is only extrapolated to.
* 300 finished trials, ``--n-cheap`` (default 240) at 1M and the rest at 60M, plus
  ``--pending-cheap`` and ``--pending-big`` running trials (default 4 and 2). Mixtures are
  feasible draws from :mod:`mixsearch.simplex`, half dense (Dirichlet 1) and half
  sparse (Dirichlet 0.3), stored as canonical weights as the ledger stores them.
* Objectives from a 17-domain data mixing law (:class:`mixsearch.bench.synthetic.MixingLaw`:
  a Chinchilla floor plus ``k_i exp(-a_i s) exp(sum_j (T_ij + s U_ij) r_j)``), with random
  but fixed interactions whose optimum moves with scale, plus Gaussian observation noise
  that shrinks with model size. The synthetic oracle in :mod:`mixsearch.bench.synthetic` only
  has 6 domains, so the law is built here.

Single-fidelity peers (``gp``, ``ax``, ``optuna-*``) fit only the trials at their rung,
which with an unrunnable target is the costliest runnable rung (60M: 60 trials by default).
With ``--flat`` (default on) they are also timed on a *flat* history, where all 300
mixtures were observed at 60M, so their GP sees as many points as mfbo's does (rows
marked ``flat``). ``regmix`` is timed as ``regmix?proxy_budget=4`` so that this history puts
it in its final phase (LightGBM fit on the 1M runs, 100 000 sampled mixtures scored); with
its default budget of 5 final-rung runs it would still be drawing random 1M mixtures.

Threads: torch uses ``--threads`` intra-op threads (default 2, the requirement's cores);
set ``--threads 0`` to leave torch's default. Other load on the machine inflates the
figures, and with 2 threads on 2 *busy* cores badly: OpenMP threads spin while they wait
for a partner thread that another process has descheduled. On a 2-core machine at load
3-7 one mfbo call took 17-45 s with 2 threads against 2.6-8 s with 1 thread, and 3.5 s
with 2 threads and ``OMP_WAIT_POLICY=PASSIVE`` (an environment variable, read when torch
starts, so it is set on the command line). On a busy machine, also run with
``--threads 1`` or that variable. The script prints the load average before and after.

Duration: with the defaults, 20-35 minutes on a busy 2-core machine, nearly all of it Ax
(with its default settings 2-9 minutes per call, 6 calls); ``--proposers mfbo`` takes
under a minute, and ``--no-flat`` or leaving out ``ax`` shortens a full run.
The exit status is 1 when the mfbo median exceeds ``--limit``.

Run::

    python benchmarks/proposal_latency.py                       # all proposers, 3 repeats
    python benchmarks/proposal_latency.py --proposers mfbo --repeats 5 --json out.json
    python benchmarks/proposal_latency.py --proposers mfbo --profile mfbo   # + cProfile
    OMP_WAIT_POLICY=PASSIVE python benchmarks/proposal_latency.py            # busy machine

``--proposers`` takes harness-style specs (``name`` or ``name?key=value&...``), so a
setting can be compared, e.g. ``mfbo?raw_samples=128``. ``--profile NAME`` runs one extra,
untimed call of that proposer under cProfile and prints the functions with the most
cumulative and own time.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import statistics
import sys
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from mixsearch.bench.harness import parse_proposer
from mixsearch.bench.synthetic import MixingLaw
from mixsearch.candidate import canonical_weights
from mixsearch import simplex, surrogate
from mixsearch.propose.base import History, ProposalContext, make_proposer
from mixsearch.study import FidelityLadder, ProposerSpec, Rung, SearchSpace

DEFAULT_PROPOSERS = "mfbo,gp,regmix?proxy_budget=4,ax,optuna-gp,optuna-tpe"
# Proposers that read only the trials at one rung; they are also timed on the flat history.
SINGLE_FIDELITY = ("gp", "ax", "optuna-gp", "optuna-tpe")

CHEAP = Rung("1M", n_params=1_000_000, tokens=1_000_000_000)
BIG = Rung("60M", n_params=60_000_000, tokens=1_000_000_000)
TARGET = Rung("1B", n_params=1_000_000_000, tokens=25_000_000_000)
LADDER = FidelityLadder((CHEAP, BIG), TARGET)


# ---------------------------------------------------------------------------------------
# The synthetic world
# ---------------------------------------------------------------------------------------


def mixing_law(k: int, seed: int) -> MixingLaw:
    """A ``k``-domain data mixing law with random, fixed parameters.

    In-domain data helps (negative diagonal of ``T``), other domains transfer a little or
    interfere (small off-diagonal terms), and ``a`` and ``U`` move the optimum with scale,
    as in the 6-domain ``mixing-shift`` law of :mod:`mixsearch.bench.synthetic`.

    Args:
        k: Number of domains.
        seed: Seed of the parameter draw.

    Returns:
        The law, domains named ``d00`` .. ``d{k-1}``.
    """
    rng = np.random.default_rng(seed)
    T = rng.normal(0.0, 0.25, (k, k))
    np.fill_diagonal(T, -rng.uniform(1.8, 3.6, k))
    U = rng.normal(0.0, 0.03, (k, k))
    np.fill_diagonal(U, rng.uniform(0.08, 0.14, k))
    return MixingLaw(
        domains=tuple(f"d{i:02d}" for i in range(k)),
        E=rng.uniform(1.0, 2.4, k),
        k=rng.uniform(1.4, 2.2, k),
        a=rng.uniform(0.16, 0.30, k),
        T=T,
        U=U,
    )


def observe(law: MixingLaw, w: np.ndarray, rung: Rung, rng: np.random.Generator, noise: float = 0.006) -> np.ndarray:
    """Noisy objectives ``[n]`` of mixtures ``w`` ``[n, K]`` at ``rung`` (noise ~ N^-0.35)."""
    assert rung.n_params is not None and rung.tokens is not None
    y = law.objective(w, rung.n_params, rung.tokens)
    sd = noise * (rung.n_params / law.n_ref) ** -0.35
    return y + sd * rng.standard_normal(len(y))


def mixtures(n: int, space: SearchSpace, rng: np.random.Generator) -> np.ndarray:
    """``[n, K]`` canonical feasible mixtures: half Dirichlet(1), half Dirichlet(0.3)."""
    w = np.concatenate([simplex.sample(n - n // 2, space, rng, 1.0), simplex.sample(n // 2, space, rng, 0.3)])
    w = w[rng.permutation(n)]
    return np.array([canonical_weights(x) for x in w], dtype=float).reshape(n, space.dim)


@dataclass(frozen=True)
class Setup:
    """The space, the law and the two histories the proposers are timed on.

    Attributes:
        space: The search space.
        law: The mixing law the objectives come from.
        ladder: History over the 1M/60M ladder (what every proposer is timed on).
        flat: The same mixtures, all observed at 60M (single-fidelity peers only).
    """

    space: SearchSpace
    law: MixingLaw
    ladder: History
    flat: History


def build_setup(k: int, n_obs: int, n_cheap: int, pending_cheap: int, pending_big: int, seed: int) -> Setup:
    """Draw the histories.

    Args:
        k: Number of domains.
        n_obs: Finished trials.
        n_cheap: Of those, trials at the cheap rung (the rest at the 60M rung).
        pending_cheap: Running trials at the cheap rung.
        pending_big: Running trials at the 60M rung.
        seed: Seed of the law, the mixtures and the noise.

    Raises:
        ValueError: inconsistent counts.
    """
    if not 0 <= n_cheap <= n_obs:
        raise ValueError(f"--n-cheap: must be between 0 and --trials ({n_obs}), got {n_cheap}")
    if pending_cheap < 0 or pending_big < 0:
        raise ValueError("--pending-cheap/--pending-big: must be >= 0")
    law = mixing_law(k, seed)
    space = SearchSpace(law.domains)
    rng = np.random.default_rng(seed + 1)
    n_pend = pending_cheap + pending_big
    w = mixtures(n_obs + n_pend, space, rng)
    w_obs, w_pend = w[:n_obs], w[n_obs:]
    rungs = tuple([CHEAP.name] * n_cheap + [BIG.name] * (n_obs - n_cheap))
    y = np.empty(n_obs)
    y[:n_cheap] = observe(law, w_obs[:n_cheap], CHEAP, rng)
    y[n_cheap:] = observe(law, w_obs[n_cheap:], BIG, rng)
    costs = np.array([LADDER.rung(r).run_cost for r in rungs])
    pend_rungs = tuple([CHEAP.name] * pending_cheap + [BIG.name] * pending_big)
    ladder_h = History(w_obs, rungs, y, w_pend, pend_rungs, costs)
    y_flat = observe(law, w_obs, BIG, rng)
    flat_h = History(w_obs, (BIG.name,) * n_obs, y_flat, w_pend, (BIG.name,) * n_pend, np.full(n_obs, BIG.run_cost))
    return Setup(space, law, ladder_h, flat_h)


# ---------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------


@dataclass
class Row:
    """The timings of one proposer on one history."""

    proposer: str
    history: str
    n_fit: int
    times: list[float]
    cpu: list[float]
    n_candidates: int
    rungs: str
    feasible: bool

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def best(self) -> float:
        return min(self.times)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu)

    def as_dict(self) -> dict[str, Any]:
        return {
            "proposer": self.proposer,
            "history": self.history,
            "n_fit": self.n_fit,
            "median_s": self.median,
            "min_s": self.best,
            "times_s": self.times,
            "cpu_median_s": self.cpu_median,
            "cpu_s": self.cpu,
            "n_candidates": self.n_candidates,
            "candidate_rungs": self.rungs,
            "feasible": self.feasible,
        }


def preload(specs: list[ProposerSpec]) -> None:
    """Import every library a proposer loads lazily, so no timed call pays for an import."""
    names = {s.name for s in specs}
    import botorch  # noqa: F401  (mfbo, gp)

    if names & {"ax"}:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import ax  # noqa: F401
            from ax.api.configs import DerivedParameterConfig  # noqa: F401
    if any(n.startswith("optuna") for n in names):
        import optuna  # noqa: F401
    if "regmix" in names:
        import lightgbm  # noqa: F401


def fitted_on(spec: ProposerSpec, h: History) -> int:
    """Trials the proposer's model is fitted on (single-fidelity peers: those at 60M)."""
    if spec.name in SINGLE_FIDELITY:
        rung = str(spec.options.get("rung", BIG.name))
        return sum(r == rung for r in h.rungs)
    if spec.name == "regmix":
        return sum(r == CHEAP.name for r in h.rungs)
    return h.n


def time_one(spec: ProposerSpec, label: str, ctx: ProposalContext, q: int, repeats: int, which: str) -> Row:
    """Time ``repeats`` calls of ``propose(ctx, q)``, each with a freshly built proposer."""
    times: list[float] = []
    cpu: list[float] = []
    cands: list[Any] = []
    for _ in range(repeats):
        proposer = make_proposer(spec)
        # fit_surrogate keeps recent fits by data; a study's history changes between asks,
        # so every timed call starts with none.
        surrogate._FIT_CACHE.clear()
        c0, t0 = time.process_time(), time.perf_counter()
        cands = proposer.propose(ctx, q)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    w = np.array([c.weights for c in cands], dtype=float).reshape(-1, ctx.space.dim)
    ok = bool(len(w) and np.all(w >= -1e-9) and np.allclose(w.sum(axis=1), 1.0, atol=1e-6))
    rungs = ", ".join(f"{r}x{n}" for r, n in sorted(Counter(c.rung for c in cands).items()))
    return Row(label, which, fitted_on(spec, ctx.history), times, cpu, len(cands), rungs, ok)


def profile_one(spec: ProposerSpec, ctx: ProposalContext, q: int, top: int) -> str:
    """cProfile of one untimed ``propose`` call: the top functions by cumulative and own time."""
    proposer = make_proposer(spec)
    prof = cProfile.Profile()
    prof.enable()
    proposer.propose(ctx, q)
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out).strip_dirs()
    out.write("== by cumulative time ==\n")
    stats.sort_stats("cumulative").print_stats(top)
    out.write("== by own time ==\n")
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


def load() -> str:
    """The 1, 5 and 15 minute load averages, as ``uptime`` prints them."""
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


# ---------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--proposers", default=DEFAULT_PROPOSERS, help=f"comma-separated specs (default {DEFAULT_PROPOSERS})")
    p.add_argument("--q", type=int, default=8, help="candidates per ask (default 8)")
    p.add_argument("--domains", type=int, default=17, help="number of domains K (default 17)")
    p.add_argument("--trials", type=int, default=300, help="finished trials in the history (default 300)")
    p.add_argument("--n-cheap", type=int, default=240, help="of those, trials at 1M; the rest at 60M (default 240)")
    p.add_argument("--pending-cheap", type=int, default=4, help="running trials at 1M (default 4)")
    p.add_argument("--pending-big", type=int, default=2, help="running trials at 60M (default 2)")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per proposer (default 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the history and of every ask (default 0)")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads; 0 keeps torch's default (default 2)")
    p.add_argument("--flat", action=argparse.BooleanOptionalAction, default=True, help="also time single-fidelity peers on the flat 60M history")
    p.add_argument("--limit", type=float, default=20.0, help="mfbo latency requirement in seconds (default 20)")
    p.add_argument("--profile", default=None, help="proposer spec to run once more under cProfile")
    p.add_argument("--profile-top", type=int, default=30, help="rows of the profile to print (default 30)")
    p.add_argument("--json", default=None, help="write the figures and the setup to this JSON file")
    args = p.parse_args(argv)
    if args.q < 1 or args.repeats < 1 or args.domains < 2 or args.trials < 2:
        p.error("--q and --repeats must be >= 1, --domains and --trials >= 2")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    specs = [(text.strip(), parse_proposer(text)) for text in args.proposers.split(",") if text.strip()]
    setup = build_setup(args.domains, args.trials, args.n_cheap, args.pending_cheap, args.pending_big, args.seed)
    preload([s for _, s in specs] + ([parse_proposer(args.profile)] if args.profile else []))

    load_before = load()
    print(
        f"K={args.domains} q={args.q} trials={args.trials} (1M: {args.n_cheap}, 60M: {args.trials - args.n_cheap}) "
        f"pending={args.pending_cheap}+{args.pending_big} repeats={args.repeats} torch threads={torch.get_num_threads()} "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')} cpus={os.cpu_count()} load={load_before}",
        flush=True,
    )
    rows: list[Row] = []
    for label, spec in specs:
        histories = [("ladder", setup.ladder)]
        if args.flat and spec.name in SINGLE_FIDELITY:
            histories.append(("flat", setup.flat))
        for which, h in histories:
            ctx = ProposalContext(setup.space, LADDER, h, args.seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                row = time_one(spec, label, ctx, args.q, args.repeats, which)
            rows.append(row)
            times = " ".join(f"{t:.2f}" for t in row.times)
            cpu = " ".join(f"{t:.2f}" for t in row.cpu)
            print(f"  {label:<22} {which:<6} n_fit={row.n_fit:<4} wall [s]: {times}  cpu [s]: {cpu}  -> {row.rungs}", flush=True)
    load_after = load()

    print()
    head = f"{'proposer':<22} {'history':<7} {'n_fit':>5} {'median s':>9} {'min s':>8} {'cpu s':>7}  candidates"
    print(head)
    print("-" * len(head))
    for r in rows:
        flag = "" if r.feasible and r.n_candidates == args.q else "  (!)"
        print(f"{r.proposer:<22} {r.history:<7} {r.n_fit:>5} {r.median:>9.2f} {r.best:>8.2f} {r.cpu_median:>7.2f}  {r.n_candidates} ({r.rungs}){flag}")
    print(f"\nload average (1, 5, 15 min): before {load_before}, after {load_after}; {os.cpu_count()} CPUs")

    verdict = None
    mf = [r for r in rows if r.proposer.split("?")[0] == "mfbo" and r.history == "ladder"]
    for r in mf:
        verdict = r.median <= args.limit
        print(f"requirement: {r.proposer} median {r.median:.2f} s (min {r.best:.2f} s) <= {args.limit:g} s: {'PASS' if verdict else 'FAIL'}")

    profile = None
    if args.profile:
        spec = parse_proposer(args.profile)
        ctx = ProposalContext(setup.space, LADDER, setup.ladder, args.seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            profile = profile_one(spec, ctx, args.q, args.profile_top)
        print(f"\ncProfile of one {args.profile} call (ladder history):\n{profile}")

    if args.json:
        out = {
            "setup": {
                "domains": args.domains,
                "q": args.q,
                "trials": args.trials,
                "trials_1M": args.n_cheap,
                "trials_60M": args.trials - args.n_cheap,
                "pending_1M": args.pending_cheap,
                "pending_60M": args.pending_big,
                "ladder": [CHEAP.name, BIG.name],
                "target": TARGET.name,
                "repeats": args.repeats,
                "seed": args.seed,
                "torch_threads": torch.get_num_threads(),
                "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                "cpus": os.cpu_count(),
                "load_before": load_before,
                "load_after": load_after,
                "python": sys.version.split()[0],
                "platform": platform.platform(),
                "torch": torch.__version__,
            },
            "limit_s": args.limit,
            "mfbo_within_limit": verdict,
            "rows": [r.as_dict() for r in rows],
            "profile": profile,
        }
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
        print(f"wrote {args.json}")
    return 0 if verdict in (None, True) else 1


if __name__ == "__main__":
    sys.exit(main())
