"""The answer of a study with a schedule: a continual pre-training study's critical ratio, and
the schedule behind a two-phase study's answer.

A continual pre-training study answers one question: what fraction R of new-domain data
(the rest replayed general data) keeps the general loss within the tolerance while lowering
the domain loss most, at the target's continued tokens T and base size N. The answer is the
critical mixture ratio CMR(T, N) from the laws fitted on the study's own done trials
(:func:`mixsearch.laws.cpt.fit_cpt`): the surface over every run (basis ``law``), with a
bootstrap interval widened by its measured extrapolation error in T; or, without it, the
largest ratio run at the target that stayed within the tolerance (basis ``observed``); or
none, with the reason. Beside it: the CMR paper's own per-T pipeline where the runs support
it, and, when the rungs vary N, saturating size laws of the base models' losses.

A two-phase study's answer is a mixture like any study's; :func:`attach_schedule` adds the
phases and switch of the trial it comes from, so the export states the schedule.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from mixsearch.answer import ANSWER_BOOTSTRAP, ANSWER_LEVEL, TargetAnswer, eng, extrapolation_note
from mixsearch.laws.cpt import CPTFit, fit_cpt
from mixsearch.laws.cpt_surface import surface_law
from mixsearch.laws.fit import FitError, FitOptions
from mixsearch.laws.law import Law
from mixsearch.study import ContinualPretraining, Study

MIN_SIZES = 3  # base-model sizes a size law of the base losses needs


@dataclass
class CPTAnswer:
    """A continual pre-training study's answer at its target.

    Attributes:
        ratio: The critical ratio R of ``new_domain`` at the target, or None.
        weights: The continued-training mixture at that ratio, domain -> weight.
        lower, upper: Its central ``level`` interval.
        level: Central probability of the intervals.
        basis: ``"law"``, ``"observed"`` or None.
        law: The law the ratio comes from (in the export's ``laws``).
        target: ``{"name", "N", "T"}``: the base size and continued tokens the answer is for.
        new_domain, tolerance, relative: The schedule's question.
        limit: The general-loss increment allowed at the target (ε·L0 or ε).
        loss_general_0: The base model's general loss at the target size, and where it comes from.
        predicted_general_loss, predicted_domain_loss: ``{"value", "lower", "upper"}`` at the answer.
        extrapolated: Whether the target lies beyond the runs in T or N.
        factors: ``{"T": x, "N": y}``: how far beyond (1 inside).
        model_error: The surface's error on the largest-T runs when fitted without them.
        cmr_by_T: Per token count run: the surface's CMR and the per-T ratio law's (the paper's).
        asymptotes: Per loss, the base models' size law asymptote ``{"E", "lower", "upper"}`` (N varied).
        mixture_from: Where the mixture comes from, in words.
        reason: Why there is no ratio (or why it is only observed).
        warnings: What to keep in mind.
    """

    ratio: float | None
    weights: dict[str, float]
    lower: float | None = None
    upper: float | None = None
    level: float = ANSWER_LEVEL
    basis: str | None = None
    law: str | None = None
    target: dict[str, Any] = field(default_factory=dict)
    new_domain: str = ""
    tolerance: float = 0.0
    relative: bool = True
    limit: float | None = None
    loss_general_0: dict[str, Any] = field(default_factory=dict)
    predicted_general_loss: dict[str, float | None] | None = None
    predicted_domain_loss: dict[str, float | None] | None = None
    extrapolated: bool | None = None
    factors: dict[str, float] = field(default_factory=dict)
    model_error: dict[str, Any] = field(default_factory=dict)
    cmr_by_T: list[dict[str, Any]] = field(default_factory=list)
    asymptotes: dict[str, dict[str, float | None]] = field(default_factory=dict)
    mixture_from: str = ""
    reason: str | None = None
    warnings: list[str] = field(default_factory=list)
    kind: str = "cmr"

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["predicted"] = None  # no single objective: the two losses are given apart
        return out

    @classmethod
    def from_export(cls, rec: Mapping[str, Any]) -> "CPTAnswer":
        """The answer from an export's ``recommendation`` of kind ``cmr``."""
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in rec.items() if k in names})

    def line(self) -> str:
        """One line for the CLI: the critical ratio with its interval and basis, or why there is none."""
        t = self.target
        where = f"{t.get('name')} (N={eng(t.get('N'))}, T={eng(t.get('T'))} tokens)"
        tol = f"{self.tolerance:.3g}{' relative' if self.relative else ' nats'}"
        if self.ratio is None:
            return f"no critical ratio of {self.new_domain} at {where}: {self.reason}"
        interval = "" if self.lower is None else f" [{self.level:.0%} interval {self.lower:.3f}-{self.upper:.3f}]"
        far = extrapolation_note(self.factors) if self.extrapolated else ""
        mix = ", ".join(f"{d}={w:.3f}" for d, w in self.weights.items())
        dom = self.predicted_domain_loss or {}
        dom_text = "" if dom.get("value") is None else f"; predicted {self.new_domain} loss {dom['value']:.4g}"
        return f"critical ratio of {self.new_domain} at {where}, general loss within {tol}: R = {self.ratio:.3f}{interval} (basis: {self.basis}{far}); mixture: {mix}{dom_text}"


