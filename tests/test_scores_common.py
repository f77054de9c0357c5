"""Registry-driven checks run on every registered score (sklearn common-test style)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from taskrel.io import Task, load_task, save_task
from taskrel.scores import compute_score, get_score, list_scores

ALL = list_scores()
# Keyword overrides that keep the slow estimators quick on toy data, or make them
# defined there: etran_energy averages int(percent * 10) * n // 1000 samples, none
# of the 36 at its default percent=0.5 (3 at 10).
FAST = {"task_relatedness": dict(max_iter=5), "etran_energy": dict(percent=10.0)}
SCALE_INVARIANT = {"h_score", "regularized_h_score", "gbc", "knn_accuracy", "nce",
                   "leep", "ot_nce"}


def _data(seed, n_per=12, C=3, d=5, Cs=4):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(C), n_per)
    X = 2.0 * np.eye(C, d)[y] + rng.normal(size=(y.size, d))
    Xs = 2.0 * np.eye(C, d)[y] + rng.normal(size=(y.size, d))
    logits = rng.normal(size=(y.size, Cs)) + 2.0 * np.eye(C, Cs)[y]
    P = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return dict(features=X, labels=y, source_probs=P, source_labels=P.argmax(axis=1),
                source_features=Xs, source_labels_task=y)


def _args(name, D, transform=lambda a: a):
    out = []
    for kind in get_score(name).inputs:
        if kind == "source_task":
            out += [transform(D["source_features"]), transform(D["source_labels_task"])]
        else:
            out.append(transform(D[kind]))
    return out


def _call(name, D, transform=lambda a: a):
    return get_score(name).func(*_args(name, D, transform), **FAST.get(name, {}))


def test_registry_lists_all_issue_names():
    expected = {"logme", "leep", "nce", "h_score", "regularized_h_score", "transrate",
                "gbc", "sfda", "nleep", "pactran_gaussian", "otce", "ot_nce",
                "knn_accuracy", "task_relatedness"}
    assert expected <= set(ALL)
    for name in ALL:
        spec = get_score(name)
        assert isinstance(spec.higher_is_better, bool)
        assert spec.summary and "\n" not in spec.summary and spec.paper
        assert set(spec.inputs) <= {"features", "labels", "source_probs",
                                    "source_labels", "source_task"}
        assert spec.func.__doc__ and "Returns" in spec.func.__doc__


def test_unknown_name_suggests_closest():
    with pytest.raises(ValueError, match=r"got 'logmee' \(did you mean 'logme'\?\)"):
        get_score("logmee")


@pytest.mark.parametrize("name", ALL)
def test_finite_float_deterministic_float32_and_lists(name, global_random_seed):
    D = _data(global_random_seed)
    v = _call(name, D)
    assert type(v) is float and np.isfinite(v)
    assert _call(name, D) == v  # deterministic
    v32 = _call(name, D, lambda a: a.astype(np.float32) if a.dtype.kind == "f" else a)
    np.testing.assert_allclose(v32, v, rtol=1e-3, atol=1e-4)
    if name != "task_relatedness":  # lists go through the same validation; skip a slow run
        np.testing.assert_allclose(_call(name, D, lambda a: a.tolist()), v, rtol=1e-12)


@pytest.mark.parametrize("name", [n for n in ALL if n != "task_relatedness"])
def test_invariances_and_no_mutation(name, global_random_seed):
    D = _data(global_random_seed)
    copies = {k: v.copy() for k, v in D.items()}
    v = _call(name, D)
    for k in D:
        np.testing.assert_array_equal(D[k], copies[k])  # inputs untouched
    # Relabelling with arbitrary non-contiguous ids changes nothing.
    ids = np.array([7, -3, 42])
    R = dict(D, labels=ids[D["labels"]], source_labels_task=ids[D["source_labels_task"]])
    np.testing.assert_allclose(_call(name, R), v, rtol=1e-9, atol=1e-12)
    # Sample order (of the target task) changes nothing, except where a seeded
    # subsample or an iterative fit started from data order is involved.
    if name not in {"nleep", "pactran_gaussian", "ot_nce", "otce"}:
        perm = np.random.default_rng(1).permutation(D["labels"].size)
        P = {k: (a[perm] if k in ("features", "labels", "source_probs", "source_labels")
                 else a) for k, a in D.items()}
        np.testing.assert_allclose(_call(name, P), v, rtol=1e-7, atol=1e-10)
    if name in SCALE_INVARIANT:
        S = dict(D, features=D["features"] * 37.0, source_features=D["source_features"] * 37.0)
        np.testing.assert_allclose(_call(name, S), v, rtol=1e-6, atol=1e-10)


@pytest.mark.parametrize("name", ALL)
def test_bad_input_messages(name):
    D = _data(0)
    kinds = get_score(name).inputs
    if "labels" in kinds:  # label-free scores (rankme, etran_energy) read no labels
        short = dict(D, labels=D["labels"][:-1])
        with pytest.raises(ValueError, match=r"inconsistent numbers of samples"):
            _call(name, short)
        one_class = dict(D, labels=np.zeros_like(D["labels"]))
        with pytest.raises(ValueError,
                           match=r"`(target_)?labels` must have at least 2 classes"):
            _call(name, one_class)
    if "features" in kinds:
        bad = D["features"].copy()
        bad[0, 0] = np.nan
        with pytest.raises(ValueError, match=r"features` must be finite"):
            _call(name, dict(D, features=bad))
    if "source_probs" in kinds:
        with pytest.raises(ValueError, match=r"`source_probs` rows must sum to 1"):
            _call(name, dict(D, source_probs=D["source_probs"] * 2))
    if "features" in kinds and "labels" in kinds and name not in ("leep", "nce"):
        lone = D["labels"].copy()
        lone[0] = 99  # a class with one sample
        with pytest.raises(ValueError, match=r"every class needs at least 2 samples"):
            _call(name, dict(D, labels=lone))


def test_compute_score_uses_task_arrays(tmp_path):
    D = _data(5)
    save_task(tmp_path / "t.npz", features=D["features"], labels=D["labels"],
              source_probs=D["source_probs"], test_features=D["features"][:3],
              test_labels=D["labels"][:3])
    save_task(tmp_path / "r.npz", features=D["source_features"], labels=D["labels"])
    task, ref = load_task(tmp_path / "t.npz"), load_task(tmp_path / "r.npz")
    assert task.source_probs is not None and ref.source_probs is None
    from taskrel.scores import leep, logme, nce, ot_nce

    assert compute_score("logme", task) == logme(D["features"], D["labels"])
    assert compute_score("leep", task) == leep(D["source_probs"], D["labels"])
    assert compute_score("nce", task) == nce(D["source_probs"].argmax(1), D["labels"])
    assert compute_score("ot_nce", task, source=ref, seed=3) == ot_nce(
        D["source_features"], D["labels"], D["features"], D["labels"], seed=3)
    with pytest.raises(ValueError, match=r"needs `source_probs`"):
        compute_score("leep", ref)
    with pytest.raises(ValueError, match=r"needs `source`"):
        compute_score("otce", task)
    with pytest.raises(ValueError, match=r"needs target labels"):
        compute_score("logme", Task(features=D["features"], labels=None))


def test_cli_score_and_scores(tmp_path, capsys):
    from taskrel.cli import main

    D = _data(6)
    save_task(tmp_path / "t.npz", features=D["features"], labels=D["labels"],
              source_probs=D["source_probs"])
    save_task(tmp_path / "r.npz", features=D["source_features"], labels=D["labels"])
    assert main(["scores"]) == 0
    out = capsys.readouterr().out
    assert all(n in out for n in ALL)
    rc = main(["score", "logme,leep,otce", str(tmp_path / "t.npz"), "--source",
               str(tmp_path / "r.npz"), "--json", str(tmp_path / "o.json")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "higher is better" in out and "lower is better" in out
    rows = json.loads((tmp_path / "o.json").read_text())["scores"]
    assert [r["score"] for r in rows] == ["logme", "leep", "otce"]
    from taskrel.scores import logme

    assert rows[0]["value"] == logme(D["features"], D["labels"])
    assert main(["score", "lgme", str(tmp_path / "t.npz")]) == 2
    assert "did you mean 'logme'" in capsys.readouterr().err
