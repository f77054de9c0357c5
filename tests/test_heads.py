import numpy as np
import pytest
import torch

from taskrel.heads import Standardizer, _grad_sq_norms, train_linear_head
from conftest import blobs


def test_closed_form_gradient_norms_match_autograd(global_random_seed):
    # ||d CE / dz|| by autograd versus the O(nK^2) closed form used in the penalty.
    g = torch.Generator().manual_seed(global_random_seed)
    W = torch.randn(4, 7, generator=g, dtype=torch.float64)
    c = torch.randn(4, generator=g, dtype=torch.float64)
    Z = torch.randn(9, 7, generator=g, dtype=torch.float64, requires_grad=True)
    p = torch.softmax(Z @ W.T + c, dim=1)
    G = W @ W.T
    closed_all = _grad_sq_norms(p.detach(), G, None).sqrt()
    for y in range(4):
        loss = torch.nn.functional.cross_entropy(
            Z @ W.T + c, torch.full((9,), y), reduction="sum"
        )
        (grad,) = torch.autograd.grad(loss, Z)
        np.testing.assert_allclose(closed_all[:, y], grad.norm(dim=1), rtol=1e-10)
        yt = torch.full((9,), y)
        np.testing.assert_allclose(
            _grad_sq_norms(p.detach(), G, yt).sqrt(), grad.norm(dim=1), rtol=1e-10
        )


@pytest.mark.parametrize("recipe", ["fast", "paper"])
@pytest.mark.parametrize("tau", [0.05, 0.5])
def test_head_respects_tau_and_learns(recipe, tau):
    X, y = blobs(80, 3, 5, seed=1)
    Z = Standardizer.fit(X).transform(X)
    head = train_linear_head(Z, y, 3, tau=tau, recipe=recipe, seed=0)
    P = head.predict_proba(Z)
    norms = [np.linalg.norm(head.weight.T @ (P[i] - np.eye(3)[k]))
             for i in range(len(Z)) for k in range(3)]
    # The penalty is soft: allow 10% overshoot of the target (measured: < 2%).
    assert max(norms) <= 1.1 * tau
    # The paper's SGD recipe (lr 1e-4, 2001 steps) under-trains at small tau, as the
    # official code does (paper-recipe-runs.md); it must still beat chance (1/3).
    floor = 0.9 if recipe == "fast" or tau >= 0.5 else 0.5
    assert np.mean(P.argmax(1) == y) > floor
    # A tighter tau keeps the head closer to uniform (loss nearer log 3).
    assert head.loss(Z, y).mean() < np.log(3)


def test_smaller_tau_gives_higher_train_loss():
    X, y = blobs(80, 3, 5, seed=2)
    Z = Standardizer.fit(X).transform(X)
    losses = [train_linear_head(Z, y, 3, tau=t).loss(Z, y).mean() for t in (0.02, 0.2, 2)]
    assert losses[0] > losses[1] > losses[2]


def test_standardizer_keeps_constant_features_finite():
    X = np.c_[np.arange(10.0), np.full(10, 3.0)]
    s = Standardizer.fit(X)
    Z = s.transform(X)
    assert np.all(np.isfinite(Z))
    np.testing.assert_allclose(Z[:, 1], 0.0)
    np.testing.assert_allclose(Z[:, 0].std(), 1.0)
