r"""Stage 6: the bound's terms, measured on the held-out rows.

.. math::

    \text{bound} = \underbrace{\sum_j D_j\,\mathbb{E}_{P_R(z|j)}\ell(h_R(z), j)}_{\text{reweighted reference loss}}
    + \underbrace{H(Y''\mid Y')}_{\text{label mismatch}}
    + L \cdot \underbrace{\sum_k w_k W_1(P_{R'''}(z|k), P_T(z|k))}_{\text{distribution mismatch}}
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.special import xlogy

from ..exceptions import TaskrelInputError
from ..heads import LinearHead
from ..wasserstein import w1 as estimate_w1
from .config import RelatednessConfig
from .fit_fast import certified_lipschitz
from .maps import FeatureMap
from .transport import Group, build_groups, group_couplings, transform_rows

__all__ = ["HeldOut", "BoundTerms", "evaluate_held_out", "lipschitz", "bound_terms",
           "transformed_classifier"]


@dataclass(frozen=True)
class HeldOut:
    """The terms measured on the held-out rows, and the reference head's own test fit."""

    reweighted_reference_loss: float
    distribution_mismatch: float
    per_class_distance: NDArray[np.float64]
    w1: dict[str, Any]
    reference_accuracy: float
    reference_loss: float


@dataclass(frozen=True)
class BoundTerms:
    """The bound, its terms, and its certified variant."""

    bound: float
    bound_certified: float
    label_mismatch: float
    lipschitz: float
    lipschitz_certified: float
    lipschitz_reference_coords: float


def _reweighted_reference_loss(head: LinearHead, Zr_te: NDArray[np.float64],
                               yr_te: NDArray[np.int64], D: NDArray[np.float64]
                               ) -> tuple[float, NDArray[np.float64]]:
    """sum_j D_j E[loss | class j] on the held-out reference rows; also every row's loss."""
    ce = head.loss(Zr_te, yr_te)
    per_class_ce = np.zeros(D.size)
    for j in np.flatnonzero(D > 0):
        m = yr_te == j
        if not np.any(m):
            raise TaskrelInputError(
                f"reference class index {j} has weight D={D[j]:.3g} but no test "
                "sample; give more reference test data"
            )
        per_class_ce[j] = ce[m].mean()
    return float(np.sum(D * per_class_ce)), ce


def _held_out_w1(Xs: NDArray[np.float64], Zt_te: NDArray[np.float64], groups: list[Group],
                 cfg: RelatednessConfig) -> tuple[float, NDArray[np.float64], dict[str, Any]]:
    """The class-conditional W1 by ``cfg.w1_method``: (weighted total, per class, record)."""
    if cfg.w1_method == "exact":
        W, _, per_class = group_couplings(Xs, Zt_te, groups)
        return float(W), np.asarray(per_class), {"method": "exact", "stderr": 0.0}
    ests = [estimate_w1(Xs[g.ref_rows], Zt_te[g.tgt_rows], a=g.ref_mass,
                        method=cfg.w1_method, device=str(cfg.torch_device), seed=cfg.seed + i)
            for i, g in enumerate(groups)]
    W = sum(g.weight * e.value for g, e in zip(groups, ests))
    stderr = math.sqrt(sum((g.weight * e.stderr) ** 2 for g, e in zip(groups, ests)))
    return float(W), np.asarray([e.value for e in ests]), {
        "method": sorted({e.method for e in ests}), "stderr": stderr,
        "seconds": sum(e.seconds for e in ests)}


