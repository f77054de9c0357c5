"""Reproduce the paper's evidence: run a suite's grid, then every analysis, into a report.

``taskrel reproduce --suite vision|text|all [--quick]`` loads ``experiments/<suite>.toml``,
computes every cell of its grid with :func:`cell_fn` through
:func:`taskrel.experiments.run_grid` (resumable: cells already in the SQLite store are
skipped), runs the analyses of :mod:`taskrel.experiments.analysis` and writes
``<out>/<suite>/report.md`` with CSV/JSON/PNG files beside it.

A cell is computed like this (see :func:`cell_fn`):

1. the reference and target tasks are built from the config's ``DatasetSpec`` and
   encoded with :func:`taskrel.features.extract.extract_task` (features cached on disk);
   ``options.max_reference`` / ``max_target`` / ``max_test`` cap the rows;
2. the target's *training* rows are subsampled to ``cell.fraction`` (seeded by
   ``cell.seed``, stratified, at least 2 per class);
3. estimators (``taskrel.scores`` names, plus ``task_relatedness_unlabeled``) see only
   those rows and the reference; ground truths (``linear_probe``, ``finetune``) train on
   them and are measured on the target test split, which no estimator sees.
"""

from __future__ import annotations

import collections
import functools
import json
import math
import os
import platform
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import TaskrelInputError
from .store import Cell
from .suite import DatasetSpec, ExperimentConfig, expand_grid, load_config

__all__ = ["cell_fn", "make_cell_fn", "fraction_rows", "drop_single_row_classes",
           "feature_units", "prepare_features", "suite_config_path",
           "run_suite", "SUITES", "UNLABELED", "TRUTHS"]

SUITES = ("vision", "text")
#: Task-relatedness without target labels (pseudo-labels); not a registered score.
UNLABELED = "task_relatedness_unlabeled"
TRUTHS = ("linear_probe", "finetune")
#: Old estimator names in configs -> names registered in taskrel.scores.
_ALIASES = {"pactran": "pactran_gaussian"}
_ENV_CONFIG = "TASKREL_REPRODUCE_CONFIG"
_ENV_QUICK = "TASKREL_REPRODUCE_QUICK"


def suite_config_path(suite: str) -> Path:
    """``experiments/<suite>.toml`` of this source tree (or ``$TASKREL_EXPERIMENTS``)."""
    if suite not in SUITES:
        raise TaskrelInputError(f"`suite` must be one of {list(SUITES)}; got {suite!r}")
    root = os.environ.get("TASKREL_EXPERIMENTS")
    base = Path(root) if root else Path(__file__).resolve().parents[3] / "experiments"
    p = base / f"{suite}.toml"
    if not p.is_file():
        raise TaskrelInputError(
            f"suite config {str(p)!r} not found; set TASKREL_EXPERIMENTS to the folder "
            "holding vision.toml and text.toml (they ship in the source tree)")
    return p


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
# tasks and encoders (cached per process)
# ---------------------------------------------------------------------------------
def _opt(config: ExperimentConfig, key: str, default: Any) -> Any:
    return config.options.get(key, default)


def _device(config: ExperimentConfig) -> str:
    return str(_opt(config, "device", "auto"))


def _spec_key(spec: DatasetSpec) -> str:
    return json.dumps(spec.to_dict(), sort_keys=True)


@functools.lru_cache(maxsize=8)
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


