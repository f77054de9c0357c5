"""Image folders: one sub-folder of images per class, as ``torchvision``'s
``ImageFolder`` reads them (:func:`from_image_folder`; ``taskrel.data.from_image_folder``
and ``taskrel rank FOLDER`` use it).

Photos of any size and mode: EXIF orientation applied, 16-bit, float and palette images
scaled to 8 bits, transparency composited on white, then one resize rule for the whole
folder (``size``); unreadable files are skipped with a warning. ``limit`` decodes only
the rows a capped run keeps.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..exceptions import TaskrelInputError
from ._convert import encode_labels, pil_to_array, stratified_split
from .datasets import IMAGE_EXTENSIONS, Dataset, from_arrays

__all__ = ["AUTO_SIDE", "from_image_folder"]

#: Largest side (pixels) of the square that ``from_image_folder(size="auto")`` makes.
AUTO_SIDE = 256


def _list_folder(root: Path) -> tuple[list[tuple[Path, str]], list[str]]:
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    if not classes:
        raise TaskrelInputError(f"image folder {str(root)!r} has no class sub-folders")
    files = [(f, c) for c in classes for f in sorted(
        f for f in (root / c).iterdir()
        if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)]
    return files, classes


def _oriented_size(f: Path) -> tuple[int, int] | None:
    """(H, W) after EXIF orientation, read from the header only; None if unreadable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(f) as im:
            w, h = im.size
            try:
                orientation = im.getexif().get(0x0112, 1)
            except Exception:  # a broken EXIF block: exif_transpose ignores it too
                orientation = 1
    except (UnidentifiedImageError, OSError, ValueError):
        return None
    return (w, h) if orientation in (5, 6, 7, 8) else (h, w)


def _read_image(f: Path, size: tuple[int, int] | None, side: int | None
                ) -> NDArray[np.uint8]:
    """Decode one file: EXIF orientation, mode scaling, then the resize rule."""
    from PIL import Image, ImageOps

    with Image.open(f) as im:
        if side is not None:
            im.draft(None, (side, side))  # JPEG: decode at 1/2..1/8 scale, >= side
        im = ImageOps.exif_transpose(im)
        a = pil_to_array(im)
    if size is None and side is None:
        return a
    img = Image.fromarray(a)
    if size is not None:
        img = img.resize((size[1], size[0]), Image.BILINEAR)
        return np.asarray(img, dtype=np.uint8)
    w, h = img.size
    k = side / min(w, h)
    nw, nh = max(side, round(w * k)), max(side, round(h * k))
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.BICUBIC)
    left, top = (nw - side) // 2, (nh - side) // 2
    return np.asarray(img.crop((left, top, left + side, top + side)), dtype=np.uint8)


