"""Ground truth: end-to-end fine-tuning of a tiny CNN on real digits, and the probe cell."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from taskrel.exceptions import TaskrelInputError
from taskrel.features.finetune import finetune, linear_probe_cell
from taskrel.probe import linear_probe


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: on a shared 2-core machine two threads oversubscribe (8x slower)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _cnn():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 16, 3, padding=1, stride=2), torch.nn.ReLU(),
        torch.nn.Flatten(),
    )


@pytest.fixture(scope="module")
def digits_images():
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).reshape(-1, 8, 8).astype(np.float32)  # images stay 2-D until preprocess
    return X[:800], y[:800], X[1400:], y[1400:]


def _pre(batch):
    return torch.as_tensor(batch)[:, None]  # add the channel axis per batch


def test_finetune_beats_chance_and_is_deterministic(digits_images):
    Xtr, ytr, Xte, yte = digits_images
    net = _cnn()
    before = [p.detach().clone() for p in net.parameters()]
    kw = dict(steps=80, lr=1e-2, head_lr_mult=1.0, batch_size=64, seed=0, device="cpu")
    r1 = finetune(net, _pre, Xtr, ytr, Xte, yte, **kw)
    r2 = finetune(net, _pre, Xtr, ytr, Xte, yte, **kw)
    # 10 balanced classes: chance is 0.10 accuracy and log(10) = 2.30 nats
    assert r1.test_accuracy > 0.8 and r1.test_loss < 1.0
    assert (r1.test_accuracy, r1.test_loss, r1.train_loss) == (
        r2.test_accuracy, r2.test_loss, r2.train_loss)
    short = dict(kw, steps=5)
    assert (finetune(net, _pre, Xtr, ytr, Xte, yte, **short).test_loss
            != finetune(net, _pre, Xtr, ytr, Xte, yte, **dict(short, seed=1)).test_loss)
    # the caller's module is not trained in place
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
    rec = r1.recipe
    assert rec["optimizer"] == "AdamW" and rec["steps"] == 80 and rec["n_classes"] == 10
    assert rec["n_train"] == 800 and rec["n_test"] == len(yte) and rec["feature_dim"] == 256
    assert r1.seconds > 0


def test_finetune_list_inputs_and_label_values():
    # string-free list inputs and non-contiguous integer labels
    rng = np.random.default_rng(0)
    y = np.repeat([3, 7], 30)
    X = [row for row in (2.0 * (y[:, None] == 7) + rng.normal(size=(60, 4))).astype(
        np.float32)]
    enc = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh())
    r = finetune(enc, lambda b: torch.as_tensor(np.stack(b)), X[::2], y[::2], X[1::2],
                 y[1::2], epochs=10, batch_size=8, lr=1e-2, device="cpu")
    assert r.recipe["steps"] == 10 * 4 and r.test_accuracy > 0.8


@pytest.mark.parametrize("kw, match", [
    (dict(steps=0), "`steps` must be an integer > 0; got 0"),
    (dict(steps=5, epochs=1), "give `steps` or `epochs`, not both"),
    (dict(lr=-1.0), "`lr` must be a number > 0; got -1.0"),
    (dict(batch_size=2.5), "`batch_size` must be an integer; got 2.5"),
    (dict(warmup=1.0), r"`warmup` must be a number in \[0, 1\); got 1.0"),
    (dict(device="tpu"), "`device` must be one of"),
])
def test_finetune_validation(kw, match):
    X = np.zeros((6, 3), np.float32)
    y = np.array([0, 0, 0, 1, 1, 1])
    with pytest.raises(TaskrelInputError, match=match):
        finetune(torch.nn.Linear(3, 2), None, X, y, X, y, **kw)


def test_finetune_input_errors():
    X = np.zeros((6, 3), np.float32)
    y = np.array([0, 0, 0, 1, 1, 1])
    with pytest.raises(TaskrelInputError, match="`module` must be a torch.nn.Module"):
        finetune(lambda x: x, None, X, y, X, y)
    with pytest.raises(TaskrelInputError, match=r"`y_test` has labels absent from `y_train`: \[5\]"):
        finetune(torch.nn.Linear(3, 2), None, X, y, X, np.array([0, 1, 5, 0, 1, 0]))
    with pytest.raises(TaskrelInputError, match="inconsistent numbers of samples"):
        finetune(torch.nn.Linear(3, 2), None, X, y[:5], X, y)


def test_linear_probe_cell_wraps_linear_probe(digits_images):
    Xtr, ytr, Xte, yte = digits_images
    F, Fte = Xtr[:400].reshape(400, -1), Xte.reshape(len(Xte), -1)
    ytr = ytr[:400]
    out = linear_probe_cell(F, ytr, Fte, yte, tau=0.5, device="cpu")
    ref = linear_probe(F, ytr, Fte, yte, tau=0.5, device="cpu")
    assert out["value"] == ref.accuracy and out["extra"]["loss"] == ref.loss
    assert out["value"] > 0.8  # pixels of digits are close to linearly separable
    # tau="auto" is log K / median distance between class means of the standardized
    # training features (taskrel.auto_tau), recomputed here with numpy
    F2, y2 = F[:200], ytr[:200]
    auto = linear_probe_cell(F2, y2, Fte[:50], yte[:50], device="cpu")
    sd = F2.std(0)
    Z2 = (F2 - F2.mean(0)) / np.where(sd > 0, sd, 1.0)
    mus = np.stack([Z2[y2 == k].mean(0) for k in range(10)])
    d = np.linalg.norm(mus[:, None] - mus[None], axis=-1)[np.triu_indices(10, 1)]
    assert auto["extra"]["tau"] == pytest.approx(np.log(10) / np.median(d), rel=1e-5)
    # One tau rule across the package (taskrel.relatedness.resolve_tau): "paper" is 0.02.
    assert linear_probe_cell(F2, y2, Fte[:50], yte[:50], tau="paper",
                             device="cpu")["extra"]["tau"] == 0.02
    with pytest.raises(TaskrelInputError, match="`tau`"):
        linear_probe_cell(F, ytr, Fte, yte, tau="huge")


def test_probe_head_sd_floor_zeroes_near_constant_features():
    # Feature 0 separates the classes; feature 1 barely varies (sd 1e-7 of feature 0's,
    # the all-MiniLM-L6-v2 case) and is perfectly aligned with the labels, so the
    # standardized probe leans on it and its raw weight is ~1/sd. With the floor it is
    # treated as constant: weight exactly 0, and the head still separates the classes.
    from taskrel.features.finetune import _probe_head

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 50)
    X = np.stack([y + 0.3 * rng.normal(size=100), 1.0 + 1e-7 * (y - 0.5),
                  rng.normal(size=100)], axis=1).astype(np.float64)
    enc = torch.nn.Identity().double()
    pre = lambda b: torch.as_tensor(b)  # noqa: E731
    W0, _, _ = _probe_head(enc, pre, X, y, 2, torch.device("cpu"), 64)
    W1, b1, _ = _probe_head(enc, pre, X, y, 2, torch.device("cpu"), 64, sd_floor=1e-3)
    assert abs(float(W0[1, 1])) > 1e5          # the unfloored head: weight ~ 1 / sd
    assert float(W1[0, 1]) == 0.0 and float(W1[1, 1]) == 0.0
    pred = (torch.as_tensor(X, dtype=torch.float32) @ W1.T + b1).argmax(1).numpy()
    assert (pred == y).mean() > 0.9


def _standardized_fit(X, y, c):
    """scikit-learn's L2 logistic regression on standardized features: the probe the
    LP-FT head folds back into raw-feature weights (the reference for the tests below)."""
    from sklearn.linear_model import LogisticRegression

    mu, sd = X.mean(0), X.std(0)
    sd[sd < 1e-12] = 1.0
    m = LogisticRegression(C=c, max_iter=1000).fit((X - mu) / sd, y)
    return lambda Z: m.predict_proba((Z - mu) / sd)


def test_probe_head_tuned_c_is_the_best_on_validation():
    """``c="tuned"`` picks, from LOGREG_C_GRID, the C whose probe (fit on the training
    rows) is most accurate on the validation rows, ties to the smaller C; the head is
    then that probe: its softmax equals scikit-learn's fit at that C."""
    from taskrel.features.finetune import _probe_head
    from taskrel.probe import LOGREG_C_GRID

    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 240)
    X = rng.normal(size=(240, 6)) + 0.8 * np.eye(3, 6)[y]
    tr, va = np.arange(160), np.arange(160, 240)
    enc = torch.nn.Identity().double()
    pre = lambda b: torch.as_tensor(b)  # noqa: E731
    W, b, c = _probe_head(enc, pre, X[tr], y[tr], 3, torch.device("cpu"), 64,
                          c="tuned", val=(X[va], y[va]))
    acc = {g: float(np.mean(_standardized_fit(X[tr], y[tr], g)(X[va]).argmax(1) == y[va]))
           for g in LOGREG_C_GRID}
    best = max(sorted(LOGREG_C_GRID), key=lambda g: (acc[g], -g))
    assert c == best
    P = torch.softmax(torch.as_tensor(X[va], dtype=torch.float32) @ W.T + b, 1).numpy()
    np.testing.assert_allclose(P, _standardized_fit(X[tr], y[tr], c)(X[va]), atol=1e-4)


