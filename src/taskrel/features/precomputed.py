r"""Precomputed features: one file (or array) per candidate encoder.

What ``taskrel rank --features`` and ``taskrel.rank(features=...)`` read when the
embeddings already exist (an embedding service, an earlier run), so no encoder runs.

File formats (one file per candidate):

- ``.npz``: ``features`` (n x d, the target's rows) and ``labels`` (n,); optionally
  ``reference_features`` (m x d) with ``reference_labels`` (m,), the reference task's
  rows in the same feature space (task-relatedness needs them), and ``source_probs``
  (n x C_s, the encoder's own classifier probabilities, for LEEP and NCE). A task file
  written by ``taskrel extract`` is read as well (its train split).
- ``.npy``: the features alone (n x d); the labels then come from elsewhere
  (``--labels FILE`` / ``labels=``).
- ``.parquet`` (needs ``pyarrow``): one row per target row; a label column
  (``label_col``, optional) and either one list column ``features`` or numeric
  columns (every column but the label column).

Every candidate must hold the same target rows in the same order: the same number of
rows and, where they carry labels, the same labels. Feature dimensions may differ.
Candidates that carry reference rows must carry the same reference task (the same
reference labels in the same order): task-relatedness compares encoders on one
reference.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._internal.validation import check_features
from ..exceptions import TaskrelInputError

__all__ = ["PrecomputedFeatures", "read_features", "read_labels",
           "precomputed_candidates", "FEATURE_SUFFIXES"]

#: File suffixes :func:`read_features` reads.
FEATURE_SUFFIXES = (".npz", ".npy", ".parquet", ".pq")
#: The ``.npz`` keys read (others, e.g. a task file's test split, are ignored).
_NPZ_KEYS = ("features", "labels", "reference_features", "reference_labels",
             "source_probs")


@dataclass(frozen=True)
class PrecomputedFeatures:
    """One candidate's precomputed features, checked.

    Attributes
    ----------
    name : str
        The candidate's name (the ranking's ``encoder`` column).
    features : ndarray of shape (n_samples, n_features)
        The target's rows, float64, finite.
    labels : ndarray of shape (n_samples,) or None
        The target's labels as given (ints or strings), None when absent.
    reference_features : ndarray of shape (n_reference, n_features) or None
    reference_labels : ndarray of shape (n_reference,) or None
        Given together, or both None.
    source_probs : ndarray of shape (n_samples, n_source_classes) or None
    origin : str
        Where it came from (a file path, or ``features['a']``), for messages.
    """

    name: str
    features: NDArray[np.float64]
    labels: NDArray[Any] | None = None
    reference_features: NDArray[np.float64] | None = None
    reference_labels: NDArray[Any] | None = None
    source_probs: NDArray[np.float64] | None = None
    origin: str = ""


def read_labels(path: str | os.PathLike[str]) -> NDArray[Any]:
    """Labels from a ``.npy`` array (n,) or a text file with one label per line
    (blank lines skipped; labels kept as strings)."""
    p = _existing(path, "labels")
    if p.suffix.lower() == ".npy":
        y = _load_npy(p)
    else:
        try:
            lines = p.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise TaskrelInputError(f"labels file {str(p)!r} is not readable text "
                                    f"({type(exc).__name__}); expected .npy or one label "
                                    "per line") from None
        y = np.array([s.strip() for s in lines if s.strip()])
        if y.size and all(v.lstrip("+-").isdigit() for v in y.tolist()):
            y = y.astype(np.int64)  # integer class ids written as text
    return _check_label_array(y, f"labels file {str(p)!r}")


def read_features(path: str | os.PathLike[str], *, name: str | None = None,
                  label_col: str = "label") -> PrecomputedFeatures:
    """Read one candidate's features file (``.npz``, ``.npy`` or ``.parquet``; see the
    module's docstring); ``name`` defaults to the file's stem."""
    p = _existing(path, "features")
    suffix = p.suffix.lower()
    if suffix == ".npz":
        arrays = _load_npz(p)
    elif suffix == ".npy":
        arrays = {"features": _load_npy(p)}
    elif suffix in (".parquet", ".pq"):
        arrays = _load_parquet(p, label_col)
    else:
        raise TaskrelInputError(
            f"features file {str(p)!r} must end in {', '.join(FEATURE_SUFFIXES)}; got "
            f"{p.suffix or 'no suffix'!r}")
    return _candidate(name or p.stem, arrays, str(p))


def precomputed_candidates(features: Any, *, labels: Any = None, reference: Any = None,
                           label_col: str = "label") -> list[PrecomputedFeatures]:
    """Every candidate of ``features``, checked against each other.

    Parameters
    ----------
    features : mapping, sequence of paths or comma-separated str of paths
        Name -> features, where a value is an array (n_samples, n_features), a
        :class:`taskrel.io.Task` (its ``features``, ``labels``, ``source_probs``) or a
        file path; or file paths, named by their stems.
    labels : array-like of shape (n_samples,), optional
        The target's labels, for candidates that carry none (those that do must
        agree with them).
    reference : mapping, optional
        Name -> the reference rows in that candidate's feature space: a
        ``(features, labels)`` pair or a Task. Candidates left out keep the reference
        rows of their file, if any.
    label_col : str
        The label column of ``.parquet`` files.

    Returns
    -------
    list of PrecomputedFeatures
        In the order given, with ``labels`` filled in; same rows for all.
    """
    cands = [_as_candidate(n, v, label_col) for n, v in _named(features)]
    if reference is not None:
        cands = _with_reference(cands, reference)
    y = None if labels is None else _check_label_array(labels, "labels")
    _check_same_rows(cands, y)
    if y is not None:
        cands = [c if c.labels is not None else _replace(c, labels=y) for c in cands]
    with_ref = [c for c in cands if c.reference_labels is not None]
    for c in with_ref[1:]:
        _check_same_labels(with_ref[0].reference_labels, with_ref[0].origin,
                           c.reference_labels, c.origin, "reference")
    return cands


# ------------------------------------------------------------------------- readers
def _existing(path: Any, what: str) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TaskrelInputError(f"a {what} file must be a path; got "
                                f"{type(path).__name__}")
    p = Path(path)
    if not p.is_file():
        raise TaskrelInputError(f"{what} file {str(p)!r} does not exist"
                                + (" (it is a folder)" if p.is_dir() else ""))
    return p


def _load_npy(p: Path) -> NDArray[Any]:
    try:
        return np.load(p, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise TaskrelInputError(
                f"{str(p)!r} holds a pickled Python object, not an array; save arrays "
                "with np.save(path, array) or np.savez(path, features=..., labels=...)"
            ) from None
        raise TaskrelInputError(f"{str(p)!r} is not a readable .npy file ({exc})"
                                ) from None
    except (OSError, EOFError) as exc:
        raise TaskrelInputError(f"{str(p)!r} is not a readable .npy file "
                                f"({type(exc).__name__}: {exc})") from None


def _load_npz(p: Path) -> dict[str, NDArray[Any]]:
    if not zipfile.is_zipfile(p):
        raise TaskrelInputError(f"{str(p)!r} is not a readable .npz (not a zip archive; "
                                "np.savez writes one)")
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in _NPZ_KEYS if k in z.files}
            keys = sorted(z.files)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise TaskrelInputError(f"{str(p)!r} is not a readable .npz "
                                f"({type(exc).__name__}: {exc})") from None
    if "features" not in arrays:
        raise TaskrelInputError(f"{str(p)!r} has no 'features' array; keys: {keys}")
    if ("reference_features" in arrays) != ("reference_labels" in arrays):
        raise TaskrelInputError(f"{str(p)!r}: 'reference_features' and "
                                "'reference_labels' go together; keys: " + str(keys))
    return arrays


def _load_parquet(p: Path, label_col: str) -> dict[str, NDArray[Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise TaskrelInputError(f"reading {str(p)!r} needs pyarrow, which is not "
                                "installed: `pip install pyarrow` (or save .npz)"
                                ) from None
    try:
        table = pq.read_table(p)
    except Exception as exc:  # noqa: BLE001 - pyarrow's errors vary by version
        raise TaskrelInputError(f"{str(p)!r} is not a readable Parquet file "
                                f"({type(exc).__name__}: {exc})") from None
    cols = list(table.column_names)
    out: dict[str, NDArray[Any]] = {}
    if label_col in cols:
        out["labels"] = np.asarray(table.column(label_col).to_pylist())
    rest = [c for c in cols if c != label_col]
    if "features" in rest:
        rows = table.column("features").to_pylist()
        try:
            out["features"] = np.array(rows, dtype=np.float64)
        except (TypeError, ValueError):
            raise TaskrelInputError(f"{str(p)!r}: column 'features' must hold one list "
                                    "of numbers per row, all of one length") from None
        return out
    import pyarrow.types as pt

    bad = [c for c in rest if not (pt.is_integer(table.schema.field(c).type)
                                   or pt.is_floating(table.schema.field(c).type))]
    if bad or not rest:
        raise TaskrelInputError(
            f"{str(p)!r}: expected a list column 'features' or numeric feature columns "
            f"besides the label column {label_col!r}; got columns {cols}"
            + (f" (not numeric: {bad[:5]})" if bad else ""))
    out["features"] = np.column_stack([np.asarray(table.column(c).to_numpy(
        zero_copy_only=False), dtype=np.float64) for c in rest])
    return out


# ------------------------------------------------------------------------ checking
def _named(features: Any) -> list[tuple[str, Any]]:
    if isinstance(features, Mapping):
        items = [(str(k), v) for k, v in features.items()]
    elif isinstance(features, (str, os.PathLike)) or (
            isinstance(features, Sequence) and not isinstance(features, np.ndarray)):
        paths = [s.strip() for s in features.split(",")] if isinstance(features, str) \
            else [features] if isinstance(features, os.PathLike) else list(features)
        if any(not isinstance(q, (str, os.PathLike)) or str(q) == "" for q in paths):
            raise TaskrelInputError(
                "`features` must be file paths (or a mapping name -> array, Task or "
                f"path); got {features!r}")
        items = [(Path(q).stem, q) for q in paths]
        stems = [n for n, _ in items]
        dup = sorted({n for n in stems if stems.count(n) > 1})
        if dup:
            raise TaskrelInputError(f"`features`: files named {dup} more than once; give "
                                    "each a name (--names a,b,... / a mapping)")
    else:
        raise TaskrelInputError(
            "`features` must be a mapping name -> array (n_samples, n_features), Task or "
            f"file path, or a sequence of file paths; got {type(features).__name__}")
    if not items:
        raise TaskrelInputError("`features` must name at least one candidate; got none")
    return items


def _as_candidate(name: str, value: Any, label_col: str) -> PrecomputedFeatures:
    if isinstance(value, (str, os.PathLike)):
        return read_features(value, name=name, label_col=label_col)
    where = f"features[{name!r}]"
    if hasattr(value, "features") and hasattr(value, "labels"):  # a taskrel.io.Task
        arrays = {"features": value.features, "labels": value.labels,
                  "source_probs": getattr(value, "source_probs", None)}
        return _candidate(name, {k: v for k, v in arrays.items() if v is not None}, where)
    return _candidate(name, {"features": value}, where)


def _candidate(name: str, arrays: dict[str, Any], origin: str) -> PrecomputedFeatures:
    X = check_features(arrays["features"], f"{origin} features")
    n = X.shape[0]
    y = arrays.get("labels")
    if y is not None:
        y = _check_label_array(y, f"{origin} labels", n)
    P = arrays.get("source_probs")
    if P is not None:
        P = check_features(P, f"{origin} source_probs")
        _check_rows(P.shape[0], n, f"{origin} source_probs")
    Xr, yr = arrays.get("reference_features"), arrays.get("reference_labels")
    if Xr is not None:
        Xr, yr = _check_reference(Xr, yr, X.shape[1], f"{origin} reference_features",
                                  f"{origin} reference_labels")
    return PrecomputedFeatures(name, X, y, Xr, yr, P, origin)


def _check_reference(Xr: Any, yr: Any, d: int, x_name: str, y_name: str
                     ) -> tuple[NDArray[np.float64], NDArray[Any]]:
    Xr = check_features(Xr, x_name)
    if Xr.shape[1] != d:
        raise TaskrelInputError(
            f"`{x_name}` must have the target features' dimension ({d}, the same "
            f"encoder); got {Xr.shape[1]}")
    return Xr, _check_label_array(yr, y_name, Xr.shape[0])


def _check_rows(got: int, n: int, what: str) -> None:
    if got != n:
        raise TaskrelInputError(f"`{what}` must have one row per target row ({n}); "
                                f"got {got}")


def _check_label_array(y: Any, what: str, n: int | None = None) -> NDArray[Any]:
    arr = np.asarray(y)
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.ravel()
    if arr.ndim != 1:
        raise TaskrelInputError(f"`{what}` must be 1-D of shape (n_samples,); got shape "
                                f"{arr.shape}")
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number)
                                   or arr.dtype.kind in "bUS"):
        raise TaskrelInputError(f"`{what}` must hold numbers or strings; got dtype "
                                f"{arr.dtype}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise TaskrelInputError(f"`{what}` must be finite; got NaN/inf labels")
    if n is not None:
        _check_rows(arr.size, n, what)
    return arr


def _check_same_rows(cands: list[PrecomputedFeatures], y: NDArray[Any] | None) -> None:
    """Same number of rows for all; the same labels where they carry them (and as
    ``y``, the labels given apart)."""
    first = cands[0]
    n = first.features.shape[0]
    for c in cands[1:]:
        if c.features.shape[0] != n:
            raise TaskrelInputError(
                f"`features`: {c.origin} has {c.features.shape[0]} target rows but "
                f"{first.origin} has {n}; every candidate must hold the same target rows "
                "in the same order")
    labelled = [(c.labels, c.origin) for c in cands if c.labels is not None]
    if y is not None:
        _check_rows(y.size, n, "labels")
        labelled.insert(0, (y, "`labels`"))
    for ys, origin in labelled[1:]:
        _check_same_labels(labelled[0][0], labelled[0][1], ys, origin, "target")


def _check_same_labels(ya: NDArray[Any], a: str, yb: NDArray[Any], b: str, what: str
                       ) -> None:
    if ya.size != yb.size:
        raise TaskrelInputError(
            f"`features`: {b} has {yb.size} {what} rows but {a} has {ya.size}; every "
            f"candidate must hold the same {what} rows in the same order")
    text_a, text_b = ya.dtype.kind in "US", yb.dtype.kind in "US"
    differ = ~(ya == yb) if text_a == text_b else np.ones(ya.size, bool)
    if np.any(differ):
        i = int(np.flatnonzero(differ)[0])
        kinds = "" if text_a == text_b else " (text labels vs numbers)"
        raise TaskrelInputError(
            f"`features`: the {what} labels of {b} differ from those of {a} at "
            f"{int(differ.sum())} of {ya.size} rows{kinds} (first at row {i}: "
            f"{yb[i].item()!r} vs {ya[i].item()!r}); every candidate must hold the same "
            f"{what} rows in the same order")


def _with_reference(cands: list[PrecomputedFeatures], reference: Any
                    ) -> list[PrecomputedFeatures]:
    if not isinstance(reference, Mapping):
        raise TaskrelInputError(
            "with `features`, `reference` must be a mapping name -> (features, labels) "
            "of the reference rows in that candidate's feature space; got "
            f"{type(reference).__name__}")
    names = [c.name for c in cands]
    extra = sorted(str(k) for k in reference if str(k) not in names)
    if extra:
        raise TaskrelInputError(f"`reference` names {extra}, which are not candidates "
                                f"of `features` ({', '.join(names)})")
    out = []
    for c in cands:
        if c.name not in reference:
            out.append(c)
            continue
        if c.reference_features is not None:
            raise TaskrelInputError(f"`reference`[{c.name!r}]: {c.origin} already holds "
                                    "reference rows; give them once")
        Xr, yr = _reference_pair(reference[c.name], c.name)
        Xr, yr = _check_reference(Xr, yr, c.features.shape[1],
                                  f"reference[{c.name!r}] features",
                                  f"reference[{c.name!r}] labels")
        out.append(_replace(c, reference_features=Xr, reference_labels=yr))
    return out


def _reference_pair(value: Any, name: str) -> tuple[Any, Any]:
    if hasattr(value, "features") and hasattr(value, "labels"):
        value = (value.features, value.labels)
    if not isinstance(value, (tuple, list)) or len(value) != 2 or value[1] is None:
        raise TaskrelInputError(
            f"`reference`[{name!r}] must be a (features, labels) pair or a Task with "
            f"labels; got {type(value).__name__}")
    return value[0], value[1]


def _replace(c: PrecomputedFeatures, **changes: Any) -> PrecomputedFeatures:
    from dataclasses import replace

    return replace(c, **changes)
