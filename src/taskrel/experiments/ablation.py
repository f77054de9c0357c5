"""Task-relatedness ablation (issue 13): variants of the method on a benchmark's cells.

A *run* is one :func:`taskrel.task_relatedness` call per (encoder, target) cell of a
suite, with some settings changed (tau, recipe, feature dimension, reference task,
with or without target labels). A *variant* is a number read from a run's result (the
bound, one of its terms, the transformed classifier's loss, ...) or picked across runs
(the tau rules). Every variant is scored in the benchmark's three views
(:func:`taskrel.experiments.views.compute_views`) against the suite's ground truths,
next to the baselines' cells of the same suite, so the comparison shares one bootstrap.

Runs are stored like suite cells (:class:`~taskrel.experiments.store.ResultsStore`, one
row per (encoder, target, run); ``estimator`` holds the run name), keyed by a digest of
the run's settings and the suite cell's own digest: the ablation resumes, and a changed
feature option recomputes only what it reaches.

Variants (all oriented lower = better: they are upper bounds or parts of one):

========================  ==========================================================
``bound``                 the bound (reweighted reference loss + label mismatch + L W1)
``reference_loss``        its reweighted-reference-loss term alone
``lipschitz_w1``          its Lipschitz x W1 term alone
``bound_clipped``         min(bound, log K_T): the trivial bound caps it
``bound_certified``       the bound with the certified Lipschitz constant
``bound_reference_lip``   the bound with the Lipschitz constant in reference coordinates
                          (the official code's bookkeeping; not a bound on the target)
``transformed_loss``      the transformed reference classifier's held-out target loss
                          (pseudo-labels without target labels): the quantity the
                          transport step bounds, so a tighter bound (docs/theory.md)
``transport_cost``        transformed_loss - (reweighted reference loss + label
                          mismatch): the realised transport cost beside its worst case
========================  ==========================================================

Tau rules across the runs of a tau grid: ``tau_nonvacuous`` takes the largest tau of
the grid with L W1 <= log K_T - (reweighted reference loss + label mismatch), i.e. a
bound below the trivial one (none qualifies: the tightest); ``tau_tightest`` the tau
with the smallest bound (a minimum of valid bounds is a valid bound).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..exceptions import TaskrelInputError
from .store import Cell

__all__ = ["RunSpec", "RUNS", "REPORTS", "variant_values", "ablation_rows",
           "ABLATION_COLUMNS", "run_cell", "run_digest", "features_digest", "reference_task",
           "TAU_GRID"]

#: Columns of ``docs/results/<suite>/ablation.csv``.
ABLATION_COLUMNS = ("variant", "view", "truth", "statistic", "value", "ci_low", "ci_high")


@dataclass(frozen=True)
class RunSpec:
    """One task-relatedness configuration run on every cell.

    ``tau`` is ``"auto"``, ``"paper"`` or a factor times the auto tau
    (``tau_factor``); ``feature_dim`` is ``"suite"`` (the suite's PCA), an int (PCA
    to that many dimensions) or ``None`` (the encoder's full features);
    ``reference`` is ``"suite"`` or ``"union"`` (the suite reference plus the rows
    of the ``union`` dataset that no target cell uses, as extra classes).
    """

    tau: str = "auto"
    tau_factor: float = 1.0
    recipe: str = "fast"
    max_iter: int | None = None
    feature_dim: int | str | None = "suite"
    reference: str = "suite"
    labelled: bool = True


def _runs() -> dict[str, RunSpec]:
    runs: dict[str, RunSpec] = {}
    for lab, suffix in ((True, ""), (False, "/label-free")):
        runs[f"tau=auto{suffix}"] = RunSpec(labelled=lab)
        runs[f"tau=paper{suffix}"] = RunSpec(tau="paper", labelled=lab)
        for f in (0.25, 0.0625, 0.015625):
            runs[f"tau=auto*{f:g}{suffix}"] = RunSpec(tau_factor=f, labelled=lab)
        runs[f"reference=union{suffix}"] = RunSpec(reference="union", labelled=lab)
    runs["pca=256"] = RunSpec(feature_dim=256)
    runs["pca=none"] = RunSpec(feature_dim=None)
    runs["recipe=paper"] = RunSpec(tau="paper", recipe="paper")
    return runs


#: Every run, by name. ``recipe=paper`` is the official recipe with its tau (0.02).
RUNS: dict[str, RunSpec] = _runs()
#: The tau grid the tau rules pick from (factor of the auto tau, per run name stem).
TAU_GRID = ("tau=auto", "tau=auto*0.25", "tau=auto*0.0625", "tau=auto*0.015625")


def _get(extra: Mapping[str, Any], key: str) -> float | None:
    v = extra.get(key)
    return None if v is None else float(v)


def _clipped(e: Mapping[str, Any], K: int) -> float | None:
    b = _get(e, "bound")
    return None if b is None else min(b, math.log(K))


def _ref_lip(e: Mapping[str, Any], K: int) -> float | None:
    return (e["reweighted_reference_loss"] + e["label_mismatch"]
            + e["lipschitz_reference_coords"] * e["distribution_mismatch"])


def _transformed(e: Mapping[str, Any], K: int) -> float | None:
    v = e.get("transformed_loss")
    if v is None:
        v = (e.get("settings") or {}).get("transformed_loss_pseudo")
    return None if v is None else float(v)


def _transport(e: Mapping[str, Any], K: int) -> float | None:
    t = _transformed(e, K)
    return None if t is None else t - e["reweighted_reference_loss"] - e["label_mismatch"]


#: What a variant reads from one run's result (``extra`` of its row) and K_T.
REPORTS: dict[str, Callable[[Mapping[str, Any], int], float | None]] = {
    "bound": lambda e, K: _get(e, "bound"),
    "reference_loss": lambda e, K: _get(e, "reweighted_reference_loss"),
    "lipschitz_w1": lambda e, K: e["lipschitz"] * e["distribution_mismatch"],
    "bound_clipped": _clipped,
    "bound_certified": lambda e, K: _get(e, "bound_certified"),
    "bound_reference_lip": _ref_lip,
    "transformed_loss": _transformed,
    "transport_cost": _transport,
}


def features_digest(config: Any, cell: Cell) -> str:
    """SHA-256 of what a run reads from the suite for ``cell``: the suite's digest
    inputs of the cell's task-relatedness row (encoder, rows, reference, feature and
    task-relatedness options) without ``score_term``, which says which number a suite
    cell reports and is not read by a run (every run stores the whole result)."""
    from .digest import digest_inputs, hash_inputs

    d = digest_inputs(config, Cell(cell.encoder, cell.reference, cell.target, 1.0, 0,
                                   "task_relatedness"))
    d.pop("score_term", None)
    return hash_inputs(d)


def run_digest(spec: RunSpec, suite_cell_digest: str) -> str:
    """SHA-256 of the run's settings and :func:`features_digest` of the cell."""
    text = json.dumps([asdict(spec), suite_cell_digest], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


# ---------------------------------------------------------------------------------
# computing one run on one cell
# ---------------------------------------------------------------------------------
def _union_rows(n_train: int, limit: int | None, seed: int = 0
                ) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the union dataset's train split that no target cell reads (the target
    cells read the legacy :func:`permutation_rows` of it, as ``inputs.unit_task``), split
    in half: (train rows, test rows)."""
    from .._internal.sampling import permutation_rows

    used = set(permutation_rows(n_train, limit).tolist())
    free = np.array([i for i in range(n_train) if i not in used], dtype=np.int64)
    if free.size < 4:
        raise TaskrelInputError(
            f"union reference: only {free.size} rows of the union dataset are unused by "
            "the targets; need at least 4")
    perm = np.random.default_rng(seed).permutation(free)
    half = perm.size // 2
    return np.sort(perm[:half]), np.sort(perm[half:])


def reference_task(config: Any, spec: RunSpec, encoder: str, union: str | None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train X, train y, test X, test y) of the run's reference, unprojected."""
    from .inputs import unit_task

    ref = unit_task(config, (encoder, config.reference.name, "both"))
    Xr, yr = np.asarray(ref.features, np.float64), np.asarray(ref.labels)
    Xe, ye = np.asarray(ref.test_features, np.float64), np.asarray(ref.test_labels)
    if spec.reference == "suite":
        return Xr, yr, Xe, ye
    if union is None:
        raise TaskrelInputError("reference='union' needs the ablation's `union` dataset")
    from ..features.extract import extract_task
    from .inputs import suite_dataset, suite_device, suite_encoder

    tspec = config.target(union)
    full = extract_task(suite_encoder(config, encoder), suite_dataset(tspec),
                        split="train", limit=None, progress=False,
                        device=suite_device(config), limit_rule="permutation")
    F, y = np.asarray(full.features, np.float64), np.asarray(full.labels)
    tr, te = _union_rows(y.size, config.options.get("max_target", None))
    _, yu = np.unique(y, return_inverse=True)
    off = int(np.unique(np.concatenate([yr, ye])).size)
    # Reference classes are encoded 0..K_R-1 here; the union's follow them.
    _, yr_enc = np.unique(np.concatenate([yr, ye]), return_inverse=True)
    yr2, ye2 = yr_enc[:yr.size], yr_enc[yr.size:]
    return (np.vstack([Xr, F[tr]]), np.concatenate([yr2, off + yu[tr]]),
            np.vstack([Xe, F[te]]), np.concatenate([ye2, off + yu[te]]))


