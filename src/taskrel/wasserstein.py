r"""Class-conditional Wasserstein-1 distances for large feature sets.

.. math::

    W(R, T) = \sum_k w_k\, W_1\big(P_R(z\mid k),\, P_T(z\mid k)\big),
    \qquad c(x, y) = \lVert x - y\rVert_2

Three estimators of each :math:`W_1`:

``"exact"``
    Network-simplex OT (POT's ``ot.emd2``) on the full per-class cost matrix: memory
    and time grow with :math:`n_R n_T` per class.
``"minibatch"``
    The mean of exact OT between seeded subsamples of ``batch_size`` points per side,
    over ``n_batches`` batches, with the standard error over batches. Its expectation
    is *not* the full-sample value: subsampling biases it upward (a small sample of a
    distribution is farther from another sample than the distributions are). The bias
    shrinks with ``batch_size``; ``docs/scale.md`` measures it on real features.
``"sinkhorn"``
    The debiased Sinkhorn divergence
    :math:`S_\varepsilon(a,b) = OT_\varepsilon(a,b) - \tfrac12 OT_\varepsilon(a,a)
    - \tfrac12 OT_\varepsilon(b,b)` (Feydy et al., AISTATS 2019), in log-domain torch
    (GPU when available) with :math:`\varepsilon`-scaling. Cost rows are computed in
    chunks, so memory is ``chunk x n`` rather than ``n x n`` when the full matrix
    would be large. :math:`S_\varepsilon \to W_1` as :math:`\varepsilon \to 0`;
    ``epsilon`` is relative to the standard deviation of the pairwise distances
    of the class pair (estimated on up to 512 points a side). The solver is taskrel's
    own, kept after measuring POT's and geomloss's (``benchmarks/bench_sinkhorn.py``,
    ``docs/scale.md``): at the same blur no setting of either was both as accurate
    and not slower on real features, and geomloss without KeOps holds four full
    cost matrices where this one chunks rows.

``"auto"`` takes ``"exact"`` when every class pair has at most
:data:`EXACT_MAX_PAIRS` point pairs, otherwise ``"sinkhorn"`` on a GPU and
``"minibatch"`` on the CPU.

Inputs may be memory-mapped arrays (see :func:`taskrel.io.open_task_dir`): only the
rows an estimator uses are read, and only those rows are checked for NaN/inf.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import ot
import torch
from numpy.typing import ArrayLike, NDArray

from ._internal.devices import resolve_device
from ._internal.oom import with_oom_fallback
from ._internal.ot import exact_cost
from ._internal.validation import (
    check_choice,
    check_consistent_length,
    check_labels,
    check_positive,
)
from .exceptions import TaskrelInputError

__all__ = ["W1Estimate", "class_conditional_w1", "w1", "METHODS", "EXACT_MAX_PAIRS"]

METHODS = ("auto", "exact", "minibatch", "sinkhorn")
#: ``method="auto"`` solves exactly while every class pair has at most this many pairs.
EXACT_MAX_PAIRS = 4_000_000
#: Cost-matrix entries held at once by the Sinkhorn solver before it chunks rows.
SINKHORN_MAX_ENTRIES = 2**25
#: The same on a GPU (float64: 2 GiB per matrix, three matrices at most).
SINKHORN_MAX_ENTRIES_CUDA = 2**28
DEFAULT_BATCH = 1000
DEFAULT_EPSILON = 0.01
#: Sinkhorn stops when no potential moves by more than this times the distance spread.
SINKHORN_TOL = 1e-4


@dataclass(frozen=True)
class W1Estimate:
    """An estimate of a (class-conditional) W1 distance.

    Attributes
    ----------
    value : float
        The estimate, :math:`\\sum_k w_k W_1^{(k)}`.
    stderr : float
        Monte-Carlo standard error over batches (0.0 for a single deterministic
        solve). It does not include the bias of minibatching or of the entropic
        smoothing, which ``docs/scale.md`` measures.
    per_class, per_class_stderr, class_weights : dict
        Per target class label (NaN for a class of weight 0, which is not solved).
    method : str
        The estimator that ran (``"auto"`` resolved).
    n_used : int
        Rows fed to the OT solver, summed over classes and batches (both sides).
    seconds : float
        Wall-clock time.
    """

    value: float
    stderr: float
    per_class: dict[Any, float]
    per_class_stderr: dict[Any, float]
    class_weights: dict[Any, float]
    method: str
    n_used: int
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)

    def __float__(self) -> float:
        return self.value


# ---------------------------------------------------------------- validation


def _check_row_pair(X: Any, Y: Any, x_name: str, y_name: str) -> tuple[Any, Any]:
    """:func:`_check_rows` on both, and the same number of features."""
    X, Y = _check_rows(X, x_name), _check_rows(Y, y_name)
    if X.shape[1] != Y.shape[1]:
        raise TaskrelInputError(
            f"`{x_name}` and `{y_name}` must have the same number of features: "
            f"{X.shape[1]} vs {Y.shape[1]}"
        )
    return X, Y


def _check_rows(X: Any, name: str) -> Any:
    """Shape/dtype checks that do not read a memory-mapped array's data."""
    if X is None:
        raise TaskrelInputError(f"`{name}` is required; got None")
    if not isinstance(X, np.ndarray):
        X = np.asarray(X)
    if X.dtype == object or not np.issubdtype(X.dtype, np.number) or np.iscomplexobj(X):
        raise TaskrelInputError(f"`{name}` must be a 2-D real numeric array; got dtype {X.dtype}")
    if X.ndim != 2:
        raise TaskrelInputError(
            f"`{name}` must be 2-D of shape (n_samples, n_features); got shape {X.shape}"
        )
    if X.shape[0] < 1 or X.shape[1] < 1:
        raise TaskrelInputError(f"`{name}` must be non-empty; got shape {X.shape}")
    return X


