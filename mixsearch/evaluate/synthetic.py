"""The ``synthetic`` world: a known law of mixture and scale, observed with noise.

A :class:`MixingWorld` is a ground truth (a data mixing law whose parameters move with
model size, so the best mixture at a small proxy is informative but biased for the
target). :class:`SyntheticEvaluator` observes it: per-domain losses at any rung's (N, D),
with noise that shrinks with N, deterministic for a given (mixture, rung, seeds). A study
on it runs in seconds with no training: ``EvaluatorSpec("synthetic", {"world":
"mixing-shift"})``. With ``pool=P`` it offers P random mixtures at every rung, like a table.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from mixsearch.candidate import Candidate, EvaluationError, Pool, TrialResult
from mixsearch.evaluate.base import check_options, options_digest
from mixsearch import simplex
from mixsearch.study import Objective, Rung, SearchSpace

if TYPE_CHECKING:
    from mixsearch.study import FidelityLadder, Study

# A proposed mixture matches a pool mixture when no weight differs by more than this.
MATCH_TOLERANCE = 1e-4
OPTIONS = ("world", "noise", "seed", "pool")
DEFAULT_NOISE = 0.006


@dataclass(frozen=True)
class MixingWorld:
    """A ground truth: per-domain loss as a data mixing law with scale-dependent parameters.

    This generates a world; it is not a fitted :class:`mixsearch.laws.Law`.

    For domain i, mixture r ``[K]``, model size N and tokens D, with ``s = ln(N / n_ref)``::

        L_i(r; N, D) = E_i + A / N^alpha + B / D^beta
                       + k_i * exp(-a_i * s) * exp(sum_j (T_ij + s * U_ij) * r_j)

    The first line is a Chinchilla-style floor that does not depend on the mixture. The
    second is the data mixing law of Ye et al. (2024) with a cross-domain interaction matrix
    ``T`` (diagonal: in-domain data helps; off-diagonal: transfer < 0, interference > 0).
    ``a`` (domains improve with scale at different rates) and ``U`` (transfer changes with
    scale) move the best mixture as N grows; with both zero the optimum is scale-free.

    Attributes:
        domains: Domain names, ``K`` of them.
        E, k, a: ``[K]`` irreducible loss, mixing-law scale, and its decay rate with scale.
        T, U: ``[K, K]`` interactions at ``n_ref`` and their change per unit of ``s``.
        n_ref: Model size at which ``T`` and ``k`` hold.
        A, alpha, B, beta: Chinchilla-style floor terms.
    """

    domains: tuple[str, ...]
    E: np.ndarray
    k: np.ndarray
    a: np.ndarray
    T: np.ndarray
    U: np.ndarray
    n_ref: float = 25e6
    A: float = 400.0
    alpha: float = 0.34
    B: float = 410.0
    beta: float = 0.28

    def losses(self, r: np.ndarray, n_params: float, tokens: float) -> np.ndarray:
        """Per-domain losses.

        Args:
            r: ``[n, K]`` mixtures.
            n_params: Model size N.
            tokens: Training tokens D.

        Returns:
            ``[n, K]`` losses.
        """
        s = math.log(n_params / self.n_ref)
        floor = self.E + self.A / n_params**self.alpha + self.B / tokens**self.beta
        scale = self.k * np.exp(-self.a * s)
        t = self.T + s * self.U
        return floor[None, :] + scale[None, :] * np.exp(np.atleast_2d(r) @ t.T)

    def objective(self, r: np.ndarray, n_params: float, tokens: float) -> np.ndarray:
        """Mean of the per-domain losses, ``[n]``."""
        return self.losses(r, n_params, tokens).mean(axis=1)


_DOMAINS6 = ("web", "code", "books", "wiki", "math", "papers")
# Interactions at 25M: rows are the evaluated domain, columns the training domain.
_T6 = np.array(
    [
        [-2.0, 0.3, -0.4, -0.5, 0.4, 0.1],
        [0.2, -3.2, 0.3, 0.2, -0.6, 0.2],
        [-0.6, 0.3, -1.8, -0.2, 0.4, 0.1],
        [-0.5, 0.2, -0.3, -2.2, 0.2, -0.4],
        [0.3, -0.5, 0.4, 0.2, -3.6, -0.3],
        [-0.2, 0.1, 0.2, -0.4, -0.2, -2.6],
    ]
)
# Change per e-fold of model size: in-domain returns diminish, web transfers more to every
# domain, code and papers transfer more to math, papers to wiki, math to code.
_U6 = np.array(
    [
        [0.14, 0.0, 0.0, 0.0, 0.0, 0.0],
        [-0.06, 0.10, 0.0, 0.0, -0.06, 0.0],
        [-0.06, 0.0, 0.10, 0.0, 0.0, 0.0],
        [-0.06, 0.0, 0.0, 0.10, 0.0, -0.06],
        [-0.06, -0.14, 0.0, 0.0, 0.10, -0.08],
        [-0.06, 0.0, 0.0, 0.0, 0.0, 0.10],
    ]
)
_E6 = np.array([2.2, 1.0, 2.4, 1.9, 1.2, 1.8])
_K6 = np.array([1.6, 2.0, 1.4, 1.5, 2.2, 1.7])
_A6 = np.array([0.16, 0.26, 0.18, 0.24, 0.30, 0.22])

# The parameters were set by hand for a world where proxies help but mislead: over random
# mixtures the 25M and 200M objectives rank with Spearman ~0.82, and the 25M optimum lands
# ~4% of the objective's range from the 200M optimum (L1 distance ~0.45).
SYNTHETIC_WORLDS: dict[str, "MixingWorld"] = {
    "mixing-shift": MixingWorld(_DOMAINS6, _E6, _K6, _A6, _T6, _U6),
    "mixing-static": MixingWorld(_DOMAINS6, _E6, _K6, np.full(6, float(_A6.mean())), _T6, np.zeros((6, 6))),
}

# Chinchilla-style ladder (D = 20 N): each rung costs 1/4 of the next.
SYNTHETIC_RUNGS = (
    Rung("25M", n_params=25_000_000, tokens=500_000_000),
    Rung("50M", n_params=50_000_000, tokens=1_000_000_000),
    Rung("100M", n_params=100_000_000, tokens=2_000_000_000),
    Rung("200M", n_params=200_000_000, tokens=4_000_000_000),
)


class SyntheticEvaluator:
    """Observes a :class:`MixingWorld` with noise: the ``synthetic`` world of studies and the bench.

    Args:
        world: Name in :data:`SYNTHETIC_WORLDS`.
        domains: The study's domain order (a permutation of the world's); default the world's.
        objective: The study's objective over the per-domain losses; default their mean.
        noise: Standard deviation of the *mean* loss over the domains at ``n_ref``
            parameters; each domain's loss gets ``noise * sqrt(K)``, and both shrink as
            ``(N / n_ref)^-0.35`` (small models are noisier across seeds).
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
        noise: float = DEFAULT_NOISE,
        seed: int = 0,
        pool: int | None = None,
        rungs: Sequence[str] = (),
    ) -> None:
        if world not in SYNTHETIC_WORLDS:
            raise ValueError(f"evaluator.options.world: unknown synthetic world {world!r}; known: {', '.join(SYNTHETIC_WORLDS)}")
        if not isinstance(noise, (int, float)) or isinstance(noise, bool) or not math.isfinite(noise) or noise < 0:
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
        self.objective = objective or Objective()
        self.noise = float(noise)
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
        if study.objective.metric is not None:
            raise ValueError(f"objective.metric: the synthetic world reports per-domain losses, not {study.objective.metric!r}")
        return cls(
            opts["world"],
            study.domain_names,
            study.objective,
            opts.get("noise", DEFAULT_NOISE),
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
        losses = self.true_losses(w[None, :], rung.n_params, rung.tokens)[0]
        sd = self.noise * math.sqrt(len(self.domains)) * (rung.n_params / self.world.n_ref) ** -0.35
        key = f"{self.seed}:{candidate.seed}:{rung.name}:{rung.n_params}:{rung.tokens}:" + ",".join(f"{x:.6f}" for x in w)
        rng = np.random.default_rng(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little"))
        observed = losses + sd * rng.standard_normal(losses.shape)
        domain_losses = {d: float(v) for d, v in zip(self.domains, observed)}
        return TrialResult(
            domain_losses=domain_losses,
            objective=self.objective.value(domain_losses),
            cost=rung.run_cost,
            seconds=0.0,
            metrics={"n_params": rung.n_params, "tokens": rung.tokens, "noise_sd": sd},
        )

    # -- the truth (the bench scores recommendations with it) --------------------------

    def true_losses(self, weights: np.ndarray, n_params: float, tokens: float) -> np.ndarray:
        """Noise-free per-domain losses ``[n, K]`` (study domain order) of mixtures ``[n, K]``."""
        r = np.atleast_2d(np.asarray(weights, dtype=float))
        inv = np.argsort(self._order)  # study order -> world order
        return self.world.losses(r[:, inv], n_params, tokens)[:, self._order]

    def true_objective(self, weights: np.ndarray, rung: Rung) -> np.ndarray:
        """Noise-free objective ``[n]`` of mixtures ``[n, K]`` (or one ``[K]``) at a rung."""
        assert rung.n_params is not None and rung.tokens is not None
        losses = self.true_losses(weights, rung.n_params, rung.tokens)
        return np.array([self.objective.value(dict(zip(self.domains, row))) for row in losses])

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


def default_ladder(world: str, target: str | None = None) -> "FidelityLadder":
    """The bench's ladder for a synthetic world: :data:`SYNTHETIC_RUNGS` up to ``target`` (default the largest).

    Raises:
        ValueError: ``target`` is not one of its rungs.
    """
    from mixsearch.study import FidelityLadder

    names = [r.name for r in SYNTHETIC_RUNGS]
    if target is not None and target not in names:
        raise ValueError(f"--target: {target!r} is not a rung of synthetic:{world}; rungs: {', '.join(names)}")
    t = names.index(target or names[-1])
    return FidelityLadder(SYNTHETIC_RUNGS[: t + 1], SYNTHETIC_RUNGS[t])
