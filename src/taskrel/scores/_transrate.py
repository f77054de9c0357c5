"""TransRate: coding-rate estimate of the mutual information between features and labels."""

from __future__ import annotations

import torch
from numpy.typing import ArrayLike

from .._internal.validation import check_positive
from ._common import features_labels
from ._registry import register_score
from ._torch_ops import check_device, gram, labels_tensor, to_tensor


def _coding_rate(Z: torch.Tensor, eps: float) -> float:
    """R(Z, eps) = 1/2 logdet(I_d + Z^T Z / (m eps)) via the smaller Gram (Sylvester)."""
    m, d = Z.shape
    G = gram(Z, rows=m <= d)
    G /= m * eps
    G.diagonal().add_(1.0)
    L = torch.linalg.cholesky(G)
    return float(torch.sum(torch.log(torch.diagonal(L))))


@register_score(
    "transrate", higher_is_better=True, inputs=("features", "labels"),
    summary="coding rate of all features minus the mean per-class coding rate",
    paper="Huang et al., ICML 2022 (Frustratingly Easy Transferability Estimation)",
    gpu=True,
)
def transrate(features: ArrayLike, labels: ArrayLike, eps: float = 1e-4, *,
              device: str | torch.device = "cpu") -> float:
    r"""TransRate: :math:`R(Z, \epsilon) - \frac1C\sum_c R(Z_c, \epsilon)`.

    .. math::

        R(Z, \epsilon) = \tfrac12\log\det\!\Big(I_d + \tfrac{1}{m\epsilon}Z^\top Z\Big)

    for an m x d block Z of globally centered features; :math:`Z_c` holds the rows of
    class c.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
    labels : array-like of shape (n_samples,)
    eps : float, default 1e-4
        Distortion of the coding rate.
    device : {'cpu', 'auto', 'cuda', 'cuda:N'} or torch.device, default 'cpu'
        Where the Gram matrices and their Cholesky factors run (torch, float64).

    Returns
    -------
    float
        Higher means more transferable. Not scale invariant (eps is absolute).

    Notes
    -----
    The class term is the plain mean over classes with 1/(n_c eps) scaling, the form of
    TLlib's ``transrate`` (PR #184). Each log-determinant comes from a Cholesky
    factor of the smaller of the d x d and n_c x n_c Gram matrices (they have the same
    determinant). Cost O(n d^2 + sum_c min(n_c, d)^3), memory O(n d + d^2) on
    ``device``.

    References
    ----------
    Huang, Huang, Rong, Yang, Wei. Frustratingly Easy Transferability Estimation.
    ICML 2022.
    """
    eps = check_positive(eps, "eps")
    dev = check_device(device)
    X, y, C = features_labels(features, labels)
    Xt, y = to_tensor(X, dev), labels_tensor(y, dev)
    Xc = Xt - Xt.mean(dim=0)
    rz = _coding_rate(Xc, eps)
    rzy = sum(_coding_rate(Xc[y == c], eps) for c in range(C))
    return rz - rzy / C
