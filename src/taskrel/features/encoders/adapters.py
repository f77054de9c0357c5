"""Adapters to other model libraries (timm, torchvision, transformers, open_clip).

Each needs its own package. None of them touches the network unless asked
(``download=True``): weights come from a local file or folder, or from the library's
own cache, and a missing one fails at once with a :class:`TaskrelInputError` that says
how to point the adapter at local weights.

- ``hf:NAME``: a text model (transformers or sentence-transformers; image models
  are refused), NAME a local folder, or a model in the Hugging Face cache
  (``local_files_only=True``);
- ``timm:NAME``: ``weights=PATH`` (a checkpoint file, with the head it holds: the
  1000-class one, another, or none), or ``download=True`` (set ``HF_HUB_OFFLINE=1``
  to use the Hugging Face cache only);
- ``torchvision:NAME``: ``weights=PATH``, or the file already in torch's hub cache
  (``$TORCH_HOME/hub/checkpoints``);
- ``open_clip:ARCH/TAG``: TAG (or ``weights=``) a local checkpoint file, or
  ``download=True``.

Preprocessing is the library's own evaluation transform, applied to each image:
timm's ``resolve_data_config`` + ``create_transform``, the torchvision weights'
``transforms()``, open_clip's preprocess (resize rule, interpolation and crop
included). ``image_size`` sets its output size; open_clip then builds the model at that
size (``force_image_size``: a ViT checkpoint is resized, a ResNet one loads at its own
size only), the others take the size as it is (a ViT-type timm model needs its native
size).

Cache identity: local weights enter :meth:`~taskrel.encoders.Encoder.cache_key` by
their content (:func:`weights_digest`: SHA-256 of a file, or of the weight, config and
tokenizer files of a folder), never by their path, so features cached from one
checkpoint are not read back for another saved under the same name. A randomly
initialised model (``pretrained=False``) is built under ``seed`` (default 0), on a
forked torch RNG (the caller's global RNG is left as it was), and the seed is part of
the key.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..._internal.versions import package_version
from ...exceptions import TaskrelInputError
from ._common import check_image_size, image_size_error, require
from .base import Encoder
from .image import IMAGENET_MEAN, IMAGENET_STD, TorchImageEncoder
from .text import HFTextEncoder, SentenceTransformerEncoder

__all__ = ["timm_encoder", "torchvision_encoder", "open_clip_encoder", "hf_encoder",
           "weights_digest"]

#: Bytes read at a time while hashing a weights file.
_CHUNK = 1 << 24
#: Files of a model folder that determine its outputs: weights, configs, tokenizers.
_FOLDER_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".json", ".txt",
                    ".model")
#: SHA-256 of the files hashed so far in this process, by (path, size, mtime_ns).
_DIGESTS: dict[tuple[str, int, int], str] = {}


def _file_sha256(p: Path) -> str:
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(_CHUNK), b""):
                h.update(block)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def _folder_files(root: Path) -> list[Path]:
    """The weight, config and tokenizer files under ``root`` (hidden entries, such as
    the ``.cache`` folder of a Hugging Face download, left out), sorted."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out += [Path(dirpath) / f for f in filenames
                if not f.startswith(".") and f.endswith(_FOLDER_SUFFIXES)]
    return sorted(out, key=lambda q: q.relative_to(root).as_posix())


