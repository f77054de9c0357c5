"""Reference values for the score estimators: hand derivations, closed forms, cross-checks.

Every expected number below says where it comes from.
"""

from __future__ import annotations

import numpy as np
import pytest

from taskrel.scores import (
    gbc,
    gbc_textbook,
    h_score,
    knn_accuracy,
    leep,
    logme,
    nce,
    ot_nce,
    otce,
    pactran_gaussian,
    regularized_h_score,
    sfda,
    transrate,
)
from taskrel.scores._logme import _evidence, _logme_alpha_beta, _spectrum


def _toy(seed, n_per=30, C=3, d=5, sep=2.0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(C), n_per)
    X = sep * np.eye(C, d)[y] + rng.normal(size=(y.size, d))
    return X, y


# --- LEEP and NCE: hand-worked toys -------------------------------------------------

def test_leep_three_class_hand_value():
    # theta rows: source-head probabilities over 2 source classes; 3 target classes.
    theta = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    y = np.array([0, 1, 2, 2])
    # Hand derivation: P(y,z) = 1/4 sum_i theta_i(z)[y_i=y]
    #   y=0: (1/4, 0); y=1: (1/4, 0); y=2: (1/8, 3/8) -> P(z) = (5/8, 3/8)
    #   P(y|z0) = (2/5, 2/5, 1/5), P(y|z1) = (0, 0, 1)
    #   EEP_i = sum_z theta_i(z) P(y_i|z) = 2/5, 2/5, 1, 0.5*1/5 + 0.5*1 = 3/5
    expected = (2 * np.log(0.4) + np.log(1.0) + np.log(0.6)) / 4
    np.testing.assert_allclose(leep(theta, y), expected, rtol=1e-12)
    # Relabelled target classes give the same value.
    np.testing.assert_allclose(leep(theta, np.array([7, 3, 9, 9])), expected, rtol=1e-12)


def test_nce_three_class_hand_value():
    z = np.array([0, 0, 1, 1, 1, 2])
    y = np.array([0, 1, 1, 1, 2, 2])
    # Hand derivation: H(Y|Z) = 2/6 ln 2 + 3/6 H(2/3, 1/3) + 1/6 * 0
    #   = ln2/3 + (ln 3 - 2/3 ln 2)/2 = ln(3)/2, so NCE = -ln(3)/2.
    np.testing.assert_allclose(nce(z, y), -np.log(3) / 2, rtol=1e-12)
    # Independent of the ids used for either labelling.
    np.testing.assert_allclose(nce(z * 10 + 5, 2 - y), -np.log(3) / 2, rtol=1e-12)


def test_nce_bounds():
    y = np.repeat([0, 1, 2], 4)
    np.testing.assert_allclose(nce(y, y), 0.0, atol=1e-15)  # perfect source labels
    np.testing.assert_allclose(nce(np.zeros(12, int), y), -np.log(3), rtol=1e-12)


def test_leep_rejects_logits():
    with pytest.raises(ValueError, match=r"`source_probs` rows must sum to 1"):
        leep([[2.0, 1.0], [0.5, 0.1]], [0, 1])
    with pytest.raises(ValueError, match=r"`source_probs` must be probabilities"):
        leep([[1.5, -0.5], [0.5, 0.5]], [0, 1])


# --- LogME: closed-form evidence and the fixed point --------------------------------

def _direct_evidence(X, yk, alpha, beta):
    """log p(y | X, alpha, beta) / n from its definition, with explicit d x d matrices."""
    n, d = X.shape
    A = alpha * np.eye(d) + beta * X.T @ X
    m = beta * np.linalg.solve(A, X.T @ yk)
    _, logdet = np.linalg.slogdet(A)
    L = (n / 2 * np.log(beta) + d / 2 * np.log(alpha) - n / 2 * np.log(2 * np.pi)
         - beta / 2 * np.sum((X @ m - yk) ** 2) - alpha / 2 * m @ m - logdet / 2)
    return L / n


