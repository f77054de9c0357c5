"""What must not change: the bound, its terms and the matching under renumbered
classes and reordered rows (metamorphic tests, on hand-made, hypothesis-generated and
real data), and the class prior D that follows the matching."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import taskrel
from taskrel.exceptions import AssumptionWarning
from taskrel.relatedness.matching import matched_D, matched_label_map, prior_matched_D

#: Terms compared across renumberings. Relabelling permutes the rows of every matrix
#: the fit multiplies, so sums run in another order: equal to rounding, not bit-exact.
TERMS = ("bound", "bound_certified", "reweighted_reference_loss", "label_mismatch",
         "distribution_mismatch", "lipschitz", "lipschitz_certified",
         "transformed_loss", "transformed_accuracy", "reference_loss")
RTOL = 1e-6


def _blobs(means, n, seed):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(len(means)), n)
    return means[y] + rng.normal(size=(y.size, means.shape[1])), y


def _relate(Xr, yr, Xr_te, yr_te, Xt, yt, Xt_te, yt_te, **kw):
    return taskrel.task_relatedness(
        Xr, yr, Xt, yt, reference_test_features=Xr_te, reference_test_labels=yr_te,
        target_test_features=Xt_te, target_test_labels=yt_te, device="cpu", **kw)


def _assert_same_terms(a, b, rtol=RTOL):
    for k in TERMS:
        va, vb = getattr(a, k), getattr(b, k)
        if va is None or vb is None:
            assert va is vb, k
        else:
            np.testing.assert_allclose(vb, va, rtol=rtol, atol=1e-9, err_msg=k)


@pytest.fixture(scope="module")
def subset_pair():
    """The issue's reproduction: a 4-class reference; target class 0 is a copy of
    reference class 3 and target class 1 of reference class 1 (fresh samples)."""
    rng = np.random.default_rng(0)
    means = 3 * rng.normal(size=(4, 6))
    Xr, yr = _blobs(means, 60, 1)
    Xr_te, yr_te = _blobs(means, 40, 2)

    def target(seed, n):
        X, y = _blobs(means, n, seed)
        keep = (y == 3) | (y == 1)
        return X[keep], np.where(y[keep] == 3, 0, 1)

    Xt, yt = target(3, 60)
    Xt_te, yt_te = target(4, 40)
    return Xr, yr, Xr_te, yr_te, Xt, yt, Xt_te, yt_te


def test_D_follows_the_matching_with_fewer_target_classes(subset_pair):
    # On main before the fix, D was [0.5, 0.5, 0, 0] (NNLS put the mass on the lowest
    # column index of target class 0's row) although class 0 is matched to class 3.
    r = _relate(*subset_pair)
    assert r.matching == {0: [3], 1: [1]}
    np.testing.assert_allclose(r.D, [0.0, 0.5, 0.0, 0.5], atol=1e-15)
    assert r.settings["prior_matching"]["holds"]


@pytest.mark.parametrize("perm", [[3, 2, 1, 0], [1, 3, 0, 2], [2, 0, 3, 1]])
def test_renumbered_reference_classes_give_the_same_bound(subset_pair, perm):
    # Before the fix, renumbering the reference classes of this pair moved the bound
    # from 1.49 to 1.73 or 1.78 (D on the wrong reference class).
    Xr, yr, Xr_te, yr_te, Xt, yt, Xt_te, yt_te = subset_pair
    perm = np.asarray(perm)
    base = _relate(*subset_pair)
    r = _relate(Xr, perm[yr], Xr_te, perm[yr_te], Xt, yt, Xt_te, yt_te)
    _assert_same_terms(base, r)
    # The matching and D permute with the classes.
    assert r.matching == {k: [int(perm[j]) for j in v] for k, v in base.matching.items()}
    np.testing.assert_allclose(r.D[perm], base.D, atol=1e-12)


def test_renamed_target_classes_give_the_same_bound(subset_pair):
    Xr, yr, Xr_te, yr_te, Xt, yt, Xt_te, yt_te = subset_pair
    names = np.array([17, 5])  # swaps the order too: 17 -> index 1, 5 -> index 0
    base = _relate(*subset_pair)
    r = _relate(Xr, yr, Xr_te, yr_te, Xt, names[yt], Xt_te, names[yt_te])
    _assert_same_terms(base, r)
    assert r.matching == {17: base.matching[0], 5: base.matching[1]}


def test_shuffled_rows_give_the_same_bound(subset_pair):
    # The stated sampling: every class is under the per-class caps and one ridge is
    # given (ridge="auto" holds out a seeded fifth of the rows, keyed by row index, so
    # shuffled rows hold out other rows). Nothing else depends on the row order: the
    # result is the same up to summation order.
    Xr, yr, Xr_te, yr_te, Xt, yt, Xt_te, yt_te = subset_pair
    rng = np.random.default_rng(5)
    pr, pt = rng.permutation(yr.size), rng.permutation(yt.size)
    pr_te, pt_te = rng.permutation(yr_te.size), rng.permutation(yt_te.size)
    base = _relate(*subset_pair, ridge=1.0)
    r = _relate(Xr[pr], yr[pr], Xr_te[pr_te], yr_te[pr_te], Xt[pt], yt[pt],
                Xt_te[pt_te], yt_te[pt_te], ridge=1.0)
    _assert_same_terms(base, r)


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(k_r=st.integers(2, 5), data=st.data(), seed=st.integers(0, 2**16))
def test_renumbering_invariance_on_generated_problems(k_r, data, seed):
    """Any reference size, any target that is a renumbered subset of its classes, any
    renumbering of either side: same bound and terms, matching permuted."""
    k_t = data.draw(st.integers(2, k_r), label="k_t")
    rng = np.random.default_rng(seed)
    d = int(rng.integers(3, 7))
    means = 2.5 * rng.normal(size=(k_r, d))
    Xr, yr = _blobs(means, 30, seed + 1)
    Xr_te, yr_te = _blobs(means, 20, seed + 2)
    chosen = rng.choice(k_r, size=k_t, replace=False)
    Xa, ya = _blobs(means[chosen], 30, seed + 3)
    Xa_te, ya_te = _blobs(means[chosen], 20, seed + 4)
    shift = rng.normal(scale=0.3, size=d)  # a target that is not a copy
    Xa, Xa_te = Xa + shift, Xa_te + shift
    p_r = np.asarray(data.draw(st.permutations(range(k_r)), label="reference renumbering"))
    p_t = np.asarray(data.draw(st.permutations(range(k_t)), label="target renumbering"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AssumptionWarning)
        base = _relate(Xr, yr, Xr_te, yr_te, Xa, ya, Xa_te, ya_te)
        r = _relate(Xr, p_r[yr], Xr_te, p_r[yr_te], Xa, 10 + p_t[ya], Xa_te,
                    10 + p_t[ya_te])
    _assert_same_terms(base, r, rtol=1e-5)
    want = {10 + int(p_t[k]): sorted(int(p_r[j]) for j in v)
            for k, v in base.matching.items()}
    assert {k: sorted(v) for k, v in r.matching.items()} == want
    assert r.settings["prior_matching"]["holds"]


def test_renumbering_invariance_on_real_digits():
    """Real data: 8x8 digit images (scikit-learn), reference the even digits of one
    half, target three of them (renumbered) from the other half."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = X + np.random.default_rng(0).normal(scale=0.05, size=X.shape)  # no flat pixel
    ref_cls = np.array([0, 2, 4, 6, 8])
    half = np.arange(y.size) % 2 == 0
    r_rows, t_rows = np.flatnonzero(half & np.isin(y, ref_cls)), np.flatnonzero(
        ~half & np.isin(y, [4, 8, 2]))
    Xr, yr = X[r_rows], y[r_rows]
    Xt, yt = X[t_rows], y[t_rows]
    split_r, split_t = np.arange(yr.size) % 4 == 0, np.arange(yt.size) % 4 == 0
    args = (Xr[~split_r], yr[~split_r], Xr[split_r], yr[split_r],
            Xt[~split_t], yt[~split_t], Xt[split_t], yt[split_t])
    base = _relate(*args)
    assert base.matching == {2: [2], 4: [4], 8: [8]}
    ren = {0: 3, 2: 0, 4: 4, 6: 1, 8: 2}  # reference digits renumbered
    f = np.vectorize(ren.get)
    r = _relate(args[0], f(args[1]), args[2], f(args[3]), *args[4:])
    _assert_same_terms(base, r)
    assert r.matching == {2: [0], 4: [4], 8: [2]}


