"""Debiased Sinkhorn for W1: taskrel's own solver against POT's and geomloss's.

Usage::

    python benchmarks/bench_sinkhorn.py [--features-dir .cache/features]
        [--pairs near far] [--ns 1000 2000] [--dims 64 512] [--repeats 3]
        [--epsilon 0.01] [--solvers ours geomloss:0.5 geomloss:0.9 geomloss:0.99 pot]
        [--pot-max-n 1000] [--exact-max-n 5000] [--threads 1] [--device cpu]
        [--json OUT]

Inputs are real encoder features (EfficientNet-Lite0, 1280-d, written by
``benchmarks/prepare_features.py``): ``fmnist.npz`` and ``mnist5k.npz`` (keys
``features``, ``test_features``; train and test rows are pooled). Pairs:

``near``
    Two disjoint random halves of Fashion-MNIST (same distribution: W1 is small, the
    case where an estimator's bias matters most).
``far``
    MNIST-5k rows against Fashion-MNIST rows (different distributions).

``n`` rows a side, projected on the top ``d`` principal axes of the pooled 2n rows
(seeded; ``d >= 1280`` keeps the raw features), float64.

Solvers, all on one blur: ``eps = epsilon x`` the standard deviation of the cross
distances on up to 512 seeded rows a side (exactly the scale taskrel's
``w1(method="sinkhorn", epsilon=...)`` uses, recomputed here):

``exact``
    ``ot.emd2`` on the full Euclidean cost matrix (the reference; ``n <=
    --exact-max-n``).
``ours``
    ``taskrel.wasserstein.w1(X, Y, method="sinkhorn", epsilon=...)``: debiased
    :math:`S_\\varepsilon` (dual value), log-domain, eps-scaling by 0.7 then iterations
    at the final eps until the dual value settles (at most 1,000).
``geomloss:S``
    ``geomloss.SamplesLoss("sinkhorn", p=1, blur=eps, scaling=S, debias=True,
    diameter=D, backend="tensorized")``: the same :math:`S_\\varepsilon`, eps-scaling by
    ``S`` from the same diameter ``D`` (max distance on the same sample), one
    iteration per eps and no convergence loop (its design).
``pot``
    ``ot.bregman.empirical_sinkhorn_divergence(X, Y, eps, metric="euclidean",
    method="sinkhorn_log")`` on torch tensors, POT's defaults otherwise
    (``numIterMax=10000``, ``stopThr=1e-9``): the "sharp" divergence (transport cost of
    the entropic plans, no entropy term), no eps-scaling; ``n <= --pot-max-n``.
    ``conv`` reports whether POT warned that it did not converge.

Each (case, solver) runs in its own subprocess with ``--threads`` torch/BLAS threads
(default 1, so two solvers see the same machine): the median wall time of
``--repeats`` calls (min and max beside it), the median CPU time of the process (all
its threads; on a machine shared with other jobs it varies less than wall time), the
value, its relative error against exact, and ``rss MB``, the growth of the process's
peak resident memory over the calls (from /proc; torch's CPU allocations included)
or ``cuda MB``, torch's peak CUDA allocation.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

RAW_DIM = 1280


# ---------------------------------------------------------------- inputs


def _pooled(root: Path, name: str) -> np.ndarray:
    z = np.load(root / f"{name}.npz")
    return np.concatenate([z["features"], z["test_features"]]).astype(np.float64)


def make_pair(root: Path, pair: str, n: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``pair``'s two n-row samples, projected on d principal axes."""
    rng = np.random.default_rng(0)
    fm = _pooled(root, "fmnist")
    fm = fm[rng.permutation(len(fm))]
    if pair == "near":
        if 2 * n > len(fm):
            raise ValueError(f"near pair: n={n} needs {2 * n} rows, fmnist has {len(fm)}")
        X, Y = fm[:n], fm[n:2 * n]
    elif pair == "far":
        mn = _pooled(root, "mnist5k")
        if n > len(mn):
            raise ValueError(f"far pair: n={n} exceeds mnist5k's {len(mn)} rows")
        X, Y = mn[rng.permutation(len(mn))[:n]], fm[:n]
    else:
        raise ValueError(f"unknown pair {pair!r}")
    if d >= X.shape[1]:
        return X, Y
    Z = np.concatenate([X, Y])
    mu = Z.mean(0)
    _, _, vt = np.linalg.svd(Z - mu, full_matrices=False)
    return (X - mu) @ vt[:d].T, (Y - mu) @ vt[:d].T


