"""The estimators of a suite: name -> cell function and direction, in one registry.

A suite's estimators are the ``taskrel.scores`` names, ``task_relatedness_unlabeled``
(task-relatedness with pseudo-labels) and the ground truths ``linear_probe`` and
``finetune``. :func:`get_estimator` gives each one's :class:`Estimator`: the function
that computes a cell and whether a higher value predicts better transfer. Directions
are never written twice: a score's comes from ``taskrel.scores.get_score(name)``
(``task_relatedness_unlabeled`` shares ``task_relatedness``'s), and the ground truths
are test accuracies (higher is better).

A cell is computed like this:

1. the reference and target tasks are :func:`taskrel.experiments.inputs.cell_tasks`;
2. the target's *training* rows are subsampled to ``cell.fraction`` (seeded by
   ``cell.seed``, stratified, at least 2 per class);
3. estimators see only those rows and the reference; ground truths (``linear_probe``,
   ``finetune``) train on them and are measured on the target test split, which no
   estimator sees.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from ..exceptions import TaskrelInputError
from ._names import ALIASES as ALIASES
from ._names import FIXED as FIXED
from ._names import UNLABELED as UNLABELED
from ._names import UNLABELED_FIXED as UNLABELED_FIXED
from ._names import reads_reference as reads_reference
from .inputs import (
    cell_tasks,
    drop_single_row_classes,
    fraction_rows,
    raw_rows,
    suite_dataset,
    suite_device,
    suite_encoder,
)
from .store import Cell
from .suite import REFERENCE_TARGET, ExperimentConfig

__all__ = ["Estimator", "get_estimator", "reference_tau", "relate_rows", "UNLABELED",
           "FIXED", "UNLABELED_FIXED", "reads_reference", "TRUTHS", "ALIASES"]

#: ``cell(config, cell) -> {"value": float or None, "extra": {...}}``.
CellFunction = Callable[[ExperimentConfig, Cell], dict[str, Any]]


@dataclass(frozen=True)
class Estimator:
    """One estimator of a suite.

    Attributes
    ----------
    name : str
        What a config and a store row call it.
    cell : callable
        ``cell(config, cell) -> {"value": float or None, "extra": {...}}``.
    score : str or None
        The registered score whose direction this estimator has; None for a ground
        truth (a test accuracy).
    """

    name: str
    cell: CellFunction
    score: str | None

    @property
    def truth(self) -> bool:
        """True for a ground truth (``linear_probe``, ``finetune``)."""
        return self.score is None

    @property
    def higher_is_better(self) -> bool:
        """Whether a larger value predicts better transfer."""
        if self.score is None:
            return True  # a ground truth is a test accuracy
        from ..scores import get_score

        return bool(get_score(self.score).higher_is_better)


def get_estimator(name: str) -> Estimator:
    """The :class:`Estimator` called ``name``.

    Raises
    ------
    TaskrelInputError
        When ``name`` is neither one of the suite's own estimators nor a registered
        score (the message is :func:`taskrel.scores.get_score`'s).
    """
    own = _REGISTRY.get(name)
    if own is not None:
        return own
    from ..scores import get_score

    return Estimator(get_score(name).name, _score_cell, name)


def reference_tau(config: ExperimentConfig, ref: Any) -> float:
    """The tau task-relatedness uses on this reference: ``options.tau`` or the auto
    rule (:func:`taskrel.relatedness.auto_tau` on the standardized reference)."""
    from ..relatedness import resolve_tau

    return float(resolve_tau(config.options.get("tau", "auto"), ref.features, ref.labels,
                             name="options.tau")[0])


# ---------------------------------------------------------------------------------
# what the cells on extracted features see
# ---------------------------------------------------------------------------------
class _CellData(NamedTuple):
    ref: Any            # the reference task (train + test)
    test: Any           # the target's test task
    X: np.ndarray       # the target training rows the estimator sees
    y: np.ndarray
    probs: Any          # their source-head probabilities, or None
    extra: dict[str, Any]


def _cell_data(config: ExperimentConfig, cell: Cell) -> _CellData:
    ref, tgt, test = cell_tasks(config, cell)
    ytr = np.asarray(tgt.labels)
    sub = fraction_rows(ytr, cell.fraction, cell.seed)
    sub, single = drop_single_row_classes(ytr, sub)
    pf = tgt.source_probs[sub] if tgt.source_probs is not None else None
    extra: dict[str, Any] = {"n_target": int(len(sub)), "n_reference": int(len(ref.labels))}
    if cell.reference != config.reference.name:  # the encoder's own source, held out
        extra["reference_task"] = cell.reference
        extra["reference_split"] = "test"
    if single:
        extra["dropped_single_row_classes"] = single
    return _CellData(ref, test, tgt.features[sub], ytr[sub], pf, extra)


def _not_applicable(extra: dict[str, Any], why: str) -> dict[str, Any]:
    return {"value": None, "extra": {**extra, "not_applicable": why[:300]}}


# ---------------------------------------------------------------------------------
# the cell functions
# ---------------------------------------------------------------------------------
def _probe_cell(config: ExperimentConfig, cell: Cell) -> dict[str, Any]:
    from ..features.finetune import linear_probe_cell

    d = _cell_data(config, cell)
    tau = reference_tau(config, d.ref)
    out = linear_probe_cell(d.X, d.y, d.test.features, d.test.labels, tau=tau,
                            seed=cell.seed, device=suite_device(config))
    out["extra"].update(d.extra)
    return out


def _logreg_cell(config: ExperimentConfig, cell: Cell) -> dict[str, Any]:
    """The field's standard probe: tuned L2 logistic regression on the encoder's full
    (not projected) features of the cell's target rows (:func:`taskrel.logistic_probe`)."""
    from ..probe import logistic_probe
    from .inputs import unit_task

    tgt = unit_task(config, (cell.encoder, cell.target, "train"))
    test = unit_task(config, (cell.encoder, cell.target, "test"))
    y = np.asarray(tgt.labels)
    sub, single = drop_single_row_classes(y, fraction_rows(y, cell.fraction, cell.seed))
    p = logistic_probe(tgt.features[sub], y[sub], test.features, test.labels,
                       seed=cell.seed)
    extra = {"loss": p.loss, "train_accuracy": p.train_accuracy, "n_target": int(sub.size),
             **p.settings}
    if single:
        extra["dropped_single_row_classes"] = single
    return {"value": p.accuracy, "extra": extra}


def _rel_kwargs(config: ExperimentConfig, ref: Any, seed: int) -> dict[str, Any]:
    kw: dict[str, Any] = {"seed": seed, "device": suite_device(config), "progress": False}
    if ref.test_features is not None:
        kw.update(reference_test_features=ref.test_features,
                  reference_test_labels=ref.test_labels)
    for k in ("recipe", "tau", "b_mode"):
        if k in config.options:
            kw[k] = config.options[k]
    return kw


def _relatedness_cell(config: ExperimentConfig, cell: Cell) -> dict[str, Any]:
    """``task_relatedness`` and, without target labels, ``task_relatedness_unlabeled``
    (and their ``*_fixed`` twins: the same, on the reference ``cell.reference`` names,
    which :func:`taskrel.experiments.suite.cell_reference` makes the config's)."""
    d = _cell_data(config, cell)
    r = relate_rows(d.ref.features, d.ref.labels, d.X, d.y,
                    labelled=cell.estimator in ("task_relatedness", FIXED),
                    kwargs=_rel_kwargs(config, d.ref, cell.seed), extra=d.extra)
    if isinstance(r, dict):
        return r
    return {"value": r.score, "extra": {**d.extra, **r.to_dict()}}


def relate_rows(ref_X: Any, ref_y: Any, X: np.ndarray, y: np.ndarray, *, labelled: bool,
                kwargs: dict[str, Any], extra: dict[str, Any]) -> Any:
    """``task_relatedness`` on a cell's rows, with or without the target labels ``y``:
    the result, or the cell's "not applicable" row (``value`` None + the reason).

    Without labels the target's class count is passed on, and a target with more
    classes than the reference is not applicable (pseudo-classes are reference
    classes); with more target classes the label map is learned unless ``kwargs``
    names a ``b_mode``. An input error raised by the rows themselves (e.g.
    pseudo-labels of 15 rows that fall into one class) is recorded, not retried.
    """
    from ..relatedness import task_relatedness

    kw = dict(kwargs)
    k_t, k_r = int(np.unique(y).size), int(np.unique(np.asarray(ref_y)).size)
    if not labelled:
        if k_t > k_r:
            return _not_applicable(extra, (
                f"pseudo-labels from the reference classifier give at most {k_r} "
                f"classes; the target has {k_t}"))
        kw["n_target_classes"] = k_t
    if k_t > k_r and "b_mode" not in kw:
        kw["b_mode"] = "learned"  # the sparse label map needs K_T <= K_R
    try:
        return task_relatedness(ref_X, ref_y, X, y if labelled else None, **kw)
    except TaskrelInputError as exc:
        return _not_applicable(extra, str(exc))


def _score_cell(config: ExperimentConfig, cell: Cell) -> dict[str, Any]:
    """Any registered score of ``taskrel.scores``."""
    from ..io import Task
    from ..scores import compute_score, get_score

    d = _cell_data(config, cell)
    spec = get_score(cell.estimator)
    if "source_probs" in spec.inputs or "source_labels" in spec.inputs:
        if d.probs is None:
            return _not_applicable(d.extra, "encoder has no source head")
    task = Task(features=d.X, labels=d.y, source_probs=d.probs)
    source = Task(features=d.ref.features, labels=d.ref.labels) \
        if "source_task" in spec.inputs else None
    try:
        # Torch estimators follow options.device ("auto": the GPU when there is one).
        dev = {"device": suite_device(config)} if spec.gpu else {}
        v = compute_score(cell.estimator, task, source=source, **dev)
    except TaskrelInputError as exc:
        # A property of the cell's shapes (e.g. H-score needs n > d): recorded, not retried.
        return _not_applicable(d.extra, str(exc))
    return {"value": float(v), "extra": d.extra}


def _finetune_cell(config: ExperimentConfig, cell: Cell) -> dict[str, Any]:
    """Fine-tune the encoder end to end on the cell's target rows (raw inputs)."""
    from ..features.finetune import finetune

    enc = suite_encoder(config, cell.encoder)
    ds = suite_dataset(config.target(cell.target))
    n_key = "max_reference" if cell.target == REFERENCE_TARGET else "max_target"
    xtr, ytr, xte, yte = raw_rows(ds, config.options.get(n_key, None),
                                  config.options.get("max_test", None))
    sub = fraction_rows(ytr, cell.fraction, cell.seed)
    xtr = xtr[sub] if isinstance(xtr, np.ndarray) else [xtr[i] for i in sub]
    ytr = ytr[sub]
    kw = {k: v for k, v in config.finetune.items()
          if k not in ("image_size", "max_tokens", "augment")}
    if ds.modality == "text":
        module, pre = _text_module(enc, int(config.finetune.get("max_tokens", 128)))
    else:
        module, pre = enc.torch_module(), enc.preprocess
    if "lrs" in kw:  # converged recipe: lr chosen on a validation split, early stopping
        from ..features.finetune import finetune_selected, shift_augment

        aug = config.finetune.get("augment")  # checked by reproduce.check_config
        kw["lrs"] = tuple(kw["lrs"])
        r = finetune_selected(module, pre, xtr, ytr, xte, yte, seed=cell.seed,
                              augment=shift_augment() if aug and ds.modality == "image"
                              else None, device=suite_device(config), **kw)
    else:
        r = finetune(module, pre, xtr, ytr, xte, yte, seed=cell.seed,
                     device=suite_device(config), **kw)
    return {"value": r.test_accuracy, "extra": r.to_dict()}


def _text_module(enc: Any, max_tokens: int) -> tuple[Any, Any]:
    """A sentence-transformers encoder as (module, preprocess) for ``finetune``: the
    preprocess stacks token ids and attention mask into one (B, 2, L) tensor."""
    import torch

    st = enc.module
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


#: The suite's own estimators; every other name is a registered score (``_score_cell``).
_REGISTRY: dict[str, Estimator] = {
    "linear_probe": Estimator("linear_probe", _probe_cell, None),
    "finetune": Estimator("finetune", _finetune_cell, None),
    "logreg": Estimator("logreg", _logreg_cell, None),
    "task_relatedness": Estimator("task_relatedness", _relatedness_cell,
                                  "task_relatedness"),
    UNLABELED: Estimator(UNLABELED, _relatedness_cell, "task_relatedness"),
    FIXED: Estimator(FIXED, _relatedness_cell, "task_relatedness"),
    UNLABELED_FIXED: Estimator(UNLABELED_FIXED, _relatedness_cell, "task_relatedness"),
}
#: The ground truths: target test accuracy of a linear probe and of fine-tuning.
TRUTHS = tuple(name for name, est in _REGISTRY.items() if est.truth)
