r"""The field's three views of a suite, computed from per-cell exports anyone can reread.

A suite's store rows are exported to three tables (:func:`export_tables`):

- ``cells.csv`` (``encoder,target,fraction,seed,estimator,value,higher_is_better``): every
  estimator row (not the ground truths); ``value`` is empty where the estimator could
  not run;
- ``truth.csv`` (``encoder,target,truth,seed,value``): the ground truths at fraction 1.0,
  named by what they measure (:data:`TRUTH_SOURCES`): ``tau_probe_acc`` and
  ``tau_probe_loss`` (the store's ``linear_probe``, its value and ``extra["loss"]``),
  ``logreg_acc`` (``logreg``) and ``finetune_acc`` (``finetune``); rows whose target is
  ``reference`` are the reference task's own truths, kept here and left out of every view;
- ``targets.csv`` (``target,n_classes``): the class count K of each target, for the
  class-count-normalised truth :math:`(acc - 1/K) / (1 - 1/K)`.

:func:`compute_views` reads only those tables. Every value is first averaged over seeds
per (encoder, target), and oriented so that higher is better (an estimator whose
``higher_is_better`` is false, and the ``tau_probe_loss`` truth, are negated), so a
positive statistic always means "agrees with the truth":

(i) ``model_selection`` (the LogME protocol): per target, across the encoders that have
    both values (at least 3, else the target is skipped and counted), at fraction 1.0,
    ``scipy.stats.weightedtau(estimator, truth).statistic`` (scipy's defaults), Pearson's
    r, the regret (best truth minus the truth of the estimator's first pick) and top-1
    (the pick is a best encoder); each the mean over targets with a 95 % percentile
    bootstrap over targets;
(ii) ``within_encoder`` (the paper's Fig. 4): per encoder, Pearson and Spearman across
    targets (at least 3), also against the class-count-normalised truth (accuracy truths
    only); the mean over encoders, its CI from resampling targets;
(iii) ``pooled``: Pearson and Spearman over all (encoder, target) pairs, its CI from a
    two-way cluster bootstrap (:func:`cluster_resample`: encoders and targets are
    resampled with replacement and every pair of the two resampled sets is kept; rows
    are never resampled on their own).

``few_label`` repeats view (i)'s weighted tau and regret with the estimator at each
fraction of the target's labelled rows against the fraction-1.0 truth. ``views.json``
is strict JSON: a statistic that cannot be computed is ``null`` with a ``reason``.
:data:`RECOMPUTE_SCRIPT` (also ``docs/results/recompute_views.py``) recomputes view (i)'s
weighted tau from the two CSV files.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._internal.serialize import atomic_write_text, csv_text
from ..exceptions import TaskrelInputError
from .suite import REFERENCE_TARGET

__all__ = ["TRUTH_SOURCES", "TRANSFER_TRUTH", "STATIC_RANKER", "label_free", "CELLS_COLUMNS", "TRUTH_COLUMNS", "TARGETS_COLUMNS",
           "RECOMPUTE_SCRIPT", "cells_table", "truth_table",
           "targets_table", "export_tables", "suite_classes", "cluster_resample",
           "compute_views", "write_views", "views_markdown", "views_figure"]

CELLS_COLUMNS = ("encoder", "target", "fraction", "seed", "estimator", "value",
                 "higher_is_better")
TRUTH_COLUMNS = ("encoder", "target", "truth", "seed", "value")
TARGETS_COLUMNS = ("target", "n_classes")
#: truth name -> (store estimator, key of ``extra`` holding it or None for the row's
#: value, higher is better).
TRUTH_SOURCES: dict[str, tuple[str, str | None, bool]] = {
    "tau_probe_acc": ("linear_probe", None, True),
    "tau_probe_loss": ("linear_probe", "loss", False),
    "logreg_acc": ("logreg", None, True),
    "finetune_acc": ("finetune", None, True),
}
#: A truth derived in :func:`compute_views`, not a column of ``truth.csv``: the best
#: end-to-end accuracy each encoder allows on the targets that have fine-tuning:
#: ``finetune_acc`` for an encoder the suite fine-tunes, ``logreg_acc`` for a fixed
#: encoder (one with no ``finetune_acc`` row anywhere, e.g. TF-IDF + SVD: only its head
#: trains). Present only when the zoo has both kinds, so that model selection against
#: fine-tuning has every encoder of the zoo and not only the trainable ones.
TRANSFER_TRUTH = "transfer_acc"
_ACCURACY_TRUTHS = ("tau_probe_acc", "logreg_acc", "finetune_acc", TRANSFER_TRUTH)
_MIN_ENCODERS = 3   # view (i): encoders per target
_MIN_TARGETS = 3    # view (ii): targets per encoder
_CI = (2.5, 97.5)

_DEFINITIONS = {
    "orientation": "estimator values are negated when higher_is_better is false, the "
                   "tau_probe_loss truth is negated; so a positive statistic means the "
                   "estimator agrees with the truth. Values are averaged over seeds per "
                   "(encoder, target) before any statistic.",
    "weighted_tau": "per target, scipy.stats.weightedtau(estimator, truth).statistic "
                    "(defaults: hyperbolic weigher, rank=True) across the encoders that "
                    f"have both (at least {_MIN_ENCODERS}, else the target is skipped); "
                    "mean over targets",
    "pearson": "view (i): per target, Pearson r across encoders, mean over targets; "
               "views (ii)/(iii): Pearson r across targets per encoder / over all pairs",
    "spearman": "Spearman rho (Pearson r of average ranks)",
    "regret": "per target, the best truth minus the truth of the encoder the estimator "
              "ranks first (the first in name order on ties), in the truth's units "
              "(accuracy points; nats for tau_probe_loss); mean over targets",
    "top1": "share of targets whose first pick is a best encoder by the truth",
    "normalized": "*_normalized: against (acc - 1/K) / (1 - 1/K), K the target's class "
                  "count (targets.csv); accuracy truths only",
    "within_encoder": "per encoder, correlation across targets (at least "
                      f"{_MIN_TARGETS}); value: mean over encoders; CI: targets "
                      "resampled with replacement, each encoder's correlation "
                      "recomputed, mean over encoders",
    "pooled": "correlation over all (encoder, target) pairs; CI: two-way cluster "
              "bootstrap, encoders and targets resampled with replacement, all pairs "
              "of the resampled sets",
    "ci": "95% percentile bootstrap (2.5 and 97.5 percentiles), seeded; view (i) "
          "resamples targets and, where the truth has >= 2 seeds measured on every "
          "cell, also the truth seeds: each resampled target is scored against the mean "
          "of n seeds drawn with replacement from its n (a bootstrap of the seed-mean "
          "truth the value is computed on; ci_resamples says which), and those draws, "
          "which a noisier truth shifts below the value, are recentred on it",
    "few_label": "view (i) with the estimator at that fraction of the target's "
                 "labelled training rows, against the fraction-1.0 truth",
    "static_ranker": "a baseline that ignores the target: for target t each encoder is "
                     "scored by its mean truth (the same truth column) on the other "
                     "targets (leave-one-target-out); derived per truth, not a row of "
                     "cells.csv",
    "fidelity": "view (i): per target, over the pairs of encoders the estimator does not "
                "tie, Pearson r between the score gap |s_i - s_j| and the truth gap "
                "oriented by the score (truth of the higher-scored minus the other); mean "
                "over targets. Our reading of Singh et al., ICLR 2026 ('How NOT to "
                "benchmark your SITE metric'): do score gaps follow accuracy gaps? +1: "
                "gaps proportional, 0: unrelated, < 0: larger gaps point the wrong way",
    "vs_static": "weighted_tau_vs_static / regret_vs_static: the estimator's per-target "
                 "statistic minus the static ranker's on the same targets, mean over "
                 "targets; CI: targets resampled (paired). beats_static (from weighted tau): "
                 "'better' when the CI of the difference is above 0, 'worse' when it is "
                 "below 0, else 'level'",
    "noise_ceiling": "how well the truth predicts itself: view (i) statistics of one "
                     "truth seed used as the estimator against another seed, averaged "
                     "over the ordered pairs of seeds per target, then over targets "
                     "(null with a reason when the truth has one seed)",
}
#: The name of the derived static-ranker row in every view.
STATIC_RANKER = "static_ranker"


# ---------------------------------------------------------------------------------
# exports
# ---------------------------------------------------------------------------------
def _truth_stores() -> set[str]:
    from .estimators import TRUTHS

    return {src for src, _, _ in TRUTH_SOURCES.values()} | set(TRUTHS)


def cells_table(rows: Sequence[Mapping[str, Any]],
                orientation: Mapping[str, bool] | None = None) -> list[dict[str, Any]]:
    """The rows of ``cells.csv``: every store row of an estimator (not a ground truth).

    ``higher_is_better`` comes from ``orientation`` when it names the estimator, else
    from the suite's estimator registry (an unknown name is an error).
    """
    from .analysis import higher_is_better

    truths = _truth_stores()
    hib: dict[str, bool] = {}
    out = []
    for r in rows:
        est = r["estimator"]
        if est in truths:
            continue
        if est not in hib:
            hib[est] = higher_is_better(est, orientation)
        out.append({"encoder": r["encoder"], "target": r["target"],
                    "fraction": float(r["fraction"]), "seed": int(r["seed"]),
                    "estimator": est, "value": _finite(r["value"]),
                    "higher_is_better": hib[est]})
    return sorted(out, key=lambda d: (d["estimator"], d["encoder"], d["target"],
                                      d["fraction"], d["seed"]))


def truth_table(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The rows of ``truth.csv``: each ground-truth row at fraction 1.0 under the
    names of :data:`TRUTH_SOURCES` (``value`` None where it was not measured)."""
    out = []
    for r in rows:
        if not math.isclose(float(r["fraction"]), 1.0):
            continue
        for name, (store, key, _) in TRUTH_SOURCES.items():
            if r["estimator"] != store:
                continue
            v = r["value"] if key is None else (r.get("extra") or {}).get(key)
            if key is not None and r["value"] is None:
                v = None
            out.append({"encoder": r["encoder"], "target": r["target"], "truth": name,
                        "seed": int(r["seed"]), "value": _finite(v)})
    return sorted(out, key=lambda d: (d["truth"], d["encoder"], d["target"], d["seed"]))


