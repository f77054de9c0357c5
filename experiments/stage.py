"""Run one stage of a suite's grid into its results store (resumable), on 2 cores.

`taskrel reproduce --suite NAME` runs every cell of a suite and then writes the report;
on two CPU cores the vision benchmark's ground truth alone takes hours, so it is run in
stages, cheapest first, each resumable and each leaving the store consistent (start the
last one once per core):

    python experiments/stage.py --suite vision --only estimator=linear_probe,logreg
    python experiments/stage.py --suite vision --only fraction=1.0 --only seed=0
    python experiments/stage.py --suite vision --only estimator=finetune --threads 1 --no-wait

Cells are keyed with their digest (:mod:`taskrel.experiments.digest`) and claimed, as in
`taskrel reproduce`: a cell whose options changed is recomputed, and two stages started on
one store never compute a cell twice. `--only KEY=V1,V2` keeps the cells whose field KEY
(encoder, target, fraction, seed, estimator) is one of the values; repeat it to intersect.
`--max-minutes` starts no cell after that long (it then goes one cell at a time; the
cell running at the deadline finishes and is written). `--no-wait` leaves the cells
another live stage has claimed to it instead of waiting for them, so a worker that
chains stages moves on rather than idling a core. Features are extracted first for the
units the stage needs. Prints the counts and the seconds of each computed cell's
estimator (median), so the next stage can be sized.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

_FIELDS = {"encoder": str, "target": str, "fraction": float, "seed": int, "estimator": str}


def _parse_only(items: list[str]) -> dict[str, list[object]]:
    where: dict[str, list[object]] = {}
    for item in items:
        key, sep, vals = item.partition("=")
        if not sep or key not in _FIELDS or not vals:
            sys.exit(f"stage.py: error: --only must be KEY=V1,V2 with KEY in {sorted(_FIELDS)}; "
                     f"got {item!r}")
        where[key] = [_FIELDS[key](v) for v in vals.split(",")]
    return where


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="vision")
    ap.add_argument("--db", default=None, help="default results/<suite>.sqlite")
    ap.add_argument("--only", action="append", default=[])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-minutes", type=float, default=None)
    ap.add_argument("--no-wait", action="store_true",
                    help="leave cells another live stage has claimed to it (no idle wait)")
    a = ap.parse_args()

    import torch

    from taskrel.experiments.digest import suite_digest
    from taskrel.experiments.reproduce import (
        check_config,
        make_cell_fn,
        prepare_features,
        suite_config_path,
    )
    from taskrel.experiments.store import ResultsStore
    from taskrel.experiments.suite import (
        expand_grid,
        load_config,
        run_grid,
        run_in_chunks,
        subset_cells,
    )

    torch.set_num_threads(a.threads)
    config = check_config(load_config(suite_config_path(a.suite)))
    where = _parse_only(a.only)
    cells = subset_cells(expand_grid(config), **where)
    db = Path(a.db or f"results/{config.name}.sqlite")
    db.parent.mkdir(parents=True, exist_ok=True)
    deadline = None if a.max_minutes is None else time.time() + 60 * a.max_minutes
    with ResultsStore(db) as store:
        digest = suite_digest(config)
        todo, stale, _ = store.missing({c: digest(c) for c in cells})
        if stale:
            print(f"stage: {len(stale)} stored cells are stale (their options changed) "
                  "and will be recomputed", flush=True)
        print(f"stage: {len(cells)} cells, {len(cells) - len(todo)} already stored, "
              f"{len(todo)} to compute", flush=True)
        if not todo:
            return
        encs = sorted({c.encoder for c in todo})
        tgts = {c.target for c in todo}
        prep = prepare_features(_only_encoders(config, encs, tgts), "local", progress=True)
        print(f"features: {prep['units']} sets in {prep['seconds']:.0f} s", flush=True)
        cell_fn = make_cell_fn(config)

        def run(chunk):
            return run_grid(chunk, cell_fn, store, executor="local", progress=False,
                            digest=digest, wait=not a.no_wait)

        run_in_chunks(todo, run, deadline=deadline)
        ests = {c.estimator for c in cells}
        secs = defaultdict(list)
        for r in store.query():
            if r["estimator"] in ests and r.get("seconds") is not None:
                secs[r["estimator"]].append(float(r["seconds"]))
        for est, v in sorted(secs.items()):
            print(f"{est}: median {statistics.median(v):.1f} s, total {sum(v) / 60:.1f} min "
                  f"over {len(v)} stored cells", flush=True)


def _only_encoders(config, encoders, targets):
    """The config cut to the stage's encoders and targets, so that only the feature
    sets its cells read are extracted first (the reference's always are)."""
    from dataclasses import replace

    from taskrel.experiments.suite import REFERENCE_TARGET

    return replace(config, encoders=tuple(e for e in config.encoders if e in encoders),
                   targets=tuple(t for t in config.targets if t.name in targets),
                   reference_truths=config.reference_truths and REFERENCE_TARGET in targets)


if __name__ == "__main__":
    main()
