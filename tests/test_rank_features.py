"""``taskrel rank --features`` / ``taskrel.rank(features=...)`` (issue 23, item 3) and
reference-independent target-only estimators with ``balanced`` (item 7), on
scikit-learn's digits (synthetic arrays only for the error paths)."""

from __future__ import annotations

import json
import re
import warnings

import numpy as np
import pytest

from taskrel import AssumptionWarning, TaskrelInputError
from taskrel.cli import main
from taskrel.ranking import balanced_estimators, rank
from taskrel.scores import knn_accuracy, sfda

EST = "knn_accuracy,sfda,regularized_h_score,task_relatedness"
TARGET_ONLY = ("knn_accuracy", "sfda", "regularized_h_score")


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    return load_digits(return_X_y=True)


@pytest.fixture
def files(tmp_path, digits):
    """Three candidates' features of the same 300 target digits: pixels (with
    reference rows: 400 other digits), even pixels (no reference), odd pixels as a
    bare .npy (labels apart)."""
    X, y = digits
    Xt, yt, Xr, yr = X[:300], y[:300], X[1000:1400], y[1000:1400]
    np.savez(tmp_path / "pixels.npz", features=Xt, labels=yt, reference_features=Xr,
             reference_labels=yr)
    np.savez(tmp_path / "even.npz", features=Xt[:, ::2], labels=yt)
    np.save(tmp_path / "odd.npy", Xt[:, 1::2])
    np.save(tmp_path / "y.npy", yt)
    return tmp_path


def _by(got):
    return {r["encoder"]: r for r in got["ranking"]}


# ---------------------------------------------------------------------------------
# the CLI
# ---------------------------------------------------------------------------------
def test_cli_npz_and_npy_with_labels_file(files, capsys):
    out = files / "r.json"
    rc = main(["rank", "--features", f"{files / 'pixels.npz'},{files / 'even.npz'},"
               f"{files / 'odd.npy'}", "--labels", str(files / "y.npy"), "--estimators",
               EST, "--feature-dim", "16", "--device", "cpu", "--quiet", "--json",
               str(out), "--out", str(files / "o")])
    assert rc == 0
    text = capsys.readouterr().out
    assert "why:" in text and "no reference rows for this candidate" in text
    got = json.loads(out.read_text())
    by = _by(got)
    assert set(by) == {"pixels", "even", "odd"}
    assert got["voters"] == list(TARGET_ONLY)
    for name, row in by.items():
        assert all(row["values"][e] is not None for e in TARGET_ONLY), name
        assert row["votes"] == 3 and row["feature_dim"] == 16  # 64 / 32 columns, capped
    # Task-relatedness only where the file carries reference rows; said why elsewhere.
    assert by["pixels"]["values"]["task_relatedness"] is not None
    assert np.isfinite(by["pixels"]["terms"]["bound"])
    for name in ("even", "odd"):
        assert by[name]["values"]["task_relatedness"] is None
        assert "reference_features" in by[name]["not_computed"]["task_relatedness"]
    assert "task_relatedness does not vote: computed for pixels only" in got["notes"]
    assert got["target"]["rows"] == 300 and got["target"]["classes"] == 10
    assert got["reference"]["rows"] == 400
    assert (files / "o" / "ranking.png").stat().st_size > 1000
    assert (files / "o" / "decomposition.png").stat().st_size > 1000
    assert "consensus_rank" in (files / "o" / "ranking.csv").read_text()


def test_cli_names_and_a_dash_target(files):
    out = files / "n.json"
    assert main(["rank", "-", "--features", f"{files / 'pixels.npz'},{files / 'even.npz'}",
                 "--names", "model_a,model_b", "--estimators", "knn_accuracy",
                 "--device", "cpu", "--quiet", "--json", str(out)]) == 0
    assert set(_by(json.loads(out.read_text()))) == {"model_a", "model_b"}


