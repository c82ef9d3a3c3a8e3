"""Laws as JSON (schema ``mixsearch.law/v1``): write, validate, load.

A law file is one law document, or ``{"schema": "mixsearch.law/v1", "laws": [...]}``
holding several. :func:`load` also reads a study export (``fits/<study>.json``),
whose ``"laws"`` list holds law documents. Loading checks the schema version first
(a file from a newer mixsearch gets a clear error), then validates against the JSON
Schema shipped in the package (``law.schema.json``).
"""

from __future__ import annotations

import json
import math
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from mixsearch.jsonfile import write_json
from mixsearch.laws.law import Law

SCHEMA_ID = "mixsearch.law/v1"
SCHEMA_VERSION = 1
_SCHEMA_RE = re.compile(r"^mixsearch\.law/v(\d+)$")


def _law_classes() -> dict[str, type[Law]]:
    # Imported here: each law module imports law.py, and export.py must not import them at load time.
    from mixsearch.laws.asymptote import AsymptoteLaw
    from mixsearch.laws.chinchilla import ChinchillaLaw
    from mixsearch.laws.cmr import CMRLaw
    from mixsearch.laws.joint_law import JointLaw
    from mixsearch.laws.mixing import MixingLaw

    return {cls.kind: cls for cls in (ChinchillaLaw, MixingLaw, CMRLaw, AsymptoteLaw, JointLaw)}


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The JSON Schema of law files, as shipped in the package."""
    text = resources.files("mixsearch.laws").joinpath("law.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


def _plain(v: Any) -> Any:
    """JSON-ready: numpy scalars and arrays to Python, non-finite floats to None."""
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, np.ndarray):
        return _plain(v.tolist())
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return f if math.isfinite(f) else None
    return v


def law_to_dict(law: Law) -> dict[str, Any]:
    """A law as a ``mixsearch.law/v1`` document (a JSON-ready dict)."""
    if not isinstance(law, Law):
        raise ValueError(f"law_to_dict: expected a fitted Law, got {type(law).__name__}")
    names = law.param_names
    if law.samples is not None and len(law.samples):
        uncertainty: dict[str, Any] = {"method": "bootstrap", "samples": np.asarray(law.samples, dtype=float)}
    elif law.covariance is not None:
        uncertainty = {"method": "covariance", "covariance": np.asarray(law.covariance, dtype=float)}
    else:
        uncertainty = {"method": "none"}
    uncertainty["parameter_names"] = names
    uncertainty["n_resamples"] = int(law.diagnostics.get("bootstrap_resamples") or 0)
    uncertainty["n_failed"] = int(law.diagnostics.get("bootstrap_failed") or 0)
    if uncertainty["method"] == "bootstrap":
        cov = law.parameter_covariance()
        uncertainty["covariance"] = None if cov is None else cov
    s = law.settings
    doc = {
        "schema": SCHEMA_ID,
        "kind": law.kind,
        "form": law.form,
        "name": law.name,
        "formula": law.formula,
        "parameters": {k: float(v) for k, v in law.params.items()},
        "intervals": {k: {"lower": lo, "upper": hi} for k, (lo, hi) in law.intervals.items() if math.isfinite(lo) and math.isfinite(hi)},
        "level": law.level,
        "uncertainty": uncertainty,
        "inputs": law.inputs,
        "output": law.output,
        "data_range": {k: [float(v[0]), float(v[1])] for k, v in law.data_range.items()},
        "objective": {
            "loss": s.get("loss", "huber"),
            "huber_delta": s.get("huber_delta"),
            "space": s.get("space"),
            "value": law.diagnostics.get("objective"),
            "n_points": int(law.diagnostics.get("n_points") or 0),
        },
        "optimiser": {
            "method": s.get("optimiser", "L-BFGS-B"),
            **{k: s[k] for k in ("n_starts", "ftol", "gtol", "maxiter", "bootstrap", "bootstrap_starts", "cv_folds", "seed") if k in s},
        },
        "diagnostics": law.diagnostics,
        "provenance": law.provenance,
        "extra": law.extra,
        "data": law.data,
    }
    return _plain(doc)


def check_version(doc: Any, where: str) -> None:
    """Raise a one-line ValueError unless ``doc["schema"]`` is ``mixsearch.law/v1``."""
    if not isinstance(doc, Mapping):
        raise ValueError(f"{where}: a law must be a JSON object, got {type(doc).__name__}")
    tag = doc.get("schema")
    if tag is None:
        raise ValueError(f"{where}: missing 'schema' (expected {SCHEMA_ID!r})")
    m = _SCHEMA_RE.match(str(tag))
    if m is None:
        raise ValueError(f"{where}: schema {tag!r} is not a mixsearch law (expected {SCHEMA_ID!r})")
    if int(m.group(1)) > SCHEMA_VERSION:
        raise ValueError(f"{where}: schema {tag!r} was written by a newer mixsearch; this version reads {SCHEMA_ID!r} — upgrade mixsearch")
    if int(m.group(1)) < 1:
        raise ValueError(f"{where}: unknown schema version {tag!r}")


def validate_law_dict(doc: Any, where: str = "law") -> None:
    """Check a law document: version first, then the JSON Schema; one-line ValueError naming the field."""
    import jsonschema

    check_version(doc, where)
    validator = jsonschema.Draft202012Validator(_law_schema())
    errors = sorted(validator.iter_errors(doc), key=lambda e: (len(list(e.absolute_path)), str(e.absolute_path)))
    if errors:
        e = errors[0]
        path = ".".join(str(p) for p in e.absolute_path) or "(top level)"
        raise ValueError(f"{where}: {path}: {e.message}")


@lru_cache(maxsize=1)
def _law_schema() -> dict[str, Any]:
    # One law document: the root's definitions, entered at "law" (its "#/$defs/..." refs resolve).
    root = schema()
    return {"$schema": root["$schema"], "$defs": root["$defs"], "$ref": "#/$defs/law"}


def law_from_dict(doc: Mapping[str, Any], where: str = "law") -> Law:
    """A Law from a ``mixsearch.law/v1`` document (validated first).

    Raises:
        ValueError: a document that is malformed, of another kind of file, or newer.
    """
    validate_law_dict(doc, where)
    cls = _law_classes()[doc["kind"]]
    unc = doc["uncertainty"]
    names = list(unc["parameter_names"]) or list(doc["parameters"])
    if set(names) != set(doc["parameters"]):
        raise ValueError(f"{where}: uncertainty.parameter_names does not match parameters")
    params = {k: float(doc["parameters"][k]) for k in names}
    samples = covariance = None
    if unc["method"] == "bootstrap":
        samples = np.asarray(unc["samples"], dtype=float).reshape(-1, len(names))
    elif unc["method"] == "covariance":
        covariance = np.asarray(unc["covariance"], dtype=float)
        if covariance.shape != (len(names), len(names)):
            raise ValueError(f"{where}: uncertainty.covariance must be {len(names)} x {len(names)}, got {covariance.shape}")
    opt = doc["optimiser"]
    obj = doc["objective"]
    settings = {"loss": obj["loss"], "huber_delta": obj["huber_delta"], "space": obj["space"], "optimiser": opt["method"]}
    settings.update({k: v for k, v in opt.items() if k != "method"})
    law = cls(
        name=doc["name"],
        form=doc["form"],
        params=params,
        samples=samples,
        covariance=covariance,
        level=float(doc["level"]),
        inputs={k: dict(v) for k, v in doc["inputs"].items()},
        output=dict(doc["output"]),
        data_range={k: (float(v[0]), float(v[1])) for k, v in doc["data_range"].items()},
        diagnostics=dict(doc["diagnostics"]),
        settings=settings,
        provenance=dict(doc["provenance"]),
        extra=dict(doc["extra"]),
        data=doc.get("data"),
    )
    try:
        law.formula  # noqa: B018 - an unknown form fails here, not at predict time
    except KeyError:
        raise ValueError(f"{where}: form {doc['form']!r} is not a {doc['kind']} form") from None
    return law


def laws_document(laws: Law | Iterable[Law]) -> dict[str, Any]:
    """One law as its document, several as a collection ``{"schema", "laws": [...]}``."""
    items = [laws] if isinstance(laws, Law) else list(laws)
    if not items:
        raise ValueError("save: no laws to write")
    names = [law.name for law in items]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"save: law names must be unique in a file, repeated: {', '.join(dupes)}")
    docs = [law_to_dict(law) for law in items]
    return docs[0] if len(docs) == 1 else {"schema": SCHEMA_ID, "laws": docs}


def save(laws: Law | Iterable[Law], path: str | Path) -> Path:
    """Write laws to ``path`` atomically (a temporary file, then a rename), readable by others."""
    return write_json(laws_document(laws), path, indent=1)


def _read(path: str | Path) -> Any:
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{p}: no such law file")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{p}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{p}: not a UTF-8 text file") from None


def load_all(path: str | Path) -> list[Law]:
    """Every law in a law file, a law collection, or a study export's ``"laws"`` list."""
    doc = _read(path)
    where = str(path)
    if not isinstance(doc, Mapping):
        raise ValueError(f"{where}: expected a JSON object, got {type(doc).__name__}")
    if "laws" in doc:
        tag = str(doc.get("schema", ""))
        if _SCHEMA_RE.match(tag):
            check_version(doc, where)  # a law collection from a newer mixsearch
        items = doc["laws"]
        if not isinstance(items, list):
            raise ValueError(f"{where}: 'laws' must be a list")
        return [law_from_dict(item, f"{where}: laws[{i}]") for i, item in enumerate(items)]
    return [law_from_dict(doc, where)]


def load(path: str | Path, name: str | None = None) -> Law:
    """The law in a file, or the one called ``name`` when it holds several.

    Args:
        path: A law file (``mixsearch.law/v1``) or a study export with a ``"laws"`` list.
        name: Which law, when there are several.

    Raises:
        ValueError: a missing, malformed or newer file; no law of that name; several
            laws and no name.
    """
    laws = load_all(path)
    if name is not None:
        for law in laws:
            if law.name == name:
                return law
        raise ValueError(f"{path}: no law named {name!r}; it holds {', '.join(l.name for l in laws) or 'no laws'}")
    if not laws:
        raise ValueError(f"{path}: holds no laws")
    if len(laws) > 1:
        raise ValueError(f"{path}: holds {len(laws)} laws ({', '.join(l.name for l in laws)}); pass name=")
    return laws[0]
