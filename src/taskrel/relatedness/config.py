"""The engine's settings, checked once, before any computation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from .._internal.devices import resolve_device
from .._internal.validation import check_choice, check_positive, check_seed
from ..exceptions import TaskrelInputError
from .tau import TAU_RULES

__all__ = ["RelatednessConfig", "RECIPES", "B_MODES", "LABEL_SOURCES", "CLASS_WEIGHTS",
           "W1_METHODS", "RIDGE_GRID", "check_label_map"]

RECIPES = ("fast", "paper", "batched")
B_MODES = ("sparse", "learned", "fixed")
LABEL_SOURCES = ("classifier", "kmeans")
CLASS_WEIGHTS = ("prior", "uniform")
W1_METHODS = ("exact", "minibatch", "sinkhorn", "auto")
#: Relative ridge values tried by ridge="auto" (strongest first).
RIDGE_GRID = (100.0, 10.0, 1.0, 0.1)


@dataclass(frozen=True)
class RelatednessConfig:
    """Every setting of :func:`~taskrel.task_relatedness` that is not data.

    Constructing one validates every field (one-line :class:`TaskrelInputError` naming
    the argument) and normalizes it; ``ridges`` and ``torch_device`` are derived. The
    parameters mean what they mean in :func:`~taskrel.task_relatedness`.
    """

    tau: float | str = "auto"
    recipe: str = "fast"
    b_mode: str = "sparse"
    B: NDArray[np.float64] | None = None
    pseudo_labels: str = "classifier"
    n_target_classes: int | None = None
    class_weights: str = "prior"
    standardize: bool = True
    max_per_class: int | None = 500
    max_eval_per_class: int | None = 2000
    w1_method: str = "exact"
    max_rows_per_class: int | None = 10000
    max_iter: int | None = None
    tol: float = 1e-4
    ridge: float | str = "auto"
    batch_size: int | None = None
    seed: int = 0
    device: Any = "auto"
    progress: bool = False
    ridges: tuple[float, ...] = field(init=False, repr=False)
    torch_device: torch.device = field(init=False, repr=False)

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        put("recipe", check_choice(self.recipe, "recipe", RECIPES))
        put("b_mode", check_choice(self.b_mode, "b_mode", B_MODES))
        put("pseudo_labels", check_choice(self.pseudo_labels, "pseudo_labels",
                                          LABEL_SOURCES))
        put("class_weights", check_choice(self.class_weights, "class_weights",
                                          CLASS_WEIGHTS))
        put("tol", check_positive(self.tol, "tol"))
        if isinstance(self.ridge, str):
            check_choice(self.ridge, "ridge", ("auto",))
            put("ridges", RIDGE_GRID)
        else:
            put("ridges", (check_positive(self.ridge, "ridge", allow_zero=True),))
        put("seed", check_seed(self.seed, "seed"))
        put("w1_method", check_choice(self.w1_method, "w1_method", W1_METHODS))
        for name in ("max_per_class", "max_eval_per_class"):
            val = getattr(self, name)
            if val is not None and check_positive(val, name, integer=True) < 2:
                raise TaskrelInputError(f"`{name}` must be >= 2 or None; got {val!r}")
        for name in ("max_iter", "batch_size", "max_rows_per_class", "n_target_classes"):
            if getattr(self, name) is not None:
                put(name, check_positive(getattr(self, name), name, integer=True))
        put("torch_device", resolve_device(self.device))
        if isinstance(self.tau, str):
            check_choice(self.tau, "tau", TAU_RULES)
        else:
            check_positive(self.tau, "tau")
        if self.b_mode == "fixed":
            put("B", check_label_map(self.B))
        elif self.B is not None:
            raise TaskrelInputError(
                f"`B` is used only with b_mode='fixed'; got a B with b_mode={self.b_mode!r}")

    @property
    def middle_ridge(self) -> float:
        """The ridge of the label-free alignments (the middle of the grid)."""
        return self.ridges[len(self.ridges) // 2]

    def record(self) -> dict[str, Any]:
        """The settings every result reports (``RelatednessResult.settings``)."""
        return {
            "recipe": self.recipe,
            "b_mode": self.b_mode,
            "class_weights": self.class_weights,
            "standardize": self.standardize,
            "max_per_class": self.max_per_class,
            "max_eval_per_class": self.max_eval_per_class,
            "w1_method": self.w1_method,
            "max_rows_per_class": self.max_rows_per_class,
            "tol": self.tol,
            "ridge": self.ridge if isinstance(self.ridge, str) else float(self.ridge),
            "seed": self.seed,
            "device": str(self.torch_device),
        }


def check_label_map(B: Any, K_T: int | None = None, K_R: int | None = None
                    ) -> NDArray[np.float64]:
    """A user's ``B`` (b_mode='fixed'): column-stochastic, of shape (K_T, K_R) when given."""
    if B is None:
        raise TaskrelInputError("b_mode='fixed' needs `B`; got None")
    try:
        Bm = np.asarray(B, dtype=np.float64)
    except (TypeError, ValueError):
        raise TaskrelInputError(
            f"`B` must be a numeric (K_T, K_R) array; got {type(B).__name__}") from None
    if Bm.ndim != 2:
        raise TaskrelInputError(f"`B` must be 2-D (K_T, K_R); got shape {Bm.shape}")
    if K_T is not None and Bm.shape != (K_T, K_R):
        raise TaskrelInputError(
            f"`B` must have shape (K_T, K_R) = ({K_T}, {K_R}); got {Bm.shape}"
        )
    if not np.all(np.isfinite(Bm)) or np.any(Bm < 0) or not np.allclose(
            Bm.sum(0), 1.0, atol=1e-6):
        raise TaskrelInputError(
            "`B` columns must be distributions (non-negative, summing to 1); "
            f"column sums range {Bm.sum(0).min():.4g}..{Bm.sum(0).max():.4g}"
        )
    return Bm
