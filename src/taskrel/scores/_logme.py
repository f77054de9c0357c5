"""LogME: log of the maximum marginal evidence of a Bayesian linear model."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._validation import check_positive
from ..exceptions import ConvergenceWarning
from ._common import class_sums, features_labels, gram, onehot
from ._registry import register_score

#: Singular values below this fraction of the largest are treated as zero.
_SV_RTOL = 1e-10
#: alpha/beta beyond this multiple of the largest sigma^2 means "prior only" (gamma ~ 0).
_T_MAX = 1e10
#: Stop when ten fixed-point steps change the per-sample log evidence by less than this.
_EV_TOL = 1e-9


def _spectrum(X: NDArray[np.float64], Y: NDArray[np.float64],
              XtY: NDArray[np.float64] | None = None
              ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Return (sigma2 [r], Z = U^T Y [r x C], ||Y_k||^2 [C]) from one symmetric eigh.

    ``XtY`` (d x C) may be passed precomputed (class sums for one-hot Y).

    Uses the Gram matrix of the smaller side (d x d when n > d, else n x n), so U
    (n x r) is never formed when n > d.
    """
    n, d = X.shape
    if n > d:
        s2, V = np.linalg.eigh(gram(X))
        keep = s2 > _SV_RTOL * max(float(s2[-1]), 0.0)
        s2, V = s2[keep], V[:, keep]
        XtY = X.T @ Y if XtY is None else XtY
        Z = (V.T @ XtY) / np.sqrt(s2)[:, None]
    else:
        s2, U = np.linalg.eigh(gram(X, rows=True))
        keep = s2 > _SV_RTOL * max(float(s2[-1]), 0.0)
        s2, U = s2[keep], U[:, keep]
        Z = U.T @ Y
    return s2, Z, np.einsum("ij,ij->j", Y, Y)


def _evidence(s2: NDArray[np.float64], z: NDArray[np.float64], yy: float, n: int,
              d: int, alpha: float, beta: float) -> float:
    """Log evidence per sample, log p(y | X, alpha, beta) / n, in the spectral basis.

    With A = alpha I + beta X^T X and m = beta A^{-1} X^T y:
    L = n/2 log beta + d/2 log alpha - n/2 log 2pi - beta/2 ||Xm - y||^2
        - alpha/2 ||m||^2 - 1/2 log|A|.
    """
    denom = alpha + beta * s2
    m2 = float(np.sum(beta**2 * s2 * z**2 / denom**2))
    res2 = float(np.sum((alpha / denom) ** 2 * z**2)) + max(yy - float(z @ z), 0.0)
    logdet = float(np.sum(np.log(denom))) + (d - s2.size) * np.log(alpha)
    L = (n * np.log(beta) + d * np.log(alpha) - n * np.log(2 * np.pi)
         - beta * res2 - alpha * m2 - logdet) / 2.0
    return L / n


def _evidences(s2: NDArray[np.float64], Z2: NDArray[np.float64],
               tail: NDArray[np.float64], n: int, d: int, alpha: NDArray[np.float64],
               beta: NDArray[np.float64]) -> NDArray[np.float64]:
    """Vectorized :func:`_evidence` over columns (Z2 = Z**2, tail = ||y||^2 - ||z||^2)."""
    s = s2[:, None]
    denom = alpha + beta * s
    m2 = np.sum(beta**2 * s * Z2 / denom**2, axis=0)
    res2 = np.sum((alpha / denom) ** 2 * Z2, axis=0) + tail
    logdet = np.sum(np.log(denom), axis=0) + (d - s2.size) * np.log(alpha)
    return (n * np.log(beta) + d * np.log(alpha) - n * np.log(2 * np.pi)
            - beta * res2 - alpha * m2 - logdet) / (2.0 * n)


