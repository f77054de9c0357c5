"""Real data (scikit-learn's bundled digits): the bound bounds and ranks.

Reference: half of the digits 0-4 samples. Targets built from the other half (same task,
rotated, inverted) and from digits 5-9 (new classes). See taskrel.demo.digits_tasks.
"""

import numpy as np
import pytest

import taskrel
from taskrel.demo import digits_tasks
from taskrel.relatedness import split_task


@pytest.fixture(scope="module")
def results():
    tasks = digits_tasks(seed=0)
    Xr, yr = tasks["reference"]
    out = {}
    for name in TARGETS:
        Xt, yt = tasks["targets"][name]
        r, (tr, te) = _relate_split(Xr, yr, Xt, yt, seed=0)
        p = taskrel.linear_probe(Xt[tr], yt[tr], Xt[te], yt[te], tau=r.tau, device="cpu")
        out[name] = (r, p)
    return out


TARGETS = ("digits0-4 (new samples)", "rotated 45 deg", "digits5-9 (new classes)")


def _relate_split(Xr, yr, Xt, yt, *, seed):
    """Task-relatedness on a seeded 80/20 split of the target; also the split."""
    tr, te = split_task(Xt, np.unique(yt, return_inverse=True)[1], seed=seed)
    r = taskrel.task_relatedness(Xr, yr, Xt[tr], yt[tr], target_test_features=Xt[te],
                                 target_test_labels=yt[te], device="cpu", seed=seed)
    return r, (tr, te)


def test_bound_is_above_the_transfer_loss_on_real_pairs(results):
    # Two real pairs with different label sets: digits 0-4 -> 5-9, and 0-4 -> rotated.
    for name in ("digits5-9 (new classes)", "rotated 45 deg"):
        r, p = results[name]
        assert r.bound >= p.loss, name
        assert r.transformed_loss is not None and r.bound >= r.transformed_loss, name


def test_more_related_targets_get_smaller_bounds():
    # With ~90 held-out rows per side, one split's bound moves by +-0.5 (measured: the
    # same-task target's bound is below the rotated one's in 3 of 5 seeds, 2 of 5
    # before issue 22's engine fix), so a single seed's order is luck. The median over
    # five seeds (split, head and fit) is what the test pins.
    tasks = digits_tasks(seed=0)
    Xr, yr = tasks["reference"]
    med = {}
    for name in TARGETS:
        Xt, yt = tasks["targets"][name]
        med[name] = float(np.median([_relate_split(Xr, yr, Xt, yt, seed=s)[0].bound
                                     for s in range(5)]))
    assert med["digits0-4 (new samples)"] < med["rotated 45 deg"]
    assert med["digits0-4 (new samples)"] < med["digits5-9 (new classes)"]
