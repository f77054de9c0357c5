"""What a feature-map solver is given and what it returns (one type for every solver)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..heads import LinearHead
from .config import RelatednessConfig

__all__ = ["FitProblem", "FeatureMap"]


@dataclass(frozen=True)
class FitProblem:
    """A reference and a labelled (or pseudo-labelled) target, ready for a solver.

    ``Zr``/``yr``: standardized reference train rows and labels; ``Zt``/``y_fit``:
    standardized target train rows and their labels; ``pi_R``/``pi_T`` the two class
    priors; ``class_weights`` the weights of the per-class W1 terms; ``rng`` the
    engine's generator (solvers draw their subsamples from it, in call order).
    """

    head: LinearHead
    Zr: NDArray[np.float64]
    yr: NDArray[np.int64]
    Zt: NDArray[np.float64]
    y_fit: NDArray[np.int64]
    pi_R: NDArray[np.float64]
    pi_T: NDArray[np.float64]
    class_weights: NDArray[np.float64]
    cfg: RelatednessConfig
    rng: np.random.Generator


@dataclass(frozen=True)
class FeatureMap:
    """A solver's transformation of the reference: z -> A z + b, label map B, prior D.

    ``score`` is what the solver minimized (the fast recipe: held-out Lipschitz x W1
    of the chosen candidate; the paper recipe: its last loss), so two fits of one
    problem compare. ``record`` holds the solver's settings for the result
    (``ridge_*`` keys of the fast recipe, ``paper_loop_*`` of the paper loop).
    """

    A: NDArray[np.float64]
    A_inv: NDArray[np.float64]
    b: NDArray[np.float64]
    B: NDArray[np.float64]
    D: NDArray[np.float64]
    iterations: int
    converged: bool
    history: list[float]
    score: float
    record: dict[str, Any] = field(default_factory=dict)
