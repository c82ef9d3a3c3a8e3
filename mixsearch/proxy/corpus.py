"""Corpus: domain sources → byte-level BPE tokenizer → per-domain token files.

A corpus is a folder in the cache::

    <cache>/corpora/<key>/
        manifest.json           domains, token counts, sources, licences, tokenizer settings, hash
        tokenizer.json          HF ``tokenizers`` byte-level BPE
        <domain>.train.bin      uint16 token ids, documents separated by <|endoftext|>
        <domain>.val.bin        uint16 held-out tokens (whole documents never seen in training)

``key`` hashes the build *inputs* (domain specs, source fingerprints, settings), so a
second build with the same inputs finds the folder and returns at once. The corpus
*hash* hashes the *content* (tokenizer and token files); it is the data snapshot id that
goes into every trial's identity. A build is written to a temporary folder and renamed
into place, so a killed build never leaves a half corpus.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from mixsearch.proxy import sources
from mixsearch.study import Domain

FORMAT_VERSION = 1
EOT = "<|endoftext|>"
DEFAULT_VOCAB_SIZE = 8192
DEFAULT_MAX_BYTES_PER_DOMAIN = 2_000_000
DEFAULT_VAL_FRACTION = 0.1
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

Progress = Callable[[str], None]


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """Where corpora and wheels are kept: ``cache_dir``, ``$MIXSEARCH_CACHE`` or the user cache."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("MIXSEARCH_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("mixsearch"))


