"""The paper's small-scale CNN encoder: training it and loading it back."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ...exceptions import TaskrelInputError
from ._common import check_image_size, file_digest, image_size_error
from .base import Encoder
from .image import TorchImageEncoder

__all__ = ["train_small_cnn", "load_small_cnn"]


#: Channels of the first convolution of the default network (conv32-conv64-fc128).
DEFAULT_WIDTH = 32


def _small_cnn(n_classes: int, in_size: int, width: int = DEFAULT_WIDTH
               ) -> tuple[Any, Any]:
    """conv(w)-pool-conv(2w)-pool-fc(4w), ReLU; ``width`` w = 32 is the default."""
    import torch.nn as nn

    w = int(width)
    feats = nn.Sequential(
        nn.Conv2d(3, w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(2 * w * (in_size // 4) ** 2, 4 * w), nn.ReLU(),
    )
    return feats, nn.Linear(4 * w, n_classes)


def train_small_cnn(dataset: Any, *, epochs: int = 3, seed: int = 0,
                    out: str | os.PathLike[str], image_size: int = 28,
                    batch_size: int = 128, lr: float = 1e-3, device: str = "auto",
                    progress: bool = True, width: int = DEFAULT_WIDTH) -> Path:
    """Train the paper's small-scale encoder (2 conv + 1 hidden layer) on an image task.

    The network (conv32-pool-conv64-pool-fc128, ReLU) is trained with Adam and
    cross-entropy on ``dataset``'s train split, then saved (weights, class names, input
    size, normalisation) to ``out``; load it back with ``load_encoder("smallcnn:OUT")``.
    Its 128-d hidden layer gives the features, its head the source probabilities.
    ``width`` scales every layer (conv ``w``, conv ``2w``, fc ``4w``; features are
    ``4 * width``-d); a width other than the default 32 is saved in the file, so that
    :func:`load_small_cnn` rebuilds the same network. ``seed`` fixes the initial weights and the batch order (torch's global RNG is left
    as it was).

    Returns
    -------
    pathlib.Path
        The file written (atomically).
    """
    import torch

    from ..._internal.devices import resolve_device

    if getattr(dataset, "modality", None) != "image":
        raise TaskrelInputError("`dataset` must be an image Dataset; got "
                                f"{getattr(dataset, 'modality', type(dataset).__name__)!r}")
    if not isinstance(epochs, int) or epochs < 1:
        raise TaskrelInputError(f"`epochs` must be an int >= 1; got {epochs!r}")
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise TaskrelInputError(f"`width` must be an int >= 1; got {width!r}")
    dev = resolve_device(device)
    n_classes = len(dataset.class_names)
    # Seeded on a forked CPU RNG (the layers are built on the CPU; training draws no
    # torch random numbers): the caller's global RNG is left as it was.
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(int(seed))
        feats, head = _small_cnn(n_classes, image_size, width)
    enc = TorchImageEncoder("smallcnn", feats, head, dim=4 * width, image_size=image_size,
                            mean=(0.5,) * 3, std=(0.5,) * 3, device=str(dev))
    model = torch.nn.Sequential(feats, head).to(dev).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x = np.asarray(dataset.x_train)
    y = torch.as_tensor(np.asarray(dataset.y_train), dtype=torch.long)
    rng = np.random.default_rng(seed)
    from tqdm.auto import tqdm

    for ep in tqdm(range(epochs), desc="train smallcnn", disable=not progress):
        order = rng.permutation(len(y))
        for s in range(0, len(y), batch_size):
            i = order[s:s + batch_size]
            xb = enc.preprocess(x[i]).to(dev)
            loss = torch.nn.functional.cross_entropy(model(xb), y[i].to(dev))
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    from ..._internal.serialize import atomic_torch_save

    path = Path(out)
    ck: dict[str, Any] = {
        "format": "taskrel-smallcnn-1", "n_classes": n_classes, "image_size": image_size,
        "class_names": list(dataset.class_names), "trained_on": dataset.name,
        "epochs": epochs, "seed": seed,
        "features": {k: v.cpu() for k, v in feats.state_dict().items()},
        "head": {k: v.cpu() for k, v in head.state_dict().items()},
    }
    if width != DEFAULT_WIDTH:  # files of the default network stay as they were
        ck["width"] = width
    atomic_torch_save(path, ck)
    return path


def load_small_cnn(path: str, device: str = "auto",
                   image_size: int | None = None) -> Encoder:
    """``smallcnn:PATH``: a file written by :func:`train_small_cnn`, as an encoder.

    It takes the size it was trained at only (its hidden layer is sized by it):
    ``image_size`` may be None or that size."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise TaskrelInputError(f"smallcnn file {path!r} does not exist; train one with "
                                "taskrel.encoders.train_small_cnn")
    try:
        ck = torch.load(p, map_location="cpu", weights_only=True)
        ok = ck.get("format") == "taskrel-smallcnn-1"
    except Exception:  # noqa: BLE001 - any unreadable file is a bad input
        ok = False
    if not ok:
        raise TaskrelInputError(f"{path!r} is not a small-CNN file written by "
                                "train_small_cnn")
    trained = int(ck["image_size"])
    asked = check_image_size(f"smallcnn:{path}", image_size)
    if asked is not None and asked != trained:
        raise image_size_error(f"smallcnn:{path}", asked, f"{trained} px inputs only "
                               "(the size it was trained at)")
    # Files without a width (all written before it existed) hold the default network.
    width = int(ck.get("width", DEFAULT_WIDTH))
    feats, head = _small_cnn(ck["n_classes"], ck["image_size"], width)
    feats.load_state_dict(ck["features"])
    head.load_state_dict(ck["head"])
    enc = TorchImageEncoder(f"smallcnn:{p}", feats, head, dim=4 * width,
                            image_size=ck["image_size"], mean=(0.5,) * 3, std=(0.5,) * 3,
                            device=device, key={"weights_digest": file_digest(p),
                                                "trained_on": ck["trained_on"]})
    enc.source_class_names = tuple(ck["class_names"])  # type: ignore[attr-defined]
    return enc

