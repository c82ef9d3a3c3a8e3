"""Ground truths for the ``synthetic`` world: known laws of mixture and scale.

A world is a formula, not a fitted :class:`mixsearch.laws.Law`: it generates what a run
at (mixture, N, D) would measure, before noise. Each world names its domains, its natural
objective and the ladder the bench uses for it.

* ``mixing-shift``: a data mixing law whose best mixture moves with model size N (proxies
  rank mixtures like the target, Spearman ~0.82, but their optimum is biased).
* ``mixing-static``: the same law with a scale-free optimum.
* ``moving-optimum``: the optimum moves with N *and* with tokens D, on a ladder whose rungs
  vary both (more tokens per parameter at some rungs than at others).
* ``weak-proxy``: an instruction-tuning-like world scored by a benchmark accuracy (bounded,
  noisy, maximised) where the cheap rungs rank mixtures like the target only weakly
  (Spearman ~0.55 at the smallest rung, ~0.65 at the middle one), as published multi-scale
  instruction-tuning runs show.
* ``cpt-finance``: continual pre-training of a base model on a finance domain with general
  replay, from the functional forms of the CMR paper (Gu et al. 2024): a known critical
  mixture ratio CMR(T, N) that falls from 0.95 at 0.25B continued tokens to 0.38 at the 4B target.
* ``cpt-math``: the same forms with shapes far from what the CMR fit assumes a priori
  (a convex ratio law, forgetting that accelerates with T): CMR 1 up to 0.5B tokens, 0.46 at 4B.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from mixsearch.study import FidelityLadder, Objective, Rung


@dataclass(frozen=True)
class MixingWorld:
    """Per-domain loss as a data mixing law whose parameters move with N and D.

    For domain i, mixture r ``[K]``, model size N and tokens D, with ``s = ln(N / n_ref)``
    and ``t = ln(D / d_ref)``::

        L_i(r; N, D) = E_i + A / N^alpha + B / D^beta
                       + k_i * exp(-a_i s - b_i t) * exp(sum_j (T_ij + s U_ij + t V_ij) r_j)

    The first line is a Chinchilla-style floor that does not depend on the mixture. The
    second is the data mixing law of Ye et al. (2024) with a cross-domain interaction matrix
    ``T`` (diagonal: in-domain data helps; off-diagonal: transfer < 0, interference > 0).
    ``a`` and ``U`` move the best mixture as N grows, ``b`` and ``V`` as D grows; with all
    four zero the optimum is scale-free.

    Attributes:
        domains: Domain names, ``K`` of them.
        E, k, a: ``[K]`` irreducible loss, mixing-law scale, and its decay rate with N.
        T, U: ``[K, K]`` interactions at ``n_ref`` and their change per e-fold of N.
        b: ``[K]`` decay rate of the mixing term with D (zeros: none).
        V: ``[K, K]`` change of the interactions per e-fold of D (zeros: none).
        n_ref, d_ref: Scales at which ``T`` and ``k`` hold.
        A, alpha, B, beta: Chinchilla-style floor terms.
        rungs: The bench's ladder for this world (the last rung is the target).
        noise: Default standard deviation of the mean loss at ``n_ref``.
    """

    domains: tuple[str, ...]
    E: np.ndarray
    k: np.ndarray
    a: np.ndarray
    T: np.ndarray
    U: np.ndarray
    b: np.ndarray | None = None
    V: np.ndarray | None = None
    n_ref: float = 25e6
    d_ref: float = 5e8
    A: float = 400.0
    alpha: float = 0.34
    B: float = 410.0
    beta: float = 0.28
    rungs: tuple[Rung, ...] = field(default_factory=tuple)
    noise: float = 0.006

    @property
    def objective(self) -> Objective:
        """The world's natural objective: the mean validation loss."""
        return Objective()

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
        t = math.log(tokens / self.d_ref)
        k = len(self.domains)
        b = np.zeros(k) if self.b is None else self.b
        V = np.zeros((k, k)) if self.V is None else self.V
        floor = self.E + self.A / n_params**self.alpha + self.B / tokens**self.beta
        scale = self.k * np.exp(-self.a * s - b * t)
        inter = self.T + s * self.U + t * V
        return floor[None, :] + scale[None, :] * np.exp(np.atleast_2d(r) @ inter.T)

    def truth(self, r: np.ndarray, n_params: float, tokens: float) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
        """Noise-free ``(per-domain losses [n, K], metrics {name: [n]})`` of mixtures ``[n, K]``."""
        return self.losses(r, n_params, tokens), {}

    def noise_sd(self, n_params: float, noise: float) -> tuple[float, float]:
        """``(sd of each domain's loss, sd of each metric)`` at size N: ``noise`` is the sd of
        the mean loss at ``n_ref``, shrinking as ``(N / n_ref)^-0.35``."""
        return noise * math.sqrt(len(self.domains)) * (n_params / self.n_ref) ** -0.35, 0.0

    def objective_values(self, r: np.ndarray, n_params: float, tokens: float) -> np.ndarray:
        """Mean of the per-domain losses, ``[n]``."""
        return self.losses(r, n_params, tokens).mean(axis=1)


