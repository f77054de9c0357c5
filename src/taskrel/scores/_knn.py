"""Leave-one-out k-nearest-neighbour accuracy."""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

from .._internal.oom import with_oom_fallback
from .._internal.validation import check_bool, check_choice, check_positive
from ..exceptions import TaskrelInputError
from ._common import features_labels
from ._registry import register_score
from ._torch_ops import check_device, labels_tensor

#: Rows centered and copied to the device per step (bounds the float64 temporary).
_COPY_ELEMS = 1 << 22


def _prepare(X: NDArray[np.float64], metric: str, device: torch.device) -> torch.Tensor:
    """Centered (and for 'cosine' row-normalized) float32 features on ``device``."""
    n, d = X.shape
    if not (X.flags.writeable and X.flags.c_contiguous):
        X = np.array(X, order="C")  # torch warns on read-only arrays
    Xt = torch.from_numpy(X)  # shares memory; only read
    mean = Xt.mean(dim=0)
    Z = torch.empty((n, d), dtype=torch.float32, device=device)
    step = max(1, _COPY_ELEMS // max(d, 1))
    for s in range(0, n, step):
        Z[s:s + step] = (Xt[s:s + step] - mean).to(device=device, dtype=torch.float32)
    if metric == "cosine":
        norms = torch.linalg.vector_norm(Z, dim=1, keepdim=True)
        Z /= torch.clamp(norms, min=torch.finfo(torch.float32).tiny)
    return Z


def _block_distances(Zb: torch.Tensor, Z: torch.Tensor, sq_b: torch.Tensor,
                     sq: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances (b x n) of the rows of ``Zb`` to all rows of ``Z``.

    ``|a|^2 + |b|^2 - 2 a.b`` with one matrix product and no other b x n buffer
    (``torch.cdist`` would also copy all of ``Z`` on every call).
    """
    D = Zb @ Z.T
    return D.mul_(-2.0).add_(sq[None, :]).add_(sq_b[:, None])


def _count_correct(Z: torch.Tensor, y: torch.Tensor, k: int, C: int, batch: int
                   ) -> torch.Tensor:
    """Leave-one-out hits of the k-NN vote per true class (int64, C), queries in
    blocks of ``batch`` rows."""
    n = Z.shape[0]
    sq = torch.sum(Z * Z, dim=1)
    # Vote weight k (k + 1) + (k - rank): the extra parts of a class sum to less than
    # k (k + 1), so the vote count decides and a tie goes to the class whose members
    # rank nearer in total; a tie in that too, to the lower class id. Integers, so
    # the argmax is exact and the same on every device.
    weight = k * (k + 1) + (k - torch.arange(k, device=Z.device))
    hits = torch.zeros(C, dtype=torch.int64, device=Z.device)
    for s in range(0, n, batch):
        e = min(n, s + batch)
        rows = torch.arange(e - s, device=Z.device)
        D = _block_distances(Z[s:e], Z, sq[s:e], sq)
        D[rows, rows + s] = torch.inf
        nb = torch.topk(D, k, dim=1, largest=False, sorted=True).indices
        del D
        votes = torch.zeros((e - s, C), dtype=torch.int64, device=Z.device)
        votes.scatter_add_(1, y[nb], weight.expand(e - s, k))
        pred = torch.argmax(votes, dim=1)
        hits += torch.bincount(y[s:e][pred == y[s:e]], minlength=C)
    return hits


@register_score(
    "knn_accuracy", higher_is_better=True, inputs=("features", "labels"),
    summary="leave-one-out k-NN accuracy of the features",
    paper="Sorkhei et al., arXiv 2503.18528 (k-NN as a simple estimator)", gpu=True,
)
def knn_accuracy(features: ArrayLike, labels: ArrayLike, k: int = 10, *,
                 metric: str = "euclidean", batch_size: int = 1024,
                 device: str | torch.device = "cpu", balanced: bool = False) -> float:
    r"""Leave-one-out k-NN accuracy: :math:`\frac1n\sum_i[\hat y_{-i}(x_i) = y_i]`.

    :math:`\hat y_{-i}` is the majority label among the k nearest other samples;
    a tie goes to the tied class whose members rank nearer in total (larger sum of
    k - rank, ranks from 0), then to the lower class id. With ``balanced``, the mean
    per-class recall of the same vote,
    :math:`\frac1C\sum_c\frac1{n_c}\sum_{i: y_i=c}[\hat y_{-i}(x_i) = c]`, so every
    class weighs the same whatever its size.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
    labels : array-like of shape (n_samples,)
    k : int, default 10
    metric : {'euclidean', 'cosine'}, default 'euclidean'
    batch_size : int, default 1024
        Query rows per block: memory O(batch_size n), never n x n. When a block runs
        out of memory (CUDA or host), the whole computation restarts with half the
        block, with a ``BatchSizeWarning`` (``taskrel._internal.oom``); the result is that of one
        complete run, never a mix.
    device : {'cpu', 'auto', 'cuda', 'cuda:N'} or torch.device, default 'cpu'
        Where distances and neighbour searches run (torch).
    balanced : bool, default False
        Balanced accuracy (mean per-class recall) instead of accuracy: on an
        imbalanced target, plain accuracy mostly measures the largest classes.

    Returns
    -------
    float
        In [0, 1]; higher means more transferable.

    Notes
    -----
    Distances are computed in float32 on centered features (they only rank
    neighbours), so float32 and float64 inputs give the same result; CPU and GPU
    can differ only where two neighbour distances agree to float32 rounding. Cost
    O(n^2 d) time, O(n d + batch_size n) memory (float32 on ``device``).

    References
    ----------
    Sorkhei, Lindqvist, Matsoukas, Azizpour, Smith. k-NN as a Simple and Effective
    Estimator of Transferability. arXiv:2503.18528, 2025.

    Examples
    --------
    >>> knn_accuracy([[0.], [0.1], [0.2], [5.], [5.1], [5.2]], [0, 0, 0, 1, 1, 1], k=2)
    1.0
    >>> X, y = [[0.], [0.1], [0.2], [0.3], [5.], [5.1]], [0, 0, 0, 0, 1, 1]
    >>> knn_accuracy(X, y, k=3), knn_accuracy(X, y, k=3, balanced=True)
    (0.6666666666666666, 0.5)
    """
    k = check_positive(k, "k", integer=True)
    check_choice(metric, "metric", ("euclidean", "cosine"))
    batch_size = check_positive(batch_size, "batch_size", integer=True)
    balanced = check_bool(balanced, "balanced")
    dev = check_device(device)
    X, y, C = features_labels(features, labels)
    n = X.shape[0]
    if k >= n:
        raise TaskrelInputError(f"`k` must be below the number of samples ({n}); got {k}")
    Z = _prepare(X, metric, dev)
    yt = labels_tensor(y, dev)
    hits = with_oom_fallback(lambda b: _count_correct(Z, yt, k, C, b),
                             min(batch_size, n)).cpu().numpy()
    if balanced:
        return float(np.mean(hits / np.bincount(y, minlength=C)))
    return int(hits.sum()) / n
