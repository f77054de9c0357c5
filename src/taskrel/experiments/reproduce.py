"""Reproduce the paper's evidence: run a suite's grid, then every analysis, into a report.

``taskrel reproduce --suite vision|text|population|all [--quick]`` loads ``experiments/<suite>.toml``,
extracts every feature set of its grid (:func:`prepare_features`), computes every cell
with :func:`cell_fn` through :func:`taskrel.experiments.run_grid` (resumable: cells
already in the SQLite store are skipped), runs the reference fine-tuning of paper
Fig. 4b when the config asks for it (:mod:`taskrel.experiments.reference_finetune`),
and writes ``<out>/<suite>/report.md`` with CSV/JSON/PNG files beside it
(:func:`taskrel.experiments.report.write_report`).

:func:`cell_fn` looks the cell's estimator up in :mod:`taskrel.experiments.estimators`
(which says how each estimator's cell is computed and which rows it sees);
:mod:`taskrel.experiments.inputs` holds the datasets, encoders and extracted tasks
the cells read.
"""

from __future__ import annotations

import functools
import os
import time
import warnings
from collections import Counter
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from .._internal.versions import package_versions
from ..exceptions import TaskrelInputError
from .estimators import ALIASES, get_estimator
from .estimators import TRUTHS as TRUTHS
from .estimators import UNLABELED as UNLABELED
from .estimators import reference_tau as reference_tau
from .inputs import drop_single_row_classes as drop_single_row_classes
from .inputs import fraction_rows as fraction_rows
from .inputs import (
    smallcnn_path,
    source_trained_path,
    split_source,
    suite_device,
    unit_task,
)
from .store import Cell
from .suite import REFERENCE_TARGET, ExperimentConfig, expand_grid, load_config
from .views import suite_classes

__all__ = ["cell_fn", "make_cell_fn", "fraction_rows", "drop_single_row_classes",
           "feature_units", "prepare_features", "suite_config_path", "normalize_config",
           "reference_tau", "run_suite", "check_config", "SUITES", "UNLABELED", "TRUTHS"]

SUITES = ("vision", "text", "population")
_ENV_CONFIG = "TASKREL_REPRODUCE_CONFIG"
_ENV_QUICK = "TASKREL_REPRODUCE_QUICK"
#: Distributions whose versions the report quotes.
_REPORT_PACKAGES = ("taskrel", "numpy", "scipy", "torch", "scikit-learn", "POT",
                    "matplotlib", "efficientnet-lite-pytorch", "sentence-transformers")


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


def normalize_config(config: ExperimentConfig) -> ExperimentConfig:
    """Map old estimator names to registered ones and check every name."""
    from ..scores import list_scores
    from .estimators import FIXED, UNLABELED_FIXED

    known = set(list_scores()) | {UNLABELED, FIXED, UNLABELED_FIXED}
    ests = tuple(ALIASES.get(e, e) for e in config.estimators)
    bad = [e for e in ests if e not in known]
    if bad:
        raise TaskrelInputError(
            f"`estimators` must be names from taskrel.scores.list_scores(), {UNLABELED!r}, "
            f"{FIXED!r} or {UNLABELED_FIXED!r}; got {bad}")
    bad = [e for e in config.truth_estimators if e not in TRUTHS]
    if bad:
        raise TaskrelInputError(f"`ground_truth.estimators` must be among {list(TRUTHS)}; "
                                f"got {bad}")
    return replace(config, estimators=ests)


_POSITIVE_INT_OPTIONS = ("max_reference", "max_target", "max_test", "feature_dim",
                         "smallcnn_epochs", "source_epochs", "source_rows")
_REFERENCE_MODES = ("fixed", "own_source")


