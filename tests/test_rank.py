"""``taskrel rank`` / ``taskrel.rank``: the acceptance cases of issue 15 on small data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from taskrel.cli import main
from taskrel.ranking import (
    DEFAULT_ESTIMATORS,
    DEFAULT_LABEL_FREE,
    consensus_ranks,
    explain,
)


def _digits_folder(root, n=300, classes=None):
    from PIL import Image
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    idx = np.random.default_rng(0).permutation(len(y))[:n]
    for i in idx:
        if classes is not None and y[i] not in classes:
            continue
        d = root / str(y[i])
        d.mkdir(parents=True, exist_ok=True)
        img = (X[i].reshape(8, 8) * 255 / 16).astype(np.uint8)
        Image.fromarray(img).resize((32, 32)).save(d / f"{i}.png")
    return root


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TASKREL_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


FAST = ["--reference", "digits", "--image-size", "32", "--max-reference", "400",
        "--device", "cpu", "--quiet"]


def test_image_folder_ranks_pretrained_above_random(tmp_path, cache, capsys):
    target = _digits_folder(tmp_path / "digits")
    out = tmp_path / "out.json"
    argv = ["rank", str(target), "--encoders", "effnet_lite0,effnet_lite0_random",
            "--json", str(out), "--out", str(tmp_path / "o"), *FAST]
    assert main(argv) == 0
    got = json.loads(out.read_text())
    names = [r["encoder"] for r in got["ranking"]]
    assert names == ["effnet_lite0", "effnet_lite0_random"]
    for r in got["ranking"]:
        assert set(r["values"]) == set(DEFAULT_ESTIMATORS)
        for k in ("reweighted_reference_loss", "label_mismatch", "lipschitz_x_w1"):
            assert np.isfinite(r["terms"][k])
        assert r["why"]
    assert (tmp_path / "o" / "ranking.png").stat().st_size > 1000
    assert (tmp_path / "o" / "decomposition.png").stat().st_size > 1000
    text = capsys.readouterr().out
    assert "lower is better" in text and "why:" in text
    # The rerun reads the ranking cache: same rows, no extraction.
    assert main(argv) == 0
    again = json.loads(out.read_text())
    assert again["from_cache"] is True and not got["from_cache"]
    assert again["ranking"] == got["ranking"]


def _texts(rng, topics, n):
    words = {"sport": "goal match team score league coach player win",
             "food": "pasta sauce bake recipe salad cheese soup spice",
             "weather": "rain storm sunny cloud wind snow forecast cold",
             "music": "guitar song band album concert drum melody singer",
             "money": "bank stock price market loan interest trade fund"}
    rows = []
    for i in range(n):
        t = topics[i % len(topics)]
        w = rng.choice(words[t].split(), size=6)
        rows.append((" ".join(["the"] + list(w) + ["today"]), t))
    return rows


def _csv(path, rows):
    import csv

    with open(path, "w", newline="", encoding="utf-8") as f:
        wr = csv.writer(f)
        wr.writerow(["sentence", "topic"])
        wr.writerows(rows)
    return path


def test_csv_text_target_with_minilm_and_glove(tmp_path, cache):
    rng = np.random.default_rng(0)
    tgt = _csv(tmp_path / "t.csv", _texts(rng, ["sport", "food", "weather"], 90))
    ref = _csv(tmp_path / "r.csv", _texts(rng, ["music", "money", "sport"], 120))
    out = tmp_path / "r.json"
    rc = main(["rank", str(tgt), "--encoders", "minilm,glove_mean", "--text-col",
               "sentence", "--label-col", "topic", "--reference", str(ref),
               "--estimators", "logme,pactran_gaussian,task_relatedness", "--json",
               str(out), "--csv", str(tmp_path / "r.csv.out"), "--device", "cpu",
               "--quiet"])
    assert rc == 0
    got = json.loads(out.read_text())
    assert sorted(r["encoder"] for r in got["ranking"]) == ["glove_mean", "minilm"]
    # Every estimator asked for votes, task-relatedness included.
    assert got["voters"] == ["logme", "pactran_gaussian", "task_relatedness"]
    assert all(r["values"]["task_relatedness"] is not None for r in got["ranking"])
    assert "consensus_rank" in (tmp_path / "r.csv.out").read_text()


def _bad_png(root):
    _digits_folder(root, n=60)
    (root / "3" / "broken.png").write_bytes(b"not an image")
    return root


@pytest.mark.parametrize("case, encoders, match", [
    ("empty", "effnet_lite0", "no class sub-folders"),
    ("one_class", "effnet_lite0", "1 class"),
    ("unreadable", "effnet_lite0", "1 unreadable image"),
    ("ok", "effnet_lite9", "got 'effnet_lite9' (did you mean"),
    ("ok", "hf:no-such-org/no-such-model", "no local weights"),
])
def test_bad_inputs_exit_2_with_one_line(tmp_path, cache, capsys, monkeypatch, case,
                                         encoders, match):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    root = tmp_path / case
    if case == "empty":
        root.mkdir()
    elif case == "one_class":
        _digits_folder(root, n=100, classes={3})
    elif case == "unreadable":
        _bad_png(root)
    else:
        _digits_folder(root, n=60)
    rc = main(["rank", str(root), "--encoders", encoders, *FAST])
    err = capsys.readouterr().err
    assert rc == 2
    assert len(err.strip().splitlines()) == 1, err
    assert match in err and "Traceback" not in err


def test_unknown_estimator_and_target_fail_before_encoding(tmp_path, cache, capsys):
    assert main(["rank", "no_such_dataset", "--encoders", "effnet_lite0", *FAST]) == 2
    assert "packaged dataset" in capsys.readouterr().err
    assert main(["rank", "digits", "--encoders", "effnet_lite0", "--estimators",
                 "logmee", *FAST]) == 2
    assert "logme" in capsys.readouterr().err
    assert not (cache / "features").exists()


def test_consensus_ranks_are_oriented_and_ties_average():
    v = {"a": {"x": 1.0, "y": 2.0}, "b": {"x": 1.0, "y": 2.0},
         "c": {"x": 3.0, "y": 1.0}}
    for given in (["a", "b", "c"], ["b", "a", "c"]):
        ranks, cons, order = consensus_ranks(v, given, {"x": True, "y": False},
                                             ["x", "y"], lead="y")
        assert ranks["c"] == {"x": 1, "y": 1}
        assert ranks["a"]["x"] == ranks["b"]["x"] == 2.5  # equal values: average rank
        assert cons == {"a": 2.5, "b": 2.5, "c": 1.0}
        assert order == ["c", "a", "b"]  # a complete tie: by name, not given order


def test_explain_names_the_dominant_term_and_w1_extremes():
    def row(name, w1, lab):
        t = {"bound": 1.0 + lab + w1, "reweighted_reference_loss": 1.0,
             "label_mismatch": lab, "lipschitz_x_w1": w1, "distribution_mismatch": w1,
             "reference_accuracy": 0.9}
        return {"encoder": name, "terms": t, "ranks": {"s": 1}}

    rows = [row("a", 0.5, 3.0), row("b", 4.0, 0.0)]
    wa = explain(rows[0], rows, n_reference_classes=10, voters=["s"])
    wb = explain(rows[1], rows, n_reference_classes=10, voters=["s"])
    assert "closest to the reference's features" in wa
    assert "large label mismatch" in wa and "67% from label mismatch" in wa
    assert "farthest from the reference's features" in wb and "from L x W1" in wb


def test_python_api_label_free_with_a_torch_module(tmp_path):
    import torch

    import taskrel
    from taskrel.data import from_arrays

    X, y = _digit_arrays(200)
    ds = from_arrays(X, y, name="digits200")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.AdaptiveAvgPool2d(2),
                              torch.nn.Flatten())
    r = taskrel.rank(ds, [net, "effnet_lite0_random"], labels=False, reference="digits",
                     image_size=32, max_reference=300, device="cpu",
                     cache_dir=tmp_path / "c", progress=False)
    assert isinstance(r, taskrel.Ranking) and len(r.rows) == 2
    # The label-free defaults vote (ETran's energy needs >= 200 rows at its default:
    # where the target has fewer, its row says why and task-relatedness votes alone).
    assert r.estimators == DEFAULT_LABEL_FREE and "task_relatedness" in r.voters
    for row in r.rows:
        assert np.isfinite(row["terms"]["bound"]) and row["why"]
        assert set(row["values"]) == set(DEFAULT_LABEL_FREE)
    # A labelled estimator asked for in label-free mode says why it is missing.
    r = taskrel.rank(ds, [net, "effnet_lite0_random"], labels=False, reference="digits",
                     estimators="knn_accuracy,task_relatedness", image_size=32,
                     max_reference=300, device="cpu", cache_dir=tmp_path / "c",
                     progress=False)
    assert r.voters == ("task_relatedness",)
    for row in r.rows:
        assert "label-free" in row["not_computed"]["knn_accuracy"]
    assert {row["encoder"].split(":")[0] for row in r.rows} == {"module",
                                                                 "effnet_lite0_random"}


def _digit_arrays(n):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    img = (X[:n].reshape(-1, 8, 8) * 255 / 16).astype(np.uint8)
    return np.kron(img, np.ones((1, 4, 4), np.uint8)), y[:n]


def test_remote_model_without_local_weights_fails_within_10_s(monkeypatch):
    import time

    from taskrel.encoders import load_encoder
    from taskrel.exceptions import TaskrelInputError

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    t0 = time.perf_counter()
    with pytest.raises(TaskrelInputError, match="no local weights.*download=True"):
        load_encoder("hf:no-such-org/no-such-model", device="cpu")
    assert time.perf_counter() - t0 < 10.0


def test_default_voters_follow_the_labels_switch():
    # The defaults are the benchmark's measured best (docs/results/default_selection.md):
    # with labels every default votes, task-relatedness included; without labels only
    # estimators that read no label are defaults.
    from taskrel.ranking import DEFAULT_LABEL_FREE, _check_estimators
    from taskrel.experiments.views import label_free

    assert _check_estimators(None) == DEFAULT_ESTIMATORS
    assert _check_estimators(None, labels=False) == DEFAULT_LABEL_FREE
    assert all(label_free(e) or e == "task_relatedness" for e in DEFAULT_LABEL_FREE)
    assert _check_estimators("knn_accuracy", labels=False) == ("knn_accuracy",)
