"""Stage 1: the reference and target tasks, row-capped, validated and split.

Nothing here trains: every array argument of the engine is checked by these functions
before the reference head is fitted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._internal.validation import (
    check_consistent_length,
    check_features,
    check_labels,
    check_same_dim,
    encode_with_classes,
)
from ..exceptions import TaskrelInputError
from .config import RelatednessConfig, check_label_map
from .transport import keyed_subsample

__all__ = ["ReferenceSplit", "TargetSplit", "split_task", "cap_rows", "prepare_reference",
           "prepare_target", "check_task_pair"]


@dataclass(frozen=True)
class ReferenceSplit:
    """The reference task's train and held-out rows, labels encoded to 0..K_R-1."""

    X: NDArray[np.float64]
    y: NDArray[np.int64]
    X_test: NDArray[np.float64]
    y_test: NDArray[np.int64]
    classes: NDArray[Any]

    @property
    def n_classes(self) -> int:
        return int(self.classes.size)


@dataclass(frozen=True)
class TargetSplit:
    """The target task's train and held-out rows.

    ``y``/``y_test`` (encoded) and ``classes`` are None without target labels;
    ``check_labels_test`` then holds true held-out labels that only check pseudo-labels.
    """

    X: NDArray[np.float64]
    X_test: NDArray[np.float64]
    y: NDArray[np.int64] | None
    y_test: NDArray[np.int64] | None
    classes: NDArray[Any] | None
    check_labels_test: NDArray[Any] | None

    @property
    def labelled(self) -> bool:
        return self.y is not None