def _check_encoder_name(name: str, sources: tuple[str, ...] = ()) -> None:
    from ..features.datasets import list_datasets
    from ..features.encoders import list_encoders
    from .inputs import smallcnn_arch, split_source

    known = list_encoders()
    base, source = split_source(name)
    if source is not None and source in sources:
        if smallcnn_arch(base) is None:
            raise TaskrelInputError(
                f"config key `encoders`: {name!r} trains on the config source {source!r}; "
                "its base must be smallcnn[_w<width>][_e<epochs>]")
        return
    if source is not None:
        trainable = base == "smallcnn" or base in ("effnet_lite0", "effnet_lite1",
                                                   "effnet_lite2")
        if not trainable or source not in list_datasets():
            raise TaskrelInputError(
                f"config key `encoders`: {name!r} must be <base>_on_<dataset> with base "
                f"smallcnn or effnet_lite0/1/2 and a dataset among "
                f"{', '.join(list_datasets())}")
        return
    prefix, sep, rest = name.partition(":")
    patterns = [k.split(":")[0] for k in known if ":" in k]
    if name in known or name in patterns or (sep and rest and prefix in patterns):
        return
    raise TaskrelInputError(
        f"config key `encoders`: unknown encoder {name!r}; known: {', '.join(known)}")


def _check_spec(spec: Any, key: str) -> None:
    from ..features.datasets import TRANSFORM_KINDS, list_datasets, load_dataset

    if spec.dataset not in list_datasets():
        raise TaskrelInputError(
            f"config key `{key}`: unknown dataset {spec.dataset!r}; known: "
            f"{', '.join(list_datasets())}")
    t = spec.transform
    if t is not None and (t["kind"] not in TRANSFORM_KINDS or not 0 <= t["strength"] <= 1):
        raise TaskrelInputError(
            f"config key `{key}.transform`: `kind` must be one of {list(TRANSFORM_KINDS)} "
            f"and `strength` in [0, 1]; got {t}")
    if t is not None and t["kind"] == "invert" and t["strength"] == 0.5:
        raise TaskrelInputError(
            f"config key `{key}.transform`: invert at strength 0.5 blends every image with "
            "its negative into a uniform grey (127.5): the task has no signal; got "
            f"{t}")
    if spec.classes is not None or spec.relabel is not None:
        k = load_dataset(spec.dataset).n_classes
        for what, ids in (("classes", spec.classes), ("relabel", spec.relabel)):
            bad = [c for c in ids or () if not 0 <= c < k]
            if what == "classes" and bad:
                raise TaskrelInputError(
                    f"config key `{key}.classes`: dataset {spec.dataset!r} has classes "
                    f"0..{k - 1}; got {bad}")


def _check_options(options: Mapping[str, Any]) -> None:
    from .._internal.devices import check_device
    from .._internal.validation import check_positive

    tau = options.get("tau", "auto")
    if not (tau in ("auto", "paper") or (isinstance(tau, (int, float))
                                         and not isinstance(tau, bool) and tau > 0
                                         and tau != float("inf"))):
        raise TaskrelInputError(
            f"config key `options.tau` must be a positive number, 'auto' or 'paper'; "
            f"got {tau!r}")
    for k in _POSITIVE_INT_OPTIONS:
        if options.get(k) is not None:
            check_positive(options[k], f"options.{k}", integer=True)
    if options.get("device") is not None:
        try:
            check_device(options["device"])
        except TaskrelInputError as exc:
            raise TaskrelInputError(f"config key `options.device`: {exc}") from None
    sizes = options.get("image_sizes", {})
    if not isinstance(sizes, Mapping) or any(
            isinstance(v, bool) or not isinstance(v, int) or v < 32 for v in sizes.values()):
        raise TaskrelInputError(
            "config key `options.image_sizes` must be a table encoder -> int >= 32; "
            f"got {sizes!r}")
    rf = options.get("reference_finetune")
    if rf not in (None, False) and not isinstance(rf, str):
        raise TaskrelInputError(
            f"config key `options.reference_finetune` must be an encoder name or false; "
            f"got {rf!r}")


