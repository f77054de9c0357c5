"""Packaged pretrained encoders (the public path of :mod:`taskrel.features.encoders`)."""

from __future__ import annotations

from .features.encoders import Encoder as Encoder
from .features.encoders import list_encoders as list_encoders
from .features.encoders import load_encoder as load_encoder
from .features.encoders import train_small_cnn as train_small_cnn

__all__ = [
    "Encoder",
    "list_encoders",
    "load_encoder",
    "train_small_cnn",
]