@dataclass(frozen=True)
class AccuracyWorld:
    """A benchmark accuracy of the mixture, bounded in (floor, floor + span), maximised.

    With ``s = ln(N / n_ref)``, centred log shares ``h_j = ln(r_j + eps) - mean_l ln(r_l + eps)``
    and ``f(s) = exp(s / tau) - 1`` (0 at the reference size, towards -1 far below it)::

        q(r; N) = q0 + c s + h . (u + f(s) d) + h^T W h / K
        accuracy = floor + span * sigmoid(q)

    ``d`` turns which domains matter as models shrink, so cheap rungs rank mixtures only
    weakly like the reference (the target) and prefer other mixtures; ``W`` adds
    interactions between domains.

    Attributes:
        domains: Domain names, ``K`` of them.
        u: ``[K]`` weight of each domain's log share at ``n_ref``.
        d: ``[K]`` how those weights differ far below ``n_ref``.
        W: ``[K, K]`` symmetric interactions of log shares.
        q0, c: The logit at ``n_ref`` and its gain per e-fold of N (bigger models score higher).
        tau: How fast (in e-folds of N) the weights turn from ``u`` to ``u - d``.
        n_ref: The reference size (the target's).
        eps: Floor added to shares before the log.
        floor, span: The accuracy's range.
        rungs: The bench's ladder (the last rung is the target).
        noise: Default sd of a measured accuracy at ``n_ref`` (a benchmark of ~1,000 items).
    """

    domains: tuple[str, ...]
    u: np.ndarray
    d: np.ndarray
    W: np.ndarray
    q0: float = 0.4
    c: float = 0.3
    tau: float = 0.7
    n_ref: float = 7e9
    eps: float = 0.02
    floor: float = 0.25
    span: float = 0.6
    rungs: tuple[Rung, ...] = field(default_factory=tuple)
    noise: float = 0.008

    @property
    def objective(self) -> Objective:
        """The world's natural objective: its accuracy, maximised."""
        return Objective(metric="accuracy", direction="maximize")

    def truth(self, r: np.ndarray, n_params: float, tokens: float) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
        """Noise-free ``(None, {"accuracy": [n]})`` of mixtures ``[n, K]``: no per-domain losses."""
        r = np.atleast_2d(np.asarray(r, dtype=float))
        s = math.log(n_params / self.n_ref)
        h = np.log(r + self.eps)
        h = h - h.mean(axis=1, keepdims=True)
        f = math.exp(s / self.tau) - 1.0
        q = self.q0 + self.c * s + h @ (self.u + f * self.d) + np.einsum("nj,jl,nl->n", h, self.W, h) / len(self.domains)
        return None, {"accuracy": self.floor + self.span / (1.0 + np.exp(-q))}

    def noise_sd(self, n_params: float, noise: float) -> tuple[float, float]:
        """``(0, sd of the accuracy)``: ``noise`` at ``n_ref``, larger for smaller models
        (their answers are less stable across seeds), as ``(N / n_ref)^-0.2``."""
        return 0.0, noise * (n_params / self.n_ref) ** -0.2


