"""Experiments as TOML configs, expanded to a grid of cells and run into a results store.

A config names a reference task, target tasks, encoders, estimators, fractions of the
target's training data and seeds; :func:`expand_grid` makes one :class:`~taskrel.experiments.store.Cell`
per ``encoder x target x estimator x fraction x seed`` (plus the ground-truth cells),
and :func:`run_grid` computes the cells the store lacks, through an executor, writing
each result from the driver process as it arrives. The format is documented in
``docs/experiments.md``; ``experiments/vision.toml`` and ``experiments/text.toml`` are
the paper-style suites.

Examples
--------
>>> cfg = parse_config({
...     "name": "toy", "reference": "digits", "targets": ["digits"],
...     "encoders": ["raw"], "estimators": ["task_relatedness"],
...     "fractions": [0.5, 1.0], "seeds": [0, 1],
...     "ground_truth": {"estimators": ["linear_probe"]}})
>>> len(expand_grid(cfg))   # 1 x 1 x 1 estimator x 2 fractions x 2 seeds + 2 truths
6
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from ..exceptions import TaskrelInputError
from ._names import reads_reference, split_source
from .executors import Executor, get_executor
from .store import Cell, ResultsStore

__all__ = [
    "DatasetSpec",
    "ExperimentConfig",
    "REFERENCE_TARGET",
    "GridReport",
    "CellResult",
    "load_config",
    "parse_config",
    "expand_grid",
    "cell_reference",
    "same_task",
    "run_grid",
    "run_in_chunks",
    "subset_cells",
]

_TOP_KEYS = {
    "name", "description", "reference", "targets", "encoders", "estimators",
    "fractions", "seeds", "ground_truth", "finetune", "options", "quick", "sources",
}
_GT_KEYS = {"estimators", "fractions", "finetune_encoders", "finetune_targets", "seeds",
            "reference"}
#: The target name of the reference task's own ground-truth cells.
REFERENCE_TARGET = "reference"
_SPEC_KEYS = {"name", "dataset", "classes", "relabel", "transform", "subsample"}
_TRANSFORM_KEYS = {"kind", "strength"}
_GT_DEFAULT = ("linear_probe", "finetune")


# ---------------------------------------------------------------------------------
# config
# ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class DatasetSpec:
    """A task: a packaged dataset, optionally derived (class subset, relabelling,
    image transformation), in the vocabulary of ``taskrel.data``.

    ``classes`` keeps those class indices (``taskrel.data.subset_classes``);
    ``relabel`` maps old class index ``i`` to ``relabel[i]`` (``taskrel.data.relabel``);
    ``transform`` is ``{"kind": ..., "strength": ...}``
    (``taskrel.data.transform_images``); ``subsample`` keeps that share of the
    training rows (``taskrel.data.subsample``).
    """

    name: str
    dataset: str
    classes: tuple[int, ...] | None = None
    relabel: tuple[int, ...] | None = None
    transform: dict[str, Any] | None = None
    subsample: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "dataset": self.dataset}
        for k in ("classes", "relabel", "transform", "subsample"):
            v = getattr(self, k)
            if v is not None:
                d[k] = list(v) if isinstance(v, tuple) else v
        return d

    def load(self, *, seed: int = 0) -> Any:
        """Build the task with ``taskrel.data`` (imported here, so configs parse
        without it)."""
        from ..features import datasets as data

        ds = data.load_dataset(self.dataset)
        if self.classes is not None:
            ds = data.subset_classes(ds, list(self.classes))
        if self.relabel is not None:
            ds = data.relabel(ds, list(self.relabel))
        if self.transform is not None:
            ds = data.transform_images(ds, self.transform["kind"],
                                       self.transform["strength"], seed=seed)
        if self.subsample is not None:
            ds = data.subsample(ds, fraction=self.subsample, seed=seed)
        return ds


@dataclass(frozen=True)
class ExperimentConfig:
    """A validated experiment config (see ``docs/experiments.md``)."""

    name: str
    reference: DatasetSpec
    targets: tuple[DatasetSpec, ...]
    encoders: tuple[str, ...]
    estimators: tuple[str, ...]
    fractions: tuple[float, ...]
    seeds: tuple[int, ...]
    truth_estimators: tuple[str, ...] = _GT_DEFAULT
    truth_fractions: tuple[float, ...] = (1.0,)
    finetune_encoders: tuple[str, ...] | None = None
    truth_seeds: tuple[int, ...] | None = None
    reference_truths: bool = False
    finetune_targets: tuple[str, ...] | None = None
    finetune: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    quick: bool = False
    path: str | None = None
    sources: tuple[DatasetSpec, ...] = ()

    def source(self, name: str) -> DatasetSpec | None:
        """The source task (``[[sources]]``) called ``name``, or None."""
        for s in self.sources:
            if s.name == name:
                return s
        return None

    @property
    def own_source(self) -> bool:
        """``options.reference_mode == "own_source"``: every estimator that reads a
        reference task reads, for ``<arch>_on_<source>``, that source's held-out split
        (:func:`cell_reference`)."""
        return self.options.get("reference_mode", "fixed") == "own_source"

    def target(self, name: str) -> DatasetSpec:
        """The target called ``name``; ``"reference"`` is the reference task itself
        (its own ground truths, ``ground_truth.reference``)."""
        if name == REFERENCE_TARGET:
            return self.reference
        for t in self.targets:
            if t.name == name:
                return t
        raise TaskrelInputError(
            f"`target` must be one of {[t.name for t in self.targets]}; got {name!r}"
        )


def _err(key: str, expected: str, got: Any) -> TaskrelInputError:
    return TaskrelInputError(f"config key `{key}` must be {expected}; got {got!r}")


def _str(v: Any, key: str) -> str:
    if not isinstance(v, str) or not v.strip():
        raise _err(key, "a non-empty string", v)
    return v


def _str_list(v: Any, key: str, *, allow_empty: bool = False) -> tuple[str, ...]:
    if not isinstance(v, list) or (not v and not allow_empty):
        raise _err(key, "a non-empty list of strings", v)
    out = tuple(_str(x, f"{key}[{i}]") for i, x in enumerate(v))
    dup = sorted({x for x in out if out.count(x) > 1})
    if dup:
        raise _err(key, "a list without duplicates", dup)
    return out


def _bool(v: Any, key: str) -> bool:
    if not isinstance(v, bool):
        raise _err(key, "true or false", v)
    return v


def _int_list(v: Any, key: str, *, nonneg: bool = True) -> tuple[int, ...]:
    if not isinstance(v, list) or not v:
        raise _err(key, "a non-empty list of integers", v)
    for i, x in enumerate(v):
        if isinstance(x, bool) or not isinstance(x, int) or (nonneg and x < 0):
            raise _err(f"{key}[{i}]", "a non-negative integer", x)
    return tuple(v)


def _fractions(v: Any, key: str) -> tuple[float, ...]:
    if not isinstance(v, list) or not v:
        raise _err(key, "a non-empty list of numbers in (0, 1]", v)
    out = []
    for i, x in enumerate(v):
        if (isinstance(x, bool) or not isinstance(x, (int, float))
                or not math.isfinite(x) or not 0 < x <= 1):
            raise _err(f"{key}[{i}]", "a number in (0, 1]", x)
        out.append(float(x))
    if len(set(out)) != len(out):
        raise _err(key, "a list without duplicates", v)
    return tuple(out)


def _check_keys(d: Mapping[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(d) - allowed)
    if extra:
        prefix = f"{where}." if where else ""
        raise TaskrelInputError(
            f"unknown config key `{prefix}{extra[0]}`; allowed keys"
            f"{' in ' + where if where else ''}: {sorted(allowed)}"
        )


def _spec(v: Any, key: str) -> DatasetSpec:
    if isinstance(v, str):
        return DatasetSpec(name=_str(v, key), dataset=v)
    if not isinstance(v, Mapping):
        raise _err(key, "a dataset name or a table with `name`", v)
    _check_keys(v, _SPEC_KEYS, key)
    if "name" not in v:
        raise TaskrelInputError(f"config key `{key}.name` is required")
    name = _str(v["name"], f"{key}.name")
    dataset = _str(v.get("dataset", name), f"{key}.dataset")
    classes = relabel = transform = sub = None
    if "classes" in v:
        classes = _int_list(v["classes"], f"{key}.classes")
    if "relabel" in v:
        relabel = _int_list(v["relabel"], f"{key}.relabel")
    if "transform" in v:
        t = v["transform"]
        if not isinstance(t, Mapping):
            raise _err(f"{key}.transform", "a table {kind, strength}", t)
        _check_keys(t, _TRANSFORM_KEYS, f"{key}.transform")
        if "kind" not in t or "strength" not in t:
            raise TaskrelInputError(
                f"config key `{key}.transform` needs `kind` and `strength`; got {dict(t)}"
            )
        s = t["strength"]
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s):
            raise _err(f"{key}.transform.strength", "a number", s)
        transform = {"kind": _str(t["kind"], f"{key}.transform.kind"), "strength": s}
    if "subsample" in v:
        sub = _fractions([v["subsample"]], f"{key}.subsample")[0]
    return DatasetSpec(name, dataset, classes, relabel, transform, sub)


def parse_config(raw: Mapping[str, Any], *, quick: bool = False,
                 path: str | None = None) -> ExperimentConfig:
    """Validate a config dict (as read from TOML); errors name the offending key.

    With ``quick=True`` the keys of the ``[quick]`` table override the top-level
    ones; ``quick.targets`` is a list of target *names* to keep.
    """
    if not isinstance(raw, Mapping):
        raise TaskrelInputError(f"`raw` must be a mapping; got {type(raw).__name__}")
    _check_keys(raw, _TOP_KEYS, "")
    d = dict(raw)
    for req in ("name", "reference", "targets", "encoders", "estimators"):
        if req not in d:
            raise TaskrelInputError(f"config key `{req}` is required")
    targets_all = d["targets"]
    if not isinstance(targets_all, list) or not targets_all:
        raise _err("targets", "a non-empty list of dataset names or tables", targets_all)
    targets = tuple(_spec(t, f"targets[{i}]") for i, t in enumerate(targets_all))
    names = [t.name for t in targets]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise _err("targets", "tasks with distinct names", dup)
    if REFERENCE_TARGET in names:
        raise _err("targets", f"names other than {REFERENCE_TARGET!r} (reserved for the "
                   "reference task's own ground truths)", REFERENCE_TARGET)

    q = d.get("quick", {})
    if not isinstance(q, Mapping):
        raise _err("quick", "a table", q)
    _check_keys(q, _TOP_KEYS - {"quick", "name", "reference", "description"}, "quick")
    if quick:
        for k, v in q.items():
            if k == "targets":
                keep = _str_list(v, "quick.targets")
                unknown = [n for n in keep if n not in names]
                if unknown:
                    raise _err("quick.targets", f"names among {names}", unknown)
                targets = tuple(t for t in targets if t.name in keep)
            elif isinstance(v, Mapping) and isinstance(d.get(k), Mapping):
                d[k] = {**d[k], **v}
            else:
                d[k] = v

    sources = _sources(d.get("sources", []), names)  # after [quick] may replace them
    gt = d.get("ground_truth", {})
    if not isinstance(gt, Mapping):
        raise _err("ground_truth", "a table", gt)
    _check_keys(gt, _GT_KEYS, "ground_truth")
    encoders = _str_list(d["encoders"], "encoders")
    ft_enc = None
    if "finetune_encoders" in gt:
        ft_enc = _str_list(gt["finetune_encoders"], "ground_truth.finetune_encoders",
                           allow_empty=True)
        bad = [e for e in ft_enc if e not in encoders]
        if bad and not quick:
            raise _err("ground_truth.finetune_encoders", f"names among {list(encoders)}", bad)
        ft_enc = tuple(e for e in ft_enc if e in encoders)
    ft_tgt = None
    if "finetune_targets" in gt:
        ft_tgt = _str_list(gt["finetune_targets"], "ground_truth.finetune_targets",
                           allow_empty=True)
        ok = set(names) | {REFERENCE_TARGET}
        bad = [t for t in ft_tgt if t not in ok]
        if bad and not quick:
            raise _err("ground_truth.finetune_targets", f"names among {sorted(ok)}", bad)
        ft_tgt = tuple(t for t in ft_tgt if t in ok)
    for k in ("finetune", "options"):
        if not isinstance(d.get(k, {}), Mapping):
            raise _err(k, "a table", d[k])
    return ExperimentConfig(
        name=_str(d["name"], "name"),
        reference=_spec(d["reference"], "reference"),
        targets=targets,
        encoders=encoders,
        estimators=_str_list(d["estimators"], "estimators", allow_empty=True),
        fractions=_fractions(d.get("fractions", [1.0]), "fractions"),
        seeds=_int_list(d.get("seeds", [0]), "seeds"),
        truth_estimators=_str_list(list(gt.get("estimators", _GT_DEFAULT)),
                                   "ground_truth.estimators", allow_empty=True),
        truth_fractions=_fractions(gt.get("fractions", [1.0]), "ground_truth.fractions"),
        finetune_encoders=ft_enc,
        truth_seeds=(_int_list(gt["seeds"], "ground_truth.seeds") if "seeds" in gt
                     else None),
        reference_truths=_bool(gt.get("reference", False), "ground_truth.reference"),
        finetune_targets=ft_tgt,
        finetune=dict(d.get("finetune", {})),
        options=dict(d.get("options", {})),
        description=str(d.get("description", "")),
        quick=quick,
        path=path,
        sources=sources,
    )


def _sources(raw: Any, target_names: Sequence[str]) -> tuple[DatasetSpec, ...]:
    """``[[sources]]``: source tasks that ``<arch>_on_<name>`` encoders train on. Names
    are distinct, and neither a target's nor ``"reference"``; no source is the same
    task (spec less its name) as a target, so that no target is a source task."""
    if not isinstance(raw, list):
        raise _err("sources", "a list of dataset names or tables", raw)
    out = tuple(_spec(v, f"sources[{i}]") for i, v in enumerate(raw))
    names = [s.name for s in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise _err("sources", "tasks with distinct names", dup)
    clash = sorted(set(names) & (set(target_names) | {REFERENCE_TARGET}))
    if clash:
        raise _err("sources", "names other than the targets' and 'reference'", clash)
    return out


def same_task(a: DatasetSpec, b: DatasetSpec) -> bool:
    """Whether two specs describe the same task (their names aside)."""
    da, db = a.to_dict(), b.to_dict()
    da.pop("name")
    db.pop("name")
    return da == db


def cell_reference(config: ExperimentConfig, encoder: str, estimator: str) -> str:
    """The reference task a cell of ``estimator`` on ``encoder`` reads, by name.

    The config's reference, except under ``options.reference_mode = "own_source"``
    for an estimator that reads a reference task
    (:func:`taskrel.experiments.estimators.reads_reference`) on an encoder
    ``<arch>_on_<source>`` whose source is a ``[[sources]]`` task: then that
    source's name (the cell reads its held-out split). The ``*_fixed`` estimators
    always read the config's reference.
    """
    if config.own_source:
        _, src = split_source(encoder)
        if src is not None and config.source(src) is not None and \
                reads_reference(estimator, own=True):
            return src
    return config.reference.name


def load_config(path: str | os.PathLike[str], *, quick: bool = False) -> ExperimentConfig:
    """Read and validate a TOML experiment config."""
    p = Path(path)
    if not p.is_file():
        raise TaskrelInputError(f"`path`: config file {str(p)!r} does not exist")
    try:
        raw = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise TaskrelInputError(f"config file {str(p)!r} is not valid TOML: {exc}") from None
    try:
        return parse_config(raw, quick=quick, path=str(p))
    except TaskrelInputError as exc:
        raise TaskrelInputError(f"{p.name}: {exc}") from None


def expand_grid(config: ExperimentConfig) -> list[Cell]:
    """Every cell of the config: estimators over ``fractions x seeds`` and ground
    truths over ``ground_truth.fractions x ground_truth.seeds`` (default: ``seeds``;
    ``finetune`` only for ``ground_truth.finetune_encoders`` when that list is given)."""
    if not isinstance(config, ExperimentConfig):
        raise TaskrelInputError(
            f"`config` must be an ExperimentConfig; got {type(config).__name__}"
        )
    cells = []
    truth_seeds = config.seeds if config.truth_seeds is None else config.truth_seeds
    for enc in config.encoders:
        names = [t.name for t in config.targets]
        if config.reference_truths:
            names.append(REFERENCE_TARGET)
        for tgt in names:
            if tgt != REFERENCE_TARGET:
                for est in config.estimators:
                    ref = cell_reference(config, enc, est)
                    for fr in config.fractions:
                        for s in config.seeds:
                            cells.append(Cell(enc, ref, tgt, fr, s, est))
            for est in config.truth_estimators:
                if est == "finetune" and not _finetuned(config, enc, tgt):
                    continue
                ref = cell_reference(config, enc, est)
                for fr in (config.truth_fractions if tgt != REFERENCE_TARGET else (1.0,)):
                    for s in truth_seeds:
                        cells.append(Cell(enc, ref, tgt, fr, s, est))
    return cells


def _finetuned(config: ExperimentConfig, encoder: str, target: str) -> bool:
    """Whether the (encoder, target) pair gets a fine-tuning ground truth:
    ``ground_truth.finetune_encoders`` and ``finetune_targets`` (default: all)."""
    return ((config.finetune_encoders is None or encoder in config.finetune_encoders)
            and (config.finetune_targets is None or target in config.finetune_targets))


# ---------------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class CellResult:
    """What a cell function may return instead of a bare float."""

    value: float | None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GridReport:
    """Counts of one :func:`run_grid` call; ``failed`` holds ``(cell, message)``.

    ``skipped`` counts the cells not computed because the store had a fresh row
    (before the run, or written meanwhile by a concurrent run: ``by_others`` of
    them); ``stale`` the rows replaced because their digest differed (part of
    ``computed`` when they succeeded); ``legacy`` the rows kept although they have
    no digest to compare (part of ``skipped``); ``left_to_others`` the cells a live
    concurrent run had claimed and this run did not wait for (``wait=False``).
    """

    total: int
    skipped: int
    computed: int
    failed: tuple[tuple[Cell, str], ...]
    seconds: float
    stale: int = 0
    legacy: int = 0
    by_others: int = 0
    left_to_others: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed


class _Timed:
    """Wraps a cell function so the worker measures its own seconds (picklable)."""

    def __init__(self, fn: Callable[[Cell], Any]) -> None:
        self.fn = fn

    def __call__(self, cell: Cell) -> tuple[Any, float]:
        t0 = time.perf_counter()
        out = self.fn(cell)
        return out, time.perf_counter() - t0


def _unpack(out: Any, cell: Cell) -> tuple[float | None, dict[str, Any]]:
    if isinstance(out, CellResult):
        return out.value, dict(out.extra)
    if isinstance(out, Mapping):
        if "value" not in out:
            raise TaskrelInputError(
                f"cell function returned a mapping without 'value' for {cell}: {sorted(out)}"
            )
        return out["value"], dict(out.get("extra") or {})
    if out is None or isinstance(out, (int, float)) and not isinstance(out, bool):
        return out, {}
    try:
        return float(out), {}
    except (TypeError, ValueError):
        raise TaskrelInputError(
            "a cell function must return a float, None, a CellResult or a mapping "
            f"with 'value'; got {type(out).__name__} for {cell}"
        ) from None


def run_grid(
    config_or_cells: ExperimentConfig | Iterable[Cell],
    cell_fn: Callable[[Cell], Any],
    store: ResultsStore,
    *,
    executor: str | Executor = "local",
    progress: bool = True,
    executor_options: Mapping[str, Any] | None = None,
    digest: Callable[[Cell], str | None] | None = None,
    wait: bool = True,
) -> GridReport:
    """Compute the cells the store lacks (or holds with another digest) and write
    each result as it arrives.

    Parameters
    ----------
    config_or_cells : ExperimentConfig or iterable of Cell
        The grid (a config is expanded with :func:`expand_grid`).
    cell_fn : callable
        ``cell_fn(cell)`` returns the cell's value: a float (or None), a
        :class:`CellResult`, or a mapping with ``value`` and optional ``extra``.
        For the Ray executor it must be picklable (a module-level function).
    store : ResultsStore
        Where rows go; cells it already has (with the same digest) are skipped.
    executor : str or executor object
        ``"local"`` (serial, in-process) or ``"ray"``; see :mod:`taskrel.experiments.executors`.
    progress : bool
        Show a tqdm bar on stderr.
    executor_options : mapping, optional
        Keyword arguments for :func:`taskrel.experiments.executors.get_executor`.
    digest : callable, optional
        ``digest(cell)`` is a string naming everything else that determines the
        cell's value (for a suite: :func:`taskrel.experiments.digest.suite_digest`);
        it is stored with the row, and a row whose digest differs is recomputed and
        replaced. Without it any existing row counts as done.
    wait : bool
        Wait for the cells another live run has claimed (default), so that the call
        returns with every cell stored. ``False`` leaves them to that run and returns
        when this run has nothing left to claim (``left_to_others`` counts them): for
        workers that go on to other grids instead of idling on a cell in progress.

    Returns
    -------
    GridReport
        A cell that raised is not written (a rerun tries it again); its message is in
        ``failed`` and a warning is emitted.

    Notes
    -----
    Several processes may run the same grid on one store at once: each claims a
    cell before computing it (:meth:`ResultsStore.claim`), so no cell is computed
    twice; cells claimed by another live run are waited for (unless ``wait=False``),
    and taken over if that run dies. Rows without a digest (older stores) are kept,
    with a warning.
    """
    if not isinstance(store, ResultsStore):
        raise TaskrelInputError(f"`store` must be a ResultsStore; got {type(store).__name__}")
    if not callable(cell_fn):
        raise TaskrelInputError(f"`cell_fn` must be callable; got {type(cell_fn).__name__}")
    if digest is not None and not callable(digest):
        raise TaskrelInputError(f"`digest` must be callable or None; got {digest!r}")
    if not isinstance(wait, bool):
        raise TaskrelInputError(f"`wait` must be True or False; got {wait!r}")
    cells = _grid_cells(config_or_cells)
    ex = (get_executor(executor, **dict(executor_options or {}))
          if isinstance(executor, str) else executor)
    if not hasattr(ex, "imap_unordered"):
        raise TaskrelInputError(
            f"`executor` must be a name or have imap_unordered; got {type(ex).__name__}"
        )
    t0 = time.perf_counter()
    wanted = {c: _cell_digest(digest, c) for c in cells}
    todo, stale, legacy = store.missing(wanted)
    if legacy:
        warnings.warn(
            f"{len(legacy)} rows of {store.path!r} have no digest (written before "
            "taskrel recorded what determines a cell); they are kept as they are. "
            "Delete them (or the store) to recompute them under the current config.",
            UserWarning, stacklevel=2)
    computed, failed, by_others, left = _compute(ex, cell_fn, todo, store, wanted,
                                                 progress, wait)
    if failed:
        warnings.warn(
            f"{len(failed)} of {len(todo)} cells failed (not written; a rerun retries "
            f"them); first: {failed[0][0]}: {failed[0][1]}",
            RuntimeWarning, stacklevel=2,
        )
    return GridReport(
        total=len(cells), skipped=len(cells) - len(todo) + by_others, computed=computed,
        failed=tuple(failed), seconds=time.perf_counter() - t0, stale=len(stale),
        legacy=len(legacy), by_others=by_others, left_to_others=left,
    )


def run_in_chunks(
    cells: Sequence[Cell],
    run: Callable[[Sequence[Cell]], GridReport],
    *,
    deadline: float | None = None,
    clock: Callable[[], float] = time.time,
    chunk: int = 8,
    label: str = "stage",
) -> tuple[int, int, bool]:
    """Run `cells` through ``run(cells) -> GridReport`` a chunk at a time, printing a
    progress line after each chunk: the loop of the long, resumable stage scripts.

    Without a `deadline` (a ``clock()`` time) the cells go in chunks of `chunk`; with
    one, one cell at a time and the deadline is checked before each, so no cell starts
    after it (the cell running at the deadline finishes and is written). Returns
    ``(computed, left_to_others, stopped_at_deadline)``; failed cells are printed.
    """
    if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1:
        raise TaskrelInputError(f"`chunk` must be an int >= 1; got {chunk!r}")
    size = 1 if deadline is not None else chunk
    done = left = 0
    for i in range(0, len(cells), size):
        if deadline is not None and clock() > deadline:
            print(f"{label}: --max-minutes reached; rerun to continue", flush=True)
            return done, left, True
        rep = run(cells[i:i + size])
        done += rep.computed
        left += rep.left_to_others
        for cell, msg in rep.failed:
            print(f"FAILED {cell}: {msg}", flush=True)
        print(f"{label}: {done}/{len(cells)} computed ({cells[i].estimator})"
              + (f", {left} left to another live run" if left else ""), flush=True)
    return done, left, False


def _cell_digest(digest: Callable[[Cell], str | None] | None, cell: Cell) -> str | None:
    if digest is None:
        return None
    d = digest(cell)
    if d is not None and not isinstance(d, str):
        raise TaskrelInputError(
            f"`digest` must return a string or None; got {type(d).__name__} for {cell}")
    return d


def _grid_cells(config_or_cells: ExperimentConfig | Iterable[Cell]) -> list[Cell]:
    """The grid's cells: a config expanded, or the given cells checked and deduplicated."""
    if isinstance(config_or_cells, ExperimentConfig):
        return expand_grid(config_or_cells)
    cells = list(config_or_cells)
    bad = [c for c in cells if not isinstance(c, Cell)]
    if bad:
        raise TaskrelInputError(
            f"`config_or_cells` must be an ExperimentConfig or Cells; got {bad[0]!r}"
        )
    return list(dict.fromkeys(cells))