@pytest.mark.parametrize("argv, match", [
    (["{d}/pixels.npz,{d}/short.npz"], "short.npz has 299 target rows but .*pixels.npz "
     "has 300; every candidate must hold the same target rows"),
    (["{d}/pixels.npz,{d}/relabelled.npz"], "labels of .*relabelled.npz differ from those "
     "of .*pixels.npz at 1 of 300 rows .*first at row 5"),
    (["{d}/odd.npy"], "target labels are missing .*--labels FILE"),
    (["{d}/pixels.npz", "--labels", "{d}/y_short.npy"], "`labels` must have one row per "
     "target row \\(300\\); got 299"),
    (["{d}/pixels.npz,{d}/pixels.npz"], "named \\['pixels'\\] more than once"),
    (["{d}/pixels.npz,{d}/even.npz", "--names", "a"], "`--names` must give 2 distinct"),
    (["{d}/pixels.npz", "--reference", "digits"], "`--reference` does not go with"),
    (["{d}/pixels.npz", "--encoders", "effnet_lite0"], "`--encoders` does not go with"),
    (["{d}/nan.npz"], "nan.npz features` must be finite; got 1 NaN"),
    (["{d}/pickled.npy", "--labels", "{d}/y.npy"], "pickled Python object"),
    (["{d}/missing.npz"], "missing.npz' does not exist"),
    (["{d}/y.txt"], "must end in .npz, .npy, .parquet"),
])
def test_cli_bad_features_exit_2_with_one_line(files, digits, capsys, argv, match):
    X, y = digits
    np.savez(files / "short.npz", features=X[:299], labels=y[:299])
    y2 = y[:300].copy()
    y2[5] = (y2[5] + 1) % 10
    np.savez(files / "relabelled.npz", features=X[:300], labels=y2)
    np.save(files / "y_short.npy", y[:299])
    Xn = X[:300].copy()
    Xn[3, 3] = np.nan
    np.savez(files / "nan.npz", features=Xn, labels=y[:300])
    np.save(files / "pickled.npy", np.array({"features": 1}, dtype=object),
            allow_pickle=True)
    (files / "y.txt").write_text("1\n2\n")
    args = [a.format(d=files) for a in argv]
    rc = main(["rank", "--features", *args, "--device", "cpu", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    assert re.search(match, err), err


def test_cli_a_target_needs_encoders_and_labels_go_with_features(capsys):
    assert main(["rank", "digits", "--device", "cpu", "--quiet"]) == 2
    assert "give a TARGET and --encoders, or --features" in capsys.readouterr().err
    assert main(["rank", "digits", "--encoders", "effnet_lite0", "--labels", "y.npy"]) == 2
    assert "`--labels` goes with --features" in capsys.readouterr().err


def test_parquet_list_column_and_numeric_columns(tmp_path, digits):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    X, y = digits
    Xt, yt = X[:300], y[:300]
    pq.write_table(pa.table({"digit": yt, "features": [list(r) for r in Xt[:, ::2]]}),
                   tmp_path / "listcol.parquet")
    pq.write_table(pa.table({**{f"px{i}": Xt[:, i] for i in range(1, 64, 2)},
                             "digit": yt}), tmp_path / "columns.parquet")
    out = tmp_path / "p.json"
    assert main(["rank", "--features", f"{tmp_path / 'listcol.parquet'},"
                 f"{tmp_path / 'columns.parquet'}", "--label-col", "digit", "--estimators",
                 "knn_accuracy", "--device", "cpu", "--quiet", "--json", str(out)]) == 0
    by = _by(json.loads(out.read_text()))
    # The same features through .parquet and through arrays give the same values.
    direct = rank(features={"listcol": Xt[:, ::2], "columns": Xt[:, 1::2]}, labels=yt,
                  estimators="knn_accuracy", device="cpu", progress=False)
    for r in direct.rows:
        assert by[r["encoder"]]["values"] == r["values"]


# ---------------------------------------------------------------------------------
# the Python API
# ---------------------------------------------------------------------------------
def test_api_arrays_tasks_and_reference_mapping(digits):
    from sklearn.linear_model import LogisticRegression

    from taskrel.io import Task

    X, y = digits
    Xt, yt = X[:300], y[:300]
    # A "source head": a classifier trained on other digits, its probabilities on the
    # target rows (what LEEP reads).
    head = LogisticRegression(max_iter=2000).fit(X[600:900, ::2], y[600:900] % 5)
    probs = head.predict_proba(Xt[:, ::2])
    r = rank(features={"pixels": Xt, "even": Task(features=Xt[:, ::2], labels=yt,
                                                  source_probs=probs)},
             labels=yt, reference={"pixels": (X[1000:1400], y[1000:1400])},
             estimators="knn_accuracy,leep,task_relatedness", feature_dim=16,
             device="cpu", progress=False)
    by = {row["encoder"]: row for row in r.rows}
    assert by["even"]["values"]["leep"] is not None
    assert "no classifier head" in by["pixels"]["not_computed"]["leep"]
    assert by["pixels"]["values"]["task_relatedness"] is not None
    assert by["even"]["values"]["task_relatedness"] is None
    assert r.options["labels"] is True and r.from_cache is False


@pytest.mark.parametrize("kwargs, match", [
    (dict(features={"a": np.ones(10)}, labels=np.arange(10) % 2),
     r"features\['a'\] features` must be 2-D .* got shape \(10,\)"),
    (dict(features={"a": [[1.0, 2.0]] * 6}, labels=[0, 1, 0, 1, 0]),
     r"`labels` must have one row per target row \(6\); got 5"),
    (dict(features={"a": np.eye(6)}, labels=np.arange(6) % 2,
          reference={"a": (np.eye(5, 4), [0, 1, 0, 1, 0])}),
     r"reference\['a'\] features` must have the target features' dimension \(6"),
    (dict(features={"a": np.eye(6)}, labels=np.arange(6) % 2,
          reference={"b": (np.eye(6), np.arange(6) % 2)}),
     r"`reference` names \['b'\], which are not candidates"),
    (dict(features={"a": np.eye(6)}, labels=np.arange(6) % 2, reference="digits"),
     "with `features`, `reference` must be a mapping"),
    (dict(features={"a": np.eye(6)}, labels=np.array([[0, 1], [1, 0], [0, 1]])),
     r"`labels` must be 1-D .* got shape \(3, 2\)"),
    (dict(features={"a": np.eye(6), "b": np.eye(7)}, labels=np.arange(6) % 2),
     r"features\['b'\] has 7 target rows but features\['a'\] has 6"),
    (dict(features=np.eye(6), labels=np.arange(6) % 2),
     "`features` must be a mapping name -> array"),
    (dict(features={"a": np.eye(6)}, labels=np.arange(6) % 2, target="digits"),
     "either `features` .* or `target` and `encoders`, not both"),
    (dict(target="digits", encoders="effnet_lite0", labels=np.arange(6)),
     "`labels` is True or False with them"),
    (dict(features={"a": np.eye(6)}, labels=np.arange(6) % 2, balanced="yes"),
     "`balanced` must be True or False; got 'yes'"),
    (dict(features={"a": np.eye(6)}, labels=[0, 0, 0, 0, 0, 1]),
     r"class\(es\) \['1'\] have 1 training row"),
])
def test_api_bad_input_names_the_argument(kwargs, match):
    with pytest.raises(TaskrelInputError, match=match):
        rank(**kwargs, estimators="knn_accuracy", device="cpu", progress=False)


def test_label_free_features_without_labels(digits):
    X, _ = digits
    r = rank(features={"pixels": X[:200], "even": X[:200, ::2]}, labels=False,
             estimators="knn_accuracy,rankme", device="cpu", progress=False)
    assert r.voters == ("rankme",)
    for row in r.rows:
        assert "label-free" in row["not_computed"]["knn_accuracy"]
        assert row["values"]["rankme"] is not None


# ---------------------------------------------------------------------------------
# the same answer as the model path
# ---------------------------------------------------------------------------------
def _digit_images(X):
    img = (X.reshape(-1, 8, 8) * 255 / 16).astype(np.uint8)
    return np.kron(img, np.ones((1, 4, 4), np.uint8))


def _nets():
    import torch

    nets = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        nets.append(torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3),
                                        torch.nn.AdaptiveAvgPool2d(2),
                                        torch.nn.Flatten()))
    return nets


