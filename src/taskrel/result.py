"""Result objects of the engine."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._internal.serialize import to_jsonable

__all__ = ["RelatednessResult", "ProbeResult", "SCORE_TERM"]

#: Keys every JSON result carries (the CLI contract).
TERM_KEYS = (
    "bound",
    "reweighted_reference_loss",
    "label_mismatch",
    "distribution_mismatch",
    "lipschitz",
)

#: What :attr:`RelatednessResult.score` reports: the reweighted reference loss, the
#: variant of task-relatedness that ranked encoders best in the ablation (issue 13,
#: ``docs/results/ablation.md``: best task-relatedness variant in model selection per
#: target on both benchmarks, and the one a collapsed encoder cannot win with).
SCORE_TERM = "reweighted_reference_loss"

#: What the JSON says about which number is a certified bound.
CERTIFIED_NOTE = ("bound_certified uses the certified Lipschitz constant and is the upper "
                  "bound of the theory (float(result)); bound uses the largest gradient "
                  "norm measured on held-out rows, an estimate below the certified "
                  "constant, so it is not guaranteed to bound the target loss")

_ARRAY_FIELDS = ("A", "A_inv", "b")
_OBJECT_FIELDS = ("reference_head",)


@dataclass(frozen=True)
class RelatednessResult:
    r"""Task-relatedness of a reference task to a target task, with its three terms.

    ``bound = reweighted_reference_loss + label_mismatch + lipschitz *
    distribution_mismatch`` (lower means more related). Two versions are reported:

    - ``bound_certified`` uses ``lipschitz_certified``, an upper bound on the loss's
      gradient norm everywhere (:math:`\sqrt2\,\sigma_{max}(PWA^{-1})`): it is the
      upper bound on the target loss of the transformed reference classifier that the
      theory gives (under its assumptions, see ``settings["prior_matching"]``).
      ``float(result)`` is this number.
    - ``bound`` uses ``lipschitz``, the largest gradient norm measured on held-out rows
      of both tasks: a lower estimate of the constant (measured: 75-84% of the
      certified one on toy problems), so ``bound`` is an estimate, not a guarantee.
      The terms, the explanation and ``taskrel rank`` report it.

    :attr:`score` is the number taskrel ranks with (see :data:`SCORE_TERM`).
    """

    bound: float
    reweighted_reference_loss: float
    label_mismatch: float
    distribution_mismatch: float
    lipschitz: float
    bound_certified: float
    lipschitz_certified: float
    lipschitz_reference_coords: float
    tau: float
    transformed_loss: float | None
    transformed_accuracy: float | None
    reference_accuracy: float
    reference_loss: float
    trivial_bound: float
    B: NDArray[np.float64]
    D: NDArray[np.float64]
    C: NDArray[np.float64]
    A: NDArray[np.float64]
    A_inv: NDArray[np.float64]
    b: NDArray[np.float64]
    prior_mismatch: float
    condition_number: float
    per_class_distance: NDArray[np.float64]
    reference_classes: NDArray[Any]
    target_classes: NDArray[Any]
    label_source: str
    pseudo_label_accuracy: float | None
    settings: dict[str, Any]
    iterations: int
    converged: bool
    seconds: float
    history: list[float] = field(default_factory=list)
    reference_head: Any = field(default=None, repr=False, compare=False)

    def __float__(self) -> float:
        """The certified bound (``bound_certified``), the one number that is a bound."""
        return float(self.bound_certified)

    @property
    def score(self) -> float:
        """The ranking score (lower = expected to transfer better): the reweighted
        reference loss :math:`\\mathbb E_{P_R}[C_y\\ell(h_R(z), y)]`, the bound's first
        term, with or without target labels. The ablation (``docs/results/ablation.md``)
        measured it ahead of the bound, its other terms and the transformed classifier's
        loss in model selection per target on both benchmarks; the bound stays in the
        result as the explanation."""
        return float(getattr(self, SCORE_TERM))

    @property
    def bound_exceeds_trivial(self) -> bool:
        """True when the bound is above log K_T, what a uniform head already achieves."""
        return bool(self.bound > self.trivial_bound)

    @property
    def matching(self) -> dict[Any, Any]:
        """Target class -> reference classes that B sends to it with positive D."""
        out: dict[Any, Any] = {}
        for k, tc in enumerate(self.target_classes.tolist()):
            js = np.flatnonzero((self.B[k] > 0.5) & (self.D > 0))
            out[tc] = [self.reference_classes[j].item() for j in js]
        return out

    def to_dict(self, *, arrays: bool = False) -> dict[str, Any]:
        """JSON-ready dict. ``arrays=True`` also includes A, A_inv and b (d x d)."""
        d = {k: getattr(self, k) for k in self.__dataclass_fields__
             if k not in _OBJECT_FIELDS}
        if not arrays:
            for name in _ARRAY_FIELDS:
                d.pop(name)
        d["bound_exceeds_trivial"] = self.bound_exceeds_trivial
        d["certified"] = {"bound_certified": True, "bound": False,
                          "note": CERTIFIED_NOTE}
        d["score"], d["score_term"] = self.score, SCORE_TERM
        d["matching"] = {str(k): v for k, v in self.matching.items()}
        return to_jsonable(d)


@dataclass(frozen=True)
class ProbeResult:
    """Transferability: a gradient-penalized linear probe's target test loss/accuracy."""

    loss: float
    accuracy: float
    train_loss: float
    train_accuracy: float
    tau: float
    seconds: float
    settings: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(asdict(self))
