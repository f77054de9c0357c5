"""Labels, splits and image arrays shared by the dataset loaders (:mod:`.datasets`)
and the image-folder reader (:mod:`.image_folder`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..exceptions import TaskrelInputError

def stratified_split(y: NDArray[Any], test_size: int | float, seed: int
                     ) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    try:
        tr, te = train_test_split(idx, test_size=test_size, stratify=y,
                                  random_state=seed)
    except ValueError:
        # scikit-learn cannot stratify: fewer test rows than classes, or a class of
        # one row (e.g. 6 classes of 4 photos at 0.2). Split each class on its own
        # instead: round(fraction * n_c) of its rows, at least 1 where it has 2.
        return _per_class_split(np.asarray(y), test_size, seed)
    return np.sort(tr), np.sort(te)


def _per_class_split(y: NDArray[Any], test_size: int | float, seed: int
                     ) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    frac = test_size / len(y) if isinstance(test_size, (int, np.integer)) else test_size
    rng = np.random.default_rng(seed)
    test: list[NDArray[np.intp]] = []
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        k = 0 if rows.size < 2 else min(rows.size - 1, max(1, round(frac * rows.size)))
        test.append(rng.permutation(rows)[:k])
    te = np.sort(np.concatenate(test)).astype(np.intp)
    return np.setdiff1d(np.arange(len(y)), te).astype(np.intp), te


def encode_labels(labels: Sequence[Any], class_names: Sequence[str] | None = None
                  ) -> tuple[NDArray[np.int64], tuple[str, ...]]:
    if class_names is None:
        names, y = np.unique(np.asarray([str(v) for v in labels]), return_inverse=True)
        return y.astype(np.int64), tuple(str(n) for n in names)
    lookup = {n: i for i, n in enumerate(class_names)}
    try:
        y = np.array([lookup[str(v)] for v in labels], dtype=np.int64)
    except KeyError as exc:
        raise TaskrelInputError(f"label {exc.args[0]!r} is not in `class_names`") from None
    return y, tuple(class_names)


ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA", "P")


def scale_to_uint8(a: NDArray[Any], mode: str) -> NDArray[np.uint8]:
    """8-bit version of a high-depth grey image, scaled by the range of its values.

    Values in 0..255 are kept; for mode ``F``, values in [0, 1] are multiplied by 255;
    values in 0..65535 are divided by 257 (65535 -> 255); any other range is stretched
    from the image's own min/max to 0..255. Non-finite values count as the minimum.
    """
    a = np.asarray(a, dtype=np.float64)
    finite = np.isfinite(a)
    if not finite.all():
        a = np.where(finite, a, np.min(a[finite]) if finite.any() else 0.0)
    if a.size == 0:
        return a.astype(np.uint8)
    lo, hi = float(a.min()), float(a.max())
    if mode == "F" and lo >= 0.0 and hi <= 1.0:
        a = a * 255.0
    elif lo >= 0.0 and hi <= 255.0:
        pass
    elif lo >= 0.0 and hi <= 65535.0:
        a = a / 257.0
    else:
        a = (a - lo) * (255.0 / (hi - lo))  # hi > lo: the range is wider than 0..65535
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def pil_to_array(im: Any) -> NDArray[np.uint8]:
    """A PIL image as uint8 (H, W) (grey) or (H, W, 3) (colour), by its mode's range.

    ``1``/``L`` stay grey; 16-bit grey (``I;16``, ``I;16B``, ...) is divided by 257;
    ``I`` and ``F`` are scaled by :func:`scale_to_uint8`; modes with transparency
    (``RGBA``, ``LA``, ``PA``, and ``P``, read through ``RGBA``) are composited on
    white; every other mode (``CMYK``, ``YCbCr``, ...) is converted to RGB.
    """
    mode = im.mode
    if mode in ("1", "L"):
        return np.asarray(im.convert("L"), dtype=np.uint8)
    if mode.startswith("I;16") or mode in ("I", "F"):
        return scale_to_uint8(np.asarray(im), mode)
    if mode in ALPHA_MODES:
        grey = mode in ("LA", "La")
        a = np.asarray(im.convert("LA" if grey else "RGBA"), dtype=np.float64)
        alpha = a[..., -1:] / 255.0
        out = a[..., :-1] * alpha + 255.0 * (1.0 - alpha)  # composite on white
        out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
        return out[..., 0] if grey else out
    return np.asarray(im.convert("RGB"), dtype=np.uint8)
