"""Proposers for continual pre-training studies: the CMR paper's grid, and a search for the boundary.

Both propose ratios R of the new domain on the replay line (the candidate's mixture is
``(1 - R) * base + R * e_new``) at the study's rungs (base size N, continued tokens T), and
both recommend the critical ratio at the target the same way the study's answer does
(:func:`mixsearch.laws.cpt.fit_cpt`, point estimate): they differ only in where they run.

* ``cmr-grid`` runs every ratio of a grid at every rung, cheapest rung first, as Gu et al.
  (2024) do.
* ``cmr-search`` fits the surface of the general-loss increment on every run so far, draws
  bootstrap refits of it, and picks the (R, rung) whose measurement would most shrink the
  spread of the critical ratio at the target, per unit cost: for each draw b the CMR at the
  target and the increment at every candidate point, then (an ensemble Kalman step)
  ``Cov(CMR, y_x)² / (Var(y_x) + σ²) / cost_x``. A batch is chosen greedily, each pick (and
  every pending trial) conditioning the ensemble covariance before the next.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np

from mixsearch.candidate import Candidate
from mixsearch.laws.cmr import surface_value
from mixsearch.laws.cpt import base_loss_at, default_noise_floor, fit_cpt
from mixsearch.laws.cpt_surface import fit_surface, surface_cmr
from mixsearch.laws.fit import FitError
from mixsearch.propose.base import ProposalContext, Recommendation
from mixsearch.study import ContinualPretraining

# Ratios are compared to 4 decimals: a mixture's canonical rounding may move R by 1e-6.
_KEY_DECIMALS = 4


@dataclass(frozen=True)
class Observations:
    """The done trials of a continual pre-training study as the CMR laws read them: ``[n]`` arrays."""

    R: np.ndarray
    T: np.ndarray
    N: np.ndarray
    loss_general: np.ndarray
    loss_domain: np.ndarray
    loss_general_0: np.ndarray
    loss_domain_0: np.ndarray

    @property
    def n(self) -> int:
        return int(self.R.size)


def observations(ctx: ProposalContext) -> Observations:
    """Each done trial's ratio, (T, N) from its rung, its losses and its base model's."""
    sch = _schedule(ctx)
    h = ctx.history
    rows = []
    for w, rung, losses, metrics in zip(h.weights, h.rungs, h.domain_losses, h.metrics):
        ob = sch.observation(w, losses, metrics, ctx.domains)
        r = ctx.ladder.rung(rung)
        if ob is None or r.tokens is None or r.n_params is None:
            continue
        rows.append((ob["R"], r.tokens, r.n_params, ob["loss_general"], ob["loss_domain"], ob["loss_general_0"], ob["loss_domain_0"]))
    cols = np.array(rows, dtype=float).reshape(-1, 7).T
    return Observations(*cols)


def _schedule(ctx: ProposalContext) -> ContinualPretraining:
    if not isinstance(ctx.schedule, ContinualPretraining):
        raise ValueError("proposer.name: this proposer searches continual pre-training studies (schedule=ContinualPretraining(...))")
    return ctx.schedule


def cmr_recommendation(ctx: ProposalContext) -> Recommendation | None:
    """The critical ratio at the target from the runs so far (the study answer's point estimate), as a mixture."""
    sch = _schedule(ctx)
    obs = observations(ctx)
    if obs.n == 0:
        return None
    t = ctx.ladder.target
    fit = fit_cpt(
        obs.R, obs.T, obs.N, obs.loss_general, obs.loss_domain, obs.loss_general_0, obs.loss_domain_0,
        float(t.tokens), float(t.n_params), sch.tolerance, sch.relative, draws=0, pipeline=False, seed=ctx.seed,  # type: ignore[arg-type]
    )
    if fit.cmr is None:
        return None
    return Recommendation(sch.mixture(fit.cmr, ctx.domains), None, None, t.name, {"cmr": fit.cmr, "basis": fit.basis}, basis=fit.basis or "proposer")


def _tried(ctx: ProposalContext) -> set[tuple[float, str]]:
    """(R, rung) of every trial done, pending or failed: the ledger would find, not rerun, them."""
    sch = _schedule(ctx)
    h = ctx.history
    failed = h.failed_weights if h.failed_weights is not None else np.zeros((0, len(ctx.domains)))
    out = set()
    for ws, rs in ((h.weights, h.rungs), (h.pending_weights, h.pending_rungs), (failed, h.failed_rungs)):
        for w, r in zip(ws, rs):
            out.add((round(sch.ratio(w, ctx.domains), _KEY_DECIMALS), r))
    return out


def _candidate(ctx: ProposalContext, R: float, rung: str) -> Candidate:
    return Candidate(_schedule(ctx).mixture(R, ctx.domains), rung, ctx.trial_seed)


def _rungs_by_cost(ctx: ProposalContext, names: Sequence[str] | None = None) -> list[str]:
    rungs = [r for r in ctx.ladder.rungs if names is None or r.name in names]
    return [r.name for r in sorted(rungs, key=lambda r: r.run_cost)]


def _refuse_pool(name: str, pool: bool) -> None:
    if pool:
        raise ValueError(f"proposer.name: {name} proposes ratios on the replay line; a world that offers a finite pool of mixtures is not a continual pre-training world")


@dataclass
class CMRGrid:
    """Every ratio of a grid at every rung, cheapest rung first: the CMR paper's design.

    Args:
        ratios: The ratios R of the new domain to run, in [0, 1].
        rungs: The rungs to run them at (default: every runnable rung).
    """

    schedules: ClassVar[tuple[str | None, ...]] = ("continual",)
    ratios: Sequence[float] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    rungs: Sequence[str] | None = None

    def __post_init__(self) -> None:
        r = [float(x) for x in self.ratios]
        if not r or any(not 0.0 <= x <= 1.0 for x in r) or len(set(r)) != len(r):
            raise ValueError(f"ratios: must be distinct numbers in [0, 1], got {list(self.ratios)!r}")
        self.ratios = tuple(r)

    def check_mode(self, pool: bool) -> None:
        _refuse_pool("cmr-grid", pool)

    def grid(self, ctx: ProposalContext) -> list[tuple[float, str]]:
        """Every (R, rung) of the design, in the order it is run."""
        if self.rungs is not None:
            for name in self.rungs:
                ctx.ladder.rung(name)  # a bad name raises
        return [(R, rung) for rung in _rungs_by_cost(ctx, self.rungs) for R in self.ratios]

    def propose(self, ctx: ProposalContext, q: int) -> list[Candidate]:
        tried = _tried(ctx)
        todo = [(R, rung) for R, rung in self.grid(ctx) if (round(R, _KEY_DECIMALS), rung) not in tried]
        return [_candidate(ctx, R, rung) for R, rung in todo[:q]]

    def recommend(self, ctx: ProposalContext) -> Recommendation | None:
        return cmr_recommendation(ctx)


@dataclass
class CMRSearch:
    """Runs where they most narrow the critical ratio at the target, per unit cost.

    Args:
        n_init: Trials of the opening design before the surface steers (ratios 0.25 and 0.75
            at the cheapest rung, 0.5 at the rung nearest the target's T, then 0.5 at the
            others by cost).
        draws: Bootstrap refits of the surface behind each choice.
        resolution: Ratios considered per rung (evenly spaced in [0, 1]).
        rungs: The rungs it may run (default: every runnable rung).
    """

    schedules: ClassVar[tuple[str | None, ...]] = ("continual",)
    n_init: int = 3
    draws: int = 32
    resolution: int = 41
    rungs: Sequence[str] | None = None

    def __post_init__(self) -> None:
        for name, v, low in (("n_init", self.n_init, 1), ("draws", self.draws, 8), ("resolution", self.resolution, 3)):
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise ValueError(f"{name}: must be an integer >= {low}, got {v!r}")

    def check_mode(self, pool: bool) -> None:
        _refuse_pool("cmr-search", pool)

    def opening(self, ctx: ProposalContext) -> list[tuple[float, str]]:
        """The opening design, in order."""
        names = _rungs_by_cost(ctx, self.rungs)
        t = float(ctx.ladder.target.tokens or 0.0)
        near = min(names, key=lambda n: abs(np.log(max(float(ctx.ladder.rung(n).tokens or 1.0), 1.0) / max(t, 1.0))))
        design = [(0.25, names[0]), (0.75, names[0]), (0.5, near)] + [(0.5, n) for n in names if n != near]
        return design[: self.n_init]

    def propose(self, ctx: ProposalContext, q: int) -> list[Candidate]:
        sch = _schedule(ctx)
        tried = _tried(ctx)
        h = ctx.history
        opening = [(R, r) for R, r in self.opening(ctx) if (round(R, _KEY_DECIMALS), r) not in tried]
        out = [_candidate(ctx, R, r) for R, r in opening[:q]]
        if len(out) == q or h.n + len(h.pending_rungs) < self.n_init:
            return out
        obs = observations(ctx)
        target = ctx.ladder.target
        T_star, N_star = float(target.tokens), float(target.n_params)  # type: ignore[arg-type]
        L0, _ = base_loss_at(N_star, obs.N, obs.loss_general_0) if obs.n else (np.nan, "")
        limit = sch.limit(L0)
        try:
            fit = fit_surface(obs.R, obs.T, obs.N, obs.loss_general - obs.loss_general_0, default_noise_floor(limit), self.draws, ctx.seed)
        except (FitError, ValueError):
            return out + self._fallback(ctx, q - len(out), tried | {(round(sch.ratio(c.weights, ctx.domains), _KEY_DECIMALS), c.rung) for c in out})
        assert fit.draws is not None
        names = _rungs_by_cost(ctx, self.rungs)
        grid = np.linspace(0.0, 1.0, self.resolution)
        points = [(float(R), n) for n in names for R in grid]
        rung_of = {n: ctx.ladder.rung(n) for n in names}
        R = np.array([p[0] for p in points])
        T = np.array([float(rung_of[p[1]].tokens) for p in points])  # type: ignore[arg-type]
        N = np.array([float(rung_of[p[1]].n_params) for p in points])  # type: ignore[arg-type]
        cost = np.array([rung_of[p[1]].run_cost for p in points])
        z = surface_cmr(fit.draws, T_star, N_star, fit.n_ref, limit)  # [B]
        y = surface_value(fit.draws, R, T, N, fit.n_ref)  # [B, M]
        pend_R = np.array([sch.ratio(w, ctx.domains) for w in h.pending_weights])
        pend_T = np.array([float(ctx.ladder.rung(r).tokens) for r in h.pending_rungs])  # type: ignore[arg-type]
        pend_N = np.array([float(ctx.ladder.rung(r).n_params) for r in h.pending_rungs])  # type: ignore[arg-type]
        y_pend = surface_value(fit.draws, pend_R, pend_T, pend_N, fit.n_ref) if pend_R.size else np.zeros((len(z), 0))
        ens = np.concatenate([z[:, None], y, y_pend], axis=1)
        C = np.cov(ens, rowvar=False)
        noise = fit.sigma**2
        M = y.shape[1]
        for j in range(M + 1, C.shape[0]):  # what pending trials will tell is already on its way
            C = _condition(C, j, noise)
        taken = tried | {(round(sch.ratio(c.weights, ctx.domains), _KEY_DECIMALS), c.rung) for c in out}
        free = np.array([(round(p[0], _KEY_DECIMALS), p[1]) not in taken for p in points])
        while len(out) < q and free.any():
            var = np.diag(C)[1 : M + 1]
            gain = C[0, 1 : M + 1] ** 2 / (var + noise) / cost
            gain = np.where(free, gain, -np.inf)
            j = int(np.argmax(gain))
            if not np.isfinite(gain[j]) or gain[j] <= 0:
                break
            out.append(_candidate(ctx, points[j][0], points[j][1]))
            free[j] = False
            C = _condition(C, j + 1, noise)
        if len(out) < q:
            out += self._fallback(ctx, q - len(out), taken | {(round(sch.ratio(c.weights, ctx.domains), _KEY_DECIMALS), c.rung) for c in out}, fit, limit)
        return out

    def _fallback(self, ctx: ProposalContext, k: int, taken: set[tuple[float, str]], fit: Any = None, limit: float | None = None) -> list[Candidate]:
        """When the draws agree everywhere (or no surface fits): ratios nearest the current CMR
        at the rung nearest the target's T, then at the others."""
        if k <= 0:
            return []
        target = ctx.ladder.target
        centre = 0.5 if fit is None else fit.cmr(float(target.tokens), float(target.n_params), float(limit))  # type: ignore[arg-type]
        grid = np.linspace(0.0, 1.0, self.resolution)
        names = sorted(_rungs_by_cost(ctx, self.rungs), key=lambda n: abs(np.log(float(ctx.ladder.rung(n).tokens or 1) / float(target.tokens or 1))))
        out = []
        for n in names:
            for R in grid[np.argsort(np.abs(grid - centre), kind="stable")]:
                if len(out) == k:
                    return out
                if (round(float(R), _KEY_DECIMALS), n) not in taken:
                    out.append(_candidate(ctx, float(R), n))
                    taken = taken | {(round(float(R), _KEY_DECIMALS), n)}
        return out

    def recommend(self, ctx: ProposalContext) -> Recommendation | None:
        return cmr_recommendation(ctx)


def _condition(C: np.ndarray, j: int, noise: float) -> np.ndarray:
    """The ensemble covariance after observing entry ``j`` with noise variance ``noise`` (a Kalman update)."""
    c = C[:, j]
    return C - np.outer(c, c) / (C[j, j] + noise)
