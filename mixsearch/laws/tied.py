"""Several curves of one law fitted together, some parameters shared by all curves.

One exponent for every domain's curve, say, while each domain keeps its own scale: the
curves become one :class:`~mixsearch.laws.fit.Formula` (:class:`TiedFormula`) whose inputs
carry a curve index, fitted by the robust core (:func:`~mixsearch.laws.fit.fit_model`) with
bootstrap resamples drawn within each curve.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from mixsearch.laws.fit import FitOptions, FitResult, Formula, fit_model, run_starts, screen_starts


class TiedFormula:
    """Several curves of one formula fitted together, some parameters shared by all curves.

    The inputs gain a first column: the curve index ``c`` in ``0..C-1``. θ holds the
    tied parameters first, then each curve's free parameters, named ``"name[c]"``.

    Args:
        base: The law of one curve.
        n_curves: Number of curves C.
        tied: Names of the parameters of ``base`` that every curve shares.
    """

    def __init__(self, base: Formula, n_curves: int, tied: Sequence[str]) -> None:
        unknown = [t for t in tied if t not in base.names]
        if unknown:
            raise ValueError(f"tied: unknown parameter(s) {unknown}; the law has {list(base.names)}")
        if n_curves < 1:
            raise ValueError(f"n_curves must be >= 1, got {n_curves}")
        self.base = base
        self.n_curves = n_curves
        self.tied = tuple(tied)
        self.free = tuple(nm for nm in base.names if nm not in self.tied)
        self.log_space = base.log_space
        self.names = self.tied + tuple(f"{nm}[{c}]" for c in range(n_curves) for nm in self.free)
        t, f = len(self.tied), len(self.free)
        self.index = np.array(
            [[self.tied.index(nm) if nm in self.tied else t + c * f + self.free.index(nm) for nm in base.names] for c in range(n_curves)],
            dtype=int,
        )

    def curve_theta(self, theta: np.ndarray, c: int) -> np.ndarray:
        """The base parameters ``[..., p]`` of curve ``c`` from composite ``theta [..., P]``."""
        return np.asarray(theta)[..., self.index[c]]

    def value(self, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        cid = x[:, 0].astype(int)
        rows = getattr(self.base, "rows_value_and_jacobian", None)
        if rows is not None:
            return rows(np.asarray(theta)[..., self.index[cid]], x[:, 1:])[0]
        out = np.empty(np.shape(theta)[:-1] + (x.shape[0],))
        for c in np.unique(cid):
            rows = cid == c
            out[..., rows] = self.base.value(self.curve_theta(theta, c), x[rows, 1:])
        return out

    def jacobian(self, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        return self.value_and_jacobian(theta, x)[1]

    def value_and_jacobian(self, theta: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cid = x[:, 0].astype(int)
        rows = getattr(self.base, "rows_value_and_jacobian", None)
        if rows is not None:
            idx = self.index[cid]  # [n, p]: composite column of each row's parameters
            value, rows_jac = rows(np.asarray(theta)[idx], x[:, 1:])
            jac = np.zeros((x.shape[0], len(self.names)))
            jac[np.arange(x.shape[0])[:, None], idx] = rows_jac
            return value, jac
        return self.value(theta, x), self._looped_jacobian(theta, x)

    def _looped_jacobian(self, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        cid = x[:, 0].astype(int)
        jac = np.zeros((x.shape[0], len(self.names)))
        for c in np.unique(cid):
            rows = np.flatnonzero(cid == c)
            jac[np.ix_(rows, self.index[c])] = self.base.jacobian(self.curve_theta(theta, c), x[rows, 1:])
        return jac

    def initial_grid(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Starts: candidate shared values, each curve's free parameters fitted with them held.

        The shared values are taken from separate per-curve fits (their median and the first
        curves' own values) and from the base law's best starts on every curve pooled. A curve
        with as few points as parameters fits anything on its own, so its values say little
        about the shared ones, and a start that pairs shared values with free values fitted
        under other shared values can sit in a poor basin (a floor at its bound, say); with
        the shared values held while each curve's free parameters are fitted, every start is
        the best the curves can do under its shared values, and the joint fit picks among them.
        """
        cid = x[:, 0].astype(int)
        curves = [cid == c for c in range(self.n_curves)]
        per_curve = np.stack([self._quick_fit(self.base, x[rows, 1:], y[rows], None) for rows in curves])
        tied_cols = [self.base.names.index(t) for t in self.tied]
        candidates = [np.median(per_curve[:, tied_cols], axis=0)] + [per_curve[c, tied_cols] for c in range(min(self.n_curves, 4))]
        pooled = np.asarray(self.base.initial_grid(x[:, 1:], y), dtype=float)
        target = np.log(y) if self.log_space else y
        ranked = screen_starts(self.base, pooled, x[:, 1:], target, FitOptions(n_starts=3, bootstrap=0, cv_folds=0))
        candidates += [row[tied_cols] for row in ranked]
        grid = []
        for tied_values in np.unique(np.round(np.array(candidates), 12), axis=0):
            held = _Held(self.base, tied_cols, tied_values)
            theta = np.empty(len(self.names))
            for c, rows in enumerate(curves):
                start = per_curve[c].copy()
                start[tied_cols] = tied_values
                theta[self.index[c]] = self._quick_fit(held, x[rows, 1:], y[rows], start)
            theta[: len(self.tied)] = tied_values
            grid.append(theta)
        return np.stack(grid)

    def _quick_fit(self, law: Formula, x: np.ndarray, y: np.ndarray, start: np.ndarray | None) -> np.ndarray:
        """``law``'s parameters ``[p]`` fitted roughly to ``x [n, d]``, ``y [n]`` (from ``start``, or
        the law's own screened grid): starts only, the joint fit finishes the job."""
        quick = FitOptions(n_starts=2, bootstrap=0, cv_folds=0, maxiter=300)
        target = np.log(y) if self.log_space else y
        starts = screen_starts(law, np.asarray(law.initial_grid(x, y), dtype=float), x, target, quick) if start is None else start[None, :]
        runs = run_starts(law, x, target, starts, quick)
        return runs[0].x if runs else starts[0]

    def bounds(self) -> list[tuple[float | None, float | None]] | None:
        base = self.base.bounds()
        if not base:
            return None
        out: list[tuple[float | None, float | None]] = [(None, None)] * len(self.names)
        for c in range(self.n_curves):
            for j, col in enumerate(self.index[c]):
                out[col] = base[j]
        return out


