"""Task-relatedness (Mehra, Zhang & Hamm) registered as a score."""

from __future__ import annotations

from typing import Any

from numpy.typing import ArrayLike

from ._registry import register_score


@register_score(
    "task_relatedness", higher_is_better=False,
    inputs=("source_task", "features", "labels"),
    summary="task-relatedness's score: the reweighted reference loss (reference -> target)",
    paper="Mehra, Zhang, Hamm, NeurIPS 2024", gpu=True,
)
def task_relatedness_score(source_features: ArrayLike, source_labels: ArrayLike,
                           target_features: ArrayLike, target_labels: ArrayLike,
                           **kwargs: Any) -> float:
    r"""Task-relatedness as a score: ``task_relatedness(...).score``, the reweighted
    reference loss (the bound's first term; :attr:`taskrel.RelatednessResult.score`).

    The bound (reweighted reference loss + label mismatch + Lipschitz x W1) ranked
    encoders worse than this term alone on both benchmarks (``docs/results/ablation.md``);
    ``task_relatedness(...).bound`` still gives it. ``kwargs`` go to
    :func:`taskrel.task_relatedness` (default ``progress`` off).

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
    return result.score
