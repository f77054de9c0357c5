"""Golden outputs of the engine, the scores and a tiny suite, recorded before the
engine's redesign (issue 11) so that the redesign can be shown to change no number.

``python tests/golden/golden.py --write`` records them (it was run once, on the
pre-redesign commit named in each file's ``recorded_on``); ``tests/test_golden.py``
recomputes every case with the code under test and requires the same values to the
last bit (floats compared exactly; large arrays by the SHA-256 of their float64
bytes). Timing fields are removed.

Re-recorded on purpose since: ``suite.json`` in issue 13, when suite cells of
``task_relatedness`` started to report the ranking score (the reweighted reference loss)
instead of the bound. Exactly 8 values changed, all derived from those cells: the tiny
suite's task_relatedness correlation with the probe (Pearson 0.306 -> -0.951, Spearman
0.5 -> -1.0, and their CI ends) and two few-label sweep means; every decomposition and
bound check stayed bit-identical.

Data: real data only. scikit-learn's 8x8 digits (reference digits 0-4, target digits
5-9, raw pixels) and a small Fashion-MNIST -> MNIST-5k pair (raw pixels projected on
the reference's top 32 principal directions). Everything runs with one BLAS and one
torch thread, so the sums are taken in one order.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
#: Arrays with more entries than this are recorded by hash (plus shape and sum).
INLINE_MAX = 64
#: Keys dropped wherever they occur (wall-clock, not results): "seconds" and "*_seconds".
TIMING_SUFFIX = "seconds"
#: Analyses of wall-clock cost (their rows are even ordered by time): not recorded.
TIMING_FILES = {"cost.json"}
#: Report files added after the record (issue 12's views.json: tests/test_views.py).
ADDED_FILES = {"views.json"}
#: Keys added to results after the record, dropped before comparing (new outputs; no
#: recorded number changes): issue 13's label-free transformed-classifier loss and the
#: ranking score (``score``, ``score_term``).
ADDED_KEYS = {"transformed_loss_pseudo", "score", "score_term"}

RECIPES = ("fast", "paper")
B_MODES = ("sparse", "learned", "fixed")
SEEDS = (0, 1)
#: Steps of the paper loop (and of LearnedAll) in the golden cases: a few, to stay fast.
FEW_STEPS = 4


@contextlib.contextmanager
def one_thread():
    import torch
    from threadpoolctl import threadpool_limits

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(old)


def canon(value: Any) -> Any:
    """A JSON value that pins ``value`` exactly (timing keys dropped)."""
    if isinstance(value, dict):
        return {str(k): canon(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))
                if not str(k).endswith(TIMING_SUFFIX) and str(k) not in ADDED_KEYS}
    if isinstance(value, (list, tuple)):
        return [canon(v) for v in value]
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "fc" or value.size > INLINE_MAX:
            if value.size <= INLINE_MAX and value.dtype.kind == "f":
                return {"array": [canon(float(v)) for v in value.ravel()],
                        "shape": list(value.shape)}
            a = np.ascontiguousarray(value, dtype=np.float64 if value.dtype.kind in "fiub"
                                     else value.dtype)
            return {"shape": list(value.shape), "sha256": hashlib.sha256(a.tobytes()).hexdigest(),
                    "sum": canon(float(a.sum())) if a.dtype.kind == "f" else None}
        return {"array": [canon(v) for v in value.ravel().tolist()], "shape": list(value.shape)}
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if math.isfinite(v) else repr(v)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


# ---- data ----------------------------------------------------------------------------

def digits_pair() -> dict[str, np.ndarray]:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float64)
    rng = np.random.default_rng(0)
    low, high = np.flatnonzero(y < 5), np.flatnonzero(y >= 5)
    rng.shuffle(low)
    rng.shuffle(high)
    return dict(Xr=X[low[:500]], yr=y[low[:500]], Xt=X[high[:400]], yt=y[high[:400]])


def fmnist_mnist_pair() -> dict[str, np.ndarray]:
    from sklearn.decomposition import PCA

    from taskrel.data import load_dataset

    def take(ds, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        rows = np.sort(np.concatenate([
            rng.choice(np.flatnonzero(ds.y_train == c), per_class, replace=False)
            for c in np.unique(ds.y_train)]))
        return ds.x_train[rows].reshape(rows.size, -1).astype(np.float64) / 255.0, \
            np.asarray(ds.y_train[rows])

    Xr, yr = take(load_dataset("fashion_mnist"), 60, 0)
    Xt, yt = take(load_dataset("mnist5k"), 40, 1)
    pca = PCA(32, svd_solver="full").fit(Xr)
    return dict(Xr=pca.transform(Xr), yr=yr, Xt=pca.transform(Xt), yt=yt)


PAIRS = {"digits04_to_59": digits_pair, "fmnist_to_mnist5k": fmnist_mnist_pair}


# ---- cases ---------------------------------------------------------------------------

def engine_cases() -> list[dict[str, Any]]:
    cases = []
    for pair in PAIRS:
        for recipe in RECIPES:
            for b_mode in B_MODES:
                for labelled in (True, False):
                    for seed in SEEDS:
                        cases.append(dict(pair=pair, recipe=recipe, b_mode=b_mode,
                                          labelled=labelled, seed=seed))
    return cases


def case_id(c: dict[str, Any]) -> str:
    return (f"{c['pair']}-{c['recipe']}-{c['b_mode']}-"
            f"{'labelled' if c['labelled'] else 'unlabelled'}-s{c['seed']}")


def run_engine_case(c: dict[str, Any], data: dict[str, np.ndarray]) -> dict[str, Any]:
    import taskrel

    K_R = np.unique(data["yr"]).size
    kw: dict[str, Any] = dict(recipe=c["recipe"], b_mode=c["b_mode"], seed=c["seed"],
                              device="cpu")
    if c["recipe"] == "paper" or c["b_mode"] == "learned":
        kw["max_iter"] = FEW_STEPS
    if c["b_mode"] == "fixed":
        K_T = np.unique(data["yt"]).size if c["labelled"] else K_R
        kw["B"] = np.eye(K_T, K_R)
        if not c["labelled"]:
            kw["n_target_classes"] = K_R
    yt = data["yt"] if c["labelled"] else None
    with one_thread(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            r = taskrel.task_relatedness(data["Xr"], data["yr"], data["Xt"], yt, **kw)
        except Exception as exc:  # the error itself is part of the behaviour
            return {"error": type(exc).__name__, "message": str(exc)}
    out = {k: getattr(r, k) for k in r.__dataclass_fields__ if k != "reference_head"}
    head = r.reference_head
    out["reference_head"] = {"weight": head.weight, "bias": head.bias, "tau": head.tau}
    out["warnings"] = sorted({f"{w.category.__name__}: {w.message}" for w in caught})
    return canon(out)


SCORE_CASES = ("logme", "h_score", "regularized_h_score", "transrate", "gbc", "sfda",
               "knn_accuracy", "pactran_gaussian", "otce", "ot_nce")


def run_score_case(name: str, data: dict[str, np.ndarray]) -> Any:
    from taskrel.io import Task
    from taskrel.scores import compute_score

    tgt = Task(features=data["Xt"], labels=data["yt"])
    src = Task(features=data["Xr"], labels=data["yr"])
    with one_thread():
        try:
            return canon(compute_score(name, tgt, source=src))
        except Exception as exc:
            return {"error": type(exc).__name__, "message": str(exc)}


TINY_SUITE = """
name = "goldendigits"
description = "digits 0-4 as the reference; tiny budgets (golden outputs)"
encoders = ["effnet_lite0_random"]
estimators = ["task_relatedness", "logme", "leep", "h_score"]
fractions = [0.5, 1.0]
seeds = [0]

