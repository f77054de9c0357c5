r"""Optimal-transport pieces of the engine: class groups, exact couplings, the affine fit.

A *group* pairs the (weighted) transformed-reference samples that the label map sends
to one target class with the target samples of that class. With prior matching
(:math:`BD = \pi_T`) the label-constrained joint Wasserstein distance is the
:math:`\pi_T`-weighted sum of per-group :math:`W_1` distances, which is what is solved
and evaluated here. All couplings are exact (``ot.emd``) with the Euclidean cost.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import ot
from numpy.typing import NDArray

from .._internal.ot import exact_plan
from ..exceptions import ConvergenceWarning

__all__ = ["Group", "keyed_subsample", "build_groups", "group_couplings", "class_mean_init", "transform_rows",
           "fit_affine", "mean_shift", "IRLS_EPS"]

#: Floor on residual norms in the IRLS weights (features are standardized, so 1e-9 is
#: far below any distance that matters).
IRLS_EPS = 1e-9


@dataclass(frozen=True)
class Group:
    """One target class: reference rows with masses, target rows (uniform), weight."""

    ref_rows: NDArray[np.int64]
    ref_mass: NDArray[np.float64]  # sums to 1
    tgt_rows: NDArray[np.int64]
    weight: float  # pi_T(k) or 1/K


def keyed_subsample(rows: NDArray[np.int64], keys: NDArray[np.float64], size: int
                    ) -> NDArray[np.int64]:
    """The ``size`` rows of ``rows`` with the smallest ``keys[row]``, sorted.

    Every subsample of the engine draws one key per *row* (by its index), never per
    class in class order, so which rows a class keeps does not depend on how the
    classes are numbered (renumbering leaves every result unchanged).
    """
    if rows.size <= size:
        return rows
    return np.sort(rows[np.argsort(keys[rows], kind="stable")[:size]])


def build_groups(
    y_ref: NDArray[np.int64],
    y_tgt: NDArray[np.int64],
    B: NDArray[np.float64],
    D: NDArray[np.float64],
    class_weights: NDArray[np.float64],
    *,
    max_per_class: int | None = None,
    rng: np.random.Generator | None = None,
    min_mass: float = 1e-12,
) -> list[Group]:
    r"""Groups for :math:`P_{R'''}(z\mid k) \propto \sum_j D_j B_{kj} P_R(z\mid j)`.

    A reference sample of class ``j`` gets mass ``D_j B_kj / n_j`` in group ``k``
    (normalized). ``max_per_class`` caps each reference class and each target class by
    a seeded subsample keyed by row (:func:`keyed_subsample`; the masses are recomputed
    on the subsample).
    """
    K_T, K_R = B.shape
    ref_rows_by_class = [np.flatnonzero(y_ref == j) for j in range(K_R)]
    tgt_rows_by_class = [np.flatnonzero(y_tgt == k) for k in range(K_T)]
    if max_per_class is not None:
        rng = rng if rng is not None else np.random.default_rng(0)
        key_r, key_t = rng.random(y_ref.size), rng.random(y_tgt.size)
        ref_rows_by_class = [keyed_subsample(r, key_r, max_per_class)
                             for r in ref_rows_by_class]
        tgt_rows_by_class = [keyed_subsample(r, key_t, max_per_class)
                             for r in tgt_rows_by_class]
    groups = []
    for k in range(K_T):
        coef = D * B[k]
        rows, mass = [], []
        for j in np.flatnonzero(coef > min_mass):
            r = ref_rows_by_class[j]
            if r.size == 0:
                continue
            rows.append(r)
            mass.append(np.full(r.size, coef[j] / r.size))
        t = tgt_rows_by_class[k]
        if not rows or t.size == 0:
            side = "reference" if not rows else "target"
            raise ValueError(
                f"target class index {k} has no {side} samples to transport "
                "(every class needs samples on both sides)"
            )
        m = np.concatenate(mass)
        groups.append(
            Group(np.concatenate(rows), m / m.sum(), t, float(class_weights[k]))
        )
    return groups


def group_couplings(
    Xs: NDArray[np.float64], Xt: NDArray[np.float64], groups: list[Group]
) -> tuple[float, list[tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]], list[float]]:
    """Exact W1 couplings per group. Returns (weighted total, sparse plans, per-group W1).

    ``Xs`` are the already transformed reference features. Plans are returned as
    (reference rows, target rows, mass) triplets over the nonzero entries.
    """
    total = 0.0
    plans = []
    per_group = []
    for g in groups:
        a = g.ref_mass
        bm = np.full(g.tgt_rows.size, 1.0 / g.tgt_rows.size)
        M = ot.dist(Xs[g.ref_rows], Xt[g.tgt_rows], metric="euclidean")
        G = exact_plan(a, bm, M, knob="`max_per_class`", stacklevel=4)
        i, j = np.nonzero(G > 0)
        w1 = float(np.sum(G[i, j] * M[i, j]))
        per_group.append(w1)
        total += g.weight * w1
        plans.append((g.ref_rows[i], g.tgt_rows[j], g.weight * G[i, j]))
    return total, plans, per_group


def class_mean_init(
    Zs: NDArray[np.float64],
    Zt: NDArray[np.float64],
    groups: list[Group],
    *,
    ridge: float = 1e-3,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Affine map that carries the reference class means onto the target class means.

    Weighted ridge regression of target group means on reference group means, pulled
    toward the identity (with fewer classes than dimensions the means alone leave A
    undetermined; the ridge keeps it I off their span). With more classes than
    dimensions in general position it pins the map down, which plain alternation from
    the identity can miss (a local minimum of the coupling).
    """
    w = np.array([g.weight for g in groups])
    M = np.stack([g.ref_mass @ Zs[g.ref_rows] for g in groups])
    N = np.stack([Zt[g.tgt_rows].mean(0) for g in groups])
    A, b, _ = _affine_ridge_solve(M, N, w, ridge)
    return A, b


