"""The :class:`Encoder` base class: batched encoding, input checks, cache identity."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ...exceptions import TaskrelInputError

__all__ = ["Encoder"]


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
    label : str
        The name of its rows in a ranking (an encoder spec's ``label``, set by
        :func:`taskrel.ranking.resolve_encoders`); empty: ``name``. Not part of the
        cache key: two labels of one model share its features.
    """

    name: str = ""
    label: str = ""
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

    @property
    def module(self) -> Any:
        """The wrapped model object (e.g. a sentence-transformers or transformers
        ``nn.Module``) of encoders that keep one as ``_model``; None for the others.

        Read-only. For the fine-tunable feature module of an image encoder use
        :meth:`torch_module`.
        """
        return getattr(self, "_model", None)

    def torch_module(self) -> Any:
        raise TaskrelInputError(f"encoder {self.name!r} is not trainable (no torch module)")

    def preprocess(self, images: Any) -> Any:
        raise TaskrelInputError(f"encoder {self.name!r} has no image preprocessing")

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

