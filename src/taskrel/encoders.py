"""Packaged pretrained encoders (the public path of :mod:`taskrel.features.encoders`)."""

from __future__ import annotations

from .features.encoders import E5Encoder as E5Encoder
from .features.encoders import Encoder as Encoder
from .features.encoders import EncoderSpec as EncoderSpec
from .features.encoders import GloveMeanEncoder as GloveMeanEncoder
from .features.encoders import HFTextEncoder as HFTextEncoder
from .features.encoders import SentenceTransformerEncoder as SentenceTransformerEncoder
from .features.encoders import TfidfSvdEncoder as TfidfSvdEncoder
from .features.encoders import TorchImageEncoder as TorchImageEncoder
from .features.encoders import encoder_from_json as encoder_from_json
from .features.encoders import list_encoders as list_encoders
from .features.encoders import load_encoder as load_encoder
from .features.encoders import load_zoo as load_zoo
from .features.encoders import train_small_cnn as train_small_cnn

__all__ = [
    "Encoder",
    "list_encoders",
    "load_encoder",
    "train_small_cnn",
    "encoder_from_json",
    "TorchImageEncoder",
    "SentenceTransformerEncoder",
    "E5Encoder",
    "GloveMeanEncoder",
    "TfidfSvdEncoder",
    "HFTextEncoder",
    "EncoderSpec",
    "load_zoo",
]