def blur_and_diameter(X: np.ndarray, Y: np.ndarray, epsilon: float) -> tuple[float, float]:
    """Absolute blur (epsilon x std of sampled cross distances) and sampled diameter."""
    import torch

    xt, yt = torch.as_tensor(X), torch.as_tensor(Y)
    g = torch.Generator(device="cpu").manual_seed(0)
    si = torch.randperm(xt.shape[0], generator=g)[:512]
    sj = torch.randperm(yt.shape[0], generator=g)[:512]
    both = torch.cat([xt[si], yt[sj]])
    cross = torch.cdist(xt[si], yt[sj])
    spread, mean = float(cross.std()), float(cross.mean())
    scale = spread if spread > 1e-3 * mean else mean
    return epsilon * scale, float(torch.cdist(both, both).max())


# ---------------------------------------------------------------- child: one solver


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _solver(name: str, eps: float, diameter: float, epsilon: float, device: str):
    """A callable (X, Y) -> float for ``name`` (imports only what it needs)."""
    import torch

    dev = torch.device(device)
    if name == "exact":
        import ot

        return lambda X, Y: float(ot.emd2([], [], ot.dist(X, Y, metric="euclidean"),
                                          numItermax=10**8))
    if name == "ours":
        from taskrel.wasserstein import w1

        return lambda X, Y: w1(X, Y, method="sinkhorn", epsilon=epsilon,
                               device=device).value
    if name.startswith("geomloss:"):
        from geomloss import SamplesLoss

        loss = SamplesLoss("sinkhorn", p=1, blur=eps, scaling=float(name.split(":")[1]),
                           debias=True, diameter=diameter, backend="tensorized")
        return lambda X, Y: float(loss(torch.as_tensor(X, device=dev),
                                       torch.as_tensor(Y, device=dev)))
    if name == "pot":
        import ot

        return lambda X, Y: float(ot.bregman.empirical_sinkhorn_divergence(
            torch.as_tensor(X, device=dev), torch.as_tensor(Y, device=dev), eps,
            metric="euclidean", method="sinkhorn_log"))
    raise ValueError(f"unknown solver {name!r}")


def child(case: str, name: str, eps: float, diameter: float, epsilon: float,
          repeats: int, device: str) -> dict:
    import torch

    z = np.load(case)
    X, Y = z["X"], z["Y"]
    solve = _solver(name, eps, diameter, epsilon, device)
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets the peak (VmHWM)
        rss0 = _status_kb("VmRSS")
    except OSError:
        rss0 = _status_kb("VmHWM")
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times, cpus, values, warned = [], [], [], False
    for _ in range(repeats):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            t0, c0 = time.perf_counter(), time.process_time()
            v = solve(X, Y)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
        warned |= any("converge" in str(w.message).lower() for w in caught)
        values.append(v)
    hwm = _status_kb("VmHWM")
    return {
        "times": times, "cpu_times": cpus, "values": values, "converged": not warned,
        "rss_mb": None if hwm is None or rss0 is None else max(hwm - rss0, 0) / 1024,
        "cuda_mb": (torch.cuda.max_memory_allocated() / 2**20
                    if device.startswith("cuda") else None),
    }


# ---------------------------------------------------------------- parent