def weights_digest(path: str | os.PathLike[str]) -> str:
    """Content identity of local weights: ``"sha256:<hex>"``.

    Parameters
    ----------
    path : str or path-like
        A weights file, or a model folder (a Hugging Face or sentence-transformers
        folder): then its ``*.safetensors``, ``*.bin``, ``*.pt``, ``*.pth``,
        ``*.ckpt``, ``*.json``, ``*.txt`` and ``*.model`` files (subfolders included,
        hidden entries left out) are hashed with their relative paths.

    Returns
    -------
    str
        The SHA-256 of the file's bytes, or of the folder's (relative path, file
        SHA-256) list.

    Notes
    -----
    Every byte is read (in 16 MiB blocks), once per process and file version: the
    digest is cached by (resolved path, size, modification time), so a file rewritten
    in place gets a new digest while an unchanged one is not read again.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = Path(d) / "w.bin"
    ...     _ = p.write_bytes(b"abc")
    ...     weights_digest(p)[:15]
    'sha256:ba7816bf'
    """
    p = Path(path)
    if p.is_file():
        return f"sha256:{_file_sha256(p)}"
    if p.is_dir():
        h = hashlib.sha256()
        for f in _folder_files(p):
            h.update(f"{f.relative_to(p).as_posix()}\0{_file_sha256(f)}\n".encode())
        return f"sha256:{h.hexdigest()}"
    raise TaskrelInputError(f"`path` must be an existing weights file or model folder; "
                            f"got {str(path)!r}")


def _hub_revision(repo_id: str, cache_dir: str | os.PathLike[str] | None = None
                  ) -> str | None:
    """The commit of ``repo_id``'s snapshot in the Hugging Face cache (the one
    ``from_pretrained`` reads: the ``main`` ref), or None when it cannot be told. A
    snapshot's files are fixed by its commit, so the commit identifies the weights."""
    try:
        from huggingface_hub import try_to_load_from_cache

        got = try_to_load_from_cache(repo_id, "config.json", cache_dir=cache_dir)
    except (ImportError, ValueError):  # no huggingface_hub, or not a repo id
        return None
    return Path(got).parent.name if isinstance(got, str) else None


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise TaskrelInputError(f"`seed` must be an int >= 0; got {seed!r}")
    return seed


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Run the body with torch's CPU RNG seeded by ``seed``, then put the caller's RNG
    state back (models are built on the CPU; no CUDA generator is touched)."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)
        yield


def _offline(prefix: str, name: str, how: str) -> TaskrelInputError:
    return TaskrelInputError(
        f"{prefix}:{name}: no local weights (taskrel does not download by default); "
        f"{how}, or pass download=True (--encoder-options '{{\"download\": true}}') "
        "on a machine with internet")


