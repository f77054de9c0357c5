"""The population suite's encoders: how each was trained (its recipe, not its weights).

Writes docs/results/population/encoders.csv: one row per encoder with its architecture
(width, feature dimension, epochs), its source task's spec, the rows it trained on, the
optimiser settings and seed (:func:`taskrel.experiments.inputs.source_recipe`; the same
dictionary keys the trained file in the cache and enters every cell digest), the SHA-256
of the weights file this machine trained (same torch, same thread count -> same file),
and the encoder's accuracy on its source's held-out split (the own-source reference rows,
read from the cached features' source-head probabilities).

    python experiments/population_encoders.py [--out docs/results/population/encoders.csv]

Trains an encoder that is not cached yet (as the suite would).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/results/population/encoders.csv")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    import torch

    from taskrel.experiments.inputs import (
        HELDOUT,
        _cap_train_rows,
        suite_dataset,
        source_recipe,
        source_trained_path,
        split_source,
        unit_task,
    )
    from taskrel.experiments.reproduce import check_config, suite_config_path
    from taskrel.experiments.suite import load_config

    torch.set_num_threads(a.threads)
    cfg = check_config(load_config(suite_config_path("population")))
    rows = []
    for enc in cfg.encoders:
        base, src = split_source(enc)
        r = source_recipe(cfg, base, src)
        path = Path(source_trained_path(cfg, base, src))
        ref = unit_task(cfg, (enc, src, HELDOUT))
        acc = None
        if ref.source_probs is not None:
            acc = float(np.mean(np.argmax(ref.source_probs, 1) == np.asarray(ref.labels)))
        rows.append({
            "encoder": enc, "arch": r["arch"], "width": r["width"],
            "feature_dim": 4 * r["width"], "epochs": r["epochs"], "source": src,
            "source_spec": json.dumps(r["source"], sort_keys=True),
            "train_rows_cap": r["rows"],
            "train_rows": len(_cap_train_rows(suite_dataset(cfg.source(src)),
                                              r["rows"]).y_train),
            "split": r["split"], "image_size": r["image_size"],
            "optimizer": f"Adam lr={r['lr']}", "batch_size": r["batch_size"],
            "seed": r["seed"], "heldout_rows": int(len(ref.labels)),
            "heldout_accuracy": None if acc is None else round(acc, 4),
            "weights_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        })
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    for r in rows:
        print(f"{r['encoder']:32s} w{r['width']:<3d} e{r['epochs']:<3d} "
              f"held-out acc {r['heldout_accuracy']}")


if __name__ == "__main__":
    main()