def _affine_ridge_solve(
    X: NDArray[np.float64],
    T: NDArray[np.float64],
    w: NDArray[np.float64],
    ridge: float,
    mu: float | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64], float]:
    r"""Solve :math:`\min_{A,b} \sum_i w_i \lVert A x_i + b - t_i\rVert^2 + \mu\lVert A - I\rVert_F^2`.

    ``mu`` is absolute; when None it is ``ridge`` times the mean diagonal of the
    weighted Gram matrix (or ``ridge`` itself if that is 0). Returns (A, b, mu).
    """
    d = X.shape[1]
    X1 = np.hstack([X, np.ones((X.shape[0], 1))])
    XW = X1 * w[:, None]
    gram = X1.T @ XW
    if mu is None:
        mu = ridge * float(np.trace(gram[:d, :d])) / d
        mu = mu if mu > 0 else ridge
    rhs = XW.T @ T  # (d+1, d)
    gram[:d, :d] += mu * np.eye(d)
    rhs[:d, :] += mu * np.eye(d)
    sol = np.linalg.solve(gram, rhs)  # (d+1, d): [A^T; b^T]
    return sol[:d, :].T, sol[d, :], mu


def mean_shift(
    Zr: NDArray[np.float64], Zt: NDArray[np.float64], groups: list[Group]
) -> NDArray[np.float64]:
    """The shift b that carries the weighted reference group means onto the targets'."""
    shift = sum(g.weight * (Zt[g.tgt_rows].mean(0) - g.ref_mass @ Zr[g.ref_rows])
                for g in groups)
    return np.asarray(shift) / sum(g.weight for g in groups)


def transform_rows(
    Z: NDArray[np.float64], A: NDArray[np.float64], b: NDArray[np.float64],
    rows: NDArray[np.int64],
) -> NDArray[np.float64]:
    """``Z @ A.T + b`` on ``rows`` only (other rows zero): groups index the full array,
    and transforming rows no group uses would cost n*d^2 for nothing."""
    out = np.zeros_like(Z)
    out[rows] = Z[rows] @ A.T + b
    return out