def fit_tied(
    base: Formula,
    xs: Sequence[np.ndarray],
    ys: Sequence[np.ndarray],
    tied: Sequence[str],
    options: FitOptions | None = None,
) -> tuple[FitResult, TiedFormula]:
    """Fit several curves of one law with some parameters shared.

    Bootstrap resamples are drawn within each curve. Held-out error is off unless
    ``options.cv_folds`` asks for it (a curve with few points cannot spare one).

    Args:
        base: The law of one curve.
        xs: Per-curve inputs, each ``[n_c, d]`` or ``[n_c]``.
        ys: Per-curve observations ``[n_c]``.
        tied: Names of the shared parameters.
        options: Fit options.

    Returns:
        ``(fit, formula)``; ``formula.curve_theta(fit.theta, c)`` gives curve ``c``'s parameters.
    """
    if len(xs) != len(ys) or not xs:
        raise ValueError(f"need one y per x and at least one curve, got {len(xs)} x and {len(ys)} y")
    formula = TiedFormula(base, len(xs), tied)
    parts_x, parts_y, cid = [], [], []
    for c, (xc, yc) in enumerate(zip(xs, ys)):
        xc = np.asarray(xc, dtype=float)
        xc = xc[:, None] if xc.ndim == 1 else xc
        parts_x.append(xc)
        parts_y.append(np.asarray(yc, dtype=float).reshape(-1))
        cid.append(np.full(xc.shape[0], c))
    curve = np.concatenate(cid)
    x = np.column_stack([curve, np.vstack(parts_x)])
    opts = options or FitOptions(cv_folds=0)
    return fit_model(formula, x, np.concatenate(parts_y), opts, strata=curve), formula


class _Held:
    """A law with some parameters held at given values (bounds pinned), otherwise the same."""

    def __init__(self, base: Formula, cols: Sequence[int], values: np.ndarray) -> None:
        self._base = base
        self._held = dict(zip(cols, np.asarray(values, dtype=float)))

    def __getattr__(self, name: str):
        return getattr(self._base, name)

    def bounds(self) -> list[tuple[float | None, float | None]]:
        out = list(self._base.bounds() or [(None, None)] * len(self._base.names))
        for col, v in self._held.items():
            out[col] = (float(v), float(v))
        return out
