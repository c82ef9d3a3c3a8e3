"""The formula of the joint law of mixture and scale, as the fitter sees it.

:class:`JointFormula` is the :class:`~mixsearch.laws.fit.Formula` of
:func:`mixsearch.laws.joint.fit_joint`: log L̂ as a log-sum-exp of exponential terms of the
mixture, scaled by N^(−alpha) or D^(−beta), in internal coordinates that are centred and
whitened on the runs. :data:`FORMS` names the presets of terms; :func:`term_values` evaluates
the terms at public parameters (what :class:`~mixsearch.laws.joint_law.JointLaw` predicts with).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from mixsearch.laws.fit import FitError, FitOptions, fit_model, logsumexp_terms

LOG_SHARE_FLOOR = 0.01  # eps of log(w + eps); exploring on RegMix's held-out 1M mixtures, 3e-3 and 1e-2 tied, 3e-2 and 1e-3 were worse
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

__all__ = [
    "AUTO_LADDER",
    "EXPONENT_BOUNDS",
    "FORMS",
    "JointFormula",
    "LOG_SHARE_BOUNDS",
    "LOG_SHARE_FLOOR",
    "Term",
    "form_terms",
    "public_names",
    "term_values",
]