#: The recent reference PCAs (key: suite, encoder, reference kind), so the runs of
#: one encoder do not repeat the same SVD on every target (it was ~40 % of a vision
#: cell); :func:`taskrel.experiments.inputs.pca` on the same array, so the same numbers.
_PCA_MEMO: dict[tuple[Any, ...], tuple[np.ndarray, np.ndarray]] = {}
_PCA_MEMO_SIZE = 32  # > encoders x reference kinds of a suite (cells go target by target)


def _register_memo() -> None:
    from .inputs import CACHE_CLEARERS

    CACHE_CLEARERS.append(_PCA_MEMO.clear)


_register_memo()


def _project(spec: RunSpec, config: Any, Xr: np.ndarray, *others: np.ndarray,
             key: tuple[Any, ...] | None = None) -> list[np.ndarray]:
    from .inputs import pca

    k = config.options.get("feature_dim", None) if spec.feature_dim == "suite" \
        else spec.feature_dim
    if k is None or int(k) >= Xr.shape[1]:
        return [Xr, *others]
    full = (*key, Xr.shape) if key is not None else None
    if full is None or full not in _PCA_MEMO:
        mean, comps = pca(Xr, min(Xr.shape))
        if full is not None:
            while len(_PCA_MEMO) >= _PCA_MEMO_SIZE:
                _PCA_MEMO.pop(next(iter(_PCA_MEMO)))
            _PCA_MEMO[full] = (mean, comps)
    else:
        mean, comps = _PCA_MEMO[full]
    comps = comps[:, :int(k)]
    return [(X - mean) @ comps for X in (Xr, *others)]


