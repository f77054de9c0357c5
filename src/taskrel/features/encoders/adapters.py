"""Adapters to other model libraries (timm, torchvision, transformers, open_clip).

Each needs its own package (and usually internet access for the weights).
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


def timm_encoder(name: str, *, pretrained: bool = True, device: str = "auto",
                 image_size: int | None = None) -> Encoder:
    """``timm:NAME``: a timm model's pre-logits features and its linear classifier."""
    timm = require("timm", "pip install timm")
    net = timm.create_model(name, pretrained=pretrained)
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
                                  "pretrained": pretrained})


def _TimmFeatures(net: Any) -> Any:  # noqa: N802 - builds a module
    import torch.nn as nn

    class TimmFeatures(nn.Module):
        def __init__(self, net: Any):
            super().__init__()
            self.net = net

        def forward(self, x: Any) -> Any:
            return self.net.forward_head(self.net.forward_features(x), pre_logits=True)

    return TimmFeatures(net)


def torchvision_encoder(name: str, *, pretrained: bool = True, device: str = "auto",
                        image_size: int | None = None) -> Encoder:
    """``torchvision:NAME``: the model with its last ``nn.Linear`` split off as the head."""
    import torch.nn as nn

    tv = require("torchvision", "pip install torchvision")
    weights = "DEFAULT" if pretrained else None
    net = tv.models.get_model(name, weights=weights)
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
                                  "pretrained": pretrained})


def open_clip_encoder(name: str, *, pretrained: str | bool = True,
                      device: str = "auto", image_size: int | None = None) -> Encoder:
    """``open_clip:ARCH[/TAG]``: the image tower of an OpenCLIP model (no head)."""
    import torch.nn as nn

    oc = require("open_clip", "pip install open_clip_torch")
    arch, _, tag = name.partition("/")
    tag_arg = (tag or "openai") if pretrained is True else (pretrained or None)
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
               pretrained: bool = True) -> Encoder:
    """``hf:NAME``: a sentence-transformers folder (one with ``modules.json``), else a
    transformers model with masked mean pooling (:class:`HFTextEncoder`)."""
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
    tok = tr.AutoTokenizer.from_pretrained(name)
    if pretrained:
        model = tr.AutoModel.from_pretrained(name)
    else:
        model = tr.AutoModel.from_config(tr.AutoConfig.from_pretrained(name))
    return HFTextEncoder(f"hf:{name}", tok, model.to(dev), dev,
                         {"transformers": package_version("transformers"),
                          "pretrained": pretrained}, max_seq_length)
