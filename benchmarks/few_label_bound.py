"""The bound with only a few labelled target rows per class (the few-label regime).

Reference: 2,000 Fashion-MNIST Lite0 features; target: k MNIST-5k features per class;
both projected on the reference's top 64 principal directions (as `taskrel reproduce`
does). Prints the bound, the Lipschitz constant, W1, the selected ridge (None = the
identity) and cond(A) for a few k and seeds. Before the ridge candidates were scored with
the certified Lipschitz constant, k <= 10 picked a near-singular map (bounds of 238-495).

Usage: python benchmarks/few_label_bound.py   (features from benchmarks/prepare_features.py)
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA

import taskrel
from taskrel.io import load_task

CACHE = Path(__file__).resolve().parent.parent / ".cache" / "features"


def main() -> None:
    warnings.simplefilter("ignore")
    r, t = load_task(CACHE / "fmnist.npz"), load_task(CACHE / "mnist5k.npz")
    ri = np.random.default_rng(0).choice(len(r.labels), 2000, replace=False)
    Xr, yr = r.features[ri], r.labels[ri]
    pca = PCA(64, random_state=0).fit(Xr)
    for k in (5, 10, 20):
        for seed in (0, 1):
            g = np.random.default_rng(seed)
            ti = np.concatenate([g.choice(np.flatnonzero(t.labels == c), k, replace=False)
                                 for c in np.unique(t.labels)])
            res = taskrel.task_relatedness(pca.transform(Xr), yr, pca.transform(t.features[ti]),
                                           t.labels[ti], device="cpu", seed=seed)
            print(f"{k:3d}/class seed {seed}: bound {res.bound:7.2f}  L {res.lipschitz:.3f}  "
                  f"W1 {res.distribution_mismatch:6.2f}  ridge {res.settings['ridge_selected']}"
                  f"  ({res.settings.get('ridge_scored_on')})  cond(A) {res.condition_number:.1f}",
                  flush=True)


if __name__ == "__main__":
    main()
