"""Each stage of the engine on its own, on real data (scikit-learn's digits; a small
Fashion-MNIST -> MNIST-5k pair), and the estimator against the one-call function."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from golden.golden import digits_pair, fmnist_mnist_pair

import taskrel
from taskrel.exceptions import AssumptionWarning, TaskrelInputError
from taskrel.heads import Standardizer
from taskrel.relatedness import (
    SOLVERS,
    RelatednessConfig,
    TaskRelatedness,
    auto_tau,
)
from taskrel.relatedness.assumptions import check_assumptions
from taskrel.relatedness.bound import bound_terms, evaluate_held_out, lipschitz
from taskrel.relatedness.labels import pseudo_label, target_labels
from taskrel.relatedness.maps import FitProblem
from taskrel.relatedness.matching import initial_label_map, matched_B
from taskrel.relatedness.reference import class_prior, fit_reference
from taskrel.relatedness.splits import (
    cap_rows,
    prepare_reference,
    prepare_target,
)


@pytest.fixture(scope="module")
def digits():
    """Reference digits 0-4 (500 rows), target digits 5-9 (400 rows), raw pixels."""
    return digits_pair()


@pytest.fixture(scope="module")
def fm_pair():
    return fmnist_mnist_pair()


def _cfg(**kw):
    kw.setdefault("device", "cpu")
    return RelatednessConfig(**kw)


def _prepared(data, cfg, labelled=True):
    cap = np.random.default_rng([cfg.seed, 1])
    ref, n_cls = prepare_reference(data["Xr"], data["yr"], None, None, cfg, cap)
    tgt = prepare_target(data["Xt"], data["yt"] if labelled else None, None, None, cfg,
                         cap, n_cls, ref)
    return ref, tgt


def _target_coords(tgt):
    st = Standardizer.fit(tgt.X)
    return st.transform(tgt.X), st.transform(tgt.X_test)


# ---- stage 1: splits ------------------------------------------------------------------

def test_prepare_reference_splits_stratified_and_encodes(digits):
    cfg = _cfg()
    ref, n_cls = prepare_reference(digits["Xr"], digits["yr"] + 10, None, None, cfg,
                                   np.random.default_rng(0))
    assert n_cls == 5 and ref.classes.tolist() == [10, 11, 12, 13, 14]
    assert ref.X.shape[0] + ref.X_test.shape[0] == 500
    assert set(np.unique(ref.y)) == set(np.unique(ref.y_test)) == set(range(5))
    # the seeded 80/20 split, per class: round(0.2 n_c) test rows of a class of n_c
    n_c = np.bincount(ref.y, minlength=5) + np.bincount(ref.y_test, minlength=5)
    assert np.bincount(ref.y_test).tolist() == np.floor(0.2 * n_c + 0.5).astype(int).tolist()


def test_cap_rows_caps_each_class_and_keeps_order(digits):
    X, y = digits["Xr"], digits["yr"]
    Xc, yc, k = cap_rows(X, y, 30, np.random.default_rng(0))
    assert k == 5 and np.bincount(yc).tolist() == [30] * 5
    # the kept rows are rows of X, in their original order
    idx = [int(np.flatnonzero((X == row).all(1))[0]) for row in Xc]
    assert idx == sorted(idx)
    assert cap_rows(X, y, None, np.random.default_rng(0))[0] is X


def test_bad_label_map_is_reported_before_the_head_is_trained(digits, monkeypatch):
    import taskrel.relatedness.reference as R

    def no_training(*a, **k):
        raise AssertionError("the head was trained before the arguments were checked")

    monkeypatch.setattr(R, "train_linear_head", no_training)
    with pytest.raises(TaskrelInputError, match=r"`B` must have shape \(K_T, K_R\) = \(5, 5\)"):
        taskrel.task_relatedness(digits["Xr"], digits["yr"], digits["Xt"], digits["yt"],
                                 b_mode="fixed", B=np.full((4, 5), 0.25), device="cpu")
    with pytest.raises(TaskrelInputError, match="`target_test_labels` needs"):
        taskrel.task_relatedness(digits["Xr"], digits["yr"], digits["Xt"], digits["yt"],
                                 target_test_labels=digits["yt"], device="cpu")
    with pytest.raises(TaskrelInputError, match="`n_target_classes` must be in"):
        taskrel.task_relatedness(digits["Xr"], digits["yr"], digits["Xt"],
                                 n_target_classes=9, device="cpu")
    with pytest.raises(TaskrelInputError, match="`tau`"):
        taskrel.task_relatedness(digits["Xr"], digits["yr"], digits["Xt"], digits["yt"],
                                 tau="huge", device="cpu")


def test_config_checks_every_field_and_names_it():
    for kw, name in [({"recipe": "slow"}, "recipe"), ({"b_mode": "dense"}, "b_mode"),
                     ({"tol": -1}, "tol"), ({"ridge": "none"}, "ridge"),
                     ({"seed": -1}, "seed"), ({"max_per_class": 1}, "max_per_class"),
                     ({"max_iter": 0}, "max_iter"), ({"w1_method": "x"}, "w1_method"),
                     ({"b_mode": "fixed"}, "B"), ({"tau": 0}, "tau"),
                     ({"n_target_classes": 1.5}, "n_target_classes")]:
        with pytest.raises(TaskrelInputError, match=f"`{name}`"):
            _cfg(**kw)
    assert _cfg(ridge=0.5).ridges == (0.5,) and _cfg().ridges == (100.0, 10.0, 1.0, 0.1)


# ---- stage 2: reference head ------------------------------------------------------------

def test_reference_head_separates_digits_and_uses_the_auto_tau(digits):
    cfg = _cfg()
    ref, _ = _prepared(digits, cfg)
    fit = fit_reference(ref, cfg)
    acc = np.mean(fit.head.predict_proba(fit.Z_test).argmax(1) == ref.y_test)
    assert acc > 0.9  # pixels of digits 0-4 are close to linearly separable
    assert fit.tau_rule == "auto" and fit.tau == auto_tau(fit.Z, ref.y)
    np.testing.assert_allclose(fit.Z.mean(0), 0.0, atol=1e-10)
    np.testing.assert_allclose(fit.prior.sum(), 1.0)
    # a caller's head is adopted as given: no training, its own standardizer
    again = fit_reference(ref, cfg, fit.head)
    assert again.head is fit.head and again.tau_rule == "reference_head"
    np.testing.assert_array_equal(again.Z, fit.Z)


# ---- stage 3: target labels ---------------------------------------------------------------

def test_pseudo_labels_recover_digit_classes_without_labels(digits):
    """Digits 0-4 as both tasks (new samples as the target): the label-free pipeline
    must find the classes (matched accuracy) without seeing a target label."""
    cfg = _cfg()
    rng = np.random.default_rng(3)
    same = dict(Xr=digits["Xr"][:250], yr=digits["yr"][:250],
                Xt=digits["Xr"][250:], yt=digits["yr"][250:])
    ref, tgt = _prepared(same, cfg)
    fit = fit_reference(ref, cfg)
    Zt, Zt_te = _target_coords(tgt)
    true_te = tgt.y_test
    lab = pseudo_label(fit, Zt, Zt_te, true_te, cfg, rng)
    assert lab.source == "classifier" and lab.n_classes == 5
    assert lab.pseudo_accuracy > 0.8
    given = target_labels(fit, Zt, Zt_te, tgt.y, tgt.y_test, tgt.classes, None, cfg, rng)
    assert given.source == "true" and given.y_fit is tgt.y


# ---- stage 4: label map and prior --------------------------------------------------------

def test_matching_recovers_permuted_digit_classes(digits):
    cfg = _cfg()
    perm = np.array([3, 0, 4, 1, 2])
    same = dict(Xr=digits["Xr"][:250], yr=digits["yr"][:250],
                Xt=digits["Xr"][250:], yt=perm[digits["yr"][250:]])
    ref, tgt = _prepared(same, cfg)
    fit = fit_reference(ref, cfg)
    Zt, _ = _target_coords(tgt)
    pi_T = class_prior(tgt.y, 5)
    B, D = matched_B(fit.head, Zt, tgt.y, 5, pi_T)
    expected = np.zeros((5, 5))
    expected[perm, np.arange(5)] = 1.0
    np.testing.assert_array_equal(B, expected)
    np.testing.assert_allclose(D, pi_T[perm], atol=1e-15)  # D[sigma(k)] = pi_T(k)
    np.testing.assert_allclose(B @ D, pi_T, atol=1e-12)


# ---- stages 5-7: solvers, bound, assumptions ------------------------------------------------

@pytest.mark.parametrize("recipe", sorted(SOLVERS))
def test_every_solver_returns_a_valid_feature_map(recipe, fm_pair):
    cfg = _cfg(recipe=recipe, max_iter=4 if recipe == "paper" else None)
    ref, tgt = _prepared(fm_pair, cfg)
    fit = fit_reference(ref, cfg)
    Zt, Zt_te = _target_coords(tgt)
    rng = np.random.default_rng(0)
    lab = target_labels(fit, Zt, Zt_te, tgt.y, tgt.y_test, tgt.classes, None, cfg, rng)
    pi_T = class_prior(lab.y_fit, lab.n_classes)
    p = FitProblem(fit.head, fit.Z, ref.y, Zt, lab.y_fit, fit.prior, pi_T, pi_T, cfg, rng)
    B0, D0 = initial_label_map(fit, Zt, lab, pi_T, cfg)
    fmap = SOLVERS[recipe](p, B0, D0)
    np.testing.assert_allclose(fmap.B.sum(0), 1.0, atol=1e-9)
    np.testing.assert_allclose(fmap.D.sum(), 1.0, atol=1e-9)
    assert fmap.A.shape == (32, 32) and math.isfinite(fmap.score)
    if recipe in ("fast", "batched"):
        np.testing.assert_allclose(fmap.A @ fmap.A_inv, np.eye(32), atol=1e-8)
        assert "ridge_selected" in fmap.record
    else:
        assert fmap.record["paper_loop_steps"] == 4 and fmap.iterations == 4
    held = evaluate_held_out(fit.head, fmap, fit.Z_test, ref.y_test, Zt_te, lab.y_eval,
                             pi_T, cfg, rng)
    terms = bound_terms(fit.head, fmap, held, fit.Z_test, Zt_te)
    assert terms.bound == pytest.approx(held.reweighted_reference_loss
                                        + terms.label_mismatch
                                        + terms.lipschitz * held.distribution_mismatch,
                                        rel=1e-12)
    assert terms.lipschitz_certified >= terms.lipschitz - 1e-12
    emp, cert, _ = lipschitz(fit.head, fmap.A_inv, fmap.B, Zt_te)
    assert cert >= emp - 1e-12


def test_a_collapsed_reference_head_is_flagged_near_chance(digits):
    """Shuffled reference labels leave the head at chance: the engine must say so
    (an encoder like that would otherwise win on a vacuous bound)."""
    rng = np.random.default_rng(0)
    shuffled = dict(digits, yr=rng.permutation(digits["yr"]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = taskrel.task_relatedness(shuffled["Xr"], shuffled["yr"], digits["Xt"],
                                     digits["yt"], device="cpu")
    assert r.settings["reference_near_chance"] is True
    assert any(issubclass(w.category, AssumptionWarning) and "near chance" in str(w.message)
               for w in caught)
    near, cond = check_assumptions(tau=1.0, lipschitz_reference_coords=0.5,
                                   reference_loss=0.1, reference_accuracy=0.99,
                                   n_reference=5, A=np.eye(3))
    assert (near, cond) == (False, 1.0)


# ---- the estimator ------------------------------------------------------------------------

@pytest.mark.parametrize("labelled", [True, False])
def test_estimator_equals_the_one_call_function(digits, labelled):
    yt = digits["yt"] if labelled else None
    one = taskrel.task_relatedness(digits["Xr"], digits["yr"], digits["Xt"], yt, seed=3,
                                   device="cpu", max_rows_per_class=60)
    est = TaskRelatedness(seed=3, device="cpu", max_rows_per_class=60)
    two = est.fit(digits["Xr"], digits["yr"]).relate(digits["Xt"], yt)
    a, b = one.to_dict(arrays=True), two.to_dict(arrays=True)
    for d in (a, b):
        d.pop("seconds")
        d["settings"].pop("head")
        d["settings"].get("w1", {}).pop("seconds", None)
    assert a == b
    np.testing.assert_array_equal(one.reference_head.weight, two.reference_head.weight)


def test_estimator_trains_one_head_for_many_targets(digits, monkeypatch):
    import taskrel.relatedness.reference as R

    calls = []
    real = R.train_linear_head
    monkeypatch.setattr(R, "train_linear_head", lambda *a, **k: calls.append(1) or real(*a, **k))
    est = TaskRelatedness(device="cpu").fit(digits["Xr"], digits["yr"])
    r1 = est.relate(digits["Xt"], digits["yt"])
    r2 = est.relate(digits["Xr"][::-1], digits["yr"][::-1])
    assert len(calls) == 1 and r1.reference_head is r2.reference_head
    assert r2.bound < r1.bound  # the reference's own rows are more related than 5-9
    # transform applies the last relate's (A, b) to standardized reference features
    Z = est.standardizer_.transform(digits["Xr"][:7])
    np.testing.assert_allclose(est.transform(digits["Xr"][:7]), Z @ r2.A.T + r2.b)
    with pytest.raises(TaskrelInputError, match="`X` must have 64 features"):
        est.transform(np.ones((2, 3)))
    with pytest.raises(TaskrelInputError, match="call `fit`"):
        TaskRelatedness().relate(digits["Xt"])
