"""Time every registered score on synthetic features: wall time and peak memory.

Each (estimator, n, d, C) runs in a fresh child process (spawn) with a time limit, so a
slow estimator cannot stall the grid and peak memory is measured per run:
``py_peak`` is tracemalloc's peak of Python/numpy allocations made by the estimator
(inputs excluded; torch's CPU allocator is invisible to it, so for the torch scores
it counts only the validation's numpy copies); ``rss`` is the child's peak resident
set (inputs, libraries and torch included).

    python benchmarks/bench_scores.py --quick            # n=10k, d=512, C=10
    python benchmarks/bench_scores.py                    # full grid (slow on 2 cores)
    python benchmarks/bench_scores.py --n 50000 --d 2048 --C 100 --methods logme
    python benchmarks/bench_scores.py --quick --device cuda   # torch scores on the GPU

With ``--device``, the scores that have a torch path (``get_score(name).gpu``) get
that device; the others run on the CPU as always (the table's ``device`` column says
which). ``cuda_peak`` is torch's peak of CUDA memory allocated by the call.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing as mp
import os
import sys
import time

N_SOURCE_CLASSES = 1000


def make_data(n: int, d: int, C: int, seed: int = 0, probs: bool = True):
    import numpy as np

    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, size=n)
    y[:C] = np.arange(C)  # every class present
    # Class means in a random 32-dim subspace, plus isotropic noise: float32 like an
    # encoder's output.
    basis = rng.normal(size=(min(32, d), d)) / np.sqrt(d)
    means = rng.normal(size=(C, basis.shape[0])) @ basis * 3.0
    X = (means[y] + rng.normal(size=(n, d)) * 0.5).astype(np.float32)
    if not probs:
        return X, y, None
    logits = rng.normal(size=(n, N_SOURCE_CLASSES)).astype(np.float32)
    logits[np.arange(n), y % N_SOURCE_CLASSES] += 3.0
    P = np.exp(logits - logits.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    return X, y, P


def _child(name: str, n: int, d: int, C: int, device: str | None,
           q) -> None:  # runs in the child process
    import resource
    import tracemalloc
    import warnings

    import numpy as np

    from taskrel.scores import get_score

    spec = get_score(name)
    X, y, P = make_data(n, d, C, probs=bool({"source_probs", "source_labels"}
                                            & set(spec.inputs)))
    src = None
    if "source_task" in spec.inputs:
        Xs, ys, _ = make_data(min(n, 5000), d, C, seed=1, probs=False)
        src = (Xs, ys)
    args = []
    for kind in spec.inputs:
        args += {"features": [X], "labels": [y], "source_probs": [P],
                 "source_labels": [None if P is None else np.argmax(P, axis=1)],
                 "source_task": list(src or ())}[kind]
    kw = {}
    if device and spec.gpu:
        from taskrel.scores._torch_ops import check_device

        kw["device"] = check_device(device)
    cuda = bool(kw) and kw["device"].type == "cuda"
    if cuda:
        import torch

        torch.zeros(1, device=kw["device"])  # CUDA context outside the timing
        if spec.inputs == ("features", "labels"):  # and cuBLAS / cuSOLVER handles
            spec.func(X[:200], np.arange(200) % 2, **kw)
        torch.cuda.reset_peak_memory_stats()
    tracemalloc.start()
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        value = spec.func(*args, **kw)  # a Python float: the device has finished
    sec = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB on Linux
    cuda_peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
    q.put(dict(value=value, seconds=sec, py_peak_mib=peak / 2**20, rss_mib=rss,
               device=str(kw["device"]) if kw else "cpu", cuda_peak_mib=cuda_peak,
               warnings=sorted({type(x.message).__name__ for x in w})))


def run_one(name: str, n: int, d: int, C: int, timeout: float,
            device: str | None = None) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(name, n, d, C, device, q))
    t0 = time.perf_counter()
    p.start()
    p.join(timeout)
    row = dict(score=name, n=n, d=d, C=C)
    if p.is_alive():
        p.kill()
        p.join()
        row.update(status=f"timeout>{timeout:.0f}s")
    elif p.exitcode != 0 or q.empty():
        row.update(status=f"failed(exit {p.exitcode})")
    else:
        row.update(status="ok", **q.get())
    row["wall_incl_data_s"] = round(time.perf_counter() - t0, 2)
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="only n=10k, d=512, C=10")
    ap.add_argument("--n", type=int, nargs="+", default=[10_000, 50_000])
    ap.add_argument("--d", type=int, nargs="+", default=[512, 2048])
    ap.add_argument("--C", type=int, nargs="+", default=[10, 100])
    ap.add_argument("--methods", default="all",
                    help="comma-separated names, or 'all' (every registered score but "
                    "task_relatedness, which benchmarks/bench_relatedness.py times)")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per run")
    ap.add_argument("--threads", type=int,
                    help="BLAS threads in the children (OPENBLAS/OMP/MKL_NUM_THREADS); "
                    "on a loaded machine 1 can be much faster than 2")
    ap.add_argument("--device", help="device for the scores with a torch path "
                    "(cpu, auto, cuda, cuda:N); default: each score's own (cpu)")
    ap.add_argument("--json", help="write all rows as JSON")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.d, args.C = [10_000], [512], [10]
    if args.threads:
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(args.threads)  # inherited by the spawned children
    from tqdm import tqdm

    from taskrel.io import atomic_write_json
    from taskrel.scores import list_scores
    from taskrel.scores._torch_ops import check_device

    if args.device:
        check_device(args.device)  # fail here, not in every child

    names = ([n for n in list_scores() if n != "task_relatedness"]
             if args.methods == "all" else args.methods.split(","))
    grid = list(itertools.product(args.n, args.d, args.C, names))
    rows = []
    for n, d, C, name in tqdm(grid, desc="bench", file=sys.stderr):
        rows.append(run_one(name, n, d, C, args.timeout, args.device))
        if args.json:
            atomic_write_json(args.json, dict(cpus=os.cpu_count(), rows=rows))
    print(f"\n{os.cpu_count()} CPUs, BLAS threads {args.threads or 'default'}, load "
          f"average {os.getloadavg()[0]:.1f}; seconds = estimator call only; "
          "py_peak = tracemalloc peak (numpy/Python), rss = child peak RSS\n")
    print("| score | n | d | C | device | seconds | py_peak MiB | rss MiB | note |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r["status"] == "ok":
            note = ",".join(r["warnings"])
            if r.get("cuda_peak_mib") is not None:
                note = f"cuda_peak {r['cuda_peak_mib']:.0f} MiB " + note
            print(f"| {r['score']} | {r['n']} | {r['d']} | {r['C']} | {r['device']} "
                  f"| {r['seconds']:.2f} | {r['py_peak_mib']:.0f} | {r['rss_mib']:.0f} "
                  f"| {note} |")
        else:
            print(f"| {r['score']} | {r['n']} | {r['d']} | {r['C']} | - | - | - | - "
                  f"| {r['status']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
