"""Class-conditional W1 estimators: closed forms, agreement with exact OT, bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import taskrel.wasserstein as W
from taskrel import TaskrelInputError
from taskrel.io import open_task_dir, save_task_dir
from taskrel.wasserstein import class_conditional_w1, w1


def _two_classes(n=60, d=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(2 * n, d))
    y = np.repeat([0, 1], n)
    return X, y


def test_translation_gives_norm_of_shift_per_class():
    # Closed form: for identical clouds, W1(mu, mu + t) = |t| (Jensen gives >= |t|,
    # the shift coupling attains it). Class 0 moves by (3, 4) -> 5, class 1 by 1 -> 1.
    X, y = _two_classes()
    shift = np.where(y[:, None] == 0, [3.0, 4.0, 0, 0], [0, 0, 1.0, 0])
    est = class_conditional_w1(X, y, X + shift, y, method="exact")
    assert est.per_class == pytest.approx({0: 5.0, 1: 1.0}, abs=1e-9)
    assert est.value == pytest.approx(0.5 * 5.0 + 0.5 * 1.0, abs=1e-9)
    est_w = class_conditional_w1(X, y, X + shift, y, method="exact",
                                 class_weights=[0.2, 0.8])
    assert est_w.value == pytest.approx(0.2 * 5.0 + 0.8 * 1.0, abs=1e-9)
    assert est.stderr == 0.0 and est.method == "exact" and est.n_used == 240


def test_one_dimensional_closed_form():
    # Closed form in 1-d with equal sizes: W1 = mean |sorted(x) - sorted(y)|.
    rng = np.random.default_rng(1)
    x, z = rng.normal(size=200), rng.exponential(size=200)
    want = float(np.mean(np.abs(np.sort(x) - np.sort(z))))
    assert w1(x[:, None], z[:, None], method="exact").value == pytest.approx(want, rel=1e-9)
    # Entropic bias is downward and shrinks with epsilon (measured: -4.2% at the
    # default 0.01, -0.5% at 0.001 for this pair; docs/scale.md).
    errs = [want - w1(x[:, None], z[:, None], method="sinkhorn", device="cpu",
                      epsilon=eps).value for eps in (0.01, 0.001)]
    assert 0 < errs[1] < errs[0] and errs[1] < 0.01 * want


def test_sinkhorn_close_to_exact_and_chunking_changes_nothing(monkeypatch):
    X, y = _two_classes(n=80, d=5, seed=2)
    rng = np.random.default_rng(3)
    T = X + rng.normal(size=X.shape) * 0.5 + 1.0
    ex = class_conditional_w1(X, y, T, y, method="exact")
    sk = class_conditional_w1(X, y, T, y, method="sinkhorn", device="cpu")
    assert sk.method == "sinkhorn"
    # Debiased Sinkhorn at epsilon=0.01 (relative) is within 1% of exact here.
    assert sk.value == pytest.approx(ex.value, rel=0.01)
    monkeypatch.setattr(W, "SINKHORN_MAX_ENTRIES", 500)  # forces chunked cost rows
    ck = class_conditional_w1(X, y, T, y, method="sinkhorn", device="cpu")
    assert ck.value == pytest.approx(sk.value, rel=1e-9)


def test_minibatch_error_shrinks_with_batch_size_and_reports_stderr():
    X, y = _two_classes(n=300, d=3, seed=4)
    rng = np.random.default_rng(5)
    T = rng.normal(size=X.shape) + 0.3
    ex = class_conditional_w1(X, y, T, y, method="exact").value
    errs, ses = [], []
    for b in (15, 60, 300):
        e = class_conditional_w1(X, y, T, y, method="minibatch", batch_size=b,
                                 n_batches=8, seed=0)
        errs.append(abs(e.value - ex))
        ses.append(e.stderr)
        assert e.n_used == (8 if b < 300 else 1) * 2 * 2 * min(b, 300)
    assert errs[0] > errs[1] > errs[2]
    assert errs[2] == pytest.approx(0.0, abs=1e-9)  # a batch of all points is exact
    assert ses[0] > 0 and ses[1] > 0 and ses[2] == pytest.approx(0.0, abs=1e-9)
    # Small batches are biased upward (a subsample is farther than its population).
    e = class_conditional_w1(X, y, T, y, method="minibatch", batch_size=15, seed=0)
    assert e.value > ex


def test_weighted_points_equal_duplicated_points():
    rng = np.random.default_rng(6)
    X, Y = rng.normal(size=(5, 2)), rng.normal(size=(7, 2))
    dup = np.repeat(X, [1, 2, 1, 3, 1], axis=0)
    a = np.array([1, 2, 1, 3, 1]) / 8
    assert w1(X, Y, a=a, method="exact").value == pytest.approx(
        w1(dup, Y, method="exact").value, rel=1e-9)
    assert w1(X, Y, a=a, method="sinkhorn", device="cpu").value == pytest.approx(
        w1(dup, Y, method="exact").value, rel=0.02)


def test_auto_switches_by_size(monkeypatch):
    X, y = _two_classes(n=30)
    assert class_conditional_w1(X, y, X, y).method == "exact"
    monkeypatch.setattr(W, "EXACT_MAX_PAIRS", 100)
    got = class_conditional_w1(X, y, X + 1.0, y, device="cpu", batch_size=10, n_batches=3)
    assert got.method == "minibatch" and got.settings["batch_size"] == 10


def test_memory_mapped_input_matches_in_memory(tmp_path):
    X, y = _two_classes(n=40)
    save_task_dir(tmp_path / "t", features=X, labels=y)
    task = open_task_dir(tmp_path / "t")
    assert isinstance(task.features, np.memmap)
    a = class_conditional_w1(task.features, task.labels, X + 2.0, y, method="minibatch",
                             batch_size=10, n_batches=4, seed=3)
    b = class_conditional_w1(X, y, X + 2.0, y, method="minibatch", batch_size=10,
                             n_batches=4, seed=3)
    assert a.value == b.value and a.stderr == b.stderr


def test_sinkhorn_out_of_memory_retries_with_smaller_chunks(monkeypatch):
    X, y = _two_classes(n=20)
    real = W._sinkhorn_divergence

    def picky(x, yy, a, b, eps, diameter, chunk, tol):
        if chunk > 8:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(x, yy, a, b, eps, diameter, chunk, tol)

    want = class_conditional_w1(X, y, X + 1.0, y, method="sinkhorn", device="cpu").value
    monkeypatch.setattr(W, "_sinkhorn_divergence", picky)
    with pytest.warns(ResourceWarning, match="retrying with batch"):
        got = class_conditional_w1(X, y, X + 1.0, y, method="sinkhorn", device="cpu")
    assert got.value == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(method="magic"), "`method` must be one of"),
        (dict(class_weights=[0.5, 0.6]), "`class_weights` must sum to 1"),
        (dict(class_weights=[1.0]), r"`class_weights` must have shape \(2,\)"),
        (dict(n_batches=0), "`n_batches` must be an integer > 0"),
        (dict(epsilon=-1.0), "`epsilon` must be a number > 0"),
        (dict(batch_size=2.5), "`batch_size` must be an integer"),
        (dict(device="tpu"), "`device` must be one of"),
    ],
)
def test_bad_arguments(kwargs, match):
    X, y = _two_classes(n=10)
    with pytest.raises(TaskrelInputError, match=match):
        class_conditional_w1(X, y, X, y, **kwargs)


def test_bad_data():
    X, y = _two_classes(n=10)
    with pytest.raises(TaskrelInputError, match="same number of features: 4 vs 3"):
        class_conditional_w1(X, y, X[:, :3], y)
    with pytest.raises(TaskrelInputError, match="missing \\[7\\]"):
        class_conditional_w1(X, y, X, np.where(y == 1, 7, 0))
    with pytest.raises(TaskrelInputError, match="inconsistent numbers of samples: 20 vs 19"):
        class_conditional_w1(X, y[:19], X, y)
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(TaskrelInputError, match="`ref_X` must be finite"):
        class_conditional_w1(bad, y, X, y, method="exact")
    with pytest.raises(TaskrelInputError, match="must be 2-D"):
        class_conditional_w1(X[:, 0], y, X, y)
    with pytest.raises(TaskrelInputError, match="`a` must sum to 1"):
        w1(X, X, a=np.ones(20))


def test_cuda_request_without_gpu_is_an_error():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    X, y = _two_classes(n=10)
    with pytest.raises(TaskrelInputError, match="torch sees no CUDA GPU"):
        class_conditional_w1(X, y, X, y, method="sinkhorn", device="cuda")


def test_float_and_no_warning_on_clean_input():
    X, y = _two_classes(n=10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est = class_conditional_w1(X, y, X, y, method="exact")
    assert float(est) == pytest.approx(0.0, abs=1e-6)  # sqrt of rounding in ot.dist


def test_zero_weight_class_is_not_solved():
    X, y = _two_classes(n=10)
    # Shifting every point by (1, 1, 1, 1) moves each class by |t| = 2 (closed form).
    est = class_conditional_w1(X, y, X + 1.0, y, method="exact", class_weights=[1.0, 0.0])
    assert np.isnan(est.per_class[1]) and est.per_class[0] == pytest.approx(2.0, abs=1e-6)
    assert est.value == pytest.approx(2.0, abs=1e-6)