def cpt_frame(done: pd.DataFrame, study: Study) -> pd.DataFrame:
    """The done trials of a continual pre-training study as the CMR laws read them.

    Args:
        done: Done trials (``Ledger.to_dataframe()`` rows: ``w_<d>``, ``loss_<d>``, ``base_loss_<d>``).
        study: The study.

    Returns:
        Columns ``R, T, N, loss_general, loss_domain, loss_general_0, loss_domain_0, rung``,
        one row per trial that has its losses and its base model's.
    """
    sch = study.schedule
    assert isinstance(sch, ContinualPretraining)
    names = study.domain_names
    rungs = {r.name: r for r in study.ladder.rungs}
    rows = []
    for _, row in done.iterrows():
        rung = rungs.get(row["rung"])
        if rung is None:
            continue
        w = [float(row[f"w_{d}"]) for d in names]
        losses = {d: row.get(f"loss_{d}") for d in names}
        base = {d: row.get(f"base_loss_{d}") for d in names}
        ob = sch.observation(w, losses, {"base_losses": base}, names)
        if ob is not None:
            rows.append({**ob, "T": float(rung.tokens), "N": float(rung.n_params), "rung": rung.name})  # type: ignore[arg-type]
    return pd.DataFrame(rows, columns=["R", "T", "N", "loss_general", "loss_domain", "loss_general_0", "loss_domain_0", "rung"])


def cpt_answer(done: pd.DataFrame, study: Study, bootstrap: int = ANSWER_BOOTSTRAP) -> tuple[CPTAnswer, list[Law], list[str]]:
    """The critical ratio at the study's target from its done trials, and the laws behind it.

    Args:
        done: Done trials (``Ledger.to_dataframe()`` rows).
        study: A continual pre-training study.
        bootstrap: Refits behind the intervals.

    Returns:
        ``(answer, laws, skipped)``: the laws for the export (the general and domain surfaces,
        the paper's per-T laws, the base models' size laws) and the reasons for laws not fitted.
    """
    sch = study.schedule
    assert isinstance(sch, ContinualPretraining)
    t = study.ladder.target
    names = study.domain_names
    T_star, N_star = float(t.tokens), float(t.n_params)  # type: ignore[arg-type]
    frame = cpt_frame(done, study)
    answer = CPTAnswer(None, {}, target={"name": t.name, "N": t.n_params, "T": t.tokens}, new_domain=sch.new_domain, tolerance=sch.tolerance, relative=sch.relative)
    laws: list[Law] = []
    skipped: list[str] = []
    if frame.empty:
        answer.reason = "no done trial reports its losses and its base model's yet"
        return answer, laws, ["CMR laws: no done trials with base-model losses"]
    cols = {c: frame[c].to_numpy(dtype=float) for c in frame.columns if c != "rung"}
    prov = {"study": study.name, "study_config": study.config_hash(), "source": "ledger"}
    opts = FitOptions(bootstrap=bootstrap, seed=int(study.seed), keep_samples=bootstrap, level=ANSWER_LEVEL, cv_folds=0)
    fit = fit_cpt(
        cols["R"], cols["T"], cols["N"], cols["loss_general"], cols["loss_domain"], cols["loss_general_0"], cols["loss_domain_0"],
        T_star, N_star, sch.tolerance, sch.relative, draws=bootstrap, level=ANSWER_LEVEL, seed=int(study.seed), options=opts, provenance=prov,
    )
    _fill(answer, fit, sch, names)
    extra = {
        "tolerance": sch.tolerance, "relative": sch.relative, "limit": fit.limit, "new_domain": sch.new_domain,
        "loss_general_0": fit.loss_general_0, "target_T": T_star, "target_N": N_star, "model_error": fit.model_error,
    }
    cmr = {"value": fit.cmr, "lower": fit.lower, "upper": fit.upper}
    for which, surf, y in (("general", fit.general, cols["loss_general"] - cols["loss_general_0"]), ("domain", fit.domain, cols["loss_domain"] - cols["loss_domain_0"])):
        if surf is not None:
            laws.append(surface_law(surf, cols["R"], cols["T"], cols["N"], y, which, ANSWER_LEVEL, {**extra, **({"cmr": cmr} if which == "general" else {})}, prov))
    if fit.general is None:
        skipped.append(f"CMR surface: {fit.reason}")
    if fit.pipeline is not None:
        laws.extend(fit.pipeline.laws)
        skipped.extend(_short(fit.pipeline.skipped))
    elif fit.pipeline_reason:
        skipped.append(fit.pipeline_reason)
    size_laws, size_skipped = _size_laws(frame, opts, prov)
    laws += size_laws
    skipped += size_skipped
    for law in size_laws:
        E, lo, hi = law.asymptote  # type: ignore[attr-defined]
        answer.asymptotes[str(law.extra["loss"])] = {"E": E, "lower": lo, "upper": hi}
    answer.warnings = _warnings(answer, fit, frame, T_star, N_star)
    return answer, laws, skipped


