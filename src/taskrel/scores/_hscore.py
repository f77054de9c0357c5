"""H-score and its shrinkage-regularized variant."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._common import class_means, features_labels, gram, need_more_samples
from ._registry import register_score


def _between(X: NDArray[np.float64], y: NDArray[np.int64], C: int
             ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Centered X and M (C x d) with M^T M = sum_c n_c (mu_c - mu)(mu_c - mu)^T."""
    Xc = X - X.mean(axis=0)
    means, counts = class_means(Xc, y, C)
    return Xc, means * np.sqrt(counts)[:, None]


def _pinv_trace(w: NDArray[np.float64], V: NDArray[np.float64],
                M: NDArray[np.float64], cutoff: float) -> float:
    """tr(pinv(V diag(w) V^T) M^T M), eigenvalues <= cutoff dropped."""
    keep = w > cutoff
    P = M @ V[:, keep]
    return float(np.sum(P**2 / w[keep]))


@register_score(
    "h_score", higher_is_better=True, inputs=("features", "labels"),
    summary="tr(cov(f)^-1 cov(E[f|y])): class separation relative to feature spread",
    paper="Bao et al., ICIP 2019",
)
def h_score(features: ArrayLike, labels: ArrayLike) -> float:
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

    Returns
    -------
    float
        In [0, C - 1]; higher means more transferable. Invariant to invertible affine
        maps of the features.

    Notes
    -----
    Pseudo-inverse through one symmetric eigendecomposition; eigenvalues below
    ``max(n, d) * eps * max_eigenvalue`` are dropped. Cost O(n d^2 + d^3), memory
    O(n d + d^2).

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
    X, y, C = features_labels(features, labels)
    n, d = X.shape
    need_more_samples("h_score", n, d, "use regularized_h_score or reduce the features")
    Xc, M = _between(X, y, C)
    w, V = np.linalg.eigh(gram(Xc))
    cutoff = max(n, d) * np.finfo(np.float64).eps * max(float(w[-1]), 0.0)
    return _pinv_trace(w, V, M, cutoff)


def ledoit_wolf_shrinkage(Xc: NDArray[np.float64], S: NDArray[np.float64]) -> float:
    """Ledoit-Wolf (2004) shrinkage intensity for centered ``Xc`` with S = Xc^T Xc / n.

    Same estimator as ``sklearn.covariance.ledoit_wolf_shrinkage``, in O(n d) after S
    (uses sum_jk sum_i x_ij^2 x_ik^2 = sum_i ||x_i||^4).
    """
    n, d = Xc.shape
    tr = float(np.trace(S))
    mu = tr / d
    row2 = np.einsum("ij,ij->i", Xc, Xc)
    beta_ = float(row2 @ row2)
    delta_ = float(np.sum(S * S))
    beta = (beta_ / n - delta_) / (d * n)
    delta = (delta_ - 2.0 * mu * tr + d * mu**2) / d
    beta = min(beta, delta)
    return 0.0 if beta == 0 else beta / delta


@register_score(
    "regularized_h_score", higher_is_better=True, inputs=("features", "labels"),
    summary="H-score with a Ledoit-Wolf shrunk feature covariance (stable for small n)",
    paper="Ibrahim, Ponomareva, Mazumder, arXiv 2022 (Newer is not always better)",
)
def regularized_h_score(features: ArrayLike, labels: ArrayLike) -> float:
    r"""Shrinkage-regularized H-score.

    .. math::

        H_\alpha(f) = (1-\alpha)\,\operatorname{tr}\big(\Sigma_\alpha^{-1}
        \Sigma_{E[f|y]}\big),\quad
        \Sigma_\alpha = (1-\alpha)\Sigma_f + \alpha\tfrac{\operatorname{tr}\Sigma_f}d I,

    with :math:`\alpha` the Ledoit-Wolf shrinkage intensity and both covariances
    normalised by 1/n.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
        Any n >= 2 (n < d is fine: the shrunk covariance is invertible).
    labels : array-like of shape (n_samples,)

    Returns
    -------
    float
        Higher means more transferable. Invariant to feature scaling and rotations.

    Notes
    -----
    One symmetric eigendecomposition: cost O(n d^2 + d^3). TLlib's version divides
    the between-class covariance by n - 1 and the shrunk one by n (a factor n/(n-1));
    here both use 1/n.

    References
    ----------
    Ibrahim, Ponomareva, Mazumder. Newer is not always better: Rethinking
    transferability metrics, their peculiarities, stability and performance.
    ECML-PKDD 2022 (arXiv:2110.06893). Ledoit, Wolf. A well-conditioned estimator for
    large-dimensional covariance matrices. J. Multivariate Anal. 2004.
    """
    X, y, C = features_labels(features, labels)
    n, d = X.shape
    Xc, M = _between(X, y, C)
    S = gram(Xc) / n
    alpha = ledoit_wolf_shrinkage(Xc, S)
    w, V = np.linalg.eigh(S)
    mu = float(np.trace(S)) / d
    w_a = (1 - alpha) * w.clip(min=0) + alpha * mu
    cutoff = max(n, d) * np.finfo(np.float64).eps * max(float(w_a[-1]), 0.0)
    return (1 - alpha) * _pinv_trace(w_a, V, M / np.sqrt(n), cutoff)