def test_features_of_the_model_path_give_the_model_paths_ranking(tmp_path, digits):
    from taskrel.data import from_arrays
    from taskrel.features.extract import extract_task
    from taskrel.ranking import resolve_encoders

    X, y = digits
    tgt = from_arrays(_digit_images(X[:250]), y[:250], name="digits250")
    ref = from_arrays(_digit_images(X[1000:1300]), y[1000:1300], name="ref300")
    kw = dict(estimators=EST, max_reference=300, max_target=1000, feature_dim=8,
              device="cpu", progress=False)
    encs = resolve_encoders(_nets(), "image", device="cpu", image_size=32)
    model = rank(tgt, encs, reference=ref, image_size=32, cache_dir=tmp_path / "c", **kw)
    paths = []
    for enc in encs:  # exactly the rows and features the model path computed
        t = extract_task(enc, tgt, split="train", limit=1000, cache_dir=tmp_path / "c",
                         device="cpu", progress=False, with_source_probs=False)
        r = extract_task(enc, ref, split="train", limit=300, cache_dir=tmp_path / "c",
                         device="cpu", progress=False, with_source_probs=False)
        paths.append(tmp_path / f"{enc.name.replace(':', '_')}.npz")
        np.savez(paths[-1], features=t.features, labels=t.labels,
                 reference_features=r.features, reference_labels=r.labels)
        assert t.features.shape[1] == 32  # wider than feature_dim: both projections run
    given = rank(features={e.name: p for e, p in zip(encs, paths)}, **kw)
    assert [r["encoder"] for r in given.rows] == [r["encoder"] for r in model.rows]
    for a, b in zip(model.rows, given.rows):
        assert a["ranks"] == b["ranks"] and a["consensus_rank"] == b["consensus_rank"]
        for e in EST.split(","):
            np.testing.assert_allclose(b["values"][e], a["values"][e], rtol=1e-12)
        assert a["terms"].keys() == b["terms"].keys()
        for k, v in a["terms"].items():
            if v is None:  # e.g. pseudo_label_accuracy, with target labels
                assert b["terms"][k] is None
            else:
                np.testing.assert_allclose(b["terms"][k], v, rtol=1e-12)
        assert a["why"] == b["why"]


