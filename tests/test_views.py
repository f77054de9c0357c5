"""The per-cell exports and the field's three views, on hand-made rows whose
statistics are known by hand or in closed form (no data, no network)."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr, weightedtau

from taskrel.cli import main
from taskrel.exceptions import TaskrelInputError
from taskrel.experiments.store import ResultsStore
from taskrel.experiments.views import (
    CELLS_COLUMNS,
    RECOMPUTE_SCRIPT,
    TRUTH_COLUMNS,
    cells_table,
    cluster_resample,
    compute_views,
    targets_table,
    truth_table,
    views_markdown,
    write_views,
)

ROOT = Path(__file__).resolve().parents[1]
ENCS = ("a", "b", "c", "d")
TGTS = ("t1", "t2", "t3")
#: finetune accuracy per (encoder, target); the best encoder changes with the target.
ACC = {"a": (0.50, 0.60, 0.90), "b": (0.60, 0.90, 0.70),
       "c": (0.70, 0.50, 0.60), "d": (0.90, 0.70, 0.50)}


def _row(enc, tgt, est, value, *, seed=0, fraction=1.0, extra=None):
    return {"encoder": enc, "reference": "ref", "target": tgt, "fraction": fraction,
            "seed": seed, "estimator": est, "value": value, "extra": extra or {}}


def _rows(score, *, est="logme", seeds=(0, 1), fractions=(1.0,)):
    """Truth rows (linear probe, logreg, finetune) from ACC, and ``est`` rows with
    ``score(enc, target_index, seed)``."""
    out = []
    for e in ENCS:
        for j, t in enumerate(TGTS):
            acc = ACC[e][j]
            for s in seeds:
                out.append(_row(e, t, "linear_probe", acc, seed=s,
                                extra={"loss": -math.log(acc)}))
                out.append(_row(e, t, "logreg", acc, seed=s))
                for f in fractions:
                    out.append(_row(e, t, est, score(e, j, s), seed=s, fraction=f))
            out.append(_row(e, t, "finetune", acc))
        out.append(_row(e, "reference", "finetune", 0.95))  # the reference's own truth
    return out


def _views(rows, **kw):
    return compute_views(cells_table(rows), truth_table(rows), **kw)


def _ms(views, truth="finetune_acc", est="logme"):
    return views["model_selection"][est][truth]


def test_exports_have_the_issue_columns_and_map_the_truths():
    rows = _rows(lambda e, j, s: ACC[e][j]) + [
        _row("a", "t1", "finetune", 0.3, fraction=0.5),           # not at fraction 1
        _row("a", "t1", "leep", None, extra={"not_applicable": "no head"})]
    cells, truth = cells_table(rows), truth_table(rows)
    assert all(tuple(r) == CELLS_COLUMNS for r in cells)
    assert all(tuple(r) == TRUTH_COLUMNS for r in truth)
    assert {r["estimator"] for r in cells} == {"logme", "leep"}
    leep = [r for r in cells if r["estimator"] == "leep"]
    assert leep[0]["value"] is None and leep[0]["higher_is_better"] is True
    names = {r["truth"] for r in truth}
    assert names == {"tau_probe_acc", "tau_probe_loss", "logreg_acc", "finetune_acc"}
    loss = [r for r in truth if r["truth"] == "tau_probe_loss" and r["encoder"] == "a"
            and r["target"] == "t1"]
    assert loss[0]["value"] == pytest.approx(-math.log(0.5))
    ft = [r for r in truth if r["truth"] == "finetune_acc"]
    assert 0.3 not in [r["value"] for r in ft]                    # fraction 0.5 dropped
    assert [r["value"] for r in ft if r["target"] == "reference"] == [0.95] * 4
    assert targets_table({"t2": 3, "t1": 10}) == [{"target": "t1", "n_classes": 10},
                                                  {"target": "t2", "n_classes": 3}]
    with pytest.raises(TaskrelInputError, match=r"n_classes\['t1'\]"):
        targets_table({"t1": 1})


def test_agreeing_estimator_tau_one_regret_zero_reversed_minus_one():
    v = _views(_rows(lambda e, j, s: ACC[e][j]), n_boot=200)
    ms = _ms(v)
    assert ms["weighted_tau"]["value"] == pytest.approx(1.0)
    assert ms["pearson"]["value"] == pytest.approx(1.0)
    assert ms["regret"] == {"value": 0.0, "ci_low": 0.0, "ci_high": 0.0}
    assert ms["top1"]["value"] == 1.0 and ms["n_targets"] == 3
    # The loss truth is oriented (negated) too: a perfect accuracy ranker agrees.
    assert _ms(v, "tau_probe_loss")["weighted_tau"]["value"] == pytest.approx(1.0)
    rv = _ms(_views(_rows(lambda e, j, s: -ACC[e][j]), n_boot=200))
    assert rv["weighted_tau"]["value"] == pytest.approx(-1.0)
    # The reversed pick is the worst encoder: regret 0.9 - 0.5 on every target.
    assert rv["regret"]["value"] == pytest.approx(0.4) and rv["top1"]["value"] == 0.0
    # A lower-is-better estimator is negated before the statistic.
    rows = [dict(r, estimator="task_relatedness") if r["estimator"] == "logme" else r
            for r in _rows(lambda e, j, s: -ACC[e][j])]
    tr = _ms(_views(rows, n_boot=200), est="task_relatedness")
    assert tr["weighted_tau"]["value"] == pytest.approx(1.0)


def test_weighted_tau_and_regret_match_scipy_per_target():
    rng = np.random.default_rng(3)
    noise = {(e, j): rng.normal() * 0.15 for e in ENCS for j in range(3)}
    v = _views(_rows(lambda e, j, s: ACC[e][j] + noise[e, j]), n_boot=300)
    taus, regrets = [], []
    for j in range(3):
        est = np.array([ACC[e][j] + noise[e, j] for e in ENCS])
        tru = np.array([ACC[e][j] for e in ENCS])
        taus.append(weightedtau(est, tru).statistic)
        regrets.append(tru.max() - tru[np.argmax(est)])
    ms = _ms(v)
    assert ms["weighted_tau"]["value"] == pytest.approx(np.mean(taus), abs=1e-12)
    assert ms["regret"]["value"] == pytest.approx(np.mean(regrets), abs=1e-12)
    lo, hi = ms["weighted_tau"]["ci_low"], ms["weighted_tau"]["ci_high"]
    assert min(taus) - 1e-12 <= lo <= ms["weighted_tau"]["value"] <= hi <= max(taus) + 1e-12


def test_seeds_are_averaged_before_the_statistic():
    # Seed 1 alone reverses the order of a and d; the seed means agree with the truth.
    def score(e, j, s):
        base = ACC[e][j]
        if s == 0:
            return base + {"a": -5.0, "d": 5.0}.get(e, 0.0)
        return base + {"a": 4.9, "d": -4.9}.get(e, 0.0)

    ms = _ms(_views(_rows(score), n_boot=100))
    assert ms["weighted_tau"]["value"] == pytest.approx(1.0)
    per_seed = []
    for s in (0, 1):
        per_seed += [weightedtau([score(e, j, s) for e in ENCS],
                                 [ACC[e][j] for e in ENCS]).statistic for j in range(3)]
    assert np.mean(per_seed) < 0.9


def test_targets_with_fewer_than_three_encoders_are_skipped_and_counted():
    rows = [r for r in _rows(lambda e, j, s: ACC[e][j])
            if not (r["estimator"] == "logme" and r["target"] == "t3"
                    and r["encoder"] in ("a", "b"))]
    ms = _ms(_views(rows, n_boot=50))
    assert ms["n_targets"] == 2 and ms["n_targets_skipped"] == 1
    # Three encoders with both values still count.
    rows = [r for r in _rows(lambda e, j, s: ACC[e][j])
            if not (r["estimator"] == "logme" and r["target"] == "t3"
                    and r["encoder"] == "a")]
    assert _ms(_views(rows, n_boot=50))["n_targets"] == 3


def test_within_encoder_and_normalised_truth():
    K = {"t1": 2, "t2": 5, "t3": 10}
    norm = {(e, j): (ACC[e][j] - 1 / K[t]) / (1 - 1 / K[t])
            for e in ENCS for j, t in enumerate(TGTS)}
    v = _views(_rows(lambda e, j, s: norm[e, j]), targets=K, n_boot=200)
    w = v["within_encoder"]["logme"]["finetune_acc"]
    assert w["pearson_normalized"]["value"] == pytest.approx(1.0)
    assert w["spearman_normalized"]["value"] == pytest.approx(1.0)
    for e in ENCS:
        x = [norm[e, j] for j in range(3)]
        y = list(ACC[e])
        assert w["per_encoder"][e]["pearson"] == pytest.approx(pearsonr(x, y)[0])
        assert w["per_encoder"][e]["spearman"] == pytest.approx(spearmanr(x, y)[0])
    assert w["pearson"]["value"] == pytest.approx(
        np.mean([w["per_encoder"][e]["pearson"] for e in ENCS]))
    # No normalised truth for the loss; no K -> null with a reason.
    assert "pearson_normalized" not in v["within_encoder"]["logme"]["tau_probe_loss"]
    v2 = _views(_rows(lambda e, j, s: norm[e, j]), n_boot=20)
    s = v2["within_encoder"]["logme"]["finetune_acc"]["pearson_normalized"]
    assert s["value"] is None and s["reason"]


def test_cluster_resample_draws_encoders_and_targets_not_rows():
    idx = cluster_resample(5, 7, 200, np.random.default_rng(0))
    assert idx.shape == (200, 35)
    partial = 0
    for row in idx:
        encs, tgts = set(row // 7), set(row % 7)
        # every pair of the drawn encoders and targets, nothing else
        assert set(row) == {e * 7 + t for e in encs for t in tgts}
        assert len(set(row)) == len(encs) * len(tgts)
        partial += len(encs) < 5 or len(tgts) < 7
    assert partial > 190  # it does resample


def test_pooled_ci_is_the_cluster_bootstrap():
    rng = np.random.default_rng(1)
    noise = {(e, j): rng.normal() * 0.2 for e in ENCS for j in range(3)}
    v = _views(_rows(lambda e, j, s: ACC[e][j] + noise[e, j]), n_boot=300, seed=4)
    p = v["pooled"]["logme"]["finetune_acc"]
    E = np.array([[ACC[e][j] + noise[e, j] for j in range(3)] for e in ENCS]).ravel()
    T = np.array([ACC[e] for e in ENCS]).ravel()
    assert p["pearson"]["value"] == pytest.approx(pearsonr(E, T)[0])
    assert p["spearman"]["value"] == pytest.approx(spearmanr(E, T)[0])
    assert p["n_pairs"] == 12
    idx = cluster_resample(4, 3, 300, np.random.default_rng(4))
    reps = []
    for row in idx:
        x, y = E[row], T[row]
        if np.ptp(x) > 0 and np.ptp(y) > 0:
            reps.append(pearsonr(x, y)[0])
    lo, hi = np.percentile(reps, [2.5, 97.5])
    assert p["pearson"]["ci_low"] == pytest.approx(lo)
    assert p["pearson"]["ci_high"] == pytest.approx(hi)


def test_few_label_uses_the_full_data_truth():
    # At fraction 0.1 the estimator is reversed; at 1.0 it agrees.
    rows = []
    for fr, sign in ((0.1, -1.0), (1.0, 1.0)):
        rows += [r for r in _rows(lambda e, j, s: sign * ACC[e][j], fractions=(fr,))
                 if r["estimator"] == "logme" or fr == 1.0]
    fl = _views(rows, n_boot=50)["few_label"]["logme"]["finetune_acc"]
    assert set(fl) == {"0.1", "1"}
    assert fl["0.1"]["weighted_tau"]["value"] == pytest.approx(-1.0)
    assert fl["1"]["weighted_tau"]["value"] == pytest.approx(1.0)
    assert fl["0.1"]["regret"]["value"] == pytest.approx(0.4)


def test_strict_json_null_and_reason_never_nan():
    rows = _rows(lambda e, j, s: 1.0)  # a constant estimator: no tau, no correlation
    rows += [_row(e, t, "h_score", None) for e in ENCS for t in TGTS]
    v = _views(rows, n_boot=50)
    json.dumps(v, allow_nan=False)
    ms = _ms(v)
    assert ms["weighted_tau"]["value"] is None and ms["weighted_tau"]["reason"]
    # ties: the first encoder (a) is picked; regrets 0.4, 0.3, 0.0
    assert ms["regret"]["value"] == pytest.approx(0.7 / 3)
    h = _ms(v, est="h_score")
    assert h["n_targets"] == 0 and "no target" in h["weighted_tau"]["reason"]
    assert v["pooled"]["h_score"]["finetune_acc"]["pearson"]["value"] is None
    assert "reference" not in v["meta"]["targets"]


def test_write_views_files_and_recompute_script_agree(tmp_path):
    rng = np.random.default_rng(0)
    noise = {(e, j, s): rng.normal() * 0.2 for e in ENCS for j in range(3)
             for s in (0, 1)}
    rows = _rows(lambda e, j, s: ACC[e][j] + noise[e, j, s], fractions=(0.5, 1.0))
    rows += [dict(r, estimator="otce", value=-r["value"]) for r in rows
             if r["estimator"] == "logme"]
    v = write_views(rows, tmp_path, n_classes={"t1": 2, "t2": 3, "t3": 4}, n_boot=100)
    for name, cols in (("cells", CELLS_COLUMNS), ("truth", TRUTH_COLUMNS),
                       ("targets", ("target", "n_classes"))):
        with open(tmp_path / f"{name}.csv") as f:
            assert tuple(next(csv.reader(f))) == cols
    assert json.loads((tmp_path / "views.json").read_text()) == v
    assert (tmp_path / "views_model_selection.png").read_bytes()[:4] == b"\x89PNG"
    # Recomputing from the CSV files alone gives the same views.
    with open(tmp_path / "cells.csv") as f1, open(tmp_path / "truth.csv") as f2, \
            open(tmp_path / "targets.csv") as f3:
        again = compute_views(list(csv.DictReader(f1)), list(csv.DictReader(f2)),
                              list(csv.DictReader(f3)), n_boot=100)
    assert again == v
    out = subprocess.run([sys.executable, str(ROOT / "docs/results/recompute_views.py"),
                          str(tmp_path)], capture_output=True, text=True, check=True)
    worst = float(out.stdout.strip().splitlines()[-1].split(":")[-1])
    assert worst < 0.01
    # 2 estimators and the static ranker x 4 truths
    assert len(out.stdout.strip().splitlines()) == 1 + 3 * 4
    md = "\n".join(views_markdown(v))
    assert "The field's three views" in md and RECOMPUTE_SCRIPT.strip() in md
    assert "| otce |" in md


def test_docs_script_is_the_packaged_one():
    assert (ROOT / "docs/results/recompute_views.py").read_text() == RECOMPUTE_SCRIPT


def test_cli_results_views(tmp_path, capsys):
    db = tmp_path / "s.sqlite"
    with ResultsStore(db) as st:
        for r in _rows(lambda e, j, s: ACC[e][j]):
            st.put({k: r[k] for k in ("encoder", "reference", "target", "fraction",
                                      "seed", "estimator")}, r["value"],
                   extra=r["extra"])
    assert main(["results", "views", str(db), "--out", str(tmp_path / "v"),
                 "--n-boot", "50"]) == 0
    assert "logme" in capsys.readouterr().out
    v = json.loads((tmp_path / "v" / "views.json").read_text())
    assert v["model_selection"]["logme"]["finetune_acc"]["weighted_tau"]["value"] == \
        pytest.approx(1.0)


def test_transfer_truth_gives_fixed_encoders_their_probe_and_is_absent_without_them():
    # Encoders c and d are fixed (never fine-tuned): on the targets with fine-tuning
    # (t1, t2) transfer_acc is finetune_acc for a, b and logreg_acc for c, d; t3 has no
    # fine-tuning at all and gets no transfer truth.
    ft = {("a", "t1"): 0.9, ("b", "t1"): 0.8, ("a", "t2"): 0.5, ("b", "t2"): 0.7}
    rows = []
    for e in ENCS:
        for j, t in enumerate(TGTS):
            rows.append(_row(e, t, "logreg", ACC[e][j]))
            rows.append(_row(e, t, "logme", ACC[e][j]))
            if (e, t) in ft:
                rows.append(_row(e, t, "finetune", ft[(e, t)]))
    v = _views(rows, n_boot=20)
    assert _ms(v, "finetune_acc")["n_targets"] == 0       # 2 trainable encoders only
    tr = _ms(v, "transfer_acc")
    assert tr["n_targets"] == 2 and tr["n_targets_skipped"] == 1
    want = {"t1": {"a": 0.9, "b": 0.8, "c": 0.70, "d": 0.90},
            "t2": {"a": 0.5, "b": 0.7, "c": 0.50, "d": 0.70}}
    taus = [weightedtau([ACC[e][j] for e in ENCS], [want[t][e] for e in ENCS])[0]
            for j, t in enumerate(("t1", "t2"))]
    assert tr["weighted_tau"]["value"] == pytest.approx(np.mean(taus))
    # Every encoder fine-tuned: the derived truth would repeat finetune_acc; not added.
    full = _views(_rows(lambda e, j, s: ACC[e][j]), n_boot=20)
    assert "transfer_acc" not in full["model_selection"]["logme"]