def timm_encoder(name: str, *, pretrained: bool = True, device: str = "auto",
                 image_size: int | None = None, weights: str | None = None,
                 download: bool = False, seed: int = 0,
                 layer: int | str | None = None) -> Encoder:
    """``timm:NAME``: a timm model's pre-logits features and its linear classifier, or
    with ``layer`` an intermediate block's output, global-average pooled.

    Pretrained weights come from ``weights`` (a local checkpoint file, keyed by its
    content) or, with ``download=True``, from timm's sources (the Hugging Face cache
    first). ``pretrained=False`` builds the model randomly initialised under
    ``seed``.

    ``image_size`` None is the model's own input size (its pretrained config's). A
    model with a fixed input size (a ViT, a Swin, ...) is built at another size with
    timm's ``img_size=`` (timm resamples a checkpoint's position embeddings); one that
    cannot be built at it, or a size below the config's minimum, is one
    :class:`TaskrelInputError` line.

    ``layer`` indexes the model's ``feature_info`` (timm's ``forward_intermediates``
    indices; negative counts from the end) or names one of its modules: for a ResNet
    0 = the stem and 1-4 = ``layer1``-``layer4``, for a ViT k = the output of block k
    (0-based). The features are that output, (N, C, H, W) as
    ``forward_intermediates`` gives it (a ViT's patch tokens as a grid, no final
    norm), averaged over H and W; the blocks after it are pruned and there is no
    source head."""
    timm = require("timm", "pip install timm")
    seed = _check_seed(seed)
    size = check_image_size(f"timm:{name}", image_size)
    kw: dict[str, Any] = _timm_size_kwargs(timm, name, size)
    key: dict[str, Any] = {"timm": package_version("timm"), "pretrained": pretrained}
    if pretrained and weights is not None:
        if not Path(weights).is_file():
            raise TaskrelInputError(f"timm:{name}: `weights` {weights!r} is not a file")
        overlay: dict[str, Any] = {"file": str(weights)}
        classes = _timm_checkpoint_classes(timm, name, weights)
        if classes is not None:  # the head the checkpoint holds: none, 1000, 10, ...
            kw["num_classes"] = overlay["num_classes"] = classes
        kw["pretrained_cfg_overlay"] = overlay
        key["weights_digest"] = weights_digest(weights)
    elif pretrained and not download:
        raise _offline("timm", name, "pass weights=/path/to/checkpoint "
                       "(--encoder-options '{\"weights\": \"...\"}')")
    if not pretrained:
        key["seed"] = seed
    net = _timm_create(timm, name, pretrained, kw, seed)
    # timm's own evaluation transform (resize rule, interpolation, crop), at image_size
    # when given.
    cfg = timm.data.resolve_data_config({}, model=net)
    native = int(cfg["input_size"][-1])
    if size:
        cfg["input_size"] = (cfg["input_size"][0], size, size)
    transform = timm.data.create_transform(**cfg)
    import torch.nn as nn

    if layer is not None:
        index, dim = _timm_layer(net, f"timm:{name}", layer)
        feats, head = _TimmLayer(net, index), None
        key["layer"] = index
    else:
        feats, dim = _TimmFeatures(net), int(net.num_features)
        head = net.get_classifier() if getattr(net, "num_classes", 0) else None
        if head is not None and not isinstance(head, nn.Linear):
            head = None
    return TorchImageEncoder(f"timm:{name}", feats, head, dim=dim,
                             image_size=int(cfg["input_size"][-1]), mean=cfg["mean"],
                             std=cfg["std"], device=device,
                             center_crop=float(cfg.get("crop_pct", 1.0)), key=key,
                             transform=transform, native_image_size=native)


def _timm_size_kwargs(timm: Any, name: str, size: int | None) -> dict[str, Any]:
    """``create_model`` keywords for input size ``size`` (None: the model's own):
    ``img_size`` for a model with a fixed input size, nothing for the others (a CNN
    takes any size). A size below the config's minimum is an error here, before the
    model is built."""
    cfg = timm.models.get_pretrained_cfg(name)
    if size is None or cfg is None:
        return {}
    native = int(cfg.input_size[-1])
    low = cfg.min_input_size
    if low is not None and size < int(low[-1]):
        raise image_size_error(f"timm:{name}", size, f"inputs of at least "
                               f"{int(low[-1])} px (its own size is {native} px)")
    return {"img_size": size} if cfg.fixed_input_size and size != native else {}


def _timm_create(timm: Any, name: str, pretrained: bool, kw: dict[str, Any],
                 seed: int) -> Any:
    """``timm.create_model`` under ``seed``; a fixed-size model that cannot be built
    (or its weights loaded) at ``kw["img_size"]`` is one error line."""
    size = kw.get("img_size")
    try:
        with _seeded(seed):
            net = timm.create_model(name, pretrained=pretrained, **kw)
    except TypeError as exc:
        if size is None or "img_size" not in str(exc):
            raise
        raise image_size_error(f"timm:{name}", size, _timm_fixed(timm, name)) from None
    except RuntimeError as exc:  # a checkpoint timm cannot resample to that size
        if size is None:
            raise
        raise image_size_error(
            f"timm:{name}", size, f"{_timm_fixed(timm, name)}, and its weights do not "
            f"load at {size} px ({str(exc).strip().splitlines()[-1].strip()[:120]})"
        ) from None
    built = getattr(getattr(net, "patch_embed", None), "img_size", None)
    if size is not None and built is not None and tuple(built) != (size, size):
        raise image_size_error(f"timm:{name}", size, _timm_fixed(timm, name))
    return net


def _timm_fixed(timm: Any, name: str) -> str:
    s = int(timm.models.get_pretrained_cfg(name).input_size[-1])
    return f"{s} px inputs only (a fixed input size)"


