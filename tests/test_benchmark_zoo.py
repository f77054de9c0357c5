"""The benchmark's zoo and ground truth (issue 12): the tuned logistic probe, converged
fine-tuning with the learning rate chosen on validation rows, intermediate-block and
source-fine-tuned encoders, reference-task truth cells and fine-tuning target subsets."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import taskrel
from taskrel.encoders import load_encoder
from taskrel.exceptions import TaskrelInputError
from taskrel.experiments.inputs import encoder_image_size, split_source
from taskrel.experiments.suite import REFERENCE_TARGET, expand_grid, parse_config
from taskrel.features.encoders.image import effnet_lite_encoder
from taskrel.features.finetune import finetune, finetune_selected, shift_augment


def _blobs(n=120, d=6, k=3, sep=2.5, seed=0):
    centers = np.random.default_rng(0).normal(size=(k, d)) * sep  # one task
    y = np.arange(n) % k
    return centers[y] + np.random.default_rng([seed, 1]).normal(size=(n, d)), y


# --------------------------------------------------------------------------- logreg
def test_logistic_probe_picks_c_on_validation_and_matches_sklearn_refit():
    from sklearn.linear_model import LogisticRegression

    X, y = _blobs()
    Xte, yte = _blobs(seed=1)
    p = taskrel.logistic_probe(X, y, Xte, yte, c_grid=(0.01, 1.0), seed=0)
    vals = p.settings["val_accuracies"]
    assert set(vals) == {"0.01", "1.0"}
    best = max((0.01, 1.0), key=lambda c: (vals[str(c)], -c))
    assert p.settings["C"] == best
    # Refit on all rows with the chosen C: the same accuracy as scikit-learn directly
    # on the features standardized with the training mean and (population) std.
    mu, sd = X.mean(0), X.std(0)
    m = LogisticRegression(C=best, max_iter=2000).fit((X - mu) / sd, y)
    acc = np.mean(m.predict((Xte - mu) / sd) == yte)
    assert p.accuracy == pytest.approx(acc, abs=1e-12)
    assert np.isnan(p.tau) and 0 < p.loss < np.log(3)


def test_logistic_probe_bad_inputs_name_the_argument():
    X, y = _blobs()
    for kw, name in (({"c_grid": ()}, "c_grid"), ({"val_fraction": 1.5}, "val_fraction"),
                     ({"c_grid": (-1.0,)}, "c_grid"), ({"seed": -1}, "seed")):
        with pytest.raises(TaskrelInputError, match=f"`{name}`"):
            taskrel.logistic_probe(X, y, X, y, **kw)
    with pytest.raises(TaskrelInputError, match="train_labels"):
        taskrel.logistic_probe(X[:4], np.array([0, 1, 2, 2]), X, y)


# --------------------------------------------------------------------------- finetune
def _mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh())


def test_finetune_selected_chooses_lr_on_validation_never_on_test():
    X, y = _blobs(n=150)
    Xte, yte = _blobs(n=60, seed=3)
    kw = dict(lrs=(1e-5, 1e-2), search_epochs=2, max_epochs=6, batch_size=16, device="cpu")
    r = finetune_selected(_mlp(), None, X, y, Xte, yte, **kw)
    rec = r.recipe
    # A rate of 1e-5 barely moves in 2 epochs: validation picks 1e-2.
    best = max(rec["lrs"], key=lambda v: (max(e["val_accuracy"] for e in
                                              rec["curves"][str(v)][:3]), -v))
    assert rec["lr"] == best
    assert rec["n_train"] + rec["n_val"] == 150 and rec["n_val"] == 30
    assert 0 <= rec["best_epoch"] <= rec["epochs"] <= 6
    # epoch 0 (the probe-initialised model, LP-FT) + the 2 search epochs; the loser
    # stops there
    loser = [v for v in rec["lrs"] if v != rec["lr"]][0]
    assert len(rec["curves"][str(loser)]) == 3
    assert rec["curves"]["1e-05"][0] == rec["curves"]["0.01"][0]  # same start
    assert r.test_accuracy > 0.8
    # The test split is read once, after selection: other test labels change nothing
    # but the test numbers.
    r2 = finetune_selected(_mlp(), None, X, y, Xte, np.roll(yte, 1), **kw)
    assert r2.recipe["curves"] == rec["curves"] and r2.recipe["lr"] == rec["lr"]


def test_finetune_selected_stops_on_plateau_and_flags_the_cap():
    X, y = _blobs(n=90, sep=6.0)
    r = finetune_selected(_mlp(), None, X, y, X[:10], y[:10], lrs=(1e-2,), search_epochs=1,
                          max_epochs=30, patience=2, batch_size=16, device="cpu")
    assert r.recipe["converged"] and r.recipe["epochs"] < 30
    assert r.recipe["epochs"] - r.recipe["best_epoch"] >= 2  # stopped after the plateau
    # Without the probe head the curve has no epoch 0.
    r0 = finetune_selected(_mlp(), None, X, y, X[:10], y[:10], lrs=(1e-2,), max_epochs=3,
                           probe_init=False, batch_size=16, device="cpu")
    assert r.recipe["curves"]["0.01"][0]["val_accuracy"] >= 0.9  # the probe start
    assert r0.recipe["head_init"] == "PyTorch default"
    capped = finetune_selected(_mlp(), None, X, y, X[:10], y[:10], lrs=(1e-2,),
                               search_epochs=1, max_epochs=1, device="cpu")
    assert capped.recipe["converged"] is False and capped.recipe["epochs"] == 1


def test_finetune_selected_bad_inputs():
    X, y = _blobs()
    with pytest.raises(TaskrelInputError, match="`lrs`"):
        finetune_selected(_mlp(), None, X, y, X, y, lrs=())
    with pytest.raises(TaskrelInputError, match="`max_epochs`"):
        finetune_selected(_mlp(), None, X, y, X, y, max_epochs=0)
    with pytest.raises(TaskrelInputError, match="`y_train`"):
        finetune_selected(_mlp(), None, X[:4], np.array([0, 1, 2, 2]), X, y)
    with pytest.raises(TaskrelInputError,
                       match=r"`probe_sd_floor` must be a number > 0; got -1"):
        finetune_selected(_mlp(), None, X, y, X, y, probe_sd_floor=-1)


def test_shift_augment_moves_pixels_within_bounds():
    x = torch.zeros(5, 1, 16, 16)
    x[:, :, 8, 8] = 1.0
    out = shift_augment(0.125)(x, np.random.default_rng(0))
    assert out.shape == x.shape and torch.all(out.sum((1, 2, 3)) == 1)
    ij = [tuple(int(v) for v in torch.nonzero(o[0])[0]) for o in out]
    assert all(abs(i - 8) <= 2 and abs(j - 8) <= 2 for i, j in ij)
    assert len(set(ij)) > 1  # per-image shifts
    with pytest.raises(TaskrelInputError, match="max_shift"):
        shift_augment(0.7)


# --------------------------------------------------------------------------- encoders
def test_intermediate_block_encoder():
    pytest.importorskip("efficientnet_lite_pytorch")
    enc = load_encoder("effnet_lite0_b11", image_size=32, device="cpu")
    f = enc.encode(np.zeros((2, 28, 28), np.uint8), progress=False)
    assert enc.name == "effnet_lite0_b11" and f.shape == (2, 112) and not enc.has_source_head
    with pytest.raises(TaskrelInputError, match="`blocks`"):
        effnet_lite_encoder(0, blocks=16, image_size=32)


def test_finetuned_effnet_roundtrip(tmp_path):
    pytest.importorskip("efficientnet_lite_pytorch")
    from taskrel.features.encoders.image import save_finetuned_effnet

    enc = load_encoder("effnet_lite0", image_size=32, device="cpu")
    rng = np.random.default_rng(0)
    x = (rng.random((8, 28, 28)) * 255).astype(np.uint8)
    y = np.arange(8) % 2
    r = finetune(enc.torch_module(), enc.preprocess, x, y, x, y, steps=1, batch_size=8,
                 device="cpu", return_module=True)
    path = save_finetuned_effnet(tmp_path / "ft.pt", enc, r.module, r.head,
                                 trained_on="toy", class_names=["a", "b"], recipe=r.recipe)
    back = load_encoder(f"effnet_ft:{path}", device="cpu")
    r.module.eval()
    with torch.no_grad():
        want = r.module(enc.preprocess(x)).numpy()
        want_p = torch.softmax(r.head(torch.as_tensor(want)).double(), 1).numpy()
    # Extraction folds the batch norms into the convolutions: float rounding, 1e-5 of
    # the features' scale (tests/test_extract_inference.py).
    np.testing.assert_allclose(back.encode(x, progress=False), want, rtol=1e-5,
                               atol=1e-5 * float(np.abs(want).max()))
    np.testing.assert_allclose(back.source_probs(x, progress=False), want_p, rtol=1e-5,
                               atol=1e-5)
    assert back.cache_key()["trained_on"] == "toy"
    (tmp_path / "bad.pt").write_text("no")
    with pytest.raises(TaskrelInputError, match="save_finetuned_effnet"):
        load_encoder(f"effnet_ft:{tmp_path / 'bad.pt'}", device="cpu")


# --------------------------------------------------------------------------- config
def _cfg(**gt):
    return parse_config({
        "name": "toy", "reference": "fashion_mnist", "targets": ["mnist5k", "digits"],
        "encoders": ["a", "b"], "estimators": ["logme"], "fractions": [0.5, 1.0],
        "seeds": [0, 1], "ground_truth": {"estimators": ["linear_probe", "finetune"], **gt},
        "finetune": {"image_size": 48},
        "options": {"image_sizes": {"a": 96}}})


def test_grid_with_reference_truths_and_finetune_targets():
    cfg = _cfg(reference=True, finetune_targets=["reference", "digits"], seeds=[0])
    cells = expand_grid(cfg)
    est = [c for c in cells if c.estimator == "logme"]
    assert len(est) == 2 * 2 * 2 * 2 and REFERENCE_TARGET not in {c.target for c in est}
    ft = sorted((c.encoder, c.target) for c in cells if c.estimator == "finetune")
    assert ft == [("a", "digits"), ("a", "reference"), ("b", "digits"), ("b", "reference")]
    lp = [c for c in cells if c.estimator == "linear_probe"]
    assert len(lp) == 2 * 3 and all(c.fraction == 1.0 for c in lp)
    assert cfg.target(REFERENCE_TARGET) is cfg.reference


def test_config_rejects_reserved_and_unknown_names():
    with pytest.raises(TaskrelInputError, match="finetune_targets"):
        _cfg(finetune_targets=["nope"])
    with pytest.raises(TaskrelInputError, match="ground_truth.reference"):
        _cfg(reference="yes")
    with pytest.raises(TaskrelInputError, match="reserved"):
        parse_config({"name": "t", "reference": "digits", "targets": ["reference"],
                      "encoders": ["a"], "estimators": []})


def test_source_names_and_resolutions():
    cfg = _cfg()
    assert split_source("smallcnn_on_mnist5k") == ("smallcnn", "mnist5k")
    assert encoder_image_size(cfg, "a") == 96
    assert encoder_image_size(cfg, "a_on_digits") == 96  # inherits its base's
    assert encoder_image_size(cfg, "b") == 48            # finetune.image_size


def test_reference_truth_table_keeps_a_truth_the_first_encoder_lacks(tmp_path):
    # A fixed encoder (sorted first here) has probes but no fine-tuning; the table must
    # still show the fine-tuned encoders' column, with "-" for the fixed one. Means
    # over seeds by hand: (0.74 + 0.76) / 2 = 0.75.
    from taskrel.experiments.report import _reference_truth_section

    rows = [{"encoder": "glove", "estimator": "logreg", "value": 0.60},
            {"encoder": "minilm", "estimator": "logreg", "value": 0.73},
            {"encoder": "minilm", "estimator": "finetune", "value": 0.74},
            {"encoder": "minilm", "estimator": "finetune", "value": 0.76}]
    md = "\n".join(_reference_truth_section(rows, tmp_path, {}))
    assert "| encoder | logreg | finetune |" in md
    assert "| glove | 0.600 | - |" in md and "| minilm | 0.730 | 0.750 |" in md


# --------------------------------------------------------------------------- checks
def _row(enc, tgt, est, v, seed=0):
    return {"encoder": enc, "target": tgt, "estimator": est, "value": v, "seed": seed,
            "fraction": 1.0}


def test_truth_checks_by_hand(tmp_path):
    from taskrel.experiments.truth_checks import (
        head_fallbacks,
        learning_curves_png,
        reference_floor,
        sanity_rule,
        winners,
    )

    rows = [_row("effnet_lite0", "reference", "logreg", 0.84),
            _row("effnet_lite1", "reference", "logreg", 0.79),
            _row("smallcnn", "reference", "logreg", 0.50),      # not ImageNet: not checked
            # seeds averaged first: finetune lite0/t1 = 0.80, logreg 0.83 -> gap -0.03
            _row("effnet_lite0", "t1", "finetune", 0.78), _row("effnet_lite0", "t1",
                                                               "finetune", 0.82, seed=1),
            _row("effnet_lite0", "t1", "logreg", 0.83),
            _row("effnet_lite1", "t1", "finetune", 0.90), _row("effnet_lite1", "t1",
                                                               "logreg", 0.91),
            _row("smallcnn", "t2", "finetune", 0.70), _row("effnet_lite1", "t2",
                                                           "finetune", 0.60)]
    f = reference_floor(rows)
    assert f["below"] == ["effnet_lite1"] and f["holds"] is False
    assert reference_floor([_row("minilm", "reference", "logreg", 0.7)])["holds"] is None
    r = sanity_rule(rows)
    assert (r["cells"], r["ok"], r["share"], r["holds"]) == (2, 1, 0.5, False)
    assert r["exceptions"] == [{"encoder": "effnet_lite0", "target": "t1", "finetune": 0.80,
                                "logreg": 0.83, "gap": -0.03}]
    w = winners(rows)
    # Neither column has all 3 fine-tuned encoders: no winner is counted.
    assert w["best"] == {} and w["partial"] == {"t1": 2, "t2": 2} and w["encoders"] == 3
    w = winners(rows + [_row("smallcnn", "t1", "finetune", 0.5)])
    assert w["best"] == {"t1": "effnet_lite1"} and w["partial"] == {"t2": 2}
    w = winners(rows + [_row("smallcnn", "t1", "finetune", 0.5),
                        _row("effnet_lite0", "t2", "finetune", 0.65)])
    assert w["best"] == {"t1": "effnet_lite1", "t2": "smallcnn"} and w["distinct"] == 2
    assert learning_curves_png(rows, tmp_path / "c.png") == 0  # no curves: no file
    rec = {"lr": 0.001, "best_epoch": 2, "converged": True,
           "curves": {"0.001": [{"epoch": 1, "val_accuracy": 0.5},
                                {"epoch": 2, "val_accuracy": 0.7}],
                      "0.0001": [{"epoch": 1, "val_accuracy": 0.3}]}}
    rows.append({**_row("smallcnn", "t1", "finetune", 0.7), "extra": {"recipe": rec}})
    assert learning_curves_png(rows, tmp_path / "c.png") == 1
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    # Kept epoch 0: a fallback to the LP-FT head; diverged when every rate's training
    # loss rose above 10x max(its epoch-0 loss, 0.1): here 0.1 -> 3.0 (30x) and
    # 0.1 -> 0.5 (5x), so not diverged (min over rates 5x); 0.1 -> 2.0 and -> 4.0: yes.
    def fall(curves):
        rec = {"best_epoch": 0, "curves": {lr: [{"epoch": i, "train_loss": v}
                                                for i, v in enumerate(c)]
                                           for lr, c in curves.items()}}
        return {**_row("minilm", "t1", "finetune", 0.6), "extra": {"recipe": rec}}
    assert head_fallbacks(rows) == []                   # smallcnn kept epoch 2
    got = head_fallbacks([fall({"a": [0.01, 3.0], "b": [0.02, 0.5]})])
    assert got == [{"encoder": "minilm", "target": "t1", "max_loss_ratio": 5.0,
                    "diverged": False}]
    got = head_fallbacks([fall({"a": [0.01, 2.0, 1.0], "b": [0.05, 4.0]})])
    assert got[0]["diverged"] is True and got[0]["max_loss_ratio"] == 20.0


# --------------------------------------------------------------------------- report-only
#: 3 encoders x 3 two-class digits targets, LogME against the logistic probe.
REPORT_ONLY_CONFIG = (
    'name = "s"\nreference = "digits"\nencoders = ["effnet_lite0", "effnet_lite1", '
    '"effnet_lite0_random"]\nestimators = ["logme"]\nfractions = [1.0]\nseeds = [0]\n'
    '[[targets]]\nname = "d01"\ndataset = "digits"\nclasses = [0, 1]\n'
    '[[targets]]\nname = "d23"\ndataset = "digits"\nclasses = [2, 3]\n'
    '[[targets]]\nname = "d45"\ndataset = "digits"\nclasses = [4, 5]\n'
    '[ground_truth]\nestimators = ["logreg"]\n')


def test_reproduce_report_only_renders_the_store_and_computes_nothing(tmp_path, capsys):
    from taskrel.cli import main
    from taskrel.experiments.store import Cell, ResultsStore

    cfg = tmp_path / "s.toml"
    cfg.write_text(REPORT_ONLY_CONFIG)
    db = tmp_path / "s.sqlite"
    with ResultsStore(db) as st:  # 3 encoders x 3 targets, one cell left out
        for i, enc in enumerate(("effnet_lite0", "effnet_lite1", "effnet_lite0_random")):
            for j, tgt in enumerate(("d01", "d23", "d45")):
                st.put(Cell(enc, "digits", tgt, 1.0, 0, "logreg"), 0.9 - 0.1 * i + 0.01 * j,
                       seconds=1.0)
                if (i, j) != (2, 2):
                    st.put(Cell(enc, "digits", tgt, 1.0, 0, "logme"), 1.0 - 0.2 * i,
                           seconds=0.5)
    before = db.read_bytes()
    out = tmp_path / "out"
    rc = main(["reproduce", "--config", str(cfg), "--db", str(db), "--out", str(out),
               "--report-only", "--quiet"])
    assert rc == 0
    assert "1 cells of the grid are not in the store yet" in capsys.readouterr().out
    assert db.read_bytes() == before  # read-only: not a byte written
    views = json.loads((out / "s" / "views.json").read_text())
    # LogME orders the encoders as the truth does on every target it has.
    assert views["model_selection"]["logme"]["logreg_acc"]["weighted_tau"]["value"] == 1.0
    assert main(["reproduce", "--config", str(cfg), "--db", str(tmp_path / "no.sqlite"),
                 "--out", str(out), "--report-only"]) == 2


def test_check_config_rejects_an_unknown_augmentation_before_any_cell():
    from taskrel.experiments.reproduce import check_config

    cfg = parse_config({"name": "t", "reference": "digits", "targets": ["digits"],
                        "encoders": ["effnet_lite0"], "estimators": ["logme"],
                        "finetune": {"augment": "flip"}})
    with pytest.raises(TaskrelInputError, match="finetune.augment"):
        check_config(cfg)


def _bn_mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.BatchNorm1d(16),
                               torch.nn.Tanh())


def test_finetune_selected_batchnorm_frozen_keeps_running_statistics():
    from taskrel.features.finetune import _epoch

    X, y = _blobs(n=90)
    head = torch.nn.Linear(16, 3)
    stats = {}
    for mode in (True, False):
        enc = _bn_mlp()
        with torch.no_grad():  # running statistics the batches cannot produce
            enc[1].running_mean.fill_(0.5)
        opt = torch.optim.SGD([*enc.parameters(), *head.parameters()], lr=1e-2)
        _epoch(enc, head, opt, lambda b: torch.as_tensor(b, dtype=torch.float32), X, y,
               16, np.random.default_rng(0), torch.device("cpu"), None, lambda: None,
               frozen_bn=mode)
        stats[mode] = enc[1].running_mean.clone()
        assert enc[0].training  # the rest of the encoder trains either way
    torch.testing.assert_close(stats[True], torch.full((16,), 0.5))
    assert not torch.allclose(stats[False], torch.full((16,), 0.5))
    kw = dict(lrs=(1e-2,), search_epochs=1, max_epochs=1, batch_size=16, device="cpu")
    r = finetune_selected(_bn_mlp(), None, X, y, X[:10], y[:10], **kw)
    assert r.recipe["batchnorm"] == "frozen"  # the default, recorded
    with pytest.raises(TaskrelInputError, match="`batchnorm`"):
        finetune_selected(_bn_mlp(), None, X, y, X, y, batchnorm="eval", **kw)


def test_reproduce_report_only_counts_stale_cells(tmp_path, capsys):
    """A row computed under other inputs (here: a digest from an older engine) is
    reported as it is, and counted, so a reader knows the report mixes revisions."""
    from taskrel.cli import main
    from taskrel.experiments.digest import suite_digest
    from taskrel.experiments.store import Cell, ResultsStore
    from taskrel.experiments.suite import load_config

    cfg = tmp_path / "s.toml"
    cfg.write_text(REPORT_ONLY_CONFIG)
    digest = suite_digest(load_config(cfg))
    db = tmp_path / "s.sqlite"
    with ResultsStore(db) as st:
        for i, enc in enumerate(("effnet_lite0", "effnet_lite1", "effnet_lite0_random")):
            for j, tgt in enumerate(("d01", "d23", "d45")):
                for est, v in (("logreg", 0.9 - 0.1 * i + 0.01 * j), ("logme", 1.0 - 0.2 * i)):
                    c = Cell(enc, "digits", tgt, 1.0, 0, est)
                    old = est == "logme" and (i, j) == (0, 0)
                    st.put(c, v, seconds=1.0, digest="old" if old else digest(c))
    rc = main(["reproduce", "--config", str(cfg), "--db", str(db), "--out",
               str(tmp_path / "out"), "--report-only", "--quiet"])
    assert rc == 0
    assert "1 stored cells are stale" in capsys.readouterr().out
