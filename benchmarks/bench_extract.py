"""Extraction speed per encoder (images/s, texts/s) and the feature-cache speed-up.

Images: Fashion-MNIST test images (grey 28x28, upsampled by each encoder); texts:
20 Newsgroups test documents. Timings exclude model loading (reported separately).

Usage: python benchmarks/bench_extract.py [--images 256] [--texts 500] [--threads 2]
"""
from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np


def main(argv=None) -> None:
    import torch

    from taskrel.data import load_dataset
    from taskrel.encoders import load_encoder
    from taskrel.features.extract import extract_task

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=256)
    p.add_argument("--texts", type=int, default=500)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    fm = load_dataset("fashion_mnist")
    imgs = fm.x_test[: args.images]
    ng = load_dataset("20newsgroups")
    texts = ng.x_test[: args.texts]
    runs = [("effnet_lite0", {"image_size": 64}), ("effnet_lite0", {}),
            ("effnet_lite1", {"image_size": 64}), ("effnet_lite2", {"image_size": 64}),
            ("effnet_lite0_random", {"image_size": 64}),
            ("minilm", {"max_seq_length": 128}), ("e5_small", {}), ("glove_mean", {}),
            ("tfidf_svd", {"dim": 128})]
    print(f"{'encoder':<22}{'options':<24}{'load s':>8}{'items/s':>10}  (n)")
    for name, opts in runs:
        t0 = time.perf_counter()
        enc = load_encoder(name, device=args.device, **opts)
        t1 = time.perf_counter()
        x = imgs if enc.modality == "image" else texts
        if name == "e5_small":
            x = x[: max(50, len(x) // 5)]  # ~7x slower than MiniLM
        enc.encode(x)
        dt = time.perf_counter() - t1
        unit = "img/s" if enc.modality == "image" else "txt/s"
        print(f"{name:<22}{str(opts):<24}{t1 - t0:>8.2f}{len(x) / dt:>10.1f}  "
              f"({len(x)} {unit})")

    # Cache: first extraction (miss) vs second (hit), same task.
    enc = load_encoder("effnet_lite0", image_size=64, device=args.device)
    from taskrel.data import subsample

    ds = subsample(fm, per_class=max(1, args.images // 10), split="both")
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        extract_task(enc, ds, cache_dir=d, progress=False)
        miss = time.perf_counter() - t0
        t0 = time.perf_counter()
        t = extract_task(enc, ds, cache_dir=d, progress=False)
        hit = time.perf_counter() - t0
    n = len(t.labels) + len(t.test_labels)
    print(f"cache (effnet_lite0 64px, {n} images + 1000-class probs): miss {miss:.2f} s, "
          f"hit {hit:.3f} s, speed-up x{miss / hit:.0f}")


if __name__ == "__main__":
    main()
