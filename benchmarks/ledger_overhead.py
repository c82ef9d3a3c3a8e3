"""The ledger's own overhead per trial, on SQLite and PostgreSQL.

Measures, for each backend:

1. one process: the add -> claim -> complete round trip of one trial (ms; median,
   p95, mean over ``--trials`` trials), and a full re-read of the ledger
   (``Ledger.trials()``, what every ask does) at the final size;
2. ``--procs`` processes sharing one ledger, each adding ``--per-proc`` trials and
   then claiming and completing until none is left: wall time and trials per second
   for the whole crowd, and the check that every trial finished exactly once.

Run (PostgreSQL is skipped unless a URL is given or MIXSEARCH_TEST_POSTGRES_URL is set;
``eval "$(bash .ci/postgres.sh)"`` starts a throwaway server):

    python benchmarks/ledger_overhead.py --trials 500 --procs 8 --per-proc 200 [--out result.json]

The PostgreSQL database named by the URL is wiped (its mixsearch tables are dropped).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from mixsearch.candidate import Candidate, TrialResult
from mixsearch.ledger import DONE, Ledger, drop_ledger

CTX = {"s": {"snapshot": "bench", "N": 1000, "D": 1000}}


def result(x: float) -> TrialResult:
    """A result the size of a real one: 5 domain losses and a 50-point curve."""
    return TrialResult({f"d{i}": x + i for i in range(5)}, x, 6e9, 1.0, [(float(k), 3.0 - k / 50) for k in range(50)], {"n_params": 1000, "tokens": 1000})


def single_process(url: str, n: int) -> dict[str, float]:
    """Per-trial add + claim + complete round trip in one process."""
    drop_ledger(url)
    ledger = Ledger(url)
    times, per_op = [], {"add": [], "claim": [], "complete": []}
    for i in range(n):
        c = Candidate((1.0 + i, 1.0 + 2 * n - i, 3.0, 4.0, 5.0), "s")
        t0 = time.perf_counter()
        ledger.add([c], CTX, ask=i)
        t1 = time.perf_counter()
        (t,) = ledger.claim("bench:1")
        t2 = time.perf_counter()
        ledger.complete(t.trial_id, result(float(i)), "bench:1")
        t3 = time.perf_counter()
        times.append((t3 - t0) * 1e3)
        for op, dt in zip(per_op, (t1 - t0, t2 - t1, t3 - t2)):
            per_op[op].append(dt * 1e3)
    t0 = time.perf_counter()
    trials = ledger.trials()  # first read parses every row
    cold_read_ms = (time.perf_counter() - t0) * 1e3
    t0 = time.perf_counter()
    ledger.trials()  # later reads reuse parsed finished rows (what each ask does)
    read_ms = (time.perf_counter() - t0) * 1e3
    assert len(trials) == n and all(t.state == DONE for t in trials)
    ledger.dispose()
    times.sort()
    return {
        "trials": n,
        "round_trip_ms_median": statistics.median(times),
        "round_trip_ms_p95": times[int(0.95 * (n - 1))],
        "round_trip_ms_mean": statistics.fmean(times),
        "read_all_ms_warm": read_ms,
        "read_all_ms_cold": cold_read_ms,
        **{f"{op}_ms_median": statistics.median(v) for op, v in per_op.items()},
    }


CROWD = textwrap.dedent(
    """
    import json, os, sys, time
    from mixsearch.candidate import Candidate, TrialResult
    from mixsearch.ledger import Ledger
    go, url, index, per_proc = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    ledger = Ledger(url)
    name = f"bench-{index}:{os.getpid()}"
    cands = [Candidate((1.0 + index * per_proc + i, 1.0, 2.0, 3.0, 4.0), "s") for i in range(per_proc)]
    res = TrialResult({f"d{i}": 1.0 for i in range(5)}, 1.0, 6e9, 1.0, [(float(k), 1.0) for k in range(50)], {})
    open(f"{go}.ready-{os.getpid()}", "w").close()
    while not os.path.exists(go):
        time.sleep(0.002)
    t0 = time.perf_counter()
    for k in range(0, per_proc, 10):
        ledger.add(cands[k : k + 10], {"s": {"snapshot": "bench"}}, ask=index)
    done = []
    while claimed := ledger.claim(name):
        for t in claimed:
            assert ledger.complete(t.trial_id, res, name)
            done.append(t.trial_id)
    print(json.dumps({"done": done, "seconds": time.perf_counter() - t0}))
    """
)


def crowd(url: str, procs: int, per_proc: int) -> dict[str, float]:
    """``procs`` processes add ``per_proc`` trials each, then drain the ledger together."""
    drop_ledger(url)
    Ledger(url).dispose()
    with tempfile.TemporaryDirectory() as tmp:
        go = Path(tmp) / "go"
        ps = [subprocess.Popen([sys.executable, "-c", CROWD, str(go), url, str(i), str(per_proc)], stdout=subprocess.PIPE, text=True) for i in range(procs)]
        while len(list(Path(tmp).glob("go.ready-*"))) < procs:
            if any(p.poll() not in (None, 0) for p in ps):
                raise SystemExit("a crowd process failed")
            time.sleep(0.02)
        t0 = time.perf_counter()
        go.touch()
        outs = [json.loads(p.communicate()[0]) for p in ps]
        wall = time.perf_counter() - t0
    done = [tid for o in outs for tid in o["done"]]
    ledger = Ledger(url, create=False)
    trials = ledger.trials()
    ledger.dispose()
    total = procs * per_proc
    assert len(trials) == total and len(done) == len(set(done)) == total, "a trial was lost or finished twice"
    return {"procs": procs, "trials": total, "wall_s": wall, "trials_per_s": total / wall, "wall_ms_per_trial": 1e3 * wall / total, "duplicates": 0, "lost": 0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=500, help="Trials in the single-process round-trip test.")
    ap.add_argument("--procs", type=int, default=8, help="Processes in the crowd test.")
    ap.add_argument("--per-proc", type=int, default=200, help="Trials each crowd process adds.")
    ap.add_argument("--postgres", default=os.environ.get("MIXSEARCH_TEST_POSTGRES_URL"), help="PostgreSQL URL (wiped).")
    ap.add_argument("--out", type=Path, help="Also write the results as JSON here.")
    args = ap.parse_args()

    backends = {}
    with tempfile.TemporaryDirectory() as tmp:
        urls = {"sqlite": f"sqlite:///{tmp}/bench.sqlite"}
        if args.postgres:
            urls["postgresql"] = args.postgres
        for name, url in urls.items():
            one = single_process(url, args.trials)
            many = crowd(url, args.procs, args.per_proc)
            drop_ledger(url)
            backends[name] = {"single": one, "crowd": many}

    print(
        "| backend | add+claim+complete, median ms | p95 ms | add / claim / complete, median ms "
        f"| re-read {args.trials} trials, ms (first / later) | {args.procs} procs × {args.per_proc} trials: wall s | trials/s | dup / lost |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, r in backends.items():
        s, c = r["single"], r["crowd"]
        print(
            f"| {name} | {s['round_trip_ms_median']:.2f} | {s['round_trip_ms_p95']:.2f} | "
            f"{s['add_ms_median']:.2f} / {s['claim_ms_median']:.2f} / {s['complete_ms_median']:.2f} | "
            f"{s['read_all_ms_cold']:.0f} / {s['read_all_ms_warm']:.0f} | {c['wall_s']:.1f} | {c['trials_per_s']:.0f} | {c['duplicates']} / {c['lost']} |"
        )
    if args.out:
        args.out.write_text(json.dumps(backends, indent=2) + "\n")


if __name__ == "__main__":
    main()
