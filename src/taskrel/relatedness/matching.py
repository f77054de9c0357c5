"""Stage 4: the label map B (target x reference classes) and the class prior D."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import linear_sum_assignment, nnls

from ..exceptions import TaskrelInputError
from ..heads import LinearHead
from .config import RelatednessConfig, check_label_map
from .labels import TargetLabels
from .reference import ReferenceFit

__all__ = ["match_score", "sparse_B", "matched_D", "matched_label_map", "prior_matched_D",
           "matched_B", "initial_label_map", "PRIOR_RIDGE"]


def match_score(
    head: LinearHead, X_ref_coords: NDArray[np.float64], y: NDArray[np.int64], K_T: int
) -> NDArray[np.float64]:
    """M[k, j]: mean log-probability the reference head gives class j on target class k."""
    logp = head.log_proba(X_ref_coords)
    return np.stack([logp[y == k].mean(0) for k in range(K_T)])


def sparse_B(score: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """One-to-one Hungarian matching of target classes to reference classes.

    Unmatched reference columns point to their best-scoring target class (any
    column-stochastic B is valid; :func:`matched_D` gives them D = 0, so they add no
    label mismatch and no reference loss). Returns (B, sigma) with sigma[k] the
    reference class matched to target class k.

    With more target than reference classes (the learned-B start), every reference
    class is matched to its own target class and every other target class joins its
    best-scoring reference class; the returned B is then the 0/1 incidence of sigma,
    which :func:`matched_label_map` turns into the column-stochastic start.
    """
    K_T, K_R = score.shape
    rows, cols = linear_sum_assignment(-score)
    if K_T > K_R:
        sigma = np.argmax(score, axis=1).astype(np.int64)
        sigma[rows] = cols
        B = np.zeros((K_T, K_R))
        B[np.arange(K_T), sigma] = 1.0
        return B, sigma
    sigma = np.empty(K_T, dtype=np.int64)
    sigma[rows] = cols
    B = np.zeros((K_T, K_R))
    best = np.argmax(score, axis=0)
    B[best, np.arange(K_R)] = 1.0
    B[:, sigma] = 0.0
    B[np.arange(K_T), sigma] = 1.0
    return B, sigma


def matched_D(sigma: NDArray[np.int64], pi_T: NDArray[np.float64], K_R: int
              ) -> NDArray[np.float64]:
    r"""The class prior that follows the matching: :math:`D_j = \sum_{k:\sigma(k)=j}
    \pi_T(k)`, so :math:`D_{\sigma(k)} = \pi_T(k)` for a one-to-one matching and
    reference classes matched to no target class get :math:`D_j = 0`.

    This is the unique D with :math:`BD = \pi_T` that puts no mass on unmatched
    columns, whatever the classes' numbering (a least-squares D on the 0/1 matrix is
    not unique when unmatched columns share a row, and a solver would pick one by
    column index).

    Examples
    --------
    >>> matched_D(np.array([3, 1]), np.array([0.25, 0.75]), 4).tolist()
    [0.0, 0.75, 0.0, 0.25]
    """
    D = np.zeros(K_R)
    np.add.at(D, sigma, pi_T)
    return D


def matched_label_map(score: NDArray[np.float64], pi_T: NDArray[np.float64]
                      ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    r"""(B, D) of the head's matching scores: Hungarian sparse B and the D that follows
    the matching (:func:`matched_D`).

    With more target than reference classes, a reference class serving several target
    classes splits its mass over them in proportion to their priors,
    :math:`B_{kj} = \pi_T(k) / D_j` for :math:`\sigma(k)=j`, so that :math:`BD = \pi_T`
    holds exactly at the start of the learned-B fit.
    """
    B, sigma = sparse_B(score)
    D = matched_D(sigma, pi_T, score.shape[1])
    if score.shape[0] > score.shape[1]:
        B = np.zeros_like(B)
        B[np.arange(sigma.size), sigma] = pi_T / D[sigma]
    return B, D


#: Relative ridge of :func:`prior_matched_D` (makes the least-squares D unique).
PRIOR_RIDGE = 1e-9


def prior_matched_D(B: NDArray[np.float64], pi_T: NDArray[np.float64]) -> NDArray[np.float64]:
    r"""D on the simplex with :math:`BD = \pi_T` as nearly as possible, for a caller's
    (``b_mode="fixed"``) label map.

    Solved as non-negative least squares with a tiny ridge
    (:data:`PRIOR_RIDGE`): without it the solution is not unique whenever columns of B
    are linearly dependent (e.g. two reference classes sent to one target class) and
    the solver's choice would follow the column order; the ridge picks the
    minimum-norm D, which splits such mass equally and permutes with the classes.
    """
    K_R = B.shape[1]
    lam = np.sqrt(PRIOR_RIDGE) * max(1.0, float(np.abs(B).max()))
    D, _ = nnls(np.vstack([B, lam * np.eye(K_R)]), np.concatenate([pi_T, np.zeros(K_R)]))
    s = D.sum()
    if s <= 0:
        raise TaskrelInputError("`B`: no class prior D satisfies B D = pi_T")
    return D / s


def matched_B(head: LinearHead, Zt: NDArray[np.float64], y: NDArray[np.int64], K_T: int,
              pi_T: NDArray[np.float64], A_inv: NDArray[np.float64] | None = None,
              b: NDArray[np.float64] | None = None
              ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(B, D) of the head's matching on target rows (mapped back by (A, b) if given)."""
    X = Zt if A_inv is None else (Zt - b) @ A_inv.T
    return matched_label_map(match_score(head, X, y, K_T), pi_T)


def initial_label_map(ref: ReferenceFit, Zt: NDArray[np.float64], labels: TargetLabels,
                      pi_T: NDArray[np.float64], cfg: RelatednessConfig
                      ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(B, D) the fit starts from: the caller's B (``fixed``) with its prior-matched D,
    the identity on the pseudo-classes (no target labels), or the head's sparse
    matching; D follows the matching (:func:`matched_D`) in the last two."""
    K_T, K_R = labels.n_classes, ref.n_classes
    if cfg.b_mode == "fixed":
        B = check_label_map(cfg.B, K_T, K_R)
        return B, prior_matched_D(B, pi_T)
    if labels.source == "true":
        return matched_B(ref.head, Zt, labels.y_fit, K_T, pi_T)
    if labels.warm is None:
        raise RuntimeError("pseudo-labels carry no label-free alignment (internal error)")
    cls = labels.classes.astype(np.int64)
    Bm = np.zeros((K_T, K_R))  # pseudo-classes are reference classes: identity map
    Bm[np.arange(K_T), cls] = 1.0
    rest = np.setdiff1d(np.arange(K_R), cls)
    if rest.size:
        A_inv, b = labels.warm
        score = match_score(ref.head, (Zt - b) @ A_inv.T, labels.y_fit, K_T)
        Bm[np.argmax(score[:, rest], axis=0), rest] = 1.0
    return Bm, matched_D(cls, pi_T, K_R)
