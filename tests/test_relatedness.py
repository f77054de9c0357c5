"""Properties of the engine on synthetic class clusters (hand-checkable cases)."""

import math

import numpy as np
import pytest

import taskrel
from conftest import blobs
from taskrel.exceptions import TaskrelInputError


def _run(p, **kw):
    kw.setdefault("device", "cpu")
    return taskrel.task_relatedness(
        p["Xr"], p["yr"], p["Xt"], p["yt"],
        reference_test_features=p["Xr_te"], reference_test_labels=p["yr_te"],
        target_test_features=p["Xt_te"], target_test_labels=p["yt_te"], **kw,
    )


def _identical(seed):
    X, y = blobs(60, 3, 6, seed=seed)
    Xte, yte = blobs(40, 3, 6, seed=seed + 1)
    return dict(Xr=X, yr=y, Xr_te=Xte, yr_te=yte, Xt=X, yt=y, Xt_te=Xte, yt_te=yte)


def test_bound_is_the_sum_of_its_terms(easy_pair):
    r = _run(easy_pair)
    np.testing.assert_allclose(
        r.bound,
        r.reweighted_reference_loss + r.label_mismatch
        + r.lipschitz * r.distribution_mismatch,
        rtol=1e-12,
    )
    np.testing.assert_allclose(
        r.bound_certified,
        r.reweighted_reference_loss + r.label_mismatch
        + r.lipschitz_certified * r.distribution_mismatch,
        rtol=1e-12,
    )
    # The certified constant is a global bound, so it dominates the sampled maximum.
    assert r.lipschitz_certified >= r.lipschitz - 1e-12
    assert float(r) == r.bound_certified >= r.bound


def test_reference_equals_target_gives_zero_mismatch(global_random_seed):
    p = _identical(global_random_seed)
    r = _run(p)
    assert r.distribution_mismatch < 1e-6
    assert r.label_mismatch == 0.0
    # With W ~ 0 the bound is the reference head's test loss (C = 1: same priors).
    np.testing.assert_allclose(r.bound, r.reference_loss, rtol=1e-5)
    np.testing.assert_allclose(r.C, np.ones(3), rtol=1e-12)
    assert r.matching == {0: [0], 1: [1], 2: [2]}


def test_permuted_class_ids_are_recovered_by_sparse_B(global_random_seed):
    p = _identical(global_random_seed)
    perm = np.array([2, 0, 1])  # reference class j is called 10 + perm[j] in the target
    p["yt"], p["yt_te"] = 10 + perm[p["yr"]], 10 + perm[p["yr_te"]]
    r = _run(p)
    expected_B = np.zeros((3, 3))
    expected_B[perm, np.arange(3)] = 1.0
    np.testing.assert_array_equal(r.B, expected_B)
    assert r.matching == {10: [1], 11: [2], 12: [0]}
    assert r.label_mismatch == 0.0
    assert r.distribution_mismatch < 1e-6
    assert r.transformed_accuracy == pytest.approx(r.reference_accuracy)


def test_invertible_linear_map_of_the_reference_is_recovered(global_random_seed):
    # Identifiable case: 8 classes with distinct means in 4 dimensions, so the class
    # means pin the affine map down. The class correspondence is given (B = I): the
    # matching is tested separately; here it is the feature map that must be found.
    rng = np.random.default_rng(global_random_seed)
    d, K = 4, 8
    means = 4 * rng.normal(size=(K, d))
    X, y = blobs(40, K, d, seed=global_random_seed, means=means)
    Xte, yte = blobs(30, K, d, seed=global_random_seed + 1, means=means)
    Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    A_true = Q @ np.diag(np.linspace(0.5, 2.0, d))
    b_true = rng.normal(size=d)
    p = dict(Xr=X, yr=y, Xr_te=Xte, yr_te=yte, Xt=X @ A_true.T + b_true, yt=y,
             Xt_te=Xte @ A_true.T + b_true, yt_te=yte)
    kw = dict(standardize=False, b_mode="fixed", B=np.eye(K), ridge=1e-3)
    r = _run(p, **kw)
    baseline = _run(p, **{**kw, "ridge": 1e8})  # A pinned at ~identity: b moves
    assert baseline.distribution_mismatch > 1.0
    assert r.distribution_mismatch < 1e-3 * baseline.distribution_mismatch
    np.testing.assert_allclose(r.A, A_true, atol=1e-3)
    np.testing.assert_allclose(r.b, b_true, atol=1e-3)


