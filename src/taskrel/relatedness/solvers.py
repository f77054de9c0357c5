"""Stage 5: the feature map (A, b) — and B, D when learned — from a solver registry.

Every solver has one signature, ``solve(problem, B, D) -> FeatureMap``, for the
starting label map ``B`` and class prior ``D``. ``b_mode="learned"`` is handled inside
each solver (the paper's LearnedAll updates B and D by gradient).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .fit_fast import EXACT, Couplings, fit_fast
from .fit_paper import PAPER_STEPS, paper_fit
from .maps import FeatureMap, FitProblem
from .transport import build_groups
from .transport_batched import batched_w1, fit_affine_batched

__all__ = ["SOLVERS", "Solver", "solve_fast", "solve_paper", "solve_batched",
           "solver_name", "merge_record", "FAST_MAX_ITER"]

Solver = Callable[[FitProblem, NDArray[np.float64], NDArray[np.float64]], FeatureMap]
#: Alternations of the fast recipe unless ``max_iter`` says otherwise.
FAST_MAX_ITER = 50


def _fast_map(p: FitProblem, B: NDArray[np.float64], D: NDArray[np.float64],
              max_iter: int, couplings: Couplings = EXACT) -> FeatureMap:
    groups = build_groups(p.yr, p.y_fit, B, D, p.class_weights,
                          max_per_class=p.cfg.max_per_class, rng=p.rng)
    return fit_fast(p.head, p.Zr, p.Zt, groups, B, D, p.cfg.ridges, max_iter, p.cfg.tol,
                    p.rng, couplings)


def _paper_map(p: FitProblem, warm: FeatureMap | None = None, **kw: Any) -> FeatureMap:
    """The official loop on ``p`` (``kw``: fixed or initial B and D, warm start, tol)."""
    Zr, yr = p.Zr, p.yr
    ce_sum = np.array([p.head.loss(Zr[yr == j], yr[yr == j]).sum()
                       for j in range(p.pi_R.size)])
    out = paper_fit(Zr, yr, p.Zt, p.y_fit, pi_R=p.pi_R, pi_T=p.pi_T, ce_sum=ce_sum,
                    batch_size=p.cfg.batch_size, seed=p.cfg.seed, device=p.cfg.torch_device,
                    progress=p.cfg.progress, steps=p.cfg.max_iter or PAPER_STEPS, **kw)
    record = dict(warm.record) if warm is not None else {}
    record.update(paper_loop_seconds=out["loop_seconds"], paper_loop_steps=out["steps"],
                  paper_stop_reason=out["stop_reason"])  # "tol" or "max_steps"
    return FeatureMap(out["A"], out["A_bar"], out["b"], out["B"], out["D"], out["steps"],
                      out["converged"], out["history"], float(out["history"][-1]), record)


def solve_fast(p: FitProblem, B: NDArray[np.float64], D: NDArray[np.float64],
               couplings: Couplings = EXACT) -> FeatureMap:
    """The fast recipe; with ``b_mode="learned"`` it warm-starts LearnedAll, which then
    stops on convergence (``tol``) instead of a step count."""
    if p.cfg.b_mode != "learned":
        return _fast_map(p, B, D, p.cfg.max_iter or FAST_MAX_ITER, couplings)
    warm = _fast_map(p, B, D, FAST_MAX_ITER, couplings)
    D0 = np.maximum(D, 1e-3)
    return _paper_map(p, warm, B_fixed=None, D_fixed=None, B_init=0.9 * B + 0.1 / B.shape[0],
                      D_init=D0 / D0.sum(), A0=warm.A, b0=warm.b, tol=p.cfg.tol)


def solve_paper(p: FitProblem, B: NDArray[np.float64], D: NDArray[np.float64]
                ) -> FeatureMap:
    """The official code's loop: B and D fixed, or learned from its own start."""
    if p.cfg.b_mode == "learned":
        return _paper_map(p, B_fixed=None, D_fixed=None)
    return _paper_map(p, B_fixed=B, D_fixed=D)


def solve_batched(p: FitProblem, B: NDArray[np.float64], D: NDArray[np.float64]
                  ) -> FeatureMap:
    """The fast recipe with every class coupled at once by batched entropic OT on
    ``device`` (:mod:`~taskrel.relatedness.transport_batched`): the GPU solver."""
    dev = p.cfg.torch_device
    couplings = Couplings(partial(batched_w1, device=dev),
                          partial(fit_affine_batched, device=dev))
    return solve_fast(p, B, D, couplings)


#: Feature-map solvers by recipe name.
SOLVERS: dict[str, Solver] = {"fast": solve_fast, "paper": solve_paper,
                              "batched": solve_batched}


def solver_name(recipe: str, device: Any) -> str:
    """The solver a recipe runs on a device: on a GPU the fast recipe's per-class exact
    couplings (CPU-bound) give way to the batched solver; otherwise the recipe's own."""
    if recipe == "fast" and getattr(device, "type", str(device)) == "cuda":
        return "batched"
    return recipe


def merge_record(settings: dict[str, Any], record: dict[str, Any]) -> None:
    """Fold one solver call's record into the result's settings: the ``paper_loop_*``
    counters add up over calls, every other key is the latest call's."""
    for key, value in record.items():
        if key.startswith("paper_loop_"):
            settings[key] = settings.get(key, 0) + value
        else:
            settings[key] = value