def test_refit_with_zero_epochs_is_the_probe_on_all_rows(digits_images):
    """The refit model of a run whose best epoch is 0 is the probe head refitted on all
    training rows with the chosen C: its test predictions are scikit-learn's."""
    from taskrel.features.finetune import _refit

    xtr, ytr, xte, yte = digits_images
    enc = _cnn()
    cfg = {"head_lr_mult": 1.0, "weight_decay": 1e-4, "eval_batch_size": 256,
           "seed": 0, "bs": 64, "augment": None, "batchnorm": "frozen"}
    e, h = _refit(enc, _pre, xtr, ytr, 10, 1e-3, 0, cfg, 0.1, None, torch.device("cpu"))
    with torch.no_grad():
        F = enc(_pre(xtr)).double().numpy()
        Fte = enc(_pre(xte)).double().numpy()
        P = torch.softmax(h(e(_pre(xte))), 1).numpy()
    np.testing.assert_allclose(P, _standardized_fit(F, ytr, 0.1)(Fte), atol=1e-4)
    # The encoder is the module's copy, unchanged with no epoch.
    for a, bb in zip(enc.state_dict().values(), e.state_dict().values()):
        assert torch.equal(a, bb)


def test_finetune_selected_refit_records_both_models(digits_images):
    from taskrel.features.finetune import finetune_selected

    xtr, ytr, xte, yte = digits_images
    kw = dict(lrs=(1e-3,), search_epochs=1, max_epochs=2, patience=1, batch_size=64,
              device="cpu", probe_c="tuned")
    a = finetune_selected(_cnn(), _pre, xtr[:300], ytr[:300], xte, yte, refit=True, **kw)
    b = finetune_selected(_cnn(), _pre, xtr[:300], ytr[:300], xte, yte, refit=True, **kw)
    sel = finetune_selected(_cnn(), _pre, xtr[:300], ytr[:300], xte, yte, **kw)
    r = a.recipe
    assert r["refit_rows"] == 300 and r["probe_c_used"] in (1e-4, 1e-3, 1e-2, 0.1, 1.0,
                                                           10.0, 100.0)
    assert a.test_accuracy == b.test_accuracy  # seeded
    # The selected model is what refit=False measures; the refit one is another model.
    assert r["test_accuracy_selected"] == pytest.approx(sel.test_accuracy)
    assert "refit" not in sel.recipe and a.test_accuracy > 0.5
    # refit="probe" retrains only a probe that won on validation (best epoch 0); a
    # fine-tuned winner is measured as selected.
    # A rate too small to move anything keeps epoch 0: the probe refitted on all rows.
    tiny = {**kw, "lrs": (1e-12,)}
    p0 = finetune_selected(_cnn(), _pre, xtr[:300], ytr[:300], xte, yte, refit="probe",
                           **tiny)
    full = finetune_selected(_cnn(), _pre, xtr[:300], ytr[:300], xte, yte, refit=True,
                             **tiny)
    assert p0.recipe["best_epoch"] == 0 and p0.recipe["refitted"]
    assert p0.test_accuracy == pytest.approx(full.test_accuracy)
    p = finetune_selected(_cnn(), _pre, xtr[:300], ytr[:300], xte, yte, refit="probe",
                          **kw)
    assert p.recipe["refitted"] == (p.recipe["best_epoch"] == 0)
    if p.recipe["best_epoch"] > 0:
        assert p.test_accuracy == pytest.approx(sel.test_accuracy)
    for bad, match in (({"probe_c": 0}, "`probe_c`"), ({"probe_c": "auto"}, "`probe_c`"),
                       ({"refit": "yes"}, "`refit`")):
        with pytest.raises(TaskrelInputError, match=match):
            finetune_selected(_cnn(), _pre, xtr[:50], ytr[:50], xte, yte,
                              **{**kw, **bad})
