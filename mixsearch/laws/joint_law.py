"""The fitted joint law of mixture and scale: predict at any mixture, N and D, and the best mixture.

A :class:`JointLaw` is what :func:`mixsearch.laws.joint.fit_joint` returns and what a planner
loads from a ``mixsearch.law/v1`` file (kind ``joint``). Its intervals carry the bootstrap
draws, the model error measured by leaving the largest rung out (growing with the
log-distance from the fitted rungs) and, for a new run, the run noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

import numpy as np

from mixsearch.laws.joint_formula import LOG_SHARE_FLOOR, Term, term_values
from mixsearch.laws.law import _NOISE_SEED, Law, Prediction, _quantiles, check_inputs, scale_factor
from mixsearch.laws.mixture import MixtureOptimum, minimise_on_simplex, mixture_rows

_MIN_ERROR_DRAWS = 1000  # draws of the added model error and run noise per prediction
TOTAL = "(total)"  # key of the weighted total beside the targets in held-out results
FORMULA = (
    "L_i(w, N, D) = E_i(w) + A_i(w) / N^alpha_i + B_i(w) / D^beta_i, each part a sum of terms "
    "k * exp(t . w + u . log(w + eps)) (extra.terms; E has a floor c); L(w) = sum_i v_i L_i / sum_i v_i"
)

ASSUMED_MODEL_ERROR = 0.01
"""Log-loss sd per unit log-distance beyond the runs when leaving a rung out cannot measure it
(fewer than three rungs, or a refit without the largest that fails). Chosen on the development worlds, between the 0.004-0.005 measured
with five rungs of the moving-optimum world and the 0.036-0.040 its two-size inner hold-out
measured (docs/BENCHMARKS.md); an assumption, and recorded as one."""

ASSUMED_MODEL_ERROR_RULE = (
    "not measured (leaving the largest rung out could not be refitted, see reason): log-loss sd += assumed_tau * d(x), d(x) = natural-log distance in "
    "(log N, log D) from x to the nearest fitted rung; assumed_tau is mixsearch.laws.joint.ASSUMED_MODEL_ERROR"
)

MODEL_ERROR_RULE = (
    "log-loss sd += tau * d(x) * max(1, d(x) / d_h), d(x) = natural-log distance in (log N, log D) from x to the nearest "
    "fitted rung, d_h = that of the held-out rung (linear up to where the error was measured, quadratic beyond: a law "
    "fitted across the data matches its level and slope, so what is left grows with the curvature); "
    "tau from leave_one_scale_out: refit without the largest rung (N*D), tau = the level-quantile over its runs of "
    "sqrt(max(0, (e/z)^2 - s^2)) / d, e = log error, s = the refit's stated log spread for a new run, z = normal quantile"
)



@dataclass(frozen=True)
class JointOptimum(MixtureOptimum):
    """The best mixture at one scale under a joint law (:class:`MixtureOptimum` plus the scale).

    Attributes:
        N, D: The scale it is for (``None`` for a law without that input).
        factor_N, factor_D: How far that scale lies beyond the fitted runs (1 inside).
    """

    N: float | None = None
    D: float | None = None
    factor_N: float | None = None
    factor_D: float | None = None


@dataclass(frozen=True, eq=False)
class JointLaw(Law):
    """The joint law of mixture and scale over ``extra["components"]`` for ``extra["targets"]``.

    ``predict(weights=..., N=..., D=...)`` (``steps=`` for a law fitted on steps) gives the
    weighted total; ``target=`` picks one domain. Valid at any scale the law has terms
    for; ``extrapolated``, ``factor_N`` and ``factor_D`` say how far beyond the runs.
    """

    kind: ClassVar[str] = "joint"

    @property
    def formula(self) -> str:
        if self.form != "chinchilla":
            raise KeyError(self.form)
        return FORMULA

    @property
    def components(self) -> list[str]:
        return list(self.extra["components"])

    @property
    def targets(self) -> list[str]:
        return list(self.extra["targets"])

    @property
    def terms(self) -> tuple[Term, ...]:
        return tuple(Term(**t) for t in self.extra["terms"])

    @property
    def d_input(self) -> str:
        """The name of the data input: ``"D"`` (tokens) or ``"steps"``."""
        return str(self.extra.get("d_input", "D"))

    @property
    def model_error(self) -> Mapping[str, Any]:
        """What leaving the largest rung out showed (``measured``; ``tau`` per target; ``reason`` when not measured)."""
        return self.extra.get("model_error") or {"measured": False, "reason": "not recorded"}

    def target_weights(self) -> np.ndarray:
        """``[T]`` weights of the targets in the total."""
        tw = self.extra.get("target_weights") or {}
        return np.array([float(tw.get(t, 1.0)) for t in self.targets])

    def mixture_array(self, weights: Any) -> np.ndarray:
        """Mixtures as ``[m, K]`` in component order, renormalised to sum to one."""
        return mixture_rows(weights, self.components)

    # -- inputs -------------------------------------------------------------------------

    def _scale_input(self, key: str, value: Any, m: int) -> np.ndarray:
        """A scale input as ``[m]``: required when the law has that term, else optional and equal to the runs' one value."""
        part = "A" if key == "N" else "B"
        has_term = any(t.part == part for t in self.terms)
        known = self.data_range.get(key)
        if value is None:
            if has_term:
                raise ValueError(f"{self.name}: missing input(s) {key}")
            if known is None:
                return np.ones(m)
            return np.full(m, float(known[0]))
        a = np.atleast_1d(np.asarray(value, dtype=float)).reshape(-1)
        if a.size == 0 or not np.all(np.isfinite(a)) or np.any(a <= 0):
            raise ValueError(f"{key}: must be positive finite numbers, got {value!r}")
        if not has_term:
            if known is None:
                raise ValueError(f"{self.name}: {key}= given but the law has no {key} input")
            if not np.allclose(a, float(known[0]), rtol=1e-6):
                why = self.extra.get("identifiability", {}).get(key, f"the runs share one {key}")
                raise ValueError(f"{self.name}: fitted at {key}={float(known[0]):.6g} only, asked for {key}={value}; {why}")
        return a

    def _parse(self, inputs: dict[str, Any]) -> tuple[dict[str, np.ndarray], bool]:
        d = self.d_input
        check_inputs(self, inputs, ("weights",), ("N", d, "target"))
        target = inputs.get("target")
        if target is not None and target not in self.targets:
            raise ValueError(f"target: unknown {target!r}; the law has {', '.join(self.targets)}")
        w = inputs["weights"]
        r = self.mixture_array(w)
        scale = {k: self._scale_input(k, inputs.get(k), r.shape[0]) for k in ("N", d)}
        sizes = {r.shape[0]} | {v.size for v in scale.values()}
        m = max(sizes)
        if not sizes <= {1, m}:
            raise ValueError(f"inputs do not broadcast (weights: {r.shape[0]} rows, N: {scale['N'].size}, {d}: {scale[d].size})")
        r = np.broadcast_to(r, (m, r.shape[1]))
        x = {f"w_{c}": col for c, col in zip(self.components, r.T)}
        x.update({k: np.broadcast_to(v, (m,)).astype(float) for k, v in scale.items()})
        x["__target__"] = np.full(m, -1 if target is None else self.targets.index(target))
        scalar = (isinstance(w, Mapping) or np.ndim(w) == 1) and all(np.ndim(inputs.get(k)) == 0 for k in ("N", d))
        return x, scalar

    def _outside(self, x: dict[str, np.ndarray]) -> np.ndarray:
        return super()._outside({k: v for k, v in x.items() if k != "__target__"})

    # -- evaluation ---------------------------------------------------------------------

    def domain_losses(self, P: np.ndarray, x: dict[str, np.ndarray]) -> np.ndarray:
        """Per-target losses ``[B, T, m]`` for public parameter rows ``P [B, p]`` at parsed inputs ``x``."""
        terms = self.terms
        k = len(self.components)
        q = sum(t.n_public(k) for t in terms) + any(t.part == "A" for t in terms) + any(t.part == "B" for t in terms)
        w = np.column_stack([x[f"w_{c}"] for c in self.components])
        log_n, log_d = np.log(x["N"]), np.log(x[self.d_input])
        eps = float(self.extra.get("eps", LOG_SHARE_FLOOR))
        out = [term_values(P[:, i * q : (i + 1) * q], terms, w, log_n, log_d, eps).sum(axis=0) for i in range(len(self.targets))]
        return np.stack(out, axis=1)

    def _evaluate(self, P: np.ndarray, x: dict[str, np.ndarray]) -> np.ndarray:
        losses = self.domain_losses(P, x)
        target = int(x["__target__"][0])
        if target >= 0:
            return losses[:, target, :]
        tw = self.target_weights()
        return np.einsum("t,btm->bm", tw, losses) / tw.sum()

    def distance(self, x: dict[str, np.ndarray]) -> np.ndarray:
        """``[m]`` natural-log distance in (log N, log D) from each input to the nearest fitted rung.

        Only the scale inputs the law has terms for count; 0 at a fitted rung.
        """
        rungs = np.asarray(self.extra.get("rungs") or [], dtype=float).reshape(-1, 2)
        m = len(x["N"])
        if rungs.size == 0:
            return np.zeros(m)
        use = [any(t.part == "A" for t in self.terms), any(t.part == "B" for t in self.terms)]
        pts = np.log(np.column_stack([x["N"], x[self.d_input]]))[:, use]
        ref = np.log(rungs)[:, use]
        if pts.shape[1] == 0:
            return np.zeros(m)
        return np.sqrt(((pts[:, None, :] - ref[None, :, :]) ** 2).sum(axis=-1)).min(axis=1)

    def predictive_log_samples(self, x: dict[str, np.ndarray], observation: bool, model_error: bool = True) -> np.ndarray:
        """``[S, m]`` draws of log loss: parameter draws (or the point), plus the model error, plus run noise.

        Args:
            x: Parsed inputs.
            observation: Add the residual noise of a new run.
            model_error: Add ``tau · distance(x)`` (when the law measured tau), or the assumed
                error ``assumed_tau · distance(x)`` recorded when it could not.
        """
        draws = self.draws()
        P = self.vector()[None, :] if draws is None else draws
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            logs = np.log(self._evaluate(P, x))
        if logs.shape[0] < _MIN_ERROR_DRAWS:
            # A few bootstrap draws cannot carry the added error's quantiles: tile them.
            logs = np.tile(logs, (-(-_MIN_ERROR_DRAWS // logs.shape[0]), 1))
        key = self._error_key(x)
        sd = np.zeros(logs.shape[1])
        me = self.model_error
        tau = (me.get("tau") or {}).get(key) if model_error and me.get("measured") else None
        if tau:
            d = self.distance(x)
            sd = sd + float(tau) * d * np.maximum(1.0, d / float(me["distance"]))
        elif model_error and me.get("assumed_tau"):
            sd = sd + float(me["assumed_tau"]) * self.distance(x)
        noise = self._noise_scale(key) if observation else 0.0
        total_sd = np.sqrt(sd**2 + noise**2)
        if np.any(total_sd > 0):
            rng = np.random.default_rng(_NOISE_SEED)
            logs = logs + rng.normal(0.0, 1.0, size=logs.shape) * total_sd[None, :]
        return logs

    def _error_key(self, x: dict[str, np.ndarray]) -> str:
        target = int(x["__target__"][0])
        return TOTAL if target < 0 else self.targets[target]

    def _noise_scale(self, key: str) -> float:
        if key == TOTAL:
            return float(self.diagnostics.get("residual_scale") or 0.0)
        return float((self.diagnostics.get("per_target") or {}).get(key, {}).get("residual_scale") or 0.0)

    def predict(self, *, observation: bool = False, **inputs: Any) -> Prediction:
        """Predict at a mixture and a scale, with an interval, the extrapolation flag and factors.

        The interval is the central ``level`` range of: the bootstrap draws of the law,
        widened by the measured model error ``tau · d`` (d: log-distance to the nearest
        fitted rung; when it could not be measured, by the assumed ``assumed_tau · d`` the
        law recorded instead, see ``model_error``), and with ``observation=True`` by the
        noise of one run.

        Args:
            observation: Cover a new run rather than the law's mean.
            **inputs: ``weights`` (required), ``N``, ``D`` or ``steps``, ``target``.

        Raises:
            ValueError: a missing, unknown or out-of-domain input, or a scale the law has
                no term for (e.g. another D when every run had one D and no prior).
        """
        x, scalar = self._parse(dict(inputs))
        value = self._evaluate(self.vector()[None, :], x)[0]
        lower = upper = None
        if self.draws() is not None or observation or self.model_error.get("measured") or self.model_error.get("assumed_tau"):
            logs = self.predictive_log_samples(x, observation)
            lo, hi = _quantiles(logs, self.level)
            lower, upper = np.exp(lo), np.exp(hi)
        outside = self._outside(x)
        fn = scale_factor(x["N"], self.data_range.get("N"))
        fd = scale_factor(x[self.d_input], self.data_range.get(self.d_input))
        if scalar:
            item = lambda v: None if v is None else float(v[0])  # noqa: E731
            return Prediction(float(value[0]), item(lower), item(upper), bool(outside[0]), self.level, item(fn), item(fd))
        return Prediction(value, lower, upper, outside, self.level, fn, fd)

    def predict_domains(self, weights: Any, **scale: Any) -> dict[str, np.ndarray | float]:
        """Each target's predicted loss at the point estimate (``scale``: ``N=``, ``D=``/``steps=``)."""
        x, scalar = self._parse({"weights": weights, **scale})
        losses = self.domain_losses(self.vector()[None, :], x)[0]
        return {t: (float(v[0]) if scalar else v) for t, v in zip(self.targets, losses)}

    def optimum(
        self,
        lower: Mapping[str, float] | None = None,
        upper: Mapping[str, float] | None = None,
        n_starts: int = 16,
        seed: int = 0,
        **scale: Any,
    ) -> JointOptimum:
        """The mixture minimising the predicted total at one scale, with its interval.

        Args:
            lower: Domain → lower bound (missing: 0).
            upper: Domain → upper bound (missing: 1).
            n_starts: SLSQP starts (the centre and random feasible mixtures).
            seed: Seed of the starts.
            **scale: ``N=``, ``D=`` (or ``steps=``): one scale, scalars.

        Raises:
            ValueError: unknown domains, an empty feasible set, a scale the law cannot predict at.
        """
        probe, _ = self._parse({"weights": np.full(len(self.components), 1.0 / len(self.components)), **scale})
        if len(probe["N"]) != 1:
            raise ValueError(f"{self.name}: optimum is for one scale; pass scalar N and {self.d_input}")
        P = self.vector()[None, :]
        tw = self.target_weights() / self.target_weights().sum()
        k = len(self.components)
        terms = self.terms
        q = P.shape[1] // len(self.targets)
        eps = float(self.extra.get("eps", LOG_SHARE_FLOOR))
        log_n, log_d = np.log(probe["N"]), np.log(probe[self.d_input])

        def total(r: np.ndarray) -> tuple[float, np.ndarray]:
            value, grad = 0.0, np.zeros(k)
            for i in range(len(self.targets)):
                block = P[:, i * q : (i + 1) * q]
                vals = term_values(block, terms, r[None, :], log_n, log_d, eps)[:, 0, 0]  # [M]
                j = 0
                for term, v in zip(terms, vals):
                    j += 1
                    if term.features in ("linear", "both"):
                        grad += tw[i] * v * block[0, j : j + k]
                        j += k
                    if term.features in ("log", "both"):
                        grad += tw[i] * v * block[0, j : j + k] / (r + eps)
                        j += k
                value += tw[i] * float(vals.sum())
            return value, grad

        best_r = minimise_on_simplex(total, self.components, lower, upper, n_starts, seed)
        pred = self.predict(weights=best_r, **scale)
        return JointOptimum(
            weights={c: float(w) for c, w in zip(self.components, best_r)},
            value=float(pred.value),
            lower=pred.lower,
            upper=pred.upper,
            extrapolated=bool(pred.extrapolated),
            N=None if scale.get("N") is None else float(scale["N"]),
            D=None if scale.get(self.d_input) is None else float(scale[self.d_input]),
            factor_N=pred.factor_N,
            factor_D=pred.factor_D,
        )


@dataclass(frozen=True)
class ScaleHoldout:
    """Leave-one-rung-out: the law refitted without its largest rung, predicting that rung.

    Attributes:
        held_out: The rung left out: ``{"N": …, "D": …}`` (``steps`` for a law on steps).
        factor_N, factor_D: How far it lies beyond the remaining runs (max(1, x / max, min / x)).
        distance: Its log-distance to the nearest remaining rung (what the model error grows with).
        level: Central probability of the stated intervals.
        observed: Target (and ``"(total)"``) → ``[m]`` losses of the held-out runs.
        predicted, lower, upper: The refit's predictions and stated intervals (for a new run:
            parameter draws plus run noise, and with ``calibrated`` the refit's own model error).
        spread: The standard deviation of the stated log-loss draws, per run.
        coverage: Fraction of held-out runs inside their stated interval, per key.
        tau: Model error per unit distance that makes the interval cover ``level`` of the
            held-out runs: the ``level``-quantile over runs of √(max(0, (e/z)² − σ²)) / distance,
            with e the log error, σ the stated log spread and z the normal quantile.
        bias: Mean log error (observed − predicted) per key.
        rmse_log: Root-mean-square log error per key.
        law: The refitted law.
    """

    held_out: dict[str, float]
    factor_N: float
    factor_D: float
    distance: float
    level: float
    observed: dict[str, np.ndarray]
    predicted: dict[str, np.ndarray]
    lower: dict[str, np.ndarray]
    upper: dict[str, np.ndarray]
    spread: dict[str, np.ndarray]
    coverage: dict[str, float]
    tau: dict[str, float]
    bias: dict[str, float]
    rmse_log: dict[str, float]
    law: JointLaw = field(repr=False)

    def summary(self) -> dict[str, Any]:
        """JSON-ready: everything but the arrays and the refitted law."""
        return {
            "held_out": dict(self.held_out),
            "factor_N": self.factor_N,
            "factor_D": self.factor_D,
            "distance": self.distance,
            "level": self.level,
            "n_runs": int(len(next(iter(self.observed.values())))),
            "coverage": dict(self.coverage),
            "tau": dict(self.tau),
            "bias": dict(self.bias),
            "rmse_log": dict(self.rmse_log),
        }

__all__ = ["FORMULA", "JointLaw", "JointOptimum", "ScaleHoldout", "TOTAL"]
