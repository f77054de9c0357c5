"""Task-relatedness (Mehra, Zhang & Hamm) registered as a score."""

from __future__ import annotations

from typing import Any

from numpy.typing import ArrayLike

from ._registry import register_score


@register_score(
    "task_relatedness", higher_is_better=False,
    inputs=("source_task", "features", "labels"),
    summary="the task-relatedness bound on the target loss (reference -> target)",
    paper="Mehra, Zhang, Hamm, NeurIPS 2024", gpu=True,
)
def task_relatedness_score(source_features: ArrayLike, source_labels: ArrayLike,
                           target_features: ArrayLike, target_labels: ArrayLike,
                           **kwargs: Any) -> float:
    r"""The task-relatedness bound as a score: ``task_relatedness(...).bound``.

    Bound = reweighted reference loss + label mismatch + Lipschitz x W1 (see
    :func:`taskrel.task_relatedness`, to which ``kwargs`` are passed; the default
    ``progress`` is off).

    Returns
    -------
    float
        Lower means more related, better expected transfer.

    References
    ----------
    Mehra, Zhang, Hamm. Understanding the Transferability of Representations via
    Task-Relatedness. NeurIPS 2024.
    """
    from ..relatedness import task_relatedness

    kwargs.setdefault("progress", False)
    result = task_relatedness(source_features, source_labels, target_features,
                              target_labels, **kwargs)
    return float(result.bound)
