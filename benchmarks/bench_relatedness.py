"""Benchmark: the ``fast`` recipe against the ``paper`` recipe, same features, one process.

Default features: EfficientNet-Lite0 (ImageNet weights, packaged) at 64 px, reference
Fashion-MNIST (10,000 train / 2,000 test), target scikit-learn digits (1,437 / 360),
built by ``benchmarks/prepare_features.py`` into ``.cache/features/``. Without them it
falls back to raw digits pixels (reference digits 0-4, target 5-9) and says so.

Both recipes use the same tau (default 0.02, the paper's) so their bounds compare.
The paper recipe runs ``--paper-steps`` steps (2001 = the official count); with fewer,
its time is extrapolated per step to 2001 and labelled as such.

Usage:
    python benchmarks/bench_relatedness.py [--reference R.npz --target T.npz]
        [--paper-steps 2001] [--tau 0.02] [--repeats 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

import taskrel
from taskrel.io import load_task

HERE = Path(__file__).resolve().parent
CACHE = HERE.parent / ".cache" / "features"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def load_pair(args: argparse.Namespace) -> tuple[dict, dict, str]:
    ref_path = Path(args.reference) if args.reference else CACHE / "fmnist.npz"
    tgt_path = Path(args.target) if args.target else CACHE / "digits.npz"
    if ref_path.is_file() and tgt_path.is_file():
        r, t = load_task(ref_path), load_task(tgt_path)
        desc = f"{ref_path.name} -> {tgt_path.name} (real encoder features)"
        return vars(r), vars(t), desc
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(0)

    def task(mask: np.ndarray) -> dict:
        idx = rng.permutation(np.flatnonzero(mask))
        cut = int(0.8 * idx.size)
        tr, te = idx[:cut], idx[cut:]
        return dict(features=X[tr], labels=y[tr], test_features=X[te],
                    test_labels=y[te])

    desc = "FALLBACK: digits pixels 0-4 -> 5-9 (run prepare_features.py for real features)"
    return task(y < 5), task(y >= 5), desc


def run(recipe: str, ref: dict, tgt: dict, args: argparse.Namespace, steps=None):
    t0 = time.perf_counter()
    res = taskrel.task_relatedness(
        ref["features"], ref["labels"], tgt["features"], tgt["labels"],
        reference_test_features=ref["test_features"],
        reference_test_labels=ref["test_labels"],
        target_test_features=tgt["test_features"],
        target_test_labels=tgt["test_labels"],
        tau=args.tau, recipe=recipe, device="cpu", seed=args.seed,
        max_iter=steps, progress=recipe == "paper",
    )
    return res, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference")
    ap.add_argument("--target")
    ap.add_argument("--paper-steps", type=int, default=2001)
    ap.add_argument("--tau", type=float, default=0.02)
    ap.add_argument("--repeats", type=int, default=3, help="fast-recipe repeats")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    ref, tgt, desc = load_pair(args)
    print(f"pair: {desc}")
    print(f"reference {np.shape(ref['features'])}, target {np.shape(tgt['features'])}, "
          f"tau={args.tau}, threads={args.threads}")

    fast_times, fast = [], None
    for _ in range(args.repeats):
        fast, s = run("fast", ref, tgt, args)
        fast_times.append(s)
    assert fast is not None
    fast_s = statistics.median(fast_times)
    fast_rss = peak_rss_mb()
    paper, paper_s = run("paper", ref, tgt, args, steps=args.paper_steps)
    paper_rss = peak_rss_mb()
    steps = paper.iterations
    # Only the optimization loop scales with the step count: the head training and the
    # evaluation are paid once, so extrapolate the loop alone.
    loop_s = paper.settings["paper_loop_seconds"]
    paper_2001 = paper_s - loop_s + loop_s * 2001 / steps
    rows = []
    for name, r, s in (("fast", fast, fast_s), ("paper", paper, paper_s)):
        rows.append({
            "recipe": name, "seconds": s, "bound": r.bound,
            "reweighted_reference_loss": r.reweighted_reference_loss,
            "label_mismatch": r.label_mismatch,
            "distribution_mismatch": r.distribution_mismatch,
            "lipschitz": r.lipschitz, "bound_certified": r.bound_certified,
            "transformed_accuracy": r.transformed_accuracy,
            "iterations": r.iterations,
        })
    print(f"{'recipe':<7}{'seconds':>10}{'bound':>9}{'ref.loss':>9}{'label':>8}"
          f"{'W1':>9}{'L':>8}{'cert.bound':>11}{'acc':>7}{'iters':>7}")
    for row in rows:
        print(f"{row['recipe']:<7}{row['seconds']:10.1f}{row['bound']:9.4f}"
              f"{row['reweighted_reference_loss']:9.4f}{row['label_mismatch']:8.4f}"
              f"{row['distribution_mismatch']:9.3f}{row['lipschitz']:8.4f}"
              f"{row['bound_certified']:11.4f}{row['transformed_accuracy']:7.3f}"
              f"{row['iterations']:7d}")
    extrap = "" if steps >= 2001 else f" (extrapolated from {steps} steps)"
    print(f"fast: median of {args.repeats} runs {fast_s:.1f} s "
          f"(runs: {', '.join(f'{t:.1f}' for t in fast_times)}); peak RSS {fast_rss:.0f} MB")
    print(f"paper: {paper_s:.1f} s for {steps} steps (loop {loop_s:.1f} s, "
          f"{loop_s / steps:.2f} s/step); 2001 steps = {paper_2001:.0f} s"
          f"{extrap}; peak RSS (process) {paper_rss:.0f} MB")
    print(f"speed-up fast vs paper(2001 steps): {paper_2001 / fast_s:.1f}x")
    print(f"bound ratio fast / paper: {fast.bound / paper.bound:.4f} "
          f"(paper bound after {steps} steps)")
    if args.json:
        from taskrel.io import atomic_write_json

        atomic_write_json(args.json, {"pair": desc, "tau": args.tau, "rows": rows,
                                      "paper_steps": steps,
                                      "paper_seconds_2001": paper_2001,
                                      "speedup": paper_2001 / fast_s})
    return 0


if __name__ == "__main__":
    sys.exit(main())
