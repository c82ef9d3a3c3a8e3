"""Peers built on other libraries: Optuna (TPE, GPSampler) and Ax (``Client``).

All three are single-fidelity (the target rung, or a named rung) and stateless: every
``propose`` builds a fresh in-memory Optuna study or Ax client, re-adds the history at that
rung as completed trials and the pending trials as running ones, asks for ``q`` points and
throws the study away. In pool mode each continuous proposal becomes the nearest free pool
entry at the rung.

Simplex parametrisations:

* Optuna sees ``K - 1`` numbers ``u_i`` in [0, 1], mapped to the simplex by stick-breaking
  with the Beta(1, K-1-i) inverse CDF (``v_i = 1 - (1 - u_i)^(1/(K-1-i))``, ``w_i = v_i *
  remaining``). Uniform ``u`` gives the uniform (Dirichlet(1)) distribution on the simplex,
  so Optuna's random start-up trials are uniform mixtures, and the map is a bijection, so
  observed mixtures round-trip exactly. Bounds are then met by Euclidean projection.
* Ax sees the free weights but the last as range parameters within their bounds, a
  ``sum <= 1 - fixed - lower_last`` parameter constraint (and ``>=`` when the last weight
  has an upper bound), and the last weight as a derived parameter ``1 - sum``.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

from mixsearch.candidate import Candidate, canonical_weights
from mixsearch import simplex
from mixsearch.propose.base import ProposalContext, Recommendation, as_candidates, best_observed
from mixsearch.propose.baselines import target_rung
from mixsearch.propose.pool import nearest_free


# ---------------------------------------------------------------------------------------
# Stick-breaking reparametrisation
# ---------------------------------------------------------------------------------------


def stick_breaking_to_simplex(u: np.ndarray) -> np.ndarray:
    """Map unit-cube points to the simplex (uniform in, uniform out).

    Args:
        u: ``[n, K-1]`` numbers in [0, 1].

    Returns:
        ``[n, K]`` mixtures.
    """
    u = np.clip(np.atleast_2d(np.asarray(u, dtype=float)), 0.0, 1.0)
    n, km1 = u.shape
    w = np.zeros((n, km1 + 1))
    remaining = np.ones(n)
    for i in range(km1):
        v = 1.0 - (1.0 - u[:, i]) ** (1.0 / (km1 - i))
        w[:, i] = v * remaining
        remaining = remaining * (1.0 - v)
    w[:, km1] = remaining
    return w


def simplex_to_stick_breaking(w: np.ndarray) -> np.ndarray:
    """Inverse of :func:`stick_breaking_to_simplex`.

    Args:
        w: ``[n, K]`` mixtures.

    Returns:
        ``[n, K-1]`` unit-cube points (a stick already used up maps its later ``u`` to 0).
    """
    w = np.atleast_2d(np.asarray(w, dtype=float))
    n, k = w.shape
    u = np.zeros((n, k - 1))
    remaining = np.ones(n)
    for i in range(k - 1):
        v = np.where(remaining > 1e-12, w[:, i] / np.maximum(remaining, 1e-300), 0.0)
        v = np.clip(v, 0.0, 1.0)
        u[:, i] = 1.0 - (1.0 - v) ** (k - 1 - i)
        remaining = np.maximum(remaining - w[:, i], 0.0)
    return np.clip(u, 0.0, 1.0)


@contextlib.contextmanager
def _quiet(*prefixes: str) -> Iterator[Callable[[], None]]:
    """Silence library loggers (every logger under ``prefixes``) and warnings for a call.

    Yields a function that silences loggers created since entry (Ax makes its loggers, with
    their own levels and handlers, when its modules are first imported).
    """
    saved: dict[str, int] = {}

    def hush() -> None:
        names = list(prefixes) + [n for n in list(logging.root.manager.loggerDict) if n.split(".")[0] in prefixes]
        for name in names:
            if name not in saved:
                lg = logging.getLogger(name)
                saved[name] = lg.level
                lg.setLevel(logging.ERROR)

    hush()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield hush
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def _rung_history(ctx: ProposalContext, rung: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Observed mixtures ``[n, K]``, their objectives ``[n]`` and pending mixtures ``[m, K]`` at ``rung``."""
    w, y = ctx.history.at_rung(rung)
    h = ctx.history
    pend = np.array([pw for pw, r in zip(h.pending_weights, h.pending_rungs) if r == rung]).reshape(-1, ctx.space.dim)
    return w, y, pend