def targets_table(n_classes: Mapping[str, int]) -> list[dict[str, Any]]:
    """The rows of ``targets.csv`` from a ``{target: K}`` mapping (sorted by name)."""
    out = []
    for t, k in sorted(n_classes.items()):
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
            raise TaskrelInputError(
                f"`n_classes[{t!r}]` must be an integer >= 2; got {k!r}")
        out.append({"target": str(t), "n_classes": int(k)})
    return out


def export_tables(rows: Sequence[Mapping[str, Any]],
                  n_classes: Mapping[str, int] | None = None,
                  orientation: Mapping[str, bool] | None = None
                  ) -> dict[str, list[dict[str, Any]]]:
    """``{"cells": ..., "truth": ..., "targets": ...}``: the three exports of ``rows``."""
    return {"cells": cells_table(rows, orientation), "truth": truth_table(rows),
            "targets": targets_table(n_classes or {})}


def _spec_classes(spec: Any) -> int | None:
    """K of a config's task from its spec alone (class subset or relabelling)."""
    if getattr(spec, "relabel", None) is not None:
        return len(set(spec.relabel))
    if getattr(spec, "classes", None) is not None:
        return len(spec.classes)
    return None


def suite_classes(config: Any, rows: Sequence[Mapping[str, Any]] = (), *,
                  load: bool = False) -> dict[str, int]:
    """``{target: K}`` for a suite: ``extra["n_classes"]`` of its truth rows at fraction
    1.0 where present, else the config's spec (a class subset or relabelling gives K),
    else, with ``load=True``, the dataset itself
    (:func:`taskrel.experiments.inputs.suite_dataset`). Targets left unknown are
    missing from the result (their normalised truth is then null)."""
    out: dict[str, int] = {}
    truths = _truth_stores()
    for r in rows:
        k = (r.get("extra") or {}).get("n_classes")
        if r["estimator"] in truths and isinstance(k, int) and k >= 2 \
                and math.isclose(float(r["fraction"]), 1.0):
            out[r["target"]] = max(k, out.get(r["target"], 0))
    for spec in getattr(config, "targets", ()):
        if spec.name in out:
            continue
        k = _spec_classes(spec)
        if k is None and load:
            from .inputs import suite_dataset

            k = int(suite_dataset(spec).n_classes)
        if k is not None and k >= 2:
            out[spec.name] = k
    return out


def label_free(name: str) -> bool:
    """True when the estimator reads no target label: a registered score without
    ``labels`` among its inputs, or task-relatedness without labels. An estimator the
    registry does not know counts as labelled."""
    from ..scores import get_score
    from .estimators import UNLABELED, UNLABELED_FIXED

    if name in (UNLABELED, UNLABELED_FIXED):
        return True
    try:
        return "labels" not in get_score(name).inputs
    except TaskrelInputError:
        return False


