"""Adapters to other model libraries (timm, torchvision, transformers, open_clip).

Each needs its own package. None of them touches the network unless asked
(``download=True``): weights come from a local file or folder, or from the library's
own cache, and a missing one fails at once with a :class:`TaskrelInputError` that says
how to point the adapter at local weights.

- ``hf:NAME``: NAME a local folder, or a model in the Hugging Face cache
  (``local_files_only=True``);
- ``timm:NAME``: ``weights=PATH`` (a checkpoint file), or ``download=True``
  (set ``HF_HUB_OFFLINE=1`` to use the Hugging Face cache only);
- ``torchvision:NAME``: ``weights=PATH``, or the file already in torch's hub cache
  (``$TORCH_HOME/hub/checkpoints``);
- ``open_clip:ARCH/TAG``: TAG (or ``weights=``) a local checkpoint file, or
  ``download=True``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..._internal.versions import package_version
from ...exceptions import TaskrelInputError
from ._common import require
from .base import Encoder
from .image import IMAGENET_MEAN, IMAGENET_STD, TorchImageEncoder
from .text import HFTextEncoder, SentenceTransformerEncoder

__all__ = ["timm_encoder", "torchvision_encoder", "open_clip_encoder", "hf_encoder"]


def _offline(prefix: str, name: str, how: str) -> TaskrelInputError:
    return TaskrelInputError(
        f"{prefix}:{name}: no local weights (taskrel does not download by default); "
        f"{how}, or pass download=True (--encoder-options '{{\"download\": true}}') "
        "on a machine with internet")


def timm_encoder(name: str, *, pretrained: bool = True, device: str = "auto",
                 image_size: int | None = None, weights: str | None = None,
                 download: bool = False) -> Encoder:
    """``timm:NAME``: a timm model's pre-logits features and its linear classifier.

    Pretrained weights come from ``weights`` (a local checkpoint file) or, with
    ``download=True``, from timm's sources (the Hugging Face cache first)."""
    timm = require("timm", "pip install timm")
    kw: dict[str, Any] = {}
    if pretrained and weights is not None:
        if not Path(weights).is_file():
            raise TaskrelInputError(f"timm:{name}: `weights` {weights!r} is not a file")
        kw["pretrained_cfg_overlay"] = {"file": str(weights)}
    elif pretrained and not download:
        raise _offline("timm", name, "pass weights=/path/to/checkpoint "
                       "(--encoder-options '{\"weights\": \"...\"}')")
    net = timm.create_model(name, pretrained=pretrained, **kw)
    cfg = timm.data.resolve_data_config({}, model=net)
    size = int(image_size or cfg["input_size"][-1])
    feats = _TimmFeatures(net)
    head = net.get_classifier() if getattr(net, "num_classes", 0) else None
    import torch.nn as nn

    if head is not None and not isinstance(head, nn.Linear):
        head = None
    return TorchImageEncoder(f"timm:{name}", feats, head, dim=int(net.num_features),
                             image_size=size, mean=cfg["mean"], std=cfg["std"],
                             device=device, center_crop=float(cfg.get("crop_pct", 1.0)),
                             key={"timm": package_version("timm"),
                                  "pretrained": pretrained, "weights": weights})


def _TimmFeatures(net: Any) -> Any:  # noqa: N802 - builds a module
    import torch.nn as nn

    class TimmFeatures(nn.Module):
        def __init__(self, net: Any):
            super().__init__()
            self.net = net

        def forward(self, x: Any) -> Any:
            return self.net.forward_head(self.net.forward_features(x), pre_logits=True)

    return TimmFeatures(net)


def _torchvision_net(tv: Any, name: str, pretrained: bool, weights: str | None,
                     download: bool) -> Any:
    """The model, its weights from ``weights``, torch's hub cache or (``download``) the
    network; never the network otherwise."""
    import torch

    if not pretrained:
        return tv.models.get_model(name, weights=None)
    if weights is not None:
        if not Path(weights).is_file():
            raise TaskrelInputError(
                f"torchvision:{name}: `weights` {weights!r} is not a file")
        net = tv.models.get_model(name, weights=None)
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        return net
    url = tv.models.get_model_weights(name).DEFAULT.url
    cached = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
    if not cached.is_file() and not download:
        raise _offline("torchvision", name, f"put the weights file at {cached} or pass "
                       "weights=/path/to/state_dict.pth")
    return tv.models.get_model(name, weights="DEFAULT")


