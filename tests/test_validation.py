"""Bad input: one clear error naming the argument, never a deep traceback or NaN."""

import numpy as np
import pytest

import taskrel
from taskrel import TaskrelInputError
from conftest import blobs

Xr, yr = blobs(30, 3, 4, seed=0)
Xt, yt = blobs(30, 3, 4, seed=1)


def relate(**kw):
    args = dict(reference_features=Xr, reference_labels=yr, target_features=Xt,
                target_labels=yt, device="cpu")
    args.update(kw)
    return taskrel.task_relatedness(**args)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(target_features=Xt[:, :3]), "same number of features: 4 vs 3"),
        (dict(target_labels=yt[:-1]), "inconsistent numbers of samples: 90 vs 89"),
        (dict(reference_features=np.where(Xr > 4, np.inf, Xr)), "`reference_features` must be finite"),
        (dict(target_labels=np.zeros_like(yt)), "`target_labels` must have at least 2 classes"),
        (dict(target_labels=np.r_[yt[:-1], 9]), r"class\(es\) \[9\] have fewer"),
        (dict(target_labels=yt + 0.5), "integer class ids"),
        (dict(target_labels=yt.astype(str)), "integer class ids"),
        (dict(reference_features=Xr[:, 0]), r"2-D of shape \(n_samples, n_features\)"),
        (dict(recipe="slow"), "`recipe` must be one of 'fast', 'paper'"),
        (dict(b_mode="dense"), "`b_mode` must be one of"),
        (dict(tau=-1.0), "`tau` must be a number > 0"),
        (dict(device="tpu"), "`device` must be one of"),
        (dict(b_mode="fixed"), "needs `B`"),
        (dict(b_mode="fixed", B=np.ones((3, 3))), "columns must be distributions"),
        (dict(reference_head=(np.zeros((2, 4)), np.zeros(2))), r"weight \(3, 4\)"),
    ],
)
def test_bad_input_is_named(kw, match):
    with pytest.raises(TaskrelInputError, match=match):
        relate(**kw)


def test_more_target_than_reference_classes_with_sparse_B():
    X5, y5 = blobs(20, 5, 4, seed=2)
    with pytest.raises(TaskrelInputError, match="K_T <= K_R"):
        relate(target_features=X5, target_labels=y5)


def test_probe_rejects_unseen_test_classes():
    with pytest.raises(TaskrelInputError, match="not seen in training"):
        taskrel.linear_probe(Xt, yt, Xt, yt + 5, tau=0.1, device="cpu")


def test_caller_arrays_are_not_modified():
    a, b = Xr.copy(), yr.copy()
    relate()
    np.testing.assert_array_equal(a, Xr)
    np.testing.assert_array_equal(b, yr)


def test_unreadable_task_file(tmp_path):
    p = tmp_path / "x.npz"
    p.write_text("hello")
    with pytest.raises(TaskrelInputError, match="not a readable .npz"):
        taskrel.load_task(p)
