"""RankMe: the effective rank of a feature matrix (label-free)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from .._internal.validation import check_features
from ..exceptions import TaskrelInputError
from ._registry import register_score

#: Added to every normalized singular value, as in the paper (its value, chosen there
#: for float32 embeddings); it keeps log p finite where a singular value is 0.
RANKME_EPS = 1e-7


@register_score(
    "rankme", higher_is_better=True, inputs=("features",),
    summary="effective rank: exp(entropy) of the L1-normalized singular values "
    "(label-free)",
    paper="Garrido et al., ICML 2023 (RankMe)",
)
def rankme(features: ArrayLike) -> float:
    r"""RankMe: the effective rank of the feature matrix, without labels.

    .. math::

        \operatorname{RankMe}(X) = \exp\Big(-\sum_{k=1}^{\min(n, d)} p_k \log p_k\Big),
        \qquad p_k = \frac{\sigma_k(X)}{\lVert\sigma(X)\rVert_1} + \varepsilon,

    where :math:`\sigma_1(X) \ge \dots \ge \sigma_{\min(n, d)}(X) \ge 0` are the
    singular values of the n x d feature matrix itself and
    :math:`\varepsilon` = ``RANKME_EPS`` = 1e-7.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
        At least 2 samples, finite, not all zero.

    Returns
    -------
    float
        About 1 (one direction carries everything) up to about ``rank(X)`` (all
        nonzero singular values equal); higher means more transferable. Invariant to
        the sample order, to orthogonal rotations of the features and to a global
        rescaling; not to translation (see Notes).

    Raises
    ------
    TaskrelInputError
        If ``features`` is not a finite 2-D array with at least 2 rows, or is all
        zero (every singular value 0, so p is undefined).

    Notes
    -----
    **No centering.** The paper defines RankMe on the embedding matrix Z as it is and
    describes no centering or standardization step; we follow it, so a common offset
    of all samples counts as one direction (e.g. non-negative post-ReLU features have
    a large leading singular value from their mean). Centering would measure the
    spread of the covariance spectrum instead (the centered matrix's singular values
    are sqrt(n * lambda_k(cov))), a different quantity; we do not offer it.

    The sum runs over all ``min(n, d)`` singular values, zeros included: each zero
    contributes :math:`-\varepsilon\log\varepsilon \approx 1.6\cdot 10^{-6}` to the
    entropy, as in the paper's formula (the epsilon is added after normalization, so
    the p_k sum to ``1 + min(n, d) * eps``, not to 1). A matrix with k equal nonzero
    singular values scores
    :math:`\exp(-k(\tfrac1k+\varepsilon)\log(\tfrac1k+\varepsilon)
    - (\min(n,d)-k)\,\varepsilon\log\varepsilon) \approx k`.

    Singular values from LAPACK's divide-and-conquer SVD without vectors
    (``np.linalg.svd(compute_uv=False)``, which reduces a tall matrix by QR first),
    in float64: O(n d min(n, d)) time, O(n d) memory (one copy of the features). We
    prefer it to an eigendecomposition of the Gram matrix, which squares the condition
    number: there, singular values that should be 0 come out near
    sqrt(machine eps) * sigma_1 ~ 1e-8 sigma_1, the same order as epsilon, and would
    move the score of rank-deficient features by ~1e-6.

    References
    ----------
    Garrido, Balestriero, Najman, LeCun. RankMe: Assessing the Downstream Performance
    of Pretrained Self-Supervised Representations by Their Rank. ICML 2023.

    Roy, Vetterli. The effective rank: A measure of effective dimensionality. EUSIPCO
    2007.

    See Also
    --------
    etran_energy : ETran's label-free energy score.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(30, 4))
    >>> 3.5 < rankme(X) < 4.0
    True
    >>> round(rankme(np.outer(np.arange(1.0, 31.0), [1.0, 2.0, 3.0])), 4)  # rank 1
    1.0
    """
    X = check_features(features, "features")
    s = np.linalg.svd(X, compute_uv=False)  # X is never written (svd works on a copy)
    total = float(np.sum(s))
    if total == 0.0:
        raise TaskrelInputError(
            "`features` must not be all zero: RankMe divides the singular values by "
            "their sum; got an all-zero matrix")
    p = s / total + RANKME_EPS
    return float(np.exp(-np.sum(p * np.log(p))))
