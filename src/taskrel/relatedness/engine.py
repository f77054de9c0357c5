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
import math
import time
import warnings
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import linear_sum_assignment, nnls
from scipy.special import xlogy
from sklearn.model_selection import train_test_split
from sklearn.utils.extmath import randomized_svd

from .._internal.devices import resolve_device
from .._internal.validation import (
    check_choice,
    check_consistent_length,
    check_features,
    check_labels,
    check_positive,
    check_same_dim,
)
from ..exceptions import AssumptionWarning, ConvergenceWarning, TaskrelInputError
from ..heads import LinearHead, Standardizer, train_linear_head
from ..result import RelatednessResult
from .fit_paper import PAPER_STEPS, paper_fit
from .tau import auto_tau, resolve_tau
from .transport import (
    Group,
    build_groups,
    class_mean_init,
    fit_affine,
    group_couplings,
    transform_rows,
)

#: ``settings["reference_near_chance"]`` (and an AssumptionWarning) when the reference
#: classifier's test loss exceeds this fraction of log K_R.
NEAR_CHANCE = 0.9

__all__ = ["task_relatedness", "auto_tau", "split_task", "RECIPES", "B_MODES"]

RECIPES = ("fast", "paper")
B_MODES = ("sparse", "learned", "fixed")
LABEL_SOURCES = ("classifier", "kmeans")
CLASS_WEIGHTS = ("prior", "uniform")
#: Relative ridge values tried by ridge="auto" (strongest first).
RIDGE_GRID = (100.0, 10.0, 1.0, 0.1)
#: Share of the train rows held out to choose the ridge (never the test split).
VALIDATION_FRACTION = 0.2
W1_METHODS = ("exact", "minibatch", "sinkhorn", "auto")
#: Fraction of target points under which a pseudo-class is folded into its runner-up.
MIN_PSEUDO_CLASS_FRACTION = 0.01


