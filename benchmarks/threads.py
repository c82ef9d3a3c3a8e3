"""How many CPU threads each kind of work should use, idle and beside another busy process.

Three workloads, each timed with 1 thread and with every core, on an idle machine and with
a CPU hog (one busy-looping process per core) running beside it:

* ``proxy``: train one real proxy GPT (about 100k parameters, 64k tokens) on a small
  corpus written by the script; figure: seconds per proxy.
* ``surrogate``: one multi-fidelity BO proposal (GP fit on 60 observed trials at two rungs
  of a 6-domain synthetic world, then MF-GIBBON, q = 4); figure: seconds per proposal.
* ``law``: a Chinchilla fit of 20 runs and a data-mixing-law fit of 200 runs (the package
  defaults: bootstrap and held-out error included); figure: seconds per fit.

The thread count is set the way mixsearch sets it (``MIXSEARCH_THREADS``, read by
:mod:`mixsearch.threads`), and ``OMP_WAIT_POLICY`` is ``PASSIVE`` as the CLI sets it. Each
cell runs in a fresh process so nothing is warm from the previous one.

Example::

    python benchmarks/threads.py --repeats 3 --json threads.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

WORK = {
    "proxy": textwrap.dedent(
        """
        import sys, time, tempfile
        from pathlib import Path
        sys.path.insert(0, str(Path(sys.argv[1]) / "tests"))
        from corpora import write_domains
        from mixsearch.proxy.corpus import build_corpus
        from mixsearch.proxy.batched import train_proxies
        from mixsearch.threads import threads_for
        import torch
        root = Path(tempfile.mkdtemp())
        corpus = build_corpus(write_domains(root / "text"), cache_dir=root / "cache", vocab_size=512, max_bytes_per_domain=60_000)
        torch.set_num_threads(threads_for("proxy"))
        t = time.perf_counter()
        train_proxies(corpus, [[0.4, 0.3, 0.3]], 100_000, 65_536, [0], device="cpu", seq_len=64, batch_size=16, eval_tokens=4096)
        print(time.perf_counter() - t)
        """
    ),
    "surrogate": textwrap.dedent(
        """
        import time
        import numpy as np
        from mixsearch.evaluate.synthetic import SyntheticEvaluator
        from mixsearch.evaluate.worlds import SYNTHETIC_RUNGS
        from mixsearch.propose.base import History, ProposalContext
        from mixsearch.propose.mfbo import MultiFidelityBO
        from mixsearch.study import FidelityLadder, SearchSpace
        from mixsearch.threads import limited
        world = SyntheticEvaluator("mixing-shift", noise=0.0)
        rng = np.random.default_rng(0)
        w = rng.dirichlet(np.ones(6), 60)
        rungs = ["25M"] * 45 + ["100M"] * 15
        y = np.array([world.true_objective(x, next(r for r in SYNTHETIC_RUNGS if r.name == rn))[0] for x, rn in zip(w, rungs)])
        ladder = FidelityLadder(SYNTHETIC_RUNGS, SYNTHETIC_RUNGS[-1])
        ctx = ProposalContext(SearchSpace(world.domains), ladder, History(w, tuple(rungs), y, np.zeros((0, 6)), ()), seed=1)
        with limited("surrogate"):
            t = time.perf_counter()
            MultiFidelityBO().propose(ctx, 4)
            print(time.perf_counter() - t)
        """
    ),
    "law": textwrap.dedent(
        """
        import time
        import numpy as np
        from mixsearch.laws import fit_chinchilla, fit_mixing
        from mixsearch.threads import limited
        rng = np.random.default_rng(0)
        n = np.exp(rng.uniform(np.log(1e7), np.log(1e9), 20)); d = 20 * n * np.exp(rng.uniform(-1, 1, 20))
        loss = (1.69 + 406.4 / n**0.34 + 410.7 / d**0.28) * np.exp(rng.normal(0, 0.01, 20))
        r = rng.dirichlet(np.ones(6), 200)
        y = 2.0 + 0.8 * np.exp(r @ np.array([-1.5, 0.5, 1.0, -0.3, 0.2, 0.1])) + rng.normal(0, 0.003, 200)
        with limited("law"):
            t = time.perf_counter()
            fit_chinchilla(n, d, loss)
            fit_mixing(r, y, [f"d{i}" for i in range(6)])
            print(time.perf_counter() - t)
        """
    ),
}


def hog(cores: int) -> list[subprocess.Popen]:
    """One busy-looping process per core: the 'other work on the machine'."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cores)]


def run_cell(kind: str, threads: int) -> float:
    env = {**os.environ, "MIXSEARCH_THREADS": str(threads), "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(REPO)}
    env.pop("OMP_NUM_THREADS", None)
    out = subprocess.run([sys.executable, "-c", WORK[kind], str(REPO)], capture_output=True, text=True, env=env, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(f"{kind} with {threads} threads failed: {out.stderr[-2000:]}")
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", default="proxy,surrogate,law")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    counts = sorted({1, cores})
    rows = []
    for load in ("idle", "hog"):
        procs = hog(cores) if load == "hog" else []
        time.sleep(1.0 if procs else 0.0)
        try:
            for kind in args.kinds.split(","):
                for n in counts:
                    times = [run_cell(kind, n) for _ in range(args.repeats)]
                    rows.append({"kind": kind, "load": load, "threads": n, "median_s": statistics.median(times), "min_s": min(times), "loadavg": os.getloadavg()[0]})
                    print(f"{kind:10s} {load:5s} threads={n}: median {rows[-1]['median_s']:.2f} s (min {rows[-1]['min_s']:.2f}), load {rows[-1]['loadavg']:.1f}", flush=True)
        finally:
            for p in procs:
                p.kill()
    meta = {"machine": platform.processor() or platform.machine(), "cores": cores, "python": platform.python_version(), "date": time.strftime("%Y-%m-%d")}
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
