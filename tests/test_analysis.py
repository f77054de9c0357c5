"""Analyses: numbers recomputed independently, figures inspected before saving."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.datasets import load_diabetes

from taskrel.experiments.analysis import (
    correlation,
    cost_table,
    decomposition_plot,
    few_label_sweep,
    pair_with_truth,
    zoo_selection,
    zoo_selection_from_rows,
)
from taskrel.exceptions import TaskrelInputError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _avg_ranks(v):
    """Average ranks (1-based), ties sharing the mean of their positions."""
    v = np.asarray(v, float)
    order = np.argsort(v, kind="stable")
    ranks = np.empty(v.size)
    i = 0
    while i < v.size:
        j = i
        while j + 1 < v.size and v[order[j + 1]] == v[order[i]]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def _hand_weighted_tau(x, y, rank_by):
    """Vigna's weighted tau without ties: pair weight 1/(r_i+1) + 1/(r_j+1), r the
    0-based position in decreasing order of ``rank_by``."""
    n = len(x)
    r = np.empty(n, int)
    r[np.argsort(-np.asarray(rank_by))] = np.arange(n)
    num = den = 0.0
    for i in range(n):
        for j in range(i + 1, n):
            w = 1 / (r[i] + 1) + 1 / (r[j] + 1)
            num += w * np.sign((x[i] - x[j]) * (y[i] - y[j]))
            den += w
    return num / den


def _written(paths, name):
    for k in ("csv", "json", "png"):
        assert paths[k].endswith(f"{name}.{k}")
    with open(paths["png"], "rb") as f:
        head = f.read()
    assert head.startswith(PNG_MAGIC) and len(head) > 2000
    with open(paths["json"]) as f:
        return json.load(f)


def test_correlation_on_real_data_matches_numpy(tmp_path):
    # scikit-learn's diabetes data: body-mass index vs disease progression, 80 patients
    d = load_diabetes()
    x, y = d.data[:80, 2], d.target[:80]
    res = correlation(x, y, n_boot=300, seed=3, xlabel="bmi", ylabel="progression")
    s = res.summary
    assert s["pearson"] == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-12)
    assert s["spearman"] == pytest.approx(
        np.corrcoef(_avg_ranks(x), _avg_ranks(y))[0, 1], abs=1e-12)
    # bootstrap recomputed with a plain loop over the same resamples
    rng = np.random.default_rng(3)
    idx = rng.integers(0, 80, size=(300, 80))
    boots = np.array([np.corrcoef(x[i], y[i])[0, 1] for i in idx])
    sboots = np.array([np.corrcoef(_avg_ranks(x[i]), _avg_ranks(y[i]))[0, 1] for i in idx])
    assert s["pearson_ci"] == pytest.approx(np.percentile(boots, [2.5, 97.5]), abs=1e-12)
    assert s["spearman_ci"] == pytest.approx(np.percentile(sboots, [2.5, 97.5]), abs=1e-12)
    assert s["pearson_ci"][0] < s["pearson"] < s["pearson_ci"][1]
    assert s["n_boot_used"] == 300
    ax = res.figure.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("bmi", "progression")
    assert f"Pearson {s['pearson']:.3f}" in ax.get_title()
    assert len(ax.collections[0].get_offsets()) == 80
    js = _written(res.write(tmp_path), "correlation")
    assert js["summary"]["pearson"] == pytest.approx(s["pearson"])
    assert len(js["rows"]) == 80


@pytest.mark.parametrize("x, y, kw, match", [
    ([1, 2], [1, 2], {}, "`x` needs at least 3 pairs; got 2"),
    ([1, 2, 3], [1, 2], {}, "`x` and `y` have different lengths: 3 vs 2"),
    ([1, 1, 1], [1, 2, 3], {}, "one of them is constant"),
    ([1, 2, np.nan], [1, 2, 3], {}, "`x` must be finite"),
    ([1, 2, 3], [1, 2, 4], {"n_boot": -1}, "`n_boot` must be a non-negative integer"),
])
def test_correlation_validation(x, y, kw, match):
    with pytest.raises(TaskrelInputError, match=match):
        correlation(x, y, plot=False, **kw)


def test_zoo_selection_by_hand(tmp_path):
    # a lower-is-better estimator (like task-relatedness) over four encoders
    scores = {"t1": {"a": 0.9, "b": 0.4, "c": 0.7, "d": 1.3},
              "t2": {"a": 0.2, "b": 0.1, "c": 0.5, "d": 0.3}}
    truth = {"t1": {"a": 70.0, "b": 81.0, "c": 84.0, "d": 60.0},
             "t2": {"a": 90.0, "b": 80.0, "c": 88.0, "d": 85.0}}
    res = zoo_selection(scores, truth, higher_is_better=False, estimator="tr")
    r1, r2 = res.rows
    # t1: lowest score is b (0.4) -> 81; best is c (84): regret 3, a miss
    assert (r1["pick"], r1["pick_accuracy"], r1["best"], r1["regret"], r1["top1_hit"]) == (
        "b", 81.0, "c", 3.0, False)
    # t2: lowest is b (0.1) -> 80; best a (90): regret 10
    assert (r2["pick"], r2["regret"], r2["top1_hit"]) == ("b", 10.0, False)
    # Kendall tau by hand for t1, predicted order (negated scores) b > c > a > d,
    # truth order c > b > a > d: pairs (b,c) discordant, the other 5 concordant
    assert r1["kendall_tau"] == pytest.approx((5 - 1) / 6)
    for r, t in ((r1, "t1"), (r2, "t2")):
        enc = sorted(scores[t])
        s = -np.array([scores[t][e] for e in enc])
        g = np.array([truth[t][e] for e in enc])
        both = (_hand_weighted_tau(s, g, s) + _hand_weighted_tau(s, g, g)) / 2
        assert r["weighted_tau_both"] == pytest.approx(both, abs=1e-12)
        assert r["weighted_tau_by_truth"] == pytest.approx(
            _hand_weighted_tau(s, g, g), abs=1e-12)
    # the two conventions differ on t2 (on t1 the orders differ by a top-2 swap only,
    # which both weightings see alike)
    assert abs(r2["weighted_tau_both"] - r2["weighted_tau_by_truth"]) > 1e-3
    agg = res.summary["by_estimator"]["tr"]
    assert agg["top1_hit_rate"] == 0.0 and agg["mean_regret"] == 6.5
    assert "rank=None" in res.summary["weighted_tau_conventions"]["weighted_tau_by_truth"]
    ax = res.figure.axes[0]
    assert ax.get_xlabel() == "target" and ax.get_ylabel().startswith("regret")
    assert [p.get_height() for p in ax.patches] == [3.0, 10.0]
    _written(res.write(tmp_path), "zoo")


def test_zoo_single_target_and_errors():
    res = zoo_selection({"a": 2.0, "b": 1.0}, {"a": 0.9, "b": 0.8}, True, plot=False)
    assert res.rows[0]["top1_hit"] and res.rows[0]["regret"] == 0.0
    with pytest.raises(TaskrelInputError, match="`higher_is_better` must be a bool"):
        zoo_selection({"a": 1, "b": 2}, {"a": 1, "b": 2}, "yes")
    with pytest.raises(TaskrelInputError, match="at least 2 common encoders"):
        zoo_selection({"a": 1, "b": 2}, {"a": 1, "c": 2}, True, plot=False)
    with pytest.raises(TaskrelInputError, match="must both be"):
        zoo_selection({"t": {"a": 1}}, {"a": 1}, True, plot=False)


def _row(enc, tgt, fr, seed, est, value, seconds=None, **extra):
    return {"encoder": enc, "reference": "ref", "target": tgt, "fraction": fr,
            "seed": seed, "estimator": est, "value": value, "seconds": seconds,
            "extra": extra}


def _sweep_rows():
    rng = np.random.default_rng(0)
    cells = [(e, t) for e in "abcd" for t in ("t1", "t2")]
    truth = {c: 50 + 40 * rng.random() for c in cells}
    rows = []
    for (e, t) in cells:
        for s in (0, 1):  # ground truth at fraction 1.0, two seeds (averaged)
            rows.append(_row(e, t, 1.0, s, "finetune", truth[(e, t)] + s, seconds=30.0))
        for fr in (0.1, 1.0):
            for s in (0, 1):
                noise = (3.0 if fr == 0.1 else 0.5) * rng.normal()
                rows.append(_row(e, t, fr, s, "lo", -truth[(e, t)] / 10 + noise,
                                 seconds=0.5 + fr))
    return rows


def test_few_label_sweep_by_hand(tmp_path):
    rows = _sweep_rows()
    res = few_label_sweep(rows, orientation={"lo": False}, method="spearman")
    # recompute: truth = mean over the two seeds at fraction 1.0; per (fraction, seed),
    # minus the Spearman correlation over the 8 cells (lower is better); mean/std
    tr = {}
    for r in rows:
        if r["estimator"] == "finetune":
            tr.setdefault((r["encoder"], r["target"]), []).append(r["value"])
    for fr in (0.1, 1.0):
        vals = []
        for s in (0, 1):
            rs = [r for r in rows if r["estimator"] == "lo" and r["fraction"] == fr
                  and r["seed"] == s]
            x = [r["value"] for r in rs]
            y = [np.mean(tr[(r["encoder"], r["target"])]) for r in rs]
            vals.append(-np.corrcoef(_avg_ranks(x), _avg_ranks(y))[0, 1])
        row = next(r for r in res.rows if r["fraction"] == fr)
        assert row["mean"] == pytest.approx(np.mean(vals), abs=1e-12)
        assert row["std"] == pytest.approx(np.std(vals, ddof=1), abs=1e-12)
        assert row["n_seeds"] == 2 and row["n_cells"] == 8
    ax = res.figure.axes[0]
    assert ax.get_xscale() == "log"
    assert ax.get_xlabel() == "fraction of target training data"
    assert ax.get_ylabel() == "spearman correlation with finetune accuracy"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["lo"]
    _written(res.write(tmp_path), "sweep")
    with pytest.raises(TaskrelInputError, match="orientation of estimator 'lo' is unknown"):
        few_label_sweep(rows, plot=False)
    with pytest.raises(TaskrelInputError, match=r"`rows\[0\]` must be a mapping"):
        few_label_sweep([{"value": 1}], plot=False)


def test_pair_with_truth_matched_fraction():
    rows = [_row("a", "t", 0.5, 0, "x", 1.0), _row("a", "t", 0.5, 0, "finetune", 70.0),
            _row("a", "t", 1.0, 0, "finetune", 80.0), _row("a", "t", 1.0, 1, "finetune", 90.0),
            _row("b", "t", 0.5, 0, "x", None)]
    assert pair_with_truth(rows, "x")[0]["truth"] == 85.0  # mean of seeds at 1.0
    assert pair_with_truth(rows, "x", truth_fraction=None)[0]["truth"] == 70.0
    assert len(pair_with_truth(rows, "x")) == 1  # a missing value is dropped


def test_zoo_from_rows_averages_seeds():
    rows = _sweep_rows()
    res = zoo_selection_from_rows(rows, orientation={"lo": False}, plot=False)
    for r in res.rows:
        t = r["target"]
        sc = {e: np.mean([x["value"] for x in rows if x["estimator"] == "lo"
                          and x["target"] == t and x["encoder"] == e
                          and x["fraction"] == 1.0]) for e in "abcd"}
        gt = {e: np.mean([x["value"] for x in rows if x["estimator"] == "finetune"
                          and x["target"] == t and x["encoder"] == e]) for e in "abcd"}
        pick = min(sc, key=sc.get)
        assert r["pick"] == pick
        assert r["regret"] == pytest.approx(max(gt.values()) - gt[pick])


def test_decomposition_by_hand(tmp_path):
    results = [
        {"target": "near", "reweighted_reference_loss": 0.30, "label_mismatch": 0.10,
         "distribution_mismatch": 2.0, "lipschitz": 0.05, "bound": 0.50,
         "transfer_loss": 0.35},
        {"target": "far", "reweighted_reference_loss": 0.40, "label_mismatch": 0.60,
         "distribution_mismatch": 4.0, "lipschitz": 0.25, "bound": 2.00},
    ]
    res = decomposition_plot(results, {"far": 2.10})
    near, far = res.rows
    assert near["lipschitz_x_w1"] == pytest.approx(0.10)
    assert near["gap"] == pytest.approx(0.15) and near["bound_holds"] is True
    assert far["transfer_loss"] == 2.10 and far["bound_holds"] is False
    assert res.summary == {"n_targets": 2, "n_with_transfer_loss": 2,
                           "bound_held_everywhere": False, "n_violations": 1}
    ax = res.figure.axes[0]
    assert ax.get_ylabel() == "loss (nats)" and ax.get_xlabel() == "target"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["reweighted reference loss", "label mismatch", "Lipschitz x W1",
                      "transfer loss (probe)"]
    heights = [round(p.get_height(), 6) for p in ax.patches]
    assert heights == [0.3, 0.4, 0.1, 0.6, 0.1, 1.0, 0.35, 2.1]
    _written(res.write(tmp_path), "decomposition")
    # the bound is the sum of the terms when not given
    nob = decomposition_plot({"t": {k: v for k, v in results[1].items() if k != "bound"}},
                             plot=False)
    assert nob.rows[0]["bound"] == pytest.approx(0.4 + 0.6 + 1.0)
    assert nob.rows[0]["bound_holds"] is None
    with pytest.raises(TaskrelInputError, match=r"lacks \['lipschitz'\]"):
        decomposition_plot({"t": {"reweighted_reference_loss": 1, "label_mismatch": 1,
                                  "distribution_mismatch": 1}})


def test_cost_table_by_hand(tmp_path):
    rows = _sweep_rows()
    res = cost_table(rows)
    lo = next(r for r in res.rows if r["estimator"] == "lo")
    # 'lo' cells: 8 cells x 2 seeds at 0.1 (0.6 s) and at 1.0 (1.5 s)
    assert lo["n_cells"] == 32 and lo["mean_seconds"] == pytest.approx((0.6 + 1.5) / 2)
    assert lo["total_seconds"] == pytest.approx(16 * 0.6 + 16 * 1.5)
    assert lo["x_finetune"] == pytest.approx(1.05 / 30.0)
    assert res.summary["finetune_mean_seconds"] == 30.0
    ax = res.figure.axes[0]
    assert ax.get_xlabel() == "seconds per cell (mean)" and ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["lo", "finetune"]
    _written(res.write(tmp_path), "cost")
    with pytest.raises(TaskrelInputError, match="carry no 'seconds'"):
        cost_table([_row("a", "t", 1.0, 0, "x", 1.0)])
    assert math.isfinite(lo["median_seconds"])
