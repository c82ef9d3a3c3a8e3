"""Tiny corpora tests write themselves: three domains in three file formats.

The domains differ in kind (prose, code, arithmetic) so a mixture visibly changes what a
proxy learns, and they are small enough that building a corpus takes well under a
second and a proxy trains in seconds on a CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mixsearch.study import Domain

WORDS = (
    "the a of and to in is was for on that with as by at from his her it an were are which this be or "
    "has had not but what all when there can one more also new first time people year city river "
    "king war music water land state world school life family house village church law light small "
    "large north south early later known called found made used built became began during between"
).split()


def prose_docs(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, len(WORDS) + 1)
    p /= p.sum()
    docs = []
    for _ in range(n):
        sentences = []
        for _ in range(rng.integers(3, 8)):
            words = rng.choice(WORDS, size=rng.integers(5, 14), p=p)
            sentences.append(" ".join(words).capitalize() + ".")
        docs.append(" ".join(sentences))
    return docs


def code_docs(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    docs = []
    for i in range(n):
        lines = []
        for j in range(rng.integers(2, 5)):
            a, b = rng.integers(1, 9, size=2)
            lines.append(f"def f_{i}_{j}(x, y):\n    z = x * {a} + y\n    return z - {b}\n")
        docs.append("\n".join(lines))
    return docs


def math_docs(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    docs = []
    for _ in range(n):
        rows = []
        for _ in range(rng.integers(4, 9)):
            a, b = rng.integers(0, 100, size=2)
            rows.append(f"{a} + {b} = {a + b}")
        docs.append("\n".join(rows))
    return docs


def write_domains(root: Path, scale: int = 1) -> list[Domain]:
    """Prose as .txt files, code as .jsonl, arithmetic as .parquet under ``root``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (root / "prose").mkdir(parents=True, exist_ok=True)
    for i, doc in enumerate(prose_docs(120 * scale, 1)):
        (root / "prose" / f"doc{i:03d}.txt").write_text(doc)
    (root / "code").mkdir(exist_ok=True)
    docs = code_docs(150 * scale, 2)
    for part in range(2):
        with (root / "code" / f"part{part}.jsonl").open("w") as fh:
            for doc in docs[part::2]:
                fh.write(json.dumps({"text": doc, "id": 1}) + "\n")
    (root / "math").mkdir(exist_ok=True)
    pq.write_table(pa.table({"text": math_docs(300 * scale, 3)}), root / "math" / "rows.parquet")
    return [
        Domain("prose", str(root / "prose")),
        Domain("code", str(root / "code" / "*.jsonl")),
        Domain("math", str(root / "math" / "rows.parquet")),
    ]
