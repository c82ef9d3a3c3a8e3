"""Every study file in studies/ loads, validates and runs nothing on import."""

from pathlib import Path

import pytest

from mixsearch.studyfile import load_study

STUDIES = sorted((Path(__file__).resolve().parents[1] / "studies").glob("*.py"))


def test_there_are_studies():
    assert STUDIES


@pytest.mark.parametrize("path", STUDIES, ids=[p.stem for p in STUDIES])
def test_study_file_loads(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # importing must write nothing
    study = load_study(path)
    assert study.name
    assert list(tmp_path.iterdir()) == []
