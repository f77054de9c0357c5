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

from .exceptions import TaskrelInputError

__all__ = ["Task", "load_task", "save_task", "atomic_write_text", "atomic_write_json"]


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
    if not p.is_file():
        raise TaskrelInputError(f"task file {str(p)!r} does not exist")
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
    if "meta" in data:  # JSON metadata written by taskrel.extract (a 1-element str array)
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


def save_task(path: str | os.PathLike[str], **arrays: Any) -> None:
    """Write a task file atomically (a killed run never leaves a half file)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp.npz")
    os.close(fd)
    try:
        np.savez(tmp, **{k: np.asarray(v) for k, v in arrays.items() if v is not None})
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _atomic_torch_save(path: str | os.PathLike[str], obj: Any) -> None:
    """``torch.save`` through a temporary file and ``os.replace`` (atomic)."""
    import torch

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")