#: Seconds between looks at cells another run has claimed (doubling up to the last).
_WAIT_POLL = (0.05, 2.0)


def _compute(ex: Any, cell_fn: Callable[[Cell], Any], todo: Sequence[Cell],
             store: ResultsStore, wanted: Mapping[Cell, str | None], progress: bool,
             wait: bool = True) -> tuple[int, list[tuple[Cell, str]], int, int]:
    """Run ``todo`` on ``ex``, claiming each cell just before it is handed to the
    executor, and write each result as it arrives; then wait for the cells another
    run had claimed (taking over those whose run died), unless ``wait`` is False.
    Returns the number written, the failures (a cell that raised, or whose result the
    store refused), the number of cells another run wrote meanwhile and the number
    left to another live run."""
    from tqdm.auto import tqdm

    failed: list[tuple[Cell, str]] = []
    counts = {"computed": 0, "by_others": 0}
    busy: list[Cell] = []

    def claimed(cells: Sequence[Cell]) -> Iterator[Cell]:
        for c in cells:
            state = store.claim(c, wanted[c])
            if state == "claimed":
                yield c
            elif state == "busy":
                busy.append(c)
            else:  # another run wrote it since the plan
                counts["by_others"] += 1
                bar.update(1)

    pending, pause = list(todo), _WAIT_POLL[0]
    with tqdm(total=len(todo), desc="cells", unit="cell", disable=not progress,
              dynamic_ncols=True) as bar:
        try:
            while pending:
                for cell, res in ex.imap_unordered(_Timed(cell_fn), claimed(pending)):
                    bar.update(1)
                    err = _write(store, cell, res, wanted[cell])
                    if err is None:
                        counts["computed"] += 1
                    else:
                        failed.append((cell, err))
                        store.release([cell])
                        bar.set_postfix(failed=len(failed))
                pending, busy[:] = list(busy), []
                if pending and not wait:  # claimed by a live run: left to it
                    break
                if pending:  # claimed by a live run: look again later
                    time.sleep(pause)
                    pause = min(2 * pause, _WAIT_POLL[1])
        finally:
            store.release()
    return counts["computed"], failed, counts["by_others"], len(pending)


def _write(store: ResultsStore, cell: Cell, res: Any, digest: str | None) -> str | None:
    """Write one executor result; the failure message, or None when written."""
    if isinstance(res, BaseException):
        return f"{type(res).__name__}: {res}"
    out, seconds = res
    try:
        value, extra = _unpack(out, cell)
        store.put(cell, value, extra=extra, seconds=seconds, digest=digest)
    except TaskrelInputError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def subset_cells(cells: Sequence[Cell], **where: Any) -> list[Cell]:
    """The cells whose fields equal the given values (a value or a collection)."""
    def ok(c: Cell) -> bool:
        for k, v in where.items():
            cv = getattr(c, k)
            if isinstance(v, (list, tuple, set, frozenset)):
                if cv not in v:
                    return False
            elif cv != v:
                return False
        return True

    return [c for c in cells if ok(c)]

