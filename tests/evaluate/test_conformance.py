"""One conformance suite for every world behind the Evaluator protocol (proxy, table,
synthetic, pooled synthetic, and the user's own command).

Each world is built from a study, as ``mixsearch study start`` builds it, and must keep the
same contract: prepare is idempotent; the snapshot id is a stable string that survives a
round trip through pickle (executors ship evaluators to workers); a result is finite, its
objective is the study's Objective of its own losses and metrics, and it is reproducible;
a pool, when there is one, only holds mixtures on the simplex at runnable rungs, and a
mixture a pooled world does not offer is an EvaluationError.
"""

from __future__ import annotations

import math
import pickle
import sys
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest

from mixsearch.candidate import Candidate, EvaluationError, Pool, TrialResult
from mixsearch.evaluate import Evaluator, make_evaluator
from mixsearch.evaluate.synthetic import SYNTHETIC_WORLDS
from mixsearch.study import Budget, Domain, EvaluatorSpec, FidelityLadder, Objective, Rung, Study
from mixsearch.studyfile import validate

WORLDS = ("proxy", "table", "synthetic", "synthetic-pool", "command")


@dataclass
class World:
    study: Study
    pooled: bool


def _proxy(tiny_domains, tmp_path_factory) -> World:
    opts = {"device": "cpu", "seq_len": 32, "batch_size": 8, "eval_tokens": 512, "vocab_size": 512, "max_bytes_per_domain": 60_000}
    opts["cache_dir"] = str(tmp_path_factory.mktemp("conformance-cache"))
    study = Study(
        name="conf-proxy",
        domains=tuple(tiny_domains),
        ladder=FidelityLadder((Rung("xs", n_params=20_000, tokens=1024),), Rung("big", n_params=10**8, tokens=10**10)),
        budget=Budget(max_trials=2),
        objective=Objective(domain_weights={"prose": 1.0, "math": 2.0}),
        evaluator=EvaluatorSpec("proxy", opts),
    )
    return World(study, pooled=False)


def _table(tiny_table) -> World:
    study = Study(
        name="conf-table",
        domains=tuple(Domain(d) for d in ("a", "b", "c")),
        ladder=FidelityLadder((Rung("small", cost=1.0), Rung("big", cost=8.0)), Rung("big", cost=8.0)),
        budget=Budget(max_trials=2),
        evaluator=EvaluatorSpec("table", {"path": str(tiny_table)}),
    )
    return World(study, pooled=True)


def _synthetic(pool: int | None) -> World:
    opts = {"world": "mixing-shift", "noise": 0.01, "seed": 4}
    if pool:
        opts["pool"] = pool
    study = Study(
        name="conf-synthetic",
        domains=tuple(Domain(d) for d in SYNTHETIC_WORLDS["mixing-shift"].domains),
        ladder=FidelityLadder((Rung("5M", 5_000_000, 100_000_000), Rung("50M", 50_000_000, 1_000_000_000)), Rung("1B", 10**9, 2 * 10**10)),
        budget=Budget(max_trials=2),
        evaluator=EvaluatorSpec("synthetic", opts),
    )
    return World(study, pooled=bool(pool))


# The user's own trainer: reads candidate.json, writes per-domain losses to metrics.json.
TRAINER = """
import json, sys
cand = json.load(open(sys.argv[1]))
w, n = cand["mixture"], cand["rung"]["n_params"]
losses = {d: 2.0 + (w[d] - 0.3) ** 2 + 1000.0 / n for d in w}
json.dump({"domain_losses": losses, "metrics": {"steps": 10}}, open(cand["metrics"], "w"))
"""


