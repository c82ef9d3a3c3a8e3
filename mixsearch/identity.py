"""A study's identity: what gives its stored results their meaning, and what changed.

The ledger binds a study's name to this definition; a study file whose definition
differs stops with the changes in words (see ``Ledger.bind_study``).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping


def study_definition(study: Mapping[str, Any], snapshot: str | None) -> dict[str, Any]:
    """What gives a study's stored results their meaning, from its JSON form.

    The domains and their order, the search space, each rung's size and cost, the
    objective, the kind of world and the id of its data snapshot (a corpus hash, a run
    table's content hash). Two studies with the same definition may share a ledger; the
    budget, the proposer, the seed and the target scale may change between runs.

    Args:
        study: ``Study.to_dict()`` (or the JSON a ledger recorded).
        snapshot: The evaluator's snapshot id.
    """
    space = study.get("space") or {}
    ladder = study.get("ladder") or {}
    out = {
        "domains": [d["name"] for d in study.get("domains", [])],
        "space": {k: dict(space.get(k) or {}) for k in ("lower", "upper", "fixed")},
        "rungs": {r["name"]: [r.get("n_params"), r.get("tokens"), r.get("cost")] for r in ladder.get("rungs", [])},
        "objective": dict(study.get("objective") or {}),
        "evaluator": (study.get("evaluator") or {}).get("kind"),
        "snapshot": snapshot,
    }
    schedule = study.get("schedule")
    if schedule:
        # Only a study with a schedule carries the key: a mixture study's definition (and its
        # fingerprint) stays what it was before schedules existed.
        out["schedule"] = schedule.get("identity") or {"kind": schedule.get("kind")}
    return out


def definition_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """What differs between two study definitions, in words (empty when the new one may
    continue the old one's ledger). Rungs may be added; a rung that keeps its name must
    keep its size and cost."""
    out: list[str] = []
    od, nd = list(old.get("domains", [])), list(new.get("domains", []))
    if od != nd:
        added, removed = [d for d in nd if d not in od], [d for d in od if d not in nd]
        if added or removed:
            bits = ([f"added {', '.join(added)}"] if added else []) + ([f"removed {', '.join(removed)}"] if removed else [])
            out.append(f"domains {'; '.join(bits)}")
        else:
            out.append(f"domains reordered ({', '.join(od)} -> {', '.join(nd)})")
    if old.get("space") != new.get("space"):
        out.append("the search space (bounds or fixed weights) changed")
    for name, spec in (old.get("rungs") or {}).items():
        now = (new.get("rungs") or {}).get(name)
        if now is not None and list(now) != list(spec):
            out.append(f"rung {name!r} changed (N, D, cost: {spec} -> {list(now)})")
    if old.get("objective") != new.get("objective"):
        out.append(f"the objective changed ({old.get('objective')} -> {new.get('objective')})")
    if old.get("schedule") != new.get("schedule"):
        out.append(f"the schedule changed ({old.get('schedule')} -> {new.get('schedule')})")
    if old.get("evaluator") != new.get("evaluator"):
        out.append(f"the world changed ({old.get('evaluator')} -> {new.get('evaluator')})")
    elif old.get("snapshot") is not None and old.get("snapshot") != new.get("snapshot"):
        out.append(f"the data changed (snapshot {old.get('snapshot')} -> {new.get('snapshot')}: an edited run table, corpus or training setting)")
    return out


def fingerprint(definition: Mapping[str, Any]) -> str:
    """A short hash of a study definition."""
    return hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()[:16]


__all__ = ["definition_changes", "fingerprint", "study_definition"]