def _finite(v: Any) -> float | None:
    if v is None or v == "":
        return None
    f = float(v)
    return f if math.isfinite(f) else None


# ---------------------------------------------------------------------------------
# tables -> seed-averaged, oriented matrices
# ---------------------------------------------------------------------------------
def _bool(v: Any) -> bool:
    if isinstance(v, str):
        if v.strip().lower() not in ("true", "false", "1", "0"):
            raise TaskrelInputError(f"`higher_is_better` must be true or false; got {v!r}")
        return v.strip().lower() in ("true", "1")
    return bool(v)


def _means(rows: Sequence[Mapping[str, Any]], key: str, sign: Mapping[str, float]
           ) -> dict[tuple[Any, ...], dict[tuple[str, str], float]]:
    """``{(name, fraction): {(encoder, target): oriented mean over seeds}}``."""
    acc: dict[tuple[Any, ...], dict[tuple[str, str], list[float]]] = defaultdict(
        lambda: defaultdict(list))
    for r in rows:
        v = _finite(r["value"])
        if v is None or r["target"] == REFERENCE_TARGET:
            continue
        fr = float(r.get("fraction", 1.0))
        acc[(r[key], fr)][(r["encoder"], r["target"])].append(sign[r[key]] * v)
    return {k: {p: float(np.mean(vs)) for p, vs in d.items()} for k, d in acc.items()}


def _matrix(values: Mapping[tuple[str, str], float], encs: Sequence[str],
            tgts: Sequence[str]) -> np.ndarray:
    M = np.full((len(encs), len(tgts)), np.nan)
    ei = {e: i for i, e in enumerate(encs)}
    ti = {t: j for j, t in enumerate(tgts)}
    for (e, t), v in values.items():
        M[ei[e], ti[t]] = v
    return M


# ---------------------------------------------------------------------------------
# statistics
# ---------------------------------------------------------------------------------
def _masked_corr(x: np.ndarray, y: np.ndarray, *, rank: bool = False,
                 min_n: int = 3) -> np.ndarray:
    """Pearson (or, with ``rank``, Spearman) r along the last axis, over the entries
    where both are finite; NaN where fewer than ``min_n`` or either side is constant."""
    from scipy.stats import rankdata

    m = np.isfinite(x) & np.isfinite(y)
    x = np.where(m, x, np.nan)
    y = np.where(m, y, np.nan)
    if rank:
        x = rankdata(x, axis=-1, nan_policy="omit")
        y = rankdata(y, axis=-1, nan_policy="omit")
    n = m.sum(-1)
    xs, ys = np.where(m, x, 0.0), np.where(m, y, 0.0)
    const = ((np.where(m, x, np.inf).min(-1) == np.where(m, x, -np.inf).max(-1))
             | (np.where(m, y, np.inf).min(-1) == np.where(m, y, -np.inf).max(-1)))
    with np.errstate(invalid="ignore", divide="ignore"):
        dx = np.where(m, xs - xs.sum(-1, keepdims=True) / n[..., None], 0.0)
        dy = np.where(m, ys - ys.sum(-1, keepdims=True) / n[..., None], 0.0)
        r = (dx * dy).sum(-1) / np.sqrt((dx * dx).sum(-1) * (dy * dy).sum(-1))
    return np.where((n >= min_n) & ~const, np.clip(r, -1.0, 1.0), np.nan)


def _stat(value: float, boot: np.ndarray | None, reason: str | None = None
          ) -> dict[str, Any]:
    """``{"value", "ci_low", "ci_high"}`` (None + ``reason`` where not finite)."""
    out: dict[str, Any] = {"value": None, "ci_low": None, "ci_high": None}
    if not math.isfinite(value):
        out["reason"] = reason or "no value"
        return out
    out["value"] = float(value)
    b = np.asarray(boot if boot is not None else [], dtype=float)
    b = b[np.isfinite(b)]
    if b.size < 2:
        out["reason"] = "too few units to bootstrap a CI"
        return out
    lo, hi = np.percentile(b, _CI)
    out["ci_low"], out["ci_high"] = float(lo), float(hi)
    return out


def _nanmean(a: np.ndarray, axis: int = -1) -> np.ndarray:
    ok = np.isfinite(a)
    n = ok.sum(axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, np.where(ok, a, 0.0).sum(axis) / n, np.nan)


def _per_target(E: np.ndarray, T: np.ndarray) -> tuple[dict[str, np.ndarray], int]:
    """View (i)'s statistics per target (columns); NaN where a target is skipped."""
    from scipy.stats import weightedtau

    n_t = E.shape[1]
    stats = {k: np.full(n_t, np.nan)
             for k in ("weighted_tau", "pearson", "regret", "top1", "fidelity")}
    skipped = 0
    for j in range(n_t):
        m = np.isfinite(E[:, j]) & np.isfinite(T[:, j])
        if m.sum() < _MIN_ENCODERS:
            skipped += 1
            continue
        e, t = E[m, j], T[m, j]
        stats["weighted_tau"][j] = weightedtau(e, t).statistic
        stats["pearson"][j] = _masked_corr(e, t)
        pick = int(np.argmax(e))
        stats["regret"][j] = t.max() - t[pick]
        stats["top1"][j] = float(t[pick] == t.max())
        stats["fidelity"][j] = _fidelity(e, t)
    return stats, skipped


def _fidelity(e: np.ndarray, t: np.ndarray) -> float:
    """Pearson r over the pairs of encoders with different scores between the score
    gap and the truth gap oriented by the score (see ``_DEFINITIONS["fidelity"]``);
    NaN with fewer than 3 such pairs or constant gaps."""
    i, j = np.triu_indices(e.size, 1)
    ds, dt = e[i] - e[j], t[i] - t[j]
    keep = ds != 0
    if keep.sum() < 3:
        return math.nan
    return float(_masked_corr(np.abs(ds[keep]), np.sign(ds[keep]) * dt[keep]))


def _static(T: np.ndarray) -> np.ndarray:
    """The static ranker's scores: entry (encoder, target) is the encoder's mean truth
    over the other targets (NaN where it has none, or no truth on that target)."""
    ok = np.isfinite(T)
    S = np.full(T.shape, np.nan)
    for j in range(T.shape[1]):  # the mean of the others themselves, not total - own,
        others = np.delete(T, j, axis=1)  # so equal means tie exactly
        S[:, j] = _nanmean(others, axis=1)
    return np.where(ok, S, np.nan)