def _finish(ctx: ProposalContext, weights: list[np.ndarray], rung: str) -> list[Candidate]:
    """Candidates from continuous proposals: projected into the bounds, or mapped to the pool."""
    if not weights:
        return []
    w = np.stack([simplex.project(x, ctx.space) for x in weights])
    if ctx.pool is not None:
        return nearest_free(ctx, w, rung)
    return as_candidates(w, [rung] * len(w), ctx.trial_seed)


# ---------------------------------------------------------------------------------------
# Optuna
# ---------------------------------------------------------------------------------------


@dataclass
class _OptunaPeer:
    rung: str | None = None
    n_startup_trials: int = 5

    def _sampler(self, seed: int) -> Any:
        raise NotImplementedError

    def propose(self, ctx: ProposalContext, q: int) -> list[Candidate]:
        import optuna
        from optuna.distributions import FloatDistribution
        from optuna.trial import TrialState, create_trial

        rung = target_rung(ctx, self.rung)
        k = ctx.space.dim
        dists = {f"u{i}": FloatDistribution(0.0, 1.0) for i in range(k - 1)}
        w_obs, y_obs, w_pend = _rung_history(ctx, rung)
        with _quiet("optuna"):
            verbosity = optuna.logging.get_verbosity()
            optuna.logging.set_verbosity(optuna.logging.ERROR)
            try:
                study = optuna.create_study(direction="minimize", sampler=self._sampler(ctx.seed))
                for u, y in zip(simplex_to_stick_breaking(w_obs), y_obs):
                    study.add_trial(create_trial(params=_params(u), distributions=dists, value=float(y)))
                for u in simplex_to_stick_breaking(w_pend):
                    study.add_trial(create_trial(state=TrialState.RUNNING, params=_params(u), distributions=dists))
                out = self._ask(ctx, study, dists, q, rung, dict(zip(_keys(w_obs, ctx), y_obs)))
            finally:
                optuna.logging.set_verbosity(verbosity)
        return _finish(ctx, out, rung)

    def _ask(self, ctx: ProposalContext, study: Any, dists: dict[str, Any], q: int, rung: str, seen: dict[tuple[float, ...], float]) -> list[np.ndarray]:
        """Ask ``q`` new mixtures; asked trials stay RUNNING so later asks of the batch see them.

        A point that lands on a mixture already run (the stick-breaking map sends a whole
        face of the cube, ``u_i = 1``, to one mixture) is told its known value and asked
        again, as a ledger would answer it without rerunning; repeated misses fall back to
        a uniform random mixture.
        """
        k = ctx.space.dim
        taken_here = set(_keys(ctx.history.pending_weights[[r == rung for r in ctx.history.pending_rungs]], ctx))
        out: list[np.ndarray] = []
        for _ in range(4 * q + 8):
            if len(out) >= q:
                break
            trial = study.ask(dists)
            u = np.array([trial.params[f"u{i}"] for i in range(k - 1)])
            w = simplex.project(stick_breaking_to_simplex(u[None, :])[0], ctx.space)
            key = canonical_weights(w)
            if ctx.pool is None and key in seen:
                study.tell(trial, seen[key])
                continue
            if ctx.pool is None and key in taken_here:
                continue  # pending or asked in this batch: leave it RUNNING, ask again
            taken_here.add(key)
            out.append(w)
        if len(out) < q:
            out += list(simplex.sample(q - len(out), ctx.space, ctx.rng()))
        return out

    def recommend(self, ctx: ProposalContext) -> Recommendation | None:
        return best_observed(ctx)