# ---------------------------------------------------------------------------------
# target-only estimators do not depend on the reference
# ---------------------------------------------------------------------------------
def test_target_only_values_do_not_depend_on_the_reference_arrays(digits):
    X, y = digits
    Xt, yt = X[:300], y[:300]
    feats = {"pixels": Xt, "even": Xt[:, ::2]}

    def run(rows, shift):
        refs = {n: (X[rows][:, sl], (y[rows] + shift) % 10)
                for n, sl in (("pixels", slice(None)), ("even", slice(None, None, 2)))}
        return {r["encoder"]: r for r in rank(
            features=feats, labels=yt, reference=refs, estimators=EST, feature_dim=16,
            device="cpu", progress=False).rows}

    # Two different reference tasks: other digits, and yet other digits relabelled.
    a, b = run(slice(800, 1100), 0), run(slice(1400, 1700), 3)
    for name in feats:
        for e in TARGET_ONLY:
            assert a[name]["values"][e] == b[name]["values"][e], (name, e)
        assert a[name]["values"]["task_relatedness"] != \
            b[name]["values"]["task_relatedness"]
    # And they are the scores of the target's own projection, with no reference.
    alone = {r["encoder"]: r for r in rank(features=feats, labels=yt, estimators=EST,
                                           feature_dim=16, device="cpu",
                                           progress=False).rows}
    for name in feats:
        assert {e: alone[name]["values"][e] for e in TARGET_ONLY} == \
            {e: a[name]["values"][e] for e in TARGET_ONLY}


def test_target_only_values_do_not_depend_on_the_reference_task(tmp_path, digits):
    """The model path: the same encoders and target against two reference tasks."""
    from taskrel.data import from_arrays

    X, y = digits
    tgt = from_arrays(_digit_images(X[:200]), y[:200], name="digits200")
    # Two different reference tasks: other digits, and yet other digits relabelled.
    refs = [from_arrays(_digit_images(X[rows]), (y[rows] + shift) % 10, name=n)
            for n, rows, shift in (("other", slice(800, 1000), 0),
                                   ("relabelled", slice(1400, 1600), 3))]
    got = [{r["encoder"]: r for r in rank(
        tgt, _nets(), reference=ref, estimators=EST, image_size=32, max_reference=200,
        feature_dim=8, device="cpu", cache_dir=tmp_path, progress=False).rows}
        for ref in refs]
    assert set(got[0]) == set(got[1]) and len(got[0]) == 2
    for name in got[0]:
        for e in TARGET_ONLY:
            assert got[0][name]["values"][e] == got[1][name]["values"][e], (name, e)
        assert got[0][name]["values"]["task_relatedness"] != \
            got[1][name]["values"]["task_relatedness"]


def test_own_projection_is_deterministic_and_sign_fixed(digits):
    from taskrel.io import Task
    from taskrel.ranking import _own_projection

    X, y = digits
    a = _own_projection(Task(features=X[:300], labels=y[:300]), 10).features
    again = _own_projection(Task(features=X[:300], labels=y[:300]), 10).features
    b = _own_projection(Task(features=-X[:300], labels=y[:300]), 10).features
    assert a.shape == (300, 10)
    np.testing.assert_array_equal(a, again)
    # The directions of -X are those of X up to the SVD's arbitrary signs; the sign
    # rule fixes them, so -X projects to exactly minus X's projection.
    np.testing.assert_allclose(b, -a, rtol=1e-9, atol=1e-9)
    # Fewer rows than the cap: the zero-variance directions are dropped.
    assert _own_projection(Task(features=X[:6], labels=y[:6]), 10).features.shape[1] <= 5


