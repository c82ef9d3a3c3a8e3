"""The joint law of mixture and scale: one law for every run at every rung.

Per target (validation) domain i, training mixture w on the simplex, model size N and
training tokens D (or steps)::

    L_i(w, N, D) = E_i(w) + A_i(w) / N^alpha_i + B_i / D^beta_i

Each part is a sum of exponential terms of the mixture,
``k · exp(t·w + u·log(w + eps))`` (a term uses t, u or both; ``E`` also has a constant
floor c), so the mixture that is best moves with N when ``A(w)`` and ``E(w)`` disagree.
It is fitted **jointly on every run at every scale** with the robust core
(:func:`mixsearch.laws.fit.fit_model`: log space, Huber, multi-start L-BFGS-B,
bootstrap stratified by rung), one target at a time, and the objective is the weighted
total Σ_i v_i L_i / Σ_i v_i, as for :class:`~mixsearch.laws.mixing.MixingLaw`.

Why this form (``"ll"``, the default for enough runs): on the RegMix development runs
(docs/BENCHMARKS.md, "Joint law of mixture and scale on RegMix") a floor plus one
exponential-linear and one log-share term ranks held-out mixtures at 60M better than Ye et
al.'s single exponential (Spearman 0.989 vs 0.955 on the most balanced quarter, held out),
within one standard error of a richer form with a second log-share term, which has a third
more parameters. A ridge on the mixture coefficients did not help held-out mixtures across
scales and is not offered.

What the runs cannot tell is said, not invented: with one D (or one N) in the runs the
D (N) term is absent unless ``priors`` fix it, and predicting at another D is refused;
with two sizes only, alpha rests on the mixture form and positivity (``diagnostics``
say so). The model error beyond the data is measured by :func:`leave_one_scale_out`
(refit without the largest rung, predict it) when there are three rungs or more, and the
law's intervals widen with log-distance from the fitted rungs by what it showed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np
from scipy.stats import norm

from mixsearch.laws.fit import FitError, FitOptions, FitResult, fit_model, logsumexp_terms
from mixsearch.laws.law import _NOISE_SEED, Law, Prediction, _quantiles, base_provenance, check_inputs, fit_settings, keep_draws, scale_factor
from mixsearch.laws.mixing import MixtureOptimum, loss_matrix, minimise_on_simplex, mixture_rows, target_weight_map, training_mixtures

LOG_SHARE_FLOOR = 0.01  # eps of log(w + eps); exploring on RegMix's held-out 1M mixtures, 3e-3 and 1e-2 tied, 3e-2 and 1e-3 were worse
RUNS_PER_PARAMETER = 3  # "auto" takes the richest form with at least this many runs per parameter (RegMix subsamples)
HOLDOUT_LEVEL = 0.9  # level of the held-out rung's intervals and of the model-error calibration
HOLDOUT_BOOTSTRAP = 50  # resamples of the held-out refit: its draws only need to give a spread
TOTAL = "(total)"  # key of the weighted total beside the targets in held-out results
FORMULA = (
    "L_i(w, N, D) = E_i(w) + A_i(w) / N^alpha_i + B_i(w) / D^beta_i, each part a sum of terms "
    "k * exp(t . w + u . log(w + eps)) (extra.terms; E has a floor c); L(w) = sum_i v_i L_i / sum_i v_i"
)

EXPONENT_BOUNDS = (0.0, 3.0)  # alpha, beta
LOG_SHARE_BOUNDS = (-1.0, 0.0)  # each u_j: see JointFormula.bounds
_EXPONENT_GRID = (0.1, 0.35, 0.8)  # starts of alpha and beta
# Presets: the features of E's mixture terms (after the floor c), of A's terms and of B's terms.
FORMS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "ll": (("linear", "log"), ("linear",), ("const",)),
    "l2l": (("linear", "log", "log"), ("linear",), ("const",)),
    "log": (("log",), ("linear",), ("const",)),
    "log-c": (("log",), ("const",), ("const",)),
    "ye": (("linear",), ("linear",), ("const",)),
    "ll-b": (("linear", "log"), ("linear",), ("linear",)),
    "ye-b": (("linear",), ("linear",), ("linear",)),
    "ll-ab": (("linear", "log"), ("linear", "log"), ("linear", "log")),
}
AUTO_LADDER = ("ll", "log", "log-c")  # richest first


@dataclass(frozen=True)
class Term:
    """One exponential term: ``k · exp(t·w + u·log(w + eps)) · N^(−alpha)[A] · D^(−beta)[B]``.

    Attributes:
        label: Name in the parameters (``c``, ``E1``, ``A``, ``B`` …).
        part: ``"E"``, ``"A"`` or ``"B"``.
        features: ``"const"`` (k only), ``"linear"`` (t), ``"log"`` (u), ``"both"`` (t and u),
            or ``"fixed"`` (k and the exponent given by a prior, not fitted).
    """

    label: str
    part: str
    features: str

    def n_internal(self, k: int) -> int:
        """Fitted parameters: a linear block has no intercept (the weights sum to one, so a common shift of t is k)."""
        return {"const": 1, "linear": k, "log": 1 + k, "both": 2 * k, "fixed": 0}[self.features]

    def n_public(self, k: int) -> int:
        """Public parameters: k, then t and/or u."""
        return 1 + (k if self.features in ("linear", "both") else 0) + (k if self.features in ("log", "both") else 0)

    def as_dict(self) -> dict[str, str]:
        return {"label": self.label, "part": self.part, "features": self.features}


def form_terms(name: str, n_part: str | None, d_part: str | None) -> tuple[Term, ...]:
    """The terms of a preset form.

    Args:
        name: A key of :data:`FORMS`.
        n_part: ``"fit"`` (N varies: A fitted), ``"fixed"`` (A and alpha from priors) or ``None`` (no N term).
        d_part: The same for the D term (fitted B is one constant: the development runs have one D).
    """
    if name not in FORMS:
        raise ValueError(f"form: unknown {name!r}; choose one of auto, {', '.join(FORMS)}")
    e_feats, a_feats, b_feats = FORMS[name]
    terms = [Term("c", "E", "const")] + [Term(f"E{i + 1}", "E", f) for i, f in enumerate(e_feats)]
    if n_part == "fit":
        terms += [Term("A" if len(a_feats) == 1 else f"A{i + 1}", "A", f) for i, f in enumerate(a_feats)]
    elif n_part == "fixed":
        terms.append(Term("A", "A", "fixed"))
    if d_part == "fit":
        terms += [Term("B" if len(b_feats) == 1 else f"B{i + 1}", "B", f) for i, f in enumerate(b_feats)]
    elif d_part == "fixed":
        terms.append(Term("B", "B", "fixed"))
    return tuple(terms)


class JointFormula:
    """log L̂ = LSE_m z_m over the terms; inputs ``[n, K + 2]`` = (w_1 … w_K, N, D).

    ``z_m = X_m(w) b_m φ_m − alpha·[A](log N − c_N) − beta·[B](log D − c_D)``: the design
    ``X_m`` holds the term's features (1, w, log(w + eps)), ``b_m`` whitens it on the fitted
    runs (so L-BFGS-B sees a well-conditioned problem: 4× fewer iterations on RegMix) and
    ``c_N``, ``c_D`` are the runs' median log N, log D (so intercepts and exponents are
    nearly uncorrelated). θ holds every term's φ, then the fitted exponents.

    Args:
        n_components: K.
        terms: The terms.
        eps: The floor of log shares.
        log_ref_n, log_ref_d: c_N, c_D.
        fixed: Prior values of fixed parts: ``A``, ``alpha``, ``B``, ``beta``.
        basis: Per term, the ``[p_m, p_m]`` whitening matrix (identity when ``None``).
    """

    log_space = True

    def __init__(
        self,
        n_components: int,
        terms: Sequence[Term],
        eps: float = LOG_SHARE_FLOOR,
        log_ref_n: float = 0.0,
        log_ref_d: float = 0.0,
        fixed: Mapping[str, float] | None = None,
        basis: Sequence[np.ndarray] | None = None,
    ) -> None:
        self.k = int(n_components)
        self.terms = tuple(terms)
        self.eps = float(eps)
        self.log_ref_n = float(log_ref_n)
        self.log_ref_d = float(log_ref_d)
        self.fixed = {k: float(v) for k, v in (fixed or {}).items()}
        names: list[str] = []
        self.slices: list[slice] = []
        for term in self.terms:
            start = len(names)
            if term.features in ("const", "log"):
                names.append(f"{term.label}.a")
            if term.features in ("linear", "both"):
                names += [f"{term.label}.t{j}" for j in range(self.k)]
            if term.features in ("log", "both"):
                names += [f"{term.label}.u{j}" for j in range(self.k)]
            self.slices.append(slice(start, len(names)))
        self.has_a = any(t.part == "A" for t in self.terms)
        self.has_b = any(t.part == "B" for t in self.terms)
        self.fit_alpha = self.has_a and "alpha" not in self.fixed
        self.fit_beta = self.has_b and "beta" not in self.fixed
        names += ["alpha"] * self.fit_alpha + ["beta"] * self.fit_beta
        self.names = tuple(names)
        self.basis = [np.eye(sl.stop - sl.start) for sl in self.slices] if basis is None else [np.asarray(b, dtype=float) for b in basis]

    @classmethod
    def for_data(cls, n_components: int, terms: Sequence[Term], eps: float, x: np.ndarray, fixed: Mapping[str, float] | None = None) -> "JointFormula":
        """A formula centred and scaled on the runs ``x [n, K + 2]`` (see :meth:`block_basis`)."""
        k = int(n_components)
        plain = cls(k, terms, eps, float(np.median(np.log(x[:, k]))), float(np.median(np.log(x[:, k + 1]))), fixed)
        basis = [plain.block_basis(term, X) for term, X in zip(terms, plain.design(x)[0])]
        return cls(k, terms, eps, plain.log_ref_n, plain.log_ref_d, fixed, basis)

    def block_basis(self, term: Term, X: np.ndarray) -> np.ndarray:
        """``[p, p]`` map from a term's internal coordinates to its natural coefficients.

        The unconstrained features (the intercept, or the shares w) are whitened on the
        runs, so L-BFGS-B sees a well-conditioned problem (4× fewer iterations on RegMix);
        the log shares are only centred and scaled, so each internal u is its natural u
        times a positive number and the bounds on u stay box bounds.

        Args:
            term: The term.
            X: ``[n, p]`` its features on the runs (:meth:`design`).
        """
        p = X.shape[1]
        if p == 0:
            return np.eye(0)
        n_log = self.k if term.features in ("log", "both") else 0
        F, G = X[:, : p - n_log], X[:, p - n_log :]
        _, sv, vt = np.linalg.svd(F / math.sqrt(F.shape[0]), full_matrices=False)
        keep = sv > 1e-8 * sv.max()
        # A direction the runs never move (a domain always at 0) keeps unit scale: no gradient reaches it.
        w_f = vt.T * np.where(keep, 1.0 / np.where(keep, sv, 1.0), 1.0)
        basis = np.zeros((p, p))
        basis[: p - n_log, : p - n_log] = w_f
        if n_log:
            m, sd = G.mean(axis=0), G.std(axis=0)
            sd = np.where(sd > 1e-12, sd, 1.0)
            basis[p - n_log :, p - n_log :] = np.diag(1.0 / sd)
            # Centring the log shares shifts the term by −m·u: the intercept (log) or every t (both: Σ w = 1) takes it back.
            const = np.zeros(p - n_log)
            if term.features == "log":
                const[0] = 1.0
            else:
                const[:] = 1.0
            basis[: p - n_log, p - n_log :] = -np.outer(const, m / sd)
        return basis

    # -- the formula ----------------------------------------------------------------

    def design(self, x: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        """Per-term features ``[n, p_m]`` and the centred ``log N``, ``log D`` ``[n]``."""
        w = x[:, : self.k]
        logw = np.log(w + self.eps)
        ones = np.ones((x.shape[0], 1))
        pick = {"const": ones, "linear": w, "log": np.hstack([ones, logw]), "both": np.hstack([w, logw]), "fixed": np.zeros((x.shape[0], 0))}
        return [pick[t.features] for t in self.terms], np.log(x[:, self.k]) - self.log_ref_n, np.log(x[:, self.k + 1]) - self.log_ref_d

    def exponents(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(alpha, beta)``, each ``[...]`` (fitted, fixed by a prior, or 0 without the part)."""
        theta = np.asarray(theta, dtype=float)
        shape = theta.shape[:-1]
        alpha = theta[..., self.names.index("alpha")] if self.fit_alpha else np.full(shape, self.fixed.get("alpha", 0.0))
        beta = theta[..., self.names.index("beta")] if self.fit_beta else np.full(shape, self.fixed.get("beta", 0.0))
        return alpha, beta

    def terms_value(self, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        """``[M, ..., n]``: the log of every term."""
        theta = np.asarray(theta, dtype=float)
        mats, ln, ld = self.design(x)
        alpha, beta = self.exponents(theta)
        out = []
        for term, sl, X, b in zip(self.terms, self.slices, mats, self.basis):
            if term.features == "fixed":
                z = np.full(theta.shape[:-1] + (x.shape[0],), math.log(self.fixed[term.part]))
            else:
                z = theta[..., sl] @ (X @ b).T
            if term.part == "A":
                z = z - alpha[..., None] * (ln + (self.log_ref_n if term.features == "fixed" else 0.0))
            elif term.part == "B":
                z = z - beta[..., None] * (ld + (self.log_ref_d if term.features == "fixed" else 0.0))
            out.append(z)
        return np.stack(out)

    def value(self, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        return logsumexp_terms(self.terms_value(theta, x))[0]

    def jacobian(self, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        return self.value_and_jacobian(theta, x)[1]

    def value_and_jacobian(self, theta: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``([n], [n, p])``: log L̂ and its derivative; the softmax weights of the terms carry the chain rule."""
        mats, ln, ld = self.design(x)
        lse, s = logsumexp_terms(self.terms_value(theta, x))
        jac = np.zeros((x.shape[0], len(self.names)))
        for m, (term, sl, X, b) in enumerate(zip(self.terms, self.slices, mats, self.basis)):
            if term.features != "fixed":
                jac[:, sl] = s[m][:, None] * (X @ b)
            if term.part == "A" and self.fit_alpha:
                jac[:, self.names.index("alpha")] -= s[m] * ln
            elif term.part == "B" and self.fit_beta:
                jac[:, self.names.index("beta")] -= s[m] * ld
        return lse, jac

    def bounds(self) -> list[tuple[float | None, float | None]]:
        b: list[tuple[float | None, float | None]] = [(None, None)] * len(self.names)
        for term, sl, basis in zip(self.terms, self.slices, self.basis):
            if term.features == "const":
                b[sl.start] = (-25.0, None)  # as Chinchilla's e: a floor keeps a start from crawling to 0 on a flat objective
            if term.features in ("log", "both"):
                # u <= 0: the log-share term is a product of per-domain data laws (w_j D)^u_j, falling as a
                # domain's share grows; a rising power (a spike at large shares) extrapolates wildly, and
                # harm from a domain is the linear term's to carry.
                scale = np.diag(basis)[-self.k :]  # natural u = internal u × scale (> 0)
                for j, d in zip(range(sl.stop - self.k, sl.stop), scale):
                    b[j] = (LOG_SHARE_BOUNDS[0] / d, LOG_SHARE_BOUNDS[1] / d)
        for name in ("alpha", "beta"):
            if name in self.names:
                b[self.names.index(name)] = EXPONENT_BOUNDS
        return b

    # -- coordinates ----------------------------------------------------------------

    def natural(self, theta: np.ndarray) -> np.ndarray:
        """Internal θ ``[..., p]`` → coefficients on the raw features ``[..., p]``."""
        theta = np.asarray(theta, dtype=float)
        out = theta.copy()
        for sl, b in zip(self.slices, self.basis):
            out[..., sl] = theta[..., sl] @ b.T
        return out

    def internal(self, natural: np.ndarray) -> np.ndarray:
        """Coefficients on the raw features ``[..., p]`` → internal θ."""
        natural = np.asarray(natural, dtype=float)
        out = natural.copy()
        for sl, b in zip(self.slices, self.basis):
            if b.size:
                out[..., sl] = natural[..., sl] @ np.linalg.inv(b).T
        return out

    def to_public(self, theta: np.ndarray) -> np.ndarray:
        """Internal θ ``[..., p]`` → public ``[..., q]``: per term k (then t with Σ t = 0, then u); alpha, beta.

        Public terms use raw log N and log D: ``log k = a + alpha·c_N`` for an A term.
        """
        theta = np.asarray(theta, dtype=float)
        nat = self.natural(theta)
        alpha, beta = self.exponents(theta)
        cols: list[np.ndarray] = []
        for term, sl in zip(self.terms, self.slices):
            ref = alpha * self.log_ref_n if term.part == "A" else (beta * self.log_ref_d if term.part == "B" else 0.0)
            block = nat[..., sl]
            f = term.features
            if f == "fixed":
                cols.append(np.full(theta.shape[:-1] + (1,), self.fixed[term.part]))
                continue
            if f == "const":
                cols.append(np.exp(block[..., :1] + np.asarray(ref)[..., None]))
                continue
            if f in ("linear", "both"):
                t = block[..., : self.k]
                shift = t.mean(axis=-1, keepdims=True)
                cols += [np.exp(shift + np.asarray(ref)[..., None]), t - shift]
                if f == "both":
                    cols.append(block[..., self.k :])
            else:  # log: intercept, then u
                cols += [np.exp(block[..., :1] + np.asarray(ref)[..., None]), block[..., 1:]]
        if self.has_a:
            cols.append(alpha[..., None])
        if self.has_b:
            cols.append(beta[..., None])
        return np.concatenate(cols, axis=-1)

    # -- starts -----------------------------------------------------------------------

    def initial_grid(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Scale-only fits first (every term constant), then each mixture term from a ridge regression of what is left.

        The scale-only fits: the best few with free exponents, each with the mixture
        coefficients as regressed and jittered twice (the jitter lets terms of the same kind
        differ, or they stay twins), and one per exponent pair on a grid with the exponents
        held there. Without the grid the free scale-only fit, to which the mixture is noise,
        put every start in one basin (alpha = beta) far from the truth on generated runs.
        """
        if all(t.features in ("const", "fixed") for t in self.terms):
            return self._const_grid(y)
        const_terms = [Term(t.label, t.part, "fixed" if t.features == "fixed" else "const") for t in self.terms]
        const = JointFormula(self.k, const_terms, self.eps, self.log_ref_n, self.log_ref_d, self.fixed)
        quick = FitOptions(n_starts=6, bootstrap=0, cv_folds=0, maxiter=2000)
        try:
            free = list(fit_model(const, x, y, quick).optima[:3])
        except FitError:
            free = [const._const_grid(y)[0]]
        bases = [(b, (0.0, 0.5, 1.0)) for b in free]
        pairs = [(a, b) for a in (_EXPONENT_GRID if const.fit_alpha else (None,)) for b in (_EXPONENT_GRID if const.fit_beta else (None,))]
        for a, b in pairs if len(pairs) > 1 else ():
            held = dict(self.fixed, **({"alpha": a} if a is not None else {}), **({"beta": b} if b is not None else {}))
            sub = JointFormula(self.k, const_terms, self.eps, self.log_ref_n, self.log_ref_d, held)
            try:
                theta = fit_model(sub, x, y, quick.replace(n_starts=2)).theta
            except FitError:
                continue
            bases.append((np.concatenate([theta, [v for v in (a, b) if v is not None]]), (0.0,)))
        target = np.log(y)
        mats = self.design(x)[0]
        rng = np.random.default_rng(0)
        mixed = [m for m, t in enumerate(self.terms) if t.features not in ("const", "fixed")]
        rows = []
        for base, jitters in bases:
            resid = target - const.value(base, x)
            share = logsumexp_terms(const.terms_value(base, x))[1]  # [M, n]: d log L / d term
            frac = float(np.mean(share[mixed].sum(axis=0))) if mixed else 1.0
            for jitter in jitters:
                theta = np.zeros(len(self.names))
                for m, (term, sl, X) in enumerate(zip(self.terms, self.slices, mats)):
                    if term.features == "fixed":
                        continue
                    a = base[const.slices[m].start]
                    if term.features == "const":
                        theta[sl] = a
                        continue
                    a -= math.log(sum(1 for t in self.terms if t.part == term.part and t.features not in ("const", "fixed")))
                    lam = 1e-2 * len(y)
                    coef = np.linalg.solve(X.T @ X + lam * np.eye(X.shape[1]), X.T @ (resid / max(frac, 0.05)))
                    coef = coef * (1.0 + jitter * rng.normal(0.0, 1.0, coef.shape))
                    if term.features == "log":
                        coef[0] += a
                    else:  # a linear block carries the intercept
                        coef[: self.k] += a
                    theta[sl] = coef
                for name in ("alpha", "beta"):
                    if name in self.names:
                        theta[self.names.index(name)] = base[const.names.index(name)]
                rows.append(theta)
        return self.internal(np.array(rows))

    def _const_grid(self, y: np.ndarray) -> np.ndarray:
        """Starts of the all-constant formula: the floor at fractions of min(y), the rest shared by the other terms."""
        rows = []
        free = [m for m, t in enumerate(self.terms) if t.features != "fixed"]
        for frac in (0.1, 0.4, 0.7, 0.9):
            c = frac * float(np.min(y))
            rest = max(float(np.mean(y)) - c, 1e-6 * float(np.mean(y)))
            for alpha in _EXPONENT_GRID if self.fit_alpha else (None,):
                for beta in _EXPONENT_GRID if self.fit_beta else (None,):
                    theta = np.zeros(len(self.names))
                    for m in free:
                        floor = self.terms[m].label == "c"
                        theta[self.slices[m].start] = math.log(c) if floor else math.log(rest / max(len(free) - 1, 1))
                    if alpha is not None:
                        theta[self.names.index("alpha")] = alpha
                    if beta is not None:
                        theta[self.names.index("beta")] = beta
                    rows.append(theta)
        return np.array(rows)


def public_names(terms: Sequence[Term], target: str, components: Sequence[str]) -> list[str]:
    """One target's public parameter names, in :meth:`JointFormula.to_public` order."""
    names = []
    for term in terms:
        if term.features in ("const", "fixed"):
            names.append(f"{term.label}[{target}]")
            continue
        names.append(f"{term.label}.k[{target}]")
        if term.features in ("linear", "both"):
            names += [f"{term.label}.t[{target},{c}]" for c in components]
        if term.features in ("log", "both"):
            names += [f"{term.label}.u[{target},{c}]" for c in components]
    if any(t.part == "A" for t in terms):
        names.append(f"alpha[{target}]")
    if any(t.part == "B" for t in terms):
        names.append(f"beta[{target}]")
    return names


def term_values(P: np.ndarray, terms: Sequence[Term], w: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, eps: float) -> np.ndarray:
    """Every term of one target at public parameters: ``[M, B, m]``.

    Args:
        P: ``[B, q]`` one target's public parameters.
        terms: Its terms.
        w: ``[m, K]`` mixtures.
        log_n, log_d: ``[m]`` natural logs of N and D (ignored by a law without that part).
        eps: Floor of the log shares.
    """
    k = w.shape[1]
    logw = np.log(w + eps)
    alpha = P[:, -1 - any(t.part == "B" for t in terms)] if any(t.part == "A" for t in terms) else None
    beta = P[:, -1] if any(t.part == "B" for t in terms) else None
    out, j = [], 0
    for term in terms:
        z = np.repeat(np.log(P[:, j : j + 1]), w.shape[0], axis=1)  # [B, m]
        j += 1
        if term.features in ("linear", "both"):
            z = z + P[:, j : j + k] @ w.T
            j += k
        if term.features in ("log", "both"):
            z = z + P[:, j : j + k] @ logw.T
            j += k
        if term.part == "A":
            z = z - alpha[:, None] * log_n[None, :]
        elif term.part == "B":
            z = z - beta[:, None] * log_d[None, :]
        out.append(np.exp(z))
    return np.stack(out)


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
            model_error: Add ``tau · distance(x)`` (when the law measured tau).
        """
        draws = self.draws()
        P = self.vector()[None, :] if draws is None else draws
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            logs = np.log(self._evaluate(P, x))
        if draws is None:
            logs = np.repeat(logs, 1000, axis=0)
        key = self._error_key(x)
        sd = np.zeros(logs.shape[1])
        tau = (self.model_error.get("tau") or {}).get(key) if model_error and self.model_error.get("measured") else None
        if tau:
            d = self.distance(x)
            sd = sd + float(tau) * d * np.maximum(1.0, d / float(self.model_error["distance"]))
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
        fitted rung; nothing is added when the error could not be measured, see
        ``model_error``), and with ``observation=True`` by the noise of one run.

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
        if self.draws() is not None or observation or self.model_error.get("measured"):
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


# -- fitting ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Runs:
    """Checked inputs of a joint fit."""

    comps: list[str]
    r: np.ndarray  # [n, K]
    y: np.ndarray  # [n, T]
    names: list[str]
    tw: dict[str, float]
    n: np.ndarray  # [n] model sizes (ones when not given)
    d: np.ndarray  # [n] tokens or steps (ones when not given)
    has_n: bool
    has_d: bool
    d_input: str


def _runs(weights: Any, losses: Any, components: Sequence[str], N: Any, D: Any, steps: Any, targets: Sequence[str] | None, target_weights: Mapping[str, float] | None) -> _Runs:
    comps = [str(c) for c in components]
    r = training_mixtures(weights, comps)
    y, default_names = loss_matrix(losses, r.shape[0])
    names = [str(t) for t in targets] if targets is not None else default_names
    if len(names) != y.shape[1]:
        raise ValueError(f"targets: {len(names)} names for {y.shape[1]} loss columns")
    if D is not None and steps is not None:
        raise ValueError("D and steps: give one of them (tokens or steps), not both")
    d_input = "steps" if steps is not None else "D"
    cols = {}
    for label, v in (("N", N), (d_input, steps if steps is not None else D)):
        if v is None:
            cols[label] = None
            continue
        a = np.asarray(v, dtype=float).reshape(-1)
        if a.size == 1:
            a = np.full(r.shape[0], float(a[0]))
        if a.size != r.shape[0] or not np.all(np.isfinite(a)) or np.any(a <= 0):
            raise ValueError(f"{label}: need {r.shape[0]} positive finite values (one per run)")
        cols[label] = a
    n_arr, d_arr = cols["N"], cols[d_input]
    return _Runs(
        comps, r, y, names, target_weight_map(names, target_weights),
        np.ones(r.shape[0]) if n_arr is None else n_arr, np.ones(r.shape[0]) if d_arr is None else d_arr,
        n_arr is not None, d_arr is not None, d_input,
    )


_PRIOR_KEYS = ("alpha", "A", "beta", "B")


def _scale_parts(runs: _Runs, priors: Mapping[str, float] | None) -> tuple[str | None, str | None, dict[str, float], dict[str, str]]:
    """Which scale parts the runs identify: ``(n_part, d_part, fixed values, notes by input)``."""
    priors = dict(priors or {})
    unknown = sorted(set(priors) - set(_PRIOR_KEYS))
    if unknown:
        raise ValueError(f"priors: unknown {', '.join(unknown)}; known: {', '.join(_PRIOR_KEYS)}")
    for k, v in priors.items():
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise ValueError(f"priors.{k}: must be a positive number, got {v!r}")
    fixed: dict[str, float] = {}
    notes: dict[str, str] = {}
    parts: list[str | None] = []
    for label, values, present, exp, amp in (("N", runs.n, runs.has_n, "alpha", "A"), (runs.d_input, runs.d, runs.has_d, "beta", "B")):
        distinct = np.unique(values).size
        if present and distinct >= 2:
            if amp in priors:
                raise ValueError(f"priors.{amp}: {label} varies in the runs, so {amp} is fitted (a prior may fix only {exp})")
            if exp in priors:
                fixed[exp] = float(priors[exp])
                notes[label] = f"{exp} fixed at {priors[exp]:g} by a prior; {amp} fitted"
            elif distinct == 2:
                notes[label] = f"2 values of {label}: {exp} rests on the mixture form and positivity, and leaving a rung out cannot check it"
            parts.append("fit")
            continue
        what = f"the runs share one {label} ({float(values[0]):.6g})" if present else f"no {label} given"
        if exp in priors and amp in priors:
            fixed[exp], fixed[amp] = float(priors[exp]), float(priors[amp])
            notes[label] = f"{what}: the {label} term {amp} / {label}^{exp} is fixed by priors ({amp}={priors[amp]:g}, {exp}={priors[exp]:g}), not fitted"
            parts.append("fixed")
        else:
            if exp in priors or amp in priors:
                raise ValueError(f"priors: {what}; fixing the {label} term needs both {amp} and {exp}")
            notes[label] = f"{what}: the {label} term is not identified; the law predicts at that {label} only (priors {amp}, {exp} would fix it)"
            parts.append(None)
    return parts[0], parts[1], fixed, notes


def _n_params(terms: Sequence[Term], k: int, fixed: Mapping[str, float]) -> int:
    exps = ("alpha" if any(t.part == "A" and t.features != "fixed" for t in terms) and "alpha" not in fixed else None,
            "beta" if any(t.part == "B" and t.features != "fixed" for t in terms) and "beta" not in fixed else None)
    return sum(t.n_internal(k) for t in terms) + sum(e is not None for e in exps)


def _resolve_form(form: str, k: int, n_runs: int, n_part: str | None, d_part: str | None, fixed: Mapping[str, float]) -> tuple[str, tuple[Term, ...], str]:
    """The preset to fit: ``form`` itself, or for ``"auto"`` the richest with enough runs per parameter."""
    if form != "auto":
        terms = form_terms(form, n_part, d_part)
        return form, terms, f"asked for {form!r}"
    for name in AUTO_LADDER:
        terms = form_terms(name, n_part, d_part)
        p = _n_params(terms, k, fixed)
        if n_runs >= RUNS_PER_PARAMETER * p:
            return name, terms, f"auto: {n_runs} runs >= {RUNS_PER_PARAMETER} x {p} parameters"
    name = AUTO_LADDER[-1]
    terms = form_terms(name, n_part, d_part)
    return name, terms, f"auto: {n_runs} runs < {RUNS_PER_PARAMETER} x {_n_params(terms, k, fixed)} parameters even for {name!r}, the smallest form"


def _rung_ids(runs: _Runs) -> tuple[np.ndarray, np.ndarray]:
    """``(rungs [R, 2] of (N, D), id [n] of each run's rung)``."""
    pairs = np.column_stack([runs.n, runs.d])
    rungs, ids = np.unique(pairs, axis=0, return_inverse=True)
    return rungs, ids.reshape(-1)


def fit_joint(
    weights: Any,
    losses: Any,
    components: Sequence[str],
    N: Any = None,
    D: Any = None,
    steps: Any = None,
    targets: Sequence[str] | None = None,
    target_weights: Mapping[str, float] | None = None,
    form: str = "auto",
    priors: Mapping[str, float] | None = None,
    options: FitOptions | None = None,
    name: str = "joint",
    provenance: Mapping[str, Any] | None = None,
    include_data: bool = True,
    measure_error: bool = True,
) -> JointLaw:
    """Fit the joint law of mixture and scale on every run at every scale.

    Rows are runs: a mixture, its scale (N and D or steps) and its losses. Every target is
    fitted with the same seed and the same strata (the rungs, i.e. distinct (N, D)), so
    bootstrap draw b of every target comes from the same resample and the total's
    interval is coherent.

    Args:
        weights: ``[n, K]`` training mixtures (rows renormalised to sum to one).
        losses: ``[n]`` or ``[n, T]`` positive losses, or ``{target: [n]}``.
        components: The K training domain names, in column order.
        N: ``[n]`` model sizes (or one number), or ``None``.
        D: ``[n]`` training tokens (or one number), or ``None``.
        steps: ``[n]`` steps instead of ``D`` (the law's input is then ``steps``).
        targets: Target names when ``losses`` is an array.
        target_weights: Weight of each target in the total (default: equal).
        form: A preset of :data:`FORMS`, or ``"auto"``: the richest of :data:`AUTO_LADDER`
            with at least :data:`RUNS_PER_PARAMETER` runs per parameter.
        priors: Values for terms the runs cannot identify: ``alpha`` (fixes the exponent
            when N varies), ``A`` and ``alpha`` (a fixed N term when N does not vary),
            ``beta``, ``B`` likewise for D. Recorded in ``extra["fixed"]``.
        options: Fit options (Huber δ, starts, bootstrap, folds, seed, level).
        name: Law name.
        provenance: Recorded in the law.
        include_data: Keep the fitted runs in the law.
        measure_error: Measure the extrapolation error by :func:`leave_one_scale_out`
            (when the runs have three rungs or more) and widen the intervals by it.

    Returns:
        The law; ``extra`` records the form, terms, rungs, identifiability notes, fixed
        values and ``model_error``.

    Raises:
        ValueError: inconsistent shapes, rows not on the simplex, non-positive losses or
            scales, unknown form or priors.
        FitError: fewer runs than parameters, or no usable start.
    """
    runs = _runs(weights, losses, components, N, D, steps, targets, target_weights)
    n_part, d_part, fixed, notes = _scale_parts(runs, priors)
    k = len(runs.comps)
    form_name, terms, why = _resolve_form(form, k, runs.r.shape[0], n_part, d_part, fixed)
    opts = options or FitOptions()
    x = np.column_stack([runs.r, runs.n, runs.d])
    rungs, strata = _rung_ids(runs)
    fits: list[FitResult] = []
    formulas: list[JointFormula] = []
    for i in range(runs.y.shape[1]):
        formula = JointFormula.for_data(k, terms, LOG_SHARE_FLOOR, x, fixed)
        fits.append(fit_model(formula, x, runs.y[:, i], opts, strata=strata if rungs.shape[0] > 1 else None))
        formulas.append(formula)
    law = _assemble(fits, formulas, runs, terms, form_name, why, fixed, notes, rungs, opts, name, provenance, include_data)
    if not measure_error:
        return law
    try:
        held = leave_one_scale_out(
            runs.r, {t: runs.y[:, i] for i, t in enumerate(runs.names)}, runs.comps,
            N=runs.n if runs.has_n else None,
            **{runs.d_input: runs.d if runs.has_d else None},
            target_weights=runs.tw, form=form_name, priors=priors, options=opts,
        )
    except (ValueError, FitError) as exc:
        error: dict[str, Any] = {"measured": False, "reason": str(exc)}
    else:
        error = {"measured": True, "rule": MODEL_ERROR_RULE, **held.summary()}
    extra = dict(law.extra)
    extra["model_error"] = error
    from dataclasses import replace

    return replace(law, extra=extra)


MODEL_ERROR_RULE = (
    "log-loss sd += tau * d(x) * max(1, d(x) / d_h), d(x) = natural-log distance in (log N, log D) from x to the nearest "
    "fitted rung, d_h = that of the held-out rung (linear up to where the error was measured, quadratic beyond: a law "
    "fitted across the data matches its level and slope, so what is left grows with the curvature); "
    "tau from leave_one_scale_out: refit without the largest rung (N*D), tau = the level-quantile over its runs of "
    "sqrt(max(0, (e/z)^2 - s^2)) / d, e = log error, s = the refit's stated log spread for a new run, z = normal quantile"
)


def _assemble(
    fits: list[FitResult],
    formulas: list[JointFormula],
    runs: _Runs,
    terms: tuple[Term, ...],
    form_name: str,
    why: str,
    fixed: Mapping[str, float],
    notes: Mapping[str, str],
    rungs: np.ndarray,
    opts: FitOptions,
    name: str,
    provenance: Mapping[str, Any] | None,
    include_data: bool,
) -> JointLaw:
    point = np.concatenate([f.to_public(fit.theta) for f, fit in zip(formulas, fits)])
    samples = None
    if all(fit.bootstrap is not None for fit in fits):
        b = min(fit.bootstrap.shape[0] for fit in fits)  # type: ignore[union-attr]
        samples = np.concatenate([f.to_public(fit.bootstrap[:b]) for f, fit in zip(formulas, fits)], axis=1)  # type: ignore[index]
    v = np.array([runs.tw[t] for t in runs.names])
    total_obs = runs.y @ v / v.sum()
    total_pred = np.column_stack([fit.predictions for fit in fits]) @ v / v.sum()
    log_res = np.log(total_obs) - np.log(total_pred)
    per_target = {
        t: {
            "rmse": fit.rmse,
            "cv_rmse": fit.cv_rmse,
            "converged": fit.converged,
            "objective": fit.objective,
            "n_iter": fit.n_iter,
            "grad_norm": fit.grad_norm,
            "residual_scale": fit.residual_scale,
        }
        for t, fit in zip(runs.names, fits)
    }
    diagnostics = {
        "n_points": int(runs.r.shape[0]),
        "objective": float(sum(fit.objective for fit in fits)),
        "rmse": float(np.sqrt(np.mean(log_res**2))),
        "rmse_natural": float(np.sqrt(np.mean((total_obs - total_pred) ** 2))),
        "max_abs_residual": float(np.max(np.abs(log_res))),
        "residual_scale": float(1.4826 * np.median(np.abs(log_res - np.median(log_res)))),
        "residuals": [float(r) for r in log_res],
        "cv_rmse": fits[0].cv_rmse if len(fits) == 1 else None,
        "cv_folds": fits[0].cv_folds,
        "converged": all(fit.converged for fit in fits),
        "n_iter": max(fit.n_iter for fit in fits),
        "grad_norm": max(fit.grad_norm for fit in fits),
        "optimiser_message": fits[0].message,
        "bootstrap_resamples": 0 if samples is None else int(samples.shape[0]),
        "bootstrap_failed": max(fit.bootstrap_failed for fit in fits),
        "distinct_optima": max(int(fit.optima.shape[0]) for fit in fits),
        "n_parameters": len(formulas[0].names),
        "per_target": per_target,
    }
    names = [p for t in runs.names for p in public_names(terms, t, runs.comps)]
    d = runs.d_input
    inputs = {
        "weights": {"unit": "fraction", "normalisation": "each mixture renormalised to sum to 1", "description": f"training mixture over {', '.join(runs.comps)}"},
        "N": {"unit": "parameters", "normalisation": "none", "description": "model size" + ("" if n_part_of(terms) else "; optional, must equal the fitted N")},
        d: {"unit": "tokens" if d == "D" else "steps", "normalisation": "none", "description": ("training tokens" if d == "D" else "training steps") + ("" if d_part_of(terms) else f"; optional, must equal the fitted {d}")},
    }
    data_range = {f"w_{c}": (float(runs.r[:, j].min()), float(runs.r[:, j].max())) for j, c in enumerate(runs.comps)}
    if runs.has_n:
        data_range["N"] = (float(runs.n.min()), float(runs.n.max()))
    if runs.has_d:
        data_range[d] = (float(runs.d.min()), float(runs.d.max()))
    data = None
    if include_data:
        data = {f"w_{c}": runs.r[:, j].tolist() for j, c in enumerate(runs.comps)}
        if runs.has_n:
            data["N"] = runs.n.tolist()
        if runs.has_d:
            data[d] = runs.d.tolist()
        data.update({f"loss_{t}": runs.y[:, i].tolist() for i, t in enumerate(runs.names)})
    return JointLaw(
        name=name,
        form="chinchilla",
        params=dict(zip(names, (float(p) for p in point))),
        samples=keep_draws(samples, opts.keep_samples),
        covariance=np.cov(samples, rowvar=False) if samples is not None and samples.shape[0] > 1 and not opts.keep_samples else None,
        level=opts.level,
        inputs=inputs,
        data_range=data_range,
        diagnostics=diagnostics,
        settings=fit_settings(fits[0]),
        provenance=base_provenance(provenance),
        extra={
            "components": runs.comps,
            "targets": runs.names,
            "target_weights": runs.tw,
            "preset": form_name,
            "preset_reason": why,
            "terms": [t.as_dict() for t in terms],
            "eps": LOG_SHARE_FLOOR,
            "d_input": d,
            "fixed": dict(fixed),
            "identifiability": dict(notes),
            "rungs": [[float(a), float(b)] for a, b in rungs],
            "parametrisation": "per term: k, then t with sum_j t_j = 0 (k absorbs the shift), then u; log shares are log(w + eps)",
            "model_error": {"measured": False, "reason": "not measured (measure_error=False)"},
        },
        data=data,
    )


def n_part_of(terms: Sequence[Term]) -> bool:
    return any(t.part == "A" for t in terms)


def d_part_of(terms: Sequence[Term]) -> bool:
    return any(t.part == "B" for t in terms)


def leave_one_scale_out(
    weights: Any,
    losses: Any,
    components: Sequence[str],
    N: Any = None,
    D: Any = None,
    steps: Any = None,
    targets: Sequence[str] | None = None,
    target_weights: Mapping[str, float] | None = None,
    form: str = "auto",
    priors: Mapping[str, float] | None = None,
    options: FitOptions | None = None,
    level: float = HOLDOUT_LEVEL,
    calibrated: bool = False,
) -> ScaleHoldout:
    """Refit the joint law without the largest rung and predict that rung's runs.

    The largest rung is the distinct (N, D) with the largest N·D (ties: the largest N).
    Its runs are predicted by the refit with intervals for a new run (parameter draws
    and run noise, at ``level``), and the held-out errors give the model error ``tau``
    (see :class:`ScaleHoldout`). The refit uses at most :data:`HOLDOUT_BOOTSTRAP`
    resamples: it needs their spread, not fine tails.

    Args:
        weights, losses, components, N, D, steps, targets, target_weights, form, priors, options:
            As in :func:`fit_joint`.
        level: Central probability of the stated intervals (0.9).
        calibrated: Let the refit measure its own model error (leaving out *its* largest
            rung) and state intervals that include it: the honest check of the law's
            intervals beyond the data. ``False`` (what :func:`fit_joint` uses to measure
            ``tau``): intervals from parameter draws and run noise only.

    Raises:
        ValueError: fewer than three rungs, or a held-out rung the remaining runs cannot
            reach (say, a D no remaining run varies towards, without priors) — the
            message says why, for the law's diagnostics.
    """
    runs = _runs(weights, losses, components, N, D, steps, targets, target_weights)
    rungs, ids = _rung_ids(runs)
    if rungs.shape[0] < 3:
        raise ValueError(
            f"{rungs.shape[0]} rung(s) (distinct N, {runs.d_input}): leaving the largest out leaves {rungs.shape[0] - 1}, "
            "too few to fit the scale terms and check them; the extrapolation error is not measured"
        )
    order = np.lexsort((rungs[:, 0], rungs[:, 0] * rungs[:, 1]))
    h = int(order[-1])
    test = ids == h
    opts = options or FitOptions()
    refit_opts = opts.replace(bootstrap=min(opts.bootstrap, HOLDOUT_BOOTSTRAP), cv_folds=0)
    rest = {k: v[~test] for k, v in (("N", runs.n), (runs.d_input, runs.d))}
    refit = fit_joint(
        runs.r[~test],
        {t: runs.y[~test, i] for i, t in enumerate(runs.names)},
        runs.comps,
        N=rest["N"] if runs.has_n else None,
        **{runs.d_input: rest[runs.d_input] if runs.has_d else None},
        target_weights=runs.tw,
        form=form,
        priors=priors,
        options=refit_opts,
        name="leave-one-scale-out",
        include_data=False,
        measure_error=calibrated,
    )
    at = {"N": runs.n[test] if runs.has_n else None, runs.d_input: runs.d[test] if runs.has_d else None}
    try:
        base, _ = refit._parse({"weights": runs.r[test], **{k: v for k, v in at.items() if v is not None}})
    except ValueError as exc:
        raise ValueError(f"the runs without the largest rung cannot predict it: {exc}") from None
    z = float(norm.ppf(0.5 + level / 2.0))
    dist = float(refit.distance({"N": runs.n[test][:1], runs.d_input: runs.d[test][:1]})[0])
    v = np.array([runs.tw[t] for t in runs.names])
    observed = {t: runs.y[test, i] for i, t in enumerate(runs.names)}
    observed[TOTAL] = runs.y[test] @ v / v.sum()
    out: dict[str, dict[str, Any]] = {k: {} for k in ("predicted", "lower", "upper", "spread", "coverage", "tau", "bias", "rmse_log")}
    for key in list(observed):
        x = dict(base)
        x["__target__"] = np.full(len(observed[key]), -1 if key == TOTAL else runs.names.index(key))
        point = refit._evaluate(refit.vector()[None, :], x)[0]
        logs = refit.predictive_log_samples(x, observation=True, model_error=calibrated)
        lo, hi = _quantiles(logs, level)
        err = np.log(observed[key]) - np.log(point)
        spread = np.nanstd(logs, axis=0)
        need = np.sqrt(np.maximum(0.0, (err / z) ** 2 - spread**2)) / max(dist, 1e-12)
        out["predicted"][key] = point
        out["spread"][key] = spread
        out["lower"][key], out["upper"][key] = np.exp(lo), np.exp(hi)
        out["coverage"][key] = float(np.mean((observed[key] >= np.exp(lo)) & (observed[key] <= np.exp(hi))))
        out["tau"][key] = float(np.quantile(need, level, method="higher"))  # conservative: at least `level` covered
        out["bias"][key] = float(np.mean(err))
        out["rmse_log"][key] = float(np.sqrt(np.mean(err**2)))
    rest_n, rest_d = runs.n[~test], runs.d[~test]
    return ScaleHoldout(
        held_out={"N": float(rungs[h, 0]), runs.d_input: float(rungs[h, 1])},
        factor_N=float(scale_factor(rungs[h : h + 1, 0], (rest_n.min(), rest_n.max()))[0]),
        factor_D=float(scale_factor(rungs[h : h + 1, 1], (rest_d.min(), rest_d.max()))[0]),
        distance=dist,
        level=level,
        observed=observed,
        law=refit,
        **out,
    )


__all__ = [
    "AUTO_LADDER",
    "FORMS",
    "JointFormula",
    "JointLaw",
    "JointOptimum",
    "LOG_SHARE_FLOOR",
    "ScaleHoldout",
    "Term",
    "fit_joint",
    "form_terms",
    "leave_one_scale_out",
]