def _timm_layer(net: Any, name: str, layer: int | str) -> tuple[int, int]:
    """The ``feature_info`` index ``layer`` names (an int, negative from the end, or
    a module name) and that output's channels; the blocks after it are pruned."""
    info = list(getattr(net, "feature_info", None) or [])
    if not info or not hasattr(net, "forward_intermediates"):
        raise TaskrelInputError(f"{name}: this timm model has no forward_intermediates "
                                "/ feature_info, so `layer` is not available for it")
    names = [str(f["module"]) for f in info]
    n = len(info)
    if isinstance(layer, str) and layer in names:
        index = names.index(layer)
    elif isinstance(layer, int) and not isinstance(layer, bool) and -n <= layer < n:
        index = layer % n
    else:
        raise TaskrelInputError(
            f"{name}: `layer` must be an int in [{-n}, {n - 1}] (its feature_info "
            f"indices; negative from the end) or one of {names}; got {layer!r}")
    prune = getattr(net, "prune_intermediate_layers", None)
    if callable(prune):  # later blocks are never run: the features cost less
        prune(indices=[index], prune_norm=True, prune_head=True)
    return index, int(info[index]["num_chs"])


def _TimmLayer(net: Any, index: int) -> Any:  # noqa: N802 - builds a module
    import torch.nn as nn

    class TimmLayer(nn.Module):
        """Output ``index`` of ``forward_intermediates``, averaged over its spatial
        (or token) positions."""

        def __init__(self, net: Any, index: int):
            super().__init__()
            self.net = net
            self.index = index

        def forward(self, x: Any) -> Any:
            h = self.net.forward_intermediates(x, indices=[self.index],
                                               intermediates_only=True)[-1]
            return h.mean((2, 3)) if h.ndim == 4 else h.mean(1)

    return TimmLayer(net, index)


def _timm_checkpoint_classes(timm: Any, name: str, weights: str) -> int | None:
    """The number of classes of the head a timm checkpoint holds (0: none, as saved
    from ``num_classes=0``), by the model's classifier name; None when timm does not
    know ``name``'s classifier. timm itself loads a file with the default 1000-class
    head only, so a headless or fine-tuned checkpoint would not load."""
    cfg = timm.models.get_pretrained_cfg(name)
    clf = getattr(cfg, "classifier", None)
    if not clf:
        return None
    clf = clf if isinstance(clf, str) else clf[0]
    w = timm.models.load_state_dict(str(weights)).get(f"{clf}.weight")
    return 0 if w is None else int(w.shape[0])


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
                     download: bool, seed: int) -> tuple[Any, dict[str, Any]]:
    """The model, its weights from ``weights``, torch's hub cache or (``download``) the
    network (never the network otherwise), and what identifies those weights."""
    import torch

    if not pretrained:
        with _seeded(seed):
            return tv.models.get_model(name, weights=None), {"seed": seed}
    if weights is not None:
        if not Path(weights).is_file():
            raise TaskrelInputError(
                f"torchvision:{name}: `weights` {weights!r} is not a file")
        net = tv.models.get_model(name, weights=None)
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        return net, {"weights_digest": weights_digest(weights)}
    url = tv.models.get_model_weights(name).DEFAULT.url
    cached = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
    if not cached.is_file() and not download:
        raise _offline("torchvision", name, f"put the weights file at {cached} or pass "
                       "weights=/path/to/state_dict.pth")
    # torchvision checks the file against the hash prefix in its name.
    return tv.models.get_model(name, weights="DEFAULT"), {"weights": cached.name}


