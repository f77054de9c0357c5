r"""The official code's transformation optimizer (v1 "LearnedAll" / "LearnedA").

One outer step: sample a reference batch by the current class prior D and a target batch
by :math:`\pi_T`, solve the exact OT plan on the cost
:math:`\lVert Az+b - z_T\rVert_2 + \lambda \lVert By - y_T\rVert_2`, then take one Adam
step on

.. math::

    H(Y''|Y') + \tfrac{1}{N_R}\sum_j C_j \ell^{sum}_j
    + 2\sum_{ij}\gamma_{ij}(\lVert Az_i+b-z^T_j\rVert^2 + \lambda\lVert By_i-y^T_j\rVert^2)
    + \lVert\pi_T - BD\rVert^2 + \lVert A\bar A - I\rVert_F^2 + \lVert\bar A A - I\rVert_F^2

(squared costs in the step, non-squared in the plan: the official code's mismatch, kept
on purpose). ``A_bar`` is the learned approximate inverse used at evaluation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from tqdm.auto import tqdm

from .._internal.devices import generator
from .._internal.ot import exact_plan

__all__ = ["paper_fit", "paper_batch_size", "PAPER_STEPS", "LABEL_COST"]

#: The official code's constants (large-scale): label-cost weight and term weights.
LABEL_COST = 1e6
WEIGHT_WD, WEIGHT_PM, WEIGHT_IC = 2.0, 1.0, 1.0
LR, LR_D = 1e-2, 1e-3
PAPER_STEPS = 2001


def paper_batch_size(d: int) -> int:
    """The official batch sizes: 1000 (512-d ResNet-18), 1500 (CLIP), 2500 (2048-d)."""
    if d >= 2048:
        return 2500
    if d > 512:
        return 1500
    return 1000


def _sample_by_prior(
    rows_by_class: list[NDArray[np.int64]],
    prior: NDArray[np.float64],
    N: int,
    rng: np.random.Generator,
) -> NDArray[np.int64]:
    out = []
    for rows, p in zip(rows_by_class, prior):
        m = min(rows.size, int(np.floor(N * p)))
        if m > 0:
            out.append(rng.choice(rows, size=m, replace=False))
    if not out:  # every class rounded to zero: fall back to one point of the top class
        top = int(np.argmax(prior))
        out.append(rows_by_class[top][:1])
    return np.concatenate(out)


@dataclass(frozen=True)
class _Data:
    """The paper loop's constant tensors."""

    Zr: torch.Tensor
    Zt: torch.Tensor
    yr: NDArray[np.int64]
    yt: NDArray[np.int64]
    eyeR: torch.Tensor
    eyeT: torch.Tensor
    eye: torch.Tensor
    pi_T: torch.Tensor
    inv_pi_R: torch.Tensor
    ce_sum: torch.Tensor
    n_R: int


@dataclass
class _Params:
    """The loop's parameters: A, its learned inverse, b, and free B and D (or fixed)."""

    A: torch.Tensor
    Abar: torch.Tensor
    b: torch.Tensor
    B_raw: torch.Tensor | None
    D_raw: torch.Tensor | None
    B_fixed: torch.Tensor | None
    D_fixed: torch.Tensor | None

    def BD(self) -> tuple[torch.Tensor, torch.Tensor]:
        B = self.B_fixed if self.B_raw is None else torch.softmax(self.B_raw, dim=0)
        D = self.D_fixed if self.D_raw is None else torch.softmax(self.D_raw, dim=0)
        return B, D


def _init_params(d: int, K_T: int, K_R: int, pi_R: NDArray[np.float64],
                 B_fixed: NDArray[np.float64] | None, D_fixed: NDArray[np.float64] | None,
                 B_init: NDArray[np.float64] | None, D_init: NDArray[np.float64] | None,
                 A0: NDArray[np.float64] | None, b0: NDArray[np.float64] | None,
                 gen: torch.Generator, f64: dict[str, Any]
                 ) -> tuple[_Params, torch.optim.Optimizer]:
    """The starting parameters (the official initialisation unless warm-started)."""
    A = torch.tensor(np.eye(d) if A0 is None else A0, **f64, requires_grad=True)
    Abar = torch.tensor(
        np.eye(d) if A0 is None else np.linalg.inv(A0), **f64, requires_grad=True
    )
    b = torch.tensor(np.zeros(d) if b0 is None else b0, **f64, requires_grad=True)
    groups: list[dict] = [{"params": [A, Abar, b], "lr": LR}]
    B_raw = D_raw = None
    if B_fixed is None:
        if B_init is None:
            raw = torch.rand(K_T, K_R, generator=gen, dtype=torch.float64)
        else:
            raw = torch.as_tensor(np.log(B_init), dtype=torch.float64)
        B_raw = raw.to(f64["device"]).requires_grad_(True)
        groups[0]["params"].append(B_raw)
    if D_fixed is None:
        init = pi_R if D_init is None else np.log(D_init)
        D_raw = torch.tensor(init, **f64, requires_grad=True)
        groups.append({"params": [D_raw], "lr": LR_D})
    params = _Params(A, Abar, b, B_raw, D_raw,
                     None if B_fixed is None else torch.as_tensor(B_fixed, **f64),
                     None if D_fixed is None else torch.as_tensor(D_fixed, **f64))
    return params, torch.optim.Adam(groups)


