"""The CLI end to end on a reduced proxy study: start, status, export, resume.

Real text (three small folders of .txt files written here), a real BPE tokenizer, real
proxy GPTs on the CPU, the SQLite ledger and the export file: the quickstart's path,
scaled down to seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mixsearch.cli import app
from mixsearch.ledger import Ledger

STUDY = """
from mixsearch import Budget, Domain, EvaluatorSpec, FidelityLadder, ProposerSpec, Rung, Study

study = Study(
    name="cli-e2e",
    domains=(Domain("prose", "text/prose"), Domain("code", "text/code/*.txt"), Domain("sums", "text/sums")),
    ladder=FidelityLadder(
        rungs=(Rung("xs", n_params=30_000, tokens=6_000), Rung("s", n_params=80_000, tokens=6_000)),
        target=Rung("big", n_params=10**8, tokens=10**10),
    ),
    budget=Budget(max_trials=6),
    proposer=ProposerSpec("mfbo", batch_size=2, options={"raw_samples": 32, "num_restarts": 1, "maxiter": 10}),
    evaluator=EvaluatorSpec(
        "proxy",
        {"device": "cpu", "seq_len": 32, "batch_size": 8, "eval_tokens": 1024, "vocab_size": 384,
         "max_bytes_per_domain": 40_000, "cache_dir": "cache"},
    ),
    seed=3,
)
"""


def write_text(root: Path) -> None:
    rng = np.random.default_rng(0)
    words = "the river city king music water land school life family house church light north south".split()
    for name in ("prose", "code", "sums"):
        (root / name).mkdir(parents=True)
    for i in range(60):
        prose = ". ".join(" ".join(rng.choice(words, size=9)).capitalize() for _ in range(6)) + "."
        (root / "prose" / f"{i}.txt").write_text(prose)
        a, b = rng.integers(1, 9, size=2)
        (root / "code" / f"{i}.txt").write_text("\n".join(f"def f{i}_{j}(x):\n    return x * {a} + {b + j}\n" for j in range(6)))
        (root / "sums" / f"{i}.txt").write_text("\n".join(f"{x} + {y} = {x + y}" for x, y in rng.integers(0, 99, size=(12, 2))))


def invoke(*args: str) -> str:
    res = CliRunner().invoke(app, list(args))
    assert res.exit_code == 0, f"{args}: {res.output}{res.stderr if res.stderr_bytes else ''}"
    return res.stdout


@pytest.fixture
def study_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    write_text(tmp_path / "text")
    (tmp_path / "study.py").write_text(STUDY)
    return tmp_path


def test_start_status_export_resume_on_a_reduced_proxy_study(study_dir: Path):
    out = invoke("study", "start", "study.py", "--quiet")
    assert "done 6" in out and "recommended mixture" in out

    # Every trial trained a real proxy: losses fall with training, per-domain losses recorded.
    led = Ledger(f"sqlite:///{study_dir / 'runs' / 'cli-e2e' / 'ledger.sqlite'}", create=False)
    try:
        trials = led.trials()
        assert len(trials) == 6 and all(t.state == "done" for t in trials)
        assert {t.candidate.rung for t in trials} == {"xs", "s"}
        for t in trials:
            losses = [p[-1] for p in t.curve]
            assert len(losses) >= 2 and losses[-1] < losses[0]
    finally:
        led.dispose()

    rows = json.loads(invoke("study", "status", "cli-e2e", "--json"))
    assert len(rows) == 6 and {r["state"] for r in rows} == {"done"}
    assert all(np.isfinite(r["loss_prose"]) and r["cost"] > 0 for r in rows)

    (study_dir / "fits" / "cli-e2e.json").unlink()
    invoke("study", "export", "cli-e2e")
    doc = json.loads((study_dir / "fits" / "cli-e2e.json").read_text())
    assert doc["study"]["name"] == "cli-e2e" and doc["counts"] == {"done": 6}
    assert set(doc["best_per_rung"]) == {"xs", "s"} and len(doc["trials"]) == 6
    assert abs(sum(doc["recommendation"]["weights"].values()) - 1) < 1e-6

    # The budget is spent: resuming runs nothing again.
    out = invoke("study", "resume", "cli-e2e", "--quiet", "--no-export")
    assert "done 6" in out
    assert len(json.loads(invoke("study", "status", "cli-e2e", "--json"))) == 6