def _smallcnn_path(config: ExperimentConfig) -> str:
    """Train the small CNN on the reference once; cache it by reference and budget."""
    from ..features.datasets import subsample
    from ..features.encoders import train_small_cnn
    from ..features.extract import default_cache_dir

    epochs = int(_opt(config, "smallcnn_epochs", 3))
    n_ref = _opt(config, "max_reference", None)
    key = json.dumps([_spec_key(config.reference), epochs, n_ref], sort_keys=True)
    import hashlib

    h = hashlib.sha256(key.encode()).hexdigest()[:16]
    path = default_cache_dir() / "smallcnn" / f"{config.reference.name}-{h}.pt"
    if not path.is_file():
        ds = _dataset(_spec_key(config.reference))
        if n_ref is not None and n_ref < len(ds.y_train):
            ds = subsample(ds, per_class=max(2, int(n_ref) // ds.n_classes), seed=0,
                           split="train")
        path.parent.mkdir(parents=True, exist_ok=True)
        train_small_cnn(ds, epochs=epochs, seed=0, out=path, device=_device(config),
                        progress=False)
    return str(path)


@functools.lru_cache(maxsize=4)
def _encoder_cached(name: str, opts_json: str, device: str) -> Any:
    from ..features.encoders import load_encoder

    return load_encoder(name, device=device, **json.loads(opts_json))


def _encoder(config: ExperimentConfig, name: str) -> Any:
    opts: dict[str, Any] = {}
    ft = config.finetune
    if name == "smallcnn":
        name = "smallcnn:" + _smallcnn_path(config)
    elif name.startswith("effnet_lite"):
        if "image_size" in ft:
            opts["image_size"] = int(ft["image_size"])
    elif name in ("minilm",) and "max_tokens" in ft:
        opts["max_seq_length"] = int(ft["max_tokens"])
    return _encoder_cached(name, json.dumps(opts, sort_keys=True), _device(config))


def _task(config: ExperimentConfig, encoder: str, spec: DatasetSpec, split: str,
          limit: int | None) -> Any:
    from ..features.extract import extract_task

    enc = _encoder(config, encoder)
    ds = _dataset(_spec_key(spec))
    return extract_task(enc, ds, split=split, limit=limit, progress=False,
                        device=_device(config))


# Projected tasks of recent (encoder, target) pairs, so that the hundreds of cells of one
# pair load the cached features and fit the reference PCA once per process, not per cell
# (that was 1.7 of a LogME cell's 1.8 s). Keyed by everything the tasks depend on.
_TASKS_CACHE: collections.OrderedDict[str, tuple[Any, Any, Any]] = collections.OrderedDict()
_TASKS_CACHE_SIZE = 6


def _reference_key(config: ExperimentConfig, encoder: str) -> str:
    """Everything the projected reference features depend on."""
    opts = {k: config.options.get(k) for k in
            ("max_reference", "feature_dim", "device", "smallcnn_epochs")}
    ft = {k: config.finetune.get(k) for k in ("image_size", "max_tokens")}
    return json.dumps([encoder, config.reference.to_dict(), opts, ft], sort_keys=True)


def _tasks_key(config: ExperimentConfig, cell: Cell) -> str:
    """:func:`_reference_key` plus what the target's tasks depend on."""
    return json.dumps([_reference_key(config, cell.encoder),
                       config.target(cell.target).to_dict(),
                       config.options.get("max_target"), config.options.get("max_test")],
                      sort_keys=True)


def _tasks(config: ExperimentConfig, cell: Cell) -> tuple[Any, Any, Any]:
    """(reference train+test, target train, target test) tasks of a cell, projected on
    the reference's top ``feature_dim`` principal directions when that option is set."""
    key = _tasks_key(config, cell)
    hit = _TASKS_CACHE.get(key)
    if hit is not None:
        _TASKS_CACHE.move_to_end(key)
        return hit
    ref, tgt, test = (_unit_task(config, u) for u in (
        (cell.encoder, config.reference.name, "both"), (cell.encoder, cell.target, "train"),
        (cell.encoder, cell.target, "test")))
    k = _opt(config, "feature_dim", None)
    if k is not None and int(k) < ref.features.shape[1]:
        mean, comps = _reference_pca(config, cell.encoder, ref.features, int(k))
        ref, tgt, test = (_project(t, mean, comps) for t in (ref, tgt, test))
    _TASKS_CACHE[key] = (ref, tgt, test)
    while len(_TASKS_CACHE) > _TASKS_CACHE_SIZE:
        _TASKS_CACHE.popitem(last=False)
    return ref, tgt, test


_PCA_CACHE: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def _reference_pca(config: ExperimentConfig, encoder: str, X: Any, k: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_pca` of the reference features, once per :func:`_reference_key`."""
    key = _reference_key(config, encoder)
    if key not in _PCA_CACHE:
        if len(_PCA_CACHE) >= 8:
            _PCA_CACHE.pop(next(iter(_PCA_CACHE)))
        _PCA_CACHE[key] = _pca(X, k)
    return _PCA_CACHE[key]


def _pca(X: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and top-``k`` principal directions of the *reference* training features."""
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
# the cell function
# ---------------------------------------------------------------------------------
def _env_config() -> ExperimentConfig:
    path = os.environ.get(_ENV_CONFIG)
    if not path:
        raise TaskrelInputError(
            "`config`: cell_fn needs a config (make_cell_fn(config)) or "
            f"${_ENV_CONFIG} naming a TOML file")
    return load_config(path, quick=os.environ.get(_ENV_QUICK, "") == "1")


def make_cell_fn(config: ExperimentConfig) -> functools.partial[Any]:
    """``cell_fn`` bound to ``config`` (a picklable partial, for Ray workers)."""
    if not isinstance(config, ExperimentConfig):
        raise TaskrelInputError(
            f"`config` must be an ExperimentConfig; got {type(config).__name__}")
    return functools.partial(cell_fn, config=config)


def _rel_kwargs(config: ExperimentConfig, ref: Any, seed: int) -> dict[str, Any]:
    kw: dict[str, Any] = {"seed": seed, "device": _device(config), "progress": False}
    if ref.test_features is not None:
        kw.update(reference_test_features=ref.test_features,
                  reference_test_labels=ref.test_labels)
    for k in ("recipe", "tau", "b_mode"):
        if k in config.options:
            kw[k] = config.options[k]
    return kw


def reference_tau(config: ExperimentConfig, ref: Any) -> float:
    """The tau task-relatedness uses on this reference: ``options.tau`` or the auto
    rule (:func:`taskrel.relatedness.auto_tau` on the standardized reference)."""
    from ..relatedness import resolve_tau

    return float(resolve_tau(config.options.get("tau", "auto"), ref.features, ref.labels,
                             name="options.tau")[0])


def _finetune_cell(config: ExperimentConfig, cell: Cell) -> dict[str, Any]:
    from .._internal.sampling import limited_rows
    from ..features.finetune import finetune

    enc = _encoder(config, cell.encoder)
    ds = _dataset(_spec_key(config.target(cell.target)))
    tr = limited_rows(len(ds.y_train), _opt(config, "max_target", None))
    te = limited_rows(len(ds.y_test), _opt(config, "max_test", None))
    xtr = ds.x_train[tr] if isinstance(ds.x_train, np.ndarray) else [ds.x_train[i] for i in tr]
    xte = ds.x_test[te] if isinstance(ds.x_test, np.ndarray) else [ds.x_test[i] for i in te]
    ytr, yte = np.asarray(ds.y_train)[tr], np.asarray(ds.y_test)[te]
    sub = fraction_rows(ytr, cell.fraction, cell.seed)
    xtr = xtr[sub] if isinstance(xtr, np.ndarray) else [xtr[i] for i in sub]
    ytr = ytr[sub]
    kw = {k: v for k, v in config.finetune.items() if k not in ("image_size", "max_tokens")}
    if ds.modality == "text":
        module, pre = _text_module(enc, int(config.finetune.get("max_tokens", 128)))
    else:
        module, pre = enc.torch_module(), enc.preprocess
    r = finetune(module, pre, xtr, ytr, xte, yte, seed=cell.seed, device=_device(config),
                 **kw)
    return {"value": r.test_accuracy, "extra": r.to_dict()}


def _text_module(enc: Any, max_tokens: int) -> tuple[Any, Any]:
    """A sentence-transformers encoder as (module, preprocess) for ``finetune``: the
    preprocess stacks token ids and attention mask into one (B, 2, L) tensor."""
    import torch

    st = getattr(enc, "_model", None)
    if st is None or not hasattr(st, "tokenize"):
        raise TaskrelInputError(f"encoder {enc.name!r} is not trainable (no torch module)")

    class _ST(torch.nn.Module):
        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.model({"input_ids": x[:, 0], "attention_mask": x[:, 1]})
            return out["sentence_embedding"]

    tok = st.tokenizer

    def pre(texts: Sequence[str]) -> torch.Tensor:
        b = tok(list(texts), padding="max_length", truncation=True, max_length=max_tokens,
                return_tensors="pt")
        return torch.stack([b["input_ids"], b["attention_mask"]], dim=1)

    return _ST(st), pre


def cell_fn(cell: Cell, config: ExperimentConfig | None = None) -> dict[str, Any]:
    """Compute one cell of a reproduction grid.

    Parameters
    ----------
    cell : taskrel.experiments.store.Cell
        ``estimator`` is a ``taskrel.scores`` name, ``task_relatedness_unlabeled``,
        ``linear_probe`` or ``finetune``.
    config : ExperimentConfig, optional
        The suite; default: the TOML file named by ``$TASKREL_REPRODUCE_CONFIG``
        (``$TASKREL_REPRODUCE_QUICK=1`` for its quick section).

    Returns
    -------
    dict
        ``{"value": float or None, "extra": {...}}``. ``value`` is None (with
        ``extra["not_applicable"]``) when the estimator cannot run on this encoder,
        e.g. LEEP on an encoder without a classification head.
    """
    from ..io import Task

    if not isinstance(cell, Cell):
        raise TaskrelInputError(f"`cell` must be a taskrel.experiments.store.Cell; got {type(cell).__name__}")
    config = _env_config() if config is None else config
    est = _ALIASES.get(cell.estimator, cell.estimator)
    if est == "finetune":
        return _finetune_cell(config, cell)
    ref, tgt, test = _tasks(config, cell)
    ytr = np.asarray(tgt.labels)
    sub = fraction_rows(ytr, cell.fraction, cell.seed)
    sub, single = drop_single_row_classes(ytr, sub)
    Xf, yf = tgt.features[sub], ytr[sub]
    pf = tgt.source_probs[sub] if tgt.source_probs is not None else None
    extra: dict[str, Any] = {"n_target": int(len(sub)), "n_reference": int(len(ref.labels))}
    if single:
        extra["dropped_single_row_classes"] = single
    if est == "linear_probe":
        tau = reference_tau(config, ref)
        out = _probe(Xf, yf, test, tau, cell.seed, _device(config))
        out["extra"].update(extra)
        return out
    if est in ("task_relatedness", UNLABELED):
        from ..relatedness.engine import task_relatedness

        kw = _rel_kwargs(config, ref, cell.seed)
        k_t, k_r = int(np.unique(yf).size), int(np.unique(np.asarray(ref.labels)).size)
        if est == UNLABELED:
            if k_t > k_r:
                return {"value": None, "extra": {**extra, "not_applicable": (
                    f"pseudo-labels from the reference classifier give at most {k_r} "
                    f"classes; the target has {k_t}")}}
            kw["n_target_classes"] = k_t
        if k_t > k_r and "b_mode" not in kw:
            kw["b_mode"] = "learned"  # the sparse label map needs K_T <= K_R
        try:
            r = task_relatedness(ref.features, ref.labels, Xf,
                                 yf if est == "task_relatedness" else None, **kw)
        except TaskrelInputError as exc:
            # A property of the cell's rows (e.g. pseudo-labels of 15 unlabeled rows
            # that fall into one class): recorded, not retried.
            return {"value": None, "extra": {**extra, "not_applicable": str(exc)[:300]}}
        extra.update(_jsonable(r.to_dict()))
        return {"value": float(r.bound), "extra": extra}
    from ..scores import compute_score, get_score

    spec = get_score(est)
    if "source_probs" in spec.inputs or "source_labels" in spec.inputs:
        if pf is None:
            return {"value": None,
                    "extra": {**extra, "not_applicable": "encoder has no source head"}}
    task = Task(features=Xf, labels=yf, source_probs=pf)
    source = Task(features=ref.features, labels=ref.labels) \
        if "source_task" in spec.inputs else None
    try:
        # Torch estimators follow options.device ("auto": the GPU when there is one).
        dev = {"device": _device(config)} if spec.gpu else {}
        v = compute_score(est, task, source=source, **dev)
    except TaskrelInputError as exc:
        # A property of the cell's shapes (e.g. H-score needs n > d): recorded, not retried.
        return {"value": None, "extra": {**extra, "not_applicable": str(exc)[:300]}}
    return {"value": float(v), "extra": extra}


def _probe(Xf: Any, yf: Any, test: Any, tau: float, seed: int, device: str) -> dict[str, Any]:
    from ..features.finetune import linear_probe_cell

    return linear_probe_cell(Xf, yf, test.features, test.labels, tau=tau, seed=seed,
                             device=device)


def _jsonable(d: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, (np.floating, np.integer)):
            v = v.item()
        elif isinstance(v, np.ndarray):
            v = v.tolist() if v.size <= 4096 else None
        if isinstance(v, float) and not math.isfinite(v):
            v = None
        out[k] = v
    return out


# ---------------------------------------------------------------------------------
# the suite runner and the report
# ---------------------------------------------------------------------------------
def normalize_config(config: ExperimentConfig) -> ExperimentConfig:
    """Map old estimator names to registered ones and check every name."""
    from ..scores import list_scores

    known = set(list_scores()) | {UNLABELED}
    ests = tuple(_ALIASES.get(e, e) for e in config.estimators)
    bad = [e for e in ests if e not in known]
    if bad:
        raise TaskrelInputError(
            f"`estimators` must be names from taskrel.scores.list_scores() or {UNLABELED!r}; "
            f"got {bad}")
    bad = [e for e in config.truth_estimators if e not in TRUTHS]
    if bad:
        raise TaskrelInputError(f"`ground_truth.estimators` must be among {list(TRUTHS)}; "
                                f"got {bad}")
    return replace(config, estimators=ests)


def feature_units(config: ExperimentConfig) -> list[tuple[str, str, str]]:
    """Every ``(encoder, task name, split)`` feature set the grid reads."""
    units = []
    for enc in config.encoders:
        units.append((enc, config.reference.name, "both"))
        for t in config.targets:
            units += [(enc, t.name, "train"), (enc, t.name, "test")]
    return units


def _unit_task(config: ExperimentConfig, unit: tuple[str, str, str]) -> Any:
    """The extracted task of a :func:`feature_units` unit: the reference's train+test
    (split ``"both"``, ``max_reference`` rows) or a target's train or test split."""
    enc, name, split = unit
    if split == "both":
        spec, limit = config.reference, _opt(config, "max_reference", None)
    else:
        spec = config.target(name)
        limit = _opt(config, "max_target" if split == "train" else "max_test", None)
    return _task(config, enc, spec, split, limit)


def _prepare_unit(unit: tuple[str, str, str], config: ExperimentConfig) -> dict[str, Any]:
    t0 = time.perf_counter()
    task = _unit_task(config, unit)
    return {"rows": int(len(task.labels)), "dim": int(task.features.shape[1]),
            "seconds": time.perf_counter() - t0}


def prepare_features(config: ExperimentConfig, executor: Any = "local", *,
                     progress: bool = True) -> dict[str, Any]:
    """Extract and cache every feature set of the grid before its cells run.

    One task per ``(encoder, task, split)`` (:func:`feature_units`). On the Ray
    executor each task reserves one GPU when the cluster has GPUs and the config's
    ``device`` is not ``"cpu"``, so extraction goes to GPU workers while the cells
    (small matrices) stay on CPU workers. The small CNN is trained once, here, before
    any worker needs it.

    Returns ``{"units": n, "seconds": s, "gpus_per_task": g, "failed": [...]}``;
    a failed unit is extracted again by the cell that needs it.
    """
    from tqdm.auto import tqdm

    from .executors import get_executor

    ex = get_executor(executor) if isinstance(executor, str) else executor
    if "smallcnn" in config.encoders:
        _smallcnn_path(config)
    gpus = 0.0
    if hasattr(ex, "cluster_gpus") and _device(config) != "cpu":
        if ex.cluster_gpus() > 0:
            gpus = 1.0
            ex = ex.with_gpus(gpus)
    units = feature_units(config)
    t0 = time.perf_counter()
    failed = []
    fn = functools.partial(_prepare_unit, config=config)
    with tqdm(total=len(units), desc="features", unit="set", disable=not progress) as bar:
        for unit, res in ex.imap_unordered(fn, units):
            if isinstance(res, BaseException):
                failed.append((unit, f"{type(res).__name__}: {res}"[:300]))
            bar.update(1)
    return {"units": len(units), "seconds": time.perf_counter() - t0,
            "gpus_per_task": gpus, "failed": failed}


def run_suite(config: ExperimentConfig, *, db: str | os.PathLike[str],
              out: str | os.PathLike[str], executor: str = "local",
              progress: bool = True, threads: int | None = 1,
              executor_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Extract the features (:func:`prepare_features`), run ``config``'s grid into
    ``db`` (resumable), run the analyses, write the report.

    Returns the report's summary (also written as ``summary.json``).
    """
    from .executors import get_executor
    from .report import write_report
    from .store import ResultsStore
    from .suite import run_grid

    config = normalize_config(config)
    t0 = time.perf_counter()
    limits = _limit_threads(threads)
    ex = get_executor(executor, **dict(executor_options or {}))
    try:
        Path(db).parent.mkdir(parents=True, exist_ok=True)
        with ResultsStore(db) as store:
            if set(expand_grid(config)) - store.keys():
                prep = prepare_features(config, ex, progress=progress)
                for unit, msg in prep["failed"]:
                    warnings.warn(f"feature extraction failed for {unit}: {msg}",
                                  stacklevel=2)
            grid = run_grid(config, make_cell_fn(config), store, executor=ex,
                            progress=progress)
            rows = store.query()
    finally:
        if limits is not None:
            limits.unregister()
        if hasattr(ex, "shutdown"):
            ex.shutdown()
    seconds = time.perf_counter() - t0
    return write_report(config, rows, Path(out), grid=grid, seconds=seconds,
                        versions=_versions())


def _limit_threads(threads: int | None) -> Any:
    if not threads:
        return None
    import torch

    torch.set_num_threads(int(threads))
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn depends on it
        return None
    return threadpool_limits(int(threads))


def _versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"python": platform.python_version()}
    for d in ("taskrel", "numpy", "scipy", "torch", "scikit-learn", "POT", "matplotlib",
              "efficientnet-lite-pytorch", "sentence-transformers"):
        try:
            out[d] = version(d)
        except PackageNotFoundError:
            out[d] = None
    return out


# ---------------------------------------------------------------------------------
# reference fine-tuning (paper Fig. 4b)
# ---------------------------------------------------------------------------------
def _encode_module(module: Any, preprocess: Any, x: Any, batch_size: int = 256) -> np.ndarray:
    import torch

    out = []
    module.eval()
    with torch.no_grad():
        for s in range(0, len(x), batch_size):
            f = module(preprocess(x[s:s + batch_size]))
            out.append(f.flatten(1).numpy().astype(np.float64))
    return np.concatenate(out)


def reference_finetune(config: ExperimentConfig, encoder: str, *, seed: int = 0
                       ) -> list[dict[str, Any]]:
    """Paper Fig. 4b: bound and transferability per target, before and after
    fine-tuning ``encoder`` end to end on the reference task.

    The encoder is fine-tuned on the reference's training rows (``max_reference``)
    with the config's ``[finetune]`` recipe; both encoders then encode the reference
    and every target (same rows as the grid, same ``feature_dim`` projection fitted
    on each encoder's own reference features), and task-relatedness (all target
    training rows) and the linear probe (same tau) are computed for each.

    Returns
    -------
    list of dict
        One row per (target, stage) with ``stage`` in {"pretrained", "reference-finetuned"}.
    """
    from .._internal.sampling import limited_rows
    from ..features.finetune import finetune, linear_probe_cell
    from ..relatedness.engine import task_relatedness

    enc = _encoder(config, encoder)
    ref_ds = _dataset(_spec_key(config.reference))
    if ref_ds.modality != "image":
        raise TaskrelInputError(
            f"`encoder`: reference fine-tuning is built for image encoders; got {encoder!r}")

    def split(ds: Any, cap_tr: Any, cap_te: Any) -> tuple[Any, Any, Any, Any]:
        tr, te = limited_rows(len(ds.y_train), cap_tr), limited_rows(len(ds.y_test), cap_te)
        return (ds.x_train[tr], np.asarray(ds.y_train)[tr], ds.x_test[te],
                np.asarray(ds.y_test)[te])

    cap_r = _opt(config, "max_reference", None)
    xr, yr, xr_te, yr_te = split(ref_ds, cap_r, cap_r)
    kw = {k: v for k, v in config.finetune.items() if k not in ("image_size", "max_tokens")}
    ft = finetune(enc.torch_module(), enc.preprocess, xr, yr, xr_te, yr_te, seed=seed,
                  device="cpu", return_module=True, **kw)
    modules = {"pretrained": enc.torch_module(), "reference-finetuned": ft.module}
    k = _opt(config, "feature_dim", None)
    rows = []
    for stage, mod in modules.items():
        Fr, Fr_te = (_encode_module(mod, enc.preprocess, x) for x in (xr, xr_te))
        if k is not None and int(k) < Fr.shape[1]:
            mean, comps = _pca(Fr, int(k))
        else:
            mean, comps = np.zeros(Fr.shape[1]), np.eye(Fr.shape[1])
        Zr, Zr_te = (Fr - mean) @ comps, (Fr_te - mean) @ comps
        from ..relatedness import resolve_tau

        tau_v = float(resolve_tau(config.options.get("tau", "auto"), Zr, yr,
                                  name="options.tau")[0])
        for spec in config.targets:
            ds = _dataset(_spec_key(spec))
            xt, yt, xt_te, yt_te = split(ds, _opt(config, "max_target", None),
                                         _opt(config, "max_test", None))
            Zt = (_encode_module(mod, enc.preprocess, xt) - mean) @ comps
            Zt_te = (_encode_module(mod, enc.preprocess, xt_te) - mean) @ comps
            r = task_relatedness(Zr, yr, Zt, yt, reference_test_features=Zr_te,
                                 reference_test_labels=yr_te, tau=tau_v, seed=seed,
                                 device="cpu")
            p = linear_probe_cell(Zt, yt, Zt_te, yt_te, tau=tau_v, seed=seed, device="cpu")
            rows.append({"encoder": encoder, "stage": stage, "target": spec.name,
                         "bound": float(r.bound),
                         "reweighted_reference_loss": float(r.reweighted_reference_loss),
                         "label_mismatch": float(r.label_mismatch),
                         "lipschitz_x_w1": float(r.lipschitz * r.distribution_mismatch),
                         "transfer_loss": float(p["extra"]["loss"]),
                         "probe_accuracy": float(p["value"]),
                         "reference_finetune_accuracy": float(ft.test_accuracy)})
    return rows
