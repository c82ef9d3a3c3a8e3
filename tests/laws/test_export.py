"""Law files: saved ``mixsearch.law/v1`` files from before the joint law keep loading and predicting the same."""

from __future__ import annotations

import json

import numpy as np

from mixsearch.laws import MixingLaw, load, load_all

from .conftest import FIXTURES


def test_old_law_files_load_and_predict_the_same() -> None:
    expected = json.loads((FIXTURES / "predictions_v1.json").read_text())
    for fname, rows in expected.items():
        laws = load_all(FIXTURES / fname)
        assert [law.name for law in laws] == [r["name"] for r in rows]
        for law, row in zip(laws, rows):
            p = law.predict(**row["inputs"])
            q = law.predict(observation=True, **row["inputs"])
            for got, want in ((p.value, row["value"]), (p.lower, row["lower"]), (p.upper, row["upper"]), (q.lower, row["observation_lower"]), (q.upper, row["observation_upper"])):
                assert (got is None) == (want is None), law.name
                if want is not None:
                    assert np.allclose(got, want, rtol=1e-12, atol=0), law.name
            assert np.asarray(p.extrapolated).tolist() == row["extrapolated"], law.name
    assert isinstance(load(FIXTURES / "mixing_v1.json"), MixingLaw)
