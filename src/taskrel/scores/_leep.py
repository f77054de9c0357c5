"""LEEP, NCE and N-LEEP: scores built on a (soft) source labelling of the target data."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import xlogy

from .._internal.validation import check_consistent_length, check_labels, check_positive
from ..exceptions import TaskrelInputError
from ._common import check_probabilities, features_labels, onehot, pca_variance
from ._registry import register_score


def _leep_from_probs(P: NDArray[np.float64], y: NDArray[np.int64], C: int) -> float:
    n = y.size
    joint = onehot(y, C).T @ P / n  # P(y, z), C x C_s
    pz = joint.sum(axis=0)  # P(z)
    cond = np.divide(joint, pz, out=np.zeros_like(joint), where=pz > 0)  # P(y | z)
    eep = np.einsum("ij,ij->i", P, cond[y])  # sum_z theta_i(z) P(y_i | z)
    return float(np.mean(np.log(eep)))


@register_score(
    "leep", higher_is_better=True, inputs=("source_probs", "labels"),
    summary="log expected empirical prediction of the source head's soft labels",
    paper="Nguyen et al., ICML 2020",
)
def leep(source_probs: ArrayLike, labels: ArrayLike) -> float:
    r"""LEEP: log of the expected empirical prediction.

    .. math::

        \hat P(y, z) = \tfrac1n\sum_i \theta_i(z)\,[y_i = y],\quad
        \hat P(y\mid z) = \hat P(y, z) / \textstyle\sum_{y'} \hat P(y', z),\\
        \mathrm{LEEP} = \tfrac1n \sum_i \log \textstyle\sum_z \hat P(y_i\mid z)\,\theta_i(z),

    where :math:`\theta_i` is the source head's probability vector for sample i.

    Parameters
    ----------
    source_probs : array-like of shape (n_samples, n_source_classes)
        Probabilities (rows sum to 1) of the source model's own classifier.
    labels : array-like of shape (n_samples,)
        Target class ids (any ids; re-encoded).

    Returns
    -------
    float
        A mean log-likelihood (<= 0); higher means more transferable.

    Notes
    -----
    With the log, as in the paper (some public code drops it). Cost O(n C_s C)
    time (one C x n by n x C_s product), O(C C_s) extra memory.

    References
    ----------
    Nguyen, Hassner, Seeger, Archambeau. LEEP: A New Measure to Evaluate
    Transferability of Learned Representations. ICML 2020.

    Examples
    --------
    >>> P = [[0.9, 0.1], [0.8, 0.2], [0.2, 0.8], [0.1, 0.9]]
    >>> round(leep(P, [0, 0, 1, 1]), 4)
    -0.2955
    """
    P = check_probabilities(source_probs, "source_probs")
    _, y = check_labels(labels, "labels", min_per_class=1)
    check_consistent_length(P, "source_probs", y, "labels")
    return _leep_from_probs(P, y, int(y.max()) + 1)


@register_score(
    "nce", higher_is_better=True, inputs=("source_labels", "labels"),
    summary="negative conditional entropy H(Y_target | Y_source) of hard source labels",
    paper="Tran, Nguyen, Hassner, ICCV 2019",
)
def nce(source_labels: ArrayLike, labels: ArrayLike) -> float:
    r"""NCE: negative conditional entropy of target labels given source labels.

    .. math::

        \mathrm{NCE} = -H(Y\mid Z) = \sum_{z, y} \hat P(z, y)
        \log \frac{\hat P(z, y)}{\hat P(z)},

    with :math:`\hat P` the empirical joint distribution of (source label, target
    label) pairs; source labels are usually the argmax of the source head.

    Parameters
    ----------
    source_labels : array-like of shape (n_samples,)
        Hard source-class ids (any ids; re-encoded; one class allowed).
    labels : array-like of shape (n_samples,)
        Target class ids.

    Returns
    -------
    float
        In [-log C, 0]; higher means more transferable.

    Notes
    -----
    Cost O(n + C_s C).

    References
    ----------
    Tran, Nguyen, Hassner. Transferability and Hardness of Supervised Classification
    Tasks. ICCV 2019.

    Examples
    --------
    >>> round(nce([0, 0, 1, 1], [0, 0, 1, 1]), 4)
    0.0
    >>> round(nce([0, 0, 0, 0], [0, 0, 1, 1]), 4)
    -0.6931
    """
    _, z = check_labels(source_labels, "source_labels", min_classes=1, min_per_class=1)
    _, y = check_labels(labels, "labels", min_per_class=1)
    check_consistent_length(z, "source_labels", y, "labels")
    Cs, C = int(z.max()) + 1, int(y.max()) + 1
    joint = np.bincount(z * C + y, minlength=Cs * C).reshape(Cs, C) / y.size
    pz = joint.sum(axis=1, keepdims=True)
    cond = np.divide(joint, pz, out=np.zeros_like(joint), where=pz > 0)
    return float(np.sum(xlogy(joint, cond)))


@register_score(
    "nleep", higher_is_better=True, inputs=("features", "labels"),
    summary="LEEP with a PCA + Gaussian-mixture 'source head' fitted on the features",
    paper="Li et al., CVPR 2021 (Ranking Neural Checkpoints)",
)
def nleep(features: ArrayLike, labels: ArrayLike, *, variance: float = 0.8,
          components_per_class: int = 5, covariance_type: str = "full",
          max_iter: int = 100, seed: int = 123) -> float:
    r"""N-LEEP: LEEP where the source head is a Gaussian mixture on PCA features.

    PCA keeps the leading components explaining ``variance`` of the variance, a
    Gaussian mixture with :math:`K = ` ``components_per_class`` x C components is fit
    (seeded), and its posteriors :math:`\theta_i(k)` replace the source head in
    :func:`leep`.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
    labels : array-like of shape (n_samples,)
    variance : float in (0, 1], default 0.8
        Fraction of variance the PCA keeps.
    components_per_class : int, default 5
        Mixture components per target class (the paper's choice).
    covariance_type : {'full', 'diag', 'spherical', 'tied'}, default 'full'
        Mixture covariances. 'full' is the reference code's (scikit-learn's default);
        its EM costs O(n K p^2) per step (minutes at n = 50k, K = 500): pass 'diag'
        for O(n K p).
    max_iter : int, default 100
        EM iterations.
    seed : int, default 123
        Seeds the mixture's k-means initialisation (the reference code's
        ``random_state=123``).

    Returns
    -------
    float
        A mean log-likelihood (<= 0); higher means more transferable.

    Notes
    -----
    Defaults reproduce google-research ``stable_transfer/transferability/nleep.py:
    get_nleep_score`` after the PCA of its experiments (``nleep.pca_reduction=0.8``):
    ``GaussianMixture(5 C, random_state=123)`` with scikit-learn's other defaults,
    then LEEP with its log. (TencentARC/SFDA's ``NLEEP`` drops the log and seeds
    nothing.) Cost: PCA O(n d^2 + d^3) (symmetric eigh of the covariance), EM
    O(iters n K p^2) for 'full', O(iters n K p) for 'diag', with p the PCA dimension.
    Memory O(n K + K p^2).

    References
    ----------
    Li, Jia, Zhu, Li, Gong, Adam, Zhou, Ringel, Wei. Ranking Neural Checkpoints.
    CVPR 2021.
    """
    from sklearn.mixture import GaussianMixture

    v = check_positive(variance, "variance")
    if v > 1:
        raise TaskrelInputError(f"`variance` must be in (0, 1]; got {variance!r}")
    k = check_positive(components_per_class, "components_per_class", integer=True)
    if covariance_type not in ("diag", "full", "spherical", "tied"):
        raise TaskrelInputError(
            "`covariance_type` must be one of 'diag', 'full', 'spherical', 'tied'; "
            f"got {covariance_type!r}")
    max_iter = check_positive(max_iter, "max_iter", integer=True)
    X, y, C = features_labels(features, labels)
    Z = pca_variance(X, v)
    K = min(k * C, X.shape[0])
    gmm = GaussianMixture(n_components=K, covariance_type=covariance_type,
                          max_iter=max_iter, random_state=seed, reg_covar=1e-6)
    import warnings

    from sklearn.exceptions import ConvergenceWarning as SkConv

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkConv)
        P = gmm.fit(Z).predict_proba(Z)
    return _leep_from_probs(P, y, C)


