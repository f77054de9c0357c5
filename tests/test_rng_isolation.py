"""Library functions that seed torch do so on a forked RNG (issue 22): the caller's
global torch RNG is in the same state afterwards as if they had not been called, and
their own results still depend only on their ``seed``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import blobs
from taskrel.heads import Standardizer, train_linear_head


def _draw_after(seed, fn):
    torch.manual_seed(seed)
    if fn is not None:
        fn()
    return torch.rand(4)


@pytest.mark.parametrize("recipe", ["paper", "fast"])
def test_train_linear_head_leaves_the_global_rng_alone(recipe):
    X, y = blobs(20, 3, 4, seed=0)
    Z = Standardizer.fit(X).transform(X)
    heads = []

    def fit():
        heads.append(train_linear_head(Z, y, 3, tau=0.5, recipe=recipe, seed=5,
                                       max_iter=20))

    torch.testing.assert_close(_draw_after(11, fit), _draw_after(11, None),
                               rtol=0, atol=0)
    # The head itself does not depend on the caller's RNG state.
    torch.manual_seed(99)
    fit()
    np.testing.assert_array_equal(heads[0].weight, heads[1].weight)
    np.testing.assert_array_equal(heads[0].bias, heads[1].bias)


def test_train_small_cnn_leaves_the_global_rng_alone(tmp_path):
    from taskrel.data import load_dataset, subsample
    from taskrel.encoders import train_small_cnn

    ds = subsample(load_dataset("digits"), per_class=3)
    paths = []

    def train():
        out = tmp_path / f"{len(paths)}.pt"
        paths.append(train_small_cnn(ds, epochs=1, seed=1, out=out, image_size=8,
                                     device="cpu", progress=False))

    torch.testing.assert_close(_draw_after(4, train), _draw_after(4, None),
                               rtol=0, atol=0)
    torch.manual_seed(1234)
    train()
    a, b = (torch.load(p, weights_only=True) for p in paths)
    for part in ("features", "head"):
        for k in a[part]:
            torch.testing.assert_close(a[part][k], b[part][k], rtol=0, atol=0)


def test_finetune_leaves_the_global_rng_alone():
    # Already forked before issue 22 (a guard, not a regression test of a fix).
    from taskrel.features.finetune import finetune

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 10)
    X = y[:, None] * 2.0 + rng.normal(size=(20, 3))
    enc = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh())

    def tune():
        finetune(enc, None, X, y, X, y, steps=3, batch_size=8, device="cpu")

    torch.testing.assert_close(_draw_after(2, tune), _draw_after(2, None),
                               rtol=0, atol=0)