def check_config(config: ExperimentConfig) -> ExperimentConfig:
    """Check everything a suite's cells will read, before the first cell: estimator
    names, encoders, datasets, transforms, class ids and option types and ranges;
    ``[[sources]]`` specs, and that no target is a source task.

    Returns the normalized config (:func:`normalize_config`).
    """
    from .suite import same_task

    config = normalize_config(config)
    src_names = tuple(s.name for s in config.sources)
    for enc in config.encoders:
        _check_encoder_name(enc, src_names)
    _check_spec(config.reference, "reference")
    for i, t in enumerate(config.targets):
        _check_spec(t, f"targets[{i}]")
    for i, s in enumerate(config.sources):
        _check_spec(s, f"sources[{i}]")
        same = [t.name for t in config.targets if same_task(s, t)]
        if same:
            raise TaskrelInputError(
                f"config key `sources[{i}]`: {s.name!r} is the same task as target(s) "
                f"{same}; a target must differ from every source")
    _check_options(config.options)
    mode = config.options.get("reference_mode", "fixed")
    if mode not in _REFERENCE_MODES:
        raise TaskrelInputError(
            f"config key `options.reference_mode` must be one of {list(_REFERENCE_MODES)}; "
            f"got {mode!r}")
    aug = config.finetune.get("augment")
    if aug not in (None, "shift"):
        raise TaskrelInputError(
            f"config key `finetune.augment` must be 'shift' or absent; got {aug!r}")
    return config


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


