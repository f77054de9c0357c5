"""Row sampling shared by extraction and the experiment cells."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["limited_rows", "LIMIT_SEED"]

#: Seed of the permutation that picks ``limit`` rows (fixed: the same rows every run).
LIMIT_SEED = 0


def limited_rows(n: int, limit: int | None) -> NDArray[np.intp]:
    """All rows, or ``limit`` rows from a fixed seeded permutation, in original order."""
    if limit is None or limit >= n:
        return np.arange(n)
    perm = np.random.default_rng(LIMIT_SEED).permutation(n)
    return np.sort(perm[:limit])