def _keys(w: np.ndarray, ctx: ProposalContext) -> list[tuple[float, ...]]:
    """Canonical keys of mixtures ``[n, K]`` as the ledger would store them."""
    return [canonical_weights(simplex.project(x, ctx.space)) for x in np.atleast_2d(w).reshape(-1, ctx.space.dim)]


def _params(u: np.ndarray) -> dict[str, float]:
    return {f"u{i}": float(x) for i, x in enumerate(u)}


@dataclass
class OptunaTPE(_OptunaPeer):
    """Optuna's multivariate TPE on the stick-breaking cube, single fidelity.

    Args:
        rung: Rung to run at; default the target (or the costliest runnable rung).
        n_startup_trials: Random (uniform-simplex) trials before TPE models the history.
        multivariate: Model the ``K - 1`` coordinates jointly (they interact through the stick).
    """

    multivariate: bool = True

    def _sampler(self, seed: int) -> Any:
        import optuna

        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=self.n_startup_trials, multivariate=self.multivariate, constant_liar=True)


@dataclass
class OptunaGP(_OptunaPeer):
    """Optuna's GPSampler (GP with log-EI) on the stick-breaking cube, single fidelity.

    Args:
        rung: Rung to run at; default the target (or the costliest runnable rung).
        n_startup_trials: Random (uniform-simplex) trials before the GP takes over.
    """

    def _sampler(self, seed: int) -> Any:
        import optuna

        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=self.n_startup_trials)


# ---------------------------------------------------------------------------------------
# Ax
# ---------------------------------------------------------------------------------------


