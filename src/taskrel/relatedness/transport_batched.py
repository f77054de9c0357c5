r"""Batched entropic couplings and the affine fit in torch, all classes at once.

The GPU counterpart of :mod:`taskrel.relatedness.transport`. Every class group is
padded to the largest group (padded points carry zero mass) and the couplings of all
groups are computed together: a log-domain Sinkhorn (POT's batched Bregman projection,
``ot.batch.bregman_log_projection_batch``) under :math:`\varepsilon`-scaling — the
regularization starts at the largest cost and halves down to ``EPS_REL`` times the
mean cost, each stage warm-started from the previous potentials. The IRLS update of
(A, b) is the same closed form as the exact solver's, in torch.

The entropic plan is denser than the exact one and its cost is above the exact W1 by
at most :math:`\varepsilon \log(n m)`; the fitted map is chosen by it, while the bound
is still measured with exact W1 on held-out rows (``w1_method``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from ot.batch import bregman_log_projection_batch

from ..exceptions import ConvergenceWarning
from .transport import IRLS_EPS, Group, mean_shift

__all__ = ["PaddedGroups", "pad_groups", "batched_couplings", "fit_affine_batched", "batched_w1",
           "EPS_REL", "EPS_DECAY", "SINKHORN_ITER", "SINKHORN_TOL", "WARM_START_FACTOR"]

#: Final entropic regularization, relative to the mean cost of the batch.
EPS_REL = 1e-3
#: Factor between successive regularizations of the epsilon-scaling.
EPS_DECAY = 0.5
#: Bregman iterations per epsilon stage, and their marginal tolerance.
SINKHORN_ITER = 1000
SINKHORN_TOL = 1e-7
#: A warm start (potentials of the previous alternation) begins this many times above
#: the final regularization instead of at the largest cost.
WARM_START_FACTOR = 8.0


@dataclass(frozen=True)
class PaddedGroups:
    """Groups as padded index and mass tensors: K groups x (n reference, m target)."""

    ref_idx: torch.Tensor
    ref_mass: torch.Tensor
    tgt_idx: torch.Tensor
    tgt_mass: torch.Tensor
    weight: torch.Tensor


def pad_groups(groups: list[Group], device: torch.device) -> PaddedGroups:
    """Pad every group to the largest one; padded rows point at row 0 with mass 0."""
    K = len(groups)
    n = max(g.ref_rows.size for g in groups)
    m = max(g.tgt_rows.size for g in groups)
    ref_idx, tgt_idx = np.zeros((K, n), np.int64), np.zeros((K, m), np.int64)
    ref_mass, tgt_mass = np.zeros((K, n)), np.zeros((K, m))
    for k, g in enumerate(groups):
        ref_idx[k, :g.ref_rows.size] = g.ref_rows
        ref_mass[k, :g.ref_rows.size] = g.ref_mass
        tgt_idx[k, :g.tgt_rows.size] = g.tgt_rows
        tgt_mass[k, :g.tgt_rows.size] = 1.0 / g.tgt_rows.size

    def t(a: NDArray[Any]) -> torch.Tensor:
        return torch.as_tensor(a, device=device)

    return PaddedGroups(t(ref_idx), t(ref_mass), t(tgt_idx), t(tgt_mass),
                        t(np.array([g.weight for g in groups], dtype=np.float64)))


def batched_couplings(Xs: torch.Tensor, Xt: torch.Tensor, pg: PaddedGroups,
                      warm: tuple[torch.Tensor, torch.Tensor] | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """Entropic plans of every group at once (epsilon-scaling), and their costs.

    ``Xs``: transformed reference rows indexed by ``pg.ref_idx``; ``Xt``: target rows;
    ``warm``: dual potentials of a nearby problem (the previous alternation), which
    start the scaling near its end. Returns (plans, costs, potentials); plans and
    costs are (K, n, m), plans with the groups' marginals.
    """
    C = torch.cdist(Xs[pg.ref_idx], Xt[pg.tgt_idx])
    valid = (pg.ref_mass[:, :, None] > 0) & (pg.tgt_mass[:, None, :] > 0)
    eps_final = EPS_REL * float(C[valid].mean())
    if warm is None:
        eps = max(float(C[valid].max()), eps_final)
        F, G = torch.zeros_like(pg.ref_mass), torch.zeros_like(pg.tgt_mass)
    else:
        eps = WARM_START_FACTOR * eps_final
        F, G = warm
    while True:
        out = bregman_log_projection_batch((F[:, :, None] + G[:, None, :] - C) / eps,
                                           a=pg.ref_mass, b=pg.tgt_mass,
                                           max_iter=SINKHORN_ITER, tol=SINKHORN_TOL)
        u, v = out["potentials"]
        # Padded points have zero mass (potential -inf): keep them at 0 between stages.
        F = torch.where(pg.ref_mass > 0, F + eps * u, torch.zeros_like(F))
        G = torch.where(pg.tgt_mass > 0, G + eps * v, torch.zeros_like(G))
        if eps <= eps_final:
            return out["T"], C, (F, G)
        eps = max(eps * EPS_DECAY, eps_final)


def _transform(Zs: torch.Tensor, A: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return Zs @ A.T + b


def _ridge_solve(X: torch.Tensor, T: torch.Tensor, w: torch.Tensor, ridge: float,
                 mu: float | None) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The closed form of ``transport._affine_ridge_solve``, in torch."""
    d = X.shape[1]
    X1 = torch.cat([X, torch.ones_like(X[:, :1])], dim=1)
    XW = X1 * w[:, None]
    gram = X1.T @ XW
    if mu is None:
        mu = ridge * float(torch.trace(gram[:d, :d])) / d
        mu = mu if mu > 0 else ridge
    eye = torch.eye(d, dtype=X.dtype, device=X.device)
    rhs = XW.T @ T
    gram[:d, :d] += mu * eye
    rhs[:d, :] += mu * eye
    sol = torch.linalg.solve(gram, rhs)
    return sol[:d, :].T, sol[d, :], mu