def _step_loss(data: _Data, p: _Params, B: torch.Tensor, D: torch.Tensor,
               ir: NDArray[np.int64], it: NDArray[np.int64], f64: dict[str, Any]
               ) -> torch.Tensor:
    """The loss of one minibatch pair (exact OT plan on the non-squared cost)."""
    zs = data.Zr[ir] @ p.A.T + p.b
    ys = data.eyeR[data.yr[ir]] @ B.T
    zt = data.Zt[it]
    ytt = data.eyeT[data.yt[it]]
    with torch.no_grad():
        M = torch.cdist(zs, zt) + LABEL_COST * torch.cdist(ys, ytt)
    Mn = M.cpu().numpy()
    gamma = exact_plan(np.full(ir.size, 1.0 / ir.size), np.full(it.size, 1.0 / it.size),
                       Mn, knob="`batch_size`")
    gamma_t = torch.as_tensor(gamma, **f64)
    H = -(D * torch.special.xlogy(B, B).sum(dim=0)).sum()
    rrl = (D * data.inv_pi_R * data.ce_sum).sum() / data.n_R
    wd = (
        gamma_t
        * (torch.cdist(zs, zt).pow(2) + LABEL_COST * torch.cdist(ys, ytt).pow(2))
    ).sum()
    pm = (data.pi_T - B @ D).pow(2).sum()
    ic = (p.A @ p.Abar - data.eye).pow(2).sum() + (p.Abar @ p.A - data.eye).pow(2).sum()
    return H + rrl + WEIGHT_WD * wd + WEIGHT_PM * pm + WEIGHT_IC * ic


def _settled(history: list[float], step: int, tol: float | None) -> bool:
    """The early stop: mean loss of the last 100 steps vs the 100 before, every 50."""
    if tol is None or len(history) < 200 or step % 50 != 0:
        return False
    prev = float(np.mean(history[-200:-100]))
    last = float(np.mean(history[-100:]))
    return abs(prev - last) <= tol * abs(prev)


def paper_fit(
    Zr: NDArray[np.float64],
    yr: NDArray[np.int64],
    Zt: NDArray[np.float64],
    yt: NDArray[np.int64],
    *,
    pi_R: NDArray[np.float64],
    pi_T: NDArray[np.float64],
    ce_sum: NDArray[np.float64],
    B_fixed: NDArray[np.float64] | None,
    D_fixed: NDArray[np.float64] | None,
    B_init: NDArray[np.float64] | None = None,
    D_init: NDArray[np.float64] | None = None,
    A0: NDArray[np.float64] | None = None,
    b0: NDArray[np.float64] | None = None,
    steps: int = PAPER_STEPS,
    batch_size: int | None = None,
    tol: float | None = None,
    seed: int = 0,
    device: torch.device = torch.device("cpu"),
    progress: bool = False,
) -> dict:
    """Run the official optimizer; return A, A_bar, b, B, D and the loss history.

    With ``tol`` set, stop early when the mean loss over the last 100 steps changes by
    less than ``tol`` (relative) against the 100 before; otherwise run ``steps`` steps.

    The returned dict also holds ``steps`` (the steps taken), ``stop_reason``
    (``"tol"`` when the tolerance criterion stopped the loop, ``"max_steps"`` when it
    ran its ``steps``) and ``converged``, True only for ``"tol"``: a run of a fixed
    number of steps (``tol=None``, as in the official code) has not shown convergence.
    """
    K_R, K_T = pi_R.size, pi_T.size
    n_R, d = Zr.shape
    N = batch_size or paper_batch_size(d)
    rng = np.random.default_rng(seed)
    f64 = dict(dtype=torch.float64, device=device)
    data = _Data(torch.as_tensor(Zr, **f64), torch.as_tensor(Zt, **f64), yr, yt,
                 torch.eye(K_R, **f64), torch.eye(K_T, **f64), torch.eye(d, **f64),
                 torch.as_tensor(pi_T, **f64), torch.as_tensor(1.0 / pi_R, **f64),
                 torch.as_tensor(ce_sum, **f64), n_R)
    ref_rows = [np.flatnonzero(yr == j) for j in range(K_R)]
    tgt_rows = [np.flatnonzero(yt == k) for k in range(K_T)]
    params, opt = _init_params(d, K_T, K_R, pi_R, B_fixed, D_fixed, B_init, D_init, A0, b0,
                               generator(seed), f64)
    history: list[float] = []
    stopped_early = False
    bar = tqdm(range(steps), desc="paper recipe", disable=not progress, leave=False)
    loop_start = time.perf_counter()
    for step in bar:
        B, D = params.BD()
        ir = _sample_by_prior(ref_rows, D.detach().cpu().numpy(), N, rng)
        it = _sample_by_prior(tgt_rows, pi_T, N, rng)
        loss = _step_loss(data, params, B, D, ir, it, f64)
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(float(loss.detach()))
        if progress and step % 50 == 0:
            bar.set_postfix(loss=f"{history[-1]:.4g}")
        if _settled(history, step, tol):
            stopped_early = True
            break
    bar.close()
    loop_seconds = time.perf_counter() - loop_start
    B, D = params.BD()
    return {
        "loop_seconds": loop_seconds,
        "A": params.A.detach().cpu().numpy(),
        "A_bar": params.Abar.detach().cpu().numpy(),
        "b": params.b.detach().cpu().numpy(),
        "B": B.detach().cpu().numpy(),
        "D": D.detach().cpu().numpy(),
        "history": history,
        "steps": len(history),
        "converged": stopped_early,
        "stop_reason": "tol" if stopped_early else "max_steps",
        "batch_size": N,
    }
