"""taskrel reproduce on tiny real cells: scikit-learn digits through a random-init
EfficientNet-Lite0 at 32 px (no weights needed), the feature cache, the store, the
analyses and the report."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from taskrel.cli import main
from taskrel.experiments import parse_config
from taskrel.experiments.reproduce import (
    cell_fn,
    fraction_rows,
    make_cell_fn,
    reference_tau,
)
from taskrel.experiments.store import Cell

_RAW = {
    "name": "tinydigits",
    "description": "digits 0-4 as the reference; tiny budgets for the tests",
    "reference": {"name": "digits04", "dataset": "digits", "classes": [0, 1, 2, 3, 4]},
    "targets": [
        {"name": "digits59", "dataset": "digits", "classes": [5, 6, 7, 8, 9]},
        {"name": "digits04_rot", "dataset": "digits", "classes": [0, 1, 2, 3, 4],
         "transform": {"kind": "rotate", "strength": 0.5}},
        {"name": "digits_odd", "dataset": "digits", "classes": [1, 3, 5, 7, 9]},
    ],
    "encoders": ["effnet_lite0_random"],
    "estimators": ["task_relatedness", "logme"],
    "fractions": [0.5, 1.0],
    "seeds": [0],
    "ground_truth": {"estimators": ["linear_probe"]},
    "finetune": {"image_size": 32},
    "options": {"max_reference": 150, "max_target": 100, "max_test": 60, "device": "cpu",
                "feature_dim": 16},
}


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("TASKREL_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
    import torch

    torch.set_num_threads(1)


def test_fraction_rows_stratified_seeded_min_two():
    y = np.repeat([0, 1, 2], [100, 40, 3])
    a = fraction_rows(y, 0.1, seed=0, min_per_class=2)
    # per class: round(0.1 * n_c) = 10, 4; the 3-row class keeps the floor of 2.
    assert np.bincount(y[a]).tolist() == [10, 4, 2]
    # The default floor is 5 (all 3 rows of the small class).
    assert np.bincount(y[fraction_rows(y, 0.1, seed=0)]).tolist() == [10, 5, 3]
    assert np.array_equal(a, fraction_rows(y, 0.1, seed=0, min_per_class=2))
    assert not np.array_equal(a, fraction_rows(y, 0.1, seed=1, min_per_class=2))
    assert np.array_equal(fraction_rows(y, 1.0, seed=3), np.arange(y.size))


def test_cell_fn_estimator_and_probe_cells():
    cfg = parse_config(_RAW)
    fn = make_cell_fn(cfg)
    rel = fn(Cell("effnet_lite0_random", "digits04", "digits59", 0.5, 0, "task_relatedness"))
    ex = rel["extra"]
    # The cell reports the score (the reweighted reference loss); the bound, the sum of
    # its three terms, stays in extra (RelatednessResult.to_dict()).
    assert rel["value"] == ex["score"] == ex["reweighted_reference_loss"]
    assert ex["score_term"] == "reweighted_reference_loss"
    assert math.isclose(ex["bound"], ex["reweighted_reference_loss"] + ex["label_mismatch"]
                        + ex["lipschitz"] * ex["distribution_mismatch"], rel_tol=1e-6)
    # Half of the 100 target rows, rounded per class (5 classes), never the test split.
    assert 48 <= ex["n_target"] <= 52
    logme = cell_fn(Cell("effnet_lite0_random", "digits04", "digits59", 1.0, 0, "logme"),
                    cfg)
    assert isinstance(logme["value"], float) and math.isfinite(logme["value"])
    # A random-init encoder has no classification head: LEEP is not applicable.
    leep = fn(Cell("effnet_lite0_random", "digits04", "digits59", 1.0, 0, "leep"))
    assert leep["value"] is None and "source head" in leep["extra"]["not_applicable"]
    probe = fn(Cell("effnet_lite0_random", "digits04", "digits59", 1.0, 0, "linear_probe"))
    assert 0.2 < probe["value"] <= 1.0          # 5 classes: chance is 0.2
    assert probe["extra"]["loss"] > 0
    # The probe uses the tau of the relatedness run (the auto rule on the reference).
    from taskrel.experiments.inputs import cell_tasks

    ref, _, _ = cell_tasks(cfg, Cell("effnet_lite0_random", "digits04", "digits59", 1.0, 0,
                                 "linear_probe"))
    assert math.isclose(probe["extra"]["tau"], reference_tau(cfg, ref), rel_tol=1e-9)
    assert math.isclose(probe["extra"]["tau"], ex["tau"], rel_tol=1e-9)


def test_reproduce_cli_end_to_end(tmp_path, capsys):
    import tomllib  # noqa: F401  (the config below is TOML)

    cfg_path = tmp_path / "tiny.toml"
    raw = {**_RAW, "finetune": {"image_size": 32, "steps": 5, "batch_size": 32},
           "options": {**_RAW["options"], "reference_finetune": "effnet_lite0_random"}}
    cfg_path.write_text(_to_toml(raw))
    out, db = tmp_path / "results", tmp_path / "tiny.sqlite"
    argv = ["reproduce", "--config", str(cfg_path), "--db", str(db), "--out", str(out),
            "--quiet"]
    assert main(argv) == 0
    d = out / "tinydigits"
    md = (d / "report.md").read_text()
    for section in ("Decomposition of the bound", "Correlation with transferability",
                    "Few-label sweep", "Deviations from the paper", "Package versions",
                    "Exact config"):
        assert section in md
    png = d / "decomposition_effnet_lite0_random.png"
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
    # The per-cell exports and the three views (one encoder: no zoo to rank, so view
    # (i) is null with a reason; strict JSON).
    views = json.loads((d / "views.json").read_text())
    assert views["model_selection"]["logme"]["tau_probe_acc"]["n_targets"] == 0
    assert "The field's three views" in md
    cells = (d / "cells.csv").read_text().splitlines()
    assert cells[0] == "encoder,target,fraction,seed,estimator,value,higher_is_better"
    assert len(cells) == 1 + 3 * 2 * 2  # targets x estimators x fractions
    assert (d / "targets.csv").read_text().splitlines()[1:] == [
        "digits04_rot,5", "digits59,5", "digits_odd,5"]
    rf = d / "reference_finetune.png"
    assert rf.stat().st_size > 1000 and rf.read_bytes()[:4] == b"\x89PNG"
    summary = json.loads((d / "summary.json").read_text())
    # Fig. 4b: one before/after pair per target.
    assert len(summary["reference_finetune"]) == 3
    # 3 targets x (2 estimators x 2 fractions + probe) = 15 cells, 3 bound checks.
    assert summary["bound_cells"] == 3
    assert not summary.get("failed")
    # A rerun computes nothing: every cell is in the store.
    capsys.readouterr()
    assert main(argv) == 0
    assert "(0 computed now, 15 from the store" in (d / "report.md").read_text()


def _to_toml(raw):
    def val(v):
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(val(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k} = {val(x)}" for k, x in v.items()) + "}"
        return repr(v)

    lines = []
    tables = {}
    for k, v in raw.items():
        if isinstance(v, dict) and k in ("ground_truth", "finetune", "options"):
            tables[k] = v
        else:
            lines.append(f"{k} = {val(v)}")
    for k, v in tables.items():
        lines.append(f"[{k}]")
        lines += [f"{kk} = {val(x)}" for kk, x in v.items()]
    return "\n".join(lines) + "\n"


def test_demo_config_parses_and_names_registered_estimators():
    from taskrel import demo
    from taskrel.experiments.reproduce import normalize_config

    cfg = normalize_config(parse_config(demo.DEMO_CONFIG))
    assert [t.name for t in cfg.targets] == ["fmnist_rot15", "mnist5k", "digits"]
    assert callable(demo.digits_tasks) and callable(demo.run_demo)


def test_drop_single_row_classes():
    from taskrel.experiments.reproduce import drop_single_row_classes

    y = np.array([3, 3, 7, 5, 5, 5, 9])
    rows, dropped = drop_single_row_classes(y, np.array([0, 1, 2, 3, 4, 6]))
    assert rows.tolist() == [0, 1, 3, 4] and dropped == [7, 9]
    rows, dropped = drop_single_row_classes(y, np.arange(2))
    assert rows.tolist() == [0, 1] and dropped == []


def test_prepare_features_fills_the_cache_the_cells_read(monkeypatch):
    from taskrel.experiments import inputs, reproduce

    cfg = parse_config({**_RAW, "targets": _RAW["targets"][:2]})
    units = reproduce.feature_units(cfg)
    # reference (train+test) once, then train and test of every target.
    assert units == [("effnet_lite0_random", "digits04", "both"),
                     ("effnet_lite0_random", "digits59", "train"),
                     ("effnet_lite0_random", "digits59", "test"),
                     ("effnet_lite0_random", "digits04_rot", "train"),
                     ("effnet_lite0_random", "digits04_rot", "test")]
    out = reproduce.prepare_features(cfg, "local", progress=False)
    assert out["units"] == 5 and out["failed"] == [] and out["gpus_per_task"] == 0.0
    # The cells now read every feature set from the cache: no encoder call.
    inputs._TASKS_CACHE.clear()
    calls = []
    from taskrel.encoders import Encoder

    monkeypatch.setattr(Encoder, "_run", lambda *a, **k: calls.append(1))
    v = cell_fn(Cell("effnet_lite0_random", "digits04", "digits04_rot", 1.0, 0, "logme"),
                cfg)["value"]
    assert calls == [] and math.isfinite(v)


def test_unlabeled_cell_with_more_target_than_reference_classes_is_not_applicable():
    raw = {**_RAW, "reference": {"name": "digits012", "dataset": "digits",
                                 "classes": [0, 1, 2]},
           "targets": [{"name": "digits59", "dataset": "digits",
                        "classes": [5, 6, 7, 8, 9]}]}
    cfg = parse_config(raw)
    un = cell_fn(Cell("effnet_lite0_random", "digits012", "digits59", 1.0, 0,
                      "task_relatedness_unlabeled"), cfg)
    assert un["value"] is None and "at most 3 classes" in un["extra"]["not_applicable"]
    # With labels the cell learns B (5 target classes > 3 reference classes).
    lab = cell_fn(Cell("effnet_lite0_random", "digits012", "digits59", 1.0, 0,
                       "task_relatedness"), cfg)
    assert math.isfinite(lab["value"]) and len(lab["extra"]["B"]) == 5


def test_ray_options_need_the_ray_executor(capsys):
    assert main(["reproduce", "--suite", "vision", "--num-cpus", "2", "--quiet"]) != 0
    assert "`--address` and `--num-cpus` need `--executor ray`" in capsys.readouterr().err
