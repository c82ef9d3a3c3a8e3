"""The proxy world: from a study to TrialResults, batched packs, pickling, option errors."""

from __future__ import annotations

import math
import pickle

import pytest

from mixsearch.candidate import Candidate, EvaluationError, TrialResult
from mixsearch.evaluate import Evaluator, make_evaluator
from mixsearch.evaluate.proxy import ProxyEvaluator
from mixsearch.study import Budget, EvaluatorSpec, FidelityLadder, Objective, Rung, Study, StudyError
from mixsearch.studyfile import validate

RUNG = Rung("xs", n_params=50_000, tokens=4096)


def make_study(domains, cache, **options):
    opts = {"device": "cpu", "seq_len": 32, "batch_size": 8, "eval_tokens": 1024, "vocab_size": 512, "max_bytes_per_domain": 60_000, "cache_dir": str(cache)}
    opts.update(options)
    return validate(
        Study(
            name="proxy-test",
            domains=tuple(domains),
            ladder=FidelityLadder(rungs=(RUNG, Rung("s", n_params=100_000, tokens=4096)), target=Rung("big", n_params=10**8, tokens=10**10)),
            budget=Budget(max_trials=4),
            objective=Objective(domain_weights={"prose": 1.0, "math": 3.0}),
            evaluator=EvaluatorSpec("proxy", opts),
        )
    )


@pytest.fixture(scope="module")
def evaluator(tiny_domains, tmp_path_factory):
    ev = make_evaluator(make_study(tiny_domains, tmp_path_factory.mktemp("cache")))
    ev.prepare()
    return ev


def test_study_makes_a_proxy_evaluator_that_meets_the_protocol(evaluator):
    assert isinstance(evaluator, ProxyEvaluator) and isinstance(evaluator, Evaluator)
    assert evaluator.pool() is None
    assert evaluator.corpus.domains == ("prose", "code", "math")


def test_evaluate_returns_a_valid_trial_result(evaluator):
    res = evaluator.evaluate(Candidate((0.5, 0.25, 0.25), "xs", seed=1), RUNG)
    assert isinstance(res, TrialResult) and res.finite
    assert set(res.domain_losses) == {"prose", "code", "math"}
    expected = (res.domain_losses["prose"] + 3 * res.domain_losses["math"]) / 4
    assert res.objective == pytest.approx(expected)
    assert res.cost == RUNG.run_cost == 6 * 50_000 * 4096
    assert res.seconds > 0 and len(res.curve) > 1 and res.curve[-1][0] == 4096
    m = res.metrics
    assert m["n_params"] == 49_344 and m["tokens"] == 4096 and m["device"] == "cpu" and m["tokens_per_s"] > 0
    assert m["domain_tokens"]["prose"] == 2048


def test_evaluate_many_matches_evaluate_and_groups_by_rung(evaluator):
    cands = [Candidate((1.0, 0.0, 0.0), "xs", 0), Candidate((0.2, 0.3, 0.5), "s", 0), Candidate((0.3, 0.3, 0.4), "xs", 2)]
    small = Rung("s", n_params=100_000, tokens=4096)
    rungs = [RUNG, small, RUNG]
    many = evaluator.evaluate_many(cands, rungs)
    assert [r.metrics["pack_size"] for r in many] == [2, 1, 2]
    assert many[1].metrics["n_params"] > many[0].metrics["n_params"]
    one = evaluator.evaluate(cands[2], RUNG)
    for name in one.domain_losses:
        assert many[2].domain_losses[name] == pytest.approx(one.domain_losses[name], abs=1e-5)


def test_snapshot_id_is_the_corpus_hash_plus_training_settings(evaluator, tiny_domains, tmp_path):
    snap = evaluator.snapshot_id()
    assert snap.startswith(evaluator.corpus.hash + "-")
    assert snap == evaluator.snapshot_id()
    cache = evaluator.options["cache_dir"]
    other = ProxyEvaluator.from_study(make_study(tiny_domains, cache, lr=1e-3))
    assert other.snapshot_id() != snap and other.snapshot_id().split("-")[0] == evaluator.corpus.hash
    faster = ProxyEvaluator.from_study(make_study(tiny_domains, cache, compile=False, device="cpu"))
    assert faster.snapshot_id() == snap  # how fast a run goes does not change the data snapshot


def test_pickles_small_before_and_after_prepare(evaluator, tiny_domains, tmp_path):
    fresh = ProxyEvaluator.from_study(make_study(tiny_domains, tmp_path))
    assert len(pickle.dumps(fresh)) < 10_000
    blob = pickle.dumps(evaluator)
    assert len(blob) < 10_000
    copy = pickle.loads(blob)
    assert copy.snapshot_id() == evaluator.snapshot_id()


def test_a_rebuilt_corpus_that_differs_is_refused(evaluator, tmp_path):
    copy = pickle.loads(pickle.dumps(evaluator))
    copy._expected_hash = "0" * 16  # as if prepared on a machine with other data
    with pytest.raises(EvaluationError, match="differs from"):
        copy.prepare()