def _model_selection(E: np.ndarray, T: np.ndarray, n_boot: int, seed: int,
                     keys: Sequence[str] = ("weighted_tau", "pearson", "regret", "top1",
                                            "fidelity"),
                     static: dict[str, np.ndarray] | None = None,
                     truth_seeds: Mapping[int, np.ndarray] | None = None
                     ) -> dict[str, Any]:
    """View (i) from the matrices; with ``static`` (the static ranker's per-target
    statistics), also the paired differences against it; with ``truth_seeds`` (the
    truth of each seed, every one on the cells ``T`` has), CIs that resample the truth
    seed as well as the targets."""
    stats, skipped = _per_target(E, T)
    per_seed = None
    if truth_seeds and len(truth_seeds) >= 2:
        per_seed = _seed_mean_resamples(E, truth_seeds)
    out = _summaries(stats, skipped, keys, n_boot, seed, per_seed)
    out["ci_resamples"] = ("targets and truth seeds " + str(sorted(truth_seeds))
                           if per_seed else "targets")
    if static is not None:
        out.update(_vs_static(stats, static, n_boot, seed))
    return out


#: Where a view (i) statistic lives (recentred bootstrap draws are clipped to it).
_RANGES = {"weighted_tau": (-1.0, 1.0), "pearson": (-1.0, 1.0), "fidelity": (-1.0, 1.0),
           "top1": (0.0, 1.0), "regret": (0.0, np.inf)}
#: Up to this many truth seeds, every ordered draw of n seeds with replacement is
#: enumerated (n**n draws, e.g. 27 for 3 seeds, scored once per distinct multiset);
#: above it, this many draws are sampled (seeded).
_MAX_ENUMERATED_SEEDS, _SAMPLED_SEED_DRAWS = 4, 256


def _seed_mean_resamples(E: np.ndarray, truth_seeds: Mapping[int, np.ndarray]
                         ) -> list[dict[str, np.ndarray]]:
    """Per-target statistics of ``E`` against the bootstrap replicates of the seed-mean
    truth: n seeds drawn with replacement from the n measured ones and averaged, one
    entry per equally likely ordered draw (so that picking an entry uniformly is the
    bootstrap of the seeds). The point estimate is scored against the mean of all n
    seeds; resampling single seeds instead would score the CI against a noisier truth
    than the point estimate and shift the CI below it."""
    mats = [truth_seeds[k] for k in sorted(truth_seeds)]
    n = len(mats)
    if n <= _MAX_ENUMERATED_SEEDS:
        draws = list(itertools.product(range(n), repeat=n))
    else:
        draws = [tuple(d) for d in np.random.default_rng(0).integers(
            0, n, (_SAMPLED_SEED_DRAWS, n))]
    cache: dict[tuple[int, ...], dict[str, np.ndarray]] = {}
    out = []
    for d in draws:
        key = tuple(sorted(d))
        if key not in cache:
            cache[key] = _per_target(E, np.mean([mats[i] for i in key], axis=0))[0]
        out.append(cache[key])
    return out


def _vs_static(stats: dict[str, np.ndarray], static: dict[str, np.ndarray], n_boot: int,
               seed: int) -> dict[str, Any]:
    """Per-target differences against the static ranker, paired over targets."""
    out: dict[str, Any] = {}
    for k in ("weighted_tau", "regret"):
        d = stats[k] - static[k]
        d = d[np.isfinite(d)]
        idx = np.random.default_rng(seed).integers(0, d.size or 1, (n_boot, d.size))
        out[f"{k}_vs_static"] = _stat(
            float(_nanmean(d)) if d.size else math.nan,
            _nanmean(d[idx]) if d.size else None,
            "no target where both the estimator and the static ranker have a value")
    s = out["weighted_tau_vs_static"]
    verdict = None
    if s["value"] is not None:
        verdict = "level"
        if s["ci_low"] is not None and s["ci_low"] > 0:
            verdict = "better"
        elif s["ci_high"] is not None and s["ci_high"] < 0:
            verdict = "worse"
    out["beats_static"] = verdict
    return out


def _summaries(stats: dict[str, np.ndarray], skipped: int, keys: Sequence[str],
               n_boot: int, seed: int,
               per_seed: Sequence[dict[str, np.ndarray]] | None = None
               ) -> dict[str, Any]:
    """Means over targets with percentile CIs: targets resampled, and with
    ``per_seed`` (the per-target statistics under each bootstrap replicate of the truth
    seeds, :func:`_seed_mean_resamples`) each resampled target also draws the replicate
    it is scored against."""
    used = np.isfinite(stats["regret"])
    out: dict[str, Any] = {}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, int(used.sum()) or 1, (n_boot, int(used.sum())))
    pick = None if not per_seed else rng.integers(0, len(per_seed), idx.shape)
    for k in keys:
        s = stats[k][used]
        if pick is not None and s.size:
            S = np.vstack([ps[k][used] for ps in per_seed])  # (replicates, targets)
            boot = _nanmean(S[pick, idx])
            # A replicate of the seed mean is noisier than the mean itself, so the draws
            # sit below the value by the attenuation that noise causes (on the
            # population suite's fine-tuning the static ranker's 0.245 got [0.04, 0.28]
            # before this); their spread is the uncertainty, so they are recentred on
            # the value and kept in the statistic's range
            # (tests/test_static_ranker.py::test_seed_resampled_ci_contains_the_value...).
            if np.isfinite(boot).any():
                boot = np.clip(boot - np.nanmean(boot) + float(_nanmean(s)),
                               *_RANGES.get(k, (-np.inf, np.inf)))
        else:
            boot = _nanmean(s[idx]) if s.size else None
        out[k] = _stat(float(_nanmean(s)) if s.size else math.nan, boot,
                       f"no target has >= {_MIN_ENCODERS} encoders with both values"
                       if not s.size else f"{k} undefined on every target")
    out["n_targets"] = int(used.sum())
    out["n_targets_skipped"] = int(skipped)
    return out


def _correlations(E: np.ndarray, T: np.ndarray, Tn: np.ndarray | None,
                  corr: Any) -> dict[str, Any]:
    """``corr(x, y, rank)`` for Pearson and Spearman, raw and normalised truth."""
    out = {}
    for name, rank in (("pearson", False), ("spearman", True)):
        out[name] = corr(E, T, rank)
        if Tn is not None:
            out[f"{name}_normalized"] = corr(E, Tn, rank)
    return out


