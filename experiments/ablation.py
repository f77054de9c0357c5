"""Run the task-relatedness ablation on a suite's cells (resumable), or write its report.

    python experiments/ablation.py --suite vision                  # every run, resumable
    python experiments/ablation.py --suite vision --runs tau=auto,tau=paper
    python experiments/ablation.py --suite vision --report         # ablation.csv + plots

Runs (``taskrel.experiments.ablation.RUNS``) are stored in ``results/ablation_<suite>.sqlite``,
one row per (encoder, target, run), keyed by a digest of the run's settings and of the
suite cell; a rerun computes only what is missing or stale. ``recipe=paper`` runs only on
the cells ``experiments/ablation.toml`` names. ``--report`` reads the store and the suite's
exported ``cells.csv`` / ``truth.csv`` / ``targets.csv`` (``docs/results/<suite>/``) and
writes ``ablation.csv``, ``ablation_views.json`` and plots next to them.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def _cells(config, settings, runs):
    from taskrel.experiments.ablation import RUNS
    from taskrel.experiments.store import Cell

    cells = []
    for name in runs:
        spec = RUNS[name]
        encs, tgts = config.encoders, [t.name for t in config.targets]
        if spec.recipe == "paper":
            encs, tgts = settings["paper_encoders"], settings["paper_targets"]
        if spec.reference == "union" and not settings.get("union"):
            continue
        for t in tgts:
            for e in encs:
                cells.append(Cell(e, config.reference.name, t, 1.0, 0, name))
    return cells


def _spec(settings, name):
    from dataclasses import replace

    from taskrel.experiments.ablation import RUNS

    spec = RUNS[name]
    if spec.recipe == "paper":
        spec = replace(spec, max_iter=int(settings.get("paper_steps", 2001)))
    return spec


def run(a, config, settings) -> None:
    import torch

    from taskrel.experiments.ablation import RUNS, run_cell, run_digest
    from taskrel.experiments.digest import cell_digest
    from taskrel.experiments.store import Cell, ResultsStore
    from taskrel.experiments.suite import run_grid

    torch.set_num_threads(a.threads)
    names = a.runs.split(",") if a.runs else list(RUNS)
    bad = [n for n in names if n not in RUNS]
    if bad:
        sys.exit(f"ablation.py: error: --runs names unknown runs {bad}; known: {list(RUNS)}")
    cells = [c for c in _cells(config, settings, names)
             if (not a.encoders or c.encoder in a.encoders.split(","))
             and (not a.targets or c.target in a.targets.split(","))]

    def digest(c):
        base = cell_digest(config, Cell(c.encoder, c.reference, c.target, 1.0, 0,
                                        "task_relatedness"))
        return run_digest(_spec(settings, c.estimator), base)

    def fn(c):
        return run_cell(config, _spec(settings, c.estimator), c, settings.get("union"))

    db = ROOT / "results" / f"ablation_{config.name}.sqlite"
    deadline = None if a.max_minutes is None else time.time() + 60 * a.max_minutes
    with ResultsStore(db) as store:
        todo, stale, _ = store.missing({c: digest(c) for c in cells})
        print(f"ablation: {len(cells)} cells, {len(todo)} to compute "
              f"({len(stale)} stale)", flush=True)
        done = 0
        for i in range(0, len(todo), 8):
            if deadline is not None and time.time() > deadline:
                print("ablation: --max-minutes reached; rerun to continue", flush=True)
                break
            rep = run_grid(todo[i:i + 8], fn, store, executor="local", progress=False,
                           digest=digest)
            done += rep.computed
            for cell, msg in rep.failed:
                print(f"FAILED {cell}: {msg}", flush=True)
            print(f"ablation: {done}/{len(todo)} computed ({todo[i].estimator})",
                  flush=True)


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def report(a, config, settings) -> None:
    from taskrel._internal.serialize import atomic_write_text, csv_text
    from taskrel.experiments.ablation import (
        ABLATION_COLUMNS,
        ablation_rows,
        variant_values,
    )
    from taskrel.experiments.store import ResultsStore
    from taskrel.experiments.views import compute_views

    out = ROOT / "docs" / "results" / config.name
    targets = _read_csv(out / "targets.csv")
    K = {r["target"]: int(r["n_classes"]) for r in targets}
    with ResultsStore(ROOT / "results" / f"ablation_{config.name}.sqlite") as store:
        rows = store.query()
    variants = [r for r in variant_values(rows, K) if _keep(r["estimator"])]
    base = [r for r in _read_csv(out / "cells.csv") if float(r["fraction"]) == 1.0]
    for r in base:
        r["estimator"] = f"baseline:{r['estimator']}"
    truth = _read_csv(out / "truth.csv")
    t0 = time.time()
    views = compute_views(variants + base, truth, targets, n_boot=a.n_boot, seed=0)
    print(f"views in {time.time() - t0:.0f} s", flush=True)
    rows_out = ablation_rows(views)
    atomic_write_text(out / "ablation.csv", csv_text(rows_out, ABLATION_COLUMNS))
    atomic_write_text(out / "ablation_views.json",
                      json.dumps(views, indent=1, allow_nan=False) + "\n")
    n_var = len({r["estimator"] for r in variants})
    print(f"wrote {out / 'ablation.csv'} ({len(rows_out)} rows, {n_var} variants, "
          f"{len({r['estimator'] for r in base})} baselines)")


#: Reports kept for every run; the others only for the default runs (tau=auto).
_MAIN_REPORTS = ("bound", "reference_loss", "transformed_loss")


def _keep(variant: str) -> bool:
    rep, run = variant.split("|", 1)
    return rep in _MAIN_REPORTS or run.split("/")[0] in ("tau=auto", "recipe=paper")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="vision")
    ap.add_argument("--runs", default=None, help="comma-separated run names (default all)")
    ap.add_argument("--encoders", default=None, help="comma-separated subset")
    ap.add_argument("--targets", default=None, help="comma-separated subset")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-minutes", type=float, default=None)
    ap.add_argument("--report", action="store_true")
    ap.add_argument("--n-boot", type=int, default=1000)
    a = ap.parse_args()
    from taskrel.experiments.reproduce import check_config, suite_config_path
    from taskrel.experiments.suite import load_config

    config = check_config(load_config(suite_config_path(a.suite)))
    with open(ROOT / "experiments" / "ablation.toml", "rb") as f:
        settings = tomllib.load(f).get(config.name)
    if settings is None:
        sys.exit(f"ablation.py: error: experiments/ablation.toml has no [{config.name}]")
    (report if a.report else run)(a, config, settings)


if __name__ == "__main__":
    main()