def torchvision_encoder(name: str, *, pretrained: bool = True, device: str = "auto",
                        image_size: int | None = None, weights: str | None = None,
                        download: bool = False) -> Encoder:
    """``torchvision:NAME``: the model with its last ``nn.Linear`` split off as the head.

    Pretrained weights come from ``weights`` (a local state-dict file), torch's hub
    cache, or, with ``download=True``, the network."""
    import torch.nn as nn

    tv = require("torchvision", "pip install torchvision")
    net = _torchvision_net(tv, name, pretrained, weights, download)
    mean, std, size, crop = IMAGENET_MEAN, IMAGENET_STD, 224, 224 / 256
    if pretrained:
        t = tv.models.get_model_weights(name).DEFAULT.transforms()
        mean, std = tuple(t.mean), tuple(t.std)
        size = int(t.crop_size[0])
        crop = size / float(t.resize_size[0])
    # Replace the last Linear layer with identity: its input is the penultimate feature.
    parent, attr, last = None, None, None
    for mod_name, mod in net.named_modules():
        if isinstance(mod, nn.Linear):
            attr, last = mod_name, mod
    if last is None:
        raise TaskrelInputError(f"torchvision model {name!r} has no final Linear layer")
    parent = net.get_submodule(attr.rsplit(".", 1)[0]) if "." in attr else net
    head = last
    setattr(parent, attr.rsplit(".", 1)[-1], nn.Identity())
    return TorchImageEncoder(f"torchvision:{name}", net, head, dim=int(head.in_features),
                             image_size=int(image_size or size), mean=mean, std=std,
                             device=device, center_crop=crop,
                             key={"torchvision": package_version("torchvision"),
                                  "pretrained": pretrained, "weights": weights})


def open_clip_encoder(name: str, *, pretrained: str | bool = True,
                      device: str = "auto", image_size: int | None = None,
                      weights: str | None = None, download: bool = False) -> Encoder:
    """``open_clip:ARCH[/TAG]``: the image tower of an OpenCLIP model (no head).

    TAG (or ``weights``) may be a local checkpoint file; a named tag needs
    ``download=True`` (open_clip fetches it, or reads its cache)."""
    import torch.nn as nn

    oc = require("open_clip", "pip install open_clip_torch")
    arch, _, tag = name.partition("/")
    tag_arg = (tag or "openai") if pretrained is True else (pretrained or None)
    if weights is not None:
        tag_arg = weights
    if tag_arg and not Path(str(tag_arg)).is_file() and not download:
        raise _offline("open_clip", name, "pass ARCH/PATH or weights=/path/to/checkpoint")
    model, _, pre = oc.create_model_and_transforms(arch, pretrained=tag_arg)
    size = int(model.visual.image_size[0] if isinstance(model.visual.image_size, tuple)
               else model.visual.image_size)
    mean = getattr(model.visual, "image_mean", None) or (0.48145466, 0.4578275, 0.40821073)
    std = getattr(model.visual, "image_std", None) or (0.26862954, 0.26130258, 0.27577711)

    class Visual(nn.Module):
        def __init__(self, m: Any):
            super().__init__()
            self.m = m

        def forward(self, x: Any) -> Any:
            return self.m.encode_image(x)

    dim = int(model.visual.output_dim)
    return TorchImageEncoder(f"open_clip:{name}", Visual(model), None, dim=dim,
                             image_size=int(image_size or size), mean=mean, std=std,
                             device=device,
                             key={"open_clip": package_version("open_clip_torch"),
                                  "pretrained": str(tag_arg)})



def hf_encoder(name: str, *, device: str = "auto", max_seq_length: int = 256,
               pretrained: bool = True, download: bool = False) -> Encoder:
    """``hf:NAME``: a sentence-transformers folder (one with ``modules.json``), else a
    transformers model with masked mean pooling (:class:`HFTextEncoder`), read from a
    local folder or the Hugging Face cache (``download=True`` allows the network)."""
    from ..._internal.devices import resolve_device

    dev = resolve_device(device)
    p = Path(name)
    if (p / "modules.json").is_file():
        st = require("sentence_transformers", "pip install sentence-transformers")
        model = st.SentenceTransformer(name, device=str(dev))
        return SentenceTransformerEncoder(f"hf:{name}", model, {
            "sentence-transformers": package_version("sentence-transformers")},
            max_seq_length=max_seq_length)
    tr = require("transformers", "pip install transformers")
    local = {} if download else {"local_files_only": True}
    try:
        tok = tr.AutoTokenizer.from_pretrained(name, **local)
        if pretrained:
            model = tr.AutoModel.from_pretrained(name, **local)
        else:
            model = tr.AutoModel.from_config(tr.AutoConfig.from_pretrained(name, **local))
    except (OSError, ValueError) as exc:
        if download:
            raise TaskrelInputError(f"hf:{name}: {str(exc).splitlines()[0]}") from None
        raise _offline("hf", name, "pass a local folder (hf:/path/to/model), or load it "
                       "once with internet so it is in the Hugging Face cache "
                       "(then HF_HUB_OFFLINE=1 keeps it offline)") from None
    return HFTextEncoder(f"hf:{name}", tok, model.to(dev), dev,
                         {"transformers": package_version("transformers"),
                          "pretrained": pretrained}, max_seq_length)
