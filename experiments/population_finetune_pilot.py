"""Pilot of the population suite's fine-tuning recipe on chosen cells (issue 24).

Runs the suite's fine-tuning cell (``taskrel.experiments.estimators._finetune_cell``) with
the ``[finetune]`` table of ``experiments/population.toml`` replaced by a variant, on
cells given as ``ENCODER/TARGET`` (default: the six seed-0 cells that ended furthest below
the tuned probe with the first recipe), and prints one JSON line per cell: fine-tuned
test accuracy, the store's seed-0 ``logreg`` truth of the cell, the gap, the chosen rate,
best epoch and probe C, and (refit variants) the selected model's accuracy before refit.
Nothing is written to the store. Results of 2026-12-06 (1 thread, machine shared with the
ablation): ``docs/results/population/finetune_recipe_pilot.jsonl``.

Usage: python experiments/population_finetune_pilot.py VARIANT N [ENC/TGT,ENC/TGT,...]
  VARIANT: current | tunedC | noaug | tunedC_noaug | tunedC_noaug_low | refit | refit5 |
  refit_aug
"""
import sys, json, time, dataclasses, sqlite3
import torch
torch.set_num_threads(1)
from taskrel.experiments.suite import load_config
from taskrel.experiments.estimators import _finetune_cell
from taskrel.experiments.store import Cell
cfg = load_config("experiments/population.toml")
variant = sys.argv[1]
# The first recipe (commit e7d8fa4), from which every variant departs.
FIRST = {"lrs": [3e-4, 1e-3, 3e-3, 1e-2], "search_epochs": 3, "max_epochs": 20,
         "patience": 3, "head_lr_mult": 1.0, "batchnorm": "frozen", "weight_decay": 1e-4,
         "batch_size": 32, "augment": "shift"}
NOAUG = {k: v for k, v in FIRST.items() if k != "augment"}
LOW = [1e-4, 3e-4, 1e-3, 3e-3]
V = {
    "current": FIRST,
    "tunedC": {**FIRST, "probe_c": "tuned"},
    "noaug": NOAUG,
    "tunedC_noaug": {**NOAUG, "probe_c": "tuned"},
    "tunedC_noaug_low": {**NOAUG, "probe_c": "tuned", "lrs": LOW},
    "refit": {**NOAUG, "probe_c": "tuned", "lrs": LOW, "refit": True},
    "refit5": {**NOAUG, "probe_c": "tuned", "lrs": [1e-4] + FIRST["lrs"], "refit": True},
    "refit_aug": {**FIRST, "probe_c": "tuned", "lrs": LOW, "refit": True},
}[variant]
assert V["lrs"] == cfg.finetune["lrs"] or variant != "refit5"  # refit5 is the suite's
cfg2 = dataclasses.replace(cfg, finetune=V)
cells = [("smallcnn_e1_on_fm_down", "fm_rot135"), ("smallcnn_on_fm_invert70", "fm_noise_high"),
         ("smallcnn_e1_on_fm_down", "fm_tops_rot90"), ("smallcnn_e1_on_fm_down", "fm_down_high"),
         ("smallcnn_on_fm_invert70", "fm_others"), ("smallcnn_w16_on_fm_noise_low", "fm_tops_rot90")]
c = sqlite3.connect("results/population.sqlite")
if len(sys.argv) > 3:
    cells = [tuple(a.split("/")) for a in sys.argv[3].split(",")]
for e, t in cells[: int(sys.argv[2])]:
    lr = [v for (v,) in c.execute("select value from cells where estimator='logreg' and seed=0 and encoder=? and target=?", (e, t))][0]
    t0 = time.time()
    r = _finetune_cell(cfg2, Cell(e, cfg.reference.name, t, 1.0, 0, "finetune"))
    rec = r["extra"]["recipe"]
    print(json.dumps({"variant": variant, "cell": [e, t], "ft": round(r["value"], 4), "logreg": round(lr, 4),
                      "gap": round(r["value"] - lr, 4), "lr": rec["lr"], "best_epoch": rec["best_epoch"],
                      "probe_c": rec.get("probe_c_used"), "epoch0_val": rec["curves"][str(rec["lr"])][0]["val_accuracy"],
                      "val": rec["val_accuracy"], "selected": rec.get("test_accuracy_selected"), "s": round(time.time() - t0, 1)}), flush=True)