def test_deterministic_for_a_seed(easy_pair):
    a, b = _run(easy_pair, seed=3), _run(easy_pair, seed=3)
    assert a.bound == b.bound
    np.testing.assert_array_equal(a.A, b.A)


def test_paper_and_fast_recipes_agree_on_an_easy_case(global_random_seed):
    p = _identical(global_random_seed)
    fast = _run(p, tau=0.2)
    paper = _run(p, tau=0.2, recipe="paper", max_iter=300)
    # Same task on both sides: both find W ~ 0 and bounds equal to the head's loss.
    assert paper.distribution_mismatch < 0.05 * math.sqrt(6)
    np.testing.assert_allclose(paper.bound, fast.bound, rtol=0.1)
    assert paper.settings["recipe"] == "paper"


def test_learned_B_is_column_stochastic_and_prior_matched(easy_pair):
    r = _run(easy_pair, b_mode="learned", max_iter=300)
    np.testing.assert_allclose(r.B.sum(0), 1.0, rtol=1e-10)
    np.testing.assert_allclose(r.D.sum(), 1.0, rtol=1e-10)
    assert r.label_mismatch >= 0.0
    assert r.prior_mismatch < 0.1
    assert np.isfinite(r.bound)


def test_fixed_B_is_used_as_given(easy_pair):
    B = np.eye(3)[[1, 2, 0]]  # a deliberately wrong permutation
    wrong = _run(easy_pair, b_mode="fixed", B=B)
    right = _run(easy_pair)
    np.testing.assert_array_equal(wrong.B, B)
    assert wrong.bound > right.bound


def test_uniform_class_weights_equal_prior_weights_on_balanced_target(easy_pair):
    a = _run(easy_pair, class_weights="prior")
    b = _run(easy_pair, class_weights="uniform")
    np.testing.assert_allclose(a.distribution_mismatch, b.distribution_mismatch, rtol=1e-9)


@pytest.mark.parametrize("source", ["classifier", "kmeans"])
def test_without_target_labels(easy_pair, source):
    p = easy_pair
    r = taskrel.task_relatedness(
        p["Xr"], p["yr"], p["Xt"], None,
        reference_test_features=p["Xr_te"], reference_test_labels=p["yr_te"],
        target_test_features=p["Xt_te"], target_test_labels=p["yt_te"],
        pseudo_labels=source, device="cpu",
    )
    assert r.label_source == source
    assert r.pseudo_label_accuracy > 0.95
    assert r.transformed_accuracy is None  # no true labels were used to fit
    labelled = _run(p)
    np.testing.assert_allclose(r.bound, labelled.bound, rtol=0.15)


def test_reference_head_can_be_reused(easy_pair):
    first = _run(easy_pair)
    again = _run(easy_pair, reference_head=first.reference_head)
    np.testing.assert_allclose(again.bound, first.bound, rtol=1e-9)
    assert again.settings["tau_rule"] == "reference_head"


def test_to_dict_is_json_ready(easy_pair):
    import json

    d = _run(easy_pair).to_dict()
    for key in ("bound", "reweighted_reference_loss", "label_mismatch",
                "distribution_mismatch", "lipschitz", "transformed_accuracy", "seconds"):
        assert key in d
    assert "A" not in d
    json.dumps(d)


