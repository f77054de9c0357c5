"""LogME: log of the maximum marginal evidence of a Bayesian linear model."""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from numpy.typing import ArrayLike

from .._internal.validation import check_positive
from ..exceptions import ConvergenceWarning
from ._common import features_labels
from ._registry import register_score
from ._torch_ops import (
    check_device,
    class_counts,
    class_sums,
    gram,
    labels_tensor,
    to_tensor,
)

#: Singular values below this fraction of the largest are treated as zero.
_SV_RTOL = 1e-10
#: alpha/beta beyond this multiple of the largest sigma^2 means "prior only" (gamma ~ 0).
_T_MAX = 1e10
#: Stop when ten fixed-point steps change the per-sample log evidence by less than this.
_EV_TOL = 1e-9


def _spectrum(X: Any, Y: Any, C: int | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return (sigma2 [r], Z = U^T Y [r x C], ||Y_k||^2 [C]) from one symmetric eigh.

    ``Y`` is an (n, C) target matrix, or, with ``C`` given, a vector of n class ids
    standing for the one-hot matrix (never formed). Arrays become float64 tensors on
    ``X``'s device.

    Uses the Gram matrix of the smaller side (d x d when n > d, else n x n), so U
    (n x r) is never formed when n > d.
    """
    X = torch.as_tensor(X, dtype=torch.float64)
    if C is None:
        Y = torch.as_tensor(Y, dtype=torch.float64, device=X.device)

        def t_times(A: torch.Tensor) -> torch.Tensor:  # A^T Y
            return A.T @ Y

        yy = (Y * Y).sum(dim=0)
    else:
        y = torch.as_tensor(Y, dtype=torch.int64, device=X.device)

        def t_times(A: torch.Tensor) -> torch.Tensor:
            return class_sums(A, y, C).T

        yy = class_counts(y, C)
    n, d = X.shape
    if n > d:
        s2, V = torch.linalg.eigh(gram(X))
        keep = s2 > _SV_RTOL * max(float(s2[-1]), 0.0)
        s2, V = s2[keep], V[:, keep]
        Z = (V.T @ t_times(X)) / torch.sqrt(s2)[:, None]
    else:
        s2, U = torch.linalg.eigh(gram(X, rows=True))
        keep = s2 > _SV_RTOL * max(float(s2[-1]), 0.0)
        s2, U = s2[keep], U[:, keep]
        Z = t_times(U)
    return s2, Z, yy


def _evidences(s2: torch.Tensor, Z2: torch.Tensor, tail: torch.Tensor, n: int, d: int,
               alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Log evidence per sample, log p(y_k | X, alpha_k, beta_k) / n, for every column k.

    With A = alpha I + beta X^T X and m = beta A^{-1} X^T y (Z2 = Z**2 in the spectral
    basis, tail = ||y||^2 - ||z||^2, the part of y outside the span of X):
    L = n/2 log beta + d/2 log alpha - n/2 log 2pi - beta/2 ||Xm - y||^2
        - alpha/2 ||m||^2 - 1/2 log|A|.
    """
    s = s2[:, None]
    denom = alpha + beta * s
    m2 = torch.sum(beta**2 * s * Z2 / denom**2, dim=0)
    res2 = torch.sum((alpha / denom) ** 2 * Z2, dim=0) + tail
    logdet = torch.sum(torch.log(denom), dim=0) + (d - s2.numel()) * torch.log(alpha)
    return (n * torch.log(beta) + d * torch.log(alpha) - n * math.log(2 * math.pi)
            - beta * res2 - alpha * m2 - logdet) / (2.0 * n)


def _evidence(s2: torch.Tensor, z: torch.Tensor, yy: float, n: int, d: int,
              alpha: float, beta: float) -> float:
    """:func:`_evidences` for one column ``z`` at given (alpha, beta)."""
    z = torch.as_tensor(z, dtype=torch.float64)
    tail = torch.clamp(yy - z @ z, min=0.0).reshape(1)
    ab = torch.tensor([alpha, beta], dtype=torch.float64, device=z.device)
    return float(_evidences(s2, z[:, None] ** 2, tail, n, d, ab[:1], ab[1:])[0])


def _fixed_point(s2: torch.Tensor, Z: torch.Tensor, yy: torch.Tensor, n: int, d: int,
                 max_iter: int, tol: float
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MacKay/LogME fixed point for (alpha, beta), all classes (columns of Z) at once.

    Returns (alpha [C], beta [C], converged [C]) on Z's device.
    """
    C = Z.shape[1]
    f64 = dict(dtype=torch.float64, device=Z.device)
    t, alpha, beta = torch.ones(C, **f64), torch.ones(C, **f64), torch.ones(C, **f64)
    Z2 = Z**2
    tail = torch.clamp(yy - Z2.sum(dim=0), min=0.0)
    done = torch.zeros(C, dtype=torch.bool, device=Z.device)
    ev = torch.full((C,), -math.inf, **f64)
    s = s2[:, None]
    top = float(s2[-1]) if s2.numel() else 0.0
    low = float(s2[0]) if s2.numel() else 0.0
    for it in range(max_iter):
        idx = torch.nonzero(~done).flatten()
        if idx.numel() == 0:
            break
        ta, z2 = t[idx], Z2[:, idx]
        frac = s / (s + ta)
        gamma = frac.sum(dim=0)
        m2 = torch.sum(frac**2 / s * z2, dim=0)
        res2 = torch.sum((ta / (s + ta)) ** 2 * z2, dim=0) + tail[idx]
        al = gamma / torch.clamp(m2, min=1e-300)
        be = (n - gamma) / torch.clamp(res2, min=1e-300)
        tn = al / be
        alpha[idx], beta[idx], t[idx] = al, be, tn
        # Converged in alpha/beta, or at a boundary maximum (exact interpolation when
        # n <= d), or -- checked every 10 steps -- in the evidence itself: the fixed
        # point creeps slowly along flat directions (e.g. alpha/beta -> inf when a
        # class has no signal) while the evidence no longer moves.
        stop = ((torch.abs(tn - ta) / ta <= tol) | (tn > _T_MAX * top)
                | ((tn < low / _T_MAX) & (tail[idx] <= 1e-12 * yy[idx])))
        if it % 10 == 9:
            ev_new = _evidences(s2, z2, tail[idx], n, d, al, be)
            stop |= (torch.abs(ev_new - ev[idx])
                     <= _EV_TOL * torch.clamp(torch.abs(ev_new), min=1.0))
            ev[idx] = ev_new
        done[idx[stop]] = True
    return alpha, beta, done


@register_score(
    "logme", higher_is_better=True, inputs=("features", "labels"),
    summary="log maximum evidence of a Bayesian linear model on one-hot labels",
    paper="You et al., ICML 2021; JMLR 2022 (fixed-point algorithm)", gpu=True,
)
def logme(features: ArrayLike, labels: ArrayLike, *, max_iter: int = 1000,
          tol: float = 1e-3, device: str | torch.device = "cpu") -> float:
    r"""LogME: per-sample log maximum evidence, averaged over classes.

    For each class k, a Bayesian linear regression of the one-hot column
    :math:`y_k` on the features, with prior :math:`w \sim N(0, \alpha^{-1} I)` and
    noise precision :math:`\beta`, has evidence

    .. math::

        \mathcal L_k(\alpha, \beta) = \tfrac n2\log\beta + \tfrac d2\log\alpha
        - \tfrac n2\log 2\pi - \tfrac\beta2\lVert Xm - y_k\rVert^2
        - \tfrac\alpha2\lVert m\rVert^2 - \tfrac12\log|A|,

    with :math:`A = \alpha I + \beta X^\top X`, :math:`m = \beta A^{-1}X^\top y_k`.
    LogME is :math:`\frac1C\sum_k \max_{\alpha,\beta}\mathcal L_k / n`, the maximum
    found by the fixed point :math:`\gamma = \sum_i \sigma_i^2/(\sigma_i^2+\alpha/\beta)`,
    :math:`\alpha = \gamma/\lVert m\rVert^2`,
    :math:`\beta = (n-\gamma)/\lVert Xm - y_k\rVert^2`.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
    labels : array-like of shape (n_samples,)
        Integer class ids (any ids; re-encoded).
    max_iter : int, default 1000
        Fixed-point iterations (all classes advance together; each is O(d C)).
    tol : float, default 1e-3
        Stop when the relative change of :math:`\alpha/\beta` is below ``tol``.
    device : {'cpu', 'auto', 'cuda', 'cuda:N'} or torch.device, default 'cpu'
        Where the Gram matrix, its eigendecomposition and the fixed point run (torch,
        float64 on every device). ``'auto'`` takes a GPU when torch sees one.

    Returns
    -------
    float
        Higher means more transferable. Values can exceed 1 (it is a log density).

    Notes
    -----
    One symmetric eigendecomposition of the d x d Gram matrix (or n x n when n <= d)
    is shared by all classes: cost O(n d^2 + d^3) once (plus O(n d C) for the class
    sums), then O(d C) per fixed-point sweep (vectorized over classes). Features are not
    centered (as in the paper). Memory O(n d + d^2) on ``device`` (a float64 copy of the
    features there); the one-hot label matrix is never formed. Emits
    :class:`~taskrel.ConvergenceWarning` naming ``max_iter`` if a class does not
    converge.

    References
    ----------
    You, Liu, Wang, Long. LogME: Practical Assessment of Pre-trained Models for Transfer
    Learning. ICML 2021. Ranking and Tuning Pre-trained Models: A New Paradigm for
    Exploiting Model Hubs. JMLR 2022.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 1, 2], 10)
    >>> X = 3 * np.eye(3, 5)[y] + rng.normal(size=(30, 5))
    >>> round(logme(X, y), 3) > round(logme(X, rng.permutation(y)), 3)
    True
    """
    max_iter = check_positive(max_iter, "max_iter", integer=True)
    tol = check_positive(tol, "tol")
    dev = check_device(device)
    X, y, C = features_labels(features, labels)
    n, d = X.shape
    s2, Z, yy = _spectrum(to_tensor(X, dev), labels_tensor(y, dev), C)
    alpha, beta, ok = _fixed_point(s2, Z, yy, n, d, max_iter, tol)
    tail = torch.clamp(yy - (Z**2).sum(dim=0), min=0.0)
    total = float(_evidences(s2, Z**2, tail, n, d, alpha, beta).sum())
    bad = int(C - int(ok.sum()))
    if bad:
        warnings.warn(f"logme: the fixed point did not converge for {bad} of {C} "
                      f"classes within max_iter={max_iter}; increase `max_iter`",
                      ConvergenceWarning, stacklevel=2)
    return total / C


def _logme_alpha_beta(features: Any, labels: Any, k: int = 0) -> tuple[float, float]:
    """(alpha, beta) at the fixed point for class index ``k`` (for tests)."""
    X, y, C = features_labels(features, labels)
    s2, Z, yy = _spectrum(to_tensor(X, torch.device("cpu")), y, C)
    a, b, _ = _fixed_point(s2, Z, yy, X.shape[0], X.shape[1], 1000, 1e-3)
    return float(a[k]), float(b[k])