def from_image_folder(path: str | os.PathLike[str], *,
                      size: int | tuple[int, int] | str | None = None,
                      test_fraction: float = 0.2, seed: int = 0,
                      limit: int | None = None) -> Dataset:
    """Read a folder with one sub-folder of images per class.

    If ``path`` holds ``train/`` and ``test/`` folders (each with class sub-folders),
    they are the split; otherwise a seeded stratified ``test_fraction`` is held out.

    Parameters
    ----------
    path : str or path-like
        The folder.
    size : None, int, (int, int) or 'auto', default None
        How images of different sizes become one array:

        - ``None``: every image keeps its pixels; mixed sizes are an error.
        - an int or ``(H, W)``: every image is resized (bilinear) to that size.
        - ``'auto'`` (what ``taskrel rank FOLDER`` uses; for photos): if every image
          has the same size and its shorter side is at most :data:`AUTO_SIDE` (256),
          the images are kept as they are; otherwise ``S = min(256, median shorter
          side)`` and every image is resized (bicubic) so that its shorter side is
          ``S``, then center-cropped to ``S x S``. JPEGs are decoded at a reduced
          scale (1/2 to 1/8, never below ``S``), which makes big photos cheap.
    test_fraction : float, default 0.2
        Held-out fraction when the folder has no ``train/`` and ``test/``.
    seed : int, default 0
        Seed of that split.
    limit : int or None, default None
        Keep at most ``limit`` images per split, chosen before any image is decoded:
        the rows :func:`~taskrel.features.extract.extract_task` (``limit_rule=
        'stratified'``) would encode from the whole folder, found from the file
        names' classes alone. ``extract_task(ds, limit=limit)`` then encodes the same
        images, with the same features, as on the whole folder, and a folder of
        100,000 photos costs the decoding of ``limit`` of them (``taskrel rank``
        passes ``--max-target`` / ``--max-reference``). None reads every image.

    Returns
    -------
    Dataset
        uint8 images (n, H, W), or (n, H, W, 3) if any image has colour (then grey
        images are repeated to RGB). ``meta['skipped']`` counts unreadable files,
        ``meta['size']`` the (H, W) of the images and, with ``limit``,
        ``meta['files']`` the readable files per split before the cap.

    Notes
    -----
    Every image is first turned by its EXIF orientation. Modes are scaled by their
    real range, never clipped: 16-bit grey (``I;16``, ``I;16B``) is divided by 257;
    ``I`` and ``F`` keep values in 0..255 (``F`` in [0, 1] is multiplied by 255),
    divide values in 0..65535 by 257, and stretch any other range from the image's
    own min/max; ``RGBA``, ``LA`` and palette (``P``, read through ``RGBA``) images
    are composited on white; ``CMYK`` and other modes are converted to RGB.
    Unreadable files are skipped and counted (a ``UserWarning`` says how many); an
    empty class is an error. With ``limit``, a file is judged readable by its header
    (read for every file, cheap) before the rows are chosen; a chosen file whose
    header reads but whose pixels do not is skipped after the choice, so that split
    has one row fewer than without ``limit`` would give.
    """
    root = Path(path)
    if not root.is_dir():
        raise TaskrelInputError(f"`path` must be an existing folder; got {str(root)!r}")
    if isinstance(size, str):
        if size != "auto":
            raise TaskrelInputError(
                f"`size` must be None, 'auto', a positive int or (H, W); got {size!r}")
        sz = None
    elif size is None:
        sz = None
    else:
        sz = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
        if len(sz) != 2 or not all(isinstance(v, (int, np.integer)) and not
                                   isinstance(v, bool) and v > 0 for v in sz):
            raise TaskrelInputError(
                f"`size` must be None, 'auto', a positive int or (H, W); got {size!r}")
        sz = (int(sz[0]), int(sz[1]))
    if limit is not None and (isinstance(limit, bool) or not isinstance(
            limit, (int, np.integer)) or limit < 1):
        raise TaskrelInputError(f"`limit` must be None or a positive int; got {limit!r}")
    split = (root / "train").is_dir() and (root / "test").is_dir()
    listed = {s: _list_folder(root / s) for s in ("train", "test")} if split else \
        {"all": _list_folder(root)}
    shapes = {f: _oriented_size(f) for files, _ in listed.values() for f, _ in files}
    n_files: dict[str, int] = {}
    if limit is not None:
        listed, n_files = _capped_listing(root, listed, shapes, int(limit),
                                          test_fraction, seed)
    good = sorted({s for s in shapes.values() if s is not None})
    side = None
    if size == "auto" and good and (len(good) > 1 or min(good[0]) > AUTO_SIDE):
        short = [min(s) for s in shapes.values() if s is not None]
        side = int(min(AUTO_SIDE, max(1, int(np.median(short)))))
    elif size is None and len(good) > 1:
        raise TaskrelInputError(
            f"images in {str(root)!r} have mixed sizes {good[:5]}; pass `size='auto'` "
            "(shorter side to at most 256, center crop) or `size=` pixels / (H, W) to "
            "resize them all")

    skipped = 0
    parts: dict[str, tuple[list[NDArray[np.uint8]], list[str], list[str]]] = {}
    for s, (files, classes) in listed.items():
        imgs, labels, n_ok = [], [], dict.fromkeys(classes, 0)
        for f, c in files:
            try:
                if shapes[f] is None:
                    raise OSError(f"cannot identify image file {str(f)!r}")
                a = _read_image(f, sz, side)
            except (OSError, ValueError):
                skipped += 1
                continue
            imgs.append(a)
            labels.append(c)
            n_ok[c] += 1
        for c in classes:
            # With ``limit`` a class may have no chosen rows in a split (more classes
            # than rows); only a class whose chosen files all failed is an error.
            if n_ok[c] == 0 and (limit is None or any(
                    cc == c and shapes[f] is not None for f, cc in files)):
                n_ext = sum(1 for _, cc in files if cc == c)
                base = root / s if split else root
                raise TaskrelInputError(
                    f"class folder {str(base / c)!r} has no readable images "
                    f"({n_ext} file(s) with an image extension)")
        parts[s] = (imgs, labels, classes)
    all_imgs = [im for p in parts.values() for im in p[0]]
    sizes = sorted({im.shape[:2] for im in all_imgs})
    if len(sizes) > 1:  # e.g. a file whose decoded size differs from its header
        raise TaskrelInputError(
            f"images in {str(root)!r} have mixed sizes {sizes[:5]}; pass `size='auto'` "
            "or `size=` pixels / (H, W) to resize them all")
    colour = any(im.ndim == 3 for im in all_imgs)

    def stack(ims: list[NDArray[np.uint8]]) -> NDArray[np.uint8]:
        if colour:
            ims = [np.repeat(im[..., None], 3, -1) if im.ndim == 2 else im for im in ims]
        return np.stack(ims)

    if skipped:
        warnings.warn(f"from_image_folder: skipped {skipped} unreadable file(s) in "
                      f"{str(root)!r}", UserWarning, stacklevel=2)
    if "all" in parts:  # (never with ``limit``: the split was made before decoding)
        ims, labs, classes = parts["all"]
        ds = from_arrays(stack(ims), labs, name=root.name, class_names=classes,
                         modality="image", test_fraction=test_fraction, seed=seed)
    else:
        classes = sorted(set(parts["train"][2]) | set(parts["test"][2]))
        ds = from_arrays(stack(parts["train"][0]), parts["train"][1],
                         stack(parts["test"][0]), parts["test"][1], name=root.name,
                         class_names=classes, modality="image")
    meta: dict[str, Any] = {"source": f"image folder {root}", "skipped": skipped,
                            "size": tuple(int(v) for v in sizes[0])}
    if limit is not None:
        meta.update(limit=int(limit), files=n_files)
    return replace(ds, meta=meta)


