"""Leave-one-out k-nearest-neighbour accuracy."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from .._validation import check_choice, check_positive
from ..exceptions import TaskrelInputError
from ._common import features_labels
from ._registry import register_score


@register_score(
    "knn_accuracy", higher_is_better=True, inputs=("features", "labels"),
    summary="leave-one-out k-NN accuracy of the features",
    paper="Sorkhei et al., arXiv 2503.18528 (k-NN as a simple estimator)",
)
def knn_accuracy(features: ArrayLike, labels: ArrayLike, k: int = 10, *,
                 metric: str = "euclidean", batch_size: int = 1024) -> float:
    r"""Leave-one-out k-NN accuracy: :math:`\frac1n\sum_i[\hat y_{-i}(x_i) = y_i]`.

    :math:`\hat y_{-i}` is the majority label among the k nearest other samples;
    ties go to the tied class whose nearest member ranks first.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
    labels : array-like of shape (n_samples,)
    k : int, default 10
    metric : {'euclidean', 'cosine'}, default 'euclidean'
    batch_size : int, default 1024
        Query rows per block: memory O(batch_size n), never n x n.

    Returns
    -------
    float
        In [0, 1]; higher means more transferable.

    Notes
    -----
    Distances are computed in float32 on centered features (they only rank
    neighbours), so float32 and float64 inputs give the same result. Cost
    O(n^2 d) time, O(n d + batch_size n) memory.

    References
    ----------
    Sorkhei, Lindqvist, Matsoukas, Azizpour, Smith. k-NN as a Simple and Effective
    Estimator of Transferability. arXiv:2503.18528, 2025.

    Examples
    --------
    >>> knn_accuracy([[0.], [0.1], [0.2], [5.], [5.1], [5.2]], [0, 0, 0, 1, 1, 1], k=2)
    1.0
    """
    k = check_positive(k, "k", integer=True)
    check_choice(metric, "metric", ("euclidean", "cosine"))
    batch_size = check_positive(batch_size, "batch_size", integer=True)
    X, y, C = features_labels(features, labels)
    n = X.shape[0]
    if k >= n:
        raise TaskrelInputError(f"`k` must be below the number of samples ({n}); got {k}")
    Z = (X - X.mean(axis=0)).astype(np.float32)
    if metric == "cosine":
        norms = np.linalg.norm(Z, axis=1, keepdims=True)
        Z = Z / np.maximum(norms, np.finfo(np.float32).tiny)
    sq = np.einsum("ij,ij->i", Z, Z)
    # Votes weighted 1 + (k - r) / (k (k + 1)): extra weight sums to < 1, so it only
    # breaks ties, in favour of the class whose nearest member ranks first.
    w = 1.0 + (k - np.arange(k)) / (k * (k + 1.0))
    correct = 0
    for s in range(0, n, batch_size):
        e = min(n, s + batch_size)
        D = sq[s:e, None] + sq[None, :] - 2.0 * (Z[s:e] @ Z.T)
        D[np.arange(e - s), np.arange(s, e)] = np.inf
        idx = np.argpartition(D, k - 1, axis=1)[:, :k]
        order = np.argsort(np.take_along_axis(D, idx, axis=1), axis=1, kind="stable")
        nb = np.take_along_axis(idx, order, axis=1)
        votes = np.zeros((e - s, C))
        np.add.at(votes, (np.repeat(np.arange(e - s), k), y[nb].ravel()),
                  np.tile(w, e - s))
        correct += int(np.sum(np.argmax(votes, axis=1) == y[s:e]))
    return correct / n
