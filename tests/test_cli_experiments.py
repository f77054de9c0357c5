"""A small real grid on digits through run_grid, the store, and the CLI analyses."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

from taskrel.cli import main
from taskrel.experiments import parse_config, run_grid
from taskrel.features.finetune import linear_probe_cell
from taskrel.heads import Standardizer
from taskrel.relatedness import auto_tau, task_relatedness
from taskrel.experiments.store import ResultsStore

_X, _Y = load_digits(return_X_y=True)
_TR, _TE = slice(0, 900), slice(900, None)
_PCA = {k: PCA(k, random_state=0).fit(_X[_TR]) for k in (2, 8)}
_TARGETS = {"d0-4": [0, 1, 2, 3, 4], "d5-9": [5, 6, 7, 8, 9], "d-odd": [1, 3, 5, 7, 9]}


def _encode(name, X):
    if name == "pixels":
        return X
    if name == "rowmeans":
        return X.reshape(-1, 8, 8).mean(2)
    return _PCA[int(name[3:])].transform(X)


def _task(enc, target, fraction, seed):
    F, Fte = _encode(enc, _X[_TR]), _encode(enc, _X[_TE])
    m, mte = np.isin(_Y[_TR], _TARGETS[target]), np.isin(_Y[_TE], _TARGETS[target])
    X, y = F[m], _Y[_TR][m]
    if fraction < 1:
        keep = np.random.default_rng(seed).permutation(len(y))[: int(fraction * len(y))]
        X, y = X[keep], y[keep]
    return X, y, Fte[mte], _Y[_TE][mte]


def digits_cell(cell):
    """Real cells on digits: cheap estimators, a shrinkage-LDA truth, and the
    task-relatedness bound with its probe (reference: all ten digits)."""
    X, y, Xte, yte = _task(cell.encoder, cell.target, cell.fraction, cell.seed)
    if cell.estimator == "fisher":  # between-class / total variance (higher is better)
        mu = np.stack([X[y == k].mean(0) for k in np.unique(y)])
        return float(mu.var(0).sum() / X.var(0).sum())
    if cell.estimator == "centroid":  # nearest-centroid training accuracy
        ks = np.unique(y)
        mu = np.stack([X[y == k].mean(0) for k in ks])
        pred = ks[((X[:, None] - mu[None]) ** 2).sum(-1).argmin(1)]
        return float(np.mean(pred == y))
    if cell.estimator == "lda":  # ground truth for this test: held-out accuracy
        clf = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit(X, y)
        return {"value": float(clf.score(Xte, yte)), "extra": {"n_train": len(y)}}
    R, ry = _encode(cell.encoder, _X[_TR]), _Y[_TR]
    if cell.estimator == "task_relatedness":
        r = task_relatedness(R, ry, X, y, seed=cell.seed, device="cpu")
        return {"value": r.bound, "extra": r.to_dict()}
    if cell.estimator == "linear_probe":  # the bound's own tau (auto on the reference)
        tau = auto_tau(Standardizer.fit(R).transform(R), ry)
        return linear_probe_cell(X, y, Xte, yte, tau=tau, seed=cell.seed, device="cpu")
    raise ValueError(cell.estimator)


@pytest.fixture(scope="module")
def digits_db(tmp_path_factory):
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # two threads oversubscribe a shared 2-core machine
    try:
        db = tmp_path_factory.mktemp("grid") / "digits.sqlite"
        cheap = parse_config({
            "name": "digits-mini", "reference": "digits", "targets": list(_TARGETS),
            "encoders": ["pixels", "pca8", "pca2", "rowmeans"],
            "estimators": ["fisher", "centroid"], "fractions": [0.2, 1.0],
            "seeds": [0, 1], "ground_truth": {"estimators": ["lda"]}})
        bound = parse_config({
            "name": "digits-bound", "reference": "digits", "targets": list(_TARGETS),
            "encoders": ["pca8"], "estimators": ["task_relatedness"], "seeds": [0],
            "ground_truth": {"estimators": ["linear_probe"]}})
        with ResultsStore(db) as st:
            r1 = run_grid(cheap, digits_cell, st, progress=False)
            r2 = run_grid(bound, digits_cell, st, progress=False)
        assert r1.ok and r2.ok
        # 4 encoders x 3 targets x (2 estimators x 2 fractions x 2 seeds + 2 truths) + 6
        assert r1.computed == 4 * 3 * (2 * 2 * 2 + 2) and r2.computed == 6
        yield db
    finally:
        torch.set_num_threads(n)


def test_results_export(digits_db, tmp_path, capsys):
    out = tmp_path / "rows.csv"
    assert main(["results", "export", str(digits_db), str(out)]) == 0
    assert "wrote 126 rows" in capsys.readouterr().out
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 126
    assert main(["results", "export", str(tmp_path / "none.sqlite"), str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_analyze_correlation_matches_store(digits_db, tmp_path, capsys):
    rc = main(["analyze", "correlation", str(digits_db), "--out", str(tmp_path),
               "--estimator", "fisher", "--truth", "lda", "--n-boot", "200"])
    assert rc == 0
    js = json.loads((tmp_path / "correlation.json").read_text())
    with ResultsStore(digits_db) as st:
        truth = {(r["encoder"], r["target"]): [] for r in st.query(estimator="lda")}
        for r in st.query(estimator="lda"):
            truth[(r["encoder"], r["target"])].append(r["value"])
        xs = st.query(estimator="fisher", fraction=1.0)
    x = [r["value"] for r in xs]
    y = [np.mean(truth[(r["encoder"], r["target"])]) for r in xs]
    assert js["summary"]["n"] == 24  # 4 encoders x 3 targets x 2 seeds
    assert js["summary"]["pearson"] == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-12)
    assert (tmp_path / "correlation.png").stat().st_size > 2000
    assert '"pearson"' in capsys.readouterr().out


def test_analyze_zoo_sweep_cost(digits_db, tmp_path, capsys):
    args = ["--truth", "lda", "--higher-is-better", "fisher", "centroid"]
    assert main(["analyze", "zoo", str(digits_db), "--out", str(tmp_path),
                 "--estimators", "fisher", "centroid", *args]) == 0
    zoo = json.loads((tmp_path / "zoo.json").read_text())
    assert {r["estimator"] for r in zoo["rows"]} == {"fisher", "centroid"}
    assert len(zoo["rows"]) == 6 and all(r["regret"] >= 0 for r in zoo["rows"])
    assert main(["analyze", "sweep", str(digits_db), "--out", str(tmp_path),
                 "--estimators", "fisher", "centroid", *args]) == 0
    sweep = json.loads((tmp_path / "sweep.json").read_text())
    assert {(r["estimator"], r["fraction"]) for r in sweep["rows"]} == {
        (e, f) for e in ("fisher", "centroid") for f in (0.2, 1.0)}
    # matched truth: the truth rows only exist at fraction 1.0, so only 1.0 remains
    assert main(["analyze", "sweep", str(digits_db), "--out", str(tmp_path / "m"),
                 "--truth-fraction", "matched", "--estimators", "fisher", *args]) == 0
    matched = json.loads((tmp_path / "m" / "sweep.json").read_text())
    assert [r["fraction"] for r in matched["rows"]] == [1.0]
    assert main(["analyze", "cost", str(digits_db), "--out", str(tmp_path)]) == 0
    cost = json.loads((tmp_path / "cost.json").read_text())
    assert {r["estimator"] for r in cost["rows"]} >= {"fisher", "task_relatedness"}
    for name in ("zoo", "sweep", "cost"):
        assert (tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    # task-relatedness ran on one encoder only: no selection, and the summary says so
    assert main(["analyze", "zoo", str(digits_db), "--out", str(tmp_path / "z"), *args,
                 "--lower-is-better", "task_relatedness"]) == 0
    z2 = json.loads((tmp_path / "z" / "zoo.json").read_text())
    assert z2["summary"]["skipped_estimators"] == ["task_relatedness"]
    # an estimator of unknown orientation is an error naming the flag
    assert main(["analyze", "zoo", str(digits_db), "--out", str(tmp_path),
                 "--truth", "lda", "--estimators", "fisher"]) == 2
    assert "--lower-is-better" in capsys.readouterr().err


def test_analyze_decomposition(digits_db, tmp_path):
    assert main(["analyze", "decomposition", str(digits_db), "--out", str(tmp_path),
                 "--encoder", "pca8"]) == 0
    js = json.loads((tmp_path / "decomposition.json").read_text())
    with ResultsStore(digits_db) as st:
        for row in js["rows"]:
            rel = st.query(estimator="task_relatedness", target=row["target"])[0]
            probe = st.query(estimator="linear_probe", target=row["target"])[0]
            e = rel["extra"]
            assert row["bound"] == pytest.approx(rel["value"])
            assert row["bound"] == pytest.approx(
                e["reweighted_reference_loss"] + e["label_mismatch"]
                + e["lipschitz"] * e["distribution_mismatch"], rel=1e-9)
            assert row["transfer_loss"] == pytest.approx(probe["extra"]["loss"])
            assert row["bound_holds"] == (row["bound"] >= row["transfer_loss"])
    assert len(js["rows"]) == 3
    assert (tmp_path / "decomposition.png").stat().st_size > 2000
