"""Scaling benchmark: time and peak memory against the target size n and dimension d.

Usage::

    python benchmarks/bench_scaling.py [--quick] [--gpu] [--json OUT]
        [--ns 1000 10000 100000] [--dims 512 2048] [--run-timeout 600]

Measures, on generated inputs (10 Gaussian classes, float32), for each target size n
and dimension d:

``relatedness``
    ``taskrel.task_relatedness`` with fixed batch settings (``max_per_class=500``,
    ``max_eval_per_class=2000``, ``max_rows_per_class=2000``, given target labels, a fixed 5,000-row reference;
    ``--quick``: 200, 500 and 2,000 rows).
``w1``
    :func:`taskrel.wasserstein.class_conditional_w1` between the reference and the
    target: ``minibatch`` (batch 500 x 10; ``--quick`` 200 x 5) on the CPU;
    ``sinkhorn`` (batch 2,000 x 5) with ``--gpu``.
``logme``
    ``taskrel.scores.logme`` on the target, when that module imports (else skipped
    with a message).

Each measurement runs in its own subprocess, after the inputs are generated, so its
memory is its own: ``py_peak`` is tracemalloc's peak (numpy and Python objects),
``rss_peak`` the growth of the process's peak resident memory over the call (torch's
CPU allocations included; from /proc, reset before the call when the kernel allows),
``cuda_peak`` torch's ``max_memory_allocated``. The growth exponent is the slope of
log(time) (and of log(rss_peak)) against log(n): 1 is linear, 0 is constant.

Default n: 1k, 10k, 100k (and 1M with ``--gpu``); d: 512 and 2048. ``--quick``
(for a 2-core machine): n 1k, 3k, 10k and d 512, 2048.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

K = 10
METHODS = ("relatedness", "w1", "logme")
#: Fixed batch settings per profile: reference rows, engine caps, minibatch W1 batch.
PROFILES = {
    "full": dict(n_ref=5000, max_per_class=500, max_eval_per_class=2000, max_rows=2000,
                 w1_batch=500, w1_batches=10),
    "quick": dict(n_ref=2000, max_per_class=200, max_eval_per_class=500, max_rows=500,
                  w1_batch=200, w1_batches=5),
}


def make_task(n: int, d: int, seed: int, shift: float = 0.0):
    """Gaussian classes around random means (float32, generated in row blocks)."""
    rng = np.random.default_rng(seed)
    means = np.random.default_rng(12345).normal(size=(K, d)).astype(np.float32) * 3.0
    y = np.arange(n) % K
    X = np.empty((n, d), dtype=np.float32)
    for s in range(0, n, 65536):
        e = min(n, s + 65536)
        X[s:e] = rng.standard_normal((e - s, d), dtype=np.float32)
        X[s:e] += means[y[s:e]] + shift
    return X, y


def _status_kb(key: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return float(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def run_one(method: str, n: int, d: int, device: str, profile: str) -> dict:
    """One measurement in this process (called in a fresh subprocess)."""
    import torch

    P = PROFILES[profile]
    Xr, yr = make_task(P["n_ref"], d, seed=1)
    Xt, yt = make_task(n, d, seed=2, shift=0.5)
    if method == "relatedness":
        import taskrel

        def call():
            r = taskrel.task_relatedness(Xr, yr, Xt, yt, max_per_class=P["max_per_class"],
                                         max_eval_per_class=P["max_eval_per_class"],
                                         max_rows_per_class=P["max_rows"],
                                         device=device, seed=0)
            return float(r.bound)
    elif method == "w1":
        from taskrel.wasserstein import class_conditional_w1

        if device == "cuda":
            kw = dict(method="sinkhorn", batch_size=2000, n_batches=5, device="cuda")
        else:
            kw = dict(method="minibatch", batch_size=P["w1_batch"],
                      n_batches=P["w1_batches"])

        def call():
            return float(class_conditional_w1(Xr, yr, Xt, yt, **kw).value)
    elif method == "logme":
        try:
            from taskrel.scores import logme
        except ImportError as exc:
            return {"skipped": f"taskrel.scores.logme does not import ({exc})"}

        def call():
            return float(logme(Xt, yt, device=device))
    else:
        raise SystemExit(f"unknown method {method!r}")
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    reset = _reset_peak_rss()
    rss0 = _status_kb("VmRSS") if reset else _status_kb("VmHWM")
    tracemalloc.start()
    t0 = time.perf_counter()
    value = call()
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    _, py_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    hwm = _status_kb("VmHWM")
    out = {
        "seconds": seconds,
        "py_peak_mb": py_peak / 2**20,
        "rss_peak_mb": None if hwm is None or rss0 is None else max(hwm - rss0, 0) / 1024,
        "cuda_peak_mb": (torch.cuda.max_memory_allocated() / 2**20) if device == "cuda"
        else None,
        "value": value,
    }
    return out


def slope(xs, ys) -> float | None:
    pts = [(x, y) for x, y in zip(xs, ys) if y is not None and y > 0]
    if len(pts) < 2:
        return None
    lx, ly = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
    return float(np.polyfit(lx, ly, 1)[0])


def fmt(v, spec=".1f") -> str:
    return "-" if v is None else format(v, spec)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="taskrel scaling benchmark")
    ap.add_argument("--quick", action="store_true", help="small sizes for a 2-core machine")
    ap.add_argument("--gpu", action="store_true", help="device='cuda', and n up to 1M")
    ap.add_argument("--ns", type=int, nargs="*")
    ap.add_argument("--dims", type=int, nargs="*")
    ap.add_argument("--methods", nargs="*", default=list(METHODS), choices=METHODS)
    ap.add_argument("--run-timeout", type=float, default=600.0,
                    help="seconds before one measurement is abandoned")
    ap.add_argument("--json", help="write all measurements here")
    ap.add_argument("--one", nargs=5, metavar=("METHOD", "N", "D", "DEVICE", "PROFILE"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        m, n, d, dev, prof = args.one
        print(json.dumps(run_one(m, int(n), int(d), dev, prof)))
        return 0
    ns = args.ns or ([1000, 3000, 10000] if args.quick else
                     [1000, 10000, 100000] + ([1_000_000] if args.gpu else []))
    dims = args.dims or [512, 2048]
    device = "cuda" if args.gpu else "cpu"
    profile = "quick" if args.quick else "full"
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parent.parent / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    rows = []
    print(f"device={device} K={K} profile={profile} {PROFILES[profile]}; "
          "one subprocess per row", flush=True)
    print("| method | d | n | seconds | py_peak MB | rss_peak MB | cuda_peak MB |")
    print("| --- | --- | --- | --- | --- | --- | --- |", flush=True)
    skipped: set[str] = set()
    for method in args.methods:
        for d in dims:
            for n in ns:
                if method in skipped:
                    continue
                cmd = [sys.executable, __file__, "--one", method, str(n), str(d), device,
                       profile]
                try:
                    p = subprocess.run(cmd, capture_output=True, text=True, env=env,
                                       timeout=args.run_timeout)
                except subprocess.TimeoutExpired:
                    print(f"| {method} | {d} | {n} | timeout > {args.run_timeout:.0f} s "
                          "| | | |", flush=True)
                    break  # larger n would time out too
                if p.returncode != 0:
                    tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or ["?"]
                    print(f"| {method} | {d} | {n} | failed: {tail[0][:120]} | | | |",
                          flush=True)
                    continue
                res = json.loads(p.stdout.strip().splitlines()[-1])
                if "skipped" in res:
                    print(f"skip {method}: {res['skipped']}", flush=True)
                    skipped.add(method)
                    continue
                rows.append({"method": method, "d": d, "n": n, "device": device, **res})
                print(f"| {method} | {d} | {n} | {res['seconds']:.2f} | "
                      f"{fmt(res['py_peak_mb'])} | {fmt(res['rss_peak_mb'])} | "
                      f"{fmt(res['cuda_peak_mb'])} |", flush=True)
    print("\nGrowth exponents (slope of log y against log n):")
    print("| method | d | time | rss_peak | py_peak | cuda_peak |")
    print("| --- | --- | --- | --- | --- | --- |")
    for method in args.methods:
        for d in dims:
            sel = [r for r in rows if r["method"] == method and r["d"] == d]
            if len(sel) < 2:
                continue
            xs = [r["n"] for r in sel]
            print(f"| {method} | {d} | {fmt(slope(xs, [r['seconds'] for r in sel]), '.2f')}"
                  f" | {fmt(slope(xs, [r['rss_peak_mb'] for r in sel]), '.2f')}"
                  f" | {fmt(slope(xs, [r['py_peak_mb'] for r in sel]), '.2f')}"
                  f" | {fmt(slope(xs, [r['cuda_peak_mb'] for r in sel]), '.2f')} |")
    if args.json:
        from taskrel.io import atomic_write_json

        atomic_write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
