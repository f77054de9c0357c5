"""GPU checks for benchmarks/gpu_check.sh: the engine on CUDA and the W1 estimators.

Usage::

    python benchmarks/gpu_check.py engine   # task_relatedness, device="cuda" vs "cpu"
    python benchmarks/gpu_check.py w1       # exact / minibatch / Sinkhorn (GPU) W1
    python benchmarks/gpu_check.py scores   # torch scores, cuda vs cpu, n=50k d=2048
    python benchmarks/gpu_check.py relate   # one reference head, targets of 1k ... 1M rows:
                                            # batched solver on cuda vs exact on cpu
    python benchmarks/gpu_check.py engine --smoke   # tiny sizes on the CPU (checks the script)

Inputs are generated (10 Gaussian classes, float32); nothing is read from disk.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from bench_scaling import make_task  # noqa: E402

SMOKE = "--smoke" in sys.argv
GPU = "cpu" if SMOKE else "cuda"
S = 20 if SMOKE else 1  # size divisor


def _peak() -> str:
    if GPU != "cuda":
        return ""
    return f" cuda_peak={torch.cuda.max_memory_allocated() / 2**20:.0f} MB"


def engine() -> None:
    import taskrel

    Xr, yr = make_task(10_000 // S, 512, seed=1)
    Xt, yt = make_task(20_000 // S, 512, seed=2, shift=0.5)
    for device in (GPU, "cpu"):
        t0 = time.perf_counter()
        r = taskrel.task_relatedness(Xr, yr, Xt, yt, device=device, seed=0)
        if device == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        extra = _peak() if device == "cuda" else ""
        print(f"engine device={device}: {dt:.1f} s bound={r.bound:.4f} "
              f"rrl={r.reweighted_reference_loss:.4f} label={r.label_mismatch:.4f} "
              f"W={r.distribution_mismatch:.4f} L={r.lipschitz:.4f}{extra}", flush=True)


def relate() -> None:
    """Issue 16's engine check: fit the reference once (10k x 1280, 10 classes), then
    relate targets of 1k ... 1M rows; on cuda the fast recipe runs the batched solver.
    The exact CPU recipe runs beside it while a target is small enough (<= 10k)."""
    from taskrel.relatedness import TaskRelatedness

    d = 1280
    Xr, yr = make_task(10_000 // S, d, seed=1)
    fitted = {}
    for device in (GPU, "cpu"):
        t0 = time.perf_counter()
        fitted[device] = TaskRelatedness(device=device, seed=0).fit(Xr, yr)
        print(f"relate fit reference device={device}: {time.perf_counter() - t0:.1f} s",
              flush=True)
    for n in (1_000, 10_000, 100_000, 1_000_000):
        Xt, yt = make_task(n // S, d, seed=2, shift=0.5)
        bounds = {}
        for device in (GPU, "cpu") if n <= 10_000 else (GPU,):
            t0 = time.perf_counter()
            r = fitted[device].relate(Xt, yt)
            if device == "cuda":
                torch.cuda.synchronize()
            bounds[device] = r.bound
            print(f"relate n={n // S} device={device} solver="
                  f"{r.settings.get('solver', r.settings['recipe'])}: "
                  f"{time.perf_counter() - t0:.2f} s bound={r.bound:.4f}{_peak()}",
                  flush=True)
        if len(bounds) == 2:
            g, c = bounds[GPU], bounds["cpu"]
            print(f"relate n={n // S} bound rel.diff {GPU} vs cpu: {abs(g - c) / c:.2e}")


def w1() -> None:
    from taskrel.wasserstein import class_conditional_w1

    Xr, yr = make_task(10_000 // S, 512, seed=1)
    Xt, yt = make_task(10_000 // S, 512, seed=2, shift=0.05)
    ex = class_conditional_w1(Xr, yr, Xt, yt, method="exact")
    print(f"W1 {1000 // S}/class d=512: exact={ex.value:.4f} ({ex.seconds:.1f} s, cpu)", flush=True)
    for kw in (dict(method="minibatch", batch_size=250, n_batches=10),
               dict(method="sinkhorn", device=GPU),
               dict(method="sinkhorn", device=GPU, epsilon=0.03)):
        e = class_conditional_w1(Xr, yr, Xt, yt, **kw)
        print(f"  {kw}: {e.value:.4f} rel.err={(e.value - ex.value) / ex.value:+.3%} "
              f"stderr={e.stderr:.4f} {e.seconds:.1f} s", flush=True)
    # Large: 10k points per class, full Sinkhorn with chunked cost rows on the GPU.
    Xr, yr = make_task(100_000 // S, 512, seed=3)
    Xt, yt = make_task(100_000 // S, 512, seed=4, shift=0.05)
    if GPU == "cuda":
        torch.cuda.reset_peak_memory_stats()
    e = class_conditional_w1(Xr, yr, Xt, yt, method="sinkhorn", device=GPU, epsilon=0.03)
    print(f"W1 {10000 // S}/class d=512 sinkhorn eps=0.03 {GPU} (full, chunked): "
          f"{e.value:.4f} {e.seconds:.1f} s{_peak()}", flush=True)
    e = class_conditional_w1(Xr, yr, Xt, yt, method="minibatch", batch_size=1000,
                             n_batches=5)
    print(f"  same, minibatch 1000 x5 (cpu): {e.value:.4f} +- {e.stderr:.4f} "
          f"{e.seconds:.1f} s", flush=True)


def scores() -> None:
    """The torch scores at n=50000, d=2048, C=100: every GPU run first, then the CPU
    ones (slowest last), so a stage cap still leaves the GPU numbers."""
    from bench_scores import make_data

    from taskrel.scores import (
        gbc,
        h_score,
        knn_accuracy,
        logme,
        regularized_h_score,
        sfda,
        transrate,
    )

    X, y, _ = make_data(50_000 // S, 2048 // S, 100 // S, probs=False)
    # make_data's classes are far apart (k-NN and SFDA would be 1.0): add noise so
    # the values discriminate.
    X += np.random.default_rng(5).standard_normal(X.shape, dtype=np.float32) * 2.0
    print(f"scores: n={X.shape[0]} d={X.shape[1]} C={int(y.max()) + 1} float32 input",
          flush=True)
    # CPU order: fastest first (knn is O(n^2 d), sfda two LDA fits).
    fns = [gbc, logme, h_score, regularized_h_score, transrate, knn_accuracy, sfda]
    gpu_values = {}
    if GPU == "cuda":
        # CUDA context and kernels warmed up outside the timings.
        logme(X[:200], np.arange(200) % 2, device="cuda")
    for f in fns:
        if GPU == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        gpu_values[f.__name__] = v = f(X, y, device=GPU)
        print(f"  {f.__name__:<20} {GPU}: {time.perf_counter() - t0:6.2f} s  "
              f"value={v:.10g}{_peak()}", flush=True)
    for f in fns:
        t0 = time.perf_counter()
        v = f(X, y, device="cpu")
        g = gpu_values[f.__name__]
        print(f"  {f.__name__:<20} cpu : {time.perf_counter() - t0:6.2f} s  "
              f"value={v:.10g}  rel.diff={abs(g - v) / max(abs(v), 1e-300):.1e}",
              flush=True)


if __name__ == "__main__":
    {"engine": engine, "w1": w1, "scores": scores, "relate": relate}[sys.argv[1]]()
