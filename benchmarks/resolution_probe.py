"""Pick each ImageNet encoder's input resolution by where its reference probe plateaus.

For EfficientNet-Lite0/1/2 at each size in --sizes: extract Fashion-MNIST (the vision
suite's reference) at --train train rows and --test test rows, fit a logistic-regression
probe on standardised features with C chosen on a stratified 20% validation split of the
training rows, refit on all training rows, report test accuracy and extraction seconds.
Prints a table and writes CSV/JSON to --out (default benchmarks/results/resolution).

    python benchmarks/resolution_probe.py --sizes 32 64 96 128
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoders", nargs="+",
                    default=["effnet_lite0", "effnet_lite1", "effnet_lite2"])
    ap.add_argument("--sizes", nargs="+", type=int, default=[32, 64, 96, 128])
    ap.add_argument("--train", type=int, default=3000)
    ap.add_argument("--test", type=int, default=1000)
    ap.add_argument("--out", default="benchmarks/results/resolution")
    a = ap.parse_args()

    import torch

    from taskrel.data import load_dataset
    from taskrel.encoders import load_encoder
    from taskrel.features.extract import extract_task
    from taskrel.probe import logistic_probe

    torch.set_num_threads(2)
    ds = load_dataset("fashion_mnist")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in a.encoders:
        for size in a.sizes:
            t0 = time.perf_counter()
            enc = load_encoder(name, image_size=size, device="cpu")
            tr = extract_task(enc, ds, split="train", limit=a.train, progress=False,
                              limit_rule="permutation")  # the committed results' rows
            te = extract_task(enc, ds, split="test", limit=a.test, progress=False,
                              limit_rule="permutation")
            sec = time.perf_counter() - t0
            fit = logistic_probe(tr.features, tr.labels, te.features, te.labels, seed=0)
            rows.append({"encoder": name, "image_size": size,
                         "logreg_acc": round(fit.accuracy, 4), "C": fit.settings["C"],
                         "val_acc": round(fit.settings["val_accuracy"], 4),
                         "extract_seconds": round(sec, 1)})
            print(json.dumps(rows[-1]), flush=True)
    import csv

    with open(out / "resolution.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (out / "resolution.json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
