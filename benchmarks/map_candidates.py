"""Why the fast recipe scores the identity and uses L x W1: contraction vs the Lipschitz term.

Fits the reference head (tau 0.02), matches classes, and evaluates on the test splits a
few feature maps for one pair of real features: the identity with a mean shift, that
map scaled toward the target mean by s, and the IRLS W1 fit at several ridges. For each
it prints train and test W1, the Lipschitz constant in target coordinates (which
contains A^-1) and in reference coordinates (the official code's), and the bound.

Usage:
    python benchmarks/map_candidates.py [--reference R.npz --target T.npz] [--ridges 100,10]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from taskrel.heads import Standardizer, train_linear_head
from taskrel.io import load_task
from taskrel.relatedness import RelatednessConfig
from taskrel.relatedness.bound import evaluate_held_out, lipschitz
from taskrel.relatedness.maps import FeatureMap
from taskrel.relatedness.matching import match_score, matched_label_map
from taskrel.relatedness.transport import (
    build_groups,
    fit_affine,
    group_couplings,
    mean_shift,
)

CACHE = Path(__file__).resolve().parent.parent / ".cache" / "features"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference", default=str(CACHE / "fmnist.npz"))
    ap.add_argument("--target", default=str(CACHE / "digits.npz"))
    ap.add_argument("--tau", type=float, default=0.02)
    ap.add_argument("--scales", default="0.9,0.7,0.5")
    ap.add_argument("--ridges", default="100,10,1")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    r, t = load_task(args.reference), load_task(args.target)
    sr, st = Standardizer.fit(r.features), Standardizer.fit(t.features)
    Zr, Zr_te = sr.transform(r.features), sr.transform(r.test_features)
    Zt, Zt_te = st.transform(t.features), st.transform(t.test_features)
    _, yr = np.unique(r.labels, return_inverse=True)
    _, yr_te = np.unique(r.test_labels, return_inverse=True)
    _, yt = np.unique(t.labels, return_inverse=True)
    _, yt_te = np.unique(t.test_labels, return_inverse=True)
    K_R, K_T, d = yr.max() + 1, yt.max() + 1, Zr.shape[1]
    head = train_linear_head(Zr, yr, K_R, tau=args.tau, recipe="fast", seed=0, device="cpu")
    pi_T = np.bincount(yt, minlength=K_T) / yt.size
    B, D = matched_label_map(match_score(head, Zt, yt, K_T), pi_T)
    cfg = RelatednessConfig(max_eval_per_class=2000, device="cpu")
    groups = build_groups(yr, yt, B, D, pi_T, max_per_class=500,
                          rng=np.random.default_rng(0))
    print(f"{Path(args.reference).name} -> {Path(args.target).name}, tau={args.tau}")
    print(f"{'map':<22}{'train W1':>9}{'test W1':>9}{'L target':>10}{'L ref':>8}"
          f"{'L x W1':>8}{'bound':>8}")

    def show(name: str, A: np.ndarray, b: np.ndarray) -> None:
        A_inv = np.linalg.inv(A)
        fmap = FeatureMap(A, A_inv, b, B, D, 0, True, [], float("nan"))
        ev = evaluate_held_out(head, fmap, Zr_te, yr_te, Zt_te, yt_te, pi_T, cfg,
                               np.random.default_rng(1))
        W, rrl = ev.distribution_mismatch, ev.reweighted_reference_loss
        lip_t, _, lip_r = lipschitz(head, A_inv, B, np.vstack([(Zt_te - b) @ A_inv.T, Zr_te]))
        w_tr = group_couplings(Zr @ A.T + b, Zt, groups)[0]
        print(f"{name:<22}{w_tr:9.2f}{W:9.2f}{lip_t:10.4f}{lip_r:8.4f}"
              f"{lip_t * W:8.3f}{rrl + lip_t * W:8.3f}", flush=True)

    eye = np.eye(d)
    shift = mean_shift(Zr, Zt, groups)
    target_mean = sum(g.weight * Zt[g.tgt_rows].mean(0) for g in groups)
    show("identity + mean shift", eye, shift)
    for s in map(float, args.scales.split(",")):
        # Scale the shifted reference toward the target mean by s.
        show(f"scaled by {s:g}", s * eye, s * shift + (1 - s) * target_mean)
    for mu in map(float, args.ridges.split(",")):
        t0 = time.perf_counter()
        A, b, info = fit_affine(Zr, Zt, groups, ridge=mu, max_iter=50, tol=1e-4)
        show(f"W1 fit, ridge {mu:g}", A, b)
        print(f"{'':<22}({info['iterations']} alternations, "
              f"{time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