def _capped_listing(root: Path, listed: dict[str, tuple[list[tuple[Path, str]],
                                                         list[str]]],
                    shapes: Mapping[Path, tuple[int, int] | None], limit: int,
                    test_fraction: float, seed: int
                    ) -> tuple[dict[str, tuple[list[tuple[Path, str]], list[str]]],
                               dict[str, int]]:
    """The ``train`` and ``test`` files :func:`from_image_folder` decodes with ``limit``.

    Files with an unreadable header are left out first (counted as skipped later, as
    without ``limit``). A folder without ``train/`` and ``test/`` is split here, with
    the seeded stratified split :func:`from_arrays` would make of the decoded images;
    each split then keeps the rows :func:`~taskrel._internal.sampling.limited_rows`
    chooses from its labels: those ``extract_task`` encodes with that ``limit``.
    Also returns the readable files per split before the cap.
    """
    from .._internal.sampling import limited_rows

    classes = sorted({c for _, cs in listed.values() for c in cs})
    out: dict[str, tuple[list[tuple[Path, str]], list[str]]] = {}
    n_files: dict[str, int] = {}
    for s, (files, cs) in listed.items():
        readable = [fc for fc in files if shapes[fc[0]] is not None]
        unreadable = [fc for fc in files if shapes[fc[0]] is None]
        for c in cs:  # the empty-class error of the uncapped read, before choosing
            if not any(cc == c for _, cc in readable):
                base = root / s if s != "all" else root
                n = sum(1 for _, cc in files if cc == c)
                raise TaskrelInputError(
                    f"class folder {str(base / c)!r} has no readable images "
                    f"({n} file(s) with an image extension)")
        y, _ = encode_labels([c for _, c in readable], classes)
        parts = ({"train": np.arange(len(y))} if s == "train" else
                 {"test": np.arange(len(y))} if s == "test" else
                 dict(zip(("train", "test"), stratified_split(y, test_fraction, seed))))
        for name, idx in parts.items():
            keep = idx[limited_rows(len(idx), limit, y[idx])]
            # Unreadable files go along to be counted as skipped, never decoded.
            skip = unreadable if s != "all" or name == "train" else []
            out[name] = ([readable[i] for i in keep] + skip, cs)
            n_files[name] = len(idx)
    return out, n_files
