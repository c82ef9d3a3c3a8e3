"""The ``synthetic`` world: a known law of mixture and scale, observed with noise.

The ground truths live in :mod:`mixsearch.evaluate.worlds`. :class:`SyntheticEvaluator`
observes one: per-domain losses (or a metric such as an accuracy) at any rung's (N, D),
with noise that shrinks with N, deterministic for a given (mixture, rung, seeds). A study
on it runs in seconds with no training: ``EvaluatorSpec("synthetic", {"world":
"mixing-shift"})``. With ``pool=P`` it offers P random mixtures at every rung, like a table.

A continual pre-training world (``cpt-finance``) is observed by a study with a
:class:`~mixsearch.study.ContinualPretraining` schedule on that world's new domain: each trial
reports the continued model's losses and, in ``metrics["base_losses"]``, its base model's
(measured once per base size and seed, so every trial continuing one base sees the same).
"""

from __future__ import annotations

import hashlib
import math
from typing import TYPE_CHECKING, Sequence

import numpy as np

from mixsearch.candidate import Candidate, EvaluationError, Pool, TrialResult
from mixsearch.evaluate.base import check_options, options_digest
from mixsearch.evaluate.worlds import SYNTHETIC_WORLDS, CPTWorld
from mixsearch import simplex
from mixsearch.study import ContinualPretraining, Objective, Rung, SearchSpace

if TYPE_CHECKING:
    from mixsearch.study import Study

# A proposed mixture matches a pool mixture when no weight differs by more than this.
MATCH_TOLERANCE = 1e-4
OPTIONS = ("world", "noise", "seed", "pool")


