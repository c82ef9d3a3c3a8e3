"""A helper for tests that drive a Ledger directly: bind it to a minimal study first."""

from __future__ import annotations

from typing import Sequence

from mixsearch.ledger import Ledger


def bound(ledger: Ledger, domains: Sequence[str] = ("a", "b"), name: str = "t") -> Ledger:
    """``ledger`` bound to a study of ``domains`` (weights are stored by domain name)."""
    ledger.bind_study(name, {"domains": [{"name": d} for d in domains]}, None, {"domains": list(domains)})
    return ledger