def test_w1_estimators_for_large_test_sets_agree_with_exact(global_random_seed):
    """The minibatch and Sinkhorn evaluations of W1 land near the exact value (same map).

    Reference: the exact per-class ``ot.emd`` of the default run. Minibatch OT is biased
    upward and debiased Sinkhorn slightly downward (docs/scale.md), so the bands are
    one-sided-ish and loose; the standard error is reported for minibatch.
    """
    s = global_random_seed
    Xr, yr = blobs(300, 3, 6, seed=s)
    Xr_te, yr_te = blobs(300, 3, 6, seed=s + 1)
    Xt, yt = blobs(300, 3, 6, seed=s + 2, sep=3.0)
    Xt_te, yt_te = blobs(300, 3, 6, seed=s + 3, sep=3.0)
    p = dict(Xr=Xr, yr=yr, Xr_te=Xr_te, yr_te=yr_te, Xt=Xt, yt=yt, Xt_te=Xt_te,
             yt_te=yt_te)
    exact = _run(p, seed=s, ridge=1.0)
    mb = _run(p, seed=s, ridge=1.0, w1_method="minibatch")
    sk = _run(p, seed=s, ridge=1.0, w1_method="sinkhorn")
    w = exact.distribution_mismatch
    assert exact.settings["w1"] == {"method": "exact", "stderr": 0.0}
    np.testing.assert_allclose(mb.A, exact.A)  # same fit; only the evaluation differs
    assert w * 0.98 <= mb.distribution_mismatch <= w * 1.6
    assert mb.settings["w1"]["stderr"] > 0
    assert abs(sk.distribution_mismatch - w) <= 0.05 * w
    assert sk.bound == pytest.approx(
        sk.reweighted_reference_loss + sk.label_mismatch
        + sk.lipschitz * sk.distribution_mismatch)


def test_w1_method_is_validated():
    X, y = blobs(20, 2, 3)
    with pytest.raises(TaskrelInputError, match="w1_method"):
        taskrel.task_relatedness(X, y, X, y, w1_method="fast", device="cpu")


def test_row_budget_caps_each_class_and_reads_memory_maps(tmp_path):
    """max_rows_per_class subsamples every split per class before any copy; a
    memory-mapped reference gives the same result as the in-memory array."""
    Xr, yr = blobs(300, 3, 5, seed=3)
    Xt, yt = blobs(200, 3, 5, seed=4)
    path = tmp_path / "ref.npy"
    np.save(path, Xr)
    Xr_mm = np.load(path, mmap_mode="r")
    kw = dict(device="cpu", seed=0, max_rows_per_class=50, ridge=1.0)
    a = taskrel.task_relatedness(Xr, yr, Xt, yt, **kw)
    b = taskrel.task_relatedness(Xr_mm, yr, Xt, yt, **kw)
    # 50 per class survive the cap; the seeded 80/20 split then takes 40 to train.
    assert a.settings["n_reference_train"] == 3 * 40
    assert a.settings["n_target_train"] == 3 * 40
    assert a.bound == b.bound
    full = taskrel.task_relatedness(Xr, yr, Xt, yt, device="cpu", seed=0, ridge=1.0)
    assert full.settings["n_reference_train"] == 3 * 240


def test_row_budget_is_validated():
    X, y = blobs(20, 2, 3)
    with pytest.raises(TaskrelInputError, match="max_rows_per_class"):
        taskrel.task_relatedness(X, y, X, y, max_rows_per_class=0, device="cpu")


def test_split_task_keeps_every_class_of_two_or_more_rows_on_both_sides():
    from taskrel.relatedness import split_task

    # 40 classes: 4 large ones and 36 of 2-3 rows (like Reuters R52's tail). A 20%
    # stratified split cannot give every small class a test row on its own.
    sizes = [50] * 4 + [2, 3] * 18
    y = np.repeat(np.arange(len(sizes)), sizes)
    X = np.zeros((y.size, 2))
    for seed in range(3):
        tr, te = split_task(X, y, seed=seed)
        assert np.intersect1d(tr, te).size == 0 and tr.size + te.size == y.size
        for c, n in enumerate(sizes):
            if n >= 2:
                assert np.any(y[tr] == c) and np.any(y[te] == c), (seed, c)
        # A large class keeps about a fifth of its rows on the test side.
        assert 7 <= np.sum(y[te] == 0) <= 13


