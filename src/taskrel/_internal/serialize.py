"""Serialization: atomic writes (a file is replaced whole or not at all, so a killed
run leaves no half file), the one JSON cleaner (:func:`to_jsonable`) and the one CSV
writer (:func:`csv_text`)."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["atomic_write", "atomic_write_text", "atomic_write_json", "atomic_torch_save",
           "atomic_save_npz", "to_jsonable", "csv_text"]


def to_jsonable(obj: Any) -> Any:
    """``obj`` with every part made JSON-safe, recursively.

    Arrays become (nested) lists, whole, whatever their size; numpy floats, integers
    and booleans become Python ones; a non-finite float (NaN, inf) becomes None;
    dict keys become strings; tuples become lists. Anything else is returned as it is
    (``json.dumps`` then says what it cannot write).

    Examples
    --------
    >>> to_jsonable({1: np.array([0.5, np.nan]), "n": np.int64(3), "t": (True,)})
    {'1': [0.5, None], 'n': 3, 't': [True]}
    """
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    return obj


def csv_text(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None, *,
             line_ending: str = "\n") -> str:
    """``rows`` as CSV text with a header line.

    Parameters
    ----------
    rows : sequence of mapping
        One dict per line. Lists and dicts are written as JSON (:func:`to_jsonable`
        first); None and missing keys as empty fields; anything else as ``csv`` writes
        it.
    columns : sequence of str, optional
        The columns, in order (other keys are left out). Default: every key of the
        rows in first-seen order; then no rows give an empty string, not a header.
    line_ending : str
        ``"\n"`` (default) or ``"\r\n"`` (the ``csv`` module's own default, which
        the report's CSV files were written with).
    """
    if columns is None:
        if not rows:
            return ""
        cols: list[str] = []
        for r in rows:
            cols += [k for k in r if k not in cols]
    else:
        cols = list(columns)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator=line_ending)
    w.writeheader()
    for r in rows:
        w.writerow({k: json.dumps(to_jsonable(v)) if isinstance(v, (list, dict)) else v
                    for k, v in r.items() if k in cols})
    return buf.getvalue()


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], None], *,
                 suffix: str = ".tmp") -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then move it into place.

    The temporary file is removed when ``write`` fails, and ``path`` keeps its old
    content.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=suffix)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text)

    atomic_write(path, write)


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_torch_save(path: str | os.PathLike[str], obj: Any) -> None:
    """``torch.save`` through a temporary file and ``os.replace`` (atomic)."""
    import torch

    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def atomic_save_npz(path: str | os.PathLike[str], **arrays: Any) -> None:
    """``np.savez`` of the non-None ``arrays`` to ``path`` atomically."""
    atomic_write(path, lambda tmp: np.savez(
        tmp, **{k: np.asarray(v) for k, v in arrays.items() if v is not None}),
        suffix=".tmp.npz")