def run_cell(config: Any, spec: RunSpec, cell: Cell, union: str | None = None
             ) -> dict[str, Any]:
    """One run on one (encoder, target) cell at fraction 1.0: ``{"value": bound,
    "extra": result dict}`` (``value`` None + ``not_applicable`` when the variant
    cannot apply, e.g. pseudo-labels for a target with more classes than the
    reference)."""
    from ..relatedness import resolve_tau
    from .estimators import relate_rows
    from .inputs import suite_device, unit_task

    Xr, yr, Xe, ye = reference_task(config, spec, cell.encoder, union)
    tgt = unit_task(config, (cell.encoder, cell.target, "train"))
    Xt, yt = np.asarray(tgt.features, np.float64), np.asarray(tgt.labels)
    Xr, Xe, Xt = _project(spec, config, Xr, Xe, Xt,
                          key=(config.name, cell.encoder, spec.reference, union))
    extra: dict[str, Any] = {"run": asdict(spec), "n_reference": int(yr.size),
                             "n_target": int(yt.size), "n_features": int(Xr.shape[1])}
    if spec.tau == "paper":
        tau: Any = "paper"
    else:
        tau = resolve_tau("auto", Xr, yr)[0] * spec.tau_factor
    kw: dict[str, Any] = {"tau": tau, "recipe": spec.recipe, "seed": cell.seed,
                          "device": suite_device(config), "progress": False,
                          "reference_test_features": Xe, "reference_test_labels": ye}
    if spec.max_iter is not None:
        kw["max_iter"] = spec.max_iter
    r = relate_rows(Xr, yr, Xt, yt, labelled=spec.labelled, kwargs=kw, extra=extra)
    if isinstance(r, dict):
        return r
    return {"value": float(r.bound), "extra": {**extra, **r.to_dict()}}