def split_task(
    X: NDArray[np.float64],
    y: NDArray[np.int64] | None,
    *,
    test_size: float = 0.2,
    seed: int = 0,
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Seeded (stratified when labels are given) train/test row indices.

    One uniform key is drawn per row; a class of ``n_c`` rows sends its
    ``round(test_size * n_c)`` rows with the smallest keys to the test side (at least
    one and at most ``n_c - 1`` when ``n_c >= 2``; a single-row class stays on the train
    side). Without labels the ``ceil(test_size * n)`` smallest keys are the test side.
    The split depends on the rows and the class sizes, never on how the classes are
    numbered, so renumbered classes give the same split.

    Examples
    --------
    >>> y = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    >>> tr, te = split_task(np.zeros((10, 2)), y, seed=0)
    >>> np.bincount(y[te]).tolist(), np.bincount(y[tr]).tolist()
    ([1, 1], [4, 4])
    """
    n = X.shape[0]
    keys = np.random.default_rng(seed).random(n)
    on_te = np.zeros(n, dtype=bool)
    if y is None:
        on_te[np.argsort(keys, kind="stable")[:int(np.ceil(test_size * n))]] = True
    else:
        _, inv = np.unique(np.asarray(y), return_inverse=True)
        for rows in _rows_by_class(inv):
            if rows.size < 2:
                continue
            m = min(max(int(np.floor(test_size * rows.size + 0.5)), 1), rows.size - 1)
            on_te[rows[np.argsort(keys[rows], kind="stable")[:m]]] = True
    idx = np.arange(n)
    return idx[~on_te], idx[on_te]


def _rows_by_class(inv: NDArray[np.intp]) -> list[NDArray[np.intp]]:
    """Row indices of each encoded class."""
    order = np.argsort(inv, kind="stable")
    return np.split(order, np.cumsum(np.bincount(inv))[:-1])


def cap_rows(X: Any, y: Any, cap: int | None, rng: np.random.Generator,
             n_classes_unlabelled: int = 1) -> tuple[Any, Any, int]:
    """At most ``cap`` rows per class of (X, y), sorted, read lazily from X (the rows
    with the smallest per-row keys, :func:`~.transport.keyed_subsample`).

    Inputs that are not well-formed are returned untouched (validation reports them).
    Unlabelled rows (y None) are capped at ``cap * n_classes_unlabelled`` uniformly.
    ``cap=None`` keeps every row. Returns (X, y, number of classes seen).
    """
    shape = getattr(X, "shape", None)  # arrays and memory maps; lists are in memory anyway
    if cap is None or not shape:
        return X, y, n_classes_unlabelled
    n = shape[0]
    if y is None:
        limit = cap * n_classes_unlabelled
        if n <= limit:
            return X, y, n_classes_unlabelled
        keep = keyed_subsample(np.arange(n), rng.random(n), limit)
        return X[keep], None, n_classes_unlabelled
    try:
        ya = np.asarray(y)
        if ya.ndim != 1 or ya.shape[0] != n:
            return X, y, n_classes_unlabelled
        _, inv, counts = np.unique(ya, return_inverse=True, return_counts=True)
    except (TypeError, ValueError):
        return X, y, n_classes_unlabelled
    if counts.size == 0 or counts.max() <= cap:  # empty: check_features says so next
        return X, y, counts.size
    keys = rng.random(n)  # one key per row: the rows kept do not follow class order
    keep = np.sort(np.concatenate([keyed_subsample(rows, keys, cap)
                                   for rows in _rows_by_class(inv)]))
    return X[keep], ya[keep], counts.size


def prepare_reference(features: Any, labels: Any, test_features: Any, test_labels: Any,
                      cfg: RelatednessConfig, cap_rng: np.random.Generator
                      ) -> tuple[ReferenceSplit, int]:
    """Cap, validate and split the reference task; also returns its class count seen
    by the row cap (the unlabelled target's cap is that many times the budget)."""
    features, labels, n_cls = cap_rows(features, labels, cfg.max_rows_per_class, cap_rng)
    test_features, test_labels, _ = cap_rows(test_features, test_labels,
                                             cfg.max_rows_per_class, cap_rng)
    X = check_features(features, "reference_features")
    classes, y = check_labels(labels, "reference_labels")
    check_consistent_length(X, "reference_features", y, "reference_labels")
    if (test_features is None) != (test_labels is None):
        raise TaskrelInputError(
            "`reference_test_features` and `reference_test_labels` go together; "
            "got only one of them"
        )
    if test_features is None:
        tr, te = split_task(X, y, seed=cfg.seed)
        X, X_te, y, y_te = X[tr], X[te], y[tr], y[te]
    else:
        X_te = check_features(test_features, "reference_test_features")
        check_same_dim(X, "reference_features", X_te, "reference_test_features")
        y_te = encode_with_classes(classes, test_labels, "reference_test_labels")
        check_consistent_length(X_te, "reference_test_features", y_te,
                                "reference_test_labels")
    for j in range(classes.size):
        if not np.any(y == j):
            raise TaskrelInputError(
                f"`reference_labels`: class {classes[j]!r} has no training sample "
                "after the train/test split; give more samples or explicit test data"
            )
    return ReferenceSplit(X, y, X_te, y_te, classes), n_cls


def prepare_target(features: Any, labels: Any, test_features: Any, test_labels: Any,
                   cfg: RelatednessConfig, cap_rng: np.random.Generator, n_cls: int,
                   reference: ReferenceSplit) -> TargetSplit:
    """Cap, validate and split the target task (labels optional)."""
    features, labels, _ = cap_rows(features, labels, cfg.max_rows_per_class, cap_rng, n_cls)
    test_features, test_labels, _ = cap_rows(test_features, test_labels,
                                             cfg.max_rows_per_class, cap_rng, n_cls)
    X = check_features(features, "target_features")
    check_same_dim(reference.X, "reference_features", X, "target_features")
    classes = y = y_te = check_te = None
    if labels is not None:
        classes, y = check_labels(labels, "target_labels")
        check_consistent_length(X, "target_features", y, "target_labels")
    if test_features is None:
        if test_labels is not None:
            raise TaskrelInputError("`target_test_labels` needs `target_test_features`")
        tr, te = split_task(X, y, seed=cfg.seed)
        X, X_te = X[tr], X[te]
        if y is not None:
            y, y_te = y[tr], y[te]
        return TargetSplit(X, X_te, y, y_te, classes, None)
    X_te = check_features(test_features, "target_test_features")
    check_same_dim(X, "target_features", X_te, "target_test_features")
    if test_labels is not None and y is not None:
        y_te = encode_with_classes(classes, test_labels, "target_test_labels")
        check_consistent_length(X_te, "target_test_features", y_te, "target_test_labels")
    elif test_labels is not None:
        check_te = np.asarray(test_labels)
        check_consistent_length(X_te, "target_test_features", check_te,
                                "target_test_labels")
    elif y is not None:
        raise TaskrelInputError(
            "`target_test_features` given without `target_test_labels` while "
            "`target_labels` are given; pass both or neither"
        )
    return TargetSplit(X, X_te, y, y_te, classes, check_te)


def check_task_pair(ref: ReferenceSplit, tgt: TargetSplit, cfg: RelatednessConfig) -> None:
    """The checks that need both tasks' class counts (before anything is fitted)."""
    K_R = ref.n_classes
    if tgt.labelled:
        assert tgt.classes is not None
        K_T = int(tgt.classes.size)
        if cfg.b_mode == "sparse" and K_T > K_R:
            raise TaskrelInputError(
                f"`target_labels` has {K_T} classes but the reference task has {K_R}; "
                "b_mode='sparse' needs K_T <= K_R (use b_mode='learned', "
                "the CLI's --b-mode learned)"
            )
        if cfg.b_mode == "fixed":
            check_label_map(cfg.B, K_T, K_R)
        return
    n = cfg.n_target_classes  # a positive integer or None (RelatednessConfig)
    if n is not None and not 2 <= n <= K_R:
        raise TaskrelInputError(
            f"`n_target_classes` must be in [2, {K_R}] (the reference has {K_R} "
            f"classes); got {n}"
        )
    if cfg.b_mode == "fixed" and cfg.B is not None and cfg.B.shape[1] != K_R:
        # K_T of pseudo-labels is known only later; the columns must be K_R already.
        check_label_map(cfg.B, cfg.B.shape[0], K_R)
