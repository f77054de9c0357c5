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

__all__ = ["match_score", "sparse_B", "prior_matched_D", "matched_B", "initial_label_map"]


def match_score(
    head: LinearHead, X_ref_coords: NDArray[np.float64], y: NDArray[np.int64], K_T: int
) -> NDArray[np.float64]:
    """M[k, j]: mean log-probability the reference head gives class j on target class k."""
    logp = head.log_proba(X_ref_coords)
    return np.stack([logp[y == k].mean(0) for k in range(K_T)])


def sparse_B(score: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """One-to-one Hungarian matching of target classes to reference classes.

    Unmatched reference columns point to their best-scoring target class (any
    column-stochastic B is valid; their D is 0, so they add no label mismatch).
    Returns (B, sigma) with sigma[k] the reference class matched to target class k.
    """
    K_T, K_R = score.shape
    rows, cols = linear_sum_assignment(-score)
    if K_T > K_R:
        # More target than reference classes (the learned-B start): every reference
        # class is matched to its own target class, every other target class joins its
        # best-scoring reference class, and a reference class's mass is split equally
        # over the target classes it serves, so each target class receives mass.
        sigma = np.argmax(score, axis=1).astype(np.int64)
        sigma[rows] = cols
        B = np.zeros((K_T, K_R))
        B[np.arange(K_T), sigma] = 1.0
        return B / B.sum(0, keepdims=True), sigma
    sigma = np.empty(K_T, dtype=np.int64)
    sigma[rows] = cols
    B = np.zeros((K_T, K_R))
    best = np.argmax(score, axis=0)
    B[best, np.arange(K_R)] = 1.0
    B[:, sigma] = 0.0
    B[np.arange(K_T), sigma] = 1.0
    return B, sigma


def prior_matched_D(B: NDArray[np.float64], pi_T: NDArray[np.float64]) -> NDArray[np.float64]:
    """D on the simplex with B D = pi_T as nearly as possible (NNLS, then normalized)."""
    D, _ = nnls(B, pi_T)
    s = D.sum()
    if s <= 0:
        raise TaskrelInputError("`B`: no class prior D satisfies B D = pi_T")
    return D / s


def matched_B(head: LinearHead, Zt: NDArray[np.float64], y: NDArray[np.int64], K_T: int,
              A_inv: NDArray[np.float64] | None = None,
              b: NDArray[np.float64] | None = None) -> NDArray[np.float64]:
    """The sparse B of the head's scores on target rows (mapped back by (A, b) if given)."""
    X = Zt if A_inv is None else (Zt - b) @ A_inv.T
    return sparse_B(match_score(head, X, y, K_T))[0]


def initial_label_map(ref: ReferenceFit, Zt: NDArray[np.float64], labels: TargetLabels,
                      cfg: RelatednessConfig) -> NDArray[np.float64]:
    """The B the fit starts from: the caller's (``fixed``), the identity on the
    pseudo-classes (no target labels), or the head's sparse matching."""
    K_T, K_R = labels.n_classes, ref.n_classes
    if cfg.b_mode == "fixed":
        return check_label_map(cfg.B, K_T, K_R)
    if labels.source == "true":
        return matched_B(ref.head, Zt, labels.y_fit, K_T)
    assert labels.warm is not None
    cls = labels.classes.astype(np.int64)
    Bm = np.zeros((K_T, K_R))  # pseudo-classes are reference classes: identity map
    Bm[np.arange(K_T), cls] = 1.0
    rest = np.setdiff1d(np.arange(K_R), cls)
    if rest.size:
        A_inv, b = labels.warm
        score = match_score(ref.head, (Zt - b) @ A_inv.T, labels.y_fit, K_T)
        Bm[np.argmax(score[:, rest], axis=0), rest] = 1.0
    return Bm
