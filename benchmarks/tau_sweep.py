"""How the bound and the transferability move with tau (the head's gradient-norm cap).

For each (reference, target) pair of real encoder features and each tau, runs
``task_relatedness`` (fast recipe) and ``linear_probe`` with the same tau, and writes a
table (CSV + JSON) and a plot (PNG): the bound, its three terms, and the probe's test
loss and accuracy against tau. ``auto`` is taskrel's default rule (log K_R over the
median distance between reference class means), evaluated per reference.

Default features: EfficientNet-Lite0 at 64 px from ``benchmarks/prepare_features.py``
(``.cache/features/{fmnist,digits,mnist5k}.npz``); reference Fashion-MNIST.

Usage:
    python benchmarks/tau_sweep.py [--taus 0.02,0.1,0.5,auto,5,50] [--out out/tau_sweep]
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import time
from pathlib import Path

import numpy as np
import torch

import taskrel
from taskrel.io import atomic_write_json, atomic_write_text, load_task

HERE = Path(__file__).resolve().parent
CACHE = HERE.parent / ".cache" / "features"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference", default=str(CACHE / "fmnist.npz"))
    ap.add_argument("--targets", default=f"{CACHE / 'digits.npz'},{CACHE / 'mnist5k.npz'}")
    ap.add_argument("--taus", default="0.02,0.1,0.5,auto,5,50")
    ap.add_argument("--out", default="out/tau_sweep")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--plot-only", action="store_true",
                    help="redraw the PNG from OUT/tau_sweep.json without recomputing")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    if args.plot_only:
        import json

        return plot(json.loads((out / "tau_sweep.json").read_text())["rows"], out)
    ref = load_task(args.reference)
    targets = [load_task(p) for p in args.targets.split(",")]
    taus: list[float | str] = [t if t == "auto" else float(t) for t in args.taus.split(",")]
    rows = []
    for tgt in targets:
        name = Path(tgt.path or "target").stem
        for tau in taus:
            t0 = time.perf_counter()
            r = taskrel.task_relatedness(
                ref.features, ref.labels, tgt.features, tgt.labels,
                reference_test_features=ref.test_features,
                reference_test_labels=ref.test_labels,
                target_test_features=tgt.test_features,
                target_test_labels=tgt.test_labels,
                tau=tau, seed=args.seed, device="cpu",
            )
            secs = time.perf_counter() - t0
            p = taskrel.linear_probe(tgt.features, tgt.labels, tgt.test_features,
                                     tgt.test_labels, tau=r.tau, seed=args.seed,
                                     device="cpu")
            row = {
                "target": name, "tau_rule": str(tau), "tau": r.tau, "bound": r.bound,
                "reweighted_reference_loss": r.reweighted_reference_loss,
                "label_mismatch": r.label_mismatch,
                "lipschitz_x_W": r.lipschitz * r.distribution_mismatch,
                "lipschitz": r.lipschitz, "W1": r.distribution_mismatch,
                "bound_certified": r.bound_certified,
                "reference_accuracy": r.reference_accuracy,
                "transformed_accuracy": r.transformed_accuracy,
                "probe_loss": p.loss, "probe_accuracy": p.accuracy,
                "ridge_selected": r.settings.get("ridge_selected"),
                "seconds": secs,
            }
            rows.append(row)
            print(f"{name:10s} tau={r.tau:<8.4g}({tau}) bound {r.bound:7.3f} "
                  f"[ref {row['reweighted_reference_loss']:.3f} + label "
                  f"{r.label_mismatch:.3f} + L*W {row['lipschitz_x_W']:.3f}] "
                  f"probe loss {p.loss:.3f} acc {p.accuracy:.3f} "
                  f"transformed acc {r.transformed_accuracy:.3f} ({secs:.0f} s)",
                  flush=True)
    out.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(out / "tau_sweep.csv", buf.getvalue())
    atomic_write_json(out / "tau_sweep.json", {"reference": args.reference, "rows": rows})
    return plot(rows, out)


def plot(rows: list[dict], out: Path) -> int:
    """Bound, its terms and the probe loss against tau, log-log, one panel per target."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot (pip install 'taskrel[plot]')")
        return 0
    names = sorted({r["target"] for r in rows})
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 4), squeeze=False)
    for ax, nm in zip(axes[0], names):
        rs = sorted((r for r in rows if r["target"] == nm), key=lambda r: r["tau"])
        t = np.array([r["tau"] for r in rs])
        for key, label in (("bound", "bound"), ("probe_loss", "probe test loss"),
                           ("reweighted_reference_loss", "reweighted ref. loss"),
                           ("lipschitz_x_W", "Lipschitz x W1")):
            ax.plot(t, [r[key] for r in rs], marker="o", label=label)
        auto = [r["tau"] for r in rs if r["tau_rule"] == "auto"]
        if auto:
            ax.axvline(auto[0], color="grey", ls=":", label="auto tau")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("tau (gradient-norm cap of the head)")
        ax.set_ylabel("nats")
        ax.set_title(f"fmnist -> {nm}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "tau_sweep.png", dpi=110)
    print(f"wrote {out}/tau_sweep.csv, .json, .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
