"""The Lipschitz target tau of the reference head: one rule for the whole package."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._internal.validation import check_choice, check_positive
from ..exceptions import TaskrelInputError
from ..heads import Standardizer

__all__ = ["auto_tau", "resolve_tau", "PAPER_TAU", "TAU_RULES"]

#: The official code's Lipschitz target for large-scale (ImageNet-encoder) runs.
PAPER_TAU = 0.02
#: Named rules a ``tau`` argument may give instead of a number.
TAU_RULES = ("auto", "paper")


def auto_tau(Z: NDArray[np.float64], y: NDArray[np.int64]) -> float:
    r"""taskrel's default Lipschitz target: :math:`\tau = \log K / \mathrm{median}_{j<l}
    \lVert \mu_j - \mu_l\rVert_2` on standardized reference features.

    It makes :math:`\tau` dimensionless in the geometry of the reference task: moving
    from one class mean to another may change the loss by about :math:`\log K`, the
    loss of a uniform guess. So a head under this constraint can separate the
    reference classes, and :math:`\tau W` reads as "distribution mismatch measured in
    units of class separation".
    """
    K = int(y.max()) + 1
    mus = np.stack([Z[y == j].mean(0) for j in range(K)])
    diff = mus[:, None, :] - mus[None, :, :]
    dist = np.sqrt((diff**2).sum(-1))[np.triu_indices(K, 1)]
    med = float(np.median(dist))
    if med <= 0:
        raise TaskrelInputError(
            "`reference_features`: all class means coincide, so tau='auto' is undefined;"
            " pass a numeric `tau`"
        )
    return math.log(K) / med


def resolve_tau(tau: Any, features: ArrayLike | None = None, labels: ArrayLike | None = None,
                *, standardize: bool = True, name: str = "tau") -> tuple[float, str]:
    """The value of a ``tau`` argument and the rule that gave it.

    ``tau`` is a positive number (rule ``"given"``), ``"paper"`` (:data:`PAPER_TAU`) or
    ``"auto"`` (:func:`auto_tau` on ``features`` and ``labels``, standardized first
    unless ``standardize=False``). Returns ``(value, rule)``.

    >>> resolve_tau("paper")
    (0.02, 'paper')
    >>> resolve_tau(0.5)
    (0.5, 'given')
    """
    if not isinstance(tau, str):
        return check_positive(tau, name), "given"
    rule = check_choice(tau, name, TAU_RULES)
    if rule == "paper":
        return PAPER_TAU, rule
    if features is None or labels is None:
        raise TaskrelInputError(f"`{name}`='auto' needs the reference features and labels")
    Z = np.asarray(features, dtype=np.float64)
    if standardize:
        Z = Standardizer.fit(Z).transform(Z)
    _, y = np.unique(np.asarray(labels), return_inverse=True)
    return auto_tau(Z, y), rule
