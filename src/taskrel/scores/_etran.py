"""ETran's energy score (label-free), as the authors' code computes it."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import logsumexp

from .._internal.validation import check_features, check_positive
from ..exceptions import TaskrelInputError
from ._registry import register_score

#: Rows per logsumexp block times n_features: bounds the float64 temporaries
#: (``X - max`` and its ``exp``) to 32 MiB each, whatever n is.
_BLOCK_ELEMS = 1 << 22


def _row_logsumexp(X: NDArray[np.float64]) -> NDArray[np.float64]:
    """log sum_j exp(X[i, j]) for every row i, computed in row blocks."""
    n, d = X.shape
    out = np.empty(n)
    step = max(1, _BLOCK_ELEMS // d)
    for s in range(0, n, step):
        out[s:s + step] = logsumexp(X[s:s + step], axis=1)
    return out


def _n_lowest(percent: float, n: int) -> int:
    """How many samples the authors' code averages: int(percent * 10) * n // 1000."""
    return int(percent * 10) * n // 1000


@register_score(
    "etran_energy", higher_is_better=True, inputs=("features",),
    summary="ETran energy: mean logsumexp of the features over the lowest 0.5% of "
    "samples (label-free)",
    paper="Gholami et al., ICCV 2023 (ETran)",
)
def etran_energy(features: ArrayLike, *, percent: float = 0.5) -> float:
    r"""ETran's energy score: the mean negative energy of the least in-distribution
    samples, without labels.

    .. math::

        s_i = \log\sum_{j=1}^{d} e^{x_{ij}}, \qquad
        k = \Big\lfloor \frac{\operatorname{int}(10\,p)\; n}{1000} \Big\rfloor,
        \qquad
        \operatorname{ETranEnergy}(X) = \frac1k \sum_{i \in L_k} s_i,

    where :math:`x_i` is the i-th feature vector (the penultimate-layer features,
    used as logits of an energy-based model: :math:`s_i = -E(x_i)`), :math:`p` is
    ``percent``, :math:`\operatorname{int}` truncates toward zero (Python's ``int``
    of the float product ``percent * 10``) and :math:`L_k` holds the k samples with
    the smallest :math:`s_i`. At the default ``percent=0.5``: the mean of
    :math:`s_i` over the :math:`\lfloor n/200 \rfloor` lowest samples (0.5 %).

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
        Finite; at the default ``percent`` at least 200 samples (see Raises).
    percent : float, default 0.5
        Share of the samples averaged, in percent, in (0, 100]; the authors'
        argument, used as their code uses it: truncated to tenths of a percent
        (``int(percent * 10)``, so 0.25 and 0.29 both mean 0.2 %).

    Returns
    -------
    float
        A log-sum-exp of feature values (about the largest feature of the
        low-scoring samples); higher means more transferable. Invariant to the sample
        order; not to scale, and ``features + c`` scores ``c`` more.

    Raises
    ------
    TaskrelInputError
        If ``features`` is not a finite 2-D array with at least 2 rows; if
        ``percent`` is not a number in (0, 100] or is below 0.1 (it truncates to 0
        tenths); or if k = 0 samples would be averaged, i.e. n < 1000 /
        int(percent * 10) (n < 200 at the default), where the authors' code returns
        NaN.

    Notes
    -----
    Reproduces ``Energy_Score(X_features, 0.5, 'bot')`` of the authors' code
    (github.com/mgholamikn/ETran, commit d4551ed8f41f4ed6eba08b9cc1a78bae178acd19:
    ``metrics.py::Energy_Score``, called so by ``evaluate_metric.py`` for
    ``-me energy``), with these choices:

    - **Features, not logits.** ``Energy_Score``'s argument is named ``logits``, but
      ``evaluate_metric.py`` passes the penultimate features (``*_feature.npy``), not
      the classifier outputs (``*_output.npy``); we follow the call.
    - **The fraction arithmetic is kept**: k = ``int(percent * 10) * n // 1000``,
      integer floor, no minimum. For k = 0 the authors' code averages an empty
      selection and returns NaN (with a NumPy warning); we raise instead, naming the
      number of samples needed. ``percent`` above 100 (which their slicing would
      clamp to all samples) is refused.
    - **Bottom tail only.** Their ``tail='top'`` branch is not used by their
      pipeline and is not offered. (It slices ``[-int(percent*10)*n//1000:]``: the
      unary minus binds first and ``//`` floors toward -inf, so it keeps
      ceil(int(10 p) n / 1000) samples, at least 1, where the bottom tail keeps the
      floor.)
    - **float64.** Their code runs ``torch.logsumexp`` and the mean in the stored
      feature dtype (float32 for their features); we compute in float64 (scipy's
      stable ``logsumexp``), so values differ from theirs at float32 rounding
      (~1e-7 relative). Ties in :math:`s_i` do not matter: any k smallest have the
      same mean (we sort the k selected values before averaging, so the result does
      not depend on the row order at all).

    The direction follows their code: ``tw.py`` ranks models by this value against
    fine-tune accuracy (weighted Kendall tau, higher score = better) and adds it with
    a positive weight. ETran's final score (``tw.py -me etran``) min-max scales this
    energy and the LDA score over the model pool per dataset and takes
    0.15 * energy + 0.85 * LDA; that combination depends on the pool, so it is not a
    registry score.

    Cost: O(n d) time; memory O(n) besides the features (logsumexp in row blocks of
    ``_BLOCK_ELEMS`` values), and the selection of the k lowest is O(n).

    References
    ----------
    Gholami, Akbari, Wang, Kamranian, Zhang. ETran: Energy-Based Transferability
    Estimation. ICCV 2023, pp. 18613-18622.

    See Also
    --------
    rankme : the label-free effective rank of the features.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.zeros((30, 4))  # every s_i = log(4 e^0) = log 4
    >>> round(etran_energy(X, percent=10.0), 6)  # the lowest 100 * 30 // 1000 = 3
    1.386294
    """
    percent = check_positive(percent, "percent")
    if percent > 100:
        raise TaskrelInputError(
            f"`percent` must be a number in (0, 100]; got {percent!r}")
    tenths = int(percent * 10)
    if tenths == 0:
        raise TaskrelInputError(
            f"`percent` must be at least 0.1 (ETran truncates it to tenths of a "
            f"percent, int(percent * 10)); got {percent!r}")
    X = check_features(features, "features")
    n = X.shape[0]
    k = _n_lowest(percent, n)
    if k == 0:
        need = -(-1000 // tenths)
        raise TaskrelInputError(
            f"`features`: etran_energy at percent={percent:g} averages the lowest "
            f"int(percent * 10) * n // 1000 samples, which is 0 for n={n}; it needs "
            f"n >= {need} (or a larger `percent`)")
    s = _row_logsumexp(X)
    lowest = np.sort(np.partition(s, k - 1)[:k])
    return float(np.mean(lowest))