def cell_fn(cell: Cell, config: ExperimentConfig | None = None) -> dict[str, Any]:
    """Compute one cell of a reproduction grid.

    Parameters
    ----------
    cell : taskrel.experiments.store.Cell
        ``estimator`` is a ``taskrel.scores`` name, ``task_relatedness_unlabeled``,
        ``linear_probe`` or ``finetune`` (see :mod:`taskrel.experiments.estimators`).
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
    if not isinstance(cell, Cell):
        raise TaskrelInputError(f"`cell` must be a taskrel.experiments.store.Cell; got {type(cell).__name__}")
    config = _env_config() if config is None else config
    est = get_estimator(ALIASES.get(cell.estimator, cell.estimator))
    return est.cell(config, replace(cell, estimator=est.name))


# ---------------------------------------------------------------------------------
# feature extraction before the grid
# ---------------------------------------------------------------------------------
def feature_units(config: ExperimentConfig) -> list[tuple[str, str, str]]:
    """Every ``(encoder, task name, split)`` feature set the grid reads (with an
    own-source reference, the encoder's source's held-out split too)."""
    from .inputs import HELDOUT
    from .suite import cell_reference

    units = []
    for enc in config.encoders:
        units.append((enc, config.reference.name, "both"))
        refs = {cell_reference(config, enc, e) for e in config.estimators}
        units += [(enc, r, HELDOUT) for r in sorted(refs - {config.reference.name})]
        names = [t.name for t in config.targets]
        if config.reference_truths:
            names.append(REFERENCE_TARGET)
        for t in names:
            units += [(enc, t, "train"), (enc, t, "test")]
    return units


def _prepare_unit(unit: tuple[str, str, str], config: ExperimentConfig) -> dict[str, Any]:
    t0 = time.perf_counter()
    task = unit_task(config, unit)
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
        smallcnn_path(config)
    for enc in config.encoders:  # trained once here, before any worker needs them
        base, source = split_source(enc)
        if source is not None:
            source_trained_path(config, base, source)
    gpus = 0.0
    if hasattr(ex, "cluster_gpus") and suite_device(config) != "cpu":
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


# ---------------------------------------------------------------------------------
# the suite runner
# ---------------------------------------------------------------------------------
def run_suite(config: ExperimentConfig, *, db: str | os.PathLike[str],
              out: str | os.PathLike[str], executor: str = "local",
              progress: bool = True, threads: int | None = 1,
              executor_options: Mapping[str, Any] | None = None,
              report_only: bool = False) -> dict[str, Any]:
    """Extract the features (:func:`prepare_features`), run ``config``'s grid into
    ``db`` (resumable), run the reference fine-tuning when
    ``options.reference_finetune`` names an encoder, run the analyses and write the
    report.

    With ``report_only`` nothing is computed: the report is rendered from the rows
    ``db`` holds (a suite run in stages, ``experiments/stage.py``), and says how many
    of the grid's cells are still missing.

    Returns the report's summary (also written as ``summary.json``).
    """
    from .._internal.validation import check_output_path
    from .executors import get_executor
    from .reference_finetune import try_reference_finetune
    from .report import write_report

    config = check_config(config)
    check_output_path(db, "db")
    check_output_path(out, "out", kind="dir")
    if report_only:
        return _report_only(config, db, out)
    t0 = time.perf_counter()
    limits = _limit_threads(threads)
    ex = get_executor(executor, **dict(executor_options or {}))
    try:
        grid, rows = _run_grid(config, db, ex, progress)
    finally:
        if limits is not None:
            limits.unregister()
        if hasattr(ex, "shutdown"):
            ex.shutdown()
    seconds = time.perf_counter() - t0
    rf_rows, rf_error = try_reference_finetune(config)
    return write_report(config, rows, Path(out), grid=grid, seconds=seconds,
                        versions=package_versions(_REPORT_PACKAGES),
                        reference_finetune=rf_rows, reference_finetune_error=rf_error,
                        n_classes=suite_classes(config, rows, load=True))


def _report_only(config: ExperimentConfig, db: str | os.PathLike[str],
                 out: str | os.PathLike[str]) -> dict[str, Any]:
    """The report of what ``db`` holds for ``config``'s grid (read-only)."""
    from .report import write_report
    from .store import ResultsStore, as_cell

    if not Path(db).is_file():
        raise TaskrelInputError(f"`--db`: {str(db)!r} does not exist; nothing to report")
    from .digest import suite_digest

    grid_cells = set(expand_grid(config))
    digest = suite_digest(config)
    with ResultsStore(db, readonly=True) as store:
        rows = [r for r in store.query() if as_cell(r) in grid_cells]
        _, stale, _ = store.missing({c: digest(c) for c in grid_cells})
    missing = len(grid_cells) - len(rows)
    summary = write_report(config, rows, Path(out), versions=package_versions(
        _REPORT_PACKAGES), n_classes=suite_classes(config, rows, load=True))
    summary["missing_cells"] = missing
    # Rows computed under other inputs (e.g. an older engine revision): reported as they
    # are, and counted so that a reader knows the report mixes revisions.
    summary["stale_cells"] = len(stale)
    summary["stale_by_estimator"] = dict(Counter(c.estimator for c in stale))
    return summary


def _run_grid(config: ExperimentConfig, db: str | os.PathLike[str], ex: Any,
              progress: bool) -> tuple[Any, list[dict[str, Any]]]:
    """Features first (when a cell is missing or stale), then the grid, each row
    with its digest (:func:`taskrel.experiments.digest.suite_digest`); the store's
    rows."""
    from .digest import suite_digest
    from .store import ResultsStore
    from .suite import run_grid

    Path(db).parent.mkdir(parents=True, exist_ok=True)
    digest = suite_digest(config)
    with ResultsStore(db) as store:
        todo, _, _ = store.missing({c: digest(c) for c in expand_grid(config)})
        if todo:
            prep = prepare_features(config, ex, progress=progress)
            for unit, msg in prep["failed"]:
                warnings.warn(f"feature extraction failed for {unit}: {msg}",
                              stacklevel=3)
        grid = run_grid(config, make_cell_fn(config), store, executor=ex,
                        progress=progress, digest=digest)
        return grid, store.query()


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
