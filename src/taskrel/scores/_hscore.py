"""H-score and its shrinkage-regularized variant."""

from __future__ import annotations

import math

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

from ._common import features_labels, need_more_samples
from ._registry import register_score
from ._torch_ops import (
    check_device,
    class_counts,
    class_sums,
    gram,
    labels_tensor,
    to_tensor,
)

_EPS = float(torch.finfo(torch.float64).eps)


def _between(X: NDArray[np.float64], y: NDArray[np.int64], C: int,
             device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Centered X and M (C x d) with M^T M = sum_c n_c (mu_c - mu)(mu_c - mu)^T,
    float64 tensors on ``device``."""
    Xt, yt = to_tensor(X, device), labels_tensor(y, device)
    Xc = Xt - Xt.mean(dim=0)
    counts = class_counts(yt, C)
    means = class_sums(Xc, yt, C) / counts[:, None]
    return Xc, means * torch.sqrt(counts)[:, None]


def _pinv_trace(w: torch.Tensor, V: torch.Tensor, M: torch.Tensor, cutoff: float
                ) -> float:
    """tr(pinv(V diag(w) V^T) M^T M), eigenvalues <= cutoff dropped."""
    keep = w > cutoff
    P = M @ V[:, keep]
    return float(torch.sum(P**2 / w[keep]))


@register_score(
    "h_score", higher_is_better=True, inputs=("features", "labels"),
    summary="tr(cov(f)^-1 cov(E[f|y])): class separation relative to feature spread",
    paper="Bao et al., ICIP 2019", gpu=True,
)
def h_score(features: ArrayLike, labels: ArrayLike, *,
            device: str | torch.device = "cpu") -> float:
    r"""H-score: :math:`\operatorname{tr}(\operatorname{cov}(f)^{+}\operatorname{cov}(E[f\mid y]))`.

    .. math::

        H(f) = \operatorname{tr}\big(\Sigma_f^{+}\,\Sigma_{E[f|y]}\big),\quad
        \Sigma_f = \tfrac1{n-1}\textstyle\sum_i (f_i-\bar f)(f_i-\bar f)^\top,\quad
        \Sigma_{E[f|y]} = \tfrac1{n-1}\textstyle\sum_c n_c(\mu_c-\bar f)(\mu_c-\bar f)^\top.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
        Needs n_samples > n_features (else use :func:`regularized_h_score`).
    labels : array-like of shape (n_samples,)
    device : {'cpu', 'auto', 'cuda', 'cuda:N'} or torch.device, default 'cpu'
        Where the covariances and the eigendecomposition run (torch, float64).

    Returns
    -------
    float
        In [0, C - 1]; higher means more transferable. Invariant to invertible affine
        maps of the features.

    Notes
    -----
    Pseudo-inverse through one symmetric eigendecomposition; eigenvalues below
    ``max(n, d) * eps * max_eigenvalue`` are dropped. Cost O(n d^2 + d^3 + n d C),
    memory O(n d + d^2) on ``device``.

    References
    ----------
    Bao, Li, Huang, Wang, Wu, Zhang, Tian, Li, Yang. An Information-Theoretic Approach
    to Transferability in Task Transfer Learning. ICIP 2019.

    Examples
    --------
    >>> import numpy as np
    >>> y = np.repeat([0, 1], 10)
    >>> X = np.c_[y + np.random.default_rng(0).normal(size=20) * 0.1, np.arange(20)]
    >>> 0 < h_score(X, y) <= 1
    True
    """
    dev = check_device(device)
    X, y, C = features_labels(features, labels)
    n, d = X.shape
    need_more_samples("h_score", n, d, "use regularized_h_score or reduce the features")
    Xc, M = _between(X, y, C, dev)
    w, V = torch.linalg.eigh(gram(Xc))
    cutoff = max(n, d) * _EPS * max(float(w[-1]), 0.0)
    return _pinv_trace(w, V, M, cutoff)


def ledoit_wolf_shrinkage(Xc: torch.Tensor, S: torch.Tensor) -> float:
    """Ledoit-Wolf (2004) shrinkage intensity for centered ``Xc`` with S = Xc^T Xc / n.

    Same estimator as ``sklearn.covariance.ledoit_wolf_shrinkage``, in O(n d) after S
    (uses sum_jk sum_i x_ij^2 x_ik^2 = sum_i ||x_i||^4).
    """
    n, d = Xc.shape
    tr = float(torch.trace(S))
    mu = tr / d
    row2 = torch.einsum("ij,ij->i", Xc, Xc)  # no n x d temporary
    beta_ = float(row2 @ row2)
    delta_ = float(torch.sum(S * S))
    beta = (beta_ / n - delta_) / (d * n)
    delta = (delta_ - 2.0 * mu * tr + d * mu**2) / d
    beta = min(beta, delta)
    return 0.0 if beta == 0 else beta / delta


@register_score(
    "regularized_h_score", higher_is_better=True, inputs=("features", "labels"),
    summary="H-score with a Ledoit-Wolf shrunk feature covariance (stable for small n)",
    paper="Ibrahim, Ponomareva, Mazumder, arXiv 2022 (Newer is not always better)",
    gpu=True,
)
def regularized_h_score(features: ArrayLike, labels: ArrayLike, *,
                        device: str | torch.device = "cpu") -> float:
    r"""Shrinkage-regularized H-score.

    .. math::

        H_\alpha(f) = (1-\alpha)\,\operatorname{tr}\big(\Sigma_\alpha^{-1}
        \Sigma_{E[f|y]}\big),\quad
        \Sigma_\alpha = (1-\alpha)\Sigma_f + \alpha\tfrac{\operatorname{tr}\Sigma_f}d I,

    with :math:`\alpha` the Ledoit-Wolf shrinkage intensity, :math:`\Sigma_f` the
    1/n covariance (scikit-learn's ``LedoitWolf``) and
    :math:`\Sigma_{E[f|y]} = \frac1{n-1}\sum_c n_c(\mu_c-\bar f)(\mu_c-\bar f)^\top`
    (``np.cov``), as in TLlib's ``regularized_h_score``.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
        Any n >= 2 (n < d is fine: the shrunk covariance is invertible).
    labels : array-like of shape (n_samples,)
    device : {'cpu', 'auto', 'cuda', 'cuda:N'} or torch.device, default 'cpu'
        Where the covariances and the eigendecomposition run (torch, float64).

    Returns
    -------
    float
        Higher means more transferable. Invariant to feature scaling and rotations.

    Notes
    -----
    Equals TLlib's ``tllib/ranking/hscore.py: regularized_h_score`` (the authors'
    reference, which mixes the 1/n and 1/(n-1) normalisations: a factor n/(n-1) over
    the 1/n-only form; tested). One symmetric eigendecomposition: cost
    O(n d^2 + d^3).

    References
    ----------
    Ibrahim, Ponomareva, Mazumder. Newer is not always better: Rethinking
    transferability metrics, their peculiarities, stability and performance.
    ECML-PKDD 2022 (arXiv:2110.06893). Ledoit, Wolf. A well-conditioned estimator for
    large-dimensional covariance matrices. J. Multivariate Anal. 2004.
    """
    dev = check_device(device)
    X, y, C = features_labels(features, labels)
    n, d = X.shape
    Xc, M = _between(X, y, C, dev)
    S = gram(Xc) / n
    alpha = ledoit_wolf_shrinkage(Xc, S)
    w, V = torch.linalg.eigh(S)
    mu = float(torch.trace(S)) / d
    w_a = (1 - alpha) * torch.clamp(w, min=0.0) + alpha * mu
    cutoff = max(n, d) * _EPS * max(float(w_a[-1]), 0.0)
    # Between-class covariance with 1/(n - 1), the shrunk one with 1/n (TLlib).
    return (1 - alpha) * _pinv_trace(w_a, V, M / math.sqrt(n - 1), cutoff)
