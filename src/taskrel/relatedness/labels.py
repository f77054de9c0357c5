"""Stage 3: the target labels the transformation is fitted to — given, or pseudo-labels.

Without target labels, the reference is first aligned to the target without labels
(:func:`marginal_alignment`); the transformed reference classifier then labels the
target, and the alignment is refitted to those labels until they settle
(``pseudo_labels="classifier"``), or k-means clusters are matched to reference classes
(``"kmeans"``). Pseudo-classes are reference classes.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import linear_sum_assignment
from sklearn.utils.extmath import randomized_svd

from ..exceptions import ConvergenceWarning, TaskrelInputError
from ..heads import LinearHead
from .config import RelatednessConfig
from .reference import ReferenceFit, class_prior
from .transport import build_groups, fit_affine

__all__ = ["TargetLabels", "target_labels", "pseudo_label", "marginal_alignment",
           "matched_accuracy", "MARGINAL_POINTS", "MARGINAL_ITER", "MARGINAL_DIM",
           "MIN_PSEUDO_CLASS_FRACTION"]

#: Points per side in the label-free (marginal) alignment.
MARGINAL_POINTS = 1000
#: Alternations of the marginal alignment (it only seeds matching and pseudo-labels).
MARGINAL_ITER = 10
#: The marginal alignment is fitted in this many leading principal directions of the
#: pooled features (identity off them): it only seeds the matching, and the leading
#: directions carry the global moves (a rotation of the images, a shift of style).
MARGINAL_DIM = 64
#: Fraction of target points under which a pseudo-class is folded into its runner-up.
MIN_PSEUDO_CLASS_FRACTION = 0.01
#: Refits of the alignment while classifier pseudo-labels still change.
MAX_ROUNDS = 5


@dataclass(frozen=True)
class TargetLabels:
    """Encoded target labels for fitting (train rows) and evaluating (held-out rows).

    ``classes`` are the target's class ids, or for pseudo-labels the reference-class
    indices the pseudo-classes stand for. ``warm`` is the last label-free alignment
    ``(A_inv, b)`` (pseudo-labels only).
    """

    n_classes: int
    y_fit: NDArray[np.int64]
    y_eval: NDArray[np.int64]
    classes: NDArray[Any]
    source: str
    pseudo_accuracy: float | None = None
    warm: tuple[NDArray[np.float64], NDArray[np.float64]] | None = None
    rounds: int | None = None


def target_labels(ref: ReferenceFit, Zt: NDArray[np.float64], Zt_te: NDArray[np.float64],
                  y: NDArray[np.int64] | None, y_te: NDArray[np.int64] | None,
                  classes: NDArray[Any] | None, check_labels_te: NDArray[Any] | None,
                  cfg: RelatednessConfig, rng: np.random.Generator) -> TargetLabels:
    """The given labels, or pseudo-labels (see the module docstring)."""
    if y is not None:
        assert y_te is not None and classes is not None
        return TargetLabels(int(classes.size), y, y_te, classes, "true")
    return pseudo_label(ref, Zt, Zt_te, check_labels_te, cfg, rng)


def matched_accuracy(pred: NDArray[Any], true: NDArray[Any]) -> float:
    """Accuracy after the best one-to-one matching of predicted to true classes."""
    pc, pi = np.unique(pred, return_inverse=True)
    tc, ti = np.unique(true, return_inverse=True)
    cont = np.zeros((pc.size, tc.size))
    np.add.at(cont, (pi, ti), 1.0)
    r, c = linear_sum_assignment(-cont)
    return float(cont[r, c].sum() / true.size)


def _scores(head: LinearHead, Z: NDArray[np.float64], A_inv: NDArray[np.float64],
            b: NDArray[np.float64]) -> NDArray[np.float64]:
    """Log-probabilities of the reference head on target rows mapped back by (A, b)."""
    return head.log_proba((Z - b) @ A_inv.T)


def _kmeans_labels(ref: ReferenceFit, Zt: NDArray[np.float64], Zt_te: NDArray[np.float64],
                   A_inv: NDArray[np.float64], b: NDArray[np.float64],
                   cfg: RelatednessConfig) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """k-means clusters of the target, each matched to one reference class."""
    from sklearn.cluster import KMeans

    K_R = ref.n_classes
    K = cfg.n_target_classes or K_R
    km = KMeans(n_clusters=K, n_init=4, random_state=cfg.seed).fit(Zt)
    lab, lab_te = km.labels_, km.predict(Zt_te)
    S = _scores(ref.head, Zt, A_inv, b)
    M = np.stack([S[lab == c].mean(0) if np.any(lab == c) else np.full(K_R, -np.inf)
                  for c in range(K)])
    r, c = linear_sum_assignment(-np.nan_to_num(M, neginf=-1e12))
    cmap = np.empty(K, dtype=np.int64)
    cmap[r] = c
    return cmap[lab], cmap[lab_te]


def _initial_keep(S: NDArray[np.float64], K_R: int, n_target_classes: int | None
                  ) -> NDArray[np.int64]:
    """The reference classes the classifier predicts often enough to be pseudo-classes."""
    counts = np.bincount(S.argmax(1), minlength=K_R)
    order = np.argsort(-counts, kind="stable")
    if n_target_classes is not None:
        return np.sort(order[:n_target_classes])
    keep = np.sort(np.flatnonzero(counts >= max(2, MIN_PSEUDO_CLASS_FRACTION * S.shape[0])))
    return keep if keep.size >= 2 else np.sort(order[:2])


def _classifier_labels(ref: ReferenceFit, Zt: NDArray[np.float64],
                       Zt_te: NDArray[np.float64], A_inv: NDArray[np.float64],
                       b: NDArray[np.float64], cfg: RelatednessConfig,
                       rng: np.random.Generator) -> tuple[Any, ...]:
    """Label with the transformed classifier; refit the alignment until labels settle.

    Returns (train ids, held-out ids, A_inv, b, rounds), ids as reference classes.
    """
    K_R = ref.n_classes
    prev = keep = None
    rounds = 0
    for rounds in range(1, MAX_ROUNDS + 1):
        S = _scores(ref.head, Zt, A_inv, b)
        if keep is None:
            keep = _initial_keep(S, K_R, cfg.n_target_classes)
        ref_ids_tr = keep[S[:, keep].argmax(1)]
        if prev is not None and np.mean(prev != ref_ids_tr) < 1e-3:
            break
        prev = ref_ids_tr
        y_fit = np.searchsorted(keep, ref_ids_tr)
        # make sure every kept class has >= 2 samples on the train side
        ok = np.bincount(y_fit, minlength=keep.size) >= 2
        if not np.all(ok):
            keep = keep[ok]
            ref_ids_tr = keep[S[:, keep].argmax(1)]
            y_fit = np.searchsorted(keep, ref_ids_tr)
        pi_T = class_prior(y_fit, keep.size)
        Bm = np.zeros((keep.size, K_R))
        Bm[np.arange(keep.size), keep] = 1.0
        groups = build_groups(ref.split.y, y_fit, Bm, pi_T @ Bm, pi_T,
                              max_per_class=cfg.max_per_class, rng=rng)
        A, b, _ = fit_affine(ref.Z, Zt, groups, ridge=cfg.middle_ridge, max_iter=50,
                             tol=cfg.tol)
        A_inv = np.linalg.inv(A)
    assert keep is not None
    ref_ids_te = keep[_scores(ref.head, Zt_te, A_inv, b)[:, keep].argmax(1)]
    ref_ids_tr = keep[_scores(ref.head, Zt, A_inv, b)[:, keep].argmax(1)]
    return ref_ids_tr, ref_ids_te, A_inv, b, rounds


def pseudo_label(ref: ReferenceFit, Zt: NDArray[np.float64], Zt_te: NDArray[np.float64],
                 check_labels_te: NDArray[Any] | None, cfg: RelatednessConfig,
                 rng: np.random.Generator) -> TargetLabels:
    """Pseudo-labels for an unlabelled target (see the module docstring)."""
    A_inv, b = marginal_alignment(ref.Z, ref.split.y, Zt, ref.prior, ridge=cfg.middle_ridge,
                                  tol=cfg.tol, rng=rng)
    rounds = 0
    if cfg.pseudo_labels == "kmeans":
        ref_ids_tr, ref_ids_te = _kmeans_labels(ref, Zt, Zt_te, A_inv, b, cfg)
    else:
        ref_ids_tr, ref_ids_te, A_inv, b, rounds = _classifier_labels(
            ref, Zt, Zt_te, A_inv, b, cfg, rng)
    # Test pseudo-labels may miss a class: drop such classes (fold into runner-up).
    keep = np.intersect1d(np.unique(ref_ids_tr), np.unique(ref_ids_te))
    if keep.size < 2:
        hint = ("pass `target_labels` or `n_target_classes`" if cfg.n_target_classes is None
                else "pass `target_labels` or more target rows")
        raise TaskrelInputError(
            f"pseudo-labelling found fewer than 2 target classes present in both the fit "
            f"and the held-out target rows ({Zt.shape[0]} and {Zt_te.shape[0]} rows); {hint}"
        )
    S_tr, S_te = _scores(ref.head, Zt, A_inv, b), _scores(ref.head, Zt_te, A_inv, b)
    if cfg.pseudo_labels == "classifier":
        ref_ids_tr = keep[S_tr[:, keep].argmax(1)]
        ref_ids_te = keep[S_te[:, keep].argmax(1)]
    else:
        ref_ids_tr = np.where(np.isin(ref_ids_tr, keep), ref_ids_tr,
                              keep[S_tr[:, keep].argmax(1)])
        ref_ids_te = np.where(np.isin(ref_ids_te, keep), ref_ids_te,
                              keep[S_te[:, keep].argmax(1)])
    y_fit = np.searchsorted(keep, ref_ids_tr)
    y_eval = np.searchsorted(keep, ref_ids_te)
    acc = None if check_labels_te is None else matched_accuracy(y_eval, check_labels_te)
    return TargetLabels(int(keep.size), y_fit, y_eval, keep, cfg.pseudo_labels, acc,
                        (A_inv, b), rounds)


def marginal_alignment(
    Zr: NDArray[np.float64],
    yr: NDArray[np.int64],
    Zt: NDArray[np.float64],
    pi_R: NDArray[np.float64],
    *,
    ridge: float,
    tol: float,
    rng: np.random.Generator,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Label-free W1 alignment of the whole reference to the whole target (A^-1, b).

    Each side is subsampled to ``MARGINAL_POINTS`` (seeded) so one exact OT stays cheap.
    Above ``MARGINAL_DIM`` dimensions the map is fitted in the leading principal
    subspace U of the pooled subsample and is the identity off it:
    ``A = I + U (A_k - I) U^T``, whose inverse is ``I + U (A_k^-1 - I) U^T``.
    """
    keep_r = rng.choice(yr.size, size=min(MARGINAL_POINTS, yr.size), replace=False)
    keep_t = rng.choice(Zt.shape[0], size=min(MARGINAL_POINTS, Zt.shape[0]), replace=False)
    yr_sub = np.full(yr.size, -1)
    yr_sub[keep_r] = yr[keep_r]
    yt_sub = np.full(Zt.shape[0], -1)
    yt_sub[keep_t] = 0
    K_R = pi_R.size
    present = np.bincount(yr_sub[yr_sub >= 0], minlength=K_R) > 0
    D = np.where(present, pi_R, 0.0)
    one = build_groups(yr_sub, yt_sub, np.ones((1, K_R)), D / D.sum(), np.ones(1))
    d = Zr.shape[1]
    U = None
    if d > MARGINAL_DIM:
        pooled = np.vstack([Zr[keep_r], Zt[keep_t]])
        pooled -= pooled.mean(0)
        _, _, Vt = randomized_svd(pooled, MARGINAL_DIM, n_iter=2,
                                  random_state=int(rng.integers(2**31 - 1)))
        U = Vt.T  # d x k, orthonormal columns
        Zr, Zt = Zr @ U, Zt @ U
    with warnings.catch_warnings():  # a short alignment on purpose
        warnings.simplefilter("ignore", ConvergenceWarning)
        A, b, _ = fit_affine(Zr, Zt, one, ridge=ridge, max_iter=MARGINAL_ITER, tol=tol)
    A_inv = np.linalg.inv(A)
    if U is None:
        return A_inv, b
    k = U.shape[1]
    return np.eye(d) + U @ (A_inv - np.eye(k)) @ U.T, U @ b
