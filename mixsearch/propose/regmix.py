"""RegMix: regress the objective on mixture weights from cheap proxy runs, then pick the best
of many sampled mixtures (Liu et al., 2024, arXiv 2407.01492; sail-sg/regmix).

The strategy over fidelities follows the paper: spend most of the budget on many small runs
at the cheapest rung (random Dirichlet mixtures, as RegMix trains 512 1M-parameter models),
fit a LightGBM regressor on them, then run the mixtures it predicts best at the final rung
(the target when it is runnable). ``proxy_budget`` sets the split, in final-rung run units,
because a proposer never sees the study's budget: with a budget below it RegMix never leaves
the proxy rung and its answer is the regressor's pick, exactly the paper's method.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mixsearch import simplex
from mixsearch.candidate import Candidate
from mixsearch.propose.base import (
    ProposalContext,
    Recommendation,
    as_candidates,
    best_observed,
    refuse_unused_options,
)
from mixsearch.propose.baselines import target_rung
from mixsearch.propose.pool import free_indices, random_free


@dataclass
class RegMix:
    """The RegMix proposer.

    Args:
        proxy_rung: Rung of the many small runs; default the cheapest runnable rung.
        final_rung: Rung the predicted-best mixtures are run at; default the target (or the
            costliest runnable rung).
        proxy_budget: Cost to spend at the proxy rung before moving on, in final-rung runs.
        n_samples: Candidate mixtures scored by the regressor per decision (continuous mode;
            in pool mode the free pool entries are the candidates).
        top_k: The continuous-mode answer is the mean of the ``top_k`` best-predicted
            samples, as RegMix averages its top predictions to smooth the tree model.
        min_fit: Proxy observations needed before the regressor is trusted.
        strength: Range of the Dirichlet total concentration (log-uniform over 10 values)
            for proxy mixtures and candidates, as in RegMix's sampler (uniform prior here).
        min_distance: Final-rung proposals keep this Euclidean distance from each other and
            from final-rung trials already run, so a batch does not repeat one mixture.
        n_estimators: Boosting rounds of the LightGBM regressor (100 rounds at rate 0.1 rank
            the RegMix 60M runs as well as 200 at 0.05 or RegMix's 1000 at 0.01 -- Spearman
            0.993 from the 256 1M runs -- at a fraction of the prediction time).
        learning_rate: Its learning rate.
        num_leaves: Its leaves per tree.
    """

    proxy_rung: str | None = None
    final_rung: str | None = None
    proxy_budget: float = 5.0
    n_samples: int = 100_000
    top_k: int = 100
    min_fit: int = 8
    strength: tuple[float, float] = (1.0, 5.0)
    min_distance: float = 0.05
    n_estimators: int = 100
    learning_rate: float = 0.1
    num_leaves: int = 31
    _memo: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    # -- rungs and budget split --------------------------------------------------------

    def _rungs(self, ctx: ProposalContext) -> tuple[str, str]:
        proxy = self.proxy_rung or min(ctx.ladder.rungs, key=lambda r: r.run_cost).name
        ctx.ladder.rung(proxy)  # raises on a bad name
        return proxy, target_rung(ctx, self.final_rung)

    def _proxy_slots(self, ctx: ProposalContext, proxy: str, final: str) -> int:
        """Proxy runs still to spend before the final phase (counting pending and failed runs)."""
        if proxy == final:
            return max(self.min_fit - ctx.history.n, 0)
        h = ctx.history
        used = sum(r == proxy for r in (*h.rungs, *h.pending_rungs, *h.failed_rungs))
        ratio = ctx.ladder.rung(final).run_cost / ctx.ladder.rung(proxy).run_cost
        left = int(math.ceil(self.proxy_budget * ratio - 1e-9)) - used
        if ctx.pool is not None:
            left = min(left, len(free_indices(ctx, proxy)))
        return max(left, 0)

    # -- sampling and regression -------------------------------------------------------

    def _sample(self, n: int, ctx: ProposalContext, rng: np.random.Generator) -> np.ndarray:
        """``[n, K]`` mixtures from RegMix's Dirichlet family (10 strengths, uniform prior)."""
        k = ctx.space.dim
        strengths = np.logspace(np.log10(self.strength[0]), np.log10(self.strength[1]), 10)
        which = rng.integers(0, len(strengths), size=n)
        parts = [simplex.sample(int((which == i).sum()), ctx.space, rng, s / k) for i, s in enumerate(strengths)]
        return np.concatenate(parts, axis=0)[rng.permutation(n)]

    def _regressor(self, x: np.ndarray, y: np.ndarray) -> Any:
        """A LightGBM regressor fitted on ``x`` ``[n, K]`` -> ``y`` ``[n]`` (memoised on the data)."""
        key = hashlib.sha256(np.ascontiguousarray(x).tobytes() + np.ascontiguousarray(y).tobytes()).hexdigest()
        if key not in self._memo:
            import lightgbm as lgb

            model = lgb.LGBMRegressor(
                n_estimators=self.n_estimators,
                learning_rate=self.learning_rate,
                num_leaves=self.num_leaves,
                min_child_samples=max(2, min(20, len(y) // 8)),
                random_state=0,
                n_jobs=1,
                deterministic=True,
                force_row_wise=True,
                verbosity=-1,
            )
            model.fit(x, y)
            self._memo.clear()  # keep one model: the history only grows
            self._memo[key] = model
        return self._memo[key]

    def _fitted(self, ctx: ProposalContext, proxy: str) -> Any | None:
        x, y = ctx.history.at_rung(proxy)
        if len(y) < self.min_fit:
            return None
        return self._regressor(x, y)

    # -- Proposer ----------------------------------------------------------------------

    def check_mode(self, pool: bool) -> None:
        """Refuse options that do nothing when candidates come from a pool (n_samples, top_k, strength, min_distance)."""
        refuse_unused_options(self, ('n_samples', 'top_k', 'strength', 'min_distance'), pool)
    def propose(self, ctx: ProposalContext, q: int) -> list[Candidate]:
        rng = ctx.rng()
        proxy, final = self._rungs(ctx)
        n_proxy = min(q, self._proxy_slots(ctx, proxy, final))
        out: list[Candidate] = []
        if n_proxy:
            if ctx.pool is not None:
                out += random_free(ctx, n_proxy, proxy, rng)
            else:
                out += as_candidates(self._sample(n_proxy, ctx, rng), [proxy] * n_proxy, ctx.trial_seed)
        if len(out) < q:
            out += self._final(ctx, q - len(out), proxy, final, rng)
        return out

    def _final(self, ctx: ProposalContext, q: int, proxy: str, final: str, rng: np.random.Generator) -> list[Candidate]:
        """The ``q`` best-predicted untried mixtures at the final rung."""
        if ctx.pool is not None:
            idx = free_indices(ctx, final)
            cands = ctx.pool.weights[idx]
        else:
            cands = self._sample(self.n_samples, ctx, rng)
        if len(cands) == 0:
            return []
        model = self._fitted(ctx, proxy)
        if model is None:  # too few proxy runs (e.g. all failed): explore at random
            order = rng.permutation(len(cands))
        else:
            pred = model.predict(cands)
            if ctx.pool is None:
                top = np.argsort(pred)[: self.top_k]
                answer = simplex.project(cands[top].mean(axis=0), ctx.space)
                cands = np.concatenate([answer[None, :], cands])
                pred = np.concatenate([model.predict(answer[None, :]), pred])
            order = np.argsort(pred, kind="stable")
        h = ctx.history
        ref = [w for w, r in zip(h.weights, h.rungs) if r == final] + [w for w, r in zip(h.pending_weights, h.pending_rungs) if r == final]
        chosen: list[np.ndarray] = []
        for i in order:
            if len(chosen) >= q:
                break
            w = cands[i]
            if ctx.pool is None and any(np.linalg.norm(w - r) < self.min_distance for r in (*ref, *chosen)):
                continue
            chosen.append(w)
        return as_candidates(chosen, [final] * len(chosen), ctx.trial_seed)

    def recommend(self, ctx: ProposalContext) -> Recommendation | None:
        """Best observed at the final rung once it has runs; before that the regressor's pick."""
        proxy, final = self._rungs(ctx)
        w_final, y_final = ctx.history.at_rung(final)
        if len(y_final):
            i = int(np.argmin(y_final))
            return Recommendation(tuple(float(x) for x in w_final[i]), float(y_final[i]), None, final, basis="observed")
        model = self._fitted(ctx, proxy)
        if model is None:
            return best_observed(ctx)
        if ctx.pool is not None:
            idx = [i for i, r in enumerate(ctx.pool.rungs) if r == final]
            cands = ctx.pool.weights[idx] if idx else ctx.pool.weights
            pred = model.predict(cands)
            i = int(np.argmin(pred))
            w, p = cands[i], float(pred[i])
        else:
            cands = self._sample(self.n_samples, ctx, ctx.rng())
            pred = model.predict(cands)
            w = simplex.project(cands[np.argsort(pred)[: self.top_k]].mean(axis=0), ctx.space)
            p = float(model.predict(w[None, :])[0])
        return Recommendation(tuple(float(x) for x in w), p, None, proxy, {"source": "regressor"}, basis="regressor")
