"""What determines a suite cell's value, as a digest stored with its row.

A cell's key (:class:`~taskrel.experiments.store.Cell`) names the encoder, the
reference and target *names*, the fraction, the seed and the estimator. Its value
also depends on the config: the task specs behind those names, the row caps, the
feature projection, the estimator's own options and, for fine-tuning, the
``[finetune]`` recipe. :func:`cell_digest` hashes exactly those, so that
:func:`taskrel.experiments.run_grid` recomputes a cell whose inputs changed (and only
such cells) when it is given :func:`suite_digest`.

What each cell reads (``taskrel.experiments.estimators`` / ``inputs``):

- every cell on extracted features (scores, task-relatedness, the linear probe):
  the reference and target specs, ``options.max_reference``, ``max_target``,
  ``max_test``, ``feature_dim``, the encoder's settings (``finetune.image_size`` and
  ``finetune.max_tokens``; ``options.smallcnn_epochs`` for ``smallcnn``);
- the reference: the config's reference spec, or, for an own-source cell
  (``options.reference_mode = "own_source"``, ``cell.reference`` a ``[[sources]]``
  task), that source's spec, split and row cap; an encoder trained here on a
  ``[[sources]]`` task adds its training recipe
  (:func:`taskrel.experiments.inputs.source_recipe`: architecture, width, epochs,
  source spec, rows);
- ``task_relatedness`` and ``task_relatedness_unlabeled`` (and their ``*_fixed``
  twins): also ``options.tau``, ``recipe`` and ``b_mode``; ``linear_probe``: also ``options.tau``; ``logreg``
  (the tuned logistic probe): nothing more;
- ``finetune``: the target spec, ``max_target``, ``max_test``, the whole
  ``[finetune]`` table and, for ``smallcnn``, what the small CNN is trained on;
- an estimator this table does not know: every option and the ``[finetune]`` table;
- a target name that is not one of the config's targets is the reference task itself
  (its own ground truths): its spec and ``max_reference`` stand for the target's.

An option this module does not know is part of every cell's digest (a change
recomputes too much rather than too little). ``options.device`` and
``options.reference_finetune`` are not: the first says where a cell runs (CPU and
GPU agree to rounding), the second adds a report section and no cell. The package
versions are recorded with each row but not hashed: a release that changes no
number should not recompute a suite. :data:`ALGORITHM_VERSION` is hashed instead;
bump it with a change that alters cell values on purpose (e.g. a regenerated golden
entry). :data:`RELATEDNESS_REVISION` does the same for the task-relatedness cells alone.

Examples
--------
>>> from dataclasses import replace
>>> from taskrel.experiments import parse_config
>>> from taskrel.experiments.store import Cell
>>> cfg = parse_config({"name": "t", "reference": "digits", "targets": ["digits"],
...                     "encoders": ["e"], "estimators": ["logme", "task_relatedness"],
...                     "options": {"tau": 0.5}})
>>> other = replace(cfg, options={"tau": 2.0})
>>> logme = Cell("e", "digits", "digits", 1.0, 0, "logme")
>>> rel = Cell("e", "digits", "digits", 1.0, 0, "task_relatedness")
>>> cell_digest(cfg, logme) == cell_digest(other, logme)
True
>>> cell_digest(cfg, rel) == cell_digest(other, rel)
False
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from ..exceptions import TaskrelInputError
from .estimators import FIXED, UNLABELED, UNLABELED_FIXED
from .store import Cell
from .suite import ExperimentConfig

__all__ = ["cell_digest", "suite_digest", "digest_inputs", "hash_inputs",
           "ALGORITHM_VERSION", "RELATEDNESS_REVISION"]

#: Hashed into every digest: bump it when a change alters cell values on purpose.
ALGORITHM_VERSION = 1
#: Hashed into the task-relatedness cells' digests only: bump it when an engine change
#: alters their values on purpose, so that a rerun recomputes them and nothing else.
#: 2: D follows the matching; splits, caps and the ridge hold-out keyed by row (issue 22).
RELATEDNESS_REVISION = 2

#: Options every cell on extracted features reads (through its tasks).
_FEATURE_OPTIONS = ("max_reference", "max_target", "max_test", "feature_dim")
#: Options read by one estimator's own computation.
_ESTIMATOR_OPTIONS: dict[str, tuple[str, ...]] = {
    "task_relatedness": ("tau", "recipe", "b_mode"),
    UNLABELED: ("tau", "recipe", "b_mode"),
    FIXED: ("tau", "recipe", "b_mode"),
    UNLABELED_FIXED: ("tau", "recipe", "b_mode"),
    "linear_probe": ("tau",),
    "logreg": (),  # taskrel.logistic_probe on the cell's features: no option of its own
}
#: Options that change no cell's value.
_NO_VALUE_OPTIONS = ("device", "reference_finetune")
#: Options some cells read, handled above (every other option is hashed into all).
_KNOWN_OPTIONS = (_FEATURE_OPTIONS + ("tau", "recipe", "b_mode", "smallcnn_epochs")
                  + _NO_VALUE_OPTIONS + ("reference_mode", "source_rows"))
#: Defaults the suite applies when an option is absent (absent == the default).
_DEFAULTS = {"tau": "auto", "smallcnn_epochs": 3}
#: ``[finetune]`` keys that configure the encoder itself (image size, token budget).
_ENCODER_FINETUNE_KEYS = ("image_size", "max_tokens")


def _opt(config: ExperimentConfig, key: str) -> Any:
    return config.options.get(key, _DEFAULTS.get(key))


def _task_inputs(config: ExperimentConfig, name: str) -> dict[str, Any]:
    """The spec and row caps of the target called ``name``; the reference's (spec and
    ``max_reference`` too) when no target has that name (a cell may measure the
    reference task itself)."""
    caps = [_opt(config, "max_target"), _opt(config, "max_test")]
    for t in config.targets:
        if t.name == name:
            return {"spec": t.to_dict(), "rows": caps}
    return {"spec": {"reference": config.reference.to_dict()},
            "rows": caps + [_opt(config, "max_reference")]}


def _encoder_inputs(config: ExperimentConfig, encoder: str) -> dict[str, Any]:
    """What the encoder's weights and preprocessing depend on, beyond its name."""
    d: dict[str, Any] = {k: config.finetune[k] for k in _ENCODER_FINETUNE_KEYS
                         if k in config.finetune}
    if encoder == "smallcnn":  # trained on the reference, capped, for some epochs
        d["smallcnn"] = [config.reference.to_dict(), _opt(config, "max_reference"),
                         _opt(config, "smallcnn_epochs")]
    from .inputs import source_recipe, split_source

    base, src = split_source(encoder)
    recipe = source_recipe(config, base, src) if src is not None else None
    if recipe is not None:  # trained here on a [[sources]] task: its whole recipe
        d["trained"] = recipe
    return d


