r"""Task-relatedness: the bound on the target loss and its three terms.

.. math::

    L_T(h_T) \le L_T(h_{R'''}) \le
    \underbrace{\sum_y D_y\, \mathbb{E}_{P_R(z|y)} \ell(h_R(z), y)}_{\text{reweighted reference loss}}
    + \underbrace{H(Y''\mid Y')}_{\text{label mismatch}}
    + L\cdot \underbrace{\sum_k w_k W_1(P_{R'''}(z|k), P_T(z|k))}_{\text{distribution mismatch}}

See ``docs/theory.md`` for the derivation, the assumptions and what is checked at run
time.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
from numpy.typing import ArrayLike

from ..heads import LinearHead
from ..result import RelatednessResult
from .config import RelatednessConfig
from .pipeline import relate_target
from .reference import check_head, fit_reference
from .splits import check_task_pair, prepare_reference, prepare_target

__all__ = ["task_relatedness", "CONFIG_FIELDS"]

#: The arguments of :func:`task_relatedness` that are settings (not data).
CONFIG_FIELDS = tuple(f.name for f in dataclasses.fields(RelatednessConfig) if f.init)


def task_relatedness(
    reference_features: ArrayLike,
    reference_labels: ArrayLike,
    target_features: ArrayLike,
    target_labels: ArrayLike | None = None,
    *,
    reference_test_features: ArrayLike | None = None,
    reference_test_labels: ArrayLike | None = None,
    target_test_features: ArrayLike | None = None,
    target_test_labels: ArrayLike | None = None,
    reference_head: LinearHead | tuple[ArrayLike, ArrayLike] | None = None,
    tau: float | str = "auto",
    recipe: str = "fast",
    b_mode: str = "sparse",
    B: ArrayLike | None = None,
    pseudo_labels: str = "classifier",
    n_target_classes: int | None = None,
    class_weights: str = "prior",
    standardize: bool = True,
    max_per_class: int | None = 500,
    max_eval_per_class: int | None = 2000,
    w1_method: str = "exact",
    max_rows_per_class: int | None = 10000,
    max_iter: int | None = None,
    tol: float = 1e-4,
    ridge: float | str = "auto",
    batch_size: int | None = None,
    seed: int = 0,
    device: str = "auto",
    progress: bool = False,
) -> RelatednessResult:
    r"""Compute task-relatedness of a reference task to a target task.

    The reference task is transformed — class prior D, label map B, affine feature map
    z -> A z + b — to look like the target, and the bound on the target loss
    ``reweighted_reference_loss + label_mismatch + lipschitz * distribution_mismatch``
    is evaluated on held-out data. Lower means more related (more transferable).

    Parameters
    ----------
    reference_features : array-like of shape (n_ref, n_features)
        Encoder features of the reference task's train split.
    reference_labels : array-like of shape (n_ref,)
        Integer class ids (any ids; re-encoded internally).
    target_features : array-like of shape (n_target, n_features)
        Encoder features of the target task's train split (same encoder).
    target_labels : array-like of shape (n_target,), optional
        Without them, target pseudo-labels are used (``pseudo_labels``).
    reference_test_features, reference_test_labels, target_test_features, target_test_labels
        Held-out splits where the terms are measured. When absent, a seeded 80/20
        split (stratified when labels exist) of the given data is used.
        ``target_test_labels`` given without ``target_labels`` serve only to check
        the pseudo-labels (``pseudo_label_accuracy``); they are never used to fit.
    reference_head : LinearHead or (weight, bias), optional
        A reference classifier. A ``(weight, bias)`` pair acts on the reference features
        as given (they are then not standardized); a :class:`LinearHead` uses its own
        ``standardizer``. Pass ``result.reference_head`` of an earlier run to reuse the
        head across targets (it must come from the same reference train split: give
        explicit reference test data). Default: a linear softmax head trained on
        standardized reference features with the gradient penalty.
    tau : float or "auto" or "paper"
        Lipschitz target of the head's loss. "auto" (default): see :func:`auto_tau`;
        "paper": 0.02, the official code's large-scale value.
    recipe : {"fast", "paper"}
        "fast" (default): alternate exact per-class OT couplings with closed-form
        IRLS updates of (A, b) until the W1 objective settles; the head is trained by
        full-batch L-BFGS. "paper": the official code's 2001 Adam steps on minibatch OT
        (batch 1000-2500, label cost 1e6, weights 2/1/1) and its SGD head.
    b_mode : {"sparse", "learned", "fixed"}
        "sparse" (default): one-hot B from Hungarian matching of target classes to
        reference classes by the reference head's scores; label mismatch is 0 and D
        follows from prior matching. "learned": the paper's LearnedAll (soft B and D by
        gradient). "fixed": the caller's ``B``.
    B : array-like of shape (n_target_classes, n_reference_classes), optional
        Column-stochastic label map for ``b_mode="fixed"``.
    pseudo_labels : {"classifier", "kmeans"}
        Source of target labels when ``target_labels`` is None. "classifier": the
        transformed reference classifier after a label-free alignment, refined by
        re-solving until the labels settle. "kmeans": k-means clusters matched to
        reference classes.
    n_target_classes : int, optional
        Number of target classes for pseudo-labelling (default: as many as the
        classifier predicts for at least 1% of the target, or K_R for k-means).
    class_weights : {"prior", "uniform"}
        Weights of the per-class W1 terms: pi_T(k) (the theory, default) or 1/K (the
        official code).
    standardize : bool
        Standardize reference and target features separately, each on its own train
        split (the official code does so). W is measured in target coordinates.
    max_per_class : int or None
        Per-class subsample cap for fitting the transformation (exact OT cost grows
        quickly with class size).
    max_eval_per_class : int or None
        Per-class subsample cap for the W1 on the test splits (None: every test row).
    max_rows_per_class : int or None
        Row budget per class and split, applied before anything is copied: larger
        classes are subsampled (seeded; unlabelled target splits uniformly to this many
        rows per reference class). Only the sampled rows are read, so memory-mapped
        inputs (``np.load(..., mmap_mode="r")``, :func:`taskrel.io.open_task_dir`) of any
        size work in memory bounded by the budget. None: use every row.
    w1_method : {"exact", "minibatch", "sinkhorn", "auto"}
        How the test-split W1 is measured per target class: "exact" (default, ``ot.emd``
        on the capped subsample), or for large test sets one of
        :func:`taskrel.wasserstein.w1`'s estimators — averaged minibatch exact OT
        (biased upward; its standard error over batches is reported) or the debiased
        Sinkhorn divergence in torch (on the GPU when ``device`` is cuda; biased slightly
        downward). ``settings["w1"]`` records the method and the standard error.
    max_iter, tol
        "fast": alternations (default 50) and relative-change tolerance.
        "paper": Adam steps (default 2001); ``tol`` is not used there.
    ridge : float or "auto"
        Relative pull of A toward the identity in the fast recipe. A small pull lets A
        shrink directions that the target lacks, which lowers W but raises the
        Lipschitz constant in target coordinates (it contains A^-1). "auto" (default)
        scores the identity with a mean shift (the infinite-ridge limit), then each
        value of ``RIDGE_GRID`` (warm-started, strongest first, stopping at the first
        that scores worse than the best so far), and keeps the candidate with the
        smallest certified Lipschitz constant times W1 on a fifth of the *train* rows
        held out from the fit, so the choice never looks at the test data where the
        bound is reported (and a map that memorizes the training coupling is not
        chosen). With too few rows per class to hold out a fifth, the train W1 stands
        in (``settings["ridge_scored_on"]``). The choice is in
        ``settings["ridge_selected"]`` (None: the identity) and
        ``settings["ridge_trace"]``.
    batch_size : int, optional
        Minibatch size of the paper recipe (default: the official sizes by dimension).
    seed : int
    device : {"auto", "cpu", "cuda"}
    progress : bool
        Show progress on stderr.

    Returns
    -------
    RelatednessResult
        ``float(result)`` is the certified bound ``result.bound_certified`` (lower is
        better); ``result.bound`` is the same sum with the measured (not certified)
        Lipschitz constant.

    Examples
    --------
    >>> import numpy as np, taskrel
    >>> rng = np.random.default_rng(0)
    >>> means = 4 * np.eye(3, 5)
    >>> yr = np.repeat([0, 1, 2], 40); yt = np.repeat([0, 1, 2], 40)
    >>> Xr = means[yr] + rng.normal(size=(120, 5))
    >>> Xt = means[yt] + rng.normal(size=(120, 5))
    >>> r = taskrel.task_relatedness(Xr, yr, Xt, yt, device="cpu")
    >>> bool(np.isclose(r.bound, r.reweighted_reference_loss + r.label_mismatch
    ...                 + r.lipschitz * r.distribution_mismatch))
    True
    """
    args = dict(locals())
    t_start = time.perf_counter()
    # Every argument is checked before anything is fitted.
    cfg = RelatednessConfig(**{k: args[k] for k in CONFIG_FIELDS})
    cap_rng = np.random.default_rng([cfg.seed, 1])
    ref, n_cls = prepare_reference(reference_features, reference_labels,
                                   reference_test_features, reference_test_labels, cfg,
                                   cap_rng)
    tgt = prepare_target(target_features, target_labels, target_test_features,
                         target_test_labels, cfg, cap_rng, n_cls, ref)
    head = None if reference_head is None else check_head(
        reference_head, ref.n_classes, ref.X.shape[1])
    check_task_pair(ref, tgt, cfg)
    return relate_target(fit_reference(ref, cfg, head), tgt, cfg, t_start=t_start)