def _within_encoder(E: np.ndarray, T: np.ndarray, Tn: np.ndarray | None,
                    encs: Sequence[str], n_boot: int, seed: int) -> dict[str, Any]:
    n_t = E.shape[1]
    idx = np.random.default_rng(seed).integers(0, n_t, (n_boot, n_t))

    def point(X: np.ndarray, Y: np.ndarray, rank: bool) -> np.ndarray:
        return _masked_corr(X, Y, rank=rank, min_n=_MIN_TARGETS)

    def boot(X: np.ndarray, Y: np.ndarray, rank: bool) -> np.ndarray:
        r = _masked_corr(X[:, idx], Y[:, idx], rank=rank, min_n=_MIN_TARGETS)
        return _nanmean(r, axis=0)  # (n_boot,): mean over encoders

    per = _correlations(E, T, Tn, point)
    bs = _correlations(E, T, Tn, boot)
    out: dict[str, Any] = {
        k: _stat(float(_nanmean(v)), bs[k],
                 f"no encoder has >= {_MIN_TARGETS} targets with both values "
                 "(or the values are constant)")
        for k, v in per.items()}
    n = (np.isfinite(E) & np.isfinite(T)).sum(1)
    out["per_encoder"] = {
        e: {"n_targets": int(n[i]), **{k: _num(v[i]) for k, v in per.items()}}
        for i, e in enumerate(encs)}
    return out


def cluster_resample(n_encoders: int, n_targets: int, n_boot: int,
                     rng: np.random.Generator) -> np.ndarray:
    """Flat indices (``encoder * n_targets + target``) of a two-way cluster bootstrap.

    Each of the ``n_boot`` rows draws ``n_encoders`` encoders and ``n_targets`` targets
    with replacement and keeps every pair of the two draws (``n_encoders * n_targets``
    pairs, duplicates included); pairs are never drawn one by one.

    Returns
    -------
    ndarray of int, shape (n_boot, n_encoders * n_targets)
    """
    ei = rng.integers(0, n_encoders, (n_boot, n_encoders))
    ti = rng.integers(0, n_targets, (n_boot, n_targets))
    return (ei[:, :, None] * n_targets + ti[:, None, :]).reshape(n_boot, -1)


def _pooled(E: np.ndarray, T: np.ndarray, Tn: np.ndarray | None, n_boot: int,
            seed: int) -> dict[str, Any]:
    idx = cluster_resample(E.shape[0], E.shape[1], n_boot, np.random.default_rng(seed))
    pt = _correlations(E.ravel(), T.ravel(), None if Tn is None else Tn.ravel(),
                       lambda x, y, rank: float(_masked_corr(x, y, rank=rank)))
    bs = _correlations(E.ravel()[idx], T.ravel()[idx],
                       None if Tn is None else Tn.ravel()[idx],
                       lambda x, y, rank: _masked_corr(x, y, rank=rank))
    out: dict[str, Any] = {k: _stat(v, bs[k], "fewer than 3 pairs, or constant values")
                           for k, v in pt.items()}
    out["n_pairs"] = int((np.isfinite(E) & np.isfinite(T)).sum())
    return out


def _num(v: Any) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


