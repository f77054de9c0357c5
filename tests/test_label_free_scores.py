"""The label-free scores: RankMe (Garrido et al., ICML 2023) and ETran's energy score
(Gholami et al., ICCV 2023): closed forms, the authors' formulas, invariances, bad
input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from taskrel.exceptions import TaskrelInputError
from taskrel.io import Task
from taskrel.scores import compute_score, etran_energy, get_score, list_scores, rankme
from taskrel.scores._rankme import RANKME_EPS

EPS = RANKME_EPS  # 1e-7, the paper's epsilon


def _orthonormal(rng, rows, cols):
    """A rows x cols matrix with orthonormal columns (cols <= rows)."""
    Q, _ = np.linalg.qr(rng.normal(size=(rows, cols)))
    return Q


def _rankme_closed_form(k, m):
    # k singular values equal to c > 0 and m - k zeros (m = min(n, d)):
    # ||sigma||_1 = k c, so p = 1/k + eps (k times) and p = 0 + eps (m - k times);
    # RankMe = exp(-[k (1/k + eps) log(1/k + eps) + (m - k) eps log eps]), which is
    # k up to O(m eps log(1/eps)).
    q = 1.0 / k + EPS
    return np.exp(-(k * q * np.log(q) + (m - k) * EPS * np.log(EPS)))


# ---------------------------------------------------------------------------------
# RankMe
# ---------------------------------------------------------------------------------

@pytest.mark.parametrize("n, d, k", [(12, 7, 1), (12, 7, 3), (12, 7, 7), (5, 9, 4)])
def test_rankme_k_equal_singular_values(n, d, k):
    rng = np.random.default_rng(k)
    # X = c U V^T with orthonormal U (n x k), V (d x k): singular values c (k times).
    X = 2.5 * _orthonormal(rng, n, k) @ _orthonormal(rng, d, k).T
    expected = _rankme_closed_form(k, min(n, d))
    np.testing.assert_allclose(rankme(X), expected, rtol=1e-12)
    np.testing.assert_allclose(rankme(X), k, rtol=2e-5)  # "= k up to eps"


def test_rankme_rank_one_is_about_one():
    # X = a b^T: one singular value |a||b|, the other min(n, d) - 1 are 0, so
    # RankMe = exp(-[(1 + eps) log(1 + eps) + (m - 1) eps log eps]) = 1 + 6.2e-6 (m=5).
    X = np.outer(np.arange(1.0, 21.0), [1.0, -2.0, 0.5, 3.0, 1.5])
    expected = np.exp(-((1 + EPS) * np.log1p(EPS) + 4 * EPS * np.log(EPS)))
    np.testing.assert_allclose(rankme(X), expected, rtol=1e-12)
    assert 1.0 < rankme(X) < 1.00001


@pytest.mark.parametrize("n, d", [(40, 6), (6, 11)])
def test_rankme_matches_eigvalsh_of_the_smaller_gram(n, d):
    # Independent path: sigma_k^2 are the eigenvalues of X^T X (d x d, n >= d) or of
    # X X^T (n x n, n < d): min(n, d) of them, all > 0 for these random matrices.
    X = np.random.default_rng(n).normal(size=(n, d)) + 0.3
    G = X.T @ X if n >= d else X @ X.T
    sigma = np.sqrt(np.linalg.eigvalsh(G))
    p = sigma / sigma.sum() + 1e-7
    expected = np.exp(-np.sum(p * np.log(p)))
    np.testing.assert_allclose(rankme(X), expected, rtol=1e-10)


def test_rankme_uses_the_features_uncentered():
    # The paper's definition takes the embedding matrix as it is: an offset shared by
    # all samples is a direction of its own. Two equal orthogonal columns: rank 2; a
    # large constant added to every entry makes the mean direction dominate.
    X = np.sqrt(10) * np.repeat(np.eye(2), 10, axis=0)  # singular values 10, 10
    np.testing.assert_allclose(rankme(X), _rankme_closed_form(2, 2), rtol=1e-12)
    assert rankme(X + 100.0) < 1.1


def test_rankme_invariances(global_random_seed):
    rng = np.random.default_rng(global_random_seed)
    X = rng.normal(size=(30, 6)) * np.array([5.0, 3.0, 1.0, 1.0, 0.2, 0.1])
    v = rankme(X)
    np.testing.assert_allclose(rankme(X[rng.permutation(30)]), v, rtol=1e-12)
    R = _orthonormal(rng, 6, 6)  # orthogonal rotation of the features
    np.testing.assert_allclose(rankme(X @ R), v, rtol=1e-10)
    for c in (37.0, 1e-3):
        np.testing.assert_allclose(rankme(c * X), v, rtol=1e-12)
    assert 1.0 < v < 6.0


# ---------------------------------------------------------------------------------
# ETran energy
# ---------------------------------------------------------------------------------

def ref_energy_score(logits, percent, tail):
    """github.com/mgholamikn/ETran @ d4551ed8f41f4ed6eba08b9cc1a78bae178acd19,
    metrics.py::Energy_Score, line for line (``to_torch`` = ``torch.from_numpy``);
    evaluate_metric.py calls it as Energy_Score(X_features, 0.5, 'bot')."""
    logits = torch.from_numpy(logits)
    energy_score = torch.logsumexp(logits, dim=-1).numpy()
    if tail == "bot":
        chs = list(np.argsort(energy_score)[0:int(percent*10)*len(energy_score)//1000])
    else:
        chs = list(np.argsort(energy_score)[-int(percent*10)*len(energy_score)//1000:])
    return energy_score[chs].mean()


@pytest.mark.parametrize("n, percent", [(1000, 0.5), (999, 0.5), (200, 0.5),
                                        (1000, 0.25), (300, 2.5), (50, 100.0)])
def test_energy_matches_the_authors_formula(n, percent):
    # 0.25 % truncates to 0.2 % (int(2.5) = 2): k = 2 of 1000; n = 999 -> k = 4.
    rng = np.random.default_rng(n)
    X = np.abs(rng.normal(size=(n, 16))) * rng.uniform(0.5, 3.0, size=(n, 1))
    np.testing.assert_allclose(etran_energy(X, percent=percent),
                               ref_energy_score(X, percent, "bot"), rtol=1e-10)


def test_energy_default_is_the_lowest_half_percent():
    # s_i = logsumexp of row i; default k = 5 * n // 1000 = floor(n / 200).
    X = np.random.default_rng(0).normal(size=(600, 8))
    s = np.log(np.exp(X).sum(axis=1))
    np.testing.assert_allclose(etran_energy(X), np.sort(s)[:3].mean(), rtol=1e-12)


def test_energy_constant_rows_closed_form():
    # A row of d equal values c: logsumexp = log(d e^c) = c + log d. With rows
    # c_i = i / 10 (i = 0..399), d = 7 and k = 5 * 400 // 1000 = 2 lowest rows:
    # (0 + 0.1) / 2 + log 7.
    c = np.arange(400) / 10
    X = np.repeat(c[:, None], 7, axis=1)
    np.testing.assert_allclose(etran_energy(X), 0.05 + np.log(7), rtol=1e-13)
    np.testing.assert_allclose(etran_energy(np.zeros((200, 4))), np.log(4), rtol=1e-15)
    # Two features 0 and log 3: log(1 + 3) = log 4 in every row.
    X2 = np.tile([0.0, np.log(3.0)], (200, 1))
    np.testing.assert_allclose(etran_energy(X2), np.log(4.0), rtol=1e-14)


def test_energy_invariances(global_random_seed):
    rng = np.random.default_rng(global_random_seed)
    X = rng.normal(size=(400, 5))
    v = etran_energy(X)
    assert etran_energy(X[rng.permutation(400)]) == v  # k lowest sorted: exact
    np.testing.assert_allclose(etran_energy(X + 2.5), v + 2.5, rtol=1e-12)


def test_energy_needs_enough_samples_at_the_default():
    X = np.random.default_rng(1).normal(size=(199, 3))
    # Authors' code: int(5) * 199 // 1000 = 0 samples -> the mean of nothing (NaN).
    with pytest.warns(RuntimeWarning):
        assert np.isnan(ref_energy_score(X, 0.5, "bot"))
    with pytest.raises(TaskrelInputError, match=r"`features`.*0 for n=199.*n >= 200"):
        etran_energy(X)
    with pytest.raises(TaskrelInputError, match=r"n >= 34"):  # int(30) * n >= 1000
        etran_energy(X[:20], percent=3.0)
    assert np.isfinite(etran_energy(X, percent=1.0))  # 10 * 199 // 1000 = 1


@pytest.mark.parametrize("bad", [0, -1.0, 0.05, 100.5, np.inf, np.nan, "half", True,
                                 None])
def test_energy_bad_percent(bad):
    X = np.zeros((300, 3))
    with pytest.raises(TaskrelInputError, match=r"`percent`"):
        etran_energy(X, percent=bad)


# ---------------------------------------------------------------------------------
# both
# ---------------------------------------------------------------------------------

SCORES = {"rankme": rankme, "etran_energy": etran_energy}


@pytest.mark.parametrize("name", sorted(SCORES))
def test_registry_metadata(name):
    spec = get_score(name)
    assert name in list_scores()
    assert spec.func is SCORES[name]
    assert spec.inputs == ("features",)
    assert spec.higher_is_better is True and spec.gpu is False


@pytest.mark.parametrize("name", sorted(SCORES))
def test_compute_score_on_an_unlabelled_task(name):
    X = np.random.default_rng(2).normal(size=(200, 4))
    assert compute_score(name, Task(features=X, labels=None)) == SCORES[name](X)


@pytest.mark.parametrize("name", sorted(SCORES))
def test_float_and_dtypes_and_no_mutation(name):
    X = np.random.default_rng(3).normal(size=(200, 4))
    X.flags.writeable = False  # a write would raise
    before = X.copy()
    v = SCORES[name](X)
    assert type(v) is float and np.isfinite(v)
    np.testing.assert_array_equal(X, before)
    np.testing.assert_allclose(SCORES[name](X.tolist()), v, rtol=1e-15)
    np.testing.assert_allclose(SCORES[name](X.astype(np.float32)), v, rtol=1e-6)


@pytest.mark.parametrize("name", sorted(SCORES))
@pytest.mark.parametrize("bad, match", [
    (np.array([[1.0, np.nan], [0.0, 1.0]]), r"`features` must be finite"),
    (np.array([[1.0, np.inf], [0.0, 1.0]]), r"`features` must be finite"),
    (np.ones(5), r"`features` must be 2-D .*got shape \(5,\)"),
    (np.ones((1, 3)), r"`features` needs at least 2 samples; got 1"),
    (np.ones((4, 0)), r"`features` has no feature columns"),
    ([["a", "b"], ["c", "d"]], r"`features` must be a 2-D numeric array"),
    (None, r"`features` is required; got None"),
    (np.ones((4, 2)) * 1e300, r"`features` must have its largest \|value\|"),
])
def test_bad_features(name, bad, match):
    with pytest.raises(TaskrelInputError, match=match):
        SCORES[name](bad)


def test_rankme_all_zero_features():
    with pytest.raises(TaskrelInputError, match=r"`features` must not be all zero"):
        rankme(np.zeros((5, 3)))