@pytest.mark.parametrize("shape", [(40, 6), (8, 12)])  # n > d and n <= d paths
@pytest.mark.parametrize("alpha,beta", [(0.5, 2.0), (3.0, 0.7)])
def test_logme_evidence_matches_definition(shape, alpha, beta, global_random_seed):
    rng = np.random.default_rng(global_random_seed)
    X = rng.normal(size=shape)
    y = np.arange(shape[0]) % 2
    Y = np.eye(2)[y]
    s2, Z, yy = _spectrum(X, Y)
    for k in range(2):
        got = _evidence(s2, Z[:, k], float(yy[k]), *shape, alpha, beta)
        np.testing.assert_allclose(got, _direct_evidence(X, Y[:, k], alpha, beta),
                                   rtol=1e-9)


def test_logme_is_mean_of_maximized_evidence(global_random_seed):
    X, y = _toy(global_random_seed, d=6)
    Y = np.eye(3)[y]
    vals = []
    for k in range(3):
        a, b = _logme_alpha_beta(X, y, k)
        best = _direct_evidence(X, Y[:, k], a, b)
        # The fixed point is a maximum: perturbing alpha or beta lowers the evidence.
        for fa, fb in [(1.2, 1), (0.8, 1), (1, 1.2), (1, 0.8)]:
            assert _direct_evidence(X, Y[:, k], a * fa, b * fb) < best
        vals.append(best)
    np.testing.assert_allclose(logme(X, y), np.mean(vals), rtol=1e-9)


def test_logme_prefers_informative_features(global_random_seed):
    X, y = _toy(global_random_seed)
    rng = np.random.default_rng(global_random_seed + 1)
    assert logme(X, y) > logme(rng.normal(size=X.shape), y)


# --- H-scores and TransRate against their definitions -------------------------------

def test_h_score_matches_explicit_covariances(global_random_seed):
    X, y = _toy(global_random_seed, d=4)
    # Definition (Bao et al. 2019): tr(pinv(cov f) cov(E[f|y])), covariances by np.cov.
    g = np.stack([X[y == c].mean(axis=0) for c in y])
    expected = np.trace(np.linalg.pinv(np.cov(X, rowvar=False)) @ np.cov(g, rowvar=False))
    np.testing.assert_allclose(h_score(X, y), expected, rtol=1e-9)


def test_h_score_needs_more_samples_than_features():
    X, y = _toy(0, n_per=2, d=10)
    with pytest.raises(ValueError, match=r"`features`: h_score needs more samples .*n=6, d=10"):
        h_score(X, y)
    assert np.isfinite(regularized_h_score(X, y))  # the regularized one copes


def test_regularized_h_score_matches_sklearn_ledoit_wolf(global_random_seed):
    from sklearn.covariance import LedoitWolf

    X, y = _toy(global_random_seed, n_per=8, d=12)
    lw = LedoitWolf().fit(X)  # shrinkage and shrunk covariance, 1/n normalisation
    Xc = X - X.mean(axis=0)
    g = np.stack([Xc[y == c].mean(axis=0) for c in y])
    cov_g = g.T @ g / (X.shape[0] - 1)  # np.cov of the class means, as TLlib
    expected = (1 - lw.shrinkage_) * np.trace(np.linalg.solve(lw.covariance_, cov_g))
    np.testing.assert_allclose(regularized_h_score(X, y), expected, rtol=1e-8)


def test_transrate_matches_slogdet_definition(global_random_seed):
    X, y = _toy(global_random_seed, n_per=4, d=6)  # classes with n_c < d use the Gram
    eps = 1e-2
    Z = X - X.mean(axis=0)

    def rate(A):
        return 0.5 * np.linalg.slogdet(np.eye(A.shape[1]) + A.T @ A / (A.shape[0] * eps))[1]

    expected = rate(Z) - np.mean([rate(Z[y == c]) for c in range(3)])
    np.testing.assert_allclose(transrate(X, y, eps=eps), expected, rtol=1e-9)


# --- GBC: two spherical classes by hand ---------------------------------------------

def test_gbc_two_classes_hand_value():
    # Class 0 at (+-1, 0) (mean 0, per-dim variances (1, 0)), class 1 at (3 +- 1, 0)
    # (mean (3, 0), same variances). Equal variances: the log term vanishes.
    X = np.array([[-1.0, 0], [1, 0], [2, 0], [4, 0]])
    y = np.array([0, 0, 1, 1])
    # Textbook: spherical variance 1/2, D_B = |dmu|^2 / (8 * 1/2) = 9/4.
    np.testing.assert_allclose(gbc_textbook(X, y), -2 * np.exp(-9 / 4), rtol=1e-12)
    # The authors' code floors each variance at 1e-4 first: (1, 1e-4) -> 0.50005.
    np.testing.assert_allclose(gbc(X, y), -2 * np.exp(-9 / (8 * 0.50005)), rtol=1e-12)
    # Diagonal: dim 2 has zero variance in both classes (floored, equal): only dim 1
    # contributes, D_B = 9 / 8.
    for f in (gbc, gbc_textbook):
        np.testing.assert_allclose(f(X, y, gaussian_type="diagonal"),
                                   -2 * np.exp(-9 / 8), rtol=1e-9)


