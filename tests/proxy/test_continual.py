"""Base checkpoints: trained once, cached on disk by what fixes them, shared by processes; a user's checkpoint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mixsearch.proxy.continual import base_key, base_model, load_checkpoint, save_checkpoint
from mixsearch.proxy.model import size_config
from mixsearch.proxy.train import TrainConfig

TRAIN = TrainConfig(seq_len=32, batch_size=8, eval_tokens=1024)
MIX = [0.5, 0.5, 0.0]


def test_a_base_model_is_trained_once_and_then_found(tiny_corpus):
    first = base_model(tiny_corpus, 50_000, MIX, 4096, TRAIN, seed=0, device="cpu")
    assert first.meta["seconds"] > 0 and Path(first.meta["path"]).is_file()
    again = base_model(tiny_corpus, 50_000, MIX, 4096, TRAIN, seed=0, device="cpu")
    assert again.meta["seconds"] == 0.0 and again.meta["key"] == first.meta["key"]
    assert all(torch.equal(first.state[k], again.state[k]) for k in first.state)
    assert again.losses == pytest.approx(first.losses)
    # Anything that fixes its weights is in its key.
    cfg = size_config(50_000, tiny_corpus.vocab_size, 32)
    keys = {
        base_key(tiny_corpus, cfg, MIX, 4096, TRAIN, 0),
        base_key(tiny_corpus, cfg, [0.4, 0.6, 0.0], 4096, TRAIN, 0),
        base_key(tiny_corpus, cfg, MIX, 8192, TRAIN, 0),
        base_key(tiny_corpus, cfg, MIX, 4096, TrainConfig(seq_len=32, batch_size=8, eval_tokens=1024, lr=1e-3), 0),
        base_key(tiny_corpus, cfg, MIX, 4096, TRAIN, 1),
    }
    assert len(keys) == 5
    assert base_key(tiny_corpus, cfg, MIX, 4096, TrainConfig(seq_len=32, batch_size=8, eval_tokens=1024, compile=False), 0) in keys


def test_two_processes_asking_at_once_train_it_once(tiny_corpus):
    code = (
        "import sys, json; from mixsearch.proxy.corpus import Corpus; from mixsearch.proxy.continual import base_model; "
        "from mixsearch.proxy.train import TrainConfig; import torch; torch.set_num_threads(1); "
        f"b = base_model(Corpus.load(sys.argv[1]), 50_000, {MIX!r}, 6144, TrainConfig(seq_len=32, batch_size=8, eval_tokens=1024), seed=5, device='cpu'); "
        "print(json.dumps(b.meta['seconds'] > 0))"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tiny_corpus.path)], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    trained = sorted(p.communicate(timeout=300)[0].strip() for p in procs)
    assert trained == ["false", "true"]  # one trained it, the other waited and loaded it


def test_a_users_checkpoint_is_read_and_checked_against_the_corpus(tiny_corpus, tmp_path):
    base = base_model(tiny_corpus, 50_000, MIX, 4096, TRAIN, seed=0, device="cpu")
    path = save_checkpoint(tmp_path / "mine.pt", base.config, base.state, base.losses, {"corpus": tiny_corpus.hash})
    got = load_checkpoint(path, tiny_corpus, "cpu", 32, 1024)
    assert got.n_params == base.n_params and got.losses == pytest.approx(base.losses, abs=1e-5)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="schedule.base_checkpoint: .*junk.pt"):
        load_checkpoint(tmp_path / "junk.pt", tiny_corpus)
    other = save_checkpoint(tmp_path / "other.pt", base.config, base.state, base.losses, {"corpus": "elsewhere"})
    with pytest.raises(ValueError, match="trained on corpus elsewhere"):
        load_checkpoint(other, tiny_corpus)
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically: no temporary file left