def test_label_free_run_is_invariant_to_reference_renumbering(subset_pair):
    Xr, yr, Xr_te, yr_te, Xt, yt, Xt_te, yt_te = subset_pair
    perm = np.array([2, 0, 3, 1])
    kw = dict(n_target_classes=2)
    base = _relate(Xr, yr, Xr_te, yr_te, Xt, None, Xt_te, None, **kw)
    r = _relate(Xr, perm[yr], Xr_te, perm[yr_te], Xt, None, Xt_te, None, **kw)
    _assert_same_terms(base, r)
    np.testing.assert_array_equal(np.sort(r.target_classes),
                                  np.sort(perm[base.target_classes.astype(int)]))


# ---- the class prior D and the label map B -----------------------------------------

def test_matched_D_puts_each_target_prior_on_its_matched_class():
    # Hand derivation: sigma = (3, 1) sends pi_T(0) = 0.25 to class 3, 0.75 to class 1.
    np.testing.assert_allclose(matched_D(np.array([3, 1]), np.array([0.25, 0.75]), 4),
                               [0.0, 0.75, 0.0, 0.25])


def test_sparse_matching_meets_prior_matching_exactly():
    rng = np.random.default_rng(0)
    for k_t, k_r in [(2, 4), (3, 3), (5, 3)]:
        score = rng.normal(size=(k_t, k_r))
        pi_T = rng.dirichlet(np.ones(k_t))
        B, D = matched_label_map(score, pi_T)
        np.testing.assert_allclose(B.sum(0), 1.0, atol=1e-12)
        np.testing.assert_allclose(B @ D, pi_T, atol=1e-12)
        assert D.min() >= 0 and abs(D.sum() - 1) < 1e-12