def test_gbc_spherical_log_term_is_scalar_in_the_authors_code():
    # Two classes with equal means and spherical variances 1 and 4 in d = 3 dims:
    # the authors' log term is log(2.5) - 0.5 log(1) - 0.5 log(4) once, the textbook
    # one d times.
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(4000, 3))
    Z = (Z - Z.mean(0)) / Z.std(0)  # per-dim mean 0, variance 1 exactly
    X = np.r_[Z, 2 * Z]
    y = np.repeat([0, 1], 4000)
    log_term = np.log(2.5) - 0.5 * np.log(4)
    np.testing.assert_allclose(gbc(X, y), -2 * np.exp(-0.5 * log_term), rtol=1e-9)
    np.testing.assert_allclose(gbc_textbook(X, y), -2 * np.exp(-0.5 * 3 * log_term),
                               rtol=1e-9)


# --- SFDA: first stage equals shrinkage LDA; no mutation ----------------------------

def test_sfda_lda_stage_matches_sklearn(global_random_seed):
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    from taskrel.scores._sfda import _lda_proba

    X, y = _toy(global_random_seed, d=6)
    p, lam = _lda_proba(X, y, 3, 0.3)
    ref = LinearDiscriminantAnalysis(solver="eigen", shrinkage=0.3).fit(X, y)
    np.testing.assert_allclose(p, ref.predict_proba(X), rtol=1e-7, atol=1e-10)


def test_sfda_separable_beats_shuffled(global_random_seed):
    X, y = _toy(global_random_seed, sep=4.0)
    rng = np.random.default_rng(global_random_seed)
    assert sfda(X, y) > sfda(X, rng.permutation(y))


# --- k-NN: against a naive leave-one-out loop ----------------------------------------

def test_knn_matches_naive_loop(global_random_seed):
    X, y = _toy(global_random_seed, n_per=15, C=2, sep=1.5)
    k = 5  # odd k, two classes: no vote ties
    D = ((X[:, None] - X[None]) ** 2).sum(-1)
    np.fill_diagonal(D, np.inf)
    pred = [np.bincount(y[np.argsort(D[i])[:k]], minlength=2).argmax() for i in range(len(y))]
    expected = float(np.mean(np.array(pred) == y))
    assert knn_accuracy(X, y, k=k, batch_size=7) == expected


# --- OT scores: identical tasks ------------------------------------------------------

def test_ot_scores_identical_tasks():
    X, y = _toy(3, n_per=10)
    # The optimal coupling of a sample set with itself is the identity: W = 0 and the
    # label joint is diagonal, so H(Y_t|Y_s) = 0 -- also after relabelling the target.
    np.testing.assert_allclose(ot_nce(X, y, X, y), 0.0, atol=1e-12)
    np.testing.assert_allclose(ot_nce(X, y, X, (y + 1) % 3), 0.0, atol=1e-12)
    np.testing.assert_allclose(otce(X, y, X, y), 0.0, atol=1e-9)


def test_pactran_prefers_separable_labels(global_random_seed):
    X, y = _toy(global_random_seed, sep=3.0)
    rng = np.random.default_rng(global_random_seed)
    assert pactran_gaussian(X, y, max_iter=300) < pactran_gaussian(
        X, rng.permutation(y), max_iter=300)


@pytest.mark.parametrize("name", ["logme", "regularized_h_score", "transrate", "gbc",
                                  "sfda", "pactran_gaussian", "knn_accuracy", "nleep"])
def test_fewer_samples_than_features_is_handled(name):
    from taskrel.scores import get_score

    X, y = _toy(1, n_per=4, d=40)  # n = 12 < d = 40: regularized or exact, never NaN
    v = get_score(name).func(X, y)
    assert np.isfinite(v)