def run_one(case: Path, name: str, eps: float, diameter: float, args) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads),
               MKL_NUM_THREADS=str(args.threads), OPENBLAS_NUM_THREADS=str(args.threads))
    cmd = [sys.executable, __file__, "--child", str(case), name, repr(eps),
           repr(diameter), repr(args.epsilon), str(args.repeats), args.device,
           str(args.threads)]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True,
                       timeout=args.run_timeout)
    if p.returncode != 0:
        return {"error": p.stderr.strip().splitlines()[-1] if p.stderr else "failed"}
    return json.loads(p.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        case, name, eps, diam, epsilon, repeats, device, threads = argv[1:9]
        import torch

        torch.set_num_threads(int(threads))
        out = child(case, name, float(eps), float(diam), float(epsilon), int(repeats),
                    device)
        print(json.dumps(out))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--features-dir", default=".cache/features")
    ap.add_argument("--pairs", nargs="*", default=["near", "far"])
    ap.add_argument("--ns", type=int, nargs="*", default=[1000, 2000])
    ap.add_argument("--dims", type=int, nargs="*", default=[64, 512])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epsilon", type=float, default=0.01)
    ap.add_argument("--solvers", nargs="*",
                    default=["ours", "geomloss:0.5", "geomloss:0.9", "geomloss:0.99",
                             "pot"])
    ap.add_argument("--pot-max-n", type=int, default=1000)
    ap.add_argument("--exact-max-n", type=int, default=5000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--run-timeout", type=float, default=3600)
    ap.add_argument("--json", default=None, help="also write the rows as JSON here")
    args = ap.parse_args(argv)
    root = Path(args.features_dir)
    if not (root / "fmnist.npz").is_file():
        print(f"no {root / 'fmnist.npz'}: run benchmarks/prepare_features.py first",
              file=sys.stderr)
        return 1
    rows = []
    print(f"epsilon={args.epsilon} (relative), {args.threads} thread(s), "
          f"device={args.device}, repeats={args.repeats}")
    print("| pair | n | d | solver | median s | min-max s | median cpu s | value "
          "| err vs exact | conv | rss MB |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for pair in args.pairs:
            for n in args.ns:
                for d in args.dims:
                    try:
                        X, Y = make_pair(root, pair, n, d)
                    except (ValueError, FileNotFoundError) as exc:
                        print(f"skip {pair} n={n} d={d}: {exc}", file=sys.stderr)
                        continue
                    d_eff = X.shape[1]
                    case = Path(tmp) / f"{pair}_{n}_{d_eff}.npz"
                    np.savez(case, X=X, Y=Y)
                    eps, diam = blur_and_diameter(X, Y, args.epsilon)
                    exact = None
                    solvers = (["exact"] if n <= args.exact_max_n else []) + [
                        s for s in args.solvers if s != "pot" or n <= args.pot_max_n]
                    for s in solvers:
                        r = run_one(case, s, eps, diam, args)
                        row = {"pair": pair, "n": n, "d": d_eff, "solver": s,
                               "eps": eps, "diameter": diam, **r}
                        rows.append(row)
                        if "error" in r:
                            print(f"| {pair} | {n} | {d_eff} | {s} | error: {r['error']} "
                                  "| | | | | | |", flush=True)
                            continue
                        v = float(np.median(r["values"]))
                        if s == "exact":
                            exact = v
                        err = "" if exact is None else f"{(v - exact) / exact:+.3%}"
                        rss = "" if r["rss_mb"] is None else f"{r['rss_mb']:.0f}"
                        if r.get("cuda_mb") is not None:
                            rss += f" (cuda {r['cuda_mb']:.0f})"
                        print(f"| {pair} | {n} | {d_eff} | {s} | "
                              f"{np.median(r['times']):.2f} | {min(r['times']):.2f}-"
                              f"{max(r['times']):.2f} | {np.median(r['cpu_times']):.2f} | "
                              f"{v:.4f} | {err} | "
                              f"{'yes' if r['converged'] else 'no'} | {rss} |",
                              flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