def split_task(
    X: NDArray[np.float64],
    y: NDArray[np.int64] | None,
    *,
    test_size: float = 0.2,
    seed: int = 0,
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Seeded (stratified when labels are given) train/test row indices.

    With labels, every class of two or more rows has at least one row on each side
    (scikit-learn's stratified split can leave a class of 2-4 rows out of the test
    side when there are many classes; one row is then moved across).
    """
    idx = np.arange(X.shape[0])
    tr, te = train_test_split(
        idx, test_size=test_size, random_state=seed, stratify=y, shuffle=True
    )
    if y is not None:
        y = np.asarray(y)
        on_te = np.zeros(idx.size, dtype=bool)
        on_te[te] = True
        for c in np.unique(y):
            rows = np.flatnonzero(y == c)
            n_te = int(on_te[rows].sum())
            if rows.size >= 2 and n_te == 0:
                on_te[rows[-1]] = True
            elif rows.size >= 2 and n_te == rows.size:
                on_te[rows[-1]] = False
        tr, te = idx[~on_te], idx[on_te]
    return np.sort(tr), np.sort(te)


def _encode_with(
    classes: NDArray[Any], y: NDArray[Any], name: str
) -> NDArray[np.int64]:
    arr = np.asarray(y)
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.ravel()
    if arr.ndim != 1:
        raise TaskrelInputError(f"`{name}` must be 1-D; got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise TaskrelInputError(f"`{name}` must hold integer class ids; got {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating) and not np.all(arr == np.round(arr)):
        raise TaskrelInputError(f"`{name}` must hold integer class ids")
    pos = np.searchsorted(classes, arr)
    pos = np.clip(pos, 0, classes.size - 1)
    bad = classes[pos] != arr
    if np.any(bad):
        raise TaskrelInputError(
            f"`{name}` has class ids not seen in training: {np.unique(arr[bad])[:10].tolist()}"
        )
    return pos.astype(np.int64)


def _cap_rows(X: Any, y: Any, cap: int, rng: np.random.Generator,
              n_classes_unlabelled: int = 1) -> tuple[Any, Any, int]:
    """At most ``cap`` rows per class of (X, y), sorted, read lazily from X.

    Inputs that are not well-formed are returned untouched (validation reports them).
    Unlabelled rows (y None) are capped at ``cap * n_classes_unlabelled`` uniformly.
    Returns (X, y, number of classes seen).
    """
    shape = getattr(X, "shape", None)  # arrays and memory maps; lists are in memory anyway
    if not shape:
        return X, y, n_classes_unlabelled
    n = shape[0]
    if y is None:
        limit = cap * n_classes_unlabelled
        if n <= limit:
            return X, y, n_classes_unlabelled
        keep = np.sort(rng.choice(n, size=limit, replace=False))
        return X[keep], None, n_classes_unlabelled
    try:
        ya = np.asarray(y)
        if ya.ndim != 1 or ya.shape[0] != n:
            return X, y, n_classes_unlabelled
        _, inv, counts = np.unique(ya, return_inverse=True, return_counts=True)
    except (TypeError, ValueError):
        return X, y, n_classes_unlabelled
    if counts.max() <= cap:
        return X, y, counts.size
    keep = np.sort(np.concatenate([
        rows if rows.size <= cap else rng.choice(rows, size=cap, replace=False)
        for rows in (np.flatnonzero(inv == k) for k in range(counts.size))
    ]))
    return X[keep], ya[keep], counts.size


def _prior(y: NDArray[np.int64], K: int) -> NDArray[np.float64]:
    return np.bincount(y, minlength=K).astype(np.float64) / y.size


def _match_score(
    head: LinearHead, X_ref_coords: NDArray[np.float64], y: NDArray[np.int64], K_T: int
) -> NDArray[np.float64]:
    """M[k, j]: mean log-probability the reference head gives class j on target class k."""
    logp = head.log_proba(X_ref_coords)
    return np.stack([logp[y == k].mean(0) for k in range(K_T)])


def _sparse_B(score: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """One-to-one Hungarian matching of target classes to reference classes.

    Unmatched reference columns point to their best-scoring target class (any
    column-stochastic B is valid; their D is 0, so they add no label mismatch).
    Returns (B, sigma) with sigma[k] the reference class matched to target class k.
    """
    K_T, K_R = score.shape
    rows, cols = linear_sum_assignment(-score)
    if K_T > K_R:
        # More target than reference classes (the learned-B start): every reference
        # class is matched to its own target class, every other target class joins its
        # best-scoring reference class, and a reference class's mass is split equally
        # over the target classes it serves, so each target class receives mass.
        sigma = np.argmax(score, axis=1).astype(np.int64)
        sigma[rows] = cols
        B = np.zeros((K_T, K_R))
        B[np.arange(K_T), sigma] = 1.0
        return B / B.sum(0, keepdims=True), sigma
    sigma = np.empty(K_T, dtype=np.int64)
    sigma[rows] = cols
    B = np.zeros((K_T, K_R))
    best = np.argmax(score, axis=0)
    B[best, np.arange(K_R)] = 1.0
    B[:, sigma] = 0.0
    B[np.arange(K_T), sigma] = 1.0
    return B, sigma


def _prior_matched_D(B: NDArray[np.float64], pi_T: NDArray[np.float64]) -> NDArray[np.float64]:
    """D on the simplex with B D = pi_T as nearly as possible (NNLS, then normalized)."""
    D, _ = nnls(B, pi_T)
    s = D.sum()
    if s <= 0:
        raise TaskrelInputError("`B`: no class prior D satisfies B D = pi_T")
    return D / s


def _lipschitz(
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
    return best_t, _certified_lipschitz(head, A_inv), best_r


def _certified_lipschitz(head: LinearHead, A_inv: NDArray[np.float64]) -> float:
    r""":math:`\sqrt2\,\sigma_{max}(P W A^{-1})`: a Lipschitz constant of the transformed
    head's loss in target coordinates that holds everywhere (see :func:`_lipschitz`)."""
    K = head.weight.shape[0]
    Pc = np.eye(K) - 1.0 / K
    return math.sqrt(2.0) * float(np.linalg.norm(Pc @ (head.weight @ A_inv), ord=2))


def _check_head(head: Any, K_R: int, d: int) -> LinearHead:
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
        ``float(result)`` is the bound (lower is better).

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
    t_start = time.perf_counter()
    recipe = check_choice(recipe, "recipe", RECIPES)
    b_mode = check_choice(b_mode, "b_mode", B_MODES)
    pseudo_labels = check_choice(pseudo_labels, "pseudo_labels", LABEL_SOURCES)
    class_weights = check_choice(class_weights, "class_weights", CLASS_WEIGHTS)
    tol = check_positive(tol, "tol")
    if isinstance(ridge, str):
        check_choice(ridge, "ridge", ("auto",))
        ridges: tuple[float, ...] = RIDGE_GRID
    else:
        ridges = (check_positive(ridge, "ridge", allow_zero=True),)
    seed = check_positive(seed, "seed", integer=True, allow_zero=True)
    w1_method = check_choice(w1_method, "w1_method", W1_METHODS)
    for name, val in (("max_per_class", max_per_class), ("max_eval_per_class", max_eval_per_class)):
        if val is not None and check_positive(val, name, integer=True) < 2:
            raise TaskrelInputError(f"`{name}` must be >= 2 or None; got {val!r}")
    if max_iter is not None:
        max_iter = check_positive(max_iter, "max_iter", integer=True)
    if batch_size is not None:
        batch_size = check_positive(batch_size, "batch_size", integer=True)
    dev = resolve_device(device)
    rng = np.random.default_rng(seed)
    if max_rows_per_class is not None:
        max_rows_per_class = check_positive(max_rows_per_class, "max_rows_per_class",
                                            integer=True)
        cap_rng = np.random.default_rng([seed, 1])
        reference_features, reference_labels, n_cls = _cap_rows(
            reference_features, reference_labels, max_rows_per_class, cap_rng)
        reference_test_features, reference_test_labels, _ = _cap_rows(
            reference_test_features, reference_test_labels, max_rows_per_class, cap_rng)
        target_features, target_labels, _ = _cap_rows(
            target_features, target_labels, max_rows_per_class, cap_rng, n_cls)
        target_test_features, target_test_labels, _ = _cap_rows(
            target_test_features, target_test_labels, max_rows_per_class, cap_rng, n_cls)

    # ---- validate and split -------------------------------------------------
    Xr = check_features(reference_features, "reference_features")
    ref_classes, yr = check_labels(reference_labels, "reference_labels")
    check_consistent_length(Xr, "reference_features", yr, "reference_labels")
    Xt = check_features(target_features, "target_features")
    check_same_dim(Xr, "reference_features", Xt, "target_features")
    K_R = ref_classes.size

    if (reference_test_features is None) != (reference_test_labels is None):
        raise TaskrelInputError(
            "`reference_test_features` and `reference_test_labels` go together; "
            "got only one of them"
        )
    if reference_test_features is None:
        tr, te = split_task(Xr, yr, seed=seed)
        Xr, Xr_te, yr, yr_te = Xr[tr], Xr[te], yr[tr], yr[te]
    else:
        Xr_te = check_features(reference_test_features, "reference_test_features")
        check_same_dim(Xr, "reference_features", Xr_te, "reference_test_features")
        yr_te = _encode_with(ref_classes, reference_test_labels, "reference_test_labels")
        check_consistent_length(Xr_te, "reference_test_features", yr_te, "reference_test_labels")
    for j in range(K_R):
        if not np.any(yr == j):
            raise TaskrelInputError(
                f"`reference_labels`: class {ref_classes[j]!r} has no training sample "
                "after the train/test split; give more samples or explicit test data"
            )

    labelled = target_labels is not None
    tgt_classes: NDArray[Any]
    yt: NDArray[np.int64] | None = None
    yt_te: NDArray[np.int64] | None = None
    check_labels_te: NDArray[Any] | None = None  # true target test labels (raw)
    if labelled:
        tgt_classes, yt = check_labels(target_labels, "target_labels")
        check_consistent_length(Xt, "target_features", yt, "target_labels")
    if target_test_features is None:
        if target_test_labels is not None:
            raise TaskrelInputError(
                "`target_test_labels` needs `target_test_features`"
            )
        tr, te = split_task(Xt, yt, seed=seed)
        Xt, Xt_te = Xt[tr], Xt[te]
        if labelled:
            yt, yt_te = yt[tr], yt[te]
    else:
        Xt_te = check_features(target_test_features, "target_test_features")
        check_same_dim(Xt, "target_features", Xt_te, "target_test_features")
        if target_test_labels is not None:
            if labelled:
                yt_te = _encode_with(tgt_classes, target_test_labels, "target_test_labels")
                check_consistent_length(Xt_te, "target_test_features", yt_te, "target_test_labels")
            else:
                check_labels_te = np.asarray(target_test_labels)
                check_consistent_length(Xt_te, "target_test_features", check_labels_te, "target_test_labels")
        elif labelled:
            raise TaskrelInputError(
                "`target_test_features` given without `target_test_labels` while "
                "`target_labels` are given; pass both or neither"
            )

    # ---- standardize and reference head ---------------------------------------
    d = Xr.shape[1]
    if reference_head is not None:
        head = _check_head(reference_head, K_R, d)
        sr = head.standardizer or Standardizer.identity(d)
    else:
        sr = Standardizer.fit(Xr) if standardize else Standardizer.identity(d)
    st = Standardizer.fit(Xt) if standardize else Standardizer.identity(d)
    Zr, Zr_te = sr.transform(Xr), sr.transform(Xr_te)
    Zt, Zt_te = st.transform(Xt), st.transform(Xt_te)

    if reference_head is None:
        tau_value, tau_rule = resolve_tau(tau, Zr, yr, standardize=False)
        head = train_linear_head(
            Zr, yr, K_R, tau=tau_value, recipe=recipe, seed=seed, device=dev
        )
        head = dataclasses.replace(head, standardizer=sr)
    else:
        tau_rule = "reference_head"
        tau_value = float(head.tau) if head.tau is not None else float("nan")
    pi_R = _prior(yr, K_R)

    settings: dict[str, Any] = {
        "recipe": recipe,
        "b_mode": b_mode,
        "tau": tau_value,
        "tau_rule": tau_rule,
        "class_weights": class_weights,
        "standardize": standardize,
        "max_per_class": max_per_class,
        "max_eval_per_class": max_eval_per_class,
        "w1_method": w1_method,
        "max_rows_per_class": max_rows_per_class,
        "tol": tol,
        "ridge": ridge if isinstance(ridge, str) else float(ridge),
        "seed": seed,
        "device": str(dev),
        "n_reference_train": int(Xr.shape[0]),
        "n_reference_test": int(Xr_te.shape[0]),
        "n_target_train": int(Xt.shape[0]),
        "n_target_test": int(Xt_te.shape[0]),
        "n_features": int(d),
        "head": {k: v for k, v in head.info.items()},
    }
    if recipe == "paper":
        settings["paper_steps"] = max_iter or PAPER_STEPS

    def fit(y_t: NDArray[np.int64], Bm: NDArray[np.float64], Dv: NDArray[np.float64],
            pi_T: NDArray[np.float64], cw: NDArray[np.float64], A0=None, b0=None) -> dict:
        """Fit (A, b) — and B, D when learned — for given target labels."""
        if recipe == "fast" and b_mode != "learned":
            groups = build_groups(yr, y_t, Bm, Dv, cw, max_per_class=max_per_class, rng=rng)
            return _fit_fast(head, Zr, Zt, groups, Bm, Dv, ridges, max_iter or 50, tol,
                             rng, settings)
        ce_sum = np.array([head.loss(Zr[yr == j], yr[yr == j]).sum() for j in range(K_R)])
        kw: dict[str, Any] = dict(
            pi_R=pi_R, pi_T=pi_T, ce_sum=ce_sum, batch_size=batch_size, seed=seed,
            device=dev, progress=progress,
        )
        if b_mode == "learned" and recipe == "fast":
            # Start LearnedAll from the fast sparse solution and stop on convergence.
            groups = build_groups(yr, y_t, Bm, Dv, cw, max_per_class=max_per_class, rng=rng)
            warm = _fit_fast(head, Zr, Zt, groups, Bm, Dv, ridges, 50, tol, rng, settings)
            A0, b0 = warm["A"], warm["b"]
            Bs = 0.9 * Bm + 0.1 / Bm.shape[0]
            out = paper_fit(Zr, yr, Zt, y_t, B_fixed=None, D_fixed=None, B_init=Bs,
                            D_init=np.maximum(Dv, 1e-3) / np.maximum(Dv, 1e-3).sum(),
                            A0=A0, b0=b0, steps=max_iter or PAPER_STEPS, tol=tol, **kw)
        elif b_mode == "learned":
            out = paper_fit(Zr, yr, Zt, y_t, B_fixed=None, D_fixed=None,
                            steps=max_iter or PAPER_STEPS, **kw)
        else:
            out = paper_fit(Zr, yr, Zt, y_t, B_fixed=Bm, D_fixed=Dv,
                            steps=max_iter or PAPER_STEPS, **kw)
        settings["paper_loop_seconds"] = settings.get("paper_loop_seconds", 0.0) + out["loop_seconds"]
        settings["paper_loop_steps"] = settings.get("paper_loop_steps", 0) + out["steps"]
        return {"A": out["A"], "A_inv": out["A_bar"], "b": out["b"], "B": out["B"],
                "D": out["D"], "iterations": out["steps"], "converged": out["converged"],
                "history": out["history"]}

    def weights_for(pi_T: NDArray[np.float64]) -> NDArray[np.float64]:
        K = pi_T.size
        return pi_T.copy() if class_weights == "prior" else np.full(K, 1.0 / K)

    def initial_B(y_t: NDArray[np.int64], K_T: int, A_inv=None, b=None) -> NDArray[np.float64]:
        X = Zt if A_inv is None else (Zt - b) @ A_inv.T
        return _sparse_B(_match_score(head, X, y_t, K_T))[0]

    # ---- target labels: true or pseudo ------------------------------------------
    label_source = "true"
    pseudo_acc: float | None = None
    if labelled:
        assert yt is not None and yt_te is not None
        K_T = tgt_classes.size
        if b_mode == "sparse" and K_T > K_R:
            raise TaskrelInputError(
                f"`target_labels` has {K_T} classes but the reference task has {K_R}; "
                "b_mode='sparse' needs K_T <= K_R (use b_mode='learned' or 'fixed')"
            )
        y_fit, y_eval = yt, yt_te
    else:
        K_T, y_fit, y_eval, tgt_classes, label_source, pseudo_acc, warm = _pseudo_label(
            head, Zr, yr, Zt, Zt_te, K_R, pi_R, pseudo_labels, n_target_classes,
            check_labels_te, ridge=ridges[len(ridges) // 2], tol=tol,
            max_per_class=max_per_class, rng=rng, seed=seed,
        )
        settings["pseudo_label_rounds"] = warm.pop("rounds")
    pi_T = _prior(y_fit, K_T)
    cw = weights_for(pi_T)

    if b_mode == "fixed":
        if B is None:
            raise TaskrelInputError("b_mode='fixed' needs `B`; got None")
        Bm = np.asarray(B, dtype=np.float64)
        if Bm.shape != (K_T, K_R):
            raise TaskrelInputError(
                f"`B` must have shape (K_T, K_R) = ({K_T}, {K_R}); got {Bm.shape}"
            )
        if np.any(Bm < 0) or not np.allclose(Bm.sum(0), 1.0, atol=1e-6):
            raise TaskrelInputError(
                "`B` columns must be distributions (non-negative, summing to 1); "
                f"column sums range {Bm.sum(0).min():.4g}..{Bm.sum(0).max():.4g}"
            )
    elif not labelled:
        Bm = np.zeros((K_T, K_R))  # pseudo-classes are reference classes: identity map
        Bm[np.arange(K_T), tgt_classes.astype(np.int64)] = 1.0
        rest = np.setdiff1d(np.arange(K_R), tgt_classes.astype(np.int64))
        if rest.size:
            score = _match_score(head, (Zt - warm["b"]) @ warm["A_inv"].T, y_fit, K_T)
            Bm[np.argmax(score[:, rest], axis=0), rest] = 1.0
        tgt_classes = ref_classes[tgt_classes.astype(np.int64)]
    else:
        Bm = initial_B(y_fit, K_T)
    Dv = _prior_matched_D(Bm, pi_T)

    sol = fit(y_fit, Bm, Dv, pi_T, cw)
    search_matching = labelled and b_mode == "sparse" and recipe == "fast"
    if search_matching:
        # The head's scores on unaligned target features can mislead the matching
        # (e.g. a rotated copy of the reference): also match after a label-free
        # alignment, and keep the matching whose fit is better on the train splits.
        A_inv0, b0 = _marginal_alignment(Zr, yr, Zt, pi_R, ridge=ridges[len(ridges) // 2],
                                         tol=tol, rng=rng)
        Ba = initial_B(y_fit, K_T, A_inv0, b0)
        settings["matching_start"] = "identity"
        if not np.array_equal(Ba, Bm):
            cand = fit(y_fit, Ba, _prior_matched_D(Ba, pi_T), pi_T, cw)
            if _fit_score(cand) < _fit_score(sol):
                sol = cand
                settings["matching_start"] = "label-free alignment"
    rematches = 0
    if search_matching:
        # Re-match classes with the transformed classifier; refit while it changes.
        while rematches < 2:
            Bn = initial_B(y_fit, K_T, sol["A_inv"], sol["b"])
            if np.array_equal(Bn, sol["B"]):
                break
            rematches += 1
            Dn = _prior_matched_D(Bn, pi_T)
            cand = fit(y_fit, Bn, Dn, pi_T, cw)
            if _fit_score(cand) < _fit_score(sol):
                sol = cand
            else:
                break
    settings["rematches"] = rematches

    # ---- evaluate on held-out data ---------------------------------------------
    ev = _evaluate(head, sol, Zr_te, yr_te, Zt_te, y_eval, K_T, pi_T, cw,
                   max_eval_per_class, rng, w1_method=w1_method, device=dev, seed=seed)
    settings["w1"] = ev["w1"]
    Bf, Df = sol["B"], sol["D"]
    transformed_loss = transformed_acc = None
    if labelled:
        Xc = (Zt_te - sol["b"]) @ sol["A_inv"].T
        q = head.predict_proba(Xc) @ Bf.T
        transformed_loss = float(-np.mean(np.log(np.maximum(q[np.arange(len(y_eval)), y_eval], 1e-300))))
        transformed_acc = float(np.mean(q.argmax(1) == y_eval))
    lip, lip_cert, lip_ref = _lipschitz(
        head, sol["A_inv"], Bf,
        np.vstack([(Zt_te - sol["b"]) @ sol["A_inv"].T, Zr_te]),
    )
    H = float(-np.sum(Df * xlogy(Bf, Bf).sum(0))) + 0.0  # no -0.0
    wdist = ev["W"]
    bound = ev["rrl"] + H + lip * wdist
    if not math.isfinite(bound):
        raise FloatingPointError(
            "the bound is not finite; check the features' scale (try standardize=True)"
        )
    if math.isfinite(tau_value) and lip_ref > 1.25 * tau_value:
        warnings.warn(
            f"the reference head's measured gradient norm {lip_ref:.4g} exceeds "
            f"tau={tau_value:.4g} by more than 25%; the Lipschitz assumption is only "
            "approximately met (the bound uses the measured value)",
            AssumptionWarning, stacklevel=2,
        )
    # A reference classifier near chance makes a small bound out of nothing: its loss is
    # about log K_R and its Lipschitz x W1 is small, so a collapsed encoder outranks
    # informative ones (measured: EfficientNet-Lite2 at 32 px in the vision suite).
    near_chance = bool(ev["ref_loss"] > NEAR_CHANCE * math.log(K_R))
    settings["reference_near_chance"] = near_chance
    if near_chance:
        warnings.warn(
            f"the reference classifier is near chance on its test split (loss "
            f"{ev['ref_loss']:.3g} vs log K_R = {math.log(K_R):.3g}, accuracy "
            f"{ev['ref_acc']:.3g}): these features carry little class information, and a "
            "bound made mostly of that loss can rank this encoder above informative ones",
            AssumptionWarning, stacklevel=2,
        )
    A_is_identity = np.array_equal(sol["A"], np.eye(d))
    cond = 1.0 if A_is_identity else float(np.linalg.cond(sol["A"]))
    if not math.isfinite(cond) or cond > 1e8:
        warnings.warn(
            f"the feature map A is nearly singular (condition number {cond:.3g}); "
            "raise `ridge`", AssumptionWarning, stacklevel=2,
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        C = np.where(pi_R > 0, Df / pi_R, 0.0)
    return RelatednessResult(
        bound=float(bound),
        reweighted_reference_loss=ev["rrl"],
        label_mismatch=H,
        distribution_mismatch=wdist,
        lipschitz=lip,
        bound_certified=float(ev["rrl"] + H + lip_cert * wdist),
        lipschitz_certified=lip_cert,
        lipschitz_reference_coords=lip_ref,
        tau=tau_value,
        transformed_loss=transformed_loss,
        transformed_accuracy=transformed_acc,
        reference_accuracy=ev["ref_acc"],
        reference_loss=ev["ref_loss"],
        trivial_bound=math.log(K_T),
        B=Bf,
        D=Df,
        C=C,
        A=sol["A"],
        A_inv=sol["A_inv"],
        b=sol["b"],
        prior_mismatch=float(np.abs(pi_T - Bf @ Df).sum()),
        condition_number=cond,
        per_class_distance=ev["per_class"],
        reference_classes=ref_classes,
        target_classes=np.asarray(tgt_classes),
        label_source=label_source,
        pseudo_label_accuracy=pseudo_acc,
        settings=settings,
        iterations=int(sol["iterations"]),
        converged=bool(sol["converged"]),
        seconds=time.perf_counter() - t_start,
        history=[float(h) for h in sol["history"]],
        reference_head=head,
    )


#: Points per side in the label-free (marginal) alignment.
MARGINAL_POINTS = 1000
#: Alternations of the marginal alignment (it only seeds matching and pseudo-labels).
MARGINAL_ITER = 10
#: The marginal alignment is fitted in this many leading principal directions of the
#: pooled features (identity off them): it only seeds the matching, and the leading
#: directions carry the global moves (a rotation of the images, a shift of style).
MARGINAL_DIM = 64


def _marginal_alignment(
    Zr: NDArray[np.float64],
    yr: NDArray[np.int64],
    Zt: NDArray[np.float64],
    pi_R: NDArray[np.float64],
    *,
    ridge: float,
    tol: float,
    rng: np.random.Generator,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Label-free W1 alignment of the whole reference to the whole target (A^-1, b).

    Each side is subsampled to ``MARGINAL_POINTS`` (seeded) so one exact OT stays cheap.
    Above ``MARGINAL_DIM`` dimensions the map is fitted in the leading principal
    subspace U of the pooled subsample and is the identity off it:
    ``A = I + U (A_k - I) U^T``, whose inverse is ``I + U (A_k^-1 - I) U^T``.
    """
    keep_r = rng.choice(yr.size, size=min(MARGINAL_POINTS, yr.size), replace=False)
    keep_t = rng.choice(Zt.shape[0], size=min(MARGINAL_POINTS, Zt.shape[0]), replace=False)
    yr_sub = np.full(yr.size, -1)
    yr_sub[keep_r] = yr[keep_r]
    yt_sub = np.full(Zt.shape[0], -1)
    yt_sub[keep_t] = 0
    K_R = pi_R.size
    present = np.bincount(yr_sub[yr_sub >= 0], minlength=K_R) > 0
    D = np.where(present, pi_R, 0.0)
    one = build_groups(yr_sub, yt_sub, np.ones((1, K_R)), D / D.sum(), np.ones(1))
    d = Zr.shape[1]
    U = None
    if d > MARGINAL_DIM:
        pooled = np.vstack([Zr[keep_r], Zt[keep_t]])
        pooled -= pooled.mean(0)
        _, _, Vt = randomized_svd(pooled, MARGINAL_DIM, n_iter=2,
                                  random_state=int(rng.integers(2**31 - 1)))
        U = Vt.T  # d x k, orthonormal columns
        Zr, Zt = Zr @ U, Zt @ U
    with warnings.catch_warnings():  # a short alignment on purpose
        warnings.simplefilter("ignore", ConvergenceWarning)
        A, b, _ = fit_affine(Zr, Zt, one, ridge=ridge, max_iter=MARGINAL_ITER, tol=tol)
    A_inv = np.linalg.inv(A)
    if U is None:
        return A_inv, b
    k = U.shape[1]
    return np.eye(d) + U @ (A_inv - np.eye(k)) @ U.T, U @ b


def _subgroup(g: Group, ref_mask: NDArray[np.bool_], tgt_mask: NDArray[np.bool_]) -> Group:
    """The rows of a group under two masks, reference masses renormalized."""
    mass = g.ref_mass[ref_mask]
    return Group(g.ref_rows[ref_mask], mass / mass.sum(), g.tgt_rows[tgt_mask], g.weight)


def _fit_score(sol: dict) -> float:
    """What a fit minimized (held-out lipschitz x W for the fast recipe, else loss)."""
    return float(sol.get("score", sol["history"][-1]))


def _fit_fast(
    head: LinearHead,
    Zr: NDArray[np.float64],
    Zt: NDArray[np.float64],
    groups: list[Group],
    Bm: NDArray[np.float64],
    Dv: NDArray[np.float64],
    ridges: tuple[float, ...],
    max_iter: int,
    tol: float,
    rng: np.random.Generator,
    settings: dict[str, Any],
) -> dict:
    """Fast recipe for fixed B, D; with several ridges, keep the best held-out bound.

    With ``ridge="auto"`` the candidates are scored by the certified Lipschitz constant
    (sqrt(2) sigma_max(P W A^-1), which does not depend on how many points are at hand)
    times W1 on a fifth of the train rows held out (on the train rows when a class has
    too few to spare): the identity with a mean shift (the infinite-ridge limit),
    then the ridge path from the strongest ridge down, warm-started, stopping at the
    first ridge that scores worse than the best so far (a weaker ridge only fits the
    training coupling harder), and — when there are more classes than dimensions, so
    the class means pin the map down — the weakest ridge started from the class-mean
    map. W1 alone always prefers weaker ridges: in high dimension much of a W1 fit is
    shrinkage, which lowers the finite-sample W1 but raises the Lipschitz constant in
    target coordinates by the same token; the product sees both.
    """
    d = Zr.shape[1]
    multi = len(ridges) > 1  # compare candidates (ridge="auto")
    select = multi  # ... on held-out rows, when every group has enough of them
    val_groups: list[Group] = []
    if select:
        # Hold out a fifth of every group's rows: the choice is scored there, since
        # with d ~ n a weak ridge lets A memorize the training coupling.
        fit_groups = []
        for g in groups:
            rm = rng.random(g.ref_rows.size) < VALIDATION_FRACTION
            tm = rng.random(g.tgt_rows.size) < VALIDATION_FRACTION
            if rm.sum() < 2 or tm.sum() < 2 or (~rm).sum() < 2 or (~tm).sum() < 2:
                rm = np.zeros(g.ref_rows.size, bool)
                tm = np.zeros(g.tgt_rows.size, bool)
            fit_groups.append(_subgroup(g, ~rm, ~tm))
            if rm.any():
                val_groups.append(_subgroup(g, rm, tm))
        if len(val_groups) == len(groups):
            groups = fit_groups
        else:
            select = False
    if select:
        val_rows = np.unique(np.concatenate([g.ref_rows for g in val_groups]))

    best: dict | None = None
    trace: list[dict[str, Any]] = []

    def consider(A, b, mu: float, start: str, info: dict) -> bool:
        """Score one candidate, keep it if best; True when it is worse than the best."""
        nonlocal best
        A_inv = np.eye(d) if math.isinf(mu) else np.linalg.inv(A)
        score = float(info["W"])
        if select:
            score = group_couplings(transform_rows(Zr, A, b, val_rows), Zt, val_groups)[0]
        if multi:
            # The certified constant: an empirical max over a few points misses the
            # directions a near-singular A blows up. Without held-out rows the train
            # W1 stands in (it favours weak ridges, which the constant pays back).
            score *= _certified_lipschitz(head, A_inv)
        ridge_value = None if math.isinf(mu) else mu  # None: the identity (JSON-safe)
        trace.append({"ridge": ridge_value, "start": start, "validation_lipschitz_x_W": score,
                      "train_W": float(info["W"]), "iterations": info["iterations"]})
        if best is not None and score >= best["score"]:
            return True
        best = {"A": A, "A_inv": A_inv, "b": b, "B": Bm, "D": Dv, "score": score,
                "iterations": info["iterations"], "converged": info["converged"],
                "history": info["objective"], "ridge": ridge_value, "start": start}
        return False

    A0 = b0 = None
    if multi:
        b0 = _mean_shift(Zr, Zt, groups)
        A0 = np.eye(d)
        w_id = group_couplings(Zr + b0, Zt, groups)[0]  # identity: no matrix product
        consider(A0, b0, math.inf, "identity",
                 {"W": w_id, "iterations": 0, "converged": True, "objective": [w_id]})
    for mu in ridges:
        A, b, info = fit_affine(Zr, Zt, groups, A0=A0, b0=b0, ridge=mu,
                                max_iter=max_iter, tol=tol)
        worse = consider(A, b, mu, "mean shift" if A0 is None else "warm", info)
        if multi and worse:
            break
        A0, b0 = A, b
    if multi and len(groups) > d:
        A_init, b_init = class_mean_init(Zr, Zt, groups)
        mu = min(ridges)
        A, b, info = fit_affine(Zr, Zt, groups, A0=A_init, b0=b_init, ridge=mu,
                                max_iter=max_iter, tol=tol)
        consider(A, b, mu, "class means", info)
    assert best is not None
    settings["ridge_selected"] = best["ridge"]
    settings["start_selected"] = best["start"]
    if multi:
        settings["ridge_trace"] = trace
        settings["ridge_scored_on"] = "held-out rows" if select else (
            "train rows (too few rows per class to hold out a fifth)")
    return best


def _mean_shift(
    Zr: NDArray[np.float64], Zt: NDArray[np.float64], groups: list[Group]
) -> NDArray[np.float64]:
    """The shift b that carries the weighted reference group means onto the targets'."""
    shift = sum(g.weight * (Zt[g.tgt_rows].mean(0) - g.ref_mass @ Zr[g.ref_rows])
                for g in groups)
    return np.asarray(shift) / sum(g.weight for g in groups)


def _evaluate(
    head: LinearHead,
    sol: dict,
    Zr_te: NDArray[np.float64],
    yr_te: NDArray[np.int64],
    Zt_te: NDArray[np.float64],
    yt_te: NDArray[np.int64],
    K_T: int,
    pi_T: NDArray[np.float64],
    cw: NDArray[np.float64],
    max_eval_per_class: int | None,
    rng: np.random.Generator,
    *,
    w1_method: str = "exact",
    device: Any = "cpu",
    seed: int = 0,
) -> dict:
    """Reweighted reference loss and class-conditional W1 on the test splits."""
    Bf, Df = sol["B"], sol["D"]
    K_R = Df.size
    ce = head.loss(Zr_te, yr_te)
    per_class_ce = np.zeros(K_R)
    for j in np.flatnonzero(Df > 0):
        m = yr_te == j
        if not np.any(m):
            raise TaskrelInputError(
                f"reference class index {j} has weight D={Df[j]:.3g} but no test "
                "sample; give more reference test data"
            )
        per_class_ce[j] = ce[m].mean()
    rrl = float(np.sum(Df * per_class_ce))
    missing = [k for k in range(K_T) if not np.any(yt_te == k)]
    if missing:
        raise TaskrelInputError(
            f"target class index(es) {missing} have no test sample, so their "
            "distribution mismatch cannot be measured; give more target test data"
        )
    groups: list[Group] = build_groups(
        yr_te, yt_te, Bf, Df, cw, max_per_class=max_eval_per_class, rng=rng
    )
    Xs = transform_rows(Zr_te, sol["A"], sol["b"],
                        np.unique(np.concatenate([g.ref_rows for g in groups])))
    if w1_method == "exact":
        W, _, per_class = group_couplings(Xs, Zt_te, groups)
        w1_info: dict[str, Any] = {"method": "exact", "stderr": 0.0}
    else:
        from ..wasserstein import w1 as _w1

        ests = [_w1(Xs[g.ref_rows], Zt_te[g.tgt_rows], a=g.ref_mass, method=w1_method,
                    device=str(device), seed=seed + i) for i, g in enumerate(groups)]
        per_class = [e.value for e in ests]
        W = sum(g.weight * e.value for g, e in zip(groups, ests))
        stderr = math.sqrt(sum((g.weight * e.stderr) ** 2 for g, e in zip(groups, ests)))
        w1_info = {"method": sorted({e.method for e in ests}), "stderr": stderr,
                   "seconds": sum(e.seconds for e in ests)}
    return {
        "w1": w1_info,
        "rrl": rrl,
        "W": float(W),
        "per_class": np.asarray(per_class),
        "ref_acc": float(np.mean(head.predict_proba(Zr_te).argmax(1) == yr_te)),
        "ref_loss": float(ce.mean()),
    }


def _matched_accuracy(pred: NDArray[Any], true: NDArray[Any]) -> float:
    """Accuracy after the best one-to-one matching of predicted to true classes."""
    pc, pi = np.unique(pred, return_inverse=True)
    tc, ti = np.unique(true, return_inverse=True)
    cont = np.zeros((pc.size, tc.size))
    np.add.at(cont, (pi, ti), 1.0)
    r, c = linear_sum_assignment(-cont)
    return float(cont[r, c].sum() / true.size)


def _pseudo_label(
    head: LinearHead,
    Zr: NDArray[np.float64],
    yr: NDArray[np.int64],
    Zt: NDArray[np.float64],
    Zt_te: NDArray[np.float64],
    K_R: int,
    pi_R: NDArray[np.float64],
    source: str,
    n_target_classes: int | None,
    check_labels_te: NDArray[Any] | None,
    *,
    ridge: float,
    tol: float,
    max_per_class: int | None,
    rng: np.random.Generator,
    seed: int,
    max_rounds: int = 5,
) -> tuple:
    """Pseudo-labels for an unlabelled target; returns encoded train/test labels.

    The pseudo-classes are reference classes (their ids are returned as
    ``tgt_classes``, as reference-class indices), so B is the identity on them.
    """
    if n_target_classes is not None:
        n_target_classes = check_positive(n_target_classes, "n_target_classes", integer=True)
        if not 2 <= n_target_classes <= K_R:
            raise TaskrelInputError(
                f"`n_target_classes` must be in [2, {K_R}] (the reference has {K_R} "
                f"classes); got {n_target_classes}"
            )
    # 1. label-free alignment of the marginals
    A_inv, b = _marginal_alignment(Zr, yr, Zt, pi_R, ridge=ridge, tol=tol, rng=rng)

    def scores(Z: NDArray[np.float64], A_inv, b) -> NDArray[np.float64]:
        return head.log_proba((Z - b) @ A_inv.T)

    rounds = 0
    if source == "kmeans":
        from sklearn.cluster import KMeans

        K = n_target_classes or K_R
        km = KMeans(n_clusters=K, n_init=4, random_state=seed).fit(Zt)
        lab, lab_te = km.labels_, km.predict(Zt_te)
        S = scores(Zt, A_inv, b)
        M = np.stack([S[lab == c].mean(0) if np.any(lab == c) else np.full(K_R, -np.inf)
                      for c in range(K)])
        r, c = linear_sum_assignment(-np.nan_to_num(M, neginf=-1e12))
        cmap = np.empty(K, dtype=np.int64)
        cmap[r] = c
        ref_ids_tr, ref_ids_te = cmap[lab], cmap[lab_te]
        keep = np.unique(ref_ids_tr)
        label_source = "kmeans"
    else:
        label_source = "classifier"
        prev = None
        keep = None
        for rounds in range(1, max_rounds + 1):
            S = scores(Zt, A_inv, b)
            if keep is None:
                counts = np.bincount(S.argmax(1), minlength=K_R)
                order = np.argsort(-counts, kind="stable")
                if n_target_classes is not None:
                    keep = np.sort(order[:n_target_classes])
                else:
                    keep = np.sort(np.flatnonzero(
                        counts >= max(2, MIN_PSEUDO_CLASS_FRACTION * Zt.shape[0])))
                    if keep.size < 2:
                        keep = np.sort(order[:2])
            ref_ids_tr = keep[S[:, keep].argmax(1)]
            if prev is not None and np.mean(prev != ref_ids_tr) < 1e-3:
                break
            prev = ref_ids_tr
            y_fit = np.searchsorted(keep, ref_ids_tr)
            # make sure every kept class has >= 2 samples on the train side
            ok = np.bincount(y_fit, minlength=keep.size) >= 2
            if not np.all(ok):
                keep = keep[ok]
                ref_ids_tr = keep[S[:, keep].argmax(1)]
                y_fit = np.searchsorted(keep, ref_ids_tr)
            pi_T = _prior(y_fit, keep.size)
            Bm = np.zeros((keep.size, K_R))
            Bm[np.arange(keep.size), keep] = 1.0
            groups = build_groups(yr, y_fit, Bm, pi_T @ Bm, pi_T,
                                  max_per_class=max_per_class, rng=rng)
            A, b, _ = fit_affine(Zr, Zt, groups, ridge=ridge, max_iter=50, tol=tol)
            A_inv = np.linalg.inv(A)
        S_te = scores(Zt_te, A_inv, b)
        ref_ids_te = keep[S_te[:, keep].argmax(1)]
        ref_ids_tr = keep[scores(Zt, A_inv, b)[:, keep].argmax(1)]
    # Test pseudo-labels may miss a class: drop such classes (fold into runner-up).
    keep = np.intersect1d(np.unique(ref_ids_tr), np.unique(ref_ids_te))
    if keep.size < 2:
        hint = ("pass `target_labels` or `n_target_classes`" if n_target_classes is None
                else "pass `target_labels` or more target rows")
        raise TaskrelInputError(
            f"pseudo-labelling found fewer than 2 target classes present in both the fit "
            f"and the held-out target rows ({Zt.shape[0]} and {Zt_te.shape[0]} rows); {hint}"
        )
    S_tr, S_te = scores(Zt, A_inv, b), scores(Zt_te, A_inv, b)
    if label_source == "classifier":
        ref_ids_tr = keep[S_tr[:, keep].argmax(1)]
        ref_ids_te = keep[S_te[:, keep].argmax(1)]
    else:
        ref_ids_tr = np.where(np.isin(ref_ids_tr, keep), ref_ids_tr, keep[S_tr[:, keep].argmax(1)])
        ref_ids_te = np.where(np.isin(ref_ids_te, keep), ref_ids_te, keep[S_te[:, keep].argmax(1)])
    y_fit = np.searchsorted(keep, ref_ids_tr)
    y_eval = np.searchsorted(keep, ref_ids_te)
    acc = None
    if check_labels_te is not None:
        acc = _matched_accuracy(y_eval, check_labels_te)
    warm = {"A_inv": A_inv, "b": b, "rounds": rounds}
    return keep.size, y_fit, y_eval, keep, label_source, acc, warm
