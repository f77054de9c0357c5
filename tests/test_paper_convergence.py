"""The paper loop's ``converged`` flag (issue 22): True only when the tolerance
criterion stopped it; a run of a fixed number of steps did not show convergence."""

from __future__ import annotations

import numpy as np
import pytest

import taskrel
from conftest import blobs
from taskrel.relatedness.fit_paper import paper_fit


def _problem():
    Xr, yr = blobs(20, 2, 3, seed=0)
    Xt, yt = blobs(20, 2, 3, seed=1)
    pi = np.array([0.5, 0.5])
    return dict(Zr=Xr, yr=yr, Zt=Xt, yt=yt, pi_R=pi, pi_T=pi, ce_sum=np.ones(2),
                B_fixed=np.eye(2), D_fixed=pi, batch_size=10)


def test_a_fixed_step_run_is_not_reported_converged():
    out = paper_fit(**_problem(), steps=5, tol=None)
    assert out["steps"] == 5
    assert out["converged"] is False and out["stop_reason"] == "max_steps"


def test_a_run_cut_by_max_steps_before_the_tolerance_fired_is_not_converged():
    out = paper_fit(**_problem(), steps=5, tol=1e-3)
    assert out["converged"] is False and out["stop_reason"] == "max_steps"


def test_the_tolerance_criterion_reports_converged():
    # A huge relative tolerance fires at the first check (step 200).
    out = paper_fit(**_problem(), steps=1000, tol=1e9)
    assert out["steps"] == 201
    assert out["converged"] is True and out["stop_reason"] == "tol"


@pytest.mark.filterwarnings("ignore:prior matching")  # 4 steps of learned B, D
@pytest.mark.parametrize("b_mode", ["fixed", "learned"])
def test_task_relatedness_paper_recipe_with_few_steps_is_not_converged(b_mode):
    Xr, yr = blobs(30, 3, 4, seed=0)
    Xt, yt = blobs(30, 3, 4, seed=1)
    kw = {"B": np.eye(3)} if b_mode == "fixed" else {}
    head = (np.eye(3, 4), np.zeros(3))  # a given head: no 2001-step SGD head training
    r = taskrel.task_relatedness(Xr, yr, Xt, yt, recipe="paper", b_mode=b_mode,
                                 max_iter=4, reference_head=head, tau=0.5,
                                 device="cpu", **kw)
    assert r.iterations == 4 and r.converged is False
