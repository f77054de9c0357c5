"""``make demo``: task-relatedness on an embedded default (scikit-learn's digits).

Reference: digits 0-4 (one half of their samples). Targets, from most to least related:
the other half of digits 0-4 (same task, new samples), that half rotated by 15 and 45
degrees, inverted, and digits 5-9 (new classes). Features are the 64 raw pixel values
(the embedded default needs no model download; real encoders come with
``taskrel.encoders``). For each target the bound, its three terms, the linear probe's
test loss (transferability) and the label-free bound are printed and written to
``out/demo/`` as JSON, CSV and a PNG.

Run: ``python -m taskrel.demo [--out DIR] [--seed N]``.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .io import atomic_write_json, atomic_write_text


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


def run_demo(out_dir: Path, seed: int = 0, *, device: str = "cpu") -> list[dict[str, Any]]:
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
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(out_dir / "results.csv", buf.getvalue())
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m taskrel.demo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="out/demo", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    run_demo(args.out, args.seed, device=args.device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
