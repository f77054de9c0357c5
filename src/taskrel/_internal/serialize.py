"""Atomic writes: a file is replaced whole or not at all (a killed run leaves no half file)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["atomic_write", "atomic_write_text", "atomic_write_json", "atomic_torch_save",
           "atomic_save_npz"]


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
