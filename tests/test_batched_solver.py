"""The batched entropic solver (recipe "batched", the GPU solver) on the CPU, against the
exact recipe on real data (scikit-learn digits pixels, Fashion-MNIST -> MNIST-5k)."""

from __future__ import annotations

import numpy as np
import pytest
from golden.golden import digits_pair, fmnist_mnist_pair

import taskrel
from taskrel.relatedness.solvers import solver_name
from taskrel.relatedness.transport import build_groups, group_couplings
from taskrel.relatedness.transport_batched import batched_w1, fit_affine_batched

CPU = "cpu"


@pytest.fixture(scope="module")
def digits():
    return digits_pair()


def test_batched_couplings_match_exact_w1_on_real_groups(digits):
    """All classes at once (padded, entropic, epsilon-scaled) vs one exact OT per class."""
    Xs = (digits["Xr"] - digits["Xr"].mean(0)) / 4.0
    Xt = (digits["Xt"] - digits["Xt"].mean(0)) / 4.0
    K = 5
    yt = digits["yt"] - 5
    pi = np.bincount(yt, minlength=K) / yt.size
    groups = build_groups(digits["yr"], yt, np.eye(K), pi, pi, max_per_class=60,
                          rng=np.random.default_rng(0))
    exact, _, _ = group_couplings(Xs, Xt, groups)
    approx = batched_w1(Xs, Xt, groups, device=CPU)
    # the entropic cost is above the exact one, by little at EPS_REL of the mean cost
    assert exact <= approx <= 1.01 * exact
    A, b, info = fit_affine_batched(Xs, Xt, groups, ridge=1.0, max_iter=5, device=CPU)
    assert A.shape == (64, 64) and info["W"] <= approx + 1e-9  # the fit lowers W1


@pytest.mark.parametrize("pair", ["digits", "fmnist"])
def test_batched_recipe_bound_within_one_percent_of_the_exact_recipe(pair, digits):
    d = digits if pair == "digits" else fmnist_mnist_pair()
    Xr, yr, Xt, yt = d["Xr"][:300], d["yr"][:300], d["Xt"][:250], d["yt"][:250]
    exact = taskrel.task_relatedness(Xr, yr, Xt, yt, device=CPU)
    batched = taskrel.task_relatedness(Xr, yr, Xt, yt, recipe="batched", device=CPU)
    assert batched.bound == pytest.approx(exact.bound, rel=0.01)
    assert batched.settings["recipe"] == "batched"


def test_the_fast_recipe_runs_the_batched_solver_on_a_gpu():
    assert solver_name("fast", "cuda") == "batched"
    assert solver_name("fast", "cpu") == "fast"
    assert solver_name("paper", "cuda") == "paper"
