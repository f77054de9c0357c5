"""Stage 7: the run-time checks of the bound's assumptions (warnings, and a record)."""

from __future__ import annotations

import math
import warnings

import numpy as np
from numpy.typing import NDArray

from ..exceptions import AssumptionWarning

__all__ = ["check_assumptions", "check_prior_matching", "NEAR_CHANCE", "TAU_SLACK",
           "MAX_CONDITION", "PRIOR_MATCH_TOL"]

#: ``settings["reference_near_chance"]`` (and an AssumptionWarning) when the reference
#: classifier's test loss exceeds this fraction of log K_R.
NEAR_CHANCE = 0.9
#: The head's measured gradient norm may exceed tau by this factor before a warning.
TAU_SLACK = 1.25
#: Condition number of A above which the map counts as nearly singular.
MAX_CONDITION = 1e8
#: L1 distance between B D and pi_T above which prior matching counts as violated
#: (a sparse or matched B meets it to rounding, ~1e-16).
PRIOR_MATCH_TOL = 1e-6


def check_prior_matching(B: NDArray[np.float64], D: NDArray[np.float64],
                         pi_T: NDArray[np.float64], b_mode: str) -> dict[str, object]:
    r"""Check the constraint :math:`BD = \pi_T` the bound's derivation needs (the
    label-constrained W1 is finite only then); warn when it is violated.

    The learned label map (``b_mode="learned"``, the paper's LearnedAll) only penalizes
    :math:`\lVert\pi_T - BD\rVert^2`, so it may end off the constraint: the
    reported bound is then that of a transformed reference whose class prior is
    :math:`BD`, not the target's.

    Returns the record stored as ``settings["prior_matching"]``: the L1 distance,
    the largest per-class gap and whether the constraint holds.
    """
    gap = np.abs(B @ D - pi_T)
    l1 = float(gap.sum())
    holds = bool(l1 <= PRIOR_MATCH_TOL)
    if not holds:
        warnings.warn(
            f"prior matching B D = pi_T is violated (L1 distance {l1:.3g}, largest class "
            f"gap {float(gap.max()):.3g}, b_mode={b_mode!r}): the bound's derivation needs "
            "equality, so the bound holds for a target with class prior B D, not the "
            "target's own; see result.prior_mismatch",
            AssumptionWarning, stacklevel=4,
        )
    return {"l1": l1, "max_gap": float(gap.max()), "holds": holds}


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
