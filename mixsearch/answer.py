"""The answer at the target scale: a mixture, and its predicted objective with what it rests on.

The answer comes from the joint law of mixture and scale (:func:`mixsearch.laws.joint.fit_joint`)
fitted on the study's own done trials at every rung: its best mixture at the target's
(N, D), the law's predicted objective there, and an interval widened by the law's measured
extrapolation error (refit without the largest rung, predict it). Every number says its
basis (``law`` or ``observed``) and how far it extrapolates in N and D. When no law can be
fitted the answer is still a mixture, but its predicted target objective is ``None``, with
one line saying what runs are missing: a Surrogate's posterior at a fidelity no trial ran is
never presented as a loss at the target.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from mixsearch.laws.fit import FitError, FitOptions
from mixsearch.laws.law import Law
from mixsearch.study import Study

# A target more than this many times beyond the largest rung in N is flagged: a law carried
# that far is a guess however narrow its interval.
FAR_BEYOND_N = 100.0
ANSWER_BOOTSTRAP = 50  # resamples behind the answer's interval (and the exported laws')
ANSWER_LEVEL = 0.9  # the interval convention everywhere a study's answer is shown


@dataclass
class TargetAnswer:
    """The study's answer at its target scale.

    Attributes:
        weights: The recommended mixture, domain -> weight.
        mixture_from: Where the mixture comes from, in words.
        basis: What the predicted objective rests on: ``"law"`` (the joint law at the
            target), ``"observed"`` (a trial run at the target), or ``None`` (no prediction).
        target: ``{"name", "N", "D"}`` of the target scale.
        predicted: Predicted objective at the target (study orientation), or None.
        lower, upper: The ``level`` interval of that prediction (or None).
        level: Central probability of the interval.
        extrapolated: Whether the target lies outside the (N, D) range of the fitted runs.
        factors: How far beyond the fitted runs the target lies: ``{"N": x, "D": y}`` (1 inside).
        law: Name of the law the prediction comes from (in the export's ``laws``).
        model_error: How the law's extrapolation error was measured (or why it was not).
        reason: Why there is no predicted target objective (when ``predicted`` is None).
        warnings: Sanity warnings about the target (epochs over the corpus, far extrapolation, a runnable target never run).
        schedule: A two-phase study's answer: the phases and switch behind ``weights``
            (``{"first", "second", "switch"}``; see :mod:`mixsearch.schedule_answer`).
    """

    weights: dict[str, float]
    mixture_from: str
    basis: str | None
    target: dict[str, Any]
    predicted: float | None = None
    lower: float | None = None
    upper: float | None = None
    level: float = ANSWER_LEVEL
    extrapolated: bool | None = None
    factors: dict[str, float | None] = field(default_factory=dict)
    law: str | None = None
    model_error: dict[str, Any] | None = None
    reason: str | None = None
    warnings: list[str] = field(default_factory=list)
    schedule: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_export(cls, rec: Mapping[str, Any]) -> "TargetAnswer":
        """The answer from an export's ``recommendation`` (see :func:`mixsearch.results.recommendation_dict`)."""
        names = set(cls.__dataclass_fields__)
        fields = {k: v for k, v in rec.items() if k in names}
        fields["predicted"] = rec.get("predicted_objective")
        return cls(**fields)

    def line(self, domains: Sequence[str], objective_label: str, unit: str | None) -> str:
        """One line for the CLI: the mixture, and the prediction with its basis, or why there is none."""
        mix = ", ".join(f"{d}={self.weights.get(d, 0.0):.3f}" for d in domains)
        if self.schedule:
            first, second = (", ".join(f"{d}={self.schedule[k].get(d, 0.0):.3f}" for d in domains) for k in ("first", "second"))
            mix += f" (two phases: {first} for the first {self.schedule['switch']:.0%} of the tokens, then {second})"
        where = f"{self.target['name']} (N={eng(self.target.get('N'))}, D={eng(self.target.get('D'))})"
        if self.predicted is None:
            return f"recommended mixture: {mix}; no predicted {objective_label} at {where}: {self.reason}"
        u = f" {unit}" if unit else ""
        interval = ""
        if self.lower is not None:
            assumed = (self.model_error or {}).get("assumed_tau") and not (self.model_error or {}).get("measured")
            note = ", extrapolation error assumed, not measured: see model_error.reason" if assumed and self.extrapolated else ""
            interval = f" [{self.level:.0%} interval {self.lower:.4g}-{self.upper:.4g}{note}]"
        far = extrapolation_note(self.factors) if self.extrapolated else ""
        return f"recommended mixture: {mix}; {objective_label} at {where}: {self.predicted:.4g}{u}{interval} (basis: {self.basis}{far})"


def extrapolation_note(factors: Mapping[str, float | None]) -> str:
    """``", extrapolated x310 in N and x5e+03 in D"``: how far beyond the runs an answer lies."""
    bits = [f"x{v:.3g} in {k}" for k, v in factors.items() if v is not None and v > 1.0]
    return f", extrapolated {' and '.join(bits)}" if bits else ", extrapolated"


def eng(x: Any) -> str:
    """A count in engineering units (``124M``, ``2.5B``), ``?`` when unknown."""
    if x is None:
        return "?"
    x = float(x)
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


def fit_objective_law(done: pd.DataFrame, study: Study, options: FitOptions | None = None) -> Law | str:
    """The joint law of the study's objective fitted on its done trials, or why it cannot be.

    Per-domain losses are fitted one law per domain and combined with the objective's
    weights (as the objective combines them); without them the objective itself is fitted.

    Args:
        done: Done trials (the ledger's ``to_dataframe()`` rows), with ``w_<domain>``,
            ``loss_<domain>``, ``objective`` and ``rung`` columns.
        study: The study.
        options: Fit options (default: :data:`ANSWER_BOOTSTRAP` resamples, the study's seed).

    Returns:
        The law (named ``joint``), or one line saying what is missing.
    """
    from mixsearch.laws.guarded import fit_study_joint

    obj = study.objective
    if obj.metric is not None or obj.direction != "minimize":
        return f"the objective ({obj.label}) is not a loss; the joint law models losses"
    scales = {r.name: (r.n_params, r.tokens) for r in (*study.ladder.rungs, study.ladder.target)}
    if any(n is None or d is None for n, d in scales.values()):
        return "the ladder's rungs do not all state n_params and tokens, so no law of scale can be fitted"
    rows = done[done["rung"].isin(list(scales))] if not done.empty else done
    if rows.empty:
        return "no done trials yet"
    nd = np.array([scales[r] for r in rows["rung"]], dtype=float)
    distinct = np.unique(nd, axis=0)
    if distinct.shape[0] < 2:
        return f"done trials at {distinct.shape[0]} rung(s); a law of scale needs runs at two or more rungs that differ in N and D"
    domains = study.domain_names
    w = rows[[f"w_{d}" for d in domains]].to_numpy(dtype=float)
    wanted = list(obj.domain_weights) if obj.domain_weights else domains
    loss_cols = [f"loss_{d}" for d in wanted]
    if all(c in rows.columns for c in loss_cols):
        y = rows[loss_cols].to_numpy(dtype=float)
        losses: Mapping[str, np.ndarray] = {d: y[:, i] for i, d in enumerate(wanted)}
        weights = dict(obj.domain_weights) if obj.domain_weights else None
    else:
        losses, weights = {"objective": rows["objective"].to_numpy(dtype=float)}, None
    ok = np.all(np.isfinite(w), axis=1) & np.all([np.isfinite(v) & (v > 0) for v in losses.values()], axis=0)
    opts = options or FitOptions(bootstrap=ANSWER_BOOTSTRAP, seed=int(study.seed), keep_samples=ANSWER_BOOTSTRAP, level=ANSWER_LEVEL)
    try:
        return fit_study_joint(
            w[ok], {k: v[ok] for k, v in losses.items()}, domains, N=nd[ok, 0], D=nd[ok, 1],
            target_weights=weights, options=opts, name="joint",
            provenance={"study": study.name, "study_config": study.config_hash(), "source": "ledger"},
        )
    except (FitError, ValueError, np.linalg.LinAlgError) as exc:
        return f"the joint law could not be fitted on {int(ok.sum())} done trials at {distinct.shape[0]} rungs: {str(exc).splitlines()[0]}"


def target_answer(
    done: pd.DataFrame,
    study: Study,
    law: Law | str,
    fallback: Mapping[str, float] | None,
    pool: np.ndarray | None = None,
    data_tokens: Mapping[str, float] | None = None,
) -> TargetAnswer:
    """The answer at the study's target from a fitted joint law (or, without one, a mixture only).

    Args:
        done: Done trials (``to_dataframe()`` rows).
        study: The study.
        law: The joint law of the objective, or why none could be fitted.
        fallback: A mixture to recommend without a law (the proposer's pick), or None.
        pool: ``[P, K]`` the mixtures a finite world offers (the answer is then one of them).
        data_tokens: Training tokens available per domain (the corpus), for the epochs warning.
    """
    target = study.ladder.target
    tinfo = {"name": target.name, "N": target.n_params, "D": target.tokens}
    domains = study.domain_names
    if isinstance(law, str):
        weights, source = _fallback(done, study, fallback)
        answer = TargetAnswer(weights, source, None, tinfo, reason=law)
        observed = _observed_at_target(done, study)
        if observed is not None:
            answer.weights, answer.mixture_from, answer.basis, answer.predicted = observed[0], f"the best trial run at the target {target.name}", "observed", observed[1]
            answer.extrapolated, answer.reason = False, None
        answer.warnings = sanity_warnings(study, data_tokens, answer.weights, done)
        return answer
    assert study.space is not None
    lower = {d: v for d, v in zip(domains, study.space.bounds()[0]) if v > 0}
    upper = {d: v for d, v in zip(domains, study.space.bounds()[1]) if v < 1}
    scale = {"N": float(target.n_params), "D": float(target.tokens)}  # type: ignore[arg-type]
    try:
        law.predict(weights=np.full(len(domains), 1.0 / len(domains)), **scale)
    except ValueError as exc:
        reason = f"the joint law fitted on the study's runs cannot predict at the target: {str(exc).splitlines()[0]}"
        return target_answer(done, study, reason, fallback, pool, data_tokens)
    if pool is not None and len(pool):
        mixtures = np.unique(np.round(pool, 6), axis=0)
        values = np.asarray(law.predict(weights=mixtures / mixtures.sum(axis=1, keepdims=True), **scale).value)
        best = mixtures[int(np.argmin(values))]
        weights = dict(zip(domains, (float(x) for x in best / best.sum())))
        source = f"the joint law's best of the {len(mixtures)} mixtures the world offers, at the target"
    else:
        opt = law.optimum(lower=lower, upper=upper, seed=int(study.seed), **scale)  # type: ignore[attr-defined]
        weights, source = dict(opt.weights), "the joint law's optimum at the target"
    pred = law.predict(weights=weights, **scale)
    me = dict(law.extra.get("model_error") or {})  # type: ignore[attr-defined]
    return TargetAnswer(
        weights=weights,
        mixture_from=source,
        basis="law",
        target=tinfo,
        predicted=float(pred.value),
        lower=None if pred.lower is None else float(pred.lower),
        upper=None if pred.upper is None else float(pred.upper),
        level=float(pred.level),
        extrapolated=bool(pred.extrapolated),
        factors={"N": _num(pred.factor_N), "D": _num(pred.factor_D)},
        law=law.name,
        model_error={k: v for k, v in me.items() if k in ("measured", "reason", "rule", "coverage", "tau", "assumed_tau")} or None,
        warnings=sanity_warnings(study, data_tokens, weights, done),
    )


def _num(v: Any) -> float | None:
    return None if v is None else float(v)


def _observed_at_target(done: pd.DataFrame, study: Study) -> tuple[dict[str, float], float] | None:
    rows = done[done["rung"] == study.ladder.target.name] if not done.empty else done
    if rows.empty:
        return None
    o = rows["objective"].to_numpy(dtype=float)
    i = int(np.argmin([study.objective.to_minimise(v) for v in o]))
    row = rows.iloc[i]
    return {d: float(row[f"w_{d}"]) for d in study.domain_names}, float(o[i])


def _fallback(done: pd.DataFrame, study: Study, fallback: Mapping[str, float] | None) -> tuple[dict[str, float], str]:
    if fallback:
        return dict(fallback), f"the {study.proposer.name} proposer's recommendation"
    if done.empty:
        return {}, "no trial has finished"
    costs = {r.name: r.run_cost for r in study.ladder.rungs}
    top = max(dict.fromkeys(done["rung"]), key=lambda r: costs.get(r, -math.inf))
    rows = done[done["rung"] == top]
    o = rows["objective"].to_numpy(dtype=float)
    row = rows.iloc[int(np.argmin([study.objective.to_minimise(v) for v in o]))]
    return {d: float(row[f"w_{d}"]) for d in study.domain_names}, f"the best trial at the costliest rung run ({top})"


def sanity_warnings(
    study: Study, data_tokens: Mapping[str, float] | None, weights: Mapping[str, float] | None, done: pd.DataFrame | None = None
) -> list[str]:
    """Warnings about the target scale: more passes over a domain's text than one, a target
    far beyond the largest rung in N, and a runnable target no trial ran at.

    Args:
        study: The study.
        data_tokens: Training tokens per domain the corpus holds (None when unknown).
        weights: The recommended mixture (None: warn on the target alone).
        done: Done trials (``to_dataframe()`` rows), for the unchecked-target warning (None: skip it).
    """
    out: list[str] = []
    t = study.ladder.target
    unchecked = None if done is None else unchecked_target(done, study)
    if unchecked:
        out.append(unchecked)
    sizes = [r.n_params for r in study.ladder.rungs if r.n_params]
    if t.n_params and sizes and t.n_params > FAR_BEYOND_N * max(sizes):
        out.append(
            f"the target ({eng(t.n_params)} parameters) is {t.n_params / max(sizes):.0f}x the largest rung in N ({eng(max(sizes))}): "
            f"a law carried more than {FAR_BEYOND_N:.0f}x beyond its runs is a guess whatever its interval; add a larger rung"
        )
    if t.tokens and data_tokens and weights:
        epochs = {d: t.tokens * float(weights.get(d, 0.0)) / float(n) for d, n in data_tokens.items() if n}
        over = {d: e for d, e in epochs.items() if e > 1.0}
        if over:
            worst = max(over, key=over.get)  # type: ignore[arg-type]
            out.append(
                f"at the target ({eng(t.tokens)} tokens) the mixture would repeat {len(over)} domain(s) more than once "
                f"({worst}: {over[worst]:.3g} epochs over its {eng(data_tokens[worst])} tokens); the laws assume fresh data"
            )
    elif t.tokens and data_tokens:
        total = float(sum(data_tokens.values()))
        if total and t.tokens > total:
            out.append(f"the target's {eng(t.tokens)} tokens exceed the corpus ({eng(total)} tokens): more than one epoch")
    return out


def unchecked_target(done: pd.DataFrame, study: Study) -> str | None:
    """A warning when the target can be run, cheaper rungs ran, and no done trial ran at the target.

    The answer then rests on the cheap rungs alone, and how well they rank mixtures like the
    target was never measured: on instruction-tuning-like worlds (docs/BENCHMARKS.md, the
    weak-proxy world) the default search can spend a whole budget on proxies that mislead.
    """
    target = study.ladder.target.name
    if done.empty or not any(r.name == target for r in study.ladder.rungs):
        return None
    ran = set(done["rung"])
    if target in ran or not ran:
        return None
    return (
        f"the target {target} can be run but no trial ran there: this answer rests on the cheaper rungs alone "
        f"({', '.join(sorted(ran))}), and whether they rank mixtures as {target} does was never checked; "
        f"run some trials at {target} to check them, or use mfbo's kernel='ar-power' if small proxies are known to mislead"
    )