def _fill(answer: CPTAnswer, fit: CPTFit, sch: ContinualPretraining, names: Sequence[str]) -> None:
    answer.ratio, answer.lower, answer.upper, answer.basis, answer.reason = fit.cmr, fit.lower, fit.upper, fit.basis, fit.reason
    answer.limit, answer.loss_general_0, answer.factors, answer.model_error = fit.limit, fit.loss_general_0, fit.factors, fit.model_error
    answer.extrapolated = fit.cmr is not None and any(v > 1.0 for v in fit.factors.values())
    if fit.cmr is not None:
        answer.weights = dict(zip(names, sch.mixture(fit.cmr, names)))
        answer.mixture_from = {
            "law": "the continual pre-training surface fitted on every run, at the target's T and N",
            "observed": "the largest ratio run at the target that kept the general loss within the tolerance",
        }[str(fit.basis)]
    if fit.basis == "law":
        answer.law = "cmr.surface.general"
    for key, val in (("predicted_general_loss", fit.general_loss), ("predicted_domain_loss", fit.domain_loss)):
        if val is not None:
            setattr(answer, key, {"value": val[0], "lower": val[1], "upper": val[2]})
    pipe = fit.pipeline.cmr if fit.pipeline is not None else {}
    Ts = sorted(set(fit.cmr_by_T) | set(pipe))
    answer.cmr_by_T = [{"T": T, "surface": fit.cmr_by_T.get(T), "ratio_law": pipe.get(T)} for T in Ts]


def _short(skipped: Sequence[str]) -> list[str]:
    """The per-T pipeline's reasons, with its per-ratio increment-law reasons counted rather than listed."""
    increments = [s for s in skipped if " increments at R=" in s]
    out = [f"CMR pipeline: {s}" for s in skipped if s not in increments]
    if increments:
        out.append(f"CMR pipeline: increment laws not fitted at {len(increments)} (ratio, loss) pairs: a ratio needs 4 (domain) or 6 (general) token counts")
    return out


def _size_laws(frame: pd.DataFrame, opts: FitOptions, prov: Mapping[str, Any]) -> tuple[list[Law], list[str]]:
    """Saturating size laws L0(N) = E + A/N^α of the base models' general and domain losses (N varied)."""
    from mixsearch.laws.asymptote import fit_size_law

    sizes = np.unique(frame["N"].to_numpy(dtype=float))
    if sizes.size < MIN_SIZES:
        return [], [f"asymptote laws: base models at {sizes.size} size(s), a size law needs {MIN_SIZES} (vary n_params across the rungs)"]
    out: list[Law] = []
    skipped: list[str] = []
    for which, col in (("general", "loss_general_0"), ("domain", "loss_domain_0")):
        per = [float(frame.loc[frame["N"] == s, col].mean()) for s in sizes]
        try:
            out.append(fit_size_law(sizes, per, options=opts, name=f"size.base.{which}", provenance=prov, extra={"loss": which, "what": "the base models' validation loss"}))
        except (FitError, ValueError) as exc:
            skipped.append(f"size law of the base {which} loss: {exc}")
    return out, skipped


def _warnings(answer: CPTAnswer, fit: CPTFit, frame: pd.DataFrame, T: float, N: float) -> list[str]:
    out = []
    if answer.ratio is not None and answer.factors.get("N", 1.0) > 1.0 and fit.general is not None and fit.general.fixed_kappa:
        out.append(
            f"every run continued one base size, so the surface cannot say how forgetting changes with N; the answer at the target's N "
            f"({eng(N)}) assumes it does not (add rungs at other n_params)"
        )
    if answer.ratio is not None and answer.basis == "law" and answer.ratio in (0.0, 1.0):
        out.append("the critical ratio sits at the edge of [0, 1]: " + ("even pure replay exceeds the tolerance" if answer.ratio == 0.0 else "even pure domain data stays within the tolerance"))
    if fit.general is not None and fit.general.n < 7:
        out.append(f"the surface has 7 parameters and {fit.general.n} runs: its exponents lean on their prior, so its interval is the better guide")
    return out


def attach_schedule(answer: TargetAnswer, done: pd.DataFrame, domains: Sequence[str]) -> TargetAnswer:
    """Give a two-phase study's answer the schedule of the trial its mixture comes from.

    The answer's mixture is a trial's token-weighted mixture (the best observed: no law models
    the order of phases); the trial with that mixture and the best objective carries the phases.
    """
    if done.empty or "switch" not in done.columns or not answer.weights:
        return answer
    w = np.array([answer.weights.get(d, 0.0) for d in domains])
    rows = done[np.abs(done[[f"w_{d}" for d in domains]].to_numpy(dtype=float) - w[None, :]).max(axis=1) < 1e-6]
    rows = rows[rows["switch"].notna()]
    if rows.empty:
        return answer
    row = rows.iloc[0]
    answer.schedule = {
        "first": {d: float(row[f"w1_{d}"]) for d in domains},
        "second": {d: float(row[f"w2_{d}"]) for d in domains},
        "switch": float(row["switch"]),
    }
    return answer
