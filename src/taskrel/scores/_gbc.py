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

#: Floor on class variances, relative to the mean feature variance (avoids log 0).
_VAR_FLOOR_REL = 1e-12
_TINY = float(torch.finfo(torch.float64).tiny)


@register_score(
    "gbc", higher_is_better=True, inputs=("features", "labels"),
    summary="minus the summed Bhattacharyya overlap of per-class Gaussians",
    paper="Pandy et al., CVPR 2022 (Transferability Estimation using Bhattacharyya...)",
    gpu=True,
)
def gbc(features: ArrayLike, labels: ArrayLike, *,
        gaussian_type: str = "spherical", device: str | torch.device = "cpu") -> float:
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
    device : {'cpu', 'auto', 'cuda', 'cuda:N'} or torch.device, default 'cpu'
        Where class moments and the pairwise coefficients run (torch, float64).

    Returns
    -------
    float
        In [-C(C-1), 0]; higher (closer to 0) means more separable, more transferable.
        The spherical form is invariant to feature scaling and rotations.

    Notes
    -----
    Variances are the biased (1/n_c) per-class estimates. Cost O(n d C + C^2 d)
    (class sums are one-hot products), memory O(n d + C d) on ``device``.

    References
    ----------
    Pandy, Agostinelli, Uijlings, Ferrari, Mensink. Transferability Estimation using
    Bhattacharyya Class Separability. CVPR 2022.
    """
    if gaussian_type not in ("spherical", "diagonal"):
        raise TaskrelInputError(
            "`gaussian_type` must be one of 'spherical', 'diagonal'; "
            f"got {gaussian_type!r}")
    dev = check_device(device)
    X, y, C = features_labels(features, labels)
    d = X.shape[1]
    Xt, yt = to_tensor(X, dev), labels_tensor(y, dev)
    counts = class_counts(yt, C)[:, None]
    sums, sq_sums = class_sums(Xt, yt, C), class_sums(Xt * Xt, yt, C)
    mu, sq = sums / counts, sq_sums / counts
    var = torch.clamp(sq - mu**2, min=0.0)
    # Mean per-feature variance of all samples, from the same sums (only a floor).
    n = Xt.shape[0]
    total_var = float(torch.mean(sq_sums.sum(dim=0) / n - (sums.sum(dim=0) / n) ** 2))
    floor = _VAR_FLOOR_REL * max(total_var, _TINY)
    total = 0.0
    if gaussian_type == "spherical":
        s = torch.clamp(var.mean(dim=1), min=floor)  # C
        sbar = (s[:, None] + s[None, :]) / 2
        n2 = torch.sum(mu * mu, dim=1)
        dist2 = torch.clamp(n2[:, None] + n2[None, :] - 2 * mu @ mu.T, min=0.0)
        logs = torch.log(s)
        db = dist2 / (8 * sbar) + 0.5 * d * (torch.log(sbar)
                                              - 0.5 * (logs[:, None] + logs[None, :]))
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
    return -total
