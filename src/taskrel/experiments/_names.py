"""Names shared by the suite grid and the estimator cells, with no import of either
(the grid needs to know which estimators read a reference task, the cells define them;
keeping these here breaks what would be an import cycle suite -> estimators -> suite)."""

from __future__ import annotations

__all__ = ["UNLABELED", "FIXED", "UNLABELED_FIXED", "ALIASES", "SOURCE_SEP",
           "reads_reference", "split_source"]

UNLABELED = "task_relatedness_unlabeled"
#: Task-relatedness (labelled, unlabelled) that reads the config's reference for every
#: encoder, also under ``options.reference_mode = "own_source"``.
FIXED = "task_relatedness_fixed"
UNLABELED_FIXED = "task_relatedness_unlabeled_fixed"
#: Cells that read a reference task beyond the feature projection: task-relatedness
#: (and its tau for the probe) and every score whose inputs include ``source_task``.
_READS_REFERENCE = ("task_relatedness", UNLABELED, "linear_probe")
#: The suite's own estimators that read no reference (the other ground truths).
_NO_REFERENCE = ("finetune", "logreg")
#: Old estimator names in configs -> names registered in taskrel.scores.
ALIASES = {"pactran": "pactran_gaussian"}
#: ``<base>_on_<dataset>``: the base encoder trained (small CNN) or fine-tuned
#: (EfficientNet-Lite) on a source dataset other than the reference first.
SOURCE_SEP = "_on_"


def split_source(name: str) -> tuple[str, str | None]:
    """``"smallcnn_on_mnist5k"`` -> ``("smallcnn", "mnist5k")``; other names -> (name, None).

    Examples
    --------
    >>> split_source("effnet_lite0_on_mnist5k"), split_source("effnet_lite1")
    (('effnet_lite0', 'mnist5k'), ('effnet_lite1', None))
    """
    base, sep, src = name.partition(SOURCE_SEP)
    return (base, src) if sep and src else (name, None)


def reads_reference(name: str, *, own: bool = False) -> bool:
    """Whether cells of estimator ``name`` read a reference task: task-relatedness
    (labelled or not), the tau-probe (its tau comes from the reference) and every
    registered score whose inputs include ``source_task`` (OTCE, OT-NCE).

    With ``own=True``: whether the cell reads the encoder's own source under
    ``options.reference_mode = "own_source"``, i.e. the same less the ``*_fixed``
    estimators, which always read the config's reference.
    """
    from ..exceptions import TaskrelInputError
    from ..scores import get_score

    if name in (FIXED, UNLABELED_FIXED):
        return not own
    if name in _READS_REFERENCE:
        return True
    if name in _NO_REFERENCE:
        return False
    try:
        return "source_task" in get_score(ALIASES.get(name, name)).inputs
    except TaskrelInputError:
        return False
