"""The static ranker, fidelity, the paired comparison against the static ranker and the
truth's noise ceiling in the views, on hand-made matrices whose values are derived by hand
in the comments."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import weightedtau

from taskrel.exceptions import TaskrelInputError
from taskrel.experiments.views import STATIC_RANKER, compute_views, views_markdown


def _tables(truth, scores=None, *, est="score", truth_seeds=None):
    """cells/truth rows from ``truth[e][j]`` (finetune accuracy) and ``scores[e][j]``;
    ``truth_seeds`` maps seed -> truth matrix (default: one seed, ``truth``)."""
    cells, rows = [], []
    for s, tr in (truth_seeds or {0: truth}).items():
        for e, accs in tr.items():
            for j, a in enumerate(accs):
                rows.append({"encoder": e, "target": f"t{j}", "truth": "finetune_acc",
                             "seed": s, "value": a})
    for e, vals in (scores or {}).items():
        for j, v in enumerate(vals):
            cells.append({"encoder": e, "target": f"t{j}", "fraction": 1.0, "seed": 0,
                          "estimator": est, "value": v, "higher_is_better": True})
    return cells, rows


#: 4 encoders x 3 targets.
TRUTH = {"a": [0.50, 0.60, 0.90], "b": [0.60, 0.90, 0.70],
         "c": [0.70, 0.50, 0.60], "d": [0.90, 0.70, 0.50]}


def test_static_ranker_is_the_leave_one_target_out_mean_by_hand():
    # Static score of (a, t0) = mean(0.60, 0.90) = 0.75; b: 0.80; c: 0.55; d: 0.60.
    # On t0 the truth is a 0.5, b 0.6, c 0.7, d 0.9, so weightedtau([.75,.8,.55,.6],
    # [.5,.6,.7,.9]); likewise t1 and t2. The view's value is the mean of the three.
    S = {0: [0.75, 0.80, 0.55, 0.60], 1: [0.70, 0.65, 0.65, 0.70],
         2: [0.55, 0.75, 0.60, 0.80]}
    want = np.mean([weightedtau(S[j], [TRUTH[e][j] for e in "abcd"]).statistic
                    for j in range(3)])
    cells, truth = _tables(TRUTH, {e: TRUTH[e] for e in TRUTH})
    v = compute_views(cells, truth, n_boot=50)
    got = v["model_selection"][STATIC_RANKER]["finetune_acc"]
    assert got["weighted_tau"]["value"] == pytest.approx(want, abs=1e-12)
    assert v["meta"]["estimators"][STATIC_RANKER]["derived"] is True
    # Every view has the row; the few-label sweep does not (no fractions).
    for view in ("within_encoder", "pooled"):
        assert "finetune_acc" in v[view][STATIC_RANKER]
    assert STATIC_RANKER not in v["few_label"]


def test_a_target_independent_zoo_is_solved_by_the_static_ranker():
    # Truth = encoder quality + a target offset: the order is the same on every target,
    # so the static ranker orders each target exactly (tau 1, regret 0), and an
    # estimator equal to the truth is level with it (difference 0 on every target).
    q = {"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.4, "e": 0.5}
    truth = {e: [x + off for off in (0.3, 0.4, 0.45, 0.2)] for e, x in q.items()}
    cells, rows = _tables(truth, truth)
    ms = compute_views(cells, rows, n_boot=50)["model_selection"]
    st = ms[STATIC_RANKER]["finetune_acc"]
    assert st["weighted_tau"]["value"] == pytest.approx(1.0)
    assert st["regret"]["value"] == pytest.approx(0.0)
    sc = ms["score"]["finetune_acc"]
    assert sc["weighted_tau_vs_static"]["value"] == pytest.approx(0.0)
    assert sc["beats_static"] == "level"


def test_an_estimator_that_reads_the_target_beats_the_static_ranker():
    # Each encoder's accuracies are the same six numbers, cyclically shifted over six
    # targets, so an encoder's leave-one-target-out mean is (sum - own) / 5: strictly
    # decreasing in its own truth. The static ranker orders every target exactly
    # backwards (tau -1), and the truth itself (tau +1) beats it on every target.
    base = [0.9, 0.7, 0.6, 0.5, 0.4, 0.3]
    encs = "abcdef"
    truth = {e: [base[(i - j) % 6] for j in range(6)] for i, e in enumerate(encs)}
    cells, rows = _tables(truth, truth)
    ms = compute_views(cells, rows, n_boot=200)["model_selection"]
    assert ms[STATIC_RANKER]["finetune_acc"]["weighted_tau"]["value"] == pytest.approx(-1)
    sc = ms["score"]["finetune_acc"]
    assert sc["weighted_tau"]["value"] == pytest.approx(1.0)
    assert sc["weighted_tau_vs_static"]["value"] == pytest.approx(2.0)
    assert sc["beats_static"] == "better"


def test_an_estimator_below_the_static_ranker_is_worse():
    # The target-independent zoo (static tau 1) and an estimator ordering every
    # target backwards (tau -1): difference -2 on every target.
    q = {"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.4, "e": 0.5}
    truth = {e: [x + off for off in (0.3, 0.4, 0.45, 0.2)] for e, x in q.items()}
    cells, rows = _tables(truth, {e: [-x for x in v] for e, v in truth.items()})
    sc = compute_views(cells, rows, n_boot=50)["model_selection"]["score"]["finetune_acc"]
    assert sc["weighted_tau_vs_static"]["value"] == pytest.approx(-2.0)
    assert sc["beats_static"] == "worse"


def test_fidelity_by_hand():
    # score = 2 acc + 1: every score gap is twice the truth gap, same sign: r = +1.
    cells, rows = _tables(TRUTH, {e: [2 * a + 1 for a in TRUTH[e]] for e in TRUTH})
    f = compute_views(cells, rows, n_boot=20)["model_selection"]["score"]["finetune_acc"]
    assert f["fidelity"]["value"] == pytest.approx(1.0)
    # score = -acc: the higher-scored encoder of every pair is worse by exactly the
    # gap: truth gap oriented by the score = -|score gap|, r = -1.
    cells, rows = _tables(TRUTH, {e: [-a for a in TRUTH[e]] for e in TRUTH})
    f = compute_views(cells, rows, n_boot=20)["model_selection"]["score"]["finetune_acc"]
    assert f["fidelity"]["value"] == pytest.approx(-1.0)
    # Right order, wrong gaps: scores 1, 2, 3, 4 against truths 0.5, 0.6, 0.7, 0.9 on
    # t0. Pairs (score gap, truth gap): (1, .1) (2, .2) (3, .4) (1, .1) (2, .3) (1, .2):
    # Pearson r of those six pairs, computed here.
    x, y = np.array([1, 2, 3, 1, 2, 1.0]), np.array([.1, .2, .4, .1, .3, .2])
    cells, rows = _tables({e: TRUTH[e][:1] * 3 for e in TRUTH},
                          {e: [float(i + 1)] * 3 for i, e in enumerate("abcd")})
    f = compute_views(cells, rows, n_boot=20)["model_selection"]["score"]["finetune_acc"]
    assert f["fidelity"]["value"] == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-12)


def test_noise_ceiling_from_truth_seeds():
    cells, rows = _tables(TRUTH, {e: TRUTH[e] for e in TRUTH})
    nc = compute_views(cells, rows, n_boot=20)["noise_ceiling"]["finetune_acc"]
    assert "weighted_tau" not in nc and "1 seed" in nc["reason"]
    # Seed 1 = seed 0: the truth agrees with itself perfectly.
    cells, rows = _tables(TRUTH, {e: TRUTH[e] for e in TRUTH},
                          truth_seeds={0: TRUTH, 1: TRUTH})
    nc = compute_views(cells, rows, n_boot=20)["noise_ceiling"]["finetune_acc"]
    assert nc["weighted_tau"]["value"] == pytest.approx(1.0)
    assert nc["regret"]["value"] == pytest.approx(0.0) and nc["seeds"] == [0, 1]
    # Seed 1 swaps a and d on t0: seed 0's pick (d, 0.9) has 0.5 under seed 1 and vice
    # versa, so regret 0.4 on t0 both ways, 0 elsewhere: mean 0.4 / 3.
    swapped = {**TRUTH, "a": [0.9, *TRUTH["a"][1:]], "d": [0.5, *TRUTH["d"][1:]]}
    cells, rows = _tables(TRUTH, {e: TRUTH[e] for e in TRUTH},
                          truth_seeds={0: TRUTH, 1: swapped})
    v = compute_views(cells, rows, n_boot=20)
    nc = v["noise_ceiling"]["finetune_acc"]
    assert nc["regret"]["value"] == pytest.approx(0.4 / 3)
    t0 = weightedtau([TRUTH[e][0] for e in "abcd"], [swapped[e][0] for e in "abcd"])
    assert nc["weighted_tau"]["value"] == pytest.approx((t0.statistic + 2) / 3)
    md = "\n".join(views_markdown(v))
    assert "Noise ceiling" in md and STATIC_RANKER in md and "Fidelity" in md


def test_an_estimator_named_like_the_static_ranker_is_refused():
    cells, rows = _tables(TRUTH, {e: TRUTH[e] for e in TRUTH}, est=STATIC_RANKER)
    with pytest.raises(TaskrelInputError, match="static_ranker"):
        compute_views(cells, rows, n_boot=10)


def test_label_free_estimators_are_marked_and_get_their_own_table():
    from taskrel.experiments.views import label_free

    assert label_free("rankme") and label_free("etran_energy")
    assert label_free("task_relatedness_unlabeled")
    assert not label_free("knn_accuracy") and not label_free("task_relatedness")
    assert not label_free("not_a_score")
    cells, rows = _tables(TRUTH, {e: TRUTH[e] for e in TRUTH}, est="rankme")
    v = compute_views(cells, rows, n_boot=20)
    assert v["meta"]["estimators"]["rankme"]["label_free"] is True
    md = "\n".join(views_markdown(v))
    assert "Label-free" in md
    cells, rows = _tables(TRUTH, {e: TRUTH[e] for e in TRUTH}, est="logme")
    assert "Label-free" not in "\n".join(views_markdown(compute_views(cells, rows,
                                                                     n_boot=20)))


def test_view_ii_is_undefined_for_the_static_ranker():
    # Within one encoder the leave-one-target-out mean moves only with the left-out
    # truth, (sum - own) / (n - 1): Pearson -1 by construction, so the view says why
    # it has no value instead of reporting that artefact.
    cells, rows = _tables(TRUTH, {e: TRUTH[e] for e in TRUTH})
    w = compute_views(cells, rows, n_boot=20)["within_encoder"][STATIC_RANKER]
    assert w["finetune_acc"]["pearson"]["value"] is None
    assert "ignores the target" in w["finetune_acc"]["pearson"]["reason"]


def test_view_i_cis_resample_the_truth_seed_when_there_are_several():
    est = {e: TRUTH[e] for e in TRUTH}
    one = compute_views(*_tables(TRUTH, est), n_boot=200)["model_selection"]
    same = compute_views(*_tables(TRUTH, est, truth_seeds={0: TRUTH, 1: TRUTH}),
                         n_boot=200)["model_selection"]
    a, b = one["score"]["finetune_acc"], same["score"]["finetune_acc"]
    assert a["ci_resamples"] == "targets"
    assert b["ci_resamples"] == "targets and truth seeds [0, 1]"
    # Two identical seeds: the same targets are drawn first, so the same CI.
    assert a["weighted_tau"]["ci_low"] == pytest.approx(b["weighted_tau"]["ci_low"])
    # A seed that orders every target backwards (1 - acc / 2: the mean of the two
    # seeds keeps the order, so the value stays 1). Of the 4 equally likely draws of 2
    # seeds with replacement, only (1, 1) is backwards (tau -1), so a resampled target
    # scores -1 with probability 1/4. Recentred on the value 1 and clipped: 2 or more
    # of the 3 resampled targets at -1 (probability 10/64 > 2.5 %) give
    # -1/3 + (1 - 1/2) = 1/6 (1/2: the draws' mean in expectation; the recentring uses
    # their actual mean), so the CI reaches below anything the single seed allows.
    back = {e: [1 - x / 2 for x in v] for e, v in TRUTH.items()}
    noisy = compute_views(*_tables(TRUTH, est, truth_seeds={0: TRUTH, 1: back}),
                          n_boot=200)["model_selection"]["score"]["finetune_acc"]
    assert a["weighted_tau"]["ci_low"] == pytest.approx(1.0)
    assert noisy["weighted_tau"]["value"] == pytest.approx(1.0)
    assert noisy["weighted_tau"]["ci_low"] == pytest.approx(1 / 6, abs=0.05)
    assert noisy["weighted_tau"]["ci_high"] == pytest.approx(1.0)
    # A seed on part of the grid only is not resampled.
    partial = {e: TRUTH[e][:2] for e in TRUTH}
    p = compute_views(*_tables(TRUTH, est, truth_seeds={0: TRUTH, 1: partial}),
                      n_boot=50)["model_selection"]["score"]["finetune_acc"]
    assert p["ci_resamples"] == "targets"


def test_seed_resampling_bootstraps_the_seed_mean():
    # Two seeds: the 4 ordered draws with replacement are (0,0), (0,1), (1,0), (1,1);
    # the middle two are the seed mean itself. Hand check on one target of 4 encoders.
    from taskrel.experiments.views import _per_target, _seed_mean_resamples

    E = np.array([[4.0], [3.0], [2.0], [1.0]])
    T0 = np.array([[0.9], [0.8], [0.7], [0.6]])  # agrees with E: tau 1
    T1 = np.array([[0.6], [0.7], [0.8], [0.9]])  # backwards: tau -1
    reps = _seed_mean_resamples(E, {0: T0, 1: T1})
    assert len(reps) == 4
    want = [_per_target(E, T)[0]["weighted_tau"][0] for T in (T0, (T0 + T1) / 2,
                                                               (T0 + T1) / 2, T1)]
    got = [r["weighted_tau"][0] for r in reps]
    np.testing.assert_allclose(got[0], 1.0)
    np.testing.assert_allclose(got[3], -1.0)
    np.testing.assert_allclose(got, want, equal_nan=True)
    # Three seeds: 27 ordered draws, 10 distinct multisets scored once each.
    assert len(_seed_mean_resamples(E, {0: T0, 1: T1, 2: T0})) == 27


@pytest.mark.parametrize("rng_seed", range(4))
def test_seed_resampled_ci_contains_the_value_it_is_the_ci_of(rng_seed):
    # An oracle estimator (the noise-free accuracies) against 3 noisy truth seeds on
    # 12 targets. Scoring the bootstrap against single seeds, or against replicates of
    # the seed mean without recentring, puts the draws below the value (a noisier
    # truth); the reported CI is recentred and must contain the value.
    from scipy.stats import weightedtau

    rng = np.random.default_rng(rng_seed)
    base = rng.uniform(0.6, 0.9, (8, 12))
    seeds = {s: base + rng.normal(0, 0.02, base.shape) for s in range(3)}

    def tr(M):
        return {f"e{i}": list(M[i]) for i in range(M.shape[0])}

    v = compute_views(*_tables(None, tr(base), truth_seeds={s: tr(M) for s, M in
                                                            seeds.items()}),
                      n_boot=500)["model_selection"]["score"]["finetune_acc"]
    w = v["weighted_tau"]
    assert v["ci_resamples"] == "targets and truth seeds [0, 1, 2]"
    assert w["ci_low"] <= w["value"] <= w["ci_high"] <= 1.0
    single = np.mean([weightedtau(base[:, j], M[:, j])[0] for M in seeds.values()
                      for j in range(12)])
    assert single < w["value"]  # the attenuation the recentring removes
