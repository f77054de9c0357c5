"""Row sampling shared by extraction and the experiment cells.

Two rules cap a split at ``limit`` rows; both are deterministic (seed
:data:`LIMIT_SEED`) and return the kept rows in their original order:

- ``"permutation"`` (the legacy rule, :func:`permutation_rows`): the first ``limit``
  rows of a seeded permutation. The committed benchmark stores were computed on these
  rows, so every benchmark path asks for this rule by name.
- ``"stratified"`` (:func:`stratified_rows`): every class keeps its share of the cap
  (largest remainder), and at least ``min(2, class size)`` rows, so a small class of a
  large split is not reduced to one row (with 20,000 rows and a 1,000-row cap, a
  30-row class keeps 1-2 rows under the permutation, and every labelled estimator that
  needs 2 rows per class then fails).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["limited_rows", "permutation_rows", "stratified_rows", "LIMIT_SEED",
           "LIMIT_RULES", "describe_limit_rule"]

#: Seed of the permutation that picks ``limit`` rows (fixed: the same rows every run).
LIMIT_SEED = 0
#: The row-cap rules, by name.
LIMIT_RULES: tuple[str, ...] = ("stratified", "permutation")
#: The fewest rows a class keeps under the stratified rule (when it has them).
MIN_PER_CLASS = 2


def describe_limit_rule(rule: str) -> str:
    """One line saying how ``rule`` picks ``limit`` rows (the task meta's ``limit_rule``)."""
    if rule == "permutation":
        return f"first `limit` rows of a permutation with seed {LIMIT_SEED}"
    if rule == "stratified":
        return (f"stratified by class: each class keeps its share of `limit` (largest "
                f"remainder) and at least min({MIN_PER_CLASS}, class size) rows; within a "
                f"class, the first rows of a permutation with seed {LIMIT_SEED}")
    raise ValueError(f"`limit_rule` must be one of {list(LIMIT_RULES)}; got {rule!r}")


def permutation_rows(n: int, limit: int | None) -> NDArray[np.intp]:
    """All rows, or ``limit`` rows from a fixed seeded permutation, in original order
    (the legacy rule; the committed benchmark's rows)."""
    if limit is None or limit >= n:
        return np.arange(n)
    perm = np.random.default_rng(LIMIT_SEED).permutation(n)
    return np.sort(perm[:limit])


def limited_rows(n: int, limit: int | None, labels: ArrayLike | None = None
                 ) -> NDArray[np.intp]:
    """All rows, or ``limit`` of them, in original order.

    Without ``labels`` the legacy permutation rule (:func:`permutation_rows`); with the
    split's ``labels`` (shape (n,)) the stratified rule (:func:`stratified_rows`).

    Examples
    --------
    >>> y = np.array([0] * 95 + [1] * 5)
    >>> np.bincount(y[limited_rows(100, 10, y)]).tolist()
    [8, 2]
    """
    if labels is None:
        return permutation_rows(n, limit)
    y = np.asarray(labels)
    if y.shape != (n,):
        raise ValueError(f"`labels` must have shape ({n},); got {y.shape}")
    return stratified_rows(y, limit)


def _largest_remainder(quota: NDArray[np.float64], total: int, order: NDArray[np.intp]
                       ) -> NDArray[np.int64]:
    """Integers summing to ``total``: the floors of ``quota`` plus one for the largest
    remainders (ties broken by ``order``, the classes' seeded rank)."""
    base = np.floor(quota).astype(np.int64)
    left = int(total - base.sum())
    if left > 0:
        # Largest remainder first; equal remainders in the seeded class order.
        pick = np.lexsort((order, -(quota - base)))[:left]
        base[pick] += 1
    return base


def _class_counts(counts: NDArray[np.int64], limit: int, order: NDArray[np.intp]
                  ) -> NDArray[np.int64]:
    """Rows per class: proportional (largest remainder) with a per-class minimum."""
    low = np.minimum(counts, MIN_PER_CLASS)
    if low.sum() > limit:  # too many classes for 2 rows each: 1 each, else plain shares
        low = np.minimum(counts, 1)
        if low.sum() > limit:
            low = np.zeros_like(counts)
    fixed = np.zeros(counts.size, bool)
    while True:
        budget = limit - int(low[fixed].sum())
        free = ~fixed
        quota = np.zeros(counts.size)
        quota[free] = budget * counts[free] / counts[free].sum()
        under = free & (quota < low)
        if not under.any():
            break
        fixed |= under  # these classes get their minimum; the rest share what is left
    out = np.where(fixed, low, 0)
    out[free] = _largest_remainder(quota[free], budget, order[free])
    return out


def stratified_rows(labels: ArrayLike, limit: int | None) -> NDArray[np.intp]:
    r"""All rows, or ``limit`` rows stratified by class, in original order.

    Class :math:`c` with :math:`n_c` of the :math:`n` rows keeps :math:`a_c` rows:
    :math:`\max(m_c, \cdot)` of its quota :math:`\text{limit} \cdot n_c / n`, where
    :math:`m_c = \min(2, n_c)`, rounded by the largest-remainder method so that
    :math:`\sum_c a_c = \text{limit}`. Classes whose quota is below :math:`m_c` get
    :math:`m_c`, and the others share the rest of the cap in proportion (repeated until
    no quota is below its minimum). When the classes are too many for 2 rows each, the
    minimum is 1 row, and with more classes than ``limit`` there is no minimum. Within
    a class the rows kept are the first of a permutation with seed :data:`LIMIT_SEED`;
    equal remainders go to the classes in a seeded order.

    Parameters
    ----------
    labels : array-like of shape (n,)
        The split's labels (any hashable values).
    limit : int or None
        Rows to keep; None or ``>= n`` keeps all rows.

    Returns
    -------
    ndarray of shape (min(limit, n),)
        Row indices, increasing.

    Examples
    --------
    >>> y = np.array([0] * 19_970 + [1] * 30)
    >>> np.bincount(y[stratified_rows(y, 1000)]).tolist()
    [998, 2]
    """
    y = np.asarray(labels)
    n = int(y.shape[0])
    if limit is None or limit >= n:
        return np.arange(n)
    _, code, counts = np.unique(y, return_inverse=True, return_counts=True)
    code = code.reshape(-1)
    rng = np.random.default_rng(LIMIT_SEED)
    perm = rng.permutation(n)
    order = np.argsort(rng.permutation(counts.size)).astype(np.intp)
    keep = _class_counts(counts.astype(np.int64), int(limit), order)
    # Rank of each row within its class, in permutation order: keep ranks < keep[class].
    by_class = perm[np.argsort(code[perm], kind="stable")]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank_in_class = np.empty(n, np.int64)
    rank_in_class[by_class] = np.arange(n) - np.repeat(starts, counts)
    return np.flatnonzero(rank_in_class < keep[code]).astype(np.intp)