@dataclass(frozen=True)
class CPTWorld:
    """Continual pre-training of a base model on a new domain, from the CMR paper's forms.

    With R the new domain's share of the continued-training mixture, t = T / 1e9 the continued
    tokens in billions and ν = N / n_ref the base model's size, each loss is the base model's
    plus an increment that moves from its pure-replay curve to its pure-domain curve as R^s::

        L0(N)       = E + A / N^alpha                              (general, base model)
        dL(R, T, N) = (1 - R^s) * b0 * t^q0 + R^s * b1 * ν^-kappa * t^q1

    At one T this is the paper's ratio law alpha·R^s + beta; at one R its increment law, two
    power terms in T. For the general loss b0 < 0 (replay keeps improving it slowly) and
    b1 > 0 (domain data makes the model forget, less so when it is larger: kappa > 0); the
    domain loss falls with R. Its critical ratio has a closed form (:meth:`cmr`).

    Attributes:
        domains: ``(general, new)`` domain names.
        new_domain: The domain continued on.
        general, domain: Per loss ``(E, A, alpha, b0, q0, b1, q1, s, kappa)``.
        n_ref: Reference size.
        rungs: The bench's ladder (one base size, continued tokens doubling).
        target: The target (T, N) the answer is for, beyond the rungs in T.
        tolerance: The default relative tolerance ε of studies in this world.
        noise: Default sd of each measured loss at ``n_ref``.
    """

    domains: tuple[str, ...]
    new_domain: str
    general: tuple[float, ...]
    domain: tuple[float, ...]
    n_ref: float = 5e8
    rungs: tuple[Rung, ...] = field(default_factory=tuple)
    target: Rung | None = None
    tolerance: float = 0.05
    noise: float = 0.004

    @property
    def objective(self) -> Objective:
        """The world's natural objective: the new domain's loss (the tolerance bounds the general one)."""
        return Objective(domain_weights={self.new_domain: 1.0})

    @staticmethod
    def _increment(p: tuple[float, ...], R: np.ndarray, n_params: float, tokens: float, n_ref: float) -> np.ndarray:
        _, _, _, b0, q0, b1, q1, s, kappa = p
        t, nu = tokens / 1e9, n_params / n_ref
        rs = np.power(np.clip(R, 0.0, 1.0), s)
        return (1.0 - rs) * b0 * t**q0 + rs * b1 * nu ** (-kappa) * t**q1

    def base_losses(self, n_params: float) -> np.ndarray:
        """``[K]`` the base model's losses (domain order) at size N."""
        return np.array([p[0] + p[1] / n_params ** p[2] for p in self._params()])

    def _params(self) -> list[tuple[float, ...]]:
        return [self.domain if d == self.new_domain else self.general for d in self.domains]

    def truth(self, r: np.ndarray, n_params: float, tokens: float) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
        """Noise-free ``(losses [n, K], {})`` of continued-training mixtures ``[n, K]``."""
        r = np.atleast_2d(np.asarray(r, dtype=float))
        R = r[:, self.domains.index(self.new_domain)]
        base = self.base_losses(n_params)
        cols = [base[k] + self._increment(p, R, n_params, tokens, self.n_ref) for k, p in enumerate(self._params())]
        return np.stack(cols, axis=1), {}

    def noise_sd(self, n_params: float, noise: float) -> tuple[float, float]:
        """``(sd of each loss, 0)``: ``noise`` at ``n_ref``, as ``(N / n_ref)^-0.35``."""
        return noise * (n_params / self.n_ref) ** -0.35, 0.0

    def cmr(self, tokens: float, n_params: float, tolerance: float | None = None, relative: bool = True) -> float:
        """The true critical ratio at (T, N): the largest R whose general increment is at most ε·L0 (or ε)."""
        eps = self.tolerance if tolerance is None else tolerance
        k = [i for i, d in enumerate(self.domains) if d != self.new_domain][0]
        limit = eps * self.base_losses(n_params)[k] if relative else eps
        g0 = float(self._increment(self.general, np.array([0.0]), n_params, tokens, self.n_ref)[0])
        g1 = float(self._increment(self.general, np.array([1.0]), n_params, tokens, self.n_ref)[0])
        if g1 <= g0:
            return 1.0 if g1 <= limit else 0.0
        if g0 > limit:
            return 0.0
        return float(min(((limit - g0) / (g1 - g0)) ** (1.0 / self.general[7]), 1.0))