def test_more_target_than_reference_classes_with_learned_B(global_random_seed):
    # Reference: 3 classes. Target: 5 classes, each a copy of one reference class
    # (target 3 and 4 duplicate reference classes 0 and 1). The start of the learned B
    # must give every target class mass, or no reference rows could be moved to it.
    s = global_random_seed
    Xr, yr = blobs(60, 3, 6, seed=s)
    Xr_te, yr_te = blobs(40, 3, 6, seed=s + 1)
    Xt0, yt0 = blobs(40, 3, 6, seed=s + 2)
    Xt = np.vstack([Xt0, Xt0[yt0 == 0], Xt0[yt0 == 1]])
    yt = np.concatenate([yt0, np.full(40, 3), np.full(40, 4)])
    r = taskrel.task_relatedness(Xr, yr, Xt, yt, reference_test_features=Xr_te,
                                 reference_test_labels=yr_te, b_mode="learned",
                                 device="cpu", seed=s)
    assert r.B.shape == (5, 3)
    np.testing.assert_allclose(r.B.sum(0), 1.0, rtol=1e-8)
    assert np.isfinite(r.bound) and r.label_mismatch > 0.1  # a split class costs entropy


def test_sparse_B_start_with_more_target_classes_serves_every_class():
    from taskrel.relatedness.matching import matched_label_map
    from taskrel.relatedness.matching import sparse_B as _sparse_B

    # score[k, j]: how well reference class j explains target class k (hand-made).
    score = np.array([[0.0, -5, -5], [-5, 0.0, -5], [-5, -5, 0.0], [-1, -6, -6],
                      [-6, -6, -2]])
    B, sigma = _sparse_B(score)
    # Classes 0-2 are matched one to one; 3 joins reference 0 and 4 joins reference 2.
    assert sigma.tolist() == [0, 1, 2, 0, 2]
    # The start splits a reference class's mass over its target classes in proportion
    # to their priors, so B D = pi_T holds exactly (hand derivation: D_0 = 0.1 + 0.3,
    # D_2 = 0.2 + 0.1, B[0, 0] = 0.1 / 0.4, B[3, 0] = 0.3 / 0.4, ...).
    pi_T = np.array([0.1, 0.3, 0.2, 0.3, 0.1])
    B, D = matched_label_map(score, pi_T)
    np.testing.assert_allclose(D, [0.4, 0.3, 0.3])
    np.testing.assert_allclose(B, [[0.25, 0, 0], [0, 1, 0], [0, 0, 2 / 3], [0.75, 0, 0],
                                   [0, 0, 1 / 3]])
    np.testing.assert_allclose(B @ D, pi_T, atol=1e-15)
    np.testing.assert_allclose(B.sum(0), 1.0)


def test_label_free_run_whose_pseudo_labels_collapse_says_why():
    # All 20 target rows are one reference row: whatever the alignment, the
    # classifier's pseudo-labels give one class although two were asked for. The
    # error names the rows, not the argument already given.
    Xr, yr = blobs(60, 3, 6, seed=0)
    Xt = np.repeat(Xr[yr == 0][:1], 20, axis=0)
    with pytest.raises(TaskrelInputError, match="fewer than 2 target classes .*more target"):
        taskrel.task_relatedness(Xr, yr, Xt, None, n_target_classes=2, device="cpu")


def test_reference_classifier_near_chance_is_flagged(easy_pair):
    from taskrel.exceptions import AssumptionWarning

    # Features independent of the reference labels: the reference classifier's test
    # loss is about log 3, so the bound says little about the encoder.
    rng = np.random.default_rng(0)
    Xr, Xr_te = rng.normal(size=(180, 6)), rng.normal(size=(120, 6))
    yr, yr_te = rng.integers(0, 3, 180), rng.integers(0, 3, 120)
    with pytest.warns(AssumptionWarning, match="near chance"):
        r = taskrel.task_relatedness(Xr, yr, easy_pair["Xt"], easy_pair["yt"],
                                     reference_test_features=Xr_te,
                                     reference_test_labels=yr_te, device="cpu")
    assert r.settings["reference_near_chance"] is True
    assert r.reference_loss > 0.9 * math.log(3)
    import warnings

    # An informative reference (well-separated blobs) is not flagged.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ok = _run(easy_pair)
    assert ok.settings["reference_near_chance"] is False
    assert not [w for w in caught if "near chance" in str(w.message)]
