"""Stage 2: the reference classifier h_R on standardized reference features."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..exceptions import TaskrelInputError
from ..heads import LinearHead, Standardizer, train_linear_head
from .config import RelatednessConfig
from .splits import ReferenceSplit
from .tau import resolve_tau

__all__ = ["ReferenceFit", "check_head", "fit_reference", "class_prior"]


@dataclass(frozen=True)
class ReferenceFit:
    """A fitted reference task: its head, standardized rows and class prior.

    Everything a target needs from the reference; fitted once, reused for any number
    of targets (:class:`~taskrel.relatedness.TaskRelatedness`).
    """

    split: ReferenceSplit
    head: LinearHead
    standardizer: Standardizer
    Z: NDArray[np.float64]
    Z_test: NDArray[np.float64]
    prior: NDArray[np.float64]
    tau: float
    tau_rule: str

    @property
    def n_classes(self) -> int:
        return self.split.n_classes


def class_prior(y: NDArray[np.int64], K: int) -> NDArray[np.float64]:
    """Class frequencies of encoded labels ``y`` over ``K`` classes."""
    return np.bincount(y, minlength=K).astype(np.float64) / y.size


def check_head(head: Any, K_R: int, d: int) -> LinearHead:
    """A caller's reference head as a :class:`LinearHead` (shapes and values checked)."""
    if isinstance(head, LinearHead):
        W, c = head.weight, head.bias
    elif isinstance(head, (tuple, list)) and len(head) == 2:
        W, c = np.asarray(head[0], dtype=np.float64), np.asarray(head[1], dtype=np.float64)
    else:
        raise TaskrelInputError(
            "`reference_head` must be a LinearHead or a (weight, bias) pair; "
            f"got {type(head).__name__}"
        )
    if W.shape != (K_R, d) or c.shape != (K_R,):
        raise TaskrelInputError(
            f"`reference_head` must have weight ({K_R}, {d}) and bias ({K_R},) for "
            f"{K_R} reference classes and {d} features; got {W.shape} and {c.shape}"
        )
    if not (np.all(np.isfinite(W)) and np.all(np.isfinite(c))):
        raise TaskrelInputError("`reference_head` has non-finite weights")
    if isinstance(head, LinearHead):
        return head
    return LinearHead(weight=W, bias=c, tau=None, info={"recipe": "given"})


def fit_reference(split: ReferenceSplit, cfg: RelatednessConfig,
                  head: LinearHead | None = None) -> ReferenceFit:
    """Standardize the reference and train its head (or adopt a checked ``head``).

    A caller's head keeps its own standardizer (identity when it has none); a trained
    head gets the reference train split's standardizer (``cfg.standardize``) and the
    tau of ``cfg.tau``.
    """
    d = split.X.shape[1]
    if head is not None:
        sr = head.standardizer or Standardizer.identity(d)
    else:
        sr = Standardizer.fit(split.X) if cfg.standardize else Standardizer.identity(d)
    Z, Z_test = sr.transform(split.X), sr.transform(split.X_test)
    if head is None:
        tau_value, tau_rule = resolve_tau(cfg.tau, Z, split.y, standardize=False)
        head = train_linear_head(Z, split.y, split.n_classes, tau=tau_value,
                                 recipe="paper" if cfg.recipe == "paper" else "fast",
                                 seed=cfg.seed, device=cfg.torch_device)
        head = dataclasses.replace(head, standardizer=sr)
    else:
        tau_rule = "reference_head"
        tau_value = float(head.tau) if head.tau is not None else float("nan")
    return ReferenceFit(split, head, sr, Z, Z_test, class_prior(split.y, split.n_classes),
                        tau_value, tau_rule)
