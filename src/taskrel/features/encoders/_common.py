"""Helpers shared by the encoder modules: optional imports and weight-file identity."""

from __future__ import annotations

import hashlib
import importlib
import os
from pathlib import Path
from typing import Any

from ...exceptions import TaskrelInputError

__all__ = ["require", "file_digest"]


def require(module: str, install: str) -> Any:
    """Import ``module``, or raise a :class:`TaskrelInputError` naming ``install``."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise TaskrelInputError(
            f"this encoder needs the package providing {module!r}; install it with "
            f"`{install}`") from None


def file_digest(path: str | os.PathLike[str]) -> str:
    """Cheap identity of a weights file: size + SHA-256 of its first and last MiB."""
    p = Path(path)
    size = p.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(p, "rb") as f:
        h.update(f.read(1 << 20))
        f.seek(max(0, size - (1 << 20)))
        h.update(f.read(1 << 20))
    return h.hexdigest()[:16]

