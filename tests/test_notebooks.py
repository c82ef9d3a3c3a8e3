"""The notebooks are committed executed, and still run, in quick mode, so they cannot rot.

Each notebook reads ``MIXSEARCH_NOTEBOOK_QUICK=1`` to shrink its study or benchmark to
well under a minute on a CPU; nothing is downloaded (quick mode writes its own text and
tables to a temporary folder). The outputs committed in the repo are quick mode's: small,
free of errors and of the executing machine's paths. The tests re-execute a copy in memory
and never write it back.
"""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert [p.name for p in NOTEBOOKS] == ["01_quickstart.ipynb", "02_fit_laws.ipynb", "03_compare_proposers.ipynb", "04_continual_pretraining.ipynb"]


# Absolute paths of the machine that executed a notebook: they mean nothing to a reader.
MACHINE_PATHS = ("/tmp/", "/work/", "/root/", "/home/", "/Users/", "/var/folders/")
MAX_BYTES = 800_000


def _output_text(output) -> str:
    """Every text an output shows: streams, tracebacks and the text-like data."""
    parts = [output.get("text", ""), output.get("evalue", ""), *output.get("traceback", [])]
    for mime, value in output.get("data", {}).items():
        if mime.startswith("text/") or mime.endswith("json"):
            parts.append(value if isinstance(value, str) else "".join(value) if isinstance(value, list) else str(value))
    return "\n".join(p if isinstance(p, str) else "".join(p) for p in parts)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_committed_executed(path):
    """The repo's notebooks carry their (quick-mode) outputs, so a reader sees results without running them."""
    size = path.stat().st_size
    assert size < MAX_BYTES, f"{path.name} is {size / 1e3:.0f} kB; keep figures small (dpi <= 80)"
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{path.name} has no code cells"
    for i, cell in enumerate(code):
        assert cell.execution_count is not None, f"{path.name}: code cell {i} was not executed; execute the notebook before committing"
        for output in cell.outputs:
            assert output.output_type != "error", f"{path.name}: code cell {i} raised {output.get('ename')}: {output.get('evalue')}"
            text = _output_text(output)
            for machine in MACHINE_PATHS:
                assert machine not in text, f"{path.name}: code cell {i} shows a machine path ({machine!r}); print a relative path or a file name"
    images = [o for c in code for o in c.outputs if "image/png" in o.get("data", {})]
    assert images, f"{path.name} was committed without a figure"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_in_quick_mode(path, monkeypatch, tmp_path):
    monkeypatch.setenv("MIXSEARCH_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("MIXSEARCH_CACHE", str(tmp_path / "cache"))
    # One thread per kernel: the proxies and GPs here are tiny, and the test machine is shared.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    committed = path.read_bytes()
    before = sorted(p.name for p in path.parent.iterdir())
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert images, f"{path.name} drew no figure"
    # The executed copy lives only in memory: the committed file and its folder are untouched.
    assert path.read_bytes() == committed, f"{path.name} was rewritten by its own run"
    assert sorted(p.name for p in path.parent.iterdir()) == before, "a notebook wrote into notebooks/"
