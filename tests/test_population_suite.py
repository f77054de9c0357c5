"""The population suite (issue 24): encoders trained here on their own source tasks, each
related to the targets with its source's held-out split as reference, beside the fixed
reference. Runs ``taskrel reproduce --suite population --quick`` end to end on tiny budgets
(3 encoders x 2 targets, one core)."""

from __future__ import annotations

import sqlite3
from dataclasses import replace

import numpy as np
import pytest

from taskrel.cli import main
from taskrel.experiments import load_config
from taskrel.experiments.digest import cell_digest, digest_inputs, suite_digest
from taskrel.experiments.inputs import (
    HELDOUT,
    reference_unit,
    smallcnn_arch,
    source_recipe,
    suite_dataset,
    suite_encoder,
    unit_task,
)
from taskrel.experiments.reproduce import check_config, make_cell_fn, suite_config_path
from taskrel.experiments.store import Cell, ResultsStore
from taskrel.experiments.suite import cell_reference, expand_grid, parse_config, run_grid
from taskrel.exceptions import TaskrelInputError
from taskrel.features.extract import selected_rows

_ENC = "smallcnn_e1_on_fm_tops"


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """The quick suite, run once through the CLI into a fresh store and cache."""
    import torch

    base = tmp_path_factory.mktemp("population")
    mp = pytest.MonkeyPatch()
    mp.setenv("TASKREL_CACHE_DIR", str(base / "cache"))
    torch.set_num_threads(1)
    db, out = base / "pop.sqlite", base / "out"
    rc = main(["reproduce", "--suite", "population", "--quick", "--db", str(db),
               "--out", str(out), "--threads", "1", "--quiet", "--device", "cpu"])
    assert rc == 0
    cfg = check_config(load_config(suite_config_path("population"), quick=True))
    cfg = replace(cfg, options={**cfg.options, "device": "cpu"})
    yield cfg, db, out
    mp.undo()


def _rows(db):
    with ResultsStore(db, readonly=True) as st:
        return st.query()


def test_config_sources_targets_and_references():
    cfg = check_config(load_config(suite_config_path("population")))
    assert len(cfg.sources) >= 16 and len(cfg.targets) >= 10
    assert len(cfg.encoders) >= 16
    # Every encoder has a distinct source; no target is a source task.
    srcs = [e.partition("_on_")[2] for e in cfg.encoders]
    assert len(set(srcs)) == len(srcs) and set(srcs) <= {s.name for s in cfg.sources}
    assert {smallcnn_arch(e.partition("_on_")[0]) for e in cfg.encoders} >= {
        (32, None), (16, None), (32, 1), (32, 10)}
    cells = expand_grid(cfg)
    own = {c.reference for c in cells if c.estimator in (
        "task_relatedness", "task_relatedness_unlabeled", "otce", "ot_nce")}
    assert own == set(srcs)
    assert {c.reference for c in cells if c.estimator.endswith("_fixed")} == {
        "fashion_mnist"}
    assert cell_reference(cfg, "smallcnn_on_mnist", "logme") == "fashion_mnist"
    # Truths: logreg and finetune on every cell, three seeds.
    assert sum(c.estimator == "finetune" for c in cells) == \
        3 * len(cfg.encoders) * len(cfg.targets)


def test_a_target_equal_to_a_source_is_refused():
    raw = {"name": "t", "reference": "digits", "encoders": ["smallcnn_on_d"],
           "estimators": ["logme"], "sources": [{"name": "d", "dataset": "digits"}],
           "targets": [{"name": "digits2", "dataset": "digits"}]}
    with pytest.raises(TaskrelInputError, match="same task as target"):
        check_config(parse_config(raw))
    with pytest.raises(TaskrelInputError, match="names other than"):
        parse_config({**raw, "sources": [{"name": "digits2", "dataset": "digits"}]})


def test_quick_run_own_source_reads_the_held_out_split(quick):
    cfg, db, out = quick
    rows = {(r["encoder"], r["target"], r["estimator"]): r for r in _rows(db)}
    assert len(rows) == len(expand_grid(cfg))
    own = rows[(_ENC, "fm_others", "task_relatedness")]
    fixed = rows[(_ENC, "fm_others", "task_relatedness_fixed")]
    assert own["reference"] == "fm_tops" and fixed["reference"] == "fashion_mnist"
    assert own["extra"]["reference_task"] == "fm_tops"
    assert own["extra"]["reference_split"] == "test"
    assert "reference_task" not in fixed["extra"]
    # The own-source reference is the source's test split (capped), never a row the
    # encoder trained on: compare the images themselves.
    cell = Cell(_ENC, "fm_tops", "fm_others", 1.0, 0, "task_relatedness")
    assert reference_unit(cfg, cell) == (_ENC, "fm_tops", HELDOUT)
    spec = cfg.source("fm_tops")
    ds = suite_dataset(spec)
    ref = unit_task(cfg, reference_unit(cfg, cell))
    n_ref = own["extra"]["n_reference"]
    assert n_ref == len(ref.labels) == min(cfg.options["max_reference"], len(ds.y_test))
    assert ref.meta["split"] == "test"
    rows = selected_rows(ds, "test", cfg.options["max_reference"], "stratified")
    np.testing.assert_allclose(ref.features, suite_encoder(cfg, _ENC).encode(
        ds.x_test[rows]), rtol=1e-5, atol=1e-5)   # the reference is these test images
    seen = {x.tobytes() for x in ds.x_train}      # the rows the encoder could train on
    assert not any(x.tobytes() in seen for x in ds.x_test[rows])
    recipe = source_recipe(cfg, "smallcnn_e1", "fm_tops")
    assert recipe["split"] == "train" and recipe["epochs"] == 1
    # The fixed estimator reads Fashion-MNIST (train + test rows) for every encoder.
    fcell = replace(cell, reference="fashion_mnist", estimator="task_relatedness_fixed")
    assert reference_unit(cfg, fcell) == (_ENC, "fashion_mnist", "both")
    assert digest_inputs(cfg, fcell)["reference"] == {"name": "fashion_mnist",
                                                      "dataset": "fashion_mnist"}
    assert digest_inputs(cfg, cell)["reference"]["own_source"] == spec.to_dict()
    assert cell_digest(cfg, cell) != cell_digest(cfg, replace(fcell,
                                                              estimator="task_relatedness"))
    assert own["digest"] == cell_digest(cfg, cell) != fixed["digest"]
    # The two references give different numbers.
    assert own["value"] != fixed["value"]
    # The report folder holds the exports.
    for f in ("report.md", "cells.csv", "truth.csv", "targets.csv", "views.json"):
        assert (out / "population" / f).is_file()


