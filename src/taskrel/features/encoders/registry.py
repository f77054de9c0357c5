"""The encoder registry: packaged names and adapter prefixes, by name."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ...exceptions import TaskrelInputError
from .adapters import hf_encoder, open_clip_encoder, timm_encoder, torchvision_encoder
from .base import Encoder
from .image import effnet_lite_encoder, load_finetuned_effnet
from .smallcnn import load_small_cnn
from .text import E5Encoder, GloveMeanEncoder, TfidfSvdEncoder, minilm_encoder

__all__ = ["list_encoders", "load_encoder", "encoder_from_json"]

_PACKAGED: dict[str, Callable[..., Encoder]] = {
    "effnet_lite0": lambda **kw: effnet_lite_encoder(0, **kw),
    "effnet_lite1": lambda **kw: effnet_lite_encoder(1, **kw),
    "effnet_lite2": lambda **kw: effnet_lite_encoder(2, **kw),
    "effnet_lite0_random": lambda **kw: effnet_lite_encoder(0, pretrained=False, **kw),
    # Intermediate representation: pooled output of MBConv block 11 of 16 (112-d).
    "effnet_lite0_b11": lambda **kw: effnet_lite_encoder(0, blocks=11, **kw),
    "minilm": minilm_encoder,
    # Intermediate representation: the first 3 of MiniLM's 6 layers, mean-pooled.
    "minilm_l3": lambda **kw: minilm_encoder(layers=3, **kw),
    "e5_small": lambda **kw: E5Encoder(**kw),
    "glove_mean": lambda **kw: GloveMeanEncoder(**kw),
    "tfidf_svd": lambda **kw: TfidfSvdEncoder(**kw),
}
_PREFIXES: dict[str, Callable[..., Encoder]] = {
    "smallcnn": load_small_cnn,
    "effnet_ft": load_finetuned_effnet,
    "timm": timm_encoder,
    "torchvision": torchvision_encoder,
    "hf": hf_encoder,
    "open_clip": open_clip_encoder,
}


def list_encoders() -> list[str]:
    """Registered encoder names; ``PREFIX:NAME`` entries are adapter patterns.

    Examples
    --------
    >>> "effnet_lite0" in list_encoders()
    True
    """
    files = ("smallcnn", "effnet_ft")
    return sorted(_PACKAGED) + [f"{p}:PATH" if p in files else f"{p}:NAME"
                                for p in _PREFIXES]


def load_encoder(name: str, *, device: str = "auto", **options: Any) -> Encoder:
    """Build an encoder by name (see the module docstring for names and options).

    Parameters
    ----------
    name : str
        A packaged name (``effnet_lite0``, ``minilm``, ...) or ``PREFIX:NAME``.
    device : str
        ``"auto"`` (CUDA if available), ``"cpu"`` or ``"cuda[:N]"``.
    **options
        Encoder options, e.g. ``image_size=64`` (images), ``seed=`` (random control),
        ``max_seq_length=`` (text transformers), ``dim=`` (tfidf_svd),
        ``pretrained=False`` (adapters).

    Examples
    --------
    >>> enc = load_encoder("effnet_lite0", image_size=64, device="cpu")
    >>> enc.dim, enc.has_source_head, enc.image_size
    (1280, True, 64)
    """
    if not isinstance(name, str):
        raise TaskrelInputError(f"`name` must be a str; got {type(name).__name__}")
    prefix, sep, rest = name.partition(":")
    try:
        if sep and prefix in _PREFIXES and rest:
            return _PREFIXES[prefix](rest, device=device, **options)
        if name in _PACKAGED:
            return _PACKAGED[name](device=device, **options)
    except TypeError as exc:
        if "unexpected keyword" in str(exc):
            raise TaskrelInputError(f"encoder {name!r} does not take option(s) "
                                    f"{sorted(options)}: {exc}") from None
        raise
    import difflib

    close = difflib.get_close_matches(name, list(_PACKAGED), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise TaskrelInputError(f"`name` must be one of {list_encoders()}; got {name!r}{hint}")


def encoder_from_json(spec: str) -> dict[str, Any]:
    """Parse ``'{"image_size": 64}'``-style option strings (used by the CLI)."""
    try:
        out = json.loads(spec)
    except json.JSONDecodeError as exc:
        raise TaskrelInputError(f"`--encoder-options` must be a JSON object; {exc}") from None
    if not isinstance(out, dict):
        raise TaskrelInputError(f"`--encoder-options` must be a JSON object; got {spec!r}")
    return out
