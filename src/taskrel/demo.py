"""``make demo``: which of the packaged image encoders should I fine-tune on MNIST, and why?

The default (:func:`run_rank_demo`) is ``taskrel rank mnist5k --encoders
effnet_lite0,effnet_lite1,effnet_lite2,effnet_lite0_random --reference fashion_mnist``
at the committed benchmark's sizes (96 px, 3,000 reference and 1,000 target rows): the
ranking, each encoder's MNIST accuracy as the committed vision benchmark measured it
(``docs/results/vision/truth.csv``: fine-tuned where that cell exists, else the tuned
logistic probe, labelled), the decomposition, and the plots in ``out/demo/``.

``python -m taskrel.demo --three-targets`` runs the earlier demo: the embedded default (offline, a few minutes on 2 CPU cores): reference task
Fashion-MNIST (2,000 training images), encoder EfficientNet-Lite0 (ImageNet weights) at
64 px, and three targets of decreasing relatedness: Fashion-MNIST rotated by 15 degrees,
MNIST (a 5k subset) and scikit-learn's 8x8 digits. For each target it computes
task-relatedness with its three terms, four fast baselines (LogME, LEEP, NCE, H-score)
and the ground truth they try to predict: a linear probe's test loss and accuracy. It
prints a table that says what each column means, and writes the plots, CSV/JSON and a
markdown report to ``out/demo/`` (a results store makes a rerun instant).

``python -m taskrel.demo --digits`` runs the older, model-free demo on scikit-learn
digits (raw pixels; reference digits 0-4).

Run: ``python -m taskrel.demo [--out DIR] [--device cpu|cuda] [--three-targets | --digits]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._internal.serialize import atomic_write_json, atomic_write_text, csv_text

__all__ = ["rotate_digits", "digits_tasks", "run_digits_demo", "plot_decomposition",
           "run_demo", "run_rank_demo", "benchmark_accuracy", "main",
           "DEMO_CONFIG", "RANK_DEMO"]


def rotate_digits(X: NDArray[np.float64], degrees: float) -> NDArray[np.float64]:
    """Rotate flattened 8x8 digit images (label-preserving), clipped to 0..16."""
    from scipy.ndimage import rotate

    imgs = X.reshape(-1, 8, 8)
    out = rotate(imgs, degrees, axes=(1, 2), reshape=False, order=1, mode="constant")
    return np.clip(out, 0.0, 16.0).reshape(len(X), 64)


def digits_tasks(seed: int = 0) -> dict[str, Any]:
    """The demo's reference task and targets built from scikit-learn's digits.

    Returns a dict with ``reference`` = (X, y) and ``targets`` = {name: (X, y)}, in
    order of decreasing relatedness by construction (the last is a different label set).
    """
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float64)
    rng = np.random.default_rng(seed)
    low = np.flatnonzero(y < 5)
    rng.shuffle(low)
    half = low.size // 2
    ref, same = np.sort(low[:half]), np.sort(low[half:])
    high = np.flatnonzero(y >= 5)
    targets = {
        "digits0-4 (new samples)": (X[same], y[same]),
        "rotated 15 deg": (rotate_digits(X[same], 15.0), y[same]),
        "rotated 45 deg": (rotate_digits(X[same], 45.0), y[same]),
        "inverted": (16.0 - X[same], y[same]),
        "digits5-9 (new classes)": (X[high], y[high]),
    }
    return {"reference": (X[ref], y[ref]), "targets": targets}


def run_digits_demo(out_dir: Path, seed: int = 0, *, device: str = "cpu"
                    ) -> list[dict[str, Any]]:
    """The model-free digits demo (raw pixels, reference digits 0-4)."""
    from .probe import linear_probe
    from .relatedness import split_task, task_relatedness

    tasks = digits_tasks(seed)
    Xr, yr = tasks["reference"]
    rows = []
    print(f"reference: digits 0-4, {len(yr)} samples, 64 pixel features")
    header = (f"{'target':<26}{'bound':>8}{'ref.loss':>9}{'label':>7}{'L x W':>8}"
              f"{'probe':>8}{'acc':>7}{'no-label':>10}{'s':>6}")
    print(header)
    for name, (Xt, yt) in tasks["targets"].items():
        t0 = time.perf_counter()
        _, y_idx = np.unique(yt, return_inverse=True)
        tr, te = split_task(Xt, y_idx, seed=seed)
        r = task_relatedness(
            Xr, yr, Xt[tr], yt[tr], target_test_features=Xt[te],
            target_test_labels=yt[te], seed=seed, device=device,
        )
        p = linear_probe(Xt[tr], yt[tr], Xt[te], yt[te], tau=r.tau, seed=seed,
                         device=device)
        u = task_relatedness(
            Xr, yr, Xt[tr], None, target_test_features=Xt[te],
            target_test_labels=yt[te], seed=seed, device=device,
        )
        row = {
            "target": name,
            "bound": r.bound,
            "reweighted_reference_loss": r.reweighted_reference_loss,
            "label_mismatch": r.label_mismatch,
            "distribution_mismatch": r.distribution_mismatch,
            "lipschitz": r.lipschitz,
            "lipschitz_x_distribution_mismatch": r.lipschitz * r.distribution_mismatch,
            "bound_certified": r.bound_certified,
            "transformed_accuracy": r.transformed_accuracy,
            "transfer_loss": p.loss,
            "transfer_accuracy": p.accuracy,
            "bound_without_labels": u.bound,
            "pseudo_label_accuracy": u.pseudo_label_accuracy,
            "tau": r.tau,
            "seconds": time.perf_counter() - t0,
        }
        rows.append(row)
        print(f"{name:<26}{r.bound:8.3f}{r.reweighted_reference_loss:9.3f}"
              f"{r.label_mismatch:7.3f}{row['lipschitz_x_distribution_mismatch']:8.3f}"
              f"{p.loss:8.3f}{p.accuracy:7.3f}{u.bound:10.3f}{row['seconds']:6.1f}")
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "results.json", rows)
    atomic_write_text(out_dir / "results.csv", csv_text(rows, line_ending="\r\n"))
    png = plot_decomposition(rows, out_dir / "decomposition.png")
    bound_ok = all(r["bound"] >= r["transfer_loss"] for r in rows)
    print(f"bound >= transfer loss on every target: {bound_ok}")
    print(f"wrote {out_dir / 'results.json'}, {out_dir / 'results.csv'}"
          + (f", {png}" if png else ""))
    return rows


def plot_decomposition(rows: list[dict[str, Any]], path: Path) -> Path | None:
    """Stacked bars of the three terms per target beside the transfer loss."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed; no plot (pip install 'taskrel[plot]')")
        return None
    names = [r["target"] for r in rows]
    x = np.arange(len(rows))
    a = np.array([r["reweighted_reference_loss"] for r in rows])
    h = np.array([r["label_mismatch"] for r in rows])
    lw = np.array([r["lipschitz_x_distribution_mismatch"] for r in rows])
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.bar(x - 0.18, a, 0.36, label="reweighted reference loss")
    ax.bar(x - 0.18, h, 0.36, bottom=a, label="label mismatch")
    ax.bar(x - 0.18, lw, 0.36, bottom=a + h, label="Lipschitz x W1")
    ax.bar(x + 0.18, [r["transfer_loss"] for r in rows], 0.36, color="0.4",
           label="transfer loss (probe)")
    ax.set_xticks(x, names, rotation=20, ha="right")
    ax.set_ylabel("nats")
    ax.set_title("task-relatedness bound vs transferability (reference: digits 0-4)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
    return path


DEMO_CONFIG: dict[str, Any] = {
    "name": "demo",
    "description": "make demo: Fashion-MNIST reference, EfficientNet-Lite0 at 64 px, three "
                   "targets of decreasing relatedness; linear-probe truth only (no "
                   "fine-tuning, to stay within a few minutes).",
    "reference": "fashion_mnist",
    "targets": [
        {"name": "fmnist_rot15", "dataset": "fashion_mnist",
         "transform": {"kind": "rotate", "strength": 15 / 180}},
        "mnist5k",
        "digits",
    ],
    "encoders": ["effnet_lite0"],
    "estimators": ["task_relatedness", "logme", "leep", "nce", "h_score"],
    "fractions": [1.0],
    "seeds": [0],
    "ground_truth": {"estimators": ["linear_probe"]},
    "finetune": {"image_size": 64},
    # 1280-d features projected on the reference's top 64 principal directions.
    "options": {"max_reference": 2000, "max_target": 1000, "max_test": 500,
                "feature_dim": 64},
}

_COLUMNS = [
    ("bound", "bound", "task-relatedness: upper bound on the target loss (nats); "
     "LOWER = more related"),
    ("ref.loss", "reweighted_reference_loss", "term 1: loss of the transformed reference task"),
    ("labels", "label_mismatch", "term 2: label mismatch H(Y_target | Y_reference)"),
    ("L x W1", "lipschitz_x_w1", "term 3: Lipschitz constant x distribution mismatch"),
    ("probe loss", "transfer_loss", "ground truth: linear probe's test cross-entropy "
     "(the bound bounds this); LOWER = better transfer"),
    ("probe acc", "probe_accuracy", "ground truth: linear probe's test accuracy; HIGHER = better"),
    ("LogME", "logme", "baseline, HIGHER = better"),
    ("LEEP", "leep", "baseline (ImageNet head's predictions), HIGHER = better"),
    ("NCE", "nce", "baseline (ImageNet head's argmax), HIGHER = better"),
    ("H-score", "h_score", "baseline, HIGHER = better"),
]


def run_demo(out: Path = Path("out"), *, device: str = "auto", quiet: bool = False
             ) -> list[dict[str, Any]]:
    """Run the embedded Fashion-MNIST demo; return one dict per target."""
    from .experiments.reproduce import run_suite
    from .experiments.store import ResultsStore
    from .experiments.suite import parse_config

    cfg = parse_config({**DEMO_CONFIG,
                        "options": {**DEMO_CONFIG["options"], "device": device}})
    out = Path(out)
    db = out / "demo" / "demo.sqlite"
    print("taskrel demo: reference Fashion-MNIST (2,000 images), EfficientNet-Lite0 "
          "(ImageNet) at 64 px,\nfeatures projected on the reference's top 64 principal "
          "directions; targets: Fashion-MNIST\nrotated 15 degrees, MNIST, 8x8 digits. "
          "Features are cached; a rerun is instant.")
    t0 = time.perf_counter()
    summary = run_suite(cfg, db=db, out=out, progress=not quiet)
    with ResultsStore(db) as st:
        rows = st.query()
    table = []
    for t in cfg.targets:
        r = {"target": t.name}
        for row in rows:
            if row["target"] != t.name:
                continue
            r[row["estimator"]] = row["value"]
            if row["estimator"] == "task_relatedness":
                ex = row["extra"]
                r["bound"] = ex["bound"]
                r["reweighted_reference_loss"] = ex["reweighted_reference_loss"]
                r["label_mismatch"] = ex["label_mismatch"]
                r["lipschitz_x_w1"] = ex["lipschitz"] * ex["distribution_mismatch"]
            if row["estimator"] == "linear_probe":
                r["transfer_loss"] = row["extra"]["loss"]
                r["probe_accuracy"] = row["value"]
        table.append(r)
    print()
    print(f"{'target':<14}" + "".join(f"{c[0]:>11}" for c in _COLUMNS))
    for r in table:
        cells = []
        for _, key, _ in _COLUMNS:
            v = r.get(key)
            cells.append(f"{v:>11.3f}" if isinstance(v, float) else f"{'-':>11}")
        print(f"{r['target']:<14}" + "".join(cells))
    print("\ncolumns:")
    for short, _, what in _COLUMNS:
        print(f"  {short:<11} {what}")
    held = summary.get("bound_held_everywhere")
    print(f"\nbound >= probe loss on every target: {held}")
    for c in summary.get("correlations", []):
        if c["estimator"] == "task_relatedness" and "spearman" in c:
            print(f"Spearman(task-relatedness, probe accuracy) over {c['n']} targets: "
                  f"{c['spearman']:.2f} (negative = agrees: lower score, higher accuracy)")
    d = out / "demo"
    atomic_write_json(d / "demo_table.json", table)
    print(f"wrote {d / 'report.md'}, {d / 'decomposition_effnet_lite0.png'} and CSV/JSON "
          f"beside them ({time.perf_counter() - t0:.0f} s)")
    return table


#: ``make demo``: the packaged image zoo on MNIST-5k, Fashion-MNIST reference, at the
#: committed vision benchmark's sizes (so its fine-tuning cells apply).
RANK_DEMO: dict[str, Any] = {
    "target": "mnist5k",
    "encoders": ["effnet_lite0", "effnet_lite1", "effnet_lite2", "effnet_lite0_random"],
    "reference": "fashion_mnist",
    "image_size": 96, "max_reference": 3000, "max_target": 1000,
}
_BENCHMARK_CSV = "docs/results/vision/truth.csv"


def benchmark_accuracy(target: str, root: Path | None = None
                       ) -> dict[str, tuple[str, float]]:
    """Test accuracy per encoder on ``target`` as the committed vision benchmark
    measured it (seed 0, all training rows): ``{encoder: (truth, accuracy)}`` with
    ``finetune_acc`` where that cell exists, else ``logreg_acc``; read from
    ``docs/results/vision/truth.csv``; empty when the file is not there (an installed
    package has no docs)."""
    import csv

    base = root or Path(__file__).resolve().parents[2]
    path = base / _BENCHMARK_CSV
    if not path.is_file():
        return {}
    found: dict[str, dict[str, float]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row["target"] == target and row["seed"] == "0" and row["value"]:
                found.setdefault(row["encoder"], {})[row["truth"]] = float(row["value"])
    out = {}
    for enc, t in found.items():
        for name in ("finetune_acc", "logreg_acc"):
            if name in t:
                out[enc] = (name, t[name])
                break
    return out


def run_rank_demo(out: Path = Path("out/demo"), *, device: str = "auto",
                  quiet: bool = False) -> Any:
    """``make demo``: :func:`taskrel.rank` on :data:`RANK_DEMO`, beside the fine-tuned
    accuracy the committed benchmark measured; plots and JSON/CSV in ``out``."""
    from .cli.rank import print_ranking
    from .ranking import plot_ranking, rank

    cfg = RANK_DEMO
    print(f"taskrel demo: which encoder to fine-tune on {cfg['target']}? `taskrel rank "
          f"{cfg['target']} --encoders {','.join(cfg['encoders'])} --reference "
          f"{cfg['reference']} --image-size {cfg['image_size']}`\n")
    t0 = time.perf_counter()
    r = rank(cfg["target"], cfg["encoders"], reference=cfg["reference"],
             image_size=cfg["image_size"], max_reference=cfg["max_reference"],
             max_target=cfg["max_target"], device=device, progress=not quiet)
    print_ranking(r)
    acc = benchmark_accuracy(cfg["target"])
    print(f"\n{cfg['target']} test accuracy measured by the committed vision benchmark "
          "(docs/results/vision/truth.csv, seed 0; finetune_acc where fine-tuned, else "
          "the tuned logistic probe):")
    for row in r.rows:
        a = acc.get(row["encoder"])
        print(f"  {row['position']}. {row['encoder']:<22}"
              + (f"{a[1]:.3f} ({a[0]})" if a is not None else "not measured"))
    for truth in ("finetune_acc", "logreg_acc"):
        measured = [row["encoder"] for row in r.rows
                    if row["encoder"] in acc and acc[row["encoder"]][0] == truth]
        if len(measured) >= 2:
            best = max(measured, key=lambda e: acc[e][1])
            print(f"  ranked first: {r.best}; best by {truth}: {best}")
    out = Path(out)
    atomic_write_json(out / "ranking.json", {
        **r.to_dict(), "benchmark_accuracy": {e: {"truth": t, "accuracy": v}
                                              for e, (t, v) in acc.items()}})
    paths = plot_ranking(r, out)
    print(f"wrote {out / 'ranking.json'}" + "".join(f", {p}" for p in paths)
          + f" ({time.perf_counter() - t0:.0f} s)")
    return r


def main(argv: list[str] | None = None) -> int:
    """``python -m taskrel.demo``: the Fashion-MNIST demo, or ``--digits``."""
    ap = argparse.ArgumentParser(prog="python -m taskrel.demo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None, type=Path,
                    help="output folder (default out/; the digits demo: out/demo-digits)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the digits demo")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--digits", action="store_true",
                    help="the model-free digits demo instead (raw pixels)")
    ap.add_argument("--three-targets", action="store_true",
                    help="the earlier demo: one encoder, three targets, probe truth")
    args = ap.parse_args(argv)
    if not args.digits:
        from .exceptions import TaskrelInputError
        from .features.datasets import load_dataset

        try:
            load_dataset("fashion_mnist")
        except TaskrelInputError as exc:
            print(f"taskrel demo: {exc}\nFalling back to the model-free digits demo "
                  "(python -m taskrel.demo --digits).\n")
            args.digits = True
    if args.digits:
        run_digits_demo(args.out or Path("out/demo-digits"), args.seed, device=args.device)
    elif args.three_targets:
        run_demo(args.out or Path("out"), device=args.device)
    else:
        run_rank_demo(args.out or Path("out/demo"), device=args.device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
