"""Input validation at the public boundary.

Every public function validates once, here, and internals trust the arrays they get.
Messages name the argument, what was expected and what was given.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..exceptions import TaskrelInputError

__all__ = [
    "check_features",
    "check_labels",
    "check_consistent_length",
    "check_choice",
    "check_positive",
    "check_same_dim",
]


def check_features(X: Any, name: str, *, min_samples: int = 2) -> NDArray[np.float64]:
    """Return ``X`` as a finite float64 array of shape (n_samples, n_features)."""
    if X is None:
        raise TaskrelInputError(f"`{name}` is required; got None")
    try:
        arr = np.asarray(X)
    except Exception as exc:  # ragged lists and the like
        raise TaskrelInputError(
            f"`{name}` must be a 2-D numeric array; could not convert it ({exc})"
        ) from None
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.number) or arr.dtype == bool
    ):
        raise TaskrelInputError(
            f"`{name}` must be a 2-D numeric array; got dtype {arr.dtype}"
        )
    if np.iscomplexobj(arr):
        raise TaskrelInputError(f"`{name}` must be real-valued; got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise TaskrelInputError(
            f"`{name}` must be 2-D of shape (n_samples, n_features); "
            f"got shape {arr.shape}"
        )
    if arr.shape[0] < min_samples:
        raise TaskrelInputError(
            f"`{name}` needs at least {min_samples} samples; got {arr.shape[0]}"
        )
    if arr.shape[1] < 1:
        raise TaskrelInputError(f"`{name}` has no feature columns; got shape {arr.shape}")
    arr = np.asarray(arr, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise TaskrelInputError(
            f"`{name}` must be finite; got {bad} NaN/inf value(s)"
        )
    return arr


def check_labels(
    y: Any, name: str, *, min_classes: int = 2, min_per_class: int = 2
) -> tuple[NDArray[Any], NDArray[np.int64]]:
    """Encode integer labels; return ``(classes, y_idx)`` with ``y_idx`` in 0..K-1.

    Labels must be integers (or floats holding integers). Every class needs at least
    ``min_per_class`` samples and there must be at least ``min_classes`` classes.
    """
    if y is None:
        raise TaskrelInputError(f"`{name}` is required; got None")
    arr = np.asarray(y)
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.ravel()
    if arr.ndim != 1:
        raise TaskrelInputError(
            f"`{name}` must be 1-D of shape (n_samples,); got shape {arr.shape}"
        )
    if arr.size == 0:
        raise TaskrelInputError(f"`{name}` is empty")
    if arr.dtype == bool:
        arr = arr.astype(np.int64)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise TaskrelInputError(f"`{name}` must be finite integers; got NaN/inf")
        if not np.all(arr == np.round(arr)):
            raise TaskrelInputError(
                f"`{name}` must hold integer class ids; got non-integer values "
                f"such as {arr[arr != np.round(arr)][0]!r}"
            )
        arr = arr.astype(np.int64)
    elif not np.issubdtype(arr.dtype, np.integer):
        raise TaskrelInputError(
            f"`{name}` must hold integer class ids; got dtype {arr.dtype}"
        )
    classes, y_idx, counts = np.unique(arr, return_inverse=True, return_counts=True)
    if classes.size < min_classes:
        raise TaskrelInputError(
            f"`{name}` must have at least {min_classes} classes; "
            f"got {classes.size} ({classes.tolist()})"
        )
    small = classes[counts < min_per_class]
    if small.size:
        raise TaskrelInputError(
            f"`{name}`: every class needs at least {min_per_class} samples; "
            f"class(es) {small.tolist()[:10]} have fewer"
        )
    return classes, y_idx.astype(np.int64)


def check_consistent_length(
    a: NDArray[Any], a_name: str, b: NDArray[Any], b_name: str
) -> None:
    if a.shape[0] != b.shape[0]:
        raise TaskrelInputError(
            f"`{a_name}` and `{b_name}` have inconsistent numbers of samples: "
            f"{a.shape[0]} vs {b.shape[0]}"
        )


def check_same_dim(
    a: NDArray[Any], a_name: str, b: NDArray[Any], b_name: str
) -> None:
    if a.shape[1] != b.shape[1]:
        raise TaskrelInputError(
            f"`{a_name}` and `{b_name}` must have the same number of features: "
            f"{a.shape[1]} vs {b.shape[1]}"
        )


def check_choice(value: Any, name: str, options: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in options:
        raise TaskrelInputError(
            f"`{name}` must be one of {', '.join(repr(o) for o in options)}; "
            f"got {value!r}"
        )
    return value


def check_positive(
    value: Any, name: str, *, integer: bool = False, allow_zero: bool = False
) -> Any:
    kind = "an integer" if integer else "a number"
    ok_type = isinstance(value, (int, np.integer)) if integer else isinstance(
        value, (int, float, np.integer, np.floating)
    )
    if isinstance(value, bool) or not ok_type or not np.isfinite(value):
        raise TaskrelInputError(f"`{name}` must be {kind}; got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise TaskrelInputError(f"`{name}` must be {kind} {bound}; got {value!r}")
    return int(value) if integer else float(value)


