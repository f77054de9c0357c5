"""GBC: Gaussian Bhattacharyya coefficient between class-conditional Gaussians."""

from __future__ import annotations

import torch
from numpy.typing import ArrayLike

from ..exceptions import TaskrelInputError
from ._common import features_labels
from ._registry import register_score
from ._torch_ops import (
    check_device,
    class_counts,
    class_sums,
    labels_tensor,
    to_tensor,
)

#: The authors' floor on every per-class, per-dimension variance (stable_transfer gbc.py:
#: ``tf.maximum(variance, 1e-4)``), in squared feature units.
_VAR_FLOOR_ABS = 1e-4
#: The textbook variant's floor, relative to the mean feature variance (avoids log 0).
_VAR_FLOOR_REL = 1e-12
_TINY = float(torch.finfo(torch.float64).tiny)


def _check_type(gaussian_type: str) -> None:
    if gaussian_type not in ("spherical", "diagonal"):
        raise TaskrelInputError(
            "`gaussian_type` must be one of 'spherical', 'diagonal'; "
            f"got {gaussian_type!r}")


def _gbc_total(features: ArrayLike, labels: ArrayLike, gaussian_type: str,
               device: str | torch.device, textbook: bool) -> float:
    """Sum over ordered class pairs c != c' of exp(-D_B(c, c')).

    ``textbook=False``: stable_transfer's formula (absolute 1e-4 variance floor; a
    spherical class has one scalar variance, so its log-determinant term is not
    multiplied by d). ``textbook=True``: the Bhattacharyya distance of N(mu, s I_d)
    (log term x d; floor relative to the mean feature variance).
    """
    _check_type(gaussian_type)
    dev = check_device(device)
    X, y, C = features_labels(features, labels)
    d = X.shape[1]
    Xt, yt = to_tensor(X, dev), labels_tensor(y, dev)
    counts = class_counts(yt, C)[:, None]
    sums, sq_sums = class_sums(Xt, yt, C), class_sums(Xt * Xt, yt, C)
    mu, sq = sums / counts, sq_sums / counts
    var = torch.clamp(sq - mu**2, min=0.0)  # biased (1/n_c), as tf.math.reduce_variance
    if textbook:
        # Mean per-feature variance of all samples, from the same sums (only a floor).
        n = Xt.shape[0]
        total_var = float(torch.mean(sq_sums.sum(dim=0) / n - (sums.sum(dim=0) / n) ** 2))
        floor = _VAR_FLOOR_REL * max(total_var, _TINY)
    else:
        floor = _VAR_FLOOR_ABS
        var = torch.clamp(var, min=floor)
    total = 0.0
    if gaussian_type == "spherical":
        s = torch.clamp(var.mean(dim=1), min=floor)  # C
        sbar = (s[:, None] + s[None, :]) / 2
        n2 = torch.sum(mu * mu, dim=1)
        dist2 = torch.clamp(n2[:, None] + n2[None, :] - 2 * mu @ mu.T, min=0.0)
        logs = torch.log(s)
        log_term = torch.log(sbar) - 0.5 * (logs[:, None] + logs[None, :])
        db = dist2 / (8 * sbar) + 0.5 * (d if textbook else 1) * log_term
        bc = torch.exp(-db)
        bc.fill_diagonal_(0.0)
        total = float(bc.sum())
    else:
        v = torch.clamp(var, min=floor)
        logv = torch.log(v)
        for c in range(C):
            vbar = (v[c] + v) / 2
            db = (torch.sum((mu[c] - mu) ** 2 / vbar, dim=1) / 8
                  + 0.5 * torch.sum(torch.log(vbar) - 0.5 * (logv[c] + logv), dim=1))
            bc = torch.exp(-db)
            bc[c] = 0.0
            total += float(bc.sum())
    return total


