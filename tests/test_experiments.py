"""Experiment configs, grid expansion, run_grid and executors."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from taskrel.exceptions import TaskrelInputError
from taskrel.experiments.executors import LocalExecutor, get_executor
from taskrel.experiments import (
    CellResult,
    expand_grid,
    load_config,
    parse_config,
    run_grid,
)
from taskrel.experiments.store import Cell, ResultsStore

ROOT = Path(__file__).resolve().parents[1]

BASE = {"name": "toy", "reference": "digits", "targets": ["a", "b"],
        "encoders": ["e1", "e2"], "estimators": ["tr"], "fractions": [0.5, 1.0],
        "seeds": [0]}


@pytest.mark.parametrize("suite, quick, expected", [
    # enc x tgt x est x frac x seeds  +  truths at fraction 1, ground_truth.seeds = [0, 1,
    # 2] ([quick]: [0]): linear_probe and logreg on every target and the reference
    # (tgt + 1), finetune on ground_truth.finetune_encoders x finetune_targets.
    ("vision", False, 8 * 11 * 17 * 6 * 3 + 3 * (2 * 8 * 12 + 8 * 7)),  # 17: + rankme,
    ("vision", True, 3 * 3 * 3 * 2 * 1 + 2 * 3 * 3 + 3 * 1),           # energy
    ("text", False, 4 * 5 * 17 * 6 * 3 + 3 * (2 * 4 * 6 + 2 * 6)),
    ("text", True, 3 * 2 * 3 * 2 * 1 + 2 * 3 * 2 + 1 * 1),
    # the first suites (issue 5): no logreg, no reference truths
    ("vision_v1", False, 5 * 11 * 9 * 6 * 3 + 5 * 11 * 1 * 1 + 5 * 11 * 1 * 1),
    ("text_v1", False, 3 * 4 * 9 * 6 * 3 + 3 * 4 * 1 * 1 + 1 * 4 * 1 * 1),
])
def test_suite_configs_parse_and_expand(suite, quick, expected):
    cfg = load_config(ROOT / "experiments" / f"{suite}.toml", quick=quick)
    cells = expand_grid(cfg)
    assert len(cells) == expected == len(set(cells))
    assert {c.reference for c in cells} == {cfg.reference.name}
    assert cfg.quick is quick


def test_vision_suite_targets_are_declared_specs():
    cfg = load_config(ROOT / "experiments" / "vision.toml")
    tops = cfg.target("fmnist_tops")
    assert tops.dataset == "fashion_mnist" and tops.classes == (0, 2, 4, 6)
    # transform_images takes strength in [0, 1]: rotate by 180 * s degrees.
    assert cfg.target("fmnist_rot90").transform == {"kind": "rotate", "strength": 0.5}
    assert len(cfg.target("fmnist_coarse").relabel) == 10
    with pytest.raises(TaskrelInputError, match="`target` must be one of"):
        cfg.target("cifar10")


def test_expand_grid_order_and_finetune_restriction():
    raw = dict(BASE, ground_truth={"estimators": ["linear_probe", "finetune"],
                                   "finetune_encoders": ["e2"]})
    cells = expand_grid(parse_config(raw))
    # 2 encoders x 2 targets x (2 fractions x 1 estimator + linear_probe)
    # + finetune for e2 only (2 targets)
    assert len(cells) == 2 * 2 * (2 * 1 + 1) + 2
    # default ground truth: linear probe and fine-tuning for every encoder
    assert len(expand_grid(parse_config(BASE))) == 2 * 2 * (2 + 2)
    assert Cell("e2", "digits", "a", 1.0, 0, "finetune") in cells
    assert Cell("e1", "digits", "a", 1.0, 0, "finetune") not in cells


@pytest.mark.parametrize("patch, match", [
    ({"fractoins": [1.0]}, "unknown config key `fractoins`"),
    ({"fractions": [0.0, 1.0]}, r"`fractions\[0\]` must be a number in \(0, 1\]; got 0.0"),
    ({"seeds": [0, -1]}, r"`seeds\[1\]` must be a non-negative integer; got -1"),
    ({"encoders": []}, "`encoders` must be a non-empty list of strings"),
    ({"encoders": ["a", "a"]}, "`encoders` must be a list without duplicates"),
    ({"targets": [{"dataset": "x"}]}, r"`targets\[0\].name` is required"),
    ({"targets": [{"name": "x", "transform": {"kind": "rotate", "strength": "big"}}]},
     r"`targets\[0\].transform.strength` must be a number; got 'big'"),
    ({"targets": [{"name": "x", "colour": 1}]}, r"unknown config key `targets\[0\].colour`"),
    ({"targets": ["a", "a"]}, "`targets` must be tasks with distinct names"),
    ({"ground_truth": {"finetune_encoders": ["zz"]}},
     r"`ground_truth.finetune_encoders` must be names among"),
    ({"quick": {"targets": ["nope"]}}, None),
])
def test_config_errors_name_the_key(patch, match):
    raw = dict(BASE, **patch)
    if match is None:  # quick errors show only when quick is asked for
        parse_config(raw)
        with pytest.raises(TaskrelInputError, match=r"`quick.targets` must be names among"):
            parse_config(raw, quick=True)
        return
    with pytest.raises(TaskrelInputError, match=match):
        parse_config(raw)


def test_load_config_file_errors(tmp_path):
    with pytest.raises(TaskrelInputError, match="does not exist"):
        load_config(tmp_path / "none.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [\n")
    with pytest.raises(TaskrelInputError, match="not valid TOML"):
        load_config(bad)
    missing = tmp_path / "m.toml"
    missing.write_text('name = "x"\nreference = "digits"\n')
    with pytest.raises(TaskrelInputError, match=r"m.toml: config key `targets` is required"):
        load_config(missing)


def test_run_grid_skips_done_cells_and_retries_failures(tmp_path):
    cfg = parse_config(dict(BASE, ground_truth={"estimators": []}))
    calls = []

    def fn(c):
        calls.append(c)
        if c.target == "b" and c.fraction == 0.5:
            raise RuntimeError("out of luck")
        if c.encoder == "e1":
            return CellResult(c.fraction * 2, {"enc": c.encoder})
        return {"value": c.fraction, "extra": {"enc": c.encoder}}

    with ResultsStore(tmp_path / "g.sqlite") as st:
        with pytest.warns(RuntimeWarning, match="2 of 8 cells failed"):
            rep = run_grid(cfg, fn, st, progress=False)
        assert (rep.total, rep.skipped, rep.computed, len(rep.failed)) == (8, 0, 6, 2)
        assert "RuntimeError: out of luck" in rep.failed[0][1]
        assert len(st) == 6
        assert st.get(Cell("e1", "digits", "a", 0.5, 0, "tr"))["value"] == 1.0
        calls.clear()
        with pytest.warns(RuntimeWarning):
            rep2 = run_grid(cfg, fn, st, progress=False)
        assert rep2.skipped == 6 and {c.target for c in calls} == {"b"} and len(calls) == 2
        rep3 = run_grid(expand_grid(cfg)[:2], lambda c: 0.0, st, progress=False)
        assert rep3.computed == 0 and rep3.skipped == 2 and rep3.ok


def test_run_grid_input_errors(tmp_path):
    st = ResultsStore(tmp_path / "g.sqlite")
    cells = [Cell("e", "r", "t", 1.0, 0, "x")]
    with pytest.raises(TaskrelInputError, match="`store` must be a ResultsStore"):
        run_grid(cells, float, "g.sqlite")
    with pytest.raises(TaskrelInputError, match="`config_or_cells` must be"):
        run_grid(["not a cell"], float, st)
    with pytest.raises(TaskrelInputError, match="`executor` must be one of 'local', 'ray'"):
        run_grid(cells, float, st, executor="dask")
    with pytest.warns(RuntimeWarning, match="must return a float"):
        rep = run_grid(cells, lambda c: "text", st, progress=False)
    assert len(rep.failed) == 1 and len(st) == 0


def test_local_executor_reports_exceptions_in_order():
    out = list(LocalExecutor().imap_unordered(lambda x: 10 // x, [1, 0, 5]))
    assert [i for i, _ in out] == [1, 0, 5]
    assert out[0][1] == 10 and isinstance(out[1][1], ZeroDivisionError) and out[2][1] == 2
    with pytest.raises(TaskrelInputError, match="the local executor takes no options"):
        get_executor("local", address="x")


def test_ray_executor_missing_is_a_clear_error(monkeypatch):
    have_file = importlib.util.find_spec("taskrel.experiments.executors.ray_executor") is not None
    have_ray = importlib.util.find_spec("ray") is not None
    if have_file and have_ray:
        pytest.skip("Ray and taskrel's Ray executor are installed")
    with pytest.raises(TaskrelInputError, match=r"pip install 'taskrel\[ray\]'"):
        get_executor("ray", address=None)
    # the same message when only Ray itself is missing
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setitem(sys.modules, "taskrel.experiments.executors.ray_executor", None)
    with pytest.raises(TaskrelInputError, match=r"pip install 'taskrel\[ray\]'"):
        get_executor("ray")


def test_dataset_spec_load_calls_the_data_contract(monkeypatch):
    """DatasetSpec.load speaks taskrel.features.datasets' contract (a stand-in module records calls)."""
    import types

    calls = []
    fake = types.ModuleType("taskrel.features.datasets")
    fake.load_dataset = lambda name: calls.append(("load", name)) or name
    fake.subset_classes = lambda ds, cl: calls.append(("subset", cl)) or ds
    fake.relabel = lambda ds, m: calls.append(("relabel", m)) or ds
    fake.transform_images = lambda ds, k, s, seed: calls.append(("tf", k, s, seed)) or ds
    fake.subsample = lambda ds, fraction, seed: calls.append(("sub", fraction, seed)) or ds
    monkeypatch.setitem(sys.modules, "taskrel.features.datasets", fake)
    import taskrel.features

    monkeypatch.setattr(taskrel.features, "datasets", fake, raising=False)  # once imported
    cfg = parse_config(dict(BASE, targets=[{
        "name": "x", "dataset": "fashion_mnist", "classes": [0, 2], "relabel": [1, 0],
        "transform": {"kind": "rotate", "strength": 30}, "subsample": 0.5}]))
    assert cfg.targets[0].load(seed=4) == "fashion_mnist"
    assert calls == [("load", "fashion_mnist"), ("subset", [0, 2]), ("relabel", [1, 0]),
                     ("tf", "rotate", 30, 4), ("sub", 0.5, 4)]