def _gather(X: Any, rows: NDArray[np.int64] | None, name: str) -> NDArray[np.float64]:
    """Read ``X[rows]`` (sorted rows: one pass over a memory map) as finite float64."""
    if rows is None:
        out = np.asarray(X, dtype=np.float64)
    else:
        order = np.argsort(rows, kind="stable")
        out = np.empty((rows.size, X.shape[1]), dtype=np.float64)
        out[order] = X[rows[order]]
    if not np.all(np.isfinite(out)):
        raise TaskrelInputError(f"`{name}` must be finite; got NaN/inf in the rows used")
    return out


def _check_weights(w: Any, name: str, n: int) -> NDArray[np.float64] | None:
    if w is None:
        return None
    arr = np.asarray(w, dtype=np.float64)
    if arr.shape != (n,):
        raise TaskrelInputError(f"`{name}` must have shape ({n},); got {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise TaskrelInputError(f"`{name}` must be finite and non-negative")
    if abs(arr.sum() - 1.0) > 1e-6:
        raise TaskrelInputError(f"`{name}` must sum to 1; sums to {arr.sum():.6g}")
    return arr


# ---------------------------------------------------------------- solvers


def _exact(x: NDArray[np.float64], y: NDArray[np.float64],
           a: NDArray[np.float64] | None, b: NDArray[np.float64] | None) -> float:
    a = np.full(x.shape[0], 1.0 / x.shape[0]) if a is None else a
    b = np.full(y.shape[0], 1.0 / y.shape[0]) if b is None else b
    M = ot.dist(x, y, metric="euclidean")
    return exact_cost(a, b, M, knob="`max_per_class` or use method='minibatch'")


def _softmin(eps: float, x: torch.Tensor, y: torch.Tensor, h: torch.Tensor,
             C: torch.Tensor | None, chunk: int) -> torch.Tensor:
    r""":math:`-\varepsilon \log \sum_j \exp(h_j - c(x_i, y_j)/\varepsilon)`, by row chunks."""
    if C is not None:
        return -eps * torch.logsumexp(h[None, :] - C / eps, dim=1)
    out = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
    for s in range(0, x.shape[0], chunk):
        Cs = torch.cdist(x[s:s + chunk], y)
        out[s:s + chunk] = -eps * torch.logsumexp(h[None, :] - Cs / eps, dim=1)
    return out


def _sinkhorn_divergence(x: torch.Tensor, y: torch.Tensor, a: torch.Tensor,
                         b: torch.Tensor, eps: float, diameter: float, chunk: int,
                         tol: float, *, scaling: float = 0.7,
                         max_iter: int = 1000) -> float:
    """Debiased Sinkhorn divergence with symmetric log-domain updates and eps-scaling.

    Kept instead of a library solver on measurements (``benchmarks/bench_sinkhorn.py``,
    1,000 and 2,000 real EfficientNet-Lite0 features a side, CPU, ``docs/scale.md``):
    geomloss's ``SamplesLoss("sinkhorn", p=1, debias=True)`` computes the same
    divergence on a fixed eps schedule with no convergence test, so at
    ``scaling=0.99`` it came within 0.06 percentage points of this solver's error
    against exact W1 and was 2.3-4x faster on near pairs but 3-8.5x slower on far
    ones (where the stopping rule here ends early), and at ``scaling=0.9`` it was
    faster but up to 0.6 points less accurate; its tensorized backend needs the full
    cost matrices (chunking needs KeOps). POT's ``empirical_sinkhorn_divergence`` (no
    eps-scaling, entropy terms left out) was 3-85x slower and had not converged after
    its 10,000 iterations.
    """
    cap = SINKHORN_MAX_ENTRIES_CUDA if x.device.type == "cuda" else SINKHORN_MAX_ENTRIES
    big = x.shape[0] * y.shape[0] > cap
    big_x = x.shape[0] ** 2 > cap
    big_y = y.shape[0] ** 2 > cap
    Cxy = None if big else torch.cdist(x, y)
    Cyx = None if Cxy is None else Cxy.T
    Cxx = None if big_x else torch.cdist(x, x)
    Cyy = None if big_y else torch.cdist(y, y)
    la, lb = a.log(), b.log()

    def step(e: float, f_ba, g_ab, f_aa, g_bb):
        # Cross term: alternating (Gauss-Seidel) updates converge faster than averaged
        # symmetric ones; the self terms use averaged symmetric updates (contractions).
        f_new = _softmin(e, x, y, lb + g_ab / e, Cxy, chunk)
        g_new = _softmin(e, y, x, la + f_new / e, Cyx, chunk)
        f_aa = 0.5 * (f_aa + _softmin(e, x, x, la + f_aa / e, Cxx, chunk))
        g_bb = 0.5 * (g_bb + _softmin(e, y, y, lb + g_bb / e, Cyy, chunk))
        return f_new, g_new, f_aa, g_bb

    e = max(diameter, eps)
    g_ab = _softmin(e, y, x, la, Cyx, chunk)
    f_ba = _softmin(e, x, y, lb, Cxy, chunk)
    f_aa = _softmin(e, x, x, la, Cxx, chunk)
    g_bb = _softmin(e, y, y, lb, Cyy, chunk)
    schedule = []
    while e > eps:
        e = max(e * scaling, eps)
        schedule.append(e)
    for e in schedule:
        f_ba, g_ab, f_aa, g_bb = step(e, f_ba, g_ab, f_aa, g_bb)
    # Stop when the cross term's dual objective (monotone under these block updates)
    # and the self-term potentials have settled; the potentials of the cross term
    # themselves can creep along a flat direction long after the value has converged.
    dual = float(torch.dot(a, f_ba) + torch.dot(b, g_ab))
    for _ in range(max_iter):
        new = step(eps, f_ba, g_ab, f_aa, g_bb)
        delta_self = max(float((new[2] - f_aa).abs().max()),
                         float((new[3] - g_bb).abs().max()))
        f_ba, g_ab, f_aa, g_bb = new
        dual_new = float(torch.dot(a, f_ba) + torch.dot(b, g_ab))
        settled = abs(dual_new - dual) < 0.01 * tol and delta_self < tol
        dual = dual_new
        if settled:
            break
    # The dual value of S_eps at the (converged) potentials.
    val = torch.dot(a, f_ba - f_aa) + torch.dot(b, g_ab - g_bb)
    return float(val)


def _sinkhorn(x: NDArray[np.float64], y: NDArray[np.float64],
              a: NDArray[np.float64] | None, b: NDArray[np.float64] | None,
              epsilon: float, device: torch.device) -> float:
    dt = torch.float64
    xt = torch.as_tensor(x, dtype=dt, device=device)
    yt = torch.as_tensor(y, dtype=dt, device=device)
    at = torch.full((x.shape[0],), 1.0 / x.shape[0], dtype=dt, device=device) \
        if a is None else torch.as_tensor(a, dtype=dt, device=device)
    bt = torch.full((y.shape[0],), 1.0 / y.shape[0], dtype=dt, device=device) \
        if b is None else torch.as_tensor(b, dtype=dt, device=device)
    # Zero-mass points would give log(0) = -inf potentials: drop them.
    if bool((at == 0).any()):
        keep = at > 0
        xt, at = xt[keep], at[keep]
    if bool((bt == 0).any()):
        keep = bt > 0
        yt, bt = yt[keep], bt[keep]
    # Scale: mean and max pairwise distance on a seeded sample of up to 512 rows a side.
    g = torch.Generator(device="cpu").manual_seed(0)
    si = torch.randperm(xt.shape[0], generator=g)[:512].to(device)
    sj = torch.randperm(yt.shape[0], generator=g)[:512].to(device)
    Cs = torch.cdist(torch.cat([xt[si], yt[sj]]), torch.cat([xt[si], yt[sj]]))
    cross = torch.cdist(xt[si], yt[sj])
    spread = float(cross.std()) if cross.numel() > 1 else 0.0
    mean_cost = float(cross.mean())
    diameter = float(Cs.max())
    if diameter <= 0.0:
        return 0.0
    # Entropic blur relative to the spread of the distances (what decides the plan),
    # not their mean: in high dimension distances concentrate around a large mean.
    scale = spread if spread > 1e-3 * mean_cost else mean_cost
    eps = epsilon * scale
    n_max = max(xt.shape[0], yt.shape[0])

    def run(chunk: int) -> float:
        return _sinkhorn_divergence(xt, yt, at, bt, eps, diameter, chunk,
                                    SINKHORN_TOL * scale)

    chunk0 = max(1, min(n_max, SINKHORN_MAX_ENTRIES // max(n_max, 1)))
    return with_oom_fallback(run, chunk0, min_batch=1)


def _solve(method: str, x, y, a, b, epsilon, device) -> float:
    if method == "sinkhorn":
        return _sinkhorn(x, y, a, b, epsilon, device)
    return _exact(x, y, a, b)


def _draw(rng: np.random.Generator, n: int, size: int,
          p: NDArray[np.float64] | None) -> NDArray[np.int64]:
    if p is None:
        return rng.choice(n, size=min(size, n), replace=False)
    # Weighted measure: i.i.d. draws give an unbiased empirical measure of it.
    return rng.choice(n, size=size, replace=True, p=p)


# ---------------------------------------------------------------- public API


def _resolve_method(method: str, pair_sizes: list[tuple[int, int]],
                    batch_size: int | None, dev: torch.device) -> str:
    if method != "auto":
        return method
    if max(n * m for n, m in pair_sizes) <= EXACT_MAX_PAIRS:
        return "exact"
    return "sinkhorn" if dev.type == "cuda" else "minibatch"


def _check_solver_args(n_batches: Any, epsilon: Any, batch_size: Any, device: str
                       ) -> tuple[int, float, int | None, Any]:
    """Validate the estimator settings shared by :func:`class_conditional_w1` and :func:`w1`."""
    n_batches = check_positive(n_batches, "n_batches", integer=True)
    epsilon = check_positive(epsilon, "epsilon")
    if batch_size is not None:
        batch_size = check_positive(batch_size, "batch_size", integer=True)
    return n_batches, epsilon, batch_size, resolve_device(device)


def _plan(m: str, pair_sizes: list[tuple[int, int]], batch_size: int | None,
          dev: torch.device) -> tuple[str, int | None, bool]:
    """The estimator (``"auto"`` resolved), its batch size, and whether it subsamples."""
    m = _resolve_method(m, pair_sizes, batch_size, dev)
    if m == "minibatch" and batch_size is None:
        batch_size = DEFAULT_BATCH
    return m, batch_size, m == "minibatch" or (m == "sinkhorn" and batch_size is not None)


def _settings(m: str, sampled: bool, batch_size: int | None, n_batches: int,
              epsilon: float, dev: torch.device, seed: int) -> dict[str, Any]:
    """``W1Estimate.settings``: what ran, with the settings that did not apply as None."""
    return {"batch_size": batch_size if sampled else None,
            "n_batches": n_batches, "epsilon": epsilon if m == "sinkhorn" else None,
            "device": str(dev) if m == "sinkhorn" else "cpu", "seed": seed}


def class_conditional_w1(
    ref_X: ArrayLike,
    ref_y: ArrayLike,
    tgt_X: ArrayLike,
    tgt_y: ArrayLike,
    *,
    class_weights: ArrayLike | None = None,
    method: str = "auto",
    batch_size: int | None = None,
    n_batches: int = 10,
    epsilon: float = DEFAULT_EPSILON,
    device: str = "auto",
    seed: int = 0,
    progress: bool = False,
) -> W1Estimate:
    r"""Class-conditional W1 between two labelled feature sets.

    :math:`\sum_k w_k W_1(P_R(z\mid k), P_T(z\mid k))` over the target classes ``k``,
    with Euclidean ground cost. A target class is compared with the reference class
    of the same label.

    Parameters
    ----------
    ref_X : array of shape (n_ref, d)
        Reference features; may be a read-only memory map.
    ref_y : array of shape (n_ref,)
        Integer reference labels; must contain every target label.
    tgt_X : array of shape (n_tgt, d)
        Target features; may be a memory map.
    tgt_y : array of shape (n_tgt,)
        Integer target labels.
    class_weights : array of shape (n_target_classes,), optional
        Weights in sorted target-label order, non-negative, summing to 1. Default:
        the target class proportions.
    method : {"auto", "exact", "minibatch", "sinkhorn"}, default "auto"
        See the module docstring.
    batch_size : int, optional
        Points per class and side in one batch. ``"minibatch"`` defaults to
        1000; ``"sinkhorn"`` uses every point unless it is given (then it averages
        ``n_batches`` subsampled divergences); ``"exact"`` ignores it.
    n_batches : int, default 10
        Batches averaged (``"minibatch"``, and ``"sinkhorn"`` with ``batch_size``).
    epsilon : float, default 0.01
        Entropic blur relative to the standard deviation of the pairwise distances
        (``"sinkhorn"``).
    device : {"auto", "cpu", "cuda"}, default "auto"
        Where Sinkhorn runs (exact OT runs on the CPU).
    seed : int, default 0
        Seeds the subsampling.
    progress : bool, default False
        Show a tqdm bar over classes.

    Returns
    -------
    W1Estimate

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(50, 3)); y = np.repeat([0, 1], 25)
    >>> est = class_conditional_w1(X, y, X + [3.0, 4.0, 0.0], y, method="exact")
    >>> round(est.value, 6)  # translating identical clouds by t gives |t| = 5
    5.0
    """
    m = check_choice(method, "method", METHODS)
    ref_X, tgt_X, ref_rows, tgt_rows, tgt_classes, w = _check_labelled_pair(
        ref_X, ref_y, tgt_X, tgt_y, class_weights)
    n_batches, epsilon, batch_size, dev = _check_solver_args(
        n_batches, epsilon, batch_size, device)
    seed = int(check_positive(seed, "seed", integer=True, allow_zero=True))
    m, batch_size, sampled = _plan(
        m, [(r.size, t.size) for r, t in zip(ref_rows, tgt_rows)], batch_size, dev)
    B = n_batches if sampled else 1

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    vals = np.zeros((B, tgt_classes.size))
    n_used = 0
    it = range(tgt_classes.size)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc=f"W1 ({m})", unit="class")
    for k in it:
        if w[k] == 0:
            continue
        n_used += _solve_class(vals[:, k], m, sampled, ref_X, ref_rows[k], tgt_X,
                               tgt_rows[k], batch_size, epsilon, dev, rng)
    return _class_estimate(vals, w, tgt_classes, m, n_used, t0,
                           _settings(m, sampled, batch_size, B, epsilon, dev, seed))


def _check_labelled_pair(ref_X: Any, ref_y: Any, tgt_X: Any, tgt_y: Any,
                         class_weights: Any) -> tuple[Any, Any, list[NDArray[np.int64]],
                                                      list[NDArray[np.int64]],
                                                      NDArray[Any], NDArray[np.float64]]:
    """Validate :func:`class_conditional_w1`'s data: the feature arrays, each target
    class's reference and target rows, the sorted target labels and class weights."""
    ref_X, tgt_X = _check_row_pair(ref_X, tgt_X, "ref_X", "tgt_X")
    ref_classes, ref_idx = check_labels(ref_y, "ref_y", min_classes=1, min_per_class=1)
    tgt_classes, tgt_idx = check_labels(tgt_y, "tgt_y", min_classes=1, min_per_class=1)
    check_consistent_length(ref_X, "ref_X", ref_idx, "ref_y")
    check_consistent_length(tgt_X, "tgt_X", tgt_idx, "tgt_y")
    missing = np.setdiff1d(tgt_classes, ref_classes)
    if missing.size:
        raise TaskrelInputError(
            f"`ref_y` must contain every target class; missing {missing[:10].tolist()}"
        )
    K = tgt_classes.size
    if class_weights is None:
        w = np.bincount(tgt_idx, minlength=K) / tgt_idx.size
    else:
        w = _check_weights(class_weights, "class_weights", K)
    ref_pos = np.searchsorted(ref_classes, tgt_classes)
    ref_rows = [np.flatnonzero(ref_idx == j) for j in ref_pos]
    tgt_rows = [np.flatnonzero(tgt_idx == k) for k in range(K)]
    return ref_X, tgt_X, ref_rows, tgt_rows, tgt_classes, w


def _solve_class(out: NDArray[np.float64], m: str, sampled: bool, ref_X: Any,
                 ref_rows: NDArray[np.int64], tgt_X: Any, tgt_rows: NDArray[np.int64],
                 batch_size: int | None, epsilon: float, dev: torch.device,
                 rng: np.random.Generator) -> int:
    """Fill ``out`` (one value per batch) for one class; the rows fed to the solver."""
    if not sampled:
        x = _gather(ref_X, ref_rows, "ref_X")
        y = _gather(tgt_X, tgt_rows, "tgt_X")
        out[0] = _solve(m, x, y, None, None, epsilon, dev)
        return x.shape[0] + y.shape[0]
    solver = m if m == "sinkhorn" else "exact"
    if batch_size >= max(ref_rows.size, tgt_rows.size):
        # Every batch would be the whole class: one solve, no sampling error.
        x = _gather(ref_X, ref_rows, "ref_X")
        y = _gather(tgt_X, tgt_rows, "tgt_X")
        out[:] = _solve(solver, x, y, None, None, epsilon, dev)
        return x.shape[0] + y.shape[0]
    n_used = 0
    for b in range(out.size):
        ri = ref_rows[_draw(rng, ref_rows.size, batch_size, None)]
        ti = tgt_rows[_draw(rng, tgt_rows.size, batch_size, None)]
        x = _gather(ref_X, ri, "ref_X")
        y = _gather(tgt_X, ti, "tgt_X")
        out[b] = _solve(solver, x, y, None, None, epsilon, dev)
        n_used += ri.size + ti.size
    return n_used


def _class_estimate(vals: NDArray[np.float64], w: NDArray[np.float64],
                    tgt_classes: NDArray[Any], m: str, n_used: int, t0: float,
                    settings: dict[str, Any]) -> W1Estimate:
    """The weighted total, its batch standard error and the per-class values."""
    B, K = vals.shape
    totals = vals @ w
    if B > 1:
        stderr = float(totals.std(ddof=1) / math.sqrt(B))
        pc_se = vals.std(axis=0, ddof=1) / math.sqrt(B)
    else:
        stderr, pc_se = 0.0, np.zeros(K)
    pc_mean = np.where(w > 0, vals.mean(0), np.nan)  # zero-weight classes: not solved
    pc_se = np.where(w > 0, pc_se, np.nan)
    labels = [c.item() if hasattr(c, "item") else c for c in tgt_classes]
    return W1Estimate(
        value=float(totals.mean()),
        stderr=stderr,
        per_class={c: float(v) for c, v in zip(labels, pc_mean)},
        per_class_stderr={c: float(v) for c, v in zip(labels, pc_se)},
        class_weights={c: float(v) for c, v in zip(labels, w)},
        method=m,
        n_used=int(n_used),
        seconds=time.perf_counter() - t0,
        settings=settings,
    )


def w1(
    X: ArrayLike,
    Y: ArrayLike,
    *,
    a: ArrayLike | None = None,
    b: ArrayLike | None = None,
    method: str = "auto",
    batch_size: int | None = None,
    n_batches: int = 10,
    epsilon: float = DEFAULT_EPSILON,
    device: str = "auto",
    seed: int = 0,
) -> W1Estimate:
    """W1 between two (optionally weighted) point clouds; the one-pair building block.

    ``a`` and ``b`` are point masses (non-negative, summing to 1; default uniform).
    With weights, ``"minibatch"`` draws each batch i.i.d. from the weights (with
    replacement). Other parameters as in :func:`class_conditional_w1`; the result's
    ``per_class`` is empty.

    Examples
    --------
    >>> import numpy as np
    >>> w1(np.zeros((1, 2)), np.array([[3.0, 4.0]]), method="exact").value
    5.0
    """
    m = check_choice(method, "method", METHODS)
    X, Y = _check_row_pair(X, Y, "X", "Y")
    a = _check_weights(a, "a", X.shape[0])
    b = _check_weights(b, "b", Y.shape[0])
    n_batches, epsilon, batch_size, dev = _check_solver_args(
        n_batches, epsilon, batch_size, device)
    m, batch_size, sampled = _plan(m, [(X.shape[0], Y.shape[0])], batch_size, dev)
    t0 = time.perf_counter()
    if not sampled:
        vals = np.array([_solve(m, _gather(X, None, "X"), _gather(Y, None, "Y"), a, b,
                                epsilon, dev)])
        n_used = X.shape[0] + Y.shape[0]
    else:
        rng = np.random.default_rng(int(seed))
        vals = np.zeros(n_batches)
        n_used = 0
        for i in range(n_batches):
            ri = _draw(rng, X.shape[0], batch_size, a)
            ti = _draw(rng, Y.shape[0], batch_size, b)
            vals[i] = _solve(m if m == "sinkhorn" else "exact", _gather(X, ri, "X"),
                             _gather(Y, ti, "Y"), None, None, epsilon, dev)
            n_used += ri.size + ti.size
    stderr = float(vals.std(ddof=1) / math.sqrt(vals.size)) if vals.size > 1 else 0.0
    return W1Estimate(
        value=float(vals.mean()), stderr=stderr, per_class={}, per_class_stderr={},
        class_weights={}, method=m, n_used=int(n_used),
        seconds=time.perf_counter() - t0,
        settings=_settings(m, sampled, batch_size, int(vals.size), epsilon, dev,
                           int(seed)),
    )
