"""Task files (``.npz``) and atomic writes.

A task file holds ``features`` (n x d floats) and ``labels`` (n ints), optionally
``test_features``, ``test_labels``, ``class_names``, and ``source_probs`` /
``test_source_probs`` (n x C_s probabilities of the encoder's own classification head,
used by LEEP and NCE). Extra keys (metadata) are kept.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._internal.serialize import atomic_save_npz
from ._internal.serialize import atomic_write_json as atomic_write_json
from ._internal.serialize import atomic_write_text as atomic_write_text
from ._internal.validation import check_consistent_length, check_features
from .exceptions import TaskrelInputError

__all__ = [
    "Task",
    "load_task",
    "save_task",
    "atomic_write_text",
    "atomic_write_json",
    "save_task_dir",
    "open_task_dir",
    "sample_per_class",
    "check_task",
]


@dataclass(frozen=True)
class Task:
    features: NDArray[Any]
    labels: NDArray[Any] | None
    test_features: NDArray[Any] | None = None
    test_labels: NDArray[Any] | None = None
    class_names: list[str] | None = None
    path: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    source_probs: NDArray[Any] | None = None
    test_source_probs: NDArray[Any] | None = None


def load_task(path: str | os.PathLike[str], *, require_labels: bool = False) -> Task:
    """Read a task file; errors name the file and the missing or malformed key."""
    p = Path(path)
    if p.is_dir():
        raise TaskrelInputError(
            f"task file {str(p)!r} is a folder; expected an .npz file "
            "(a task folder is opened with open_task_dir)")
    if not p.is_file():
        raise TaskrelInputError(f"task file {str(p)!r} does not exist")
    if not zipfile.is_zipfile(p):
        raise TaskrelInputError(
            f"task file {str(p)!r} is not a readable .npz: not a zip archive "
            "(np.savez writes one);"
            " it may be a text or .npy file")
    try:
        with np.load(p, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise TaskrelInputError(
            f"task file {str(p)!r} is not a readable .npz ({type(exc).__name__}: {exc})"
        ) from None
    if "features" not in data:
        raise TaskrelInputError(
            f"task file {str(p)!r} has no 'features' array; keys: {sorted(data)}"
        )
    labels = data.get("labels")
    if require_labels and labels is None:
        raise TaskrelInputError(f"task file {str(p)!r} has no 'labels' array")
    if ("test_features" in data) != ("test_labels" in data) and labels is not None:
        raise TaskrelInputError(
            f"task file {str(p)!r}: 'test_features' and 'test_labels' go together"
        )
    names = data.get("class_names")
    known = {"features", "labels", "test_features", "test_labels", "class_names",
             "source_probs", "test_source_probs", "meta"}
    meta = {k: v.tolist() for k, v in data.items() if k not in known}
    if "meta" in data:  # JSON metadata written by taskrel.features.extract (a 1-element str array)
        for item in np.atleast_1d(data["meta"]).tolist():
            try:
                parsed = json.loads(str(item))
            except json.JSONDecodeError:
                parsed = None
            if isinstance(parsed, dict):
                meta.update(parsed)
            else:
                meta.setdefault("meta", []).append(str(item))
    return Task(
        features=data["features"],
        labels=labels,
        test_features=data.get("test_features"),
        test_labels=data.get("test_labels"),
        class_names=None if names is None else [str(n) for n in names.tolist()],
        path=str(p),
        meta=meta,
        source_probs=data.get("source_probs"),
        test_source_probs=data.get("test_source_probs"),
    )


def check_task(task: Any, name: str, *, require_labels: bool = False) -> None:
    """Check a task's arrays before any work: finite 2-D features, and labels (and
    test arrays, ``source_probs``) with one entry per row. Errors name ``name``.
    """
    if not isinstance(task, Task):
        raise TaskrelInputError(
            f"`{name}` must be a taskrel.io.Task (load_task or Task(features, labels)); "
            f"got {type(task).__name__}")
    pairs = [("features", "labels", "source_probs"),
             ("test_features", "test_labels", "test_source_probs")]
    for xk, yk, pk in pairs:
        X = getattr(task, xk)
        if X is None:
            continue
        Xa = check_features(X, f"{name} {xk}", min_samples=1)
        for other in (yk, pk):
            v = getattr(task, other)
            if v is not None:
                va = np.asarray(v)
                if va.ndim == 0:
                    raise TaskrelInputError(f"`{name} {other}` must be an array; got {v!r}")
                check_consistent_length(Xa, f"{name} {xk}", va, f"{name} {other}")
    if require_labels and task.labels is None:
        raise TaskrelInputError(f"`{name}` needs labels; {task.path or 'the task'} has none")


def save_task(path: str | os.PathLike[str], **arrays: Any) -> None:
    """Write a task file atomically (a killed run never leaves a half file)."""
    atomic_save_npz(path, **arrays)


# ------------------------------------------------------------------ task directories
#: Arrays a task directory may hold, each as ``<name>.npy``.
TASK_DIR_ARRAYS = ("features", "labels", "test_features", "test_labels")
#: Rows copied at a time when writing a task directory (bounds memory for memmaps).
_COPY_ROWS = 65536


def _write_npy(path: Path, arr: Any) -> None:
    """Write ``arr`` to ``path`` as .npy in row chunks (a memory map is streamed)."""
    a = arr if isinstance(arr, np.ndarray) else np.asarray(arr)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=a.dtype, shape=a.shape)
    if a.ndim == 0 or a.shape[0] == 0:
        out[...] = a
    else:
        for s in range(0, a.shape[0], _COPY_ROWS):
            out[s : s + _COPY_ROWS] = a[s : s + _COPY_ROWS]
    out.flush()
    del out


def save_task_dir(
    path: str | os.PathLike[str],
    *,
    features: Any,
    labels: Any = None,
    test_features: Any = None,
    test_labels: Any = None,
    class_names: list[str] | None = None,
    meta: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a task as a directory of ``.npy`` files plus ``meta.json``, atomically.

    The layout (``features.npy``, ``labels.npy``, optional ``test_features.npy`` and
    ``test_labels.npy``, and ``meta.json`` with the shapes, ``class_names`` and
    ``meta``) lets :func:`open_task_dir` memory-map arrays larger than memory. The
    directory is built under a temporary name beside ``path`` and renamed into place,
    so a killed run never leaves a half-written task. Inputs may themselves be memory
    maps: they are copied in row chunks.

    Parameters
    ----------
    path : path-like
        The directory to create.
    features : array of shape (n, d)
    labels : array of shape (n,), optional
    test_features, test_labels : arrays, optional
        Given together.
    class_names : list of str, optional
    meta : dict, optional
        JSON-serializable metadata.
    overwrite : bool, default False
        Replace an existing directory (else an existing ``path`` is an error).

    Returns
    -------
    Path
        ``path``.
    """
    p = Path(path)
    arrays = {"features": features, "labels": labels, "test_features": test_features,
              "test_labels": test_labels}
    arrays = {k: v for k, v in arrays.items() if v is not None}
    for k, v in arrays.items():
        if not hasattr(v, "shape"):
            arrays[k] = v = np.asarray(v)
        want = 2 if k.endswith("features") else 1
        if len(v.shape) != want:
            raise TaskrelInputError(
                f"`{k}` must be {want}-D; got shape {tuple(v.shape)}"
            )
    if (test_features is None) != (test_labels is None):
        raise TaskrelInputError(
            "`test_features` and `test_labels` go together; got only one of them"
        )
    for f, lab in (("features", "labels"), ("test_features", "test_labels")):
        if f in arrays and lab in arrays and arrays[f].shape[0] != arrays[lab].shape[0]:
            raise TaskrelInputError(
                f"`{f}` and `{lab}` have inconsistent numbers of samples: "
                f"{arrays[f].shape[0]} vs {arrays[lab].shape[0]}"
            )
    if p.exists() and not overwrite:
        raise TaskrelInputError(
            f"`path` {str(p)!r} already exists; pass overwrite=True to replace it"
        )
    header = {
        "format": "taskrel-task-dir",
        "version": 1,
        "arrays": {k: {"shape": list(v.shape), "dtype": str(v.dtype)}
                   for k, v in arrays.items()},
        "class_names": None if class_names is None else [str(c) for c in class_names],
        "meta": meta or {},
    }
    try:
        header_text = json.dumps(header, indent=2) + "\n"
    except TypeError as exc:
        raise TaskrelInputError(f"`meta` must be JSON-serializable ({exc})") from None
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp"))
    old: Path | None = None
    try:
        for k, v in arrays.items():
            _write_npy(tmp / f"{k}.npy", v)
        (tmp / "meta.json").write_text(header_text)
        if p.exists():
            old = Path(tempfile.mkdtemp(dir=p.parent, prefix=f".{p.name}.", suffix=".old"))
            os.rmdir(old)
            os.replace(p, old)
        os.replace(tmp, p)
    except BaseException:
        if old is not None and not p.exists():
            os.replace(old, p)
            old = None
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        import shutil

        shutil.rmtree(old, ignore_errors=True)
    return p


