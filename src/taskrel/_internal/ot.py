"""Exact optimal transport, one way for the whole package.

Every exact coupling goes through POT's network simplex (``ot.emd`` / ``ot.emd2``)
with one iteration cap and one policy on non-convergence: a
:class:`~taskrel.exceptions.ConvergenceWarning` that names the argument to lower.
"""

from __future__ import annotations

import warnings

import numpy as np
import ot
from numpy.typing import NDArray

from ..exceptions import ConvergenceWarning

__all__ = ["exact_plan", "exact_cost", "EMD_MIN_ITER", "EMD_ITER_PER_ENTRY"]

#: Network-simplex iteration cap: at least this many ...
EMD_MIN_ITER = 100_000
#: ... and this many per entry of the cost matrix (POT's default cap of 100,000 is
#: reached on a few-thousand-point problem).
EMD_ITER_PER_ENTRY = 50


def _max_iter(M: NDArray[np.float64]) -> int:
    return max(EMD_MIN_ITER, EMD_ITER_PER_ENTRY * M.size)


def _check(log: dict, knob: str, stacklevel: int) -> None:
    if log.get("warning"):
        warnings.warn(
            f"exact OT did not converge ({log['warning']}); results may be approximate: "
            f"lower {knob}", ConvergenceWarning, stacklevel=stacklevel + 1)


def exact_plan(a: NDArray[np.float64], b: NDArray[np.float64], M: NDArray[np.float64],
               *, knob: str, stacklevel: int = 3) -> NDArray[np.float64]:
    """The optimal coupling of masses ``a`` and ``b`` under cost ``M`` (n_a x n_b).

    ``knob`` names what the caller's user lowers to make the problem smaller (it goes
    into the warning when the simplex stops at its cap).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # reported below, once, our way
        G, log = ot.emd(a, b, M, numItermax=_max_iter(M), log=True)
    _check(log, knob, stacklevel)
    return G


def exact_cost(a: NDArray[np.float64], b: NDArray[np.float64], M: NDArray[np.float64],
               *, knob: str, stacklevel: int = 3) -> float:
    """The optimal transport cost of ``a`` to ``b`` under ``M`` (see :func:`exact_plan`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        cost, log = ot.emd2(a, b, M, numItermax=_max_iter(M), log=True)
    _check(log, knob, stacklevel)
    return float(cost)
