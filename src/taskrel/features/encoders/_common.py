"""Helpers shared by the encoder modules: optional imports and weight-file identity."""

from __future__ import annotations

import functools
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
    """Identity of a weights file: SHA-256 of its whole content (16 hex digits).

    Hashed once per (path, size, modification time) in a process: a file rewritten in
    place, even in its middle, gets a new identity (the first and last MiB alone, as
    before issue 22, missed a change in between).
    """
    p = Path(path).resolve()
    st = p.stat()
    return _content_digest(str(p), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _content_digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            h.update(block)
    return h.hexdigest()[:16]

