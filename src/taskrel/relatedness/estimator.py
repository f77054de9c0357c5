"""``TaskRelatedness``: fit a reference task once, relate it to many targets."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._internal.validation import check_features
from ..exceptions import TaskrelInputError
from ..heads import LinearHead, Standardizer
from ..result import RelatednessResult
from .config import RelatednessConfig
from .pipeline import relate_target
from .reference import ReferenceFit, check_head, fit_reference
from .splits import check_task_pair, prepare_reference, prepare_target

__all__ = ["TaskRelatedness"]


class TaskRelatedness:
    """Task-relatedness as an estimator: ``fit`` a reference task, ``relate`` targets.

    The reference head is trained once in :meth:`fit` and reused by every
    :meth:`relate`, so a zoo x targets grid trains one head per encoder, not one per
    pair. ``TaskRelatedness(**kw).fit(Xr, yr).relate(Xt, yt)`` returns exactly what
    ``task_relatedness(Xr, yr, Xt, yt, **kw)`` returns (same seed, same numbers).

    Parameters
    ----------
    **settings
        Any setting of :func:`~taskrel.task_relatedness` (``tau``, ``recipe``,
        ``b_mode``, ``B``, ``seed``, ``device``, ...); checked on construction.

    Attributes
    ----------
    config_ : RelatednessConfig
        The checked settings.
    reference_ : ReferenceFit
        The fitted reference (after :meth:`fit`): head, standardizer, splits, prior.
    result_ : RelatednessResult
        The last :meth:`relate` result (its A and b are what :meth:`transform` applies).

    Examples
    --------
    >>> import numpy as np
    >>> from taskrel.relatedness import TaskRelatedness
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 1, 2], 40); X = 4 * np.eye(3, 5)[y] + rng.normal(size=(120, 5))
    >>> est = TaskRelatedness(device="cpu").fit(X, y)
    >>> r1 = est.relate(X + 1.0, y); r2 = est.relate(-X, y)
    >>> r1.reference_head is r2.reference_head  # one head for both targets
    True
    >>> est.transform(X).shape
    (120, 5)
    """

    def __init__(self, **settings: Any) -> None:
        self.config_ = RelatednessConfig(**settings)

    def fit(self, reference_features: ArrayLike, reference_labels: ArrayLike, *,
            reference_test_features: ArrayLike | None = None,
            reference_test_labels: ArrayLike | None = None,
            reference_head: LinearHead | tuple[ArrayLike, ArrayLike] | None = None
            ) -> TaskRelatedness:
        """Check and split the reference task and train (or adopt) its head."""
        cfg = self.config_
        cap_rng = np.random.default_rng([cfg.seed, 1])
        ref, self._n_cls = prepare_reference(reference_features, reference_labels,
                                             reference_test_features,
                                             reference_test_labels, cfg, cap_rng)
        # The targets' row caps continue this generator where the reference left it.
        self._cap_state = cap_rng.bit_generator.state
        head = None if reference_head is None else check_head(
            reference_head, ref.n_classes, ref.X.shape[1])
        self.reference_: ReferenceFit = fit_reference(ref, cfg, head)
        return self

    def relate(self, target_features: ArrayLike, target_labels: ArrayLike | None = None,
               *, target_test_features: ArrayLike | None = None,
               target_test_labels: ArrayLike | None = None) -> RelatednessResult:
        """The bound and its terms for one target (labels optional), fitted reference
        reused. Arguments as in :func:`~taskrel.task_relatedness`."""
        ref = self._fitted()
        t_start = time.perf_counter()
        cap_rng = np.random.default_rng()
        cap_rng.bit_generator.state = self._cap_state
        tgt = prepare_target(target_features, target_labels, target_test_features,
                             target_test_labels, self.config_, cap_rng, self._n_cls,
                             ref.split)
        check_task_pair(ref.split, tgt, self.config_)
        self.result_ = relate_target(ref, tgt, self.config_, t_start=t_start)
        return self.result_

    def transform(self, X: ArrayLike) -> NDArray[np.float64]:
        """Reference features mapped by the last :meth:`relate`'s feature map into the
        target's coordinates: standardized by the reference, ``A z + b``, returned in
        the target's standardized coordinates (where the bound's W1 is measured)."""
        if not hasattr(self, "result_"):
            raise TaskrelInputError("call `relate` before `transform`")
        ref = self._fitted()
        Z = check_features(X, "X", min_samples=1)
        if Z.shape[1] != ref.split.X.shape[1]:
            raise TaskrelInputError(
                f"`X` must have {ref.split.X.shape[1]} features (the reference's); "
                f"got {Z.shape[1]}")
        r = self.result_
        return ref.standardizer.transform(Z) @ r.A.T + r.b

    @property
    def standardizer_(self) -> Standardizer:
        """The reference features' standardization."""
        return self._fitted().standardizer

    def _fitted(self) -> ReferenceFit:
        if not hasattr(self, "reference_"):
            raise TaskrelInputError("call `fit` with a reference task first")
        return self.reference_