def test_fixed_B_prior_is_equivariant_under_column_permutations():
    # Two reference classes sent to one target class: NNLS alone put all the mass on the
    # lower column index; the ridge's minimum-norm D splits it equally, whatever the order.
    B = np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    pi_T = np.array([0.6, 0.4])
    D = prior_matched_D(B, pi_T)
    np.testing.assert_allclose(D, [0.3, 0.3, 0.4], atol=1e-6)
    perm = np.array([2, 0, 1])
    np.testing.assert_allclose(prior_matched_D(B[:, perm], pi_T), D[perm], atol=1e-9)


def test_learned_label_map_reports_its_prior_matching():
    # More target than reference classes: the learned B (LearnedAll) only penalizes
    # ||pi_T - B D||^2, so the result must say how far it ended from B D = pi_T.
    rng = np.random.default_rng(0)
    means = 3 * rng.normal(size=(3, 5))
    Xr, yr = _blobs(means, 40, 1)
    Xr_te, yr_te = _blobs(means, 30, 2)
    tmeans = np.vstack([means, means[:2] + 1.5])
    Xt, yt = _blobs(tmeans, 30, 3)
    Xt_te, yt_te = _blobs(tmeans, 20, 4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = _relate(Xr, yr, Xr_te, yr_te, Xt, yt, Xt_te, yt_te, b_mode="learned",
                    max_iter=60)
    rec = r.settings["prior_matching"]
    gap = float(np.abs(r.B @ r.D - np.bincount(yt) / yt.size).sum())
    np.testing.assert_allclose(rec["l1"], gap, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(r.prior_mismatch, gap, rtol=1e-9, atol=1e-15)
    said = [str(w.message) for w in caught if issubclass(w.category, AssumptionWarning)]
    assert rec["holds"] == (not any("prior matching" in m for m in said))


def test_prior_matching_violation_is_warned(subset_pair):
    # A fixed B that cannot meet B D = pi_T (both reference classes to target class 0
    # and none to class 1 is impossible as a column-stochastic map, so use a soft one
    # whose columns both favour class 0).
    Xr, yr, Xr_te, yr_te, Xt, yt, Xt_te, yt_te = subset_pair
    B = np.array([[0.9, 0.9, 0.9, 0.9], [0.1, 0.1, 0.1, 0.1]])
    with pytest.warns(AssumptionWarning, match="prior matching B D = pi_T is violated"):
        r = _relate(*subset_pair, b_mode="fixed", B=B)
    assert not r.settings["prior_matching"]["holds"]
    assert r.settings["prior_matching"]["l1"] == pytest.approx(0.8, abs=1e-6)


def test_float_of_a_result_is_the_certified_bound(subset_pair):
    r = _relate(*subset_pair)
    assert float(r) == r.bound_certified
    assert r.lipschitz_certified >= r.lipschitz
    d = r.to_dict()
    assert d["certified"]["bound_certified"] is True and d["certified"]["bound"] is False


def test_split_and_row_cap_do_not_follow_class_numbering():
    from taskrel.relatedness.splits import cap_rows, split_task

    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, size=300)
    perm = np.array([2, 3, 0, 1])
    X = np.zeros((300, 2))
    for a, b in zip(split_task(X, y, seed=3), split_task(X, perm[y], seed=3)):
        np.testing.assert_array_equal(a, b)
    tr, te = split_task(X, y, seed=3)
    for c in range(4):  # stratified: round(0.2 n_c) test rows per class
        n_c = int(np.sum(y == c))
        assert int(np.sum(y[te] == c)) == int(np.floor(0.2 * n_c + 0.5))
    Xa, ya, _ = cap_rows(np.arange(300.0)[:, None], y, 20, np.random.default_rng(1))
    Xb, yb, _ = cap_rows(np.arange(300.0)[:, None], perm[y], 20, np.random.default_rng(1))
    np.testing.assert_array_equal(Xa, Xb)
    np.testing.assert_array_equal(perm[ya], yb)
    assert np.bincount(ya).tolist() == [20, 20, 20, 20]