World = MixingWorld | AccuracyWorld | CPTWorld


# -- the mixing worlds ----------------------------------------------------------------------

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
# Change per e-fold of tokens: with more data per parameter, repeated in-domain data helps
# less (diagonal up) and books and papers carry more of the long-range structure the other
# domains need (their columns down).
_V6 = 1.5 * np.array(
    [
        [0.10, 0.0, -0.10, 0.0, 0.0, -0.05],
        [0.0, 0.10, 0.0, 0.0, 0.0, -0.10],
        [0.0, 0.0, 0.10, 0.0, 0.0, 0.0],
        [0.0, 0.0, -0.10, 0.10, 0.0, -0.05],
        [0.0, 0.0, 0.0, 0.0, 0.10, -0.10],
        [0.0, 0.0, -0.05, 0.0, 0.0, 0.10],
    ]
)
_E6 = np.array([2.2, 1.0, 2.4, 1.9, 1.2, 1.8])
_K6 = np.array([1.6, 2.0, 1.4, 1.5, 2.2, 1.7])
_A6 = np.array([0.16, 0.26, 0.18, 0.24, 0.30, 0.22])
_B6 = np.array([0.10, 0.06, 0.12, 0.08, 0.05, 0.09])

# Chinchilla-style ladder (D = 20 N): each rung costs 1/4 of the next.
SYNTHETIC_RUNGS = (
    Rung("25M", n_params=25_000_000, tokens=500_000_000),
    Rung("50M", n_params=50_000_000, tokens=1_000_000_000),
    Rung("100M", n_params=100_000_000, tokens=2_000_000_000),
    Rung("200M", n_params=200_000_000, tokens=4_000_000_000),
)
# A ladder that varies N and D apart (5 to 80 tokens per parameter), target 400M on 8B tokens.
MOVING_RUNGS = (
    Rung("25M-0.5B", n_params=25_000_000, tokens=500_000_000),
    Rung("25M-2B", n_params=25_000_000, tokens=2_000_000_000),
    Rung("100M-0.5B", n_params=100_000_000, tokens=500_000_000),
    Rung("100M-2B", n_params=100_000_000, tokens=2_000_000_000),
    Rung("400M-8B", n_params=400_000_000, tokens=8_000_000_000),
)
# Instruction tuning of three model sizes on the same 1B tokens: 0.5B and 3B proxies, a 7B target.
WEAK_RUNGS = (
    Rung("0.5B", n_params=500_000_000, tokens=1_000_000_000),
    Rung("3B", n_params=3_000_000_000, tokens=1_000_000_000),
    Rung("7B", n_params=7_000_000_000, tokens=1_000_000_000),
)

# Continual pre-training of one 500M base model for 0.25B to 2B more tokens (the target: 4B).
CPT_RUNGS = tuple(Rung(f"{t:g}B", n_params=500_000_000, tokens=int(t * 1e9)) for t in (0.25, 0.5, 1.0, 2.0))

_DOMAINS5 = ("chat", "code", "math", "reasoning", "safety")
# Set by hand, then d's scale and tau tuned so that over random mixtures the rank correlation
# of the noise-free accuracy with the 7B one is ~0.54 at 0.5B and ~0.65 at 3B (tests pin the
# band), and the cheap rungs' best mixture is far from the target's (reasoning-heavy vs chat-heavy).
_U5 = np.array([0.55, 0.10, 0.05, 0.35, 0.20])
_D5 = 0.85 * np.array([0.4, 0.0, 0.4, -0.6, 0.2])
_W5 = 0.05 * np.array(
    [
        [0.0, -0.6, -0.3, 0.4, 0.2],
        [-0.6, 0.0, 0.8, 0.3, -0.2],
        [-0.3, 0.8, 0.0, 0.5, -0.3],
        [0.4, 0.3, 0.5, 0.0, 0.0],
        [0.2, -0.2, -0.3, 0.0, 0.0],
    ]
)