# ---------------------------------------------------------------------------------
# balanced
# ---------------------------------------------------------------------------------
def test_balanced_knn_by_hand():
    # 1-D, k=1 (the nearest other row votes). Class 0: 0, 1.1, 2.3, 3.6; class 1: 10,
    # 11, 4.0. Nearest others: 0->1.1 (0 ok), 1.1->0 (0 ok), 2.3->1.1 (0 ok),
    # 3.6->4.0 (1, wrong), 10->11 (1 ok), 11->10 (1 ok), 4.0->3.6 (0, wrong).
    # Accuracy 5/7; per-class recall 3/4 and 2/3; balanced (3/4 + 2/3) / 2 = 17/24.
    X = [[0.0], [1.1], [2.3], [3.6], [10.0], [11.0], [4.0]]
    y = [0, 0, 0, 0, 1, 1, 1]
    assert knn_accuracy(X, y, k=1) == pytest.approx(5 / 7, abs=1e-15)
    assert knn_accuracy(X, y, k=1, balanced=True) == pytest.approx(17 / 24, abs=1e-15)


def test_balanced_scores_equal_the_plain_ones_on_equal_classes(digits):
    X, y = digits
    idx = np.concatenate([np.flatnonzero(y == c)[:30] for c in range(10)])
    assert sfda(X[idx], y[idx], balanced=True) == pytest.approx(sfda(X[idx], y[idx]),
                                                                rel=1e-12)
    assert knn_accuracy(X[idx], y[idx], balanced=True) == pytest.approx(
        knn_accuracy(X[idx], y[idx]), rel=1e-12)


def test_class_weighted_sfda_ignores_a_class_repeated(digits):
    # Every row of class 0 twice: the class means, the class covariances and each
    # row's posterior are unchanged, so the class-weighted score is too; the plain
    # score (class 0 now 2x as frequent) moves.
    X, y = digits
    X, y = X[:300], y[:300]
    Xd, yd = np.vstack([X, X[y == 0]]), np.concatenate([y, y[y == 0]])
    np.testing.assert_allclose(sfda(Xd, yd, balanced=True), sfda(X, y, balanced=True),
                               rtol=1e-9)
    assert abs(sfda(Xd, yd) - sfda(X, y)) > 1e-4


def test_rank_balanced_uses_the_balanced_scores_and_says_which(digits):
    from taskrel.io import Task
    from taskrel.ranking import _own_projection

    X, y = digits
    keep = np.flatnonzero((y[:600] >= 5) | (np.arange(600) % 6 == 0))  # 0-4 thinned
    Xt, yt = X[keep], y[keep]
    assert balanced_estimators() == ("knn_accuracy", "sfda")
    r = rank(features={"pixels": Xt}, labels=yt, balanced=True, feature_dim=16,
             estimators="knn_accuracy,sfda,regularized_h_score", device="cpu",
             progress=False)
    own = _own_projection(Task(features=Xt, labels=yt), 16).features
    v = r.rows[0]["values"]
    assert v["knn_accuracy"] == knn_accuracy(own, yt, balanced=True)
    assert v["sfda"] == sfda(own, yt, balanced=True)
    assert v["knn_accuracy"] != knn_accuracy(own, yt)
    assert r.options["balanced"] is True
    assert any("knn_accuracy, sfda weigh every class the same; regularized_h_score "
               "cannot" in n for n in r.notes)


def test_imbalanced_target_warns_unless_balanced(digits, files):
    X, y = digits
    keep = np.flatnonzero((y[:600] != 0) | (np.arange(600) % 8 == 0))  # class 0: ~7
    Xt, yt = X[keep], y[keep]
    counts = np.bincount(yt)
    assert counts.max() > 3 * counts.min()
    kw = dict(features={"pixels": Xt}, labels=yt, estimators="knn_accuracy",
              device="cpu", progress=False)
    with pytest.warns(AssumptionWarning, match="imbalanced.*pass --balanced"):
        rank(**kw)
    with warnings.catch_warnings():
        warnings.simplefilter("error", AssumptionWarning)
        rank(**kw, balanced=True)
        rank(features={"pixels": X[:300]}, labels=y[:300], estimators="knn_accuracy",
             device="cpu", progress=False)  # balanced enough: no warning
    np.savez(files / "imb.npz", features=Xt, labels=yt)
    with pytest.warns(AssumptionWarning, match="--balanced"):
        assert main(["rank", "--features", str(files / "imb.npz"), "--estimators",
                     "knn_accuracy", "--device", "cpu", "--quiet"]) == 0
