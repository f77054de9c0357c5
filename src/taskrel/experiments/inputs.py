"""What the cells of a suite read: datasets, encoders and extracted tasks.

Everything here is cached per process, keyed by what it depends on, so that the
hundreds of cells of one (encoder, target) pair load the features and fit the
reference PCA once:

- :func:`suite_dataset` builds a config's :class:`~taskrel.experiments.DatasetSpec`;
- :func:`suite_encoder` loads an encoder with the config's options (the small CNN is
  trained on the reference first, once: :func:`smallcnn_path`);
- :func:`unit_task` extracts one ``(encoder, task, split)`` feature set through
  :func:`taskrel.features.extract.extract_task` (features cached on disk);
  ``options.max_reference`` / ``max_target`` / ``max_test`` cap the rows;
- :func:`cell_tasks` gives a cell's reference, target-train and target-test tasks,
  projected on the reference's top ``options.feature_dim`` principal directions; the
  reference is the config's, or, for an own-source cell (``cell.reference`` names a
  ``[[sources]]`` task), that source's held-out split (:func:`reference_unit`);
- :func:`fraction_rows` and :func:`drop_single_row_classes` pick the target training
  rows a cell's estimators see; :func:`raw_rows` the raw inputs fine-tuning sees.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from ..exceptions import TaskrelInputError
from ._names import SOURCE_SEP as SOURCE_SEP
from ._names import split_source as split_source
from .store import Cell
from .suite import REFERENCE_TARGET, DatasetSpec, ExperimentConfig

__all__ = ["fraction_rows", "drop_single_row_classes", "suite_device", "suite_dataset",
           "smallcnn_path", "suite_encoder", "split_source", "encoder_image_size",
           "source_trained_path", "SOURCE_SEP", "unit_task", "cell_tasks", "pca", "raw_rows",
           "clear_caches", "smallcnn_arch", "source_recipe", "reference_unit", "HELDOUT"]


# ---------------------------------------------------------------------------------
# subsampling
# ---------------------------------------------------------------------------------
def fraction_rows(labels: Any, fraction: float, seed: int, *, min_per_class: int = 5
                  ) -> np.ndarray:
    """Indices of a seeded, stratified ``fraction`` of the rows (sorted).

    Every class keeps ``max(min_per_class, round(fraction * n_c))`` rows (all of
    them when it has fewer). The default floor of 5 leaves every class at least one
    row in task-relatedness's internal 80/20 split of the target's training rows.

    Examples
    --------
    >>> y = np.repeat([0, 1, 2], [100, 30, 4])
    >>> idx = fraction_rows(y, 0.1, seed=0)
    >>> np.bincount(y[idx]).tolist()
    [10, 5, 4]
    """
    y = np.asarray(labels)
    if y.ndim != 1 or y.size == 0:
        raise TaskrelInputError(f"`labels` must be a non-empty 1-d array; got shape {y.shape}")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) \
            or not 0 < fraction <= 1:
        raise TaskrelInputError(f"`fraction` must be a number in (0, 1]; got {fraction!r}")
    if fraction >= 1:
        return np.arange(y.size)
    rng = np.random.default_rng([int(seed), 7919])
    keep = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        k = min(idx.size, max(min_per_class, int(round(fraction * idx.size))))
        keep.append(rng.choice(idx, size=k, replace=False))
    return np.sort(np.concatenate(keep))


def drop_single_row_classes(labels: Any, rows: Any) -> tuple[np.ndarray, list[Any]]:
    """``rows`` less those of classes that have a single row among them, and those
    classes (sorted). A class with one training row cannot be split into fit and
    held-out rows or have a covariance (Reuters R52 has such classes), so every
    estimator and the probe of a cell see it dropped (``extra`` records it).

    Examples
    --------
    >>> drop_single_row_classes(np.array([0, 0, 1, 2, 2]), np.arange(5))
    (array([0, 1, 3, 4]), [1])
    """
    y = np.asarray(labels)
    rows = np.asarray(rows)
    counts = collections.Counter(y[rows].tolist())
    single = sorted(c for c, n in counts.items() if n < 2)
    if single:
        rows = rows[np.isin(y[rows], single, invert=True)]
    return rows, single


# ---------------------------------------------------------------------------------
# datasets and encoders (cached per process)
# ---------------------------------------------------------------------------------
def suite_device(config: ExperimentConfig) -> str:
    """``options.device`` (default ``"auto"``)."""
    return str(config.options.get("device", "auto"))


def _spec_key(spec: DatasetSpec) -> str:
    return json.dumps(spec.to_dict(), sort_keys=True)


def suite_dataset(spec: DatasetSpec) -> Any:
    """The dataset ``spec`` names (loaded with seed 0; cached per process)."""
    return _dataset(_spec_key(spec))


# 32: a population suite's sources and targets (~30 specs) stay built across its cells.
@functools.lru_cache(maxsize=32)
def _dataset(spec_json: str) -> Any:
    d = json.loads(spec_json)
    spec = DatasetSpec(d["name"], d["dataset"],
                       tuple(d["classes"]) if "classes" in d else None,
                       tuple(d["relabel"]) if "relabel" in d else None,
                       _fix_transform(d.get("transform")), d.get("subsample"))
    return spec.load(seed=0)


def _fix_transform(t: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``transform_images`` takes a strength in [0, 1] (rotate: 180*s degrees); a
    config that says ``rotate`` with strength > 1 means degrees."""
    if t is None:
        return None
    t = dict(t)
    s = float(t["strength"])
    if t["kind"] == "rotate" and s > 1:
        t["strength"] = s / 180.0
    elif s > 1 or s < 0:
        raise TaskrelInputError(
            f"`transform.strength` must be in [0, 1] for {t['kind']!r}; got {s}")
    return t