def _fixed_point(s2: NDArray[np.float64], Z: NDArray[np.float64],
                 yy: NDArray[np.float64], n: int, d: int, max_iter: int, tol: float
                 ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]]:
    """MacKay/LogME fixed point for (alpha, beta), all classes (columns of Z) at once.

    Returns (alpha [C], beta [C], converged [C]).
    """
    C = Z.shape[1]
    t = np.ones(C)
    alpha, beta = np.ones(C), np.ones(C)
    Z2 = Z**2
    tail = np.maximum(yy - Z2.sum(axis=0), 0.0)
    done = np.zeros(C, dtype=bool)
    ev = np.full(C, -np.inf)
    s = s2[:, None]
    top = float(s2[-1]) if s2.size else 0.0
    low = float(s2[0]) if s2.size else 0.0
    for it in range(max_iter):
        a = ~done
        if not a.any():
            break
        ta, z2 = t[a], Z2[:, a]
        frac = s / (s + ta)
        gamma = frac.sum(axis=0)
        m2 = np.sum(frac**2 / s * z2, axis=0)
        res2 = np.sum((ta / (s + ta)) ** 2 * z2, axis=0) + tail[a]
        al = gamma / np.maximum(m2, 1e-300)
        be = (n - gamma) / np.maximum(res2, 1e-300)
        tn = al / be
        alpha[a], beta[a], t[a] = al, be, tn
        # Converged in alpha/beta, or at a boundary maximum (exact interpolation when
        # n <= d), or -- checked every 10 steps -- in the evidence itself: the fixed
        # point creeps slowly along flat directions (e.g. alpha/beta -> inf when a
        # class has no signal) while the evidence no longer moves.
        stop = ((np.abs(tn - ta) / ta <= tol) | (tn > _T_MAX * top)
                | ((tn < low / _T_MAX) & (tail[a] <= 1e-12 * yy[a])))
        if it % 10 == 9:
            ev_new = _evidences(s2, z2, tail[a], n, d, al, be)
            stop |= np.abs(ev_new - ev[a]) <= _EV_TOL * np.maximum(1.0, np.abs(ev_new))
            ev[a] = ev_new
        idx = np.flatnonzero(a)
        done[idx[stop]] = True
    return alpha, beta, done


@register_score(
    "logme", higher_is_better=True, inputs=("features", "labels"),
    summary="log maximum evidence of a Bayesian linear model on one-hot labels",
    paper="You et al., ICML 2021; JMLR 2022 (fixed-point algorithm)",
)
def logme(features: ArrayLike, labels: ArrayLike, *, max_iter: int = 1000,
          tol: float = 1e-3) -> float:
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

    Returns
    -------
    float
        Higher means more transferable. Values can exceed 1 (it is a log density).

    Notes
    -----
    One symmetric eigendecomposition of the d x d Gram matrix (or n x n when n <= d)
    is shared by all classes: cost O(n d^2 + d^3) once, then O(n C + d C) per fixed-point
    sweep (vectorized over classes). Features are not centered (as in the paper). Memory O(n d + d^2).
    Emits :class:`~taskrel.ConvergenceWarning` naming ``max_iter`` if a class does not
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
    X, y, C = features_labels(features, labels)
    n, d = X.shape
    Y = onehot(y, C)
    s2, Z, yy = _spectrum(X, Y, class_sums(X, y, C).T if n > d else None)
    alpha, beta, ok = _fixed_point(s2, Z, yy, n, d, max_iter, tol)
    total = sum(_evidence(s2, Z[:, k], float(yy[k]), n, d, alpha[k], beta[k])
                for k in range(C))
    bad = int(C - ok.sum())
    if bad:
        warnings.warn(f"logme: the fixed point did not converge for {bad} of {C} "
                      f"classes within max_iter={max_iter}; increase `max_iter`",
                      ConvergenceWarning, stacklevel=2)
    return float(total / C)


def _logme_alpha_beta(features: Any, labels: Any, k: int = 0) -> tuple[float, float]:
    """(alpha, beta) at the fixed point for class index ``k`` (for tests)."""
    X, y, C = features_labels(features, labels)
    s2, Z, yy = _spectrum(X, onehot(y, C))
    a, b, _ = _fixed_point(s2, Z, yy, X.shape[0], X.shape[1], 1000, 1e-3)
    return float(a[k]), float(b[k])