def _irls_step(Xs: torch.Tensor, Zs: torch.Tensor, Zt: torch.Tensor, pg: PaddedGroups,
               plans: torch.Tensor, C: torch.Tensor, ridge: float, mu: float | None
               ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """One majorize-minimize step for (A, b) at fixed plans (weights mass / residual)."""
    v = pg.weight[:, None, None] * plans / C.clamp_min(IRLS_EPS)  # (K, n, m)
    Vk = v.sum(2)  # (K, n)
    Tk = v @ Zt[pg.tgt_idx]  # (K, n, d): sum_j v_kij z_j
    N = Zs.shape[0]
    V = torch.zeros(N, dtype=Zs.dtype, device=Zs.device).index_add_(
        0, pg.ref_idx.reshape(-1), Vk.reshape(-1))
    T = torch.zeros_like(Zs).index_add_(0, pg.ref_idx.reshape(-1),
                                         Tk.reshape(-1, Zs.shape[1]))
    rows = V > 0
    return _ridge_solve(Zs[rows], T[rows] / V[rows, None], V[rows], ridge, mu)


def fit_affine_batched(
    Zs: NDArray[np.float64],
    Zt: NDArray[np.float64],
    groups: list[Group],
    *,
    A0: NDArray[np.float64] | None = None,
    b0: NDArray[np.float64] | None = None,
    ridge: float = 1e-2,
    max_iter: int = 50,
    tol: float = 1e-4,
    device: torch.device = torch.device("cpu"),
) -> tuple[NDArray[np.float64], NDArray[np.float64], dict]:
    """:func:`taskrel.relatedness.transport.fit_affine` with batched entropic couplings
    (same objective, same IRLS step, same stopping rule, same result shape)."""
    f64 = dict(dtype=torch.float64, device=device)
    Zs_t, Zt_t = torch.as_tensor(Zs, **f64), torch.as_tensor(Zt, **f64)
    pg = pad_groups(groups, device)
    d = Zs.shape[1]
    eye = torch.eye(d, **f64)
    A = eye.clone() if A0 is None else torch.as_tensor(A0, **f64)
    if b0 is None:  # start from matching the weighted class means
        b0 = mean_shift(Zs, Zt, groups)
    b = torch.as_tensor(b0, **f64)
    mu: float | None = None
    history: list[float] = []
    best: tuple[float, torch.Tensor, torch.Tensor, float] | None = None
    converged = False
    warm = None
    for _ in range(max_iter):
        Xs = _transform(Zs_t, A, b)
        plans, C, warm = batched_couplings(Xs, Zt_t, pg, warm)
        obj = float((pg.weight[:, None, None] * plans * C).sum())
        reg = 0.0 if mu is None else 0.5 * mu * float(((A - eye) ** 2).sum())
        history.append(obj + reg)
        if best is None or history[-1] < best[0]:
            best = (history[-1], A.clone(), b.clone(), obj)
        if len(history) > 1 and abs(history[-2] - history[-1]) <= tol * abs(history[-2]):
            converged = True
            break
        A, b, mu = _irls_step(Xs, Zs_t, Zt_t, pg, plans, C, ridge, mu)
    else:
        warnings.warn(f"feature-map fit stopped at max_iter={max_iter}; raise `max_iter`",
                      ConvergenceWarning, stacklevel=2)
    assert best is not None
    _, A, b, obj = best
    return (A.cpu().numpy(), b.cpu().numpy(),
            {"iterations": len(history), "converged": converged, "objective": history,
             "W": obj, "mu": mu})


def batched_w1(Xs: NDArray[np.float64], Xt: NDArray[np.float64], groups: list[Group],
               device: torch.device) -> float:
    """Weighted class-conditional W1 of the groups from batched entropic plans."""
    f64 = dict(dtype=torch.float64, device=device)
    pg = pad_groups(groups, device)
    plans, C, _ = batched_couplings(torch.as_tensor(Xs, **f64), torch.as_tensor(Xt, **f64),
                                    pg)
    return float((pg.weight[:, None, None] * plans * C).sum())
