"""GBC: Gaussian Bhattacharyya coefficient between class-conditional Gaussians."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from ..exceptions import TaskrelInputError
from ._common import class_means, features_labels
from ._registry import register_score

#: Floor on class variances, relative to the mean feature variance (avoids log 0).
_VAR_FLOOR_REL = 1e-12


@register_score(
    "gbc", higher_is_better=True, inputs=("features", "labels"),
    summary="minus the summed Bhattacharyya overlap of per-class Gaussians",
    paper="Pandy et al., CVPR 2022 (Transferability Estimation using Bhattacharyya...)",
)
def gbc(features: ArrayLike, labels: ArrayLike, *,
        gaussian_type: str = "spherical") -> float:
    r"""GBC: :math:`-\sum_{c}\sum_{c'\neq c}\exp(-D_B(c, c'))`.

    Each class is a Gaussian :math:`N(\mu_c, \Sigma_c)` with diagonal
    (``"diagonal"``) or spherical (``"spherical"``, :math:`\sigma_c^2 I` with
    :math:`\sigma_c^2` the mean per-dimension variance) covariance, and

    .. math::

        D_B = \tfrac18(\mu_c-\mu_{c'})^\top\bar\Sigma^{-1}(\mu_c-\mu_{c'})
        + \tfrac12\log\frac{|\bar\Sigma|}{\sqrt{|\Sigma_c||\Sigma_{c'}|}},\quad
        \bar\Sigma = \tfrac12(\Sigma_c+\Sigma_{c'}).

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
        Used as given: no PCA inside (the paper reduces to 64 dimensions first; do it
        before calling if you want that).
    labels : array-like of shape (n_samples,)
    gaussian_type : {'spherical', 'diagonal'}, default 'spherical'

    Returns
    -------
    float
        In [-C(C-1), 0]; higher (closer to 0) means more separable, more transferable.
        The spherical form is invariant to feature scaling and rotations.

    Notes
    -----
    Variances are the biased (1/n_c) per-class estimates. Cost O(n d + C^2 d),
    memory O(n d + C d).

    References
    ----------
    Pandy, Agostinelli, Uijlings, Ferrari, Mensink. Transferability Estimation using
    Bhattacharyya Class Separability. CVPR 2022.
    """
    if gaussian_type not in ("spherical", "diagonal"):
        raise TaskrelInputError(
            "`gaussian_type` must be one of 'spherical', 'diagonal'; "
            f"got {gaussian_type!r}")
    X, y, C = features_labels(features, labels)
    d = X.shape[1]
    mu, counts = class_means(X, y, C)
    sq, _ = class_means(X * X, y, C)
    var = (sq - mu**2).clip(min=0)
    floor = _VAR_FLOOR_REL * max(float(X.var(axis=0).mean()), np.finfo(float).tiny)
    total = 0.0
    if gaussian_type == "spherical":
        s = np.maximum(var.mean(axis=1), floor)  # C
        sbar = (s[:, None] + s[None, :]) / 2
        n2 = np.einsum("ij,ij->i", mu, mu)
        dist2 = (n2[:, None] + n2[None, :] - 2 * mu @ mu.T).clip(min=0)
        db = dist2 / (8 * sbar) + 0.5 * d * (np.log(sbar)
                                              - 0.5 * (np.log(s)[:, None] + np.log(s)[None, :]))
        bc = np.exp(-db)
        np.fill_diagonal(bc, 0.0)
        total = float(bc.sum())
    else:
        v = np.maximum(var, floor)
        logv = np.log(v)
        for c in range(C):
            vbar = (v[c] + v) / 2
            db = (np.sum((mu[c] - mu) ** 2 / vbar, axis=1) / 8
                  + 0.5 * np.sum(np.log(vbar) - 0.5 * (logv[c] + logv), axis=1))
            bc = np.exp(-db)
            bc[c] = 0.0
            total += float(bc.sum())
    return -total