def _command(tmp_path_factory) -> World:
    folder = tmp_path_factory.mktemp("conformance-command")
    script = folder / "train.py"
    script.write_text(TRAINER)
    study = Study(
        name="conf-command",
        domains=tuple(Domain(d) for d in ("a", "b", "c")),
        ladder=FidelityLadder((Rung("s", 1000, 20_000),), Rung("t", 10**6, 10**8)),
        budget=Budget(max_trials=2),
        objective=Objective(domain_weights={"a": 1.0, "c": 1.0}),
        evaluator=EvaluatorSpec("command", {"command": [sys.executable, str(script), "{candidate}"], "output_dir": str(folder / "trials"), "inputs": [str(script)], "timeout": 60}),
    )
    return World(study, pooled=False)


@pytest.fixture(params=WORLDS)
def world(request, tiny_domains, tiny_table, tmp_path_factory) -> World:
    build: dict[str, Callable[[], World]] = {
        "proxy": lambda: _proxy(tiny_domains, tmp_path_factory),
        "table": lambda: _table(tiny_table),
        "synthetic": lambda: _synthetic(None),
        "synthetic-pool": lambda: _synthetic(12),
        "command": lambda: _command(tmp_path_factory),
    }
    return build[request.param]()


def _candidate(ev: Evaluator, study: Study) -> tuple[Candidate, Rung]:
    pool = ev.pool()
    if pool is not None:
        return Candidate(tuple(pool.weights[0]), pool.rungs[0], study.seed), study.ladder.rung(pool.rungs[0])
    k = len(study.domains)
    w = np.random.default_rng(0).dirichlet(np.ones(k))
    rung = study.ladder.rungs[0]
    return Candidate(tuple(w), rung.name, study.seed), rung


def test_a_study_builds_an_evaluator_that_meets_the_protocol(world):
    study = validate(world.study)
    ev = make_evaluator(study)
    assert isinstance(ev, Evaluator)
    ev.prepare()
    ev.prepare()  # idempotent
    snap = ev.snapshot_id()
    assert isinstance(snap, str) and snap and snap == ev.snapshot_id()
    assert make_evaluator(study).snapshot_id() == snap  # a fresh build agrees: results are comparable


def test_results_are_finite_reproducible_and_scored_by_the_study_objective(world):
    ev = make_evaluator(world.study)
    ev.prepare()
    cand, rung = _candidate(ev, world.study)
    res = ev.evaluate(cand, rung)
    assert isinstance(res, TrialResult) and res.finite
    assert res.objective == pytest.approx(world.study.objective.value(res.domain_losses, res.metrics))
    assert math.isfinite(res.cost) and res.cost > 0 and res.seconds >= 0
    again = ev.evaluate(cand, rung)
    assert again.objective == pytest.approx(res.objective, abs=1e-6)


def test_an_evaluator_survives_pickling(world):
    ev = make_evaluator(world.study)
    ev.prepare()
    cand, rung = _candidate(ev, world.study)
    before = ev.evaluate(cand, rung)
    clone = pickle.loads(pickle.dumps(ev))
    assert clone.snapshot_id() == ev.snapshot_id()
    assert clone.evaluate(cand, rung).objective == pytest.approx(before.objective, abs=1e-6)


def test_a_pool_offers_simplex_mixtures_at_runnable_rungs_and_nothing_else(world):
    ev = make_evaluator(world.study)
    ev.prepare()
    pool = ev.pool()
    assert (pool is not None) == world.pooled
    if pool is None:
        return
    assert isinstance(pool, Pool)
    k = len(world.study.domains)
    assert pool.weights.ndim == 2 and pool.weights.shape[1] == k and len(pool.rungs) == len(pool.weights)
    assert np.allclose(pool.weights.sum(axis=1), 1.0, atol=1e-6) and (pool.weights >= 0).all()
    assert set(pool.rungs) <= set(world.study.ladder.names)
    off = np.full(k, 1.0 / k)
    off[0] += 0.01234
    off /= off.sum()
    rung = world.study.ladder.rung(pool.rungs[0])
    with pytest.raises(EvaluationError):
        ev.evaluate(Candidate(tuple(off), rung.name, 0), rung)
