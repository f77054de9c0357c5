"""Shared boundary checks for the estimators (internals trust what these return)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._internal.validation import check_consistent_length, check_features, check_labels
from ..exceptions import TaskrelInputError

#: Rows of a probability matrix may miss 1 by this much (float32 softmax of many
#: classes drifts by ~1e-6); larger deviations are rejected, smaller ones renormalized.
PROB_SUM_ATOL = 1e-4


def features_labels(
    X: Any, y: Any, *, x_name: str = "features", y_name: str = "labels",
    min_per_class: int = 2,
) -> tuple[NDArray[np.float64], NDArray[np.int64], int]:
    """Validate a (features, labels) pair; return float64 X, encoded y, n_classes."""
    Xa = check_features(X, x_name)
    classes, yi = check_labels(y, y_name, min_per_class=min_per_class)
    check_consistent_length(Xa, x_name, yi, y_name)
    return Xa, yi, int(classes.size)


def check_probabilities(P: Any, name: str) -> NDArray[np.float64]:
    """Return ``P`` as a float64 row-stochastic matrix (a new array, rows renormalized)."""
    Pa = check_features(P, name)
    if np.any(Pa < 0):
        raise TaskrelInputError(
            f"`{name}` must be probabilities (non-negative); got min {Pa.min():.3g}")
    s = Pa.sum(axis=1)
    off = float(np.max(np.abs(s - 1.0)))
    if off > PROB_SUM_ATOL:
        raise TaskrelInputError(
            f"`{name}` rows must sum to 1 (within {PROB_SUM_ATOL:g}); "
            f"got rows off by up to {off:.3g} (pass softmax probabilities, not logits)")
    return Pa / s[:, None]


def onehot(y: NDArray[np.int64], C: int) -> NDArray[np.float64]:
    Y = np.zeros((y.size, C))
    Y[np.arange(y.size), y] = 1.0
    return Y


def class_sums(X: NDArray[np.float64], y: NDArray[np.int64], C: int
               ) -> NDArray[np.float64]:
    """Per-class row sums (C x d): one BLAS product with the one-hot matrix.

    O(n d C) flops but faster in practice than sorting + ``np.add.reduceat`` (which
    copies X) for C up to a few hundred.
    """
    return onehot(y, C).T @ X


def class_means(X: NDArray[np.float64], y: NDArray[np.int64], C: int
                ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Return (means C x d, counts C)."""
    counts = np.bincount(y, minlength=C).astype(np.float64)
    return class_sums(X, y, C) / counts[:, None], counts


def need_more_samples(name: str, n: int, d: int, hint: str) -> None:
    if n <= d:
        raise TaskrelInputError(
            f"`features`: {name} needs more samples than features for a full-rank "
            f"covariance; got n={n}, d={d} ({hint})")


def pca_variance(X: NDArray[np.float64], variance: float) -> NDArray[np.float64]:
    """Project centered X on the leading principal axes explaining ``variance``.

    One symmetric eigh of the d x d covariance (n x n Gram when n <= d).
    """
    Xc = X - X.mean(axis=0)
    n, d = Xc.shape
    if n > d:
        w, V = np.linalg.eigh(gram(Xc))
        w, V = w[::-1].clip(min=0), V[:, ::-1]
        k = _n_keep(w, variance)
        return Xc @ V[:, :k]
    w, U = np.linalg.eigh(gram(Xc, rows=True))
    w, U = w[::-1].clip(min=0), U[:, ::-1]
    k = _n_keep(w, variance)
    return U[:, :k] * np.sqrt(w[:k])


def _n_keep(w: NDArray[np.float64], variance: float) -> int:
    total = float(w.sum())
    if total <= 0:
        return 1
    if variance >= 1:
        return int(max(1, np.count_nonzero(w > 1e-12 * w[0])))
    # side='right': the first k whose cumulative ratio exceeds ``variance``, as
    # scikit-learn's PCA(n_components=variance) chooses it.
    k = np.searchsorted(np.cumsum(w) / total, variance, side="right") + 1
    return int(min(w.size, k))


def gram(A: NDArray[np.float64], *, rows: bool = False) -> NDArray[np.float64]:
    """Symmetric Gram matrix A^T A (or A A^T with ``rows=True``) in float64.

    BLAS ``dsyrk`` computes one triangle only: half the flops of ``A.T @ A``.
    """
    from scipy.linalg.blas import dsyrk

    # dsyrk(a, trans=0) = a a^T, dsyrk(a, trans=1) = a^T a. Pass a Fortran-ordered
    # operand (A.T of a C-ordered A) so f2py does not copy the n x d data.
    if A.flags.c_contiguous:
        G = dsyrk(1.0, A.T, trans=1 if rows else 0)
    else:
        G = dsyrk(1.0, np.asfortranarray(A), trans=0 if rows else 1)
    iu = np.triu_indices_from(G, k=1)
    G[(iu[1], iu[0])] = G[iu]
    return G
