"""The joint law on a study's few rungs: fix what the runs cannot determine, and say so.

A study's ladder is short: three or four rungs, two or three sizes. Fitted freely on such
runs, the exponents of ``A(w)/N^alpha`` and ``B(w)/D^beta`` are barely determined: the fit
may drive them to a bound, where the law says the loss has saturated at the target (on a
world whose truth is known this predicted 5.2 nats at 4x beyond the rungs against a true
3.98, with a narrow interval). Published scaling laws pin those exponents down far better
than a few proxy rungs can, so :func:`fit_study_joint` uses them as values for what the
runs cannot tell: an exponent is fixed at the published value when the runs have fewer than
:data:`MIN_DISTINCT` distinct values of its variable, or when, fitted freely, it lands
outside :data:`PLAUSIBLE`. What was fixed, and why, is recorded in the law
(``extra["exponents"]``), and the extrapolation error measured by leave-one-scale-out says
how well the result holds.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping, Sequence

import numpy as np

from mixsearch.laws.joint import JointLaw, fit_joint

# Hoffmann et al. (2022), "Training compute-optimal large language models", approach 3.
PUBLISHED_EXPONENTS = {"alpha": 0.34, "beta": 0.28}
MIN_DISTINCT = 3
PLAUSIBLE = (0.05, 1.5)
_VARIABLE = {"alpha": "N", "beta": "D"}


def fit_study_joint(weights: Any, losses: Any, components: Sequence[str], N: Any, D: Any, **kwargs: Any) -> JointLaw:
    """:func:`~mixsearch.laws.joint.fit_joint` with published exponents for what the runs cannot determine.

    Args:
        weights, losses, components: As for ``fit_joint``.
        N: ``[n]`` model sizes.
        D: ``[n]`` training tokens.
        **kwargs: Passed to ``fit_joint`` (``target_weights``, ``options``, ``name``,
            ``provenance``, ``include_data``, ``measure_error`` …); not ``priors``.

    Returns:
        The law; ``extra["exponents"]`` says, per exponent, whether it was fitted or fixed and why.
    """
    n = np.asarray(N, dtype=float).reshape(-1)
    d = np.asarray(D, dtype=float).reshape(-1)
    why: dict[str, str] = {}
    for name, values in (("alpha", n), ("beta", d)):
        distinct = np.unique(values).size
        if 1 < distinct < MIN_DISTINCT:
            why[name] = f"fixed at {PUBLISHED_EXPONENTS[name]} (Hoffmann et al. 2022): the runs have {distinct} distinct {_VARIABLE[name]}, fewer than {MIN_DISTINCT}"
    law = _fit(weights, losses, components, n, d, why, kwargs)
    implausible = {name: vals for name, vals in _exponents(law).items() if name not in why and any(not PLAUSIBLE[0] <= v <= PLAUSIBLE[1] for v in vals)}
    if implausible:
        for name, vals in implausible.items():
            shown = ", ".join(f"{v:.3g}" for v in vals[:3])
            why[name] = f"fixed at {PUBLISHED_EXPONENTS[name]} (Hoffmann et al. 2022): fitted freely it was {shown}, outside {PLAUSIBLE[0]}-{PLAUSIBLE[1]}"
        law = _fit(weights, losses, components, n, d, why, kwargs)
    record = {name: why.get(name, "fitted") for name in PUBLISHED_EXPONENTS if _VARIABLE[name] in _varying(n, d)}
    return replace(law, extra={**dict(law.extra), "exponents": record})


def _varying(n: np.ndarray, d: np.ndarray) -> set[str]:
    return {v for v, values in (("N", n), ("D", d)) if np.unique(values).size > 1}


def _fit(weights: Any, losses: Any, components: Sequence[str], n: np.ndarray, d: np.ndarray, why: Mapping[str, str], kwargs: Mapping[str, Any]) -> JointLaw:
    priors = {name: PUBLISHED_EXPONENTS[name] for name in why}
    return fit_joint(weights, losses, components, N=n, D=d, priors=priors or None, holdout_fit=_holdout_fit, **kwargs)


def _holdout_fit(weights: Any, losses: Any, components: Sequence[str], N: Any = None, D: Any = None, priors: Any = None, **kwargs: Any) -> JointLaw:
    """The leave-one-rung-out refit under the same rules: the runs left (one rung fewer) may
    fix an exponent the full runs fitted. Fitted freely on two sizes, the refit is another
    law than the one whose error is being measured, and its error is far larger."""
    return fit_study_joint(weights, losses, components, N=N, D=D, **kwargs)


def _exponents(law: JointLaw) -> dict[str, list[float]]:
    """Fitted exponents by name (``alpha``, ``beta``), one value per target."""
    out: dict[str, list[float]] = {}
    for key, value in law.params.items():
        base = key.split("[", 1)[0]
        if base in PUBLISHED_EXPONENTS:
            out.setdefault(base, []).append(float(value))
    return out
