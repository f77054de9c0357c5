"""How much does each estimator's model-zoo selection depend on one encoder?

Reads a reproduction store (``taskrel reproduce`` writes ``results/<suite>.sqlite``) and
runs :func:`taskrel.experiments.analysis.zoo_selection_from_rows` on the whole zoo and on the zoo
without each encoder in turn, for every estimator. Prints mean regret (and top-1 hit
rate) per estimator and zoo; writes the table as CSV when ``--csv`` is given.

Usage::

    python benchmarks/zoo_leave_one_out.py results/vision.sqlite [--truth finetune]
        [--fraction 1.0] [--csv OUT.csv]
"""

from __future__ import annotations

import argparse
import sys

from taskrel.experiments.analysis import _csv, zoo_selection_from_rows
from taskrel.io import atomic_write_text
from taskrel.experiments.store import ResultsStore


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("db")
    ap.add_argument("--truth", default="finetune")
    ap.add_argument("--fraction", type=float, default=1.0)
    ap.add_argument("--csv")
    args = ap.parse_args(argv)
    with ResultsStore(args.db) as st:
        rows = st.query()
    encoders = sorted({r["encoder"] for r in rows})
    zoos = [("all", None)] + [(f"without {e}", e) for e in encoders]
    out = []
    for label, drop in zoos:
        sub = [r for r in rows if r["encoder"] != drop]
        a = zoo_selection_from_rows(sub, truth=args.truth, fraction=args.fraction,
                                    plot=False)
        for est, s in sorted(a.summary["by_estimator"].items()):
            out.append({"zoo": label, "estimator": est, "n_targets": s["n_targets"],
                        "mean_regret": round(s["mean_regret"], 4),
                        "top1_hit_rate": round(s["top1_hit_rate"], 3)})
    ests = sorted({r["estimator"] for r in out})
    print(f"mean regret (top-1 hit rate) vs {args.truth}, estimators on fraction "
          f"{args.fraction}; {args.db}")
    print("| estimator | " + " | ".join(z for z, _ in zoos) + " |")
    print("|---" * (len(zoos) + 1) + "|")
    for est in ests:
        cells = []
        for z, _ in zoos:
            r = next((x for x in out if x["zoo"] == z and x["estimator"] == est), None)
            cells.append("-" if r is None else f"{r['mean_regret']:.3f} ({r['top1_hit_rate']:.2f})")
        print(f"| {est} | " + " | ".join(cells) + " |")
    if args.csv:
        atomic_write_text(args.csv, _csv(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
