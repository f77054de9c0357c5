"""Helpers shared by the encoder modules: optional imports and weight-file identity."""

from __future__ import annotations

import functools
import hashlib
import importlib
import os
from pathlib import Path
from typing import Any

from ...exceptions import TaskrelInputError

__all__ = ["require", "file_digest", "check_image_size", "image_size_error"]


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



def check_image_size(name: str, image_size: Any) -> int | None:
    """``image_size`` as an int >= 1, or None (the model's own size)."""
    if image_size is None:
        return None
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise TaskrelInputError(f"{name}: `image_size` must be an int >= 1 (pixels); "
                                f"got {image_size!r}")
    return int(image_size)


def image_size_error(name: str, asked: int, takes: str) -> TaskrelInputError:
    """One line for a size a model cannot take: the encoder, the size asked and the
    size(s) it takes."""
    return TaskrelInputError(
        f"{name} takes {takes}; asked for {asked} px: give it a size it takes "
        f"({name}[image_size=N]) or leave the size native (no --image-size)")