# ---------------------------------------------------------------------------------
# from stored runs to variants and views
# ---------------------------------------------------------------------------------
def _pick(cands: Sequence[tuple[float, Mapping[str, Any]]], K: int, rule: str
          ) -> Mapping[str, Any] | None:
    """The run a tau rule picks among ``(tau, extra)`` candidates of one cell."""
    ok = [(t, e) for t, e in cands if e.get("bound") is not None]
    if not ok:
        return None
    tight = min(ok, key=lambda te: te[1]["bound"])[1]
    if rule == "tau_tightest":
        return tight
    fine = [(t, e) for t, e in ok if e["bound"] <= math.log(K)]
    return max(fine, key=lambda te: te[0])[1] if fine else tight


def variant_values(rows: Sequence[Mapping[str, Any]], n_classes: Mapping[str, int]
                   ) -> list[dict[str, Any]]:
    """``cells.csv``-shaped rows (estimator = variant name) from stored run rows.

    Every (report, run) pair gives ``"<report>@<run>"``; the tau rules give
    ``"<report>@tau_nonvacuous[/label-free]"`` and ``"...@tau_tightest..."``.
    """
    by: dict[tuple[str, str], dict[str, Mapping[str, Any]]] = {}
    for r in rows:
        if r.get("value") is None:
            continue
        by.setdefault((r["encoder"], r["target"]), {})[r["estimator"]] = r["extra"]
    out: list[dict[str, Any]] = []

    def put(enc: str, tgt: str, name: str, v: float | None) -> None:
        if v is not None and math.isfinite(v):
            out.append({"encoder": enc, "target": tgt, "fraction": 1.0, "seed": 0,
                        "estimator": name, "value": float(v), "higher_is_better": False})

    for (enc, tgt), runs in sorted(by.items()):
        K = int(n_classes[tgt])
        for run, e in runs.items():
            for rep, fn in REPORTS.items():
                put(enc, tgt, f"{rep}@{run}", fn(e, K))
        for suffix in ("", "/label-free"):
            cands = [(float(runs[g + suffix]["tau"]), runs[g + suffix])
                     for g in TAU_GRID if g + suffix in runs]
            if len(cands) < len(TAU_GRID):
                continue
            for rule in ("tau_nonvacuous", "tau_tightest"):
                e = _pick(cands, K, rule)
                if e is None:
                    continue
                for rep, fn in REPORTS.items():
                    put(enc, tgt, f"{rep}@{rule}{suffix}", fn(e, K))
    return out


def ablation_rows(views: Mapping[str, Any], rename: Mapping[str, str] | None = None
                  ) -> list[dict[str, Any]]:
    """``ablation.csv`` rows from :func:`compute_views` output: one per variant, view,
    truth and statistic (the view's headline statistics, each with its CI)."""
    rename = dict(rename or {})
    out = []
    for view in ("model_selection", "within_encoder", "pooled"):
        for est, per_truth in views[view].items():
            for truth, stats in per_truth.items():
                for stat, s in stats.items():
                    if not isinstance(s, Mapping) or "value" not in s:
                        continue
                    out.append({"variant": rename.get(est, est), "view": view,
                                "truth": truth, "statistic": stat, "value": s["value"],
                                "ci_low": s.get("ci_low"), "ci_high": s.get("ci_high")})
    return out
