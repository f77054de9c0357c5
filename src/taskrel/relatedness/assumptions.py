"""Stage 7: the run-time checks of the bound's assumptions (warnings, and a record)."""

from __future__ import annotations

import math
import warnings

import numpy as np
from numpy.typing import NDArray

from ..exceptions import AssumptionWarning

__all__ = ["check_assumptions", "NEAR_CHANCE", "TAU_SLACK", "MAX_CONDITION"]

#: ``settings["reference_near_chance"]`` (and an AssumptionWarning) when the reference
#: classifier's test loss exceeds this fraction of log K_R.
NEAR_CHANCE = 0.9
#: The head's measured gradient norm may exceed tau by this factor before a warning.
TAU_SLACK = 1.25
#: Condition number of A above which the map counts as nearly singular.
MAX_CONDITION = 1e8


def check_assumptions(*, tau: float, lipschitz_reference_coords: float,
                      reference_loss: float, reference_accuracy: float, n_reference: int,
                      A: NDArray[np.float64]) -> tuple[bool, float]:
    """Warn where an assumption of the bound is only approximately met.

    Returns ``(reference_near_chance, condition_number_of_A)``.
    """
    if math.isfinite(tau) and lipschitz_reference_coords > TAU_SLACK * tau:
        warnings.warn(
            f"the reference head's measured gradient norm {lipschitz_reference_coords:.4g} "
            f"exceeds tau={tau:.4g} by more than 25%; the Lipschitz assumption is only "
            "approximately met (the bound uses the measured value)",
            AssumptionWarning, stacklevel=3,
        )
    # A reference classifier near chance makes a small bound out of nothing: its loss is
    # about log K_R and its Lipschitz x W1 is small, so a collapsed encoder outranks
    # informative ones (measured: EfficientNet-Lite2 at 32 px in the vision suite).
    near_chance = bool(reference_loss > NEAR_CHANCE * math.log(n_reference))
    if near_chance:
        warnings.warn(
            f"the reference classifier is near chance on its test split (loss "
            f"{reference_loss:.3g} vs log K_R = {math.log(n_reference):.3g}, accuracy "
            f"{reference_accuracy:.3g}): these features carry little class information, "
            "and a bound made mostly of that loss can rank this encoder above informative "
            "ones",
            AssumptionWarning, stacklevel=3,
        )
    d = A.shape[0]
    cond = 1.0 if np.array_equal(A, np.eye(d)) else float(np.linalg.cond(A))
    if not math.isfinite(cond) or cond > MAX_CONDITION:
        warnings.warn(
            f"the feature map A is nearly singular (condition number {cond:.3g}); "
            "raise `ridge`", AssumptionWarning, stacklevel=3,
        )
    return near_chance, cond