def evaluate_held_out(head: LinearHead, fmap: FeatureMap, Zr_te: NDArray[np.float64],
                      yr_te: NDArray[np.int64], Zt_te: NDArray[np.float64],
                      y_eval: NDArray[np.int64], class_weights: NDArray[np.float64],
                      cfg: RelatednessConfig, rng: np.random.Generator) -> HeldOut:
    """Reweighted reference loss and class-conditional W1 on the test splits."""
    rrl, ce = _reweighted_reference_loss(head, Zr_te, yr_te, fmap.D)
    K_T = fmap.B.shape[0]
    missing = [k for k in range(K_T) if not np.any(y_eval == k)]
    if missing:
        raise TaskrelInputError(
            f"target class index(es) {missing} have no test sample, so their "
            "distribution mismatch cannot be measured; give more target test data"
        )
    groups = build_groups(yr_te, y_eval, fmap.B, fmap.D, class_weights,
                          max_per_class=cfg.max_eval_per_class, rng=rng)
    Xs = transform_rows(Zr_te, fmap.A, fmap.b,
                        np.unique(np.concatenate([g.ref_rows for g in groups])))
    W, per_class, w1_info = _held_out_w1(Xs, Zt_te, groups, cfg)
    return HeldOut(rrl, W, per_class, w1_info,
                   float(np.mean(head.predict_proba(Zr_te).argmax(1) == yr_te)),
                   float(ce.mean()))


def lipschitz(
    head: LinearHead,
    A_inv: NDArray[np.float64],
    B: NDArray[np.float64],
    X_ref_coords: NDArray[np.float64],
    chunk: int = 1024,
) -> tuple[float, float, float]:
    r"""(empirical max in target coords, certified, empirical max in reference coords).

    Gradient of :math:`-\log (B h_R(A^{-1}(z-b)))_k` in target coordinates:
    :math:`A^{-\top} W^\top (p - q^k)` with :math:`q^k_j = B_{kj}p_j / (B_k\cdot p)`.
    Certified: :math:`\sqrt2\,\sigma_{max}(P W A^{-1})`, P the centering projector,
    since :math:`p - q^k` sums to zero and has norm at most :math:`\sqrt2`.
    """
    W = head.weight
    Wp = W @ A_inv
    G_t = Wp @ Wp.T
    G_r = W @ W.T
    best_t = best_r = 0.0
    for s in range(0, X_ref_coords.shape[0], chunk):
        P = head.predict_proba(X_ref_coords[s : s + chunk])  # n x K_R
        BP = P @ B.T  # n x K_T
        Q = P[:, None, :] * B[None, :, :] / np.maximum(BP, 1e-300)[:, :, None]
        V = P[:, None, :] - Q  # n x K_T x K_R
        nt = np.einsum("nkj,jl,nkl->nk", V, G_t, V, optimize=True)
        nr = np.einsum("nkj,jl,nkl->nk", V, G_r, V, optimize=True)
        best_t = max(best_t, float(np.sqrt(max(nt.max(), 0.0))))
        best_r = max(best_r, float(np.sqrt(max(nr.max(), 0.0))))
    return best_t, certified_lipschitz(head, A_inv), best_r


def transformed_classifier(head: LinearHead, fmap: FeatureMap, Zt_te: NDArray[np.float64],
                           y_eval: NDArray[np.int64]) -> tuple[float, float]:
    """Held-out target loss and accuracy of the transformed reference classifier
    :math:`B\\,h_R(A^{-1}(z - b))`."""
    Xc = (Zt_te - fmap.b) @ fmap.A_inv.T
    q = head.predict_proba(Xc) @ fmap.B.T
    loss = float(-np.mean(np.log(np.maximum(q[np.arange(len(y_eval)), y_eval], 1e-300))))
    return loss, float(np.mean(q.argmax(1) == y_eval))


def bound_terms(head: LinearHead, fmap: FeatureMap, held: HeldOut,
                Zr_te: NDArray[np.float64], Zt_te: NDArray[np.float64]) -> BoundTerms:
    """Label mismatch, Lipschitz constants (on held-out rows of both tasks) and the bound."""
    lip, lip_cert, lip_ref = lipschitz(
        head, fmap.A_inv, fmap.B, np.vstack([(Zt_te - fmap.b) @ fmap.A_inv.T, Zr_te]))
    H = float(-np.sum(fmap.D * xlogy(fmap.B, fmap.B).sum(0))) + 0.0  # no -0.0
    wdist = held.distribution_mismatch
    bound = held.reweighted_reference_loss + H + lip * wdist
    if not math.isfinite(bound):
        raise FloatingPointError(
            "the bound is not finite; check the features' scale (try standardize=True)"
        )
    return BoundTerms(float(bound), float(held.reweighted_reference_loss + H + lip_cert * wdist),
                      H, lip, lip_cert, lip_ref)