def open_task_dir(
    path: str | os.PathLike[str], *, mmap: bool = True, require_labels: bool = False
) -> Task:
    """Open a task directory written by :func:`save_task_dir`.

    With ``mmap=True`` (the default) the arrays are read-only memory maps: nothing is
    read until rows are indexed, so reference sets larger than memory can be sampled
    with :func:`sample_per_class`. ``mmap=False`` loads everything.
    """
    p = Path(path)
    if not p.is_dir():
        raise TaskrelInputError(f"task directory {str(p)!r} does not exist")
    mpath = p / "meta.json"
    try:
        header = json.loads(mpath.read_text())
    except (OSError, ValueError) as exc:
        raise TaskrelInputError(
            f"task directory {str(p)!r} has no readable meta.json ({exc})"
        ) from None
    arrays: dict[str, Any] = {}
    for k in TASK_DIR_ARRAYS:
        f = p / f"{k}.npy"
        if not f.is_file():
            continue
        try:
            arrays[k] = np.load(f, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise TaskrelInputError(
                f"task directory {str(p)!r}: {k}.npy is not a readable .npy ({exc})"
            ) from None
        want = header.get("arrays", {}).get(k, {}).get("shape")
        if want is not None and list(arrays[k].shape) != list(want):
            raise TaskrelInputError(
                f"task directory {str(p)!r}: {k}.npy has shape {arrays[k].shape}, "
                f"meta.json says {tuple(want)}"
            )
    if "features" not in arrays:
        raise TaskrelInputError(f"task directory {str(p)!r} has no features.npy")
    if require_labels and "labels" not in arrays:
        raise TaskrelInputError(f"task directory {str(p)!r} has no labels.npy")
    return Task(
        features=arrays["features"],
        labels=arrays.get("labels"),
        test_features=arrays.get("test_features"),
        test_labels=arrays.get("test_labels"),
        class_names=header.get("class_names"),
        path=str(p),
        meta=dict(header.get("meta") or {}),
    )


def sample_per_class(
    X: Any, y: Any, per_class: int, seed: int = 0
) -> tuple[NDArray[Any], NDArray[Any], NDArray[np.int64]]:
    """Draw up to ``per_class`` rows of each class, reading only those rows of ``X``.

    Parameters
    ----------
    X : array of shape (n, d)
        Often a memory map from :func:`open_task_dir`; only the sampled rows are read
        (in increasing row order, so a memory map is read in one forward pass).
    y : array of shape (n,)
        Labels (read in full: n integers).
    per_class : int
        Rows per class; a class with fewer rows gives all of them.
    seed : int, default 0

    Returns
    -------
    X_sample : ndarray of shape (m, d)
        An in-memory copy of the sampled rows, in increasing row order.
    y_sample : ndarray of shape (m,)
    rows : ndarray of shape (m,)
        The sampled row indices (sorted).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.arange(20.0).reshape(10, 2); y = np.array([0] * 7 + [1] * 3)
    >>> Xs, ys, rows = sample_per_class(X, y, 2, seed=0)
    >>> np.bincount(ys).tolist(), bool(np.all(Xs == X[rows]))
    ([2, 2], True)
    """
    if isinstance(per_class, bool) or not isinstance(per_class, (int, np.integer)) \
            or per_class < 1:
        raise TaskrelInputError(f"`per_class` must be an integer >= 1; got {per_class!r}")
    if not hasattr(X, "shape") or len(X.shape) != 2:
        raise TaskrelInputError(
            f"`X` must be 2-D of shape (n_samples, n_features); "
            f"got shape {getattr(X, 'shape', None)}"
        )
    yy = np.asarray(y)
    if yy.ndim != 1:
        raise TaskrelInputError(f"`y` must be 1-D of shape (n_samples,); got shape {yy.shape}")
    if yy.shape[0] != X.shape[0]:
        raise TaskrelInputError(
            f"`X` and `y` have inconsistent numbers of samples: {X.shape[0]} vs {yy.shape[0]}"
        )
    rng = np.random.default_rng(seed)
    classes, inv = np.unique(yy, return_inverse=True)
    parts = []
    for c in range(classes.size):
        rows = np.flatnonzero(inv == c)
        if rows.size > per_class:
            rows = rng.choice(rows, size=per_class, replace=False)
        parts.append(rows)
    rows = np.sort(np.concatenate(parts)).astype(np.int64)
    return np.asarray(X[rows]), yy[rows], rows
