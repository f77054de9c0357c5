"""Extraction speed: taskrel's images/s beside a bare forward of the same module.

For every packaged image encoder (``effnet_lite0/1/2``, ``effnet_lite0_random``,
``effnet_lite0_b11`` and a randomly initialised ``smallcnn``) on the same images
(Fashion-MNIST test images by default, grey 28x28, at ``--image-size``: the demo's
96 px), in one process, interleaved (taskrel, bare, taskrel, bare, ...), ``--reps``
times:

- ``encode``: ``encoder.encode(images)`` from uint8 images (preprocessing included);
- ``extract``: ``extract_task`` of the same rows into an empty feature cache (the
  chunked, checksummed cache write included; source probabilities too where the
  encoder has a head, as ``make demo`` stores them for the target);
- ``bare``: ``encoder.torch_module()`` called on the already decoded and preprocessed
  tensors in batches of the same size under ``torch.inference_mode()``: what a user's
  own loop over the model costs;
- ``preprocess``: ``encoder.preprocess`` alone (uint8 images to normalised tensors).

The ratio taskrel / bare is taken per repetition (the two runs of a repetition are
seconds apart, so a load change on a shared machine hits both) and its median printed.
A second table runs the bare forward of ``effnet_lite0`` and ``effnet_lite0_random``
with and without flushing denormals (interleaved), and the features' largest change.
The text encoders' speed and the feature cache's speed-up follow (skip them with
``--texts 0`` and ``--no-cache``).

Results go to ``--out`` (default ``benchmarks/results/extract``):
``extract_threads<N>.csv`` (one row per encoder) and ``extract_threads<N>.json`` (those
rows, every repetition's timings, the denormal table, the load average before and after,
versions).

Usage: python benchmarks/bench_extract.py [--images 256] [--reps 5] [--threads 2]
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

IMAGE_ENCODERS = ("effnet_lite0", "effnet_lite1", "effnet_lite2", "effnet_lite0_random",
                  "effnet_lite0_b11", "smallcnn")


def _small_cnn_encoder(seed: int = 0):
    """A randomly initialised ``smallcnn`` (28 px, its training size): the same network
    and wrapper as ``load_encoder("smallcnn:FILE")``, without training one first."""
    import torch

    from taskrel.features.encoders.image import TorchImageEncoder
    from taskrel.features.encoders.smallcnn import _small_cnn

    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)
        feats, head = _small_cnn(10, 28)
    return TorchImageEncoder("smallcnn", feats, head, dim=128, image_size=28,
                             mean=(0.5,) * 3, std=(0.5,) * 3, device="cpu")


def _load(name: str, image_size: int):
    from taskrel.encoders import load_encoder

    if name == "smallcnn":
        return _small_cnn_encoder()
    return load_encoder(name, image_size=image_size, device="cpu")


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _bare(module, x, batch: int) -> None:
    import torch

    with torch.inference_mode():
        for s in range(0, len(x), batch):
            module(x[s:s + batch])


def _preprocess(enc, images, batch: int) -> None:
    for s in range(0, len(images), batch):
        enc.preprocess(images[s:s + batch])


def _extract(enc, ds) -> None:
    from taskrel.features.extract import extract_task

    with tempfile.TemporaryDirectory() as d:  # an empty cache each time
        extract_task(enc, ds, split="train", cache_dir=d, progress=False,
                     batch_size=enc.batch_size)


def bench_encoder(name: str, images, ds, args) -> dict:
    """Interleaved repetitions of encode, bare, extract, preprocess for one encoder."""
    t0 = time.perf_counter()
    enc = _load(name, args.image_size)
    load_s = time.perf_counter() - t0
    enc.batch_size = args.batch
    module = enc.torch_module()
    x = enc.preprocess(images)  # decoded and preprocessed once, for the bare loop
    n = len(images)
    enc.encode(images[: args.batch])  # warm-up: oneDNN primitives, allocator
    _bare(module, x[: args.batch], args.batch)
    runs: dict[str, list[float]] = {"encode": [], "extract": [], "bare": [],
                                    "preprocess": []}
    for _ in range(args.reps):
        runs["encode"].append(_timed(lambda: enc.encode(images)))
        runs["bare"].append(_timed(lambda: _bare(module, x, args.batch)))
        if not args.no_extract:
            runs["extract"].append(_timed(lambda: _extract(enc, ds)))
        runs["preprocess"].append(_timed(lambda: _preprocess(enc, images, args.batch)))
    med = {k: statistics.median(v) for k, v in runs.items() if v}
    ratio = [b / a for a, b in zip(runs["encode"], runs["bare"])]
    row = {"encoder": name, "image_size": int(enc.image_size), "images": n,
           "batch": args.batch, "reps": args.reps, "load_s": round(load_s, 2),
           "encode_img_s": round(n / med["encode"], 1),
           "bare_img_s": round(n / med["bare"], 1),
           "ratio_encode_bare_median": round(statistics.median(ratio), 3),
           "ratio_encode_bare_min": round(min(ratio), 3),
           "ratio_encode_bare_max": round(max(ratio), 3),
           "preprocess_img_s": round(n / med["preprocess"], 1)}
    if runs["extract"]:
        rx = [b / a for a, b in zip(runs["extract"], runs["bare"])]
        row.update(extract_img_s=round(n / med["extract"], 1),
                   ratio_extract_bare_median=round(statistics.median(rx), 3))
    return {"row": row, "seconds": runs}


def bench_denormals(images, args) -> list[dict]:
    """Bare forward with and without flushing denormals (interleaved), and the largest
    change of a feature it makes."""
    import torch

    from taskrel._internal.denormals import flush_denormals

    out = []
    for name in ("effnet_lite0", "effnet_lite0_random"):
        enc = _load(name, args.image_size)
        m, x = enc.torch_module(), enc.preprocess(images)
        with torch.inference_mode():
            plain = m(x[: args.batch]).numpy()
            with flush_denormals():
                flushed = m(x[: args.batch]).numpy()
        t = {"off": [], "on": []}
        for _ in range(args.reps):
            t["off"].append(_timed(lambda: _bare(m, x, args.batch)))
            with flush_denormals():
                t["on"].append(_timed(lambda: _bare(m, x, args.batch)))
        rate = {k: round(len(x) / statistics.median(v), 1) for k, v in t.items()}
        out.append({"encoder": name, "bare_img_s_flush_off": rate["off"],
                    "bare_img_s_flush_on": rate["on"],
                    "max_abs_feature_change": float(np.abs(plain - flushed).max()),
                    "seconds": t})
    return out


def bench_texts(args) -> list[dict]:
    from taskrel.data import load_dataset
    from taskrel.encoders import load_encoder

    texts = load_dataset("20newsgroups").x_test[: args.texts]
    rows = []
    for name, opts in [("minilm", {"max_seq_length": 128}), ("e5_small", {}),
                       ("glove_mean", {}), ("tfidf_svd", {"dim": 128})]:
        t0 = time.perf_counter()
        enc = load_encoder(name, device="cpu", **opts)
        load_s = time.perf_counter() - t0
        x = texts if name != "e5_small" else texts[: max(50, len(texts) // 5)]
        dt = _timed(lambda: enc.encode(x))
        rows.append({"encoder": name, "options": opts, "load_s": round(load_s, 2),
                     "texts": len(x), "texts_per_s": round(len(x) / dt, 1)})
        print(f"{name:<22}{str(opts):<24}{load_s:>8.2f}{len(x) / dt:>10.1f}  "
              f"({len(x)} texts)", flush=True)
    return rows


def bench_cache(ds, args) -> dict:
    from taskrel.encoders import load_encoder
    from taskrel.features.extract import extract_task

    enc = load_encoder("effnet_lite0", image_size=args.image_size, device="cpu")
    with tempfile.TemporaryDirectory() as d:
        miss = _timed(lambda: extract_task(enc, ds, cache_dir=d, progress=False))
        hit = _timed(lambda: extract_task(enc, ds, cache_dir=d, progress=False))
    n = len(ds.y_train) + len(ds.y_test)
    print(f"cache (effnet_lite0 {args.image_size}px, {n} images + 1000-class probs): "
          f"miss {miss:.2f} s, hit {hit:.3f} s, speed-up x{miss / hit:.0f}")
    return {"images": n, "miss_s": round(miss, 3), "hit_s": round(hit, 4)}


def _environment(args) -> dict:
    import torch

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], text=True,
                                capture_output=True, check=False).stdout.strip()
    except OSError:
        commit = ""
    cpu = ""
    if Path("/proc/cpuinfo").is_file():
        cpu = next((ln.split(":", 1)[1].strip() for ln in
                    Path("/proc/cpuinfo").read_text().splitlines()
                    if ln.startswith("model name")), "")
    return {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "commit": commit, "torch": torch.__version__, "threads": args.threads,
            "cpus": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "dataset": args.dataset}


def main(argv=None) -> None:
    import torch

    from taskrel.data import load_dataset, subsample

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--encoders", nargs="+", default=list(IMAGE_ENCODERS),
                   choices=IMAGE_ENCODERS)
    p.add_argument("--dataset", default="fashion_mnist",
                   help="image dataset whose test images are encoded (e.g. mnist5k)")
    p.add_argument("--images", type=int, default=256)
    p.add_argument("--smallcnn-images", type=int, default=2048,
                   help="images for smallcnn (some 30x faster: runs of similar length)")
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--texts", type=int, default=500, help="0 skips the text encoders")
    p.add_argument("--no-cache", action="store_true", help="skip the cache section")
    p.add_argument("--no-extract", action="store_true",
                   help="skip the extract_task column (encode and bare only)")
    p.add_argument("--no-denormals", action="store_true",
                   help="skip the denormal table")
    p.add_argument("--out", default="benchmarks/results/extract")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    ds_full = load_dataset(args.dataset)
    def task(n: int):
        """The first ``n`` test images, and a dataset whose train split is them
        (``extract_task`` encodes a train split)."""
        x = np.asarray(ds_full.x_test[:n])
        return x, dataclasses.replace(ds_full, name=f"{ds_full.name}|bench{len(x)}",
                                      x_train=x, y_train=np.asarray(ds_full.y_test[:n]))

    images, ds = task(args.images)
    small = task(args.smallcnn_images)
    env = _environment(args)
    env["loadavg_before"] = list(os.getloadavg())
    print(f"{len(images)} {args.dataset} test images at {args.image_size} px, batch "
          f"{args.batch}, {args.threads} threads, {args.reps} interleaved repetitions; "
          f"load average {env['loadavg_before'][0]:.2f}")
    head = (f"{'encoder':<21}{'images':>7}{'encode':>9}{'extract':>9}{'bare':>9}"
            f"{'ratio':>9}{'(min-max)':>13}{'preproc':>9}")
    print(head + "\n" + " " * 28 + f"{'img/s':>9}{'img/s':>9}{'img/s':>9}"
          f"{'enc/bare':>9}{'':>13}{'img/s':>9}")
    rows, seconds = [], {}
    for name in args.encoders:
        got = bench_encoder(name, *(small if name == "smallcnn" else (images, ds)),
                            args)
        r = got["row"]
        rows.append(r)
        seconds[name] = got["seconds"]
        spread = f"({r['ratio_encode_bare_min']:.2f}-{r['ratio_encode_bare_max']:.2f})"
        print(f"{name:<21}{r['images']:>7}{r['encode_img_s']:>9.1f}"
              f"{r.get('extract_img_s', float('nan')):>9.1f}{r['bare_img_s']:>9.1f}"
              f"{r['ratio_encode_bare_median']:>9.2f}{spread:>13}"
              f"{r['preprocess_img_s']:>9.0f}", flush=True)
    result = {"environment": env, "rows": rows, "seconds": seconds}
    if not args.no_denormals:
        den = bench_denormals(images, args)
        print("\ndenormals (bare forward, flush off / on, max |feature change|):")
        for d in den:
            print(f"  {d['encoder']:<21}{d['bare_img_s_flush_off']:>8.1f}"
                  f"{d['bare_img_s_flush_on']:>8.1f} img/s"
                  f"   {d['max_abs_feature_change']:.1e}")
        result["denormals"] = den
    if args.texts > 0:
        print(f"\n{'text encoder':<22}{'options':<24}{'load s':>8}{'items/s':>10}")
        result["texts"] = bench_texts(args)
    if not args.no_cache:
        result["cache"] = bench_cache(subsample(ds_full, per_class=max(
            1, args.images // 10), split="both"), args)
    env["loadavg_after"] = list(os.getloadavg())
    print(f"load average after: {env['loadavg_after'][0]:.2f}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"extract_threads{args.threads}"
    with open(stem.with_suffix(".csv"), "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {stem}.csv and .json")


if __name__ == "__main__":
    main()