def test_divergence_becomes_an_evaluation_error(tiny_domains, evaluator):
    ev = ProxyEvaluator.from_study(make_study(tiny_domains, evaluator.options["cache_dir"], lr=1e4, warmup_frac=0.0, grad_clip=0.0))
    with pytest.raises(EvaluationError, match="^diverged"):
        ev.evaluate(Candidate((0.4, 0.3, 0.3), "xs"), RUNG)
    out = ev.evaluate_many([Candidate((0.4, 0.3, 0.3), "xs"), Candidate((0.3, 0.4, 0.3), "xs")], [RUNG, RUNG])
    assert all(isinstance(o, EvaluationError) for o in out)


def test_unknown_and_bad_options_name_the_field(tiny_domains, tmp_path):
    with pytest.raises(StudyError, match=r"evaluator\.options\.seqlen"):
        ProxyEvaluator.from_study(make_study(tiny_domains, tmp_path, seqlen=64))
    with pytest.raises(StudyError, match="batch_size"):
        ProxyEvaluator.from_study(make_study(tiny_domains, tmp_path, batch_size=0))


def test_candidate_rung_mismatch_is_rejected(evaluator):
    with pytest.raises(ValueError, match="weights for 3 domains"):
        evaluator.evaluate(Candidate((0.5, 0.5), "xs"), RUNG)
    with pytest.raises(ValueError, match="needs n_params and tokens"):
        evaluator.evaluate(Candidate((0.5, 0.25, 0.25), "t"), Rung("t", cost=1.0))
    assert math.isfinite(RUNG.run_cost)


def cpt_study(domains, cache, **schedule):
    from mixsearch.study import ContinualPretraining

    base = make_study(domains, cache)
    return validate(
        Study(
            name="cpt-proxy",
            domains=base.domains,
            ladder=FidelityLadder((Rung("T-1k", 50_000, 1024), Rung("T-2k", 50_000, 2048)), target=Rung("T-8k", 50_000, 8192)),
            budget=Budget(max_trials=4),
            objective=Objective(domain_weights={"math": 1.0}),
            evaluator=base.evaluator,
            schedule=ContinualPretraining("math", **({"base_tokens": 4096} | schedule)),
        )
    )


def test_continual_trials_continue_one_cached_base_and_report_its_losses(tiny_domains, tmp_path):
    study = cpt_study(tiny_domains, tmp_path / "cache")
    ev = make_evaluator(study)
    ev.prepare()
    names = study.domain_names
    cands = [Candidate(study.schedule.mixture(r, names), "T-1k", 0) for r in (0.0, 1.0)]
    rung = study.ladder.rung("T-1k")
    first, second = ev.evaluate_many(cands, [rung, rung])
    assert first.metrics["base_losses"] == second.metrics["base_losses"]
    assert first.metrics["base_seconds"] > 0 or second.metrics["base_seconds"] > 0
    assert first.metrics["continued_tokens"] == 1024 and first.metrics["base_tokens"] == 4096
    # Pure domain data lowers the domain's loss below the base model's; pure replay does not.
    assert second.domain_losses["math"] < first.domain_losses["math"]
    assert second.domain_losses["math"] < first.metrics["base_losses"]["math"]
    # A fresh evaluator (another process) finds the base on disk instead of training it again.
    again = make_evaluator(study)
    third = again.evaluate(cands[0], rung)
    assert third.metrics["base_seconds"] == 0.0 and third.domain_losses == pytest.approx(first.domain_losses, abs=1e-5)


def test_a_two_phase_candidate_trains_on_each_phase(evaluator):
    c = Candidate.phased((1.0, 0.0, 0.0), (0.0, 0.0, 1.0), 0.5, RUNG.name, 0)
    r = evaluator.evaluate(c, RUNG)
    steps = r.metrics["steps"]
    assert r.metrics["switch_step"] == 8 and r.metrics["domain_tokens"] == {"prose": 8 * 256, "code": 0, "math": (steps - 8) * 256}


def test_a_continual_study_needs_a_base_model(tiny_domains, tmp_path):
    from mixsearch.study import ContinualPretraining

    study = cpt_study(tiny_domains, tmp_path)
    with pytest.raises(StudyError) as info:
        make_evaluator(dataclasses_replace(study, schedule=ContinualPretraining("math")))
    assert info.value.field == "schedule.base_tokens"
    with pytest.raises(StudyError) as info:
        make_evaluator(dataclasses_replace(study, schedule=ContinualPretraining("math", base_checkpoint=str(tmp_path / "none.pt"))))
    assert info.value.field == "schedule.base_checkpoint" and "none.pt" in info.value.message


def dataclasses_replace(study, **changes):
    import dataclasses

    return dataclasses.replace(study, **changes)