def _reference_inputs(config: ExperimentConfig, cell: Cell) -> dict[str, Any]:
    """The reference task the cell reads: the config's (its spec, as before the own-
    source mode existed), or an own-source cell's held-out split of its source."""
    src = config.source(cell.reference) if cell.reference != config.reference.name \
        else None
    if src is None:
        return config.reference.to_dict()
    return {"own_source": src.to_dict(), "split": "test", "limit_rule": "stratified",
            "rows": _opt(config, "max_reference")}


def _score_names() -> set[str]:
    from ..scores import list_scores

    return set(list_scores())


def digest_inputs(config: ExperimentConfig, cell: Cell) -> dict[str, Any]:
    """The JSON-able inputs :func:`cell_digest` hashes (see the module docstring)."""
    if not isinstance(config, ExperimentConfig):
        raise TaskrelInputError(
            f"`config` must be an ExperimentConfig; got {type(config).__name__}")
    if not isinstance(cell, Cell):
        raise TaskrelInputError(f"`cell` must be a Cell; got {type(cell).__name__}")
    est = cell.estimator
    d: dict[str, Any] = {"algorithm": ALGORITHM_VERSION,
                         "encoder": _encoder_inputs(config, cell.encoder),
                         "target": _task_inputs(config, cell.target)}
    if est == "finetune":
        d["finetune"] = dict(config.finetune)
    else:
        d["reference"] = _reference_inputs(config, cell)
        d["features"] = {k: _opt(config, k) for k in _FEATURE_OPTIONS}
        if est in _ESTIMATOR_OPTIONS:
            d["options"] = {k: _opt(config, k) for k in _ESTIMATOR_OPTIONS[est]}
            if est in ("task_relatedness", UNLABELED, FIXED, UNLABELED_FIXED):
                from ..result import SCORE_TERM

                d["score_term"] = SCORE_TERM
                d["relatedness_revision"] = RELATEDNESS_REVISION
        elif est not in _score_names():  # unknown to this table: everything
            d["options"] = {k: v for k, v in config.options.items()
                            if k not in _NO_VALUE_OPTIONS}
            d["finetune"] = dict(config.finetune)
    other = {k: v for k, v in config.options.items() if k not in _KNOWN_OPTIONS}
    if other:
        d["other_options"] = other
    return d


def cell_digest(config: ExperimentConfig, cell: Cell) -> str:
    """SHA-256 (hex) of :func:`digest_inputs`, in canonical JSON."""
    return hash_inputs(digest_inputs(config, cell))


def hash_inputs(inputs: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of a digest-inputs mapping in canonical JSON (:func:`cell_digest`'s
    hash, for callers that adjust the inputs first)."""
    text = json.dumps(inputs, sort_keys=True, separators=(",", ":"), default=_canon)
    return hashlib.sha256(text.encode()).hexdigest()


def _canon(o: Any) -> Any:
    if isinstance(o, Mapping):
        return dict(o)
    if isinstance(o, (tuple, set, frozenset)):
        return sorted(o) if isinstance(o, (set, frozenset)) else list(o)
    return repr(o)


def suite_digest(config: ExperimentConfig) -> functools.partial[str]:
    """``cell_digest`` bound to ``config``: the ``digest`` argument of
    :func:`taskrel.experiments.run_grid` for a suite's cells (picklable)."""
    if not isinstance(config, ExperimentConfig):
        raise TaskrelInputError(
            f"`config` must be an ExperimentConfig; got {type(config).__name__}")
    return functools.partial(cell_digest, config)