# ---------------------------------------------------------------------------------
# the views
# ---------------------------------------------------------------------------------
def compute_views(cells: Sequence[Mapping[str, Any]], truth: Sequence[Mapping[str, Any]],
                  targets: Sequence[Mapping[str, Any]] | Mapping[str, int] = (), *,
                  n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """The three views (and the few-label sweep) from the export tables.

    Parameters
    ----------
    cells, truth : sequence of mapping
        Rows with the columns of ``cells.csv`` / ``truth.csv`` (as
        :func:`cells_table` / :func:`truth_table` give them, or as read back from the
        CSV files: strings are parsed).
    targets : sequence of mapping or mapping
        ``targets.csv`` rows, or ``{target: K}``; targets without K get no normalised
        truth.
    n_boot : int
        Bootstrap resamples B (default 1000). ``seed`` seeds every resampling.

    Returns
    -------
    dict
        ``{"meta", "model_selection", "within_encoder", "pooled", "few_label"}``; each
        view is ``[estimator][truth] -> {statistic: {"value", "ci_low", "ci_high"}, ...}``
        (see the module docstring), strict JSON (``null`` + ``reason``, never NaN).
    """
    from .._internal.validation import check_positive

    check_positive(n_boot, "n_boot", integer=True)
    K = dict(targets) if isinstance(targets, Mapping) else {
        r["target"]: int(r["n_classes"]) for r in targets}
    hib = {r["estimator"]: _bool(r["higher_is_better"]) for r in cells}
    est = _means(cells, "estimator", {e: 1.0 if h else -1.0 for e, h in hib.items()})
    tru = _means([{**r, "fraction": 1.0} for r in truth], "truth",
                 {t: 1.0 if TRUTH_SOURCES.get(t, ("", None, True))[2] else -1.0
                  for t in {r["truth"] for r in truth}})
    transfer = _transfer(tru)
    if transfer:
        tru[(TRANSFER_TRUTH, 1.0)] = transfer
    encs = sorted({p[0] for d in (*est.values(), *tru.values()) for p in d})
    tgts = sorted({p[1] for d in (*est.values(), *tru.values()) for p in d})
    truths = [t for t in TRUTH_SOURCES if (t, 1.0) in tru] + sorted(
        {t for t, _ in tru} - set(TRUTH_SOURCES))
    if STATIC_RANKER in hib:
        raise TaskrelInputError(
            f"`cells` must not hold an estimator named {STATIC_RANKER!r}: that row is "
            "derived from the truth in every view")
    views: dict[str, Any] = {"meta": _meta(cells, truth, hib, truths, encs, tgts, K,
                                           n_boot, seed),
                             "model_selection": {}, "within_encoder": {}, "pooled": {},
                             "few_label": {}, "noise_ceiling": {}}
    views["meta"]["estimators"][STATIC_RANKER] = {"higher_is_better": True,
                                                  "derived": True, "label_free": True}
    by_seed = _truth_by_seed(truth)
    for t in truths:
        T = _matrix(tru[(t, 1.0)], encs, tgts)
        Tn = _normalized(T, tgts, K) if t in _ACCURACY_TRUTHS else None
        S = _static(T)
        # Seeds measured on every cell the seed-mean truth has (a seed run on part of
        # the grid would tilt the resampling towards the others).
        seeds_t = {sd: M for sd, v in by_seed.items() if t in v
                   for M in [_matrix(v[t], encs, tgts)]
                   if np.array_equal(np.isfinite(M), np.isfinite(T))}
        static_stats, _ = _per_target(S, T)
        for e in [*hib, STATIC_RANKER]:
            E = S if e == STATIC_RANKER else _matrix(est.get((e, 1.0), {}), encs, tgts)
            views["model_selection"].setdefault(e, {})[t] = _model_selection(
                E, T, n_boot, seed, static=None if e == STATIC_RANKER else static_stats,
                truth_seeds=seeds_t)
            views["within_encoder"].setdefault(e, {})[t] = _within_encoder(
                E, T, Tn, encs, n_boot, seed) if e != STATIC_RANKER else _no_within()
            views["pooled"].setdefault(e, {})[t] = _pooled(E, T, Tn, n_boot, seed)
            if e == STATIC_RANKER:
                continue
            views["few_label"].setdefault(e, {})[t] = {
                f"{fr:g}": _model_selection(_matrix(vals, encs, tgts), T, n_boot, seed,
                                            ("weighted_tau", "regret"))
                for (name, fr), vals in sorted(est.items()) if name == e}
        views["noise_ceiling"][t] = _noise_ceiling(truth, t, encs, tgts, n_boot, seed)
    return views


def _no_within() -> dict[str, Any]:
    """View (ii) of the static ranker: undefined. A ranker that ignores the target gives
    one encoder the same score on every target; the leave-one-target-out mean is not
    constant only through the left-out truth itself, and so correlates -1 with it by
    construction."""
    why = ("undefined for the static ranker: it ignores the target, so within one "
           "encoder its score is constant across targets (the leave-one-out mean varies "
           "only by the left-out truth, giving -1 by construction)")
    out: dict[str, Any] = {k: {"value": None, "ci_low": None, "ci_high": None,
                               "reason": why}
                           for k in ("pearson", "spearman", "pearson_normalized",
                                     "spearman_normalized")}
    out["per_encoder"] = {}
    return out


def _truth_by_seed(truth: Sequence[Mapping[str, Any]]
                   ) -> dict[int, dict[str, dict[tuple[str, str], float]]]:
    """``{seed: {truth name: {(encoder, target): oriented value}}}``, with the derived
    :data:`TRANSFER_TRUTH` per seed as in :func:`compute_views`."""
    names = {r["truth"] for r in truth}
    sign = {t: 1.0 if TRUTH_SOURCES.get(t, ("", None, True))[2] else -1.0 for t in names}
    out: dict[int, dict[str, dict[tuple[str, str], float]]] = {}
    for sd in sorted({int(r["seed"]) for r in truth}):
        m = _means([{**r, "fraction": 1.0} for r in truth if int(r["seed"]) == sd],
                   "truth", sign)
        transfer = _transfer(m)
        if transfer:
            m[(TRANSFER_TRUTH, 1.0)] = transfer
        out[sd] = {name: vals for (name, _), vals in m.items()}
    return out


def _noise_ceiling(truth: Sequence[Mapping[str, Any]], t: str, encs: Sequence[str],
                   tgts: Sequence[str], n_boot: int, seed: int) -> dict[str, Any]:
    """View (i) of one truth seed against another (``_DEFINITIONS["noise_ceiling"]``)."""
    by_seed = {sd: _matrix(v[t], encs, tgts) for sd, v in _truth_by_seed(truth).items()
               if t in v}
    seeds = sorted(by_seed)
    if len(seeds) < 2:
        return {"reason": f"the truth {t!r} has {len(seeds)} seed(s); the noise ceiling "
                          "needs at least 2", "seeds": seeds}
    keys = ("weighted_tau", "regret", "top1")
    per = {k: [] for k in keys}
    for a in seeds:
        for b in seeds:
            if a != b:
                st, _ = _per_target(by_seed[a], by_seed[b])
                for k in keys:
                    per[k].append(st[k])
    with np.errstate(invalid="ignore"):
        stats = {k: _nanmean(np.vstack(v), axis=0) for k, v in per.items()}
    out = _summaries(stats, 0, keys, n_boot, seed)
    out.pop("n_targets_skipped", None)
    out["seeds"] = seeds
    return out


def _transfer(tru: Mapping[tuple[Any, ...], Mapping[tuple[str, str], float]]
              ) -> dict[tuple[str, str], float] | None:
    """:data:`TRANSFER_TRUTH` from the seed means of the other truths, or None when the
    zoo has no fixed encoder (it would repeat ``finetune_acc``) or no fine-tuning."""
    ft, lr = tru.get(("finetune_acc", 1.0)), tru.get(("logreg_acc", 1.0))
    if not ft or not lr:
        return None
    fixed = {e for e, _ in lr} - {e for e, _ in ft}
    if not fixed:
        return None
    tuned_targets = {t for _, t in ft}
    return {**ft, **{(e, t): v for (e, t), v in lr.items()
                     if e in fixed and t in tuned_targets}}


def _normalized(T: np.ndarray, tgts: Sequence[str], K: Mapping[str, int]) -> np.ndarray:
    """(acc - 1/K) / (1 - 1/K) per target column (NaN where K is unknown). ``T`` holds
    accuracies (oriented = raw for accuracy truths)."""
    inv = np.array([1.0 / K[t] if t in K else np.nan for t in tgts])
    return (T - inv) / (1.0 - inv)


def _meta(cells: Sequence[Mapping[str, Any]], truth: Sequence[Mapping[str, Any]],
          hib: Mapping[str, bool], truths: Sequence[str], encs: Sequence[str],
          tgts: Sequence[str], K: Mapping[str, int], n_boot: int, seed: int
          ) -> dict[str, Any]:
    return {
        "seeds": sorted({int(r["seed"]) for r in cells}),
        "truth_seeds": sorted({int(r["seed"]) for r in truth}),
        "fractions": sorted({float(r["fraction"]) for r in cells}),
        "n_boot": int(n_boot), "bootstrap_seed": int(seed), "ci_level": 0.95,
        "encoders": list(encs), "targets": list(tgts),
        "estimators": {e: {"higher_is_better": h, "label_free": label_free(e)}
                       for e, h in hib.items()},
        "truths": {t: {"higher_is_better": TRUTH_SOURCES.get(t, ("", None, True))[2],
                       "store_estimator": TRUTH_SOURCES.get(t, (None,))[0]}
                   for t in truths},
        "n_classes": {t: int(K[t]) for t in tgts if t in K},
        "excluded_targets": [REFERENCE_TARGET],
        "definitions": dict(_DEFINITIONS),
    }


def write_views(rows: Sequence[Mapping[str, Any]], out: str | Path, *,
                n_classes: Mapping[str, int] | None = None,
                orientation: Mapping[str, bool] | None = None, n_boot: int = 1000,
                seed: int = 0, figure: bool = True) -> dict[str, Any]:
    """Write ``cells.csv``, ``truth.csv``, ``targets.csv`` and ``views.json`` (and, with
    ``figure``, ``views_model_selection.png``) for store ``rows`` into ``out``.

    The views are computed from the exported tables themselves, so the CSV files
    recompute them. Returns the views dict.
    """
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    tables = export_tables(rows, n_classes, orientation)
    for name, cols in (("cells", CELLS_COLUMNS), ("truth", TRUTH_COLUMNS),
                       ("targets", TARGETS_COLUMNS)):
        atomic_write_text(d / f"{name}.csv", csv_text(tables[name], cols))
    views = compute_views(tables["cells"], tables["truth"], tables["targets"],
                          n_boot=n_boot, seed=seed)
    atomic_write_text(d / "views.json", json.dumps(views, indent=1, allow_nan=False) + "\n")
    if figure and views["model_selection"]:
        fig = views_figure(views)
        tmp = d / ".views_model_selection.tmp.png"
        fig.savefig(tmp, dpi=120)
        tmp.replace(d / "views_model_selection.png")
    return views


# ---------------------------------------------------------------------------------
# rendering
# ---------------------------------------------------------------------------------
def _cell_text(s: Mapping[str, Any] | None) -> str:
    if not s or s.get("value") is None:
        return "-"
    if s.get("ci_low") is None:
        return f"{s['value']:.3f}"
    return f"{s['value']:.3f} [{s['ci_low']:.2f}, {s['ci_high']:.2f}]"


def _table(view: Mapping[str, Mapping[str, Mapping[str, Any]]], stat: str,
           truths: Sequence[str]) -> str:
    lines = ["| estimator | " + " | ".join(truths) + " |", "|" + "---|" * (len(truths) + 1)]
    for est, by in view.items():
        lines.append(f"| {est} | " + " | ".join(
            _cell_text((by.get(t) or {}).get(stat)) for t in truths) + " |")
    return "\n".join(lines) + "\n"


def _vs_static_table(view: Mapping[str, Mapping[str, Mapping[str, Any]]],
                     truths: Sequence[str]) -> str:
    lines = ["| estimator | " + " | ".join(truths) + " |", "|" + "---|" * (len(truths) + 1)]
    for est, by in view.items():
        if est == STATIC_RANKER:
            continue
        cells = []
        for t in truths:
            d = by.get(t) or {}
            txt = _cell_text(d.get("weighted_tau_vs_static"))
            cells.append(txt if txt == "-" else f"{txt} {d.get('beats_static')}")
        lines.append(f"| {est} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _label_free_md(views: Mapping[str, Any], truths: Sequence[str]) -> list[str]:
    """View (i) restricted to the estimators that read no target label."""
    meta = views["meta"]["estimators"]
    free = {e: by for e, by in views["model_selection"].items()
            if (meta.get(e) or {}).get("label_free")}
    if set(free) <= {STATIC_RANKER}:
        return []
    return ["Label-free (no target label read; the static ranker reads none of the "
            "target either): weighted tau, mean over targets:", "",
            _table(free, "weighted_tau", truths)]


def _noise_md(views: Mapping[str, Any], truths: Sequence[str]) -> list[str]:
    nc = views.get("noise_ceiling") or {}
    lines = []
    for t in truths:
        d = nc.get(t) or {}
        if "weighted_tau" in d:
            lines.append(f"- `{t}`: weighted tau {_cell_text(d['weighted_tau'])}, regret "
                         f"{_cell_text(d['regret'])} (seeds {d['seeds']})")
        elif d:
            lines.append(f"- `{t}`: {d['reason']}")
    if not lines:
        return []
    return ["Noise ceiling (one truth seed as the estimator of another, view (i)): no "
            "estimator can be expected to agree with the truth better than the truth "
            "agrees with itself:", "", *lines, ""]


def _winners(views: Mapping[str, Any], truths: Sequence[str]) -> list[str]:
    """One line per (view, truth): the best estimator and where task-relatedness is."""
    out = []
    for view, stat in (("model_selection", "weighted_tau"), ("within_encoder", "pearson"),
                       ("pooled", "spearman")):
        for t in truths:
            vals = {e: by[t][stat]["value"] for e, by in views[view].items()
                    if t in by and by[t][stat]["value"] is not None}
            if not vals:
                continue
            order = sorted(vals, key=lambda e: -vals[e])
            line = (f"- {view} {stat} vs {t}: best {order[0]} ({vals[order[0]]:.3f})")
            for name in ("task_relatedness", STATIC_RANKER):
                if name in vals:
                    line += (f"; {name} {vals[name]:.3f} (rank "
                             f"{order.index(name) + 1} of {len(order)})")
            out.append(line + ".")
    return out


def views_markdown(views: Mapping[str, Any]) -> list[str]:
    """The report section "The field's three views": one table per view and statistic
    (estimator rows, truth columns, ``value [lo, hi]``), the few-label sweep, and the
    script that recomputes view (i) from the CSV files."""
    meta = views["meta"]
    truths = list(meta["truths"])
    md = ["## The field's three views", "",
          f"Per-cell exports: `cells.csv`, `truth.csv`, `targets.csv`; statistics: "
          f"`views.json`. Estimators and truths are averaged over seeds "
          f"{meta['seeds']} per (encoder, target) and oriented so that higher is better "
          f"(a positive value agrees with the truth). 95% percentile CIs from "
          f"{meta['n_boot']} bootstrap resamples. The reference task's own truths "
          "(target `reference`) are in `truth.csv` and in no view."
          + (f" `{TRANSFER_TRUTH}` is derived, not a column of `truth.csv`: on the targets "
             "with fine-tuning, `finetune_acc` for the encoders the suite fine-tunes and "
             "`logreg_acc` for the fixed ones (never fine-tuned: only their head trains), "
             "so that model selection against fine-tuning sees the whole zoo."
             if TRANSFER_TRUTH in truths else ""), "",
          *_winners(views, truths), "",
          "### (i) Model selection per target across the zoo", "",
          "Weighted Kendall tau (`scipy.stats.weightedtau` with its defaults), mean over "
          "targets:", "", _table(views["model_selection"], "weighted_tau", truths),
          "![view (i) weighted tau](views_model_selection.png)", "",
          "Top-1 regret (best truth - the pick's truth), mean over targets:", "",
          _table(views["model_selection"], "regret", truths),
          f"Against the static ranker (`{STATIC_RANKER}`: each encoder scored by its mean "
          "truth on the other targets, ignoring the target): weighted tau minus the "
          "static ranker's on the same targets, CI paired over targets, and the verdict "
          "(better / level / worse: the CI above, across or below 0):", "",
          _vs_static_table(views["model_selection"], truths),
          "Fidelity (do score gaps follow truth gaps? Pearson r per target between the "
          "score gap and the score-oriented truth gap over pairs of encoders, mean over "
          "targets; after Singh et al., ICLR 2026):", "",
          _table(views["model_selection"], "fidelity", truths),
          *_noise_md(views, truths),
          *_label_free_md(views, truths),
          "### (ii) Within an encoder across targets (paper Fig. 4)", "",
          "Pearson r per encoder, mean over encoders (CI: targets resampled):", "",
          _table(views["within_encoder"], "pearson", truths),
          "Against the class-count-normalised truth (acc - 1/K) / (1 - 1/K):", "",
          _table(views["within_encoder"], "pearson_normalized", truths),
          "### (iii) Pooled over (encoder, target) pairs", "",
          "Spearman rho; CI from a two-way cluster bootstrap (encoders and targets "
          "resampled, all pairs kept):", "", _table(views["pooled"], "spearman", truths),
          "Pearson r:", "", _table(views["pooled"], "pearson", truths)]
    md += _few_label_md(views, truths)
    return md + ["### Recompute view (i) from the CSV files", "",
                 "Also `docs/results/recompute_views.py`; run it with this folder as "
                 "its argument.", "", "```python", RECOMPUTE_SCRIPT.rstrip(), "```", ""]


def _few_label_md(views: Mapping[str, Any], truths: Sequence[str]) -> list[str]:
    t = next((t for t in ("finetune_acc", "logreg_acc", "tau_probe_acc") if t in truths),
             truths[0] if truths else None)
    fr = [f"{f:g}" for f in views["meta"]["fractions"]]
    if t is None or not fr:
        return []
    lines = ["| estimator | " + " | ".join(fr) + " |", "|" + "---|" * (len(fr) + 1)]
    for est, by in views["few_label"].items():
        sweep = by.get(t) or {}
        lines.append(f"| {est} | " + " | ".join(
            _cell_text((sweep.get(f) or {}).get("weighted_tau")) for f in fr) + " |")
    return ["### Few-label sweep", "",
            f"View (i) weighted tau with the estimator on a fraction of the target's "
            f"labelled rows, against the fraction-1.0 `{t}` (all truths in "
            "`views.json`):", "", "\n".join(lines) + "\n"]


def views_figure(views: Mapping[str, Any]) -> Any:
    """A matplotlib ``Figure``: view (i) weighted tau per estimator (bars per truth)
    with their 95% CIs."""
    from matplotlib.figure import Figure

    ms = views["model_selection"]
    ests, truths = list(ms), list(views["meta"]["truths"])
    fig = Figure(figsize=(max(6.0, 0.7 * len(ests) * max(1, len(truths)) / 2), 3.8))
    ax = fig.subplots()
    w = 0.8 / max(1, len(truths))
    x = np.arange(len(ests))
    for k, t in enumerate(truths):
        s = [(ms[e].get(t) or {}).get("weighted_tau") or {} for e in ests]
        v = np.array([np.nan if d.get("value") is None else d["value"] for d in s])
        lo = np.array([np.nan if d.get("ci_low") is None else d["ci_low"] for d in s])
        hi = np.array([np.nan if d.get("ci_high") is None else d["ci_high"] for d in s])
        err = np.vstack([np.nan_to_num(v - lo), np.nan_to_num(hi - v)])
        ax.bar(x + (k - (len(truths) - 1) / 2) * w, np.nan_to_num(v), w, yerr=err,
               capsize=2, label=t)
    ax.axhline(0.0, color="k", lw=0.6)
    ax.set_xticks(x)
    ax.set_xticklabels(ests, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("weighted tau (mean over targets)")
    ax.set_title("(i) model selection across the zoo, 95% CI", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


#: Recomputes ``views.json``'s view (i) weighted tau from ``cells.csv`` + ``truth.csv``
#: (``docs/results/recompute_views.py`` is this text).
RECOMPUTE_SCRIPT = '''\
"""Recompute views.json's model_selection weighted tau from cells.csv + truth.csv, the
static ranker's included. Usage: python recompute_views.py docs/results/vision"""
import csv, json, sys
from collections import defaultdict

import numpy as np
from scipy.stats import weightedtau

d = sys.argv[1]
def seed_means(name, key):  # {(name, target, encoder): mean over seeds}, higher = better
    acc = defaultdict(list)
    for r in csv.DictReader(open(f"{d}/{name}.csv")):
        if r["value"] and r["target"] != "reference" and float(r.get("fraction", 1)) == 1:
            sign = -1 if "False" == r.get("higher_is_better") or r.get("truth") == "tau_probe_loss" else 1
            acc[(r[key], r["target"], r["encoder"])].append(sign * float(r["value"]))
    return {k: np.mean(v) for k, v in acc.items()}
est, tru = seed_means("cells", "estimator"), seed_means("truth", "truth")
fixed = {k[2] for k in tru if k[0] == "logreg_acc"} - {k[2] for k in tru if k[0] == "finetune_acc"}
if fixed and any(k[0] == "finetune_acc" for k in tru):  # transfer_acc: fine-tuned, or the
    tuned = {k[1] for k in tru if k[0] == "finetune_acc"}  # probe for a fixed encoder
    tru.update({("transfer_acc", *k[1:]): v for k, v in list(tru.items()) if k[0] == "finetune_acc"
                or (k[0] == "logreg_acc" and k[2] in fixed and k[1] in tuned)})
def static(t):  # the static ranker: an encoder's mean truth on the *other* targets
    return {(tg, n): np.mean([v for k, v in tru.items() if k[0] == t and k[2] == n and k[1] != tg])
            for (t2, tg, n) in tru if t2 == t and any(k[0] == t and k[2] == n and k[1] != tg for k in tru)}
views, worst = json.load(open(f"{d}/views.json"))["model_selection"], 0.0
for e, by_truth in views.items():
    for t, v in by_truth.items():
        ev = {(e, *k): x for k, x in static(t).items()} if e == "static_ranker" else est
        taus = []  # per target, across the encoders that have both (at least 3)
        for tg in sorted({k[1] for k in tru if k[0] == t}):
            encs = sorted(k[2] for k in tru if k[:2] == (t, tg) and (e, tg, k[2]) in ev)
            if len(encs) >= 3:
                taus.append(weightedtau([ev[e, tg, n] for n in encs], [tru[t, tg, n] for n in encs])[0])
        taus = [x for x in taus if np.isfinite(x)]
        mine, theirs = (float(np.mean(taus)) if taus else None), v["weighted_tau"]["value"]
        if (mine is None) != (theirs is None):
            worst = float("inf")
        elif mine is not None:
            worst = max(worst, abs(mine - theirs))
        print(f"{e:28s} {t:15s} {'-' if mine is None else f'{mine:+.4f}'}")
print(f"max abs difference with views.json: {worst:.2e}")
'''
