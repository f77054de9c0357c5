"""Shared fixtures: seeded synthetic class clusters (unit tests only) and real digits."""

from __future__ import annotations

import os

import numpy as np
import pytest


@pytest.fixture
def global_random_seed() -> int:
    """Tests must pass for any seed in 0-99; widen with TASKREL_TEST_SEED."""
    return int(os.environ.get("TASKREL_TEST_SEED", "42"))


def blobs(n_per_class: int, n_classes: int, d: int, *, sep: float = 4.0, seed: int = 0,
          means: np.ndarray | None = None):
    """Gaussian classes with unit covariance around well-separated means."""
    rng = np.random.default_rng(seed)
    if means is None:
        means = sep * np.eye(n_classes, d)
    y = np.repeat(np.arange(n_classes), n_per_class)
    X = means[y] + rng.normal(size=(y.size, d))
    return X, y


@pytest.fixture
def easy_pair(global_random_seed):
    """Reference and target drawn from the same 3-class distribution (train + test)."""
    s = global_random_seed
    Xr, yr = blobs(60, 3, 6, seed=s)
    Xr_te, yr_te = blobs(40, 3, 6, seed=s + 1)
    Xt, yt = blobs(60, 3, 6, seed=s + 2)
    Xt_te, yt_te = blobs(40, 3, 6, seed=s + 3)
    return dict(Xr=Xr, yr=yr, Xr_te=Xr_te, yr_te=yr_te, Xt=Xt, yt=yt, Xt_te=Xt_te,
                yt_te=yt_te)