def test_quick_run_fine_tuning_and_probe_rows(quick):
    cfg, db, _ = quick
    rows = _rows(db)
    ft = [r for r in rows if r["estimator"] == "finetune"]
    lr = [r for r in rows if r["estimator"] == "logreg"]
    assert len(ft) == len(lr) == len(cfg.encoders) * len(cfg.targets)
    assert all(r["value"] is not None and 0 <= r["value"] <= 1 for r in ft + lr)
    # The encoder's recipe is in every cell's digest: another width is another encoder.
    c = Cell(_ENC, "fashion_mnist", "fm_others", 1.0, 0, "logreg")
    other = replace(cfg, options={**cfg.options, "source_rows": 299})
    assert cell_digest(cfg, c) != cell_digest(other, c)


def test_quick_run_resumes_without_recomputing(quick):
    cfg, db, out = quick
    with sqlite3.connect(db) as con:
        before = con.execute("select * from cells order by encoder, target, estimator, "
                             "seed").fetchall()
    with ResultsStore(db) as st:
        rep = run_grid(cfg, make_cell_fn(cfg), st, progress=False,
                       digest=suite_digest(cfg))
    assert rep.computed == 0 and rep.stale == 0 and rep.skipped == rep.total
    rc = main(["reproduce", "--suite", "population", "--quick", "--db", str(db),
               "--out", str(out), "--threads", "1", "--quiet", "--device", "cpu"])
    assert rc == 0
    with sqlite3.connect(db) as con:
        after = con.execute("select * from cells order by encoder, target, estimator, "
                            "seed").fetchall()
    assert after == before


def test_hardness_script_convergence_counts_fine_tuning_against_the_same_seeds_probe():
    # experiments/population_hardness.py's convergence check on hand-made rows: per seed,
    # fine-tuning minus the tuned probe of the same (encoder, target, seed). Seed 0:
    # gaps +0.05, 0 (refitted), -0.02 -> 1 above, 1 equal, 1 more than 0.01 below,
    # median 0, worst -0.02 on (b, t2). Seed 1: one cell, +0.01. A probe of another seed,
    # the reference target and a fraction < 1 are not paired.
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "experiments" / "population_hardness.py"
    spec = importlib.util.spec_from_file_location("population_hardness", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)

    def row(enc, tgt, seed, est, value, **recipe):
        return {"encoder": enc, "target": tgt, "seed": seed, "estimator": est,
                "fraction": 1.0, "value": value, "extra": {"recipe": recipe}}

    rows = [row("a", "t1", 0, "logreg", 0.80), row("a", "t1", 0, "finetune", 0.85,
                                                    converged=True, best_epoch=4),
            row("a", "t2", 0, "logreg", 0.70), row("a", "t2", 0, "finetune", 0.70,
                                                    converged=True, best_epoch=0,
                                                    refitted=True),
            row("b", "t2", 0, "logreg", 0.90), row("b", "t2", 0, "finetune", 0.88,
                                                    converged=False, best_epoch=2),
            row("a", "t1", 1, "logreg", 0.80), row("a", "t1", 1, "finetune", 0.81,
                                                    converged=True, best_epoch=1),
            row("b", "t1", 1, "finetune", 0.50),  # its probe is seed 2's: unpaired
            row("b", "t1", 2, "logreg", 0.90),
            row("a", "reference", 0, "logreg", 0.1), row("a", "reference", 0, "finetune", 0.9),
            {**row("a", "t1", 0, "finetune", 0.1), "fraction": 0.5}]
    c = mod.convergence(rows)
    assert sorted(c) == ["0", "1", "all"]
    s0 = c["0"]
    assert (s0["cells"], s0["above"], s0["equal"], s0["below_by_more_than_0.01"]) == (3, 1, 1, 1)
    assert s0["median_gap"] == pytest.approx(0.0)
    assert s0["worst_gap"] == pytest.approx(-0.02) and s0["worst_cell"] == ["b", "t2"]
    assert (s0["refitted"], s0["converged"], s0["best_epoch_0"]) == (1, 2, 1)
    assert c["1"]["cells"] == 1 and c["1"]["median_gap"] == pytest.approx(0.01)
    assert c["all"]["cells"] == 4 and c["all"]["above"] == 2