def fit_affine(
    Zs: NDArray[np.float64],
    Zt: NDArray[np.float64],
    groups: list[Group],
    *,
    A0: NDArray[np.float64] | None = None,
    b0: NDArray[np.float64] | None = None,
    ridge: float = 1e-2,
    max_iter: int = 50,
    tol: float = 1e-4,
    callback=None,
) -> tuple[NDArray[np.float64], NDArray[np.float64], dict]:
    r"""Minimize :math:`\sum_k w_k W_1(A Z_s^k + b, Z_t^k) + \tfrac{\mu}{2}\lVert A-I\rVert_F^2`.

    Alternates an exact coupling for fixed (A, b) with one majorize-minimize (IRLS)
    step for (A, b) at a fixed coupling: :math:`\lVert e\rVert \le
    \lVert e\rVert^2/(2r) + r/2` turns the Euclidean cost into a weighted least-squares
    problem, solved in closed form. Neither step increases the objective, so the
    alternation stops when it changes by less than ``tol`` (relative) — not after a
    fixed number of steps.

    The ridge pulls A toward the identity: constant (dead) feature dimensions keep
    ``A = I`` there and A stays invertible. ``ridge`` is relative: the absolute weight is
    ``ridge`` times the mean diagonal of the first weighted Gram matrix, then fixed.
    """
    n, d = Zs.shape
    A = np.eye(d) if A0 is None else A0.copy()
    b = np.zeros(d) if b0 is None else b0.copy()
    if b0 is None:  # start from matching the weighted class means: one exact move
        b = mean_shift(Zs, Zt, groups)
    mu = None
    history: list[float] = []
    # Each step cannot increase the objective in exact arithmetic; near a perfect fit
    # the IRLS weights (mass / residual) get extreme, so keep the best iterate seen.
    best: tuple[float, NDArray[np.float64], NDArray[np.float64], float] | None = None
    converged = False
    used = np.unique(np.concatenate([g.ref_rows for g in groups]))
    for it in range(max_iter):
        Xs = transform_rows(Zs, A, b, used)
        obj, plans, per_group = group_couplings(Xs, Zt, groups)
        reg = 0.0 if mu is None else 0.5 * mu * float(np.sum((A - np.eye(d)) ** 2))
        history.append(obj + reg)
        if best is None or history[-1] < best[0]:
            best = (history[-1], A.copy(), b.copy(), obj)
        if callback is not None:
            callback(it, obj)
        if len(history) > 1 and abs(history[-2] - history[-1]) <= tol * abs(history[-2]):
            converged = True
            break
        # IRLS weights v = mass / residual, aggregated per reference row.
        ri = np.concatenate([p[0] for p in plans])
        tj = np.concatenate([p[1] for p in plans])
        m = np.concatenate([p[2] for p in plans])
        res = np.linalg.norm(Xs[ri] - Zt[tj], axis=1)
        v = m / np.maximum(res, IRLS_EPS)
        rows, inv = np.unique(ri, return_inverse=True)
        V = np.bincount(inv, weights=v)
        That = np.zeros((rows.size, d))
        np.add.at(That, inv, v[:, None] * Zt[tj])
        That /= V[:, None]
        A, b, mu = _affine_ridge_solve(Zs[rows], That, V, ridge, mu)
    else:
        change = (
            abs(history[-2] - history[-1]) / abs(history[-2])
            if len(history) > 1
            else float("nan")
        )
        warnings.warn(
            f"feature-map fit stopped at max_iter={max_iter} with relative change "
            f"{change:.2e} > tol={tol}; "
            "raise `max_iter`",
            ConvergenceWarning,
            stacklevel=2,
        )
    assert best is not None
    _, A, b, obj = best
    info = {
        "iterations": len(history),
        "converged": converged,
        "objective": history,
        "W": obj,
        "mu": mu,
    }
    return A, b, info
