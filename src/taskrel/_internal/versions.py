"""Installed package versions, for the provenance written beside results."""

from __future__ import annotations

import platform
from collections.abc import Iterable
from importlib import metadata

__all__ = ["package_version", "package_versions"]


def package_version(dist: str) -> str | None:
    """The installed version of distribution ``dist``, or None when it is not installed.

    Examples
    --------
    >>> package_version("surely-not-an-installed-distribution") is None
    True
    """
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def package_versions(dists: Iterable[str], *, skip_missing: bool = False
                     ) -> dict[str, str | None]:
    """``{"python": <version>, dist: <version>, ...}`` in the order given.

    A distribution that is not installed maps to None, or is left out with
    ``skip_missing=True``.
    """
    out: dict[str, str | None] = {"python": platform.python_version()}
    for d in dists:
        v = package_version(d)
        if v is not None or not skip_missing:
            out[d] = v
    return out