SYNTHETIC_WORLDS: dict[str, World] = {
    # The parameters were set by hand for a world where proxies help but mislead: over random
    # mixtures the 25M and 200M objectives rank with Spearman ~0.82, and the 25M optimum lands
    # ~4% of the objective's range from the 200M optimum (L1 distance ~0.45).
    "mixing-shift": MixingWorld(_DOMAINS6, _E6, _K6, _A6, _T6, _U6, rungs=SYNTHETIC_RUNGS),
    "mixing-static": MixingWorld(_DOMAINS6, _E6, _K6, np.full(6, float(_A6.mean())), _T6, np.zeros((6, 6)), rungs=SYNTHETIC_RUNGS),
    "moving-optimum": MixingWorld(_DOMAINS6, _E6, _K6, _A6, _T6, _U6, b=_B6, V=_V6, rungs=MOVING_RUNGS),
    "weak-proxy": AccuracyWorld(_DOMAINS5, _U5, _D5, _W5, rungs=WEAK_RUNGS),
    # Set by hand: a 500M base model (general loss 2.34) continued on finance; forgetting at
    # R = 1 grows as T^0.35 and replay helps as T^0.5, so CMR(T) at ε = 5 % is 0.95, 0.73,
    # 0.57, 0.46 at the rungs' 0.25B-2B tokens and 0.38 at the 4B target (tests pin them).
    "cpt-finance": CPTWorld(
        ("general", "finance"),
        "finance",
        general=(1.9, 400.0, 0.34, -0.03, 0.5, 0.20, 0.35, 0.8, 0.3),
        domain=(2.2, 500.0, 0.34, -0.02, 0.4, -0.45, 0.3, 0.6, 0.0),
        rungs=CPT_RUNGS,
        target=Rung("4B", n_params=500_000_000, tokens=4_000_000_000),
    ),
    # Shapes far from the surface fit's prior (ratio exponent 2, forgetting growing as T^0.8):
    # no forgetting problem up to 0.5B tokens (CMR 1), then CMR 0.78, 0.60 at 1B, 2B and 0.46 at 4B.
    "cpt-math": CPTWorld(
        ("general", "math"),
        "math",
        general=(1.9, 400.0, 0.34, -0.01, 0.3, 0.20, 0.8, 2.0, 0.2),
        domain=(1.6, 450.0, 0.34, -0.01, 0.3, -0.6, 0.25, 0.5, 0.0),
        rungs=CPT_RUNGS,
        target=Rung("4B", n_params=500_000_000, tokens=4_000_000_000),
    ),
}


def default_ladder(world: str, target: str | None = None) -> FidelityLadder:
    """The bench's ladder for a synthetic world: its rungs up to ``target`` (default the last,
    or the world's own target beyond its rungs, as a continual pre-training world has).

    Raises:
        ValueError: an unknown world, or ``target`` not one of its rungs.
    """
    if world not in SYNTHETIC_WORLDS:
        raise ValueError(f"--oracle: unknown synthetic world {world!r}; known: {', '.join(SYNTHETIC_WORLDS)}")
    w = SYNTHETIC_WORLDS[world]
    rungs = w.rungs
    names = [r.name for r in rungs]
    own = getattr(w, "target", None)
    if target is None and own is not None:
        return FidelityLadder(rungs, own)
    if target is not None and target not in names:
        raise ValueError(f"--target: {target!r} is not a rung of synthetic:{world}; rungs: {', '.join(names)}")
    t = names.index(target or names[-1])
    return FidelityLadder(rungs[: t + 1], rungs[t])
