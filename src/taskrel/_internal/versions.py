"""Installed package versions, read one way (``importlib.metadata``) for the whole package."""

from __future__ import annotations

import importlib.metadata as md
from collections.abc import Iterable

__all__ = ["package_version", "package_versions"]


def package_version(dist: str) -> str | None:
    """The installed version of distribution ``dist``, or None when it is not installed.

    Examples
    --------
    >>> package_version("numpy") is not None, package_version("no-such-dist-xyz")
    (True, None)
    """
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def package_versions(dists: Iterable[str]) -> dict[str, str | None]:
    """``{dist: package_version(dist)}`` in the order given."""
    return {d: package_version(d) for d in dists}