def torchvision_encoder(name: str, *, pretrained: bool = True, device: str = "auto",
                        image_size: int | None = None, weights: str | None = None,
                        download: bool = False, seed: int = 0) -> Encoder:
    """``torchvision:NAME``: the model with its last ``nn.Linear`` split off as the head.

    Pretrained weights come from ``weights`` (a local state-dict file, keyed by its
    content), torch's hub cache, or, with ``download=True``, the network.
    ``pretrained=False`` builds the model randomly initialised under ``seed``."""
    import torch.nn as nn

    tv = require("torchvision", "pip install torchvision")
    image_size = check_image_size(f"torchvision:{name}", image_size)
    net, wkey = _torchvision_net(tv, name, pretrained, weights, download,
                                 _check_seed(seed))
    # The weights' own transforms (also for a random init: the same inputs as the
    # pretrained model), resized in proportion at image_size.
    mean, std, size, crop = IMAGENET_MEAN, IMAGENET_STD, 224, 224 / 256
    native, transform = size, None
    try:
        default = tv.models.get_model_weights(name).DEFAULT
    except (KeyError, ValueError):  # an architecture without published weights
        default = None
    if default is not None:
        t = default.transforms()
        mean, std = tuple(t.mean), tuple(t.std)
        size = native = int(t.crop_size[0])
        crop = size / float(t.resize_size[0])
        _check_torchvision_size(net, f"torchvision:{name}", image_size, native,
                                default.meta.get("min_size"))
        if image_size and image_size != size:
            size = image_size
            t = default.transforms(crop_size=size, resize_size=round(size / crop))
        transform = t
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
                             device=device, center_crop=crop, transform=transform,
                             key={"torchvision": package_version("torchvision"),
                                  "pretrained": pretrained, **wkey},
                             native_image_size=native)


def _check_torchvision_size(net: Any, name: str, size: int | None, native: int,
                            min_size: Any) -> None:
    """A size the model cannot take, from what torchvision publishes: a vision
    transformer's fixed ``image_size``, the weights' ``min_size``."""
    fixed = getattr(net, "image_size", None)  # torchvision's VisionTransformer
    if size is None:
        return
    if isinstance(fixed, int) and size != fixed:
        raise image_size_error(name, size, f"{fixed} px inputs only (a fixed input "
                               "size)")
    if min_size and size < int(min_size[0]):
        raise image_size_error(name, size, f"inputs of at least {int(min_size[0])} px "
                               f"(its own size is {native} px)")


def open_clip_encoder(name: str, *, pretrained: str | bool = True,
                      device: str = "auto", image_size: int | None = None,
                      weights: str | None = None, download: bool = False,
                      seed: int = 0) -> Encoder:
    """``open_clip:ARCH[/TAG]``: the image tower of an OpenCLIP model (no head).

    TAG (or ``weights``) may be a local checkpoint file (keyed by its content); a named
    tag needs ``download=True`` (open_clip fetches it, or reads its cache).
    ``pretrained=False`` builds the model randomly initialised under ``seed``."""
    import torch.nn as nn

    oc = require("open_clip", "pip install open_clip_torch")
    seed = _check_seed(seed)
    image_size = check_image_size(f"open_clip:{name}", image_size)
    arch, _, tag = name.partition("/")
    tag_arg = (tag or "openai") if pretrained is True else (pretrained or None)
    if weights is not None:
        tag_arg = weights
    local = bool(tag_arg) and Path(str(tag_arg)).is_file()
    if tag_arg and not local and not download:
        raise _offline("open_clip", name, "pass ARCH/PATH or weights=/path/to/checkpoint")
    key: dict[str, Any] = {"open_clip": package_version("open_clip_torch")}
    if local:
        key.update(pretrained="file", weights_digest=weights_digest(str(tag_arg)))
    else:
        key["pretrained"] = str(tag_arg)
    if not tag_arg:
        key["seed"] = seed
    # A size other than the model's own goes to open_clip (force_image_size: the
    # position embedding is built, or a checkpoint's resized, for it); the image
    # transform is open_clip's preprocess for the model as built.
    force = {"force_image_size": int(image_size)} if image_size else {}
    try:
        with _seeded(seed):
            model, _, pre = oc.create_model_and_transforms(arch, pretrained=tag_arg,
                                                           **force)
    except RuntimeError as exc:  # a checkpoint open_clip cannot resize (ResNet towers)
        if not force:
            raise
        raise TaskrelInputError(
            f"open_clip:{name}: the weights do not load at image_size={image_size} "
            f"({str(exc).strip().splitlines()[-1].strip()}); pass the model's own "
            "image size (--image-size)") from None
    size = _side(model.visual.image_size)
    arch_cfg = oc.get_model_config(arch) or {}
    native = _side(arch_cfg.get("vision_cfg", {}).get("image_size", size))
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
                             image_size=size, mean=mean, std=std, device=device,
                             key=key, transform=pre, native_image_size=native)