[reference]
name = "digits04"
dataset = "digits"
classes = [0, 1, 2, 3, 4]

[[targets]]
name = "digits59"
dataset = "digits"
classes = [5, 6, 7, 8, 9]

[[targets]]
name = "digits04_rot"
dataset = "digits"
classes = [0, 1, 2, 3, 4]
transform = { kind = "rotate", strength = 0.5 }

[[targets]]
name = "digits_odd"
dataset = "digits"
classes = [1, 3, 5, 7, 9]

[ground_truth]
estimators = ["linear_probe"]

[finetune]
image_size = 32

[options]
max_reference = 150
max_target = 100
max_test = 60
device = "cpu"
feature_dim = 16
"""


def run_tiny_suite(workdir: Path) -> dict[str, Any]:
    """The tiny suite through ``taskrel reproduce --config``; its analyses' JSON files."""
    import os

    from taskrel.cli import main
    from taskrel.experiments.inputs import clear_caches

    clear_caches()  # nothing computed earlier in this process under other threads
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = workdir / "goldendigits.toml"
    cfg.write_text(TINY_SUITE)
    old = os.environ.get("TASKREL_CACHE_DIR")
    os.environ["TASKREL_CACHE_DIR"] = str(workdir / "cache")
    try:
        with one_thread():
            rc = main(["reproduce", "--config", str(cfg), "--db", str(workdir / "g.sqlite"),
                       "--out", str(workdir / "out"), "--quiet"])
    finally:
        if old is None:
            os.environ.pop("TASKREL_CACHE_DIR", None)
        else:
            os.environ["TASKREL_CACHE_DIR"] = old
    outs = {"exit_code": rc}
    for p in sorted((workdir / "out" / "goldendigits").glob("*.json")):
        if p.name in TIMING_FILES or p.name in ADDED_FILES:
            continue
        outs[p.name] = canon(json.loads(p.read_text()))
    return outs


def record(path: Path, payload: dict[str, Any]) -> None:
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=HERE, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        rev = "unknown"
    path.write_text(json.dumps({"recorded_on": rev, "cases": payload}, indent=1,
                               sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="record the golden files")
    ap.add_argument("--part", choices=("engine", "scores", "suite", "all"), default="all")
    args = ap.parse_args(argv)
    if not args.write:
        ap.error("nothing to do: pass --write to record the golden files")
    sys.path.insert(0, str(HERE.parents[1] / "src"))
    datas = {name: make() for name, make in PAIRS.items()}
    if args.part in ("engine", "all"):
        out = {}
        for c in engine_cases():
            out[case_id(c)] = run_engine_case(c, datas[c["pair"]])
            print(case_id(c), out[case_id(c)].get("bound", out[case_id(c)].get("error")),
                  flush=True)
        record(HERE / "engine.json", out)
    if args.part in ("scores", "all"):
        out = {f"{p}-{s}": run_score_case(s, datas[p]) for p in PAIRS for s in SCORE_CASES}
        record(HERE / "scores.json", out)
    if args.part in ("suite", "all"):
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            record(HERE / "suite.json", run_tiny_suite(Path(tmp)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
