"""Error of the large-n W1 estimators against exact OT, on real encoder features.

Usage::

    python benchmarks/w1_accuracy.py --features-dir .cache/features [--device cuda]

Reads ``fmnist.npz`` and ``digits.npz`` (keys features, labels, test_features,
test_labels; written by ``benchmarks/prepare_features.py``) and prints a markdown table:
for each pair of class-labelled feature sets, the exact class-conditional W1 and, for
each estimator setting, its value, its relative error, its reported standard error
and its time. Pairs whose files are missing are skipped with a message.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from taskrel.wasserstein import class_conditional_w1


def pairs(root: Path, per_class: int) -> list[tuple[str, tuple]]:
    out = []
    fm = root / "fmnist.npz"
    dg = root / "digits.npz"
    if fm.is_file():
        z = np.load(fm)
        X, y = z["features"], z["labels"]
        # Two disjoint halves of the train split: same distribution, W1 = sampling noise.
        rng = np.random.default_rng(0)
        a, b = [], []
        for c in np.unique(y):
            rows = rng.permutation(np.flatnonzero(y == c))[: 2 * per_class]
            a.append(rows[:per_class])
            b.append(rows[per_class:])
        a, b = np.sort(np.concatenate(a)), np.sort(np.concatenate(b))
        out.append((f"fmnist train half vs half ({per_class}/class)",
                    (X[a], y[a], X[b], y[b])))
    else:
        print(f"skip fmnist: {fm} not found", file=sys.stderr)
    if fm.is_file() and dg.is_file():
        z, w = np.load(fm), np.load(dg)
        rng = np.random.default_rng(1)
        rows = np.concatenate([rng.permutation(np.flatnonzero(z["labels"] == c))[:per_class]
                               for c in np.unique(z["labels"])])
        out.append((f"digits train vs fmnist train (label k vs k, {per_class}/class)",
                    (w["features"], w["labels"], z["features"][rows], z["labels"][rows])))
    else:
        print(f"skip digits-vs-fmnist: {dg} or {fm} not found", file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--features-dir", default=".cache/features")
    ap.add_argument("--per-class", type=int, default=500)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batches", type=int, nargs="*", default=[50, 100, 200])
    ap.add_argument("--n-batches", type=int, default=10)
    ap.add_argument("--epsilons", type=float, nargs="*", default=[0.05, 0.02, 0.01, 0.005])
    args = ap.parse_args(argv)
    todo = pairs(Path(args.features_dir), args.per_class)
    if not todo:
        print("no feature files found", file=sys.stderr)
        return 1
    print("| pair | estimator | value | rel. error vs exact | reported stderr | seconds |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, (Xr, yr, Xt, yt) in todo:
        ex = class_conditional_w1(Xr, yr, Xt, yt, method="exact")
        print(f"| {name} | exact | {ex.value:.4f} | 0 | 0 | {ex.seconds:.1f} |", flush=True)
        for bs in args.batches:
            e = class_conditional_w1(Xr, yr, Xt, yt, method="minibatch", batch_size=bs,
                                     n_batches=args.n_batches, seed=0)
            rel = (e.value - ex.value) / ex.value
            print(f"| | minibatch b={bs} x{args.n_batches} | {e.value:.4f} | {rel:+.2%} | "
                  f"{e.stderr:.4f} | {e.seconds:.1f} |", flush=True)
        for eps in args.epsilons:
            e = class_conditional_w1(Xr, yr, Xt, yt, method="sinkhorn", epsilon=eps,
                                     device=args.device)
            rel = (e.value - ex.value) / ex.value
            print(f"| | sinkhorn eps={eps} ({e.settings['device']}) | {e.value:.4f} | "
                  f"{rel:+.2%} | - | {e.seconds:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