@dataclass(frozen=True)
class Corpus:
    """A built corpus on disk. Holds only its path and manifest, so it pickles cheaply.

    Attributes:
        path: The corpus folder.
        manifest: The parsed ``manifest.json``.
    """

    path: Path
    manifest: dict[str, Any] = field(repr=False, compare=False)

    @staticmethod
    def load(path: str | Path) -> "Corpus":
        """Open the corpus in ``path``.

        Raises:
            ValueError: the folder holds no readable corpus manifest.
        """
        p = Path(path)
        try:
            manifest = json.loads((p / "manifest.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"corpus: no readable manifest.json in {p} ({exc})") from None
        return Corpus(p, manifest)

    @property
    def hash(self) -> str:
        """Content hash: the data snapshot id of every trial trained on this corpus."""
        return str(self.manifest["hash"])

    @property
    def domains(self) -> tuple[str, ...]:
        """Domain names in build order."""
        return tuple(self.manifest["domains"])

    @property
    def vocab_size(self) -> int:
        """Vocabulary size of the trained tokenizer (may be below the requested size)."""
        return int(self.manifest["tokenizer"]["vocab_size"])

    @property
    def eot_id(self) -> int:
        """Id of the ``<|endoftext|>`` token separating documents."""
        return int(self.manifest["tokenizer"]["eot_id"])

    def _tokens(self, name: str, split: str) -> np.ndarray:
        if name not in self.manifest["domains"]:
            raise KeyError(f"corpus has no domain {name!r}; it has {', '.join(self.domains)}")
        return np.memmap(self.path / f"{name}.{split}.bin", dtype=np.uint16, mode="r")

    def train_tokens(self, name: str) -> np.ndarray:
        """Training tokens of domain ``name``: a read-only ``np.memmap`` of dtype uint16, shape ``[n]``."""
        return self._tokens(name, "train")

    def val_tokens(self, name: str) -> np.ndarray:
        """Held-out validation tokens of domain ``name`` (uint16 memmap, shape ``[n]``)."""
        return self._tokens(name, "val")

    def tokenizer(self) -> Any:
        """The corpus's ``tokenizers.Tokenizer``."""
        from tokenizers import Tokenizer

        return Tokenizer.from_file(str(self.path / "tokenizer.json"))

    def summary(self) -> dict[str, Any]:
        """A short table-ready description: hash, path and per-domain counts and sources."""
        return {
            "hash": self.hash,
            "path": str(self.path),
            "vocab_size": self.vocab_size,
            "domains": {
                name: {k: d[k] for k in ("train_tokens", "val_tokens", "bytes", "source", "licence")}
                for name, d in self.manifest["domains"].items()
            },
        }


def build_corpus(
    domains: Sequence[Domain],
    cache_dir: str | Path | None = None,
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    max_bytes_per_domain: int = DEFAULT_MAX_BYTES_PER_DOMAIN,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    progress: Progress | None = None,
) -> Corpus:
    """Build (or find cached) the corpus of ``domains``.

    Args:
        domains: Domains with a ``source`` (``demo:<name>``, folder, file or glob).
        cache_dir: Cache root; default ``$MIXSEARCH_CACHE`` or the user cache dir.
        vocab_size: BPE vocabulary size, 257 … 65536 (token files are uint16).
        max_bytes_per_domain: UTF-8 bytes of text kept per domain (the same documents
            every time: sources yield them in a fixed order).
        val_fraction: Share of each domain's bytes held out for validation, taken as
            whole documents in a fixed shuffled order (the last one cut to fit).
        progress: Called with a short message at each build stage.

    Returns:
        The corpus.

    Raises:
        ValueError: bad arguments or sources, naming the field or domain.
    """
    say = progress or (lambda _msg: None)
    _check_args(domains, vocab_size, max_bytes_per_domain, val_fraction)
    root = cache_root(cache_dir)
    infos = {d.name: _describe(i, d) for i, d in enumerate(domains)}
    spec = {
        "format": FORMAT_VERSION,
        "domains": [[d.name, d.source, infos[d.name].fingerprint] for d in domains],
        "vocab_size": vocab_size,
        "max_bytes_per_domain": max_bytes_per_domain,
        "val_fraction": val_fraction,
    }
    key = _sha(json.dumps(spec, sort_keys=True, default=str).encode())
    final = root / "corpora" / key
    if (final / "manifest.json").is_file():
        return Corpus.load(final)

    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".build-{key}-", dir=final.parent))
    try:
        manifest = _build(domains, infos, root, tmp, vocab_size, max_bytes_per_domain, val_fraction, say)
        manifest["key"] = key
        manifest["spec"] = spec
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
        try:
            os.rename(tmp, final)
        except OSError:
            # Another process finished the same build first; its corpus is identical.
            if not (final / "manifest.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    corpus = Corpus.load(final)
    say(f"corpus {corpus.hash} ready at {final}")
    return corpus


def build_demo_corpus(
    cache_dir: str | Path | None = None,
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    max_bytes_per_domain: int = DEFAULT_MAX_BYTES_PER_DOMAIN,
    progress: Progress | None = None,
) -> Corpus:
    """Build (or find cached) the corpus of all five demo domains (``mixsearch data demo``)."""
    domains = [Domain(name, f"demo:{name}") for name in sources.DEMO_DOMAINS]
    return build_corpus(domains, cache_dir, vocab_size, max_bytes_per_domain, progress=progress)


def _describe(i: int, d: Domain) -> sources.SourceInfo:
    """A source's provenance; an error names the domain's field (``domains[i].source``)."""
    try:
        return sources.describe(str(d.source))
    except ValueError as exc:
        raise ValueError(f"domains[{i}].source: domain {d.name!r}: {_strip_field(exc)}") from None


def _strip_field(exc: BaseException) -> str:
    """An inner error's text without its own ``source:`` prefix (the caller names the field)."""
    return str(exc).removeprefix("source: ")


def _check_args(domains: Sequence[Domain], vocab_size: int, max_bytes: int, val_fraction: float) -> None:
    if not domains:
        raise ValueError("domains: need at least one domain")
    seen: set[str] = set()
    for i, d in enumerate(domains):
        if not isinstance(d, Domain):
            raise ValueError(f"domains[{i}]: expected a Domain, got {type(d).__name__}")
        if not _NAME_RE.match(d.name):
            raise ValueError(f"domains[{i}].name: invalid domain name {d.name!r}")
        if d.name in seen:
            raise ValueError(f"domains[{i}].name: duplicate domain {d.name!r}")
        seen.add(d.name)
        if not d.source:
            raise ValueError(f"domains[{i}].source: domain {d.name!r} has no source")
    if not isinstance(vocab_size, int) or not 257 <= vocab_size <= 65536:
        raise ValueError(f"vocab_size: must be an integer in [257, 65536] (uint16 tokens), got {vocab_size!r}")
    if not isinstance(max_bytes, int) or max_bytes < 1000:
        raise ValueError(f"max_bytes_per_domain: must be an integer >= 1000, got {max_bytes!r}")
    if not 0.0 < val_fraction < 0.5:
        raise ValueError(f"val_fraction: must be in (0, 0.5), got {val_fraction!r}")


def _build(
    domains: Sequence[Domain],
    infos: dict[str, sources.SourceInfo],
    root: Path,
    out: Path,
    vocab_size: int,
    max_bytes: int,
    val_fraction: float,
    say: Progress,
) -> dict[str, Any]:
    t0 = time.perf_counter()
    splits: dict[str, tuple[list[str], list[str]]] = {}
    for i, d in enumerate(domains):
        say(f"reading {d.name} ({d.source})")
        try:
            docs = sources.take_bytes(sources.documents(str(d.source), root), max_bytes)
        except (ValueError, RuntimeError, OSError) as exc:
            raise ValueError(f"domains[{i}].source: domain {d.name!r} ({d.source}): {_strip_field(exc)}") from None
        if not docs:
            raise ValueError(f"domains[{i}].source: domain {d.name!r} ({d.source}): no text found")
        splits[d.name] = split_documents(docs, val_fraction, f"split:{d.name}")
    t_read = time.perf_counter()

    say(f"training a byte-level BPE tokenizer (vocab {vocab_size}) on {len(domains)} domains")
    tok = train_tokenizer((doc for train, _ in splits.values() for doc in train), vocab_size)
    tok.save(str(out / "tokenizer.json"))
    t_tok = time.perf_counter()

    eot = tok.token_to_id(EOT)
    entries: dict[str, dict[str, Any]] = {}
    digest = hashlib.sha256((out / "tokenizer.json").read_bytes())
    for d in domains:
        say(f"tokenizing {d.name}")
        train_docs, val_docs = splits[d.name]
        entry: dict[str, Any] = {"documents": len(train_docs) + len(val_docs)}
        entry["bytes"] = sum(len(x.encode("utf-8")) for x in train_docs + val_docs)
        for split, docs in (("train", train_docs), ("val", val_docs)):
            ids = encode_documents(tok, docs, eot)
            path = out / f"{d.name}.{split}.bin"
            ids.tofile(path)
            entry[f"{split}_tokens"] = int(ids.size)
            digest.update(f"\0{d.name}.{split}\0".encode())
            digest.update(ids.tobytes())
        info = infos[d.name]
        entry.update(source=info.source, description=info.description, licence=info.licence, url=info.url)
        entries[d.name] = entry
    t_enc = time.perf_counter()
    return {
        "format": FORMAT_VERSION,
        "hash": digest.hexdigest()[:16],
        "domains": entries,
        "tokenizer": {
            "kind": "byte-level BPE (HF tokenizers)",
            "vocab_size": tok.get_vocab_size(),
            "requested_vocab_size": vocab_size,
            "eot": EOT,
            "eot_id": eot,
            "min_frequency": 2,
        },
        "max_bytes_per_domain": max_bytes,
        "val_fraction": val_fraction,
        "build_seconds": {"read": t_read - t0, "tokenizer": t_tok - t_read, "encode": t_enc - t_tok},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def split_documents(docs: list[str], val_fraction: float, label: str) -> tuple[list[str], list[str]]:
    """Hold out ``val_fraction`` of the bytes as validation documents.

    Documents are taken in a fixed shuffled order (seeded by ``label``) until the
    held-out share is reached; the document that crosses the line is cut in two, so
    a domain made of a few large documents still gets a validation split and no text
    is in both.

    Returns:
        ``(train_docs, val_docs)``.
    """
    order = sources.shuffled(list(docs), label)
    total = sum(len(d.encode("utf-8")) for d in order)
    need = max(1, int(total * val_fraction))
    val: list[str] = []
    train: list[str] = []
    for doc in order:
        size = len(doc.encode("utf-8"))
        if need <= 0:
            train.append(doc)
        elif size <= need:
            val.append(doc)
            need -= size
        else:
            raw = doc.encode("utf-8")
            val.append(raw[:need].decode("utf-8", errors="ignore"))
            train.append(raw[need:].decode("utf-8", errors="ignore"))
            need = 0
    return [d for d in train if d], [d for d in val if d]


def train_tokenizer(texts: Any, vocab_size: int) -> Any:
    """Train a byte-level BPE on an iterable of strings.

    Byte-level means every string round-trips (``decode(encode(s)) == s``) and no
    token is unknown. ``<|endoftext|>`` is the one special token.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def encode_documents(tok: Any, docs: list[str], eot: int) -> np.ndarray:
    """Token ids of ``docs``, each followed by ``eot``: uint16 array ``[n]``."""
    encode = getattr(tok, "encode_batch_fast", tok.encode_batch)
    parts = [np.asarray(e.ids, dtype=np.uint16) for e in encode(docs)]
    out = []
    sep = np.array([eot], dtype=np.uint16)
    for p in parts:
        out.extend((p, sep))
    return np.concatenate(out) if out else np.zeros(0, dtype=np.uint16)


def _sha(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()[:16]