class SyntheticEvaluator:
    """Observes a world of :mod:`mixsearch.evaluate.worlds` with noise: the ``synthetic`` world of studies and the bench.

    Args:
        world: Name in :data:`SYNTHETIC_WORLDS`.
        domains: The study's domain order (a permutation of the world's); default the world's.
        objective: The study's objective over the per-domain losses; default their mean.
        noise: The world's noise level (default its own): for a loss world the sd of the
            *mean* loss over the domains at ``n_ref`` parameters (each domain's loss gets
            ``noise * sqrt(K)``), for an accuracy world the sd of the accuracy at ``n_ref``;
            smaller models are noisier (see the world's ``noise_sd``).
        seed: Seed of the pool draw and of the noise stream (the trial's own seed is mixed in).
        pool: ``None`` for any mixture on the simplex, or the number of random mixtures
            offered at every rung (a table-like pool).
        rungs: The rung names the pool is offered at (the study's runnable rungs).
    """

    def __init__(
        self,
        world: str = "mixing-shift",
        domains: Sequence[str] | None = None,
        objective: Objective | None = None,
        noise: float | None = None,
        seed: int = 0,
        pool: int | None = None,
        rungs: Sequence[str] = (),
    ) -> None:
        if world not in SYNTHETIC_WORLDS:
            raise ValueError(f"evaluator.options.world: unknown synthetic world {world!r}; known: {', '.join(SYNTHETIC_WORLDS)}")
        if noise is not None and (not isinstance(noise, (int, float)) or isinstance(noise, bool) or not math.isfinite(noise) or noise < 0):
            raise ValueError(f"evaluator.options.noise: must be a number >= 0, got {noise!r}")
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"evaluator.options.seed: must be an integer >= 0, got {seed!r}")
        if pool is not None and (not isinstance(pool, int) or isinstance(pool, bool) or pool < 2):
            raise ValueError(f"evaluator.options.pool: must be an integer >= 2 (mixtures offered at every rung), got {pool!r}")
        self.world_name = world
        self.world = SYNTHETIC_WORLDS[world]
        names = tuple(domains) if domains is not None else self.world.domains
        if sorted(names) != sorted(self.world.domains):
            raise ValueError(f"domains: the {world!r} world has domains {', '.join(self.world.domains)}; the study names {', '.join(names)}")
        self.domains = names
        self._order = [self.world.domains.index(d) for d in names]  # study column j = world column _order[j]
        self.objective = objective or self.world.objective
        self.noise = float(self.world.noise if noise is None else noise)
        self.seed = int(seed)
        self.pool_size = pool
        self.rungs = tuple(rungs)
        self._pool_weights = simplex.sample(pool, SearchSpace(self.domains), np.random.default_rng(self.seed)) if pool else None

    @classmethod
    def from_study(cls, study: "Study") -> "SyntheticEvaluator":
        """The synthetic world a study names (``evaluator.options``: ``world``, ``noise``, ``seed``, ``pool``)."""
        opts = dict(study.evaluator.options)
        check_options(opts, OPTIONS, "synthetic")
        if "world" not in opts:
            raise ValueError(f"evaluator.options.world: name the synthetic world; known: {', '.join(SYNTHETIC_WORLDS)}")
        for i, r in enumerate(study.ladder.rungs):
            if r.n_params is None or r.tokens is None:
                raise ValueError(f"ladder.rungs[{i}]: a synthetic rung needs n_params and tokens (the world is a law of N and D)")
        world = SYNTHETIC_WORLDS.get(opts["world"])
        check_schedule_fits(study, world, opts["world"])
        if world is not None:
            reports = world.objective.metric
            if study.objective.metric != reports:
                wanted = f"Objective(metric={reports!r}, direction={world.objective.direction!r})" if reports else "an Objective over its per-domain losses"
                raise ValueError(f"objective.metric: the {opts['world']!r} world reports {('the metric ' + repr(reports)) if reports else 'per-domain losses'}; use {wanted}")
        return cls(
            opts["world"],
            study.domain_names,
            study.objective,
            opts.get("noise"),
            opts.get("seed", 0),
            opts.get("pool"),
            study.ladder.names,
        )

    # -- Evaluator protocol ------------------------------------------------------------

    def prepare(self) -> None:
        """Nothing to build: the world is a formula."""

    def snapshot_id(self) -> str:
        """The world, its noise and seeds: what fixes every result."""
        return f"synthetic-{self.world_name}-{options_digest({'noise': self.noise, 'seed': self.seed, 'pool': self.pool_size})}"

    def pool(self) -> Pool | None:
        """In pool mode, every pool mixture at every runnable rung; else None."""
        if self._pool_weights is None:
            return None
        w = np.repeat(self._pool_weights, len(self.rungs), axis=0)
        return Pool(w, tuple(n for _ in range(len(self._pool_weights)) for n in self.rungs))

    def evaluate(self, candidate: Candidate, rung: Rung) -> TrialResult:
        """Noisy per-domain losses of one run; the noise is a function of the run, as a ledger's would be.

        Raises:
            EvaluationError: in pool mode, a mixture that is not in the pool.
        """
        w = np.asarray(candidate.weights, dtype=float)
        if self._pool_weights is not None:
            gap = np.abs(self._pool_weights - w[None, :]).max(axis=1)
            if gap.min() > MATCH_TOLERANCE:
                raise EvaluationError(f"synthetic:{self.world_name}: mixture is not in the pool")
            w = self._pool_weights[int(np.argmin(gap))]
        assert rung.n_params is not None and rung.tokens is not None
        losses, metrics = self._truth(w[None, :], rung.n_params, rung.tokens)
        loss_sd, metric_sd = self.world.noise_sd(rung.n_params, self.noise)
        key = f"{self.seed}:{candidate.seed}:{rung.name}:{rung.n_params}:{rung.tokens}:" + ",".join(f"{x:.6f}" for x in w)
        rng = np.random.default_rng(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little"))
        domain_losses: dict[str, float] = {}
        if losses is not None:
            observed = losses[0] + loss_sd * rng.standard_normal(losses.shape[1])
            domain_losses = {d: float(v) for d, v in zip(self.domains, observed)}
        observed_metrics = {name: float(v[0] + metric_sd * rng.standard_normal()) for name, v in metrics.items()}
        extra: dict[str, object] = {}
        if isinstance(self.world, CPTWorld):
            extra = {"base_losses": self.base_losses(rung.n_params, candidate.seed), "continued_tokens": rung.tokens}
        return TrialResult(
            domain_losses=domain_losses,
            objective=self.objective.value(domain_losses, observed_metrics),
            cost=rung.run_cost,
            seconds=0.0,
            metrics={**observed_metrics, "n_params": rung.n_params, "tokens": rung.tokens, "noise_sd": max(loss_sd, metric_sd), **extra},
        )

    def base_losses(self, n_params: float, seed: int) -> dict[str, float]:
        """A continual pre-training world's base model, measured once per (size, seed): ``{domain: loss}``."""
        assert isinstance(self.world, CPTWorld)
        sd, _ = self.world.noise_sd(n_params, self.noise)
        key = f"{self.seed}:{seed}:base:{n_params}"
        rng = np.random.default_rng(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little"))
        base = self.world.base_losses(n_params)
        return {d: float(base[self.world.domains.index(d)] + sd * rng.standard_normal()) for d in self.world.domains}

    # -- the truth (the bench scores recommendations with it) --------------------------

    def true_cmr(self, tokens: float, n_params: float, tolerance: float | None = None, relative: bool = True) -> float:
        """A continual pre-training world's critical ratio at (T, N).

        Raises:
            ValueError: the world is not a continual pre-training world.
        """
        if not isinstance(self.world, CPTWorld):
            raise ValueError(f"the {self.world_name!r} world has no critical mixture ratio (not a continual pre-training world)")
        return self.world.cmr(tokens, n_params, tolerance, relative)

    def _truth(self, weights: np.ndarray, n_params: float, tokens: float) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
        """Noise-free ``(losses [n, K] in study domain order or None, metrics {name: [n]})``."""
        r = np.atleast_2d(np.asarray(weights, dtype=float))
        inv = np.argsort(self._order)  # study order -> world order
        losses, metrics = self.world.truth(r[:, inv], n_params, tokens)
        return (None if losses is None else losses[:, self._order]), metrics

    def true_losses(self, weights: np.ndarray, n_params: float, tokens: float) -> np.ndarray:
        """Noise-free per-domain losses ``[n, K]`` (study domain order) of mixtures ``[n, K]``.

        Raises:
            ValueError: the world reports no per-domain losses (an accuracy world).
        """
        losses, _ = self._truth(weights, n_params, tokens)
        if losses is None:
            raise ValueError(f"the {self.world_name!r} world reports no per-domain losses")
        return losses

    def true_objective(self, weights: np.ndarray, rung: Rung) -> np.ndarray:
        """Noise-free objective ``[n]`` of mixtures ``[n, K]`` (or one ``[K]``) at a rung."""
        assert rung.n_params is not None and rung.tokens is not None
        losses, metrics = self._truth(weights, rung.n_params, rung.tokens)
        n = len(next(iter(metrics.values()))) if losses is None else len(losses)
        rows = [({} if losses is None else dict(zip(self.domains, losses[i])), {k: v[i] for k, v in metrics.items()}) for i in range(n)]
        return np.array([self.objective.value(l, m) for l, m in rows])

    @property
    def pool_mixtures(self) -> np.ndarray | None:
        """``[P, K]`` the pool's mixtures (None when continuous)."""
        return None if self._pool_weights is None else self._pool_weights.copy()

    def optimum(self, rung: Rung) -> tuple[np.ndarray, float]:
        """The best mixture ``[K]`` and its noise-free objective at a rung (over the pool, or the simplex).

        Over the simplex: the best of the vertices and 20,000 Dirichlet draws, then SLSQP
        from the best five.
        """
        from scipy.optimize import minimize

        sign = self.objective.sign
        if self._pool_weights is not None:
            y = sign * self.true_objective(self._pool_weights, rung)
            i = int(np.argmin(y))
            return self._pool_weights[i].copy(), float(sign * y[i])
        space = SearchSpace(self.domains)
        k = space.dim
        x = np.concatenate([np.eye(k), simplex.sample(20000, space, np.random.default_rng(12345))])
        y = sign * self.true_objective(x, rung)
        best_w, best_v = x[int(np.argmin(y))], float(y.min())
        cons = [{"type": "eq", "fun": lambda r: r.sum() - 1.0, "jac": lambda r: np.ones_like(r)}]
        for x0 in x[np.argsort(y)[:5]]:
            res = minimize(lambda r: float(sign * self.true_objective(r, rung)[0]), x0, method="SLSQP", bounds=[(0.0, 1.0)] * k, constraints=cons, options={"ftol": 1e-13, "maxiter": 500})
            w = simplex.project(np.asarray(res.x), space)
            v = float(sign * self.true_objective(w, rung)[0])
            if v < best_v:
                best_w, best_v = w, v
        return best_w, float(sign * best_v)

    def worst(self, rung: Rung) -> float:
        """The worst noise-free objective at a rung (over the pool, or vertices and many draws)."""
        if self._pool_weights is not None:
            x = self._pool_weights
        else:
            space = SearchSpace(self.domains)
            x = np.concatenate([np.eye(space.dim), simplex.sample(20000, space, np.random.default_rng(12345))])
        y = self.objective.sign * self.true_objective(x, rung)
        return float(self.objective.sign * y.max())


def check_schedule_fits(study: "Study", world: object, name: str) -> None:
    """A continual pre-training world needs a ContinualPretraining schedule on its new domain
    (and no base model of the study's own: the world is its own base); the other worlds are
    laws of one mixture and take no schedule.

    Raises:
        ValueError: naming the schedule field.
    """
    sch = study.schedule
    if world is None:
        return  # an unknown world is named when the evaluator is built
    if isinstance(world, CPTWorld):
        if not isinstance(sch, ContinualPretraining):
            raise ValueError(f"schedule: the {name!r} world is continual pre-training; use schedule=ContinualPretraining(new_domain={world.new_domain!r})")
        if sch.new_domain != world.new_domain:
            raise ValueError(f"schedule.new_domain: the {name!r} world continues on {world.new_domain!r}, not {sch.new_domain!r}")
        for attr in ("base_mixture", "base_tokens", "base_tokens_per_param", "base_checkpoint"):
            if getattr(sch, attr) is not None:
                raise ValueError(f"schedule.{attr}: the {name!r} world is its own base model; remove the option")
        return
    if sch is not None:
        raise ValueError(f"schedule: the {name!r} world is a law of one mixture; a {sch.kind} schedule needs the proxy evaluator (or your own)")
