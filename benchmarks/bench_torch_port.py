"""Time the torch estimators against the numpy code they replaced, in one process.

The numpy implementation is read from git (``--rev``, default 202f13a: the last
commit before the torch port) into a temporary folder and imported as the package
``taskrel_old``; the current one is ``taskrel``. Both run on the same inputs in the
same process, alternating, ``--repeats`` times each; the table gives medians.

    python benchmarks/bench_torch_port.py                       # n=20000 d=512 C=10
    python benchmarks/bench_torch_port.py --threads 2 --methods logme
    python benchmarks/bench_torch_port.py --device cuda          # torch side on the GPU
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_old(rev: str, where: str):
    """Import ``src/taskrel`` of ``rev`` as the package ``taskrel_old``."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "src/taskrel"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", where], input=archive, check=True)
    pkg = Path(where) / "src" / "taskrel"
    spec = importlib.util.spec_from_file_location(
        "taskrel_old", pkg / "__init__.py", submodule_search_locations=[str(pkg)])
    mod = importlib.util.module_from_spec(spec)
    sys.modules["taskrel_old"] = mod
    spec.loader.exec_module(mod)
    return importlib.import_module("taskrel_old.scores")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rev", default="202f13a", help="git revision of the numpy code")
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--C", type=int, default=10)
    ap.add_argument("--noise", type=float, default=2.0,
                    help="extra Gaussian noise on make_data's features (its classes "
                    "alone are so far apart that k-NN scores 1.0)")
    ap.add_argument("--methods", default="logme,knn_accuracy")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1,
                    help="BLAS/OpenMP threads for both (numpy's OpenBLAS and torch)")
    ap.add_argument("--device", default="cpu", help="device of the torch side")
    args = ap.parse_args(argv)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)  # before numpy / torch load their pools
    sys.path.insert(0, str(ROOT / "src"))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from bench_scores import make_data

    import taskrel.scores as new

    with tempfile.TemporaryDirectory() as tmp:
        old = load_old(args.rev, tmp)
        X, y, _ = make_data(args.n, args.d, args.C, probs=False)
        X += np.random.default_rng(5).standard_normal(X.shape, np.float32) * args.noise
        print(f"n={args.n} d={args.d} C={args.C} noise={args.noise} "
              f"threads={args.threads} torch "
              f"device={args.device}; {os.cpu_count()} CPUs, load average "
              f"{os.getloadavg()[0]:.1f}; medians of {args.repeats}")
        print("| score | numpy (old) s | torch s | speed-up | old value | new value |")
        print("|---|---|---|---|---|---|")
        for name in args.methods.split(","):
            f_old, f_new = getattr(old, name), getattr(new, name)
            t_old, t_new = [], []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                v_old = f_old(X, y)
                t_old.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                v_new = f_new(X, y, device=args.device)  # float(): synchronized
                t_new.append(time.perf_counter() - t0)
            mo, mn = float(np.median(t_old)), float(np.median(t_new))
            print(f"| {name} | {mo:.2f} | {mn:.2f} | {mo / mn:.2f}x | {v_old:.10g} "
                  f"| {v_new:.10g} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
