"""Is the population zoo hard for a ranker that ignores the target? (issue 24, item 3)

Reads the suite's store (default results/population.sqlite) and prints, per truth
(logreg_acc, finetune_acc: whatever the store holds, averaged over its seeds), the static
ranker's view (i) from :func:`taskrel.experiments.views.compute_views` (each encoder scored,
for target t, by its mean truth on the other targets; weighted tau per target, mean over
targets, CI from resampling targets), the winning encoder of every target and the number
of distinct winners. The acceptance bar: static weighted tau <= 0.3 and >= 5 winners.

    python experiments/population_hardness.py [--db results/population.sqlite] [--json OUT]

Also checks that the fine-tuning truth is converged (:func:`convergence`): per seed, each
fine-tuned cell against the tuned probe of the same encoder, target and seed; and
prints, per encoder, its source-task accuracy on the held-out split (from the
own-source reference features' source-head probabilities) when those features are cached.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict


def hardness(rows, *, n_boot: int = 1000) -> dict:
    """``{truth: {"static_tau", "ci", "winners", "n_winners", "n_targets",
    "n_encoders", "seeds"}}`` from store rows."""
    from taskrel.experiments.views import compute_views, truth_table

    truth = [r for r in truth_table(rows) if r["target"] != "reference"]
    out = {}
    v = compute_views([], truth, n_boot=n_boot)
    ms = v["model_selection"].get("static_ranker", {})
    for col in sorted({r["truth"] for r in truth}):
        vals = defaultdict(list)
        seeds = set()
        for r in truth:
            if r["truth"] == col and r["value"] is not None:
                vals[(r["target"], r["encoder"])].append(float(r["value"]))
                seeds.add(int(r["seed"]))
        per_t = defaultdict(dict)
        for (t, e), xs in vals.items():
            per_t[t][e] = sum(xs) / len(xs)
        winners = {t: max(sorted(d), key=lambda e: d[e]) for t, d in sorted(per_t.items())}
        stat = (ms.get(col) or {}).get("weighted_tau") or {}
        out[col] = {"static_tau": stat.get("value"),
                    "ci": [stat.get("ci_low"), stat.get("ci_high")],
                    "winners": winners, "n_winners": len(set(winners.values())),
                    "n_targets": len(per_t),
                    "n_encoders": len({e for d in per_t.values() for e in d}),
                    "seeds": sorted(seeds),
                    "truth": {t: dict(sorted(d.items())) for t, d in per_t.items()}}
    return out


def convergence(rows, *, below: float = 0.01) -> dict:
    """Fine-tuning against the tuned probe of the same (encoder, target, seed): the
    counts above / equal (the probe refitted, ``recipe.refitted``) / more than ``below``
    under it, the median and the worst gap (with its cell), and how many runs reached
    their plateau (``recipe.converged``) and kept epoch 0, per seed and over all seeds.
    A fine-tuned model that loses to the probe by more than selection noise is a
    benchmark bug (the brief's rule), so this is reported with the hardness."""
    import numpy as np

    ft, lr = {}, {}
    for r in rows:
        if r["target"] == "reference" or r["value"] is None or r["fraction"] != 1.0:
            continue
        key = (r["encoder"], r["target"], int(r["seed"]))
        if r["estimator"] == "finetune":
            ft[key] = (float(r["value"]), (r.get("extra") or {}).get("recipe") or {})
        elif r["estimator"] == "logreg":
            lr[key] = float(r["value"])
    out = {}
    for seed in [*sorted({k[2] for k in ft}), "all"]:
        keys = sorted(k for k in ft if k in lr and (seed == "all" or k[2] == seed))
        if not keys:
            continue
        gap = np.array([ft[k][0] - lr[k] for k in keys])
        worst = int(np.argmin(gap))
        rec = [ft[k][1] for k in keys]
        out[str(seed)] = {
            "cells": len(keys), "above": int((gap > 1e-12).sum()),
            "equal": int((np.abs(gap) <= 1e-12).sum()),
            f"below_by_more_than_{below:g}": int((gap < -below).sum()),
            "median_gap": float(np.median(gap)), "worst_gap": float(gap[worst]),
            "worst_cell": list(keys[worst][:2]),
            "refitted": sum(bool(x.get("refitted")) for x in rec),
            "converged": sum(bool(x.get("converged")) for x in rec),
            "best_epoch_0": sum(x.get("best_epoch") == 0 for x in rec)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", default="results/population.sqlite")
    ap.add_argument("--json", default=None, help="also write the result here")
    a = ap.parse_args()
    from taskrel.experiments.store import ResultsStore

    with ResultsStore(a.db, readonly=True) as st:
        rows = st.query()
    h = hardness(rows)
    for col, d in h.items():
        tau = d["static_tau"]
        print(f"{col}: static ranker weighted tau "
              f"{'n/a' if tau is None else f'{tau:.3f}'} (CI {d['ci']}), "
              f"{d['n_winners']} distinct winners over {d['n_targets']} targets, "
              f"{d['n_encoders']} encoders, seeds {d['seeds']}")
        for t, w in d["winners"].items():
            row = d["truth"][t]
            top = sorted(row, key=lambda e: -row[e])[:3]
            print(f"  {t:20s} {w:32s} " + "  ".join(f"{e}={row[e]:.3f}" for e in top))
    conv = convergence(rows)
    for seed, c in conv.items():
        print(f"fine-tuning vs probe, seed {seed}: " + ", ".join(
            f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in c.items()))
    if a.json:
        from taskrel._internal.serialize import atomic_write_text

        atomic_write_text(a.json, json.dumps({**h, "finetune_vs_probe": conv}, indent=1,
                                             sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