@dataclass
class AxClient:
    """Ax's ``Client`` (BoTorch modular GP + qLogNEI) over K-1 weights, single fidelity.

    The first ``n_init`` trials at the rung are the centre of the simplex, then uniform
    random mixtures from :mod:`mixsearch.simplex`: Ax's own Sobol initialisation
    under a 16-dimensional ``sum <= 1`` constraint falls back to rejection sampling and takes
    ~10 s per call. After that every ask is Ax's model-based step (``method="fast"``).

    Args:
        rung: Rung to run at; default the target (or the costliest runnable rung).
        n_init: Observed trials at the rung before Ax's model takes over.
        method: Ax generation method for the model-based phase (``"fast"`` or ``"quality"``).
        optimizer_kwargs: Options for BoTorch's ``optimize_acqf`` inside Ax (``num_restarts``,
            ``raw_samples``); None keeps Ax's defaults and ``method``. Ax's defaults take
            10-40 s per ask on a 2-core machine; tests pass small values.
    """

    rung: str | None = None
    n_init: int = 5
    method: str = "fast"
    optimizer_kwargs: dict[str, Any] | None = None

    def propose(self, ctx: ProposalContext, q: int) -> list[Candidate]:
        rung = target_rung(ctx, self.rung)
        w_obs, y_obs, w_pend = _rung_history(ctx, rung)
        lo, hi = simplex.bounds_arrays(ctx.space)
        free = np.flatnonzero(hi - lo > 1e-12)
        if len(free) <= 1 or len(w_obs) < self.n_init:
            return self._initial(ctx, q, rung)
        try:
            out = self._ax_step(ctx, q, w_obs, y_obs, w_pend, lo, hi, free)
        except Exception as exc:  # noqa: BLE001 - a failed model fit must not end a study
            warnings.warn(f"ax: generation failed ({type(exc).__name__}: {exc}); proposing random mixtures for this ask", RuntimeWarning, stacklevel=2)
            return self._random(ctx, q, rung)
        return _finish(ctx, out, rung)

    def _initial(self, ctx: ProposalContext, q: int, rung: str) -> list[Candidate]:
        h = ctx.history
        started = any(r == rung for r in (*h.rungs, *h.pending_rungs, *h.failed_rungs))
        first = [] if started else [simplex.centre(ctx.space)]
        rest = list(simplex.sample(max(q - len(first), 0), ctx.space, ctx.rng()))
        return _finish(ctx, (first + rest)[:q], rung)

    def _random(self, ctx: ProposalContext, q: int, rung: str) -> list[Candidate]:
        return _finish(ctx, list(simplex.sample(q, ctx.space, ctx.rng())), rung)

    def _ax_step(self, ctx: ProposalContext, q: int, w_obs: np.ndarray, y_obs: np.ndarray, w_pend: np.ndarray, lo: np.ndarray, hi: np.ndarray, free: np.ndarray) -> list[np.ndarray]:
        with _quiet("ax", "botorch", "gpytorch", "linear_operator") as hush:
            from ax import Client
            from ax.api.configs import DerivedParameterConfig, RangeParameterConfig

            hush()

            names = [f"x{i}" for i in range(len(free))]
            rhs = 1.0 - float(lo[np.setdiff1d(np.arange(len(lo)), free)].sum())
            last = int(free[-1])
            head = " + ".join(names[:-1])
            params: list[Any] = [RangeParameterConfig(name=n, bounds=(float(lo[j]), float(hi[j])), parameter_type="float") for n, j in zip(names[:-1], free[:-1])]
            params.append(DerivedParameterConfig(name=names[-1], expression_str=f"{rhs!r} - " + " - ".join(names[:-1]), parameter_type="float"))
            cap, floor = rhs - float(lo[last]), rhs - float(hi[last])
            constraints = [f"{head} <= {cap!r}"]
            if floor > 0:
                constraints.append(" + ".join(f"-{n}" for n in names[:-1]).replace("+ -", "- ") + f" <= {-floor!r}")
            client = Client(random_seed=int(ctx.seed))
            client.configure_experiment(parameters=params, parameter_constraints=constraints, name="mixsearch")
            client.configure_optimization(objective="-loss")
            if self.optimizer_kwargs is None:
                client.configure_generation_strategy(method=self.method, initialization_budget=0, initialize_with_center=False)  # type: ignore[arg-type]
            else:
                client.set_generation_strategy(_modular_strategy(dict(self.optimizer_kwargs)))

            def parameterisation(w: np.ndarray) -> dict[str, float]:
                x = _inside(w[free[:-1]], lo[free[:-1]], hi[free[:-1]], floor, cap)
                return {**{n: float(v) for n, v in zip(names[:-1], x)}, names[-1]: float(rhs - x.sum())}

            for w, y in zip(w_obs, y_obs):
                client.complete_trial(client.attach_trial(parameterisation(w)), {"loss": float(y)})
            for w in w_pend:
                client.attach_trial(parameterisation(w))
            trials = client.get_next_trials(max_trials=q)
        out = []
        for p in trials.values():
            w = lo.copy()
            x = np.array([float(p[n]) for n in names[:-1]])
            w[free[:-1]] = x
            w[last] = rhs - x.sum()
            out.append(w)
        return out

    def recommend(self, ctx: ProposalContext) -> Recommendation | None:
        return best_observed(ctx)


def _modular_strategy(optimizer_kwargs: dict[str, Any]) -> Any:
    """Ax's BoTorch-modular node alone, with options for its acquisition optimiser."""
    from ax.adapter.registry import Generators
    from ax.generation_strategy.generation_strategy import GenerationNode, GenerationStrategy
    from ax.generation_strategy.generator_spec import GeneratorSpec

    spec = GeneratorSpec(generator_enum=Generators.BOTORCH_MODULAR, generator_gen_kwargs={"model_gen_options": {"optimizer_kwargs": optimizer_kwargs}})
    return GenerationStrategy(name="MBM", nodes=[GenerationNode(name="MBM", generator_specs=[spec])])


def _inside(x: np.ndarray, lo: np.ndarray, hi: np.ndarray, floor: float, cap: float) -> np.ndarray:
    """Nudge ``x`` ``[m]`` into its box and ``floor <= sum(x) <= cap`` (rounding residue only)."""
    x = np.clip(x, lo, hi)
    s = x.sum()
    if s > cap:
        x = lo + (x - lo) * max(cap - lo.sum(), 0.0) / max(s - lo.sum(), 1e-300) * (1 - 1e-12)
    elif s < floor:
        x = hi - (hi - x) * max(hi.sum() - floor, 0.0) / max(hi.sum() - s, 1e-300) * (1 - 1e-12)
    return x