def _side(size: Any) -> int:
    """An image size given as an int or an (H, W) pair, as one side."""
    return int(size[0] if isinstance(size, (tuple, list)) else size)



def hf_encoder(name: str, *, device: str = "auto", max_seq_length: int = 256,
               pretrained: bool = True, download: bool = False,
               seed: int = 0, layer: int | None = None) -> Encoder:
    """``hf:NAME``: a sentence-transformers folder (one with ``modules.json``), else a
    transformers model with masked mean pooling (:class:`HFTextEncoder`), read from a
    local folder or the Hugging Face cache (``download=True`` allows the network).

    ``layer=k`` (transformers models) pools hidden state k instead of the last layer:
    0 = the embeddings, k = the output of block k, negative from the end (-1 = the
    last layer, the default's features), the same masked mean.

    A local folder is keyed by the content of its weight, config and tokenizer files
    (:func:`weights_digest`), a cached model by its Hub commit. ``pretrained=False``
    (transformers models) builds the model from its config, randomly initialised under
    ``seed``."""
    from ..._internal.devices import resolve_device

    seed = _check_seed(seed)
    dev = resolve_device(device)
    p = Path(name)
    if (p / "modules.json").is_file():
        if layer is not None:
            raise TaskrelInputError(
                f"hf:{name}: `layer` is for transformers models; this is a "
                "sentence-transformers folder, which pools its own way (rank its "
                "transformer as hf:FOLDER without modules.json for its layers)")
        st = require("sentence_transformers", "pip install sentence-transformers")
        model = st.SentenceTransformer(name, device=str(dev))
        return SentenceTransformerEncoder(f"hf:{name}", model, {
            "sentence-transformers": package_version("sentence-transformers"),
            "weights_digest": weights_digest(p)}, max_seq_length=max_seq_length)
    tr = require("transformers", "pip install transformers")
    local = {} if download else {"local_files_only": True}
    try:
        tok = tr.AutoTokenizer.from_pretrained(name, **local)
        if pretrained:
            model = tr.AutoModel.from_pretrained(name, **local)
        else:
            config = tr.AutoConfig.from_pretrained(name, **local)
            with _seeded(seed):
                model = tr.AutoModel.from_config(config)
    except (OSError, ValueError) as exc:
        if (p / "preprocessor_config.json").is_file():  # an image model's folder
            raise TaskrelInputError(
                f"hf:{name}: has an image processor and no tokenizer; hf: reads text "
                "models only (transformers or sentence-transformers): use timm: or "
                "open_clip: for image models") from None
        if download:
            raise TaskrelInputError(f"hf:{name}: {str(exc).splitlines()[0]}") from None
        raise _offline("hf", name, "pass a local folder (hf:/path/to/model), or load it "
                       "once with internet so it is in the Hugging Face cache "
                       "(then HF_HUB_OFFLINE=1 keeps it offline)") from None
    key: dict[str, Any] = {"transformers": package_version("transformers"),
                           "pretrained": pretrained}
    if p.is_dir():
        key["weights_digest"] = weights_digest(p)
    else:
        key["revision"] = _hub_revision(name)
    if not pretrained:
        key["seed"] = seed
    return HFTextEncoder(f"hf:{name}", tok, model.to(dev), dev, key, max_seq_length,
                         layer=layer)