@register_score(
    "gbc", higher_is_better=True, inputs=("features", "labels"),
    summary="minus the summed Bhattacharyya overlap of per-class Gaussians",
    paper="Pandy et al., CVPR 2022 (Transferability Estimation using Bhattacharyya...)",
    gpu=True,
)
def gbc(features: ArrayLike, labels: ArrayLike, *,
        gaussian_type: str = "spherical", device: str | torch.device = "cpu") -> float:
    r"""GBC as the authors compute it: :math:`-\sum_{c}\sum_{c'\neq c}\exp(-D_B(c, c'))`.

    Each class c has mean :math:`\mu_c` and per-dimension variances
    :math:`v_c = \max(\operatorname{var}_c, 10^{-4})` (biased, floored). With
    :math:`\bar v = (v_c + v_{c'})/2`,

    .. math::

        D_B = \tfrac18\sum_j\frac{(\mu_{cj}-\mu_{c'j})^2}{\bar v_j}
        + \tfrac12\sum_j\Big(\log\bar v_j - \tfrac12\log v_{cj}
        - \tfrac12\log v_{c'j}\Big)

    for ``"diagonal"``; for ``"spherical"`` each :math:`v_c` is first replaced by its
    mean over dimensions (one scalar), so the log term is a single scalar term, not
    d of them. This is google-research ``stable_transfer/transferability/gbc.py``
    (``get_gbc_score``), whose ``compute_bhattacharyya_distance`` sums the log of a
    scalar variance once. :func:`gbc_textbook` is the Bhattacharyya distance of
    :math:`N(\mu_c, v_c I_d)` (log term times d).

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
        Used as given: no PCA inside (the authors' experiments reduce to 64 dimensions
        with PCA first, outside ``get_gbc_score``; do it before calling if you want it).
    labels : array-like of shape (n_samples,)
    gaussian_type : {'spherical', 'diagonal'}, default 'spherical'
        The authors' default is 'spherical'.
    device : {'cpu', 'auto', 'cuda', 'cuda:N'} or torch.device, default 'cpu'
        Where class moments and the pairwise coefficients run (torch, float64).

    Returns
    -------
    float
        In [-C(C-1), 0]; higher (closer to 0) means more separable, more transferable.
        Invariant to rotations; to feature scaling only while every class variance is
        above the 1e-4 floor (an absolute floor, as in the reference code).

    Notes
    -----
    Variances are the biased (1/n_c) per-class estimates. Cost O(n d C + C^2 d)
    (class sums are one-hot products), memory O(n d + C d) on ``device``.

    References
    ----------
    Pandy, Agostinelli, Uijlings, Ferrari, Mensink. Transferability Estimation using
    Bhattacharyya Class Separability. CVPR 2022.

    See Also
    --------
    gbc_textbook : the textbook Bhattacharyya distance of spherical Gaussians.
    """
    return -_gbc_total(features, labels, gaussian_type, device, textbook=False)


@register_score(
    "gbc_textbook", higher_is_better=True, inputs=("features", "labels"),
    summary="GBC with the textbook Bhattacharyya distance of N(mu_c, s_c I_d)",
    paper="Pandy et al., CVPR 2022; textbook Bhattacharyya distance (not the authors' code)",
    gpu=True,
)
def gbc_textbook(features: ArrayLike, labels: ArrayLike, *,
                 gaussian_type: str = "spherical",
                 device: str | torch.device = "cpu") -> float:
    r"""GBC with the textbook Bhattacharyya distance (not the authors' formula).

    Each class is a Gaussian :math:`N(\mu_c, \Sigma_c)` with diagonal
    (``"diagonal"``) or spherical (``"spherical"``, :math:`\sigma_c^2 I_d` with
    :math:`\sigma_c^2` the mean per-dimension variance) covariance, and

    .. math::

        D_B = \tfrac18(\mu_c-\mu_{c'})^\top\bar\Sigma^{-1}(\mu_c-\mu_{c'})
        + \tfrac12\log\frac{|\bar\Sigma|}{\sqrt{|\Sigma_c||\Sigma_{c'}|}},\quad
        \bar\Sigma = \tfrac12(\Sigma_c+\Sigma_{c'}).

    For spherical classes the log term is d times the scalar one of :func:`gbc`, so
    classes of different spread are penalised as the Gaussians' overlap really is.
    Variances are floored at 1e-12 times the mean feature variance (not at an absolute
    1e-4), so the score is invariant to feature scaling. This was taskrel's ``gbc``
    before it followed the authors' code.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
    labels : array-like of shape (n_samples,)
    gaussian_type : {'spherical', 'diagonal'}, default 'spherical'
    device : {'cpu', 'auto', 'cuda', 'cuda:N'} or torch.device, default 'cpu'

    Returns
    -------
    float
        In [-C(C-1), 0]; higher means more transferable. Invariant to feature scaling
        and rotations (spherical).

    Notes
    -----
    Same cost as :func:`gbc`.

    References
    ----------
    Pandy, Agostinelli, Uijlings, Ferrari, Mensink. Transferability Estimation using
    Bhattacharyya Class Separability. CVPR 2022.
    """
    return -_gbc_total(features, labels, gaussian_type, device, textbook=True)

