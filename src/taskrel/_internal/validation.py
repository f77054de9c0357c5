"""Input validation at the public boundary.

Every public function validates once, here, and internals trust the arrays they get.
Messages name the argument, what was expected and what was given.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..exceptions import TaskrelInputError

__all__ = [
    "check_features",
    "check_labels",
    "check_consistent_length",
    "check_same_dim",
    "check_bool",
    "check_choice",
    "check_positive",
    "check_seed",
    "check_output_path",
    "encode_with_classes",
]


#: The safe range of a feature matrix's largest absolute value. Measured on
#: scikit-learn digits: from 1e20 up (and from 1e-30 down) squared distances
#: overflow or underflow and k-NN accuracy falls from 0.905 to 0.275; at 1e300 the
#: engine sees a constant target. Beyond these bounds inputs are refused, not
#: computed (docs/reliability.md).
FEATURE_MAX_ABS = 1e10
FEATURE_MIN_ABS = 1e-10


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
    amax = float(np.max(np.abs(arr))) if arr.size else 0.0
    if amax > FEATURE_MAX_ABS or 0.0 < amax < FEATURE_MIN_ABS:
        raise TaskrelInputError(
            f"`{name}` must have its largest |value| in [{FEATURE_MIN_ABS:g}, "
            f"{FEATURE_MAX_ABS:g}] (or be all zero); got {amax:.3g} (rescale the "
            "features, e.g. divide by their standard deviation)")
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


def check_bool(value: Any, name: str) -> bool:
    """Return ``value`` as a bool; it must be one (NumPy's ``bool_`` included)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TaskrelInputError(f"`{name}` must be True or False; got {value!r}")
    return bool(value)


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


#: numpy's and scikit-learn's seeds are unsigned 32-bit integers.
MAX_SEED = 2**32 - 1


def check_seed(value: Any, name: str = "seed") -> int:
    """Return ``value`` as an int seed in ``[0, 2**32 - 1]`` (what numpy accepts)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TaskrelInputError(f"`{name}` must be an integer in [0, {MAX_SEED}]; "
                                f"got {value!r}")
    if not 0 <= int(value) <= MAX_SEED:
        raise TaskrelInputError(f"`{name}` must be an integer in [0, {MAX_SEED}]; "
                                f"got {int(value)}")
    return int(value)


def _nearest_existing(p: Path) -> Path:
    q = p.absolute()
    while not q.exists() and q != q.parent:
        q = q.parent
    return q


def _probe_writable(folder: Path) -> str | None:
    """None when a file can be created in ``folder``; else the reason."""
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".taskrel-probe-")
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    os.close(fd)
    os.unlink(tmp)
    return None


def check_output_path(path: Any, name: str, *, kind: str = "file") -> Path:
    """Check, before any work, that ``path`` can be written; return it as a Path.

    ``kind="file"``: ``path`` must not be a folder, and the nearest existing folder
    above it must accept a new file (a file in the way of a parent is an error).
    ``kind="dir"``: ``path`` must be a folder or not exist yet, and new files must be
    creatable in it (or in its nearest existing parent). Nothing is left behind: the
    check creates one empty probe file and removes it; missing folders are not made.
    """
    if kind not in ("file", "dir"):
        raise ValueError(f"kind must be 'file' or 'dir'; got {kind!r}")
    if not isinstance(path, (str, os.PathLike)) or not str(path).strip():
        raise TaskrelInputError(f"`{name}` must be a path; got {path!r}")
    p = Path(path)
    what = "an output file" if kind == "file" else "an output folder"
    if kind == "file" and p.is_dir():
        raise TaskrelInputError(f"`{name}` must be {what}; {str(p)!r} is a folder")
    if kind == "dir" and p.exists() and not p.is_dir():
        raise TaskrelInputError(f"`{name}` must be {what}; {str(p)!r} is a file")
    base = p if kind == "dir" and p.is_dir() else _nearest_existing(p.parent)
    if kind == "dir" and not p.exists():
        base = _nearest_existing(p)
    if not base.is_dir():
        raise TaskrelInputError(
            f"`{name}` must be {what}; {str(base)!r} above it is a file, not a folder")
    reason = _probe_writable(base)
    if reason is not None:
        raise TaskrelInputError(
            f"`{name}` must be {what} we can write; {str(base)!r} refuses new files "
            f"({reason})")
    if kind == "file" and p.exists() and not os.access(p, os.W_OK):
        raise TaskrelInputError(f"`{name}`: {str(p)!r} exists and is not writable")
    return p


def encode_with_classes(
    classes: NDArray[Any], y: Any, name: str
) -> NDArray[np.int64]:
    """Encode ``y`` as indices into ``classes`` (the sorted ids seen in training).

    Ids that training never saw are an error naming ``name`` and the unseen ids.
    """
    arr = np.asarray(y)
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.ravel()
    if arr.ndim != 1:
        raise TaskrelInputError(f"`{name}` must be 1-D; got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise TaskrelInputError(f"`{name}` must hold integer class ids; got {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating) and not np.all(arr == np.round(arr)):
        raise TaskrelInputError(f"`{name}` must hold integer class ids")
    pos = np.searchsorted(classes, arr)
    pos = np.clip(pos, 0, classes.size - 1)
    bad = classes[pos] != arr
    if np.any(bad):
        raise TaskrelInputError(
            f"`{name}` has class ids not seen in training: {np.unique(arr[bad])[:10].tolist()}"
        )
    return pos.astype(np.int64)