def smallcnn_path(config: ExperimentConfig) -> str:
    """Train the small CNN on the reference once; cache it by reference and budget."""
    from ..features.datasets import subsample
    from ..features.encoders import train_small_cnn
    from ..features.extract import default_cache_dir

    epochs = int(config.options.get("smallcnn_epochs", 3))
    n_ref = config.options.get("max_reference", None)
    key = json.dumps([_spec_key(config.reference), epochs, n_ref], sort_keys=True)
    h = hashlib.sha256(key.encode()).hexdigest()[:16]
    path = default_cache_dir() / "smallcnn" / f"{config.reference.name}-{h}.pt"
    if not path.is_file():
        ds = suite_dataset(config.reference)
        if n_ref is not None and n_ref < len(ds.y_train):
            ds = subsample(ds, per_class=max(2, int(n_ref) // ds.n_classes), seed=0,
                           split="train")
        path.parent.mkdir(parents=True, exist_ok=True)
        train_small_cnn(ds, epochs=epochs, seed=0, out=path, device=suite_device(config),
                        progress=False)
    return str(path)


@functools.lru_cache(maxsize=4)
def _encoder_cached(name: str, opts_json: str, device: str) -> Any:
    from ..features.encoders import load_encoder

    return load_encoder(name, device=device, **json.loads(opts_json))




#: ``smallcnn[_w<width>][_e<epochs>]``: the small CNN at another width (first conv's
#: channels; default 32: conv32-conv64-fc128) or trained for that many epochs
#: (default ``options.source_epochs``).
_SMALLCNN_ARCH = re.compile(r"^smallcnn(?:_w(\d+))?(?:_e(\d+))?$")


def smallcnn_arch(base: str) -> tuple[int, int | None] | None:
    """``(width, epochs or None)`` of a small-CNN architecture name, or None.

    Examples
    --------
    >>> smallcnn_arch("smallcnn"), smallcnn_arch("smallcnn_w16_e10"), smallcnn_arch("x")
    ((32, None), (16, 10), None)
    """
    m = _SMALLCNN_ARCH.match(base)
    if m is None:
        return None
    w = int(m.group(1)) if m.group(1) else 32
    e = int(m.group(2)) if m.group(2) else None
    if w < 1 or (e is not None and e < 1):
        return None
    return w, e


def encoder_image_size(config: ExperimentConfig, name: str) -> int | None:
    """The input resolution of an image encoder of the suite: ``options.image_sizes``
    (a table encoder -> pixels; a ``<base>_on_<dataset>`` encoder inherits its base's),
    else ``finetune.image_size``, else the encoder's default."""
    sizes = config.options.get("image_sizes") or {}
    base, _ = split_source(name)
    for key in (name, base):
        if key in sizes:
            return int(sizes[key])
    return int(config.finetune["image_size"]) if "image_size" in config.finetune else None


def _source_file(config: ExperimentConfig, base: str, source: str) -> Any:
    """Where the ``base`` encoder trained on ``source`` is cached, keyed by every
    setting that changes it."""
    from ..features.extract import default_cache_dir

    key = json.dumps([base, source, encoder_image_size(config, base),
                      config.options.get("source_epochs", 3),
                      config.options.get("max_reference")], sort_keys=True)
    h = hashlib.sha256(key.encode()).hexdigest()[:16]
    return default_cache_dir() / "source_trained" / f"{base}_on_{source}-{h}.pt"


def source_recipe(config: ExperimentConfig, base: str, source: str) -> dict[str, Any] | None:
    """Everything the weights of small CNN ``base`` trained on the ``[[sources]]`` task
    ``source`` depend on (its cache key, its digest entry and its documented recipe),
    or None when ``source`` is not a config source (a packaged dataset, the legacy
    path) or ``base`` not a small CNN.

    The network trains from scratch (seed 0) on at most ``options.source_rows``
    (default ``max_reference``) training rows of the source, stratified per class,
    for the architecture's epochs (default ``options.source_epochs``, 3), with
    :func:`taskrel.encoders.train_small_cnn`'s recipe (Adam 1e-3, batch 128, 28 px).
    """
    spec = config.source(source)
    arch = smallcnn_arch(base)
    if spec is None or arch is None:
        return None
    width, epochs = arch
    return {"arch": "smallcnn", "width": width,
            "epochs": int(epochs if epochs is not None
                          else config.options.get("source_epochs", 3)),
            "source": spec.to_dict(), "rows": _source_rows(config), "image_size": 28,
            "seed": 0, "lr": 1e-3, "batch_size": 128, "split": "train"}


def _source_rows(config: ExperimentConfig) -> Any:
    n = config.options.get("source_rows", config.options.get("max_reference"))
    return None if n is None else int(n)


def _cap_train_rows(ds: Any, n: Any) -> Any:
    from ..features.datasets import subsample

    if n is not None and n < len(ds.y_train):
        ds = subsample(ds, per_class=max(2, int(n) // ds.n_classes), seed=0, split="train")
    return ds


def source_trained_path(config: ExperimentConfig, base: str, source: str) -> str:
    """Train ``base`` on ``source`` once (cached on disk) and return the file.

    ``source`` is a ``[[sources]]`` task of the config (a small CNN of any
    :func:`smallcnn_arch`, trained as :func:`source_recipe` says, on the source's
    training split only) or a packaged dataset: a small CNN trained from scratch
    for ``options.source_epochs`` epochs (default 3), or a pretrained
    EfficientNet-Lite fine-tuned end to end for that many epochs (AdamW, lr 3e-4,
    head 10x, at the encoder's resolution). At most ``options.max_reference``
    training rows of ``source`` are used; never its test split."""
    from ..features.datasets import load_dataset
    from ..features.encoders import train_small_cnn

    recipe = source_recipe(config, base, source)
    if recipe is not None:
        return _train_on_config_source(config, base, source, recipe)
    path = _source_file(config, base, source)
    if path.is_file():
        return str(path)
    epochs = int(config.options.get("source_epochs", 3))
    ds = _cap_train_rows(load_dataset(source), config.options.get("max_reference", None))
    path.parent.mkdir(parents=True, exist_ok=True)
    if base == "smallcnn":
        train_small_cnn(ds, epochs=epochs, seed=0, out=path, device=suite_device(config),
                        progress=False)
        return str(path)
    from ..features.encoders.image import save_finetuned_effnet
    from ..features.finetune import finetune

    enc = _encoder_cached(base, json.dumps({"image_size": encoder_image_size(config, base)}
                                           if base.startswith("effnet") else {}),
                          suite_device(config))
    y = np.asarray(ds.y_train)
    r = finetune(enc.torch_module(), enc.preprocess, ds.x_train, y, ds.x_test[:500],
                 np.asarray(ds.y_test)[:500], epochs=epochs, lr=3e-4, head_lr_mult=10.0,
                 seed=0, device=suite_device(config), return_module=True)
    save_finetuned_effnet(path, enc, r.module, r.head, trained_on=source,
                          class_names=ds.class_names, recipe=r.recipe)
    return str(path)


def _train_on_config_source(config: ExperimentConfig, base: str, source: str,
                            recipe: dict[str, Any]) -> str:
    from ..features.encoders import train_small_cnn
    from ..features.extract import default_cache_dir

    h = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
    path = default_cache_dir() / "source_trained" / f"{base}_on_{source}-{h}.pt"
    if path.is_file():
        return str(path)
    spec = config.source(source)
    assert spec is not None  # source_recipe checked it
    ds = _cap_train_rows(suite_dataset(spec), recipe["rows"])
    path.parent.mkdir(parents=True, exist_ok=True)
    train_small_cnn(ds, epochs=recipe["epochs"], seed=recipe["seed"], out=path,
                    image_size=recipe["image_size"], batch_size=recipe["batch_size"],
                    lr=recipe["lr"], width=recipe["width"], device=suite_device(config),
                    progress=False)
    return str(path)


def suite_encoder(config: ExperimentConfig, name: str) -> Any:
    """The encoder ``name`` with the config's options (image size, token budget):
    ``smallcnn`` is the small CNN trained on the reference, ``<base>_on_<dataset>``
    the base encoder trained on that dataset first (:func:`source_trained_path`);
    cached per process."""
    opts: dict[str, Any] = {}
    ft = config.finetune
    base, source = split_source(name)
    if source is not None:
        prefix = "smallcnn" if smallcnn_arch(base) is not None else "effnet_ft"
        name = f"{prefix}:{source_trained_path(config, base, source)}"
    elif name == "smallcnn":
        name = "smallcnn:" + smallcnn_path(config)
    elif name.startswith("effnet_lite"):
        size = encoder_image_size(config, name)
        if size is not None:
            opts["image_size"] = size
    elif name in ("minilm", "minilm_l3") and "max_tokens" in ft:
        opts["max_seq_length"] = int(ft["max_tokens"])
    return _encoder_cached(name, json.dumps(opts, sort_keys=True), suite_device(config))


# ---------------------------------------------------------------------------------
# extracted and projected tasks
# ---------------------------------------------------------------------------------
#: The split name of a source's held-out rows in a unit: its test split, at most
#: ``options.max_reference`` rows, stratified (the own-source reference).
HELDOUT = "heldout"


def reference_unit(config: ExperimentConfig, cell: Cell) -> tuple[str, str, str]:
    """The reference unit a cell reads: the config's reference (train+test), or, when
    ``cell.reference`` names a ``[[sources]]`` task (own-source reference,
    :func:`taskrel.experiments.suite.cell_reference`), that source's held-out split."""
    if cell.reference != config.reference.name and config.source(cell.reference):
        return (cell.encoder, cell.reference, HELDOUT)
    return (cell.encoder, config.reference.name, "both")


def unit_task(config: ExperimentConfig, unit: tuple[str, str, str]) -> Any:
    """The extracted task of an ``(encoder, task name, split)`` unit: the reference's
    train+test (split ``"both"``, ``max_reference`` rows), a target's train or test
    split (``max_target`` / ``max_test`` rows), or a source's held-out split
    (:data:`HELDOUT`: its test split, never a row the encoder trained on, at most
    ``max_reference`` rows picked by the stratified rule)."""
    from ..features.extract import extract_task

    enc, name, split = unit
    if split == HELDOUT:
        spec = config.source(name)
        if spec is None:
            raise TaskrelInputError(
                f"`unit`: {name!r} is not a source of the config; sources: "
                f"{[s.name for s in config.sources]}")
        return extract_task(suite_encoder(config, enc), suite_dataset(spec), split="test",
                            limit=config.options.get("max_reference", None),
                            progress=False, device=suite_device(config),
                            limit_rule="stratified")
    if split == "both":
        spec, limit = config.reference, config.options.get("max_reference", None)
    else:
        spec = config.target(name)
        # The reference task's own truths train on as many rows as its head saw.
        key = "max_reference" if name == REFERENCE_TARGET and split == "train" else \
            "max_target" if split == "train" else "max_test"
        limit = config.options.get(key, None)
    # The legacy row cap, by name: the committed stores were computed on these rows.
    return extract_task(suite_encoder(config, enc), suite_dataset(spec), split=split,
                        limit=limit, progress=False, device=suite_device(config),
                        limit_rule="permutation")


# Projected tasks of recent (encoder, target) pairs, so that the hundreds of cells of one
# pair load the cached features and fit the reference PCA once per process, not per cell
# (that was 1.7 of a LogME cell's 1.8 s). Keyed by everything the tasks depend on.
_TASKS_CACHE: collections.OrderedDict[str, tuple[Any, Any, Any]] = collections.OrderedDict()
_TASKS_CACHE_SIZE = 6


def _reference_key(config: ExperimentConfig, encoder: str,
                   unit: tuple[str, str, str] | None = None) -> str:
    """Everything the projected reference features depend on (the config's reference,
    or the reference ``unit`` a cell reads)."""
    opts = {k: config.options.get(k) for k in
            ("max_reference", "feature_dim", "device", "smallcnn_epochs", "source_epochs",
             "source_rows")}
    opts["image_size"] = encoder_image_size(config, encoder)
    ft = {k: config.finetune.get(k) for k in ("image_size", "max_tokens")}
    ref = config.reference.to_dict()
    if unit is not None and unit[2] == HELDOUT:
        src = config.source(unit[1])
        ref = {"heldout": src.to_dict() if src is not None else unit[1]}
    return json.dumps([encoder, ref, opts, ft], sort_keys=True)


def _tasks_key(config: ExperimentConfig, cell: Cell) -> str:
    """:func:`_reference_key` plus what the target's tasks depend on."""
    return json.dumps([_reference_key(config, cell.encoder, reference_unit(config, cell)),
                       config.target(cell.target).to_dict(),
                       config.options.get("max_target"), config.options.get("max_test")],
                      sort_keys=True)


def cell_tasks(config: ExperimentConfig, cell: Cell) -> tuple[Any, Any, Any]:
    """(reference train+test, target train, target test) tasks of a cell, projected on
    the reference's top ``feature_dim`` principal directions when that option is set."""
    key = _tasks_key(config, cell)
    hit = _TASKS_CACHE.get(key)
    if hit is not None:
        _TASKS_CACHE.move_to_end(key)
        return hit
    ref_unit = reference_unit(config, cell)
    ref, tgt, test = (unit_task(config, u) for u in (
        ref_unit, (cell.encoder, cell.target, "train"), (cell.encoder, cell.target, "test")))
    k = config.options.get("feature_dim", None)
    if k is not None and int(k) < ref.features.shape[1]:
        mean, comps = _reference_pca(config, cell.encoder, ref.features, int(k), ref_unit)
        ref, tgt, test = (_project(t, mean, comps) for t in (ref, tgt, test))
    _TASKS_CACHE[key] = (ref, tgt, test)
    while len(_TASKS_CACHE) > _TASKS_CACHE_SIZE:
        _TASKS_CACHE.popitem(last=False)
    return ref, tgt, test


_PCA_CACHE: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def _reference_pca(config: ExperimentConfig, encoder: str, X: Any, k: int,
                   unit: tuple[str, str, str] | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`pca` of the reference features, once per :func:`_reference_key`."""
    key = _reference_key(config, encoder, unit)
    if key not in _PCA_CACHE:
        if len(_PCA_CACHE) >= 8:
            _PCA_CACHE.pop(next(iter(_PCA_CACHE)))
        _PCA_CACHE[key] = pca(X, k)
    return _PCA_CACHE[key]


#: Clear functions of caches kept by other modules that hold values computed from this
#: module's inputs (e.g. the ablation's reference PCAs); they register themselves.
CACHE_CLEARERS: list[Any] = []


def clear_caches() -> None:
    """Forget every per-process cache of this module (datasets, encoders, projected
    tasks, reference PCAs): the next cells recompute them from the disk cache.

    Values computed under other thread settings (BLAS sums in another order) then
    cannot leak into a run that pins them.
    """
    _dataset.cache_clear()
    _encoder_cached.cache_clear()
    _TASKS_CACHE.clear()
    _PCA_CACHE.clear()
    for clear in CACHE_CLEARERS:
        clear()


def pca(X: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and top-``k`` principal directions (d x k) of the *reference* features."""
    X = np.asarray(X, dtype=np.float64)
    mean = X.mean(0)
    _, _, vt = np.linalg.svd(X - mean, full_matrices=False)
    return mean, vt[:k].T


def _project(task: Any, mean: np.ndarray, comps: np.ndarray) -> Any:
    f = (np.asarray(task.features, np.float64) - mean) @ comps
    tf = None if task.test_features is None else \
        (np.asarray(task.test_features, np.float64) - mean) @ comps
    return replace(task, features=f, test_features=tf)


# ---------------------------------------------------------------------------------
# raw inputs (for fine-tuning)
# ---------------------------------------------------------------------------------
def raw_rows(ds: Any, max_train: int | None, max_test: int | None
             ) -> tuple[Any, np.ndarray, Any, np.ndarray]:
    """``(x_train, y_train, x_test, y_test)`` of a dataset, capped to the same rows
    as its extracted features (the legacy permutation rule,
    :func:`taskrel._internal.sampling.permutation_rows`, as :func:`unit_task`).
    Inputs stay arrays (images) or lists (texts)."""
    from .._internal.sampling import permutation_rows

    tr = permutation_rows(len(ds.y_train), max_train)
    te = permutation_rows(len(ds.y_test), max_test)
    return (_take(ds.x_train, tr), np.asarray(ds.y_train)[tr], _take(ds.x_test, te),
            np.asarray(ds.y_test)[te])


def _take(x: Any, idx: Any) -> Any:
    return x[idx] if isinstance(x, np.ndarray) else [x[i] for i in idx]
