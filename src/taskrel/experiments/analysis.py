r"""Analyses of experiment results: each returns an :class:`Analysis` (a table of rows,
a summary dict and a matplotlib figure) that ``.write(out_dir)`` saves as CSV, JSON and
PNG.

- :func:`correlation`: Pearson and Spearman with bootstrap percentile intervals;
- :func:`zoo_selection`: per target, an estimator's pick, the pick's accuracy, regret,
  Kendall tau and weighted tau in the two conventions of the literature, top-1 hit rate;
- :func:`few_label_sweep`: correlation with the ground truth per estimator and fraction
  of target data, mean and std over seeds;
- :func:`decomposition_plot`: the three terms of the bound per target beside the
  actual transfer loss;
- :func:`cost_table`: seconds per estimator per cell beside fine-tuning's.

Inputs are plain arrays, mappings, or row dicts as :meth:`taskrel.experiments.store.ResultsStore.query`
returns them. Plots need matplotlib (``pip install 'taskrel[plot]'``); it runs on the
Agg backend, no display needed.

Weighted tau conventions
------------------------
Both use :func:`scipy.stats.weightedtau` with its hyperbolic weigher
:math:`1/(r+1)` and scores oriented so that higher means "predicted better":

- ``weighted_tau_both`` — ``weightedtau(score, truth)`` with scipy's defaults
  (``rank=True``: the weights come from the ranking by the score and from the ranking
  by the truth, and the two results are averaged). This is the call in the
  TencentARC/SFDA evaluation scripts (also ETran, NCTI, PED).
- ``weighted_tau_by_truth`` — ``weightedtau(truth, score, rank=None)``: the weights
  come from the ranking by the ground truth only, so swaps among the truly best models
  cost most. This is the call in Model-Spider's evaluation code.

They differ on the same inputs (see ``docs/experiments.md``); always say which one.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from .._internal.serialize import (
    atomic_write_json,
    atomic_write_text,
    csv_text,
    to_jsonable,
)
from ..exceptions import TaskrelInputError
from .estimators import TRUTHS, get_estimator

__all__ = [
    "Analysis",
    "correlation",
    "zoo_selection",
    "zoo_selection_from_rows",
    "few_label_sweep",
    "decomposition_plot",
    "cost_table",
    "higher_is_better",
    "pair_with_truth",
]

# ---------------------------------------------------------------------------------
# the result object
# ---------------------------------------------------------------------------------
@dataclass
class Analysis:
    """One analysis: ``rows`` (the CSV table), ``summary`` (the JSON) and ``figure``."""

    name: str
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    figure: Any = field(default=None, repr=False)

    def write(self, out_dir: str | os.PathLike[str]) -> dict[str, str]:
        """Write ``<name>.csv``, ``<name>.json`` and ``<name>.png``; return the paths."""
        d = Path(out_dir)
        d.mkdir(parents=True, exist_ok=True)
        paths = {"csv": str(d / f"{self.name}.csv"), "json": str(d / f"{self.name}.json")}
        atomic_write_text(paths["csv"], csv_text(self.rows))
        atomic_write_json(paths["json"],
                          to_jsonable({"summary": self.summary, "rows": self.rows}))
        if self.figure is not None:
            paths["png"] = str(d / f"{self.name}.png")
            tmp = d / f".{self.name}.tmp.png"
            self.figure.savefig(tmp, dpi=120, bbox_inches="tight")
            os.replace(tmp, paths["png"])
        return paths


def _figure(figsize: tuple[float, float]) -> tuple[Any, Any]:
    """A standalone matplotlib Figure (no pyplot, no global backend change)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise TaskrelInputError(
            "plots need matplotlib: `pip install 'taskrel[plot]'` (or pass plot=False)"
        ) from None
    fig = Figure(figsize=figsize)
    return fig, fig.subplots()


def higher_is_better(name: str, overrides: Mapping[str, bool] | None = None) -> bool:
    """Orientation of an estimator: ``overrides``, then the suite's estimator registry
    (:func:`taskrel.experiments.estimators.get_estimator`: the ``taskrel.scores``
    registry, task-relatedness without labels and the ground truths)."""
    if overrides and name in overrides:
        return bool(overrides[name])
    try:
        return get_estimator(name).higher_is_better
    except TaskrelInputError:
        raise TaskrelInputError(
            f"orientation of estimator {name!r} is unknown (not in taskrel.scores); "
            "say whether higher is better (CLI: --lower-is-better NAME)"
        ) from None


def _vec(a: ArrayLike, name: str) -> np.ndarray:
    try:
        v = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError):
        raise TaskrelInputError(f"`{name}` must be numbers; got {type(a).__name__}") from None
    if v.ndim != 1:
        raise TaskrelInputError(f"`{name}` must be 1-D; got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise TaskrelInputError(f"`{name}` must be finite; got {int((~np.isfinite(v)).sum())} non-finite values")
    return v


# ---------------------------------------------------------------------------------
# correlation
# ---------------------------------------------------------------------------------
def _pearson_rows(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    Xc = X - X.mean(1, keepdims=True)
    Yc = Y - Y.mean(1, keepdims=True)
    den = np.sqrt((Xc**2).sum(1) * (Yc**2).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (Xc * Yc).sum(1) / den, np.nan)


def correlation(
    x: ArrayLike,
    y: ArrayLike,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    xlabel: str = "estimator",
    ylabel: str = "ground truth",
    labels: Sequence[str] | None = None,
    plot: bool = True,
) -> Analysis:
    """Pearson and Spearman correlation of ``x`` with ``y``, with bootstrap percentile
    confidence intervals (pairs resampled with replacement ``n_boot`` times; resamples
    where a side is constant are dropped and counted in ``n_boot_used``).

    Examples
    --------
    >>> r = correlation([1, 2, 3, 4, 5], [2, 4, 5, 4, 5], n_boot=200, plot=False)
    >>> round(r.summary["pearson"], 4), r.summary["spearman"] > 0
    (0.7746, True)
    """
    xv, yv = _vec(x, "x"), _vec(y, "y")
    if xv.size != yv.size:
        raise TaskrelInputError(f"`x` and `y` have different lengths: {xv.size} vs {yv.size}")
    if xv.size < 3:
        raise TaskrelInputError(f"`x` needs at least 3 pairs; got {xv.size}")
    if np.ptp(xv) == 0 or np.ptp(yv) == 0:
        raise TaskrelInputError("`x` and `y` must each vary; one of them is constant")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 0:
        raise TaskrelInputError(f"`n_boot` must be a non-negative integer; got {n_boot!r}")
    if not 0 < ci < 1:
        raise TaskrelInputError(f"`ci` must be in (0, 1); got {ci!r}")
    pr = stats.pearsonr(xv, yv)
    sr = stats.spearmanr(xv, yv)
    summary: dict[str, Any] = {
        "n": int(xv.size), "pearson": float(pr.statistic), "pearson_p": float(pr.pvalue),
        "spearman": float(sr.statistic), "spearman_p": float(sr.pvalue),
        "ci": ci, "n_boot": n_boot, "seed": seed, "x": xlabel, "y": ylabel,
    }
    if n_boot:
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, xv.size, size=(n_boot, xv.size))
        bx, by = xv[idx], yv[idx]
        # clipped: rounding can put a perfect correlation a hair above 1
        p = np.clip(_pearson_rows(bx, by), -1.0, 1.0)
        s = np.clip(_pearson_rows(stats.rankdata(bx, axis=1), stats.rankdata(by, axis=1)),
                    -1.0, 1.0)
        ok = np.isfinite(p) & np.isfinite(s)
        lo, hi = 100 * (1 - ci) / 2, 100 * (1 + ci) / 2
        summary.update(
            n_boot_used=int(ok.sum()),
            pearson_ci=[float(np.percentile(p[ok], lo)), float(np.percentile(p[ok], hi))],
            spearman_ci=[float(np.percentile(s[ok], lo)), float(np.percentile(s[ok], hi))],
        )
    names = list(labels) if labels is not None else [str(i) for i in range(xv.size)]
    if len(names) != xv.size:
        raise TaskrelInputError(f"`labels` must have {xv.size} entries; got {len(names)}")
    rows = [{"label": n, xlabel: float(a), ylabel: float(b)}
            for n, a, b in zip(names, xv, yv)]
    fig = None
    if plot:
        fig, ax = _figure((5, 4))
        ax.scatter(xv, yv, s=18)
        if labels is not None and xv.size <= 40:
            for n, a, b in zip(names, xv, yv):
                ax.annotate(n, (a, b), fontsize=6, alpha=0.7)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        t = f"Pearson {summary['pearson']:.3f}, Spearman {summary['spearman']:.3f}"
        if n_boot:
            pc, sc = summary["pearson_ci"], summary["spearman_ci"]
            t = (f"Pearson {summary['pearson']:.3f} [{pc[0]:.2f}, {pc[1]:.2f}]\n"
                 f"Spearman {summary['spearman']:.3f} [{sc[0]:.2f}, {sc[1]:.2f}]"
                 f" ({int(100 * ci)}% bootstrap, n={xv.size})")
        ax.set_title(t, fontsize=9)
    return Analysis("correlation", rows, summary, fig)


# ---------------------------------------------------------------------------------
# model-zoo selection
# ---------------------------------------------------------------------------------
def _zoo_one(scores: Mapping[str, float], truth: Mapping[str, float],
             hib: bool, target: str) -> dict[str, Any]:
    common = sorted(set(scores) & set(truth))
    if len(common) < 2:
        raise TaskrelInputError(
            f"target {target!r}: need scores and truth for at least 2 common encoders; "
            f"got scores for {sorted(scores)}, truth for {sorted(truth)}"
        )
    s = _vec([scores[e] for e in common], f"scores[{target!r}]")
    t = _vec([truth[e] for e in common], f"truth[{target!r}]")
    oriented = s if hib else -s
    pick = common[int(np.argmax(oriented))]
    best_acc = float(t.max())
    best = [e for e, v in zip(common, t) if v == best_acc]
    kt = stats.kendalltau(oriented, t).statistic
    wt_both = stats.weightedtau(oriented, t).statistic
    wt_truth = stats.weightedtau(t, oriented, rank=None).statistic
    return {
        "target": target, "n_encoders": len(common), "pick": pick,
        "pick_accuracy": float(truth[pick]), "best": ",".join(best),
        "best_accuracy": best_acc, "regret": best_acc - float(truth[pick]),
        "top1_hit": pick in best, "kendall_tau": float(kt),
        "weighted_tau_both": float(wt_both), "weighted_tau_by_truth": float(wt_truth),
    }


def zoo_selection(
    scores_by_encoder: Mapping[str, Any],
    truth_by_encoder: Mapping[str, Any],
    higher_is_better: bool,
    *,
    estimator: str = "estimator",
    plot: bool = True,
) -> Analysis:
    """Model-zoo selection by one estimator, per target and aggregated.

    Parameters
    ----------
    scores_by_encoder, truth_by_encoder : mapping
        ``{encoder: value}`` for one target, or ``{target: {encoder: value}}`` for
        several. The truth is an accuracy (higher is better), e.g. fine-tuned accuracy.
    higher_is_better : bool
        Orientation of the estimator (task-relatedness: False).

    Returns
    -------
    Analysis
        One row per target: ``pick``, ``pick_accuracy``, ``best``, ``regret`` (best
        accuracy minus the pick's; 0 when the pick ties the best), ``top1_hit``,
        ``kendall_tau``, ``weighted_tau_both`` and ``weighted_tau_by_truth`` (the two
        conventions in the module docstring). The summary has their means and the
        top-1 hit rate over targets.

    Examples
    --------
    >>> r = zoo_selection({"a": 0.2, "b": 0.9, "c": 0.5}, {"a": 80, "b": 85, "c": 90},
    ...                   higher_is_better=True, plot=False)
    >>> r.rows[0]["pick"], r.rows[0]["regret"]
    ('b', 5.0)
    """
    if not isinstance(higher_is_better, bool):
        raise TaskrelInputError(
            f"`higher_is_better` must be a bool; got {higher_is_better!r}"
        )
    for nm, m in (("scores_by_encoder", scores_by_encoder),
                  ("truth_by_encoder", truth_by_encoder)):
        if not isinstance(m, Mapping) or not m:
            raise TaskrelInputError(f"`{nm}` must be a non-empty mapping; got {m!r}")
    nested = all(isinstance(v, Mapping) for v in scores_by_encoder.values())
    if nested != all(isinstance(v, Mapping) for v in truth_by_encoder.values()):
        raise TaskrelInputError(
            "`scores_by_encoder` and `truth_by_encoder` must both be {encoder: value} "
            "or both {target: {encoder: value}}"
        )
    s_map = scores_by_encoder if nested else {"target": scores_by_encoder}
    t_map = truth_by_encoder if nested else {"target": truth_by_encoder}
    targets = [t for t in s_map if t in t_map]
    if not targets:
        raise TaskrelInputError(
            f"no target has both scores and truth: scores for {sorted(s_map)}, "
            f"truth for {sorted(t_map)}"
        )
    rows = [{"estimator": estimator, **_zoo_one(s_map[t], t_map[t], higher_is_better, t)}
            for t in targets]
    summary = _zoo_summary(rows)
    fig = _zoo_figure(rows) if plot else None
    return Analysis("zoo", rows, summary, fig)


def _zoo_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by[r["estimator"]].append(r)
    out = {}
    for est, rs in by.items():
        out[est] = {
            "n_targets": len(rs),
            "top1_hit_rate": float(np.mean([r["top1_hit"] for r in rs])),
            "mean_regret": float(np.mean([r["regret"] for r in rs])),
            "max_regret": float(np.max([r["regret"] for r in rs])),
            "mean_kendall_tau": float(np.nanmean([r["kendall_tau"] for r in rs])),
            "mean_weighted_tau_both": float(np.nanmean([r["weighted_tau_both"] for r in rs])),
            "mean_weighted_tau_by_truth": float(
                np.nanmean([r["weighted_tau_by_truth"] for r in rs])),
        }
    return {"by_estimator": out, "weighted_tau_conventions": {
        "weighted_tau_both": "scipy.stats.weightedtau(score, truth), defaults "
                             "(hyperbolic, rank=True: both rankings averaged); SFDA code",
        "weighted_tau_by_truth": "scipy.stats.weightedtau(truth, score, rank=None) "
                                 "(hyperbolic, weights by the ground-truth ranking); "
                                 "Model-Spider code"}}


def _zoo_figure(rows: list[dict[str, Any]]) -> Any:
    ests = list(dict.fromkeys(r["estimator"] for r in rows))
    targets = list(dict.fromkeys(r["target"] for r in rows))
    fig, ax = _figure((max(5, 0.8 * len(targets) * max(1, len(ests)) / 2), 4))
    w = 0.8 / len(ests)
    for i, e in enumerate(ests):
        reg = {r["target"]: r["regret"] for r in rows if r["estimator"] == e}
        ax.bar(np.arange(len(targets)) + i * w - 0.4 + w / 2,
               [reg.get(t, np.nan) for t in targets], width=w, label=e)
    ax.set_xticks(np.arange(len(targets)))
    ax.set_xticklabels(targets, rotation=30, ha="right", fontsize=8)
    ax.set_xlabel("target")
    ax.set_ylabel("regret (best accuracy - pick's accuracy)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("model-zoo selection", fontsize=9)
    return fig


# ---------------------------------------------------------------------------------
# joining estimator rows with ground-truth rows
# ---------------------------------------------------------------------------------
def _check_rows(rows: Any) -> list[Mapping[str, Any]]:
    if not isinstance(rows, (list, tuple)):
        raise TaskrelInputError(f"`rows` must be a list of row dicts; got {type(rows).__name__}")
    need = ("encoder", "reference", "target", "fraction", "seed", "estimator", "value")
    for i, r in enumerate(rows):
        if not isinstance(r, Mapping) or any(k not in r for k in need):
            raise TaskrelInputError(
                f"`rows[{i}]` must be a mapping with keys {need}; got {r!r}"[:300]
            )
    return list(rows)


def pair_with_truth(
    rows: Sequence[Mapping[str, Any]],
    estimator: str,
    *,
    truth: str = "finetune",
    truth_fraction: float | None = 1.0,
    fraction: float | None = None,
) -> list[dict[str, Any]]:
    """Rows of ``estimator`` joined with the ground truth of the same cell.

    The truth of ``(encoder, reference, target)`` is the mean over seeds of the
    ``truth`` rows at ``truth_fraction``; ``truth_fraction=None`` matches the
    estimator row's own fraction and seed instead. Rows with a missing value on
    either side are dropped. A truth reads no reference: an estimator row whose
    reference no truth row of its (encoder, target) has (an own-source cell,
    ``options.reference_mode = "own_source"``) is joined with the truth of its
    (encoder, target) when those truth rows all have one reference.
    """
    rows = _check_rows(rows)
    tsum: dict[tuple[Any, ...], list[float]] = defaultdict(list)
    exact: dict[tuple[Any, ...], float] = {}
    refs: dict[tuple[Any, ...], set[Any]] = defaultdict(set)
    for r in rows:
        if r["estimator"] == truth and r["value"] is not None:
            refs[(r["encoder"], r["target"])].add(r["reference"])

    def key3(r: Mapping[str, Any]) -> tuple[Any, ...]:
        ref = refs.get((r["encoder"], r["target"]), set())
        if r["reference"] not in ref and len(ref) == 1:
            return (r["encoder"], next(iter(ref)), r["target"])
        return (r["encoder"], r["reference"], r["target"])

    for r in rows:
        if r["estimator"] != truth or r["value"] is None:
            continue
        k3 = (r["encoder"], r["reference"], r["target"])
        exact[k3 + (float(r["fraction"]), int(r["seed"]))] = float(r["value"])
        if truth_fraction is not None and math.isclose(float(r["fraction"]), truth_fraction):
            tsum[k3].append(float(r["value"]))
    out = []
    for r in rows:
        if r["estimator"] != estimator or r["value"] is None:
            continue
        if fraction is not None and not math.isclose(float(r["fraction"]), fraction):
            continue
        k3 = key3(r)
        if truth_fraction is None:
            tv = exact.get(k3 + (float(r["fraction"]), int(r["seed"])))
        else:
            tv = float(np.mean(tsum[k3])) if tsum.get(k3) else None
        if tv is None:
            continue
        out.append({**{k: r[k] for k in ("encoder", "reference", "target", "fraction",
                                         "seed")},
                    "value": float(r["value"]), "truth": tv})
    return out


def zoo_selection_from_rows(
    rows: Sequence[Mapping[str, Any]],
    *,
    truth: str = "finetune",
    fraction: float = 1.0,
    estimators: Sequence[str] | None = None,
    orientation: Mapping[str, bool] | None = None,
    plot: bool = True,
) -> Analysis:
    """:func:`zoo_selection` for every estimator in store rows (seeds averaged)."""
    rows = _check_rows(rows)
    names = estimators or sorted({r["estimator"] for r in rows} - set(TRUTHS) - {truth})
    all_rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    for est in names:
        pairs = pair_with_truth(rows, est, truth=truth, fraction=fraction)
        sc: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        tr: dict[str, dict[str, float]] = defaultdict(dict)
        for p in pairs:
            sc[p["target"]][p["encoder"]].append(p["value"])
            tr[p["target"]][p["encoder"]] = p["truth"]
        scores = {t: {e: float(np.mean(v)) for e, v in d.items()} for t, d in sc.items()
                  if len(d) >= 2}
        if not scores:
            skipped.append(est)
            continue
        res = zoo_selection(scores, {t: tr[t] for t in scores},
                            higher_is_better(est, orientation), estimator=est, plot=False)
        all_rows.extend(res.rows)
    if not all_rows:
        raise TaskrelInputError(
            f"no estimator has values for at least 2 encoders of a target with "
            f"{truth!r} ground truth at fraction {fraction}"
        )
    summary = _zoo_summary(all_rows)
    # estimators without 2+ encoders on any target with a truth cannot select
    summary.update(truth=truth, fraction=fraction, skipped_estimators=skipped)
    return Analysis("zoo", all_rows, summary, _zoo_figure(all_rows) if plot else None)


# ---------------------------------------------------------------------------------
# few-label sweep
# ---------------------------------------------------------------------------------
def few_label_sweep(
    rows: Sequence[Mapping[str, Any]],
    *,
    truth: str = "finetune",
    truth_fraction: float | None = 1.0,
    method: str = "spearman",
    estimators: Sequence[str] | None = None,
    orientation: Mapping[str, bool] | None = None,
    plot: bool = True,
) -> Analysis:
    """Correlation of each estimator with the ground truth, per fraction of target data.

    For each estimator, fraction and seed, the estimator's values over all
    ``(encoder, target)`` cells are correlated (``method``: ``"spearman"`` or
    ``"pearson"``) with the truth (see :func:`pair_with_truth` for
    ``truth_fraction``); the sign is flipped for lower-is-better estimators, so a
    positive number always means "agrees with the ground truth". Rows report the mean,
    std (ddof=1; 0 with one seed) and the number of seeds.
    """
    rows = _check_rows(rows)
    if method not in ("spearman", "pearson"):
        raise TaskrelInputError(f"`method` must be 'spearman' or 'pearson'; got {method!r}")
    names = estimators or sorted({r["estimator"] for r in rows} - set(TRUTHS) - {truth})
    table = []
    for est in names:
        sign = 1.0 if higher_is_better(est, orientation) else -1.0
        pairs = pair_with_truth(rows, est, truth=truth, truth_fraction=truth_fraction)
        groups: dict[tuple[float, int], list[tuple[float, float]]] = defaultdict(list)
        for p in pairs:
            groups[(float(p["fraction"]), int(p["seed"]))].append((p["value"], p["truth"]))
        per_frac: dict[float, list[float]] = defaultdict(list)
        n_cells: dict[float, int] = {}
        for (fr, _s), xy in sorted(groups.items()):
            a = np.array(xy)
            if len(a) < 3 or np.ptp(a[:, 0]) == 0 or np.ptp(a[:, 1]) == 0:
                continue
            f = stats.spearmanr if method == "spearman" else stats.pearsonr
            per_frac[fr].append(sign * float(f(a[:, 0], a[:, 1]).statistic))
            n_cells[fr] = len(a)
        for fr in sorted(per_frac):
            v = np.array(per_frac[fr])
            table.append({"estimator": est, "fraction": fr, "mean": float(v.mean()),
                          "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
                          "n_seeds": int(v.size), "n_cells": n_cells[fr]})
    if not table:
        raise TaskrelInputError(
            f"no (estimator, fraction, seed) group has 3 or more cells with {truth!r} truth"
        )
    summary = {"truth": truth, "truth_fraction": truth_fraction, "method": method,
               "sign": "flipped for lower-is-better estimators (positive = agrees)"}
    fig = None
    if plot:
        fig, ax = _figure((6, 4))
        for est in dict.fromkeys(r["estimator"] for r in table):
            rs = [r for r in table if r["estimator"] == est]
            ax.errorbar([r["fraction"] for r in rs], [r["mean"] for r in rs],
                        yerr=[r["std"] for r in rs], marker="o", capsize=3, label=est)
        ax.set_xscale("log")
        fracs = sorted({r["fraction"] for r in table})
        ax.set_xticks(fracs)
        ax.set_xticklabels([f"{100 * f:g}%" for f in fracs])
        ax.minorticks_off()
        ax.set_xlabel("fraction of target training data")
        ax.set_ylabel(f"{method} correlation with {truth} accuracy")
        ax.axhline(0, color="grey", lw=0.5)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        ax.set_title("few-label sweep (mean ± std over seeds)", fontsize=9)
    return Analysis("sweep", table, summary, fig)


# ---------------------------------------------------------------------------------
# decomposition
# ---------------------------------------------------------------------------------
_TERMS = ("reweighted_reference_loss", "label_mismatch", "distribution_mismatch",
          "lipschitz")


def decomposition_plot(
    results: Mapping[str, Mapping[str, Any]] | Sequence[Mapping[str, Any]],
    transfer_loss: Mapping[str, float] | None = None,
    *,
    plot: bool = True,
) -> Analysis:
    """The bound's three terms per target, stacked, beside the actual transfer loss.

    Parameters
    ----------
    results : mapping or sequence
        ``{target: RelatednessResult.to_dict()}``, or a list of such dicts each with a
        ``"target"`` key. Needs ``reweighted_reference_loss``, ``label_mismatch``,
        ``distribution_mismatch``, ``lipschitz`` and (optional) ``bound``.
    transfer_loss : mapping, optional
        ``{target: loss}`` of the linear probe on the target test split; otherwise each
        dict's ``"transfer_loss"`` (what ``taskrel relate --json`` writes) is used.

    Returns
    -------
    Analysis
        Rows per target: the three terms, ``bound``, ``transfer_loss``, ``gap``
        (bound - transfer loss) and ``bound_holds`` (bound >= transfer loss).
    """
    if isinstance(results, Mapping):
        items = [(str(t), d) for t, d in results.items()]
    elif isinstance(results, (list, tuple)):
        items = []
        for i, d in enumerate(results):
            if not isinstance(d, Mapping) or "target" not in d:
                raise TaskrelInputError(f"`results[{i}]` must be a dict with a 'target' key")
            items.append((str(d["target"]), d))
    else:
        raise TaskrelInputError(
            f"`results` must be a mapping or a list of dicts; got {type(results).__name__}"
        )
    if not items:
        raise TaskrelInputError("`results` is empty")
    rows = []
    for t, d in items:
        missing = [k for k in _TERMS if d.get(k) is None]
        if missing:
            raise TaskrelInputError(f"`results[{t!r}]` lacks {missing}")
        lw = float(d["lipschitz"]) * float(d["distribution_mismatch"])
        bound = float(d["bound"]) if d.get("bound") is not None else (
            float(d["reweighted_reference_loss"]) + float(d["label_mismatch"]) + lw)
        tl = (transfer_loss or {}).get(t, d.get("transfer_loss"))
        row = {"target": t,
               "reweighted_reference_loss": float(d["reweighted_reference_loss"]),
               "label_mismatch": float(d["label_mismatch"]),
               "lipschitz_x_w1": lw, "bound": bound,
               "transfer_loss": None if tl is None else float(tl)}
        row["gap"] = None if tl is None else bound - float(tl)
        row["bound_holds"] = None if tl is None else bool(bound >= float(tl))
        rows.append(row)
    held = [r["bound_holds"] for r in rows if r["bound_holds"] is not None]
    summary = {"n_targets": len(rows), "n_with_transfer_loss": len(held),
               "bound_held_everywhere": bool(all(held)) if held else None,
               "n_violations": int(sum(not h for h in held))}
    fig = None
    if plot:
        fig, ax = _figure((max(5, 1.0 * len(rows)), 4))
        x = np.arange(len(rows))
        w = 0.38
        a = np.array([r["reweighted_reference_loss"] for r in rows])
        b = np.array([r["label_mismatch"] for r in rows])
        c = np.array([r["lipschitz_x_w1"] for r in rows])
        ax.bar(x - w / 2, a, w, label="reweighted reference loss")
        ax.bar(x - w / 2, b, w, bottom=a, label="label mismatch")
        ax.bar(x - w / 2, c, w, bottom=a + b, label="Lipschitz x W1")
        tl = [np.nan if r["transfer_loss"] is None else r["transfer_loss"] for r in rows]
        ax.bar(x + w / 2, tl, w, color="black", alpha=0.75, label="transfer loss (probe)")
        ax.set_xticks(x)
        ax.set_xticklabels([r["target"] for r in rows], rotation=30, ha="right", fontsize=8)
        ax.set_xlabel("target")
        ax.set_ylabel("loss (nats)")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        ax.set_title("task-relatedness bound, decomposed", fontsize=9)
    return Analysis("decomposition", rows, summary, fig)


# ---------------------------------------------------------------------------------
# cost
# ---------------------------------------------------------------------------------
def cost_table(rows: Sequence[Mapping[str, Any]], *, plot: bool = True) -> Analysis:
    """Seconds per cell for every estimator (ground truths included, for comparison).

    Rows per estimator: ``n_cells``, ``mean_seconds``, ``median_seconds``,
    ``total_seconds`` and ``x_finetune`` (mean seconds / fine-tuning's mean seconds,
    when fine-tuning rows exist). Rows without seconds are ignored.
    """
    rows = _check_rows(rows)
    secs: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        if r.get("seconds") is not None:
            secs[r["estimator"]].append(float(r["seconds"]))
    if not secs:
        raise TaskrelInputError("`rows` carry no 'seconds'")
    ft = float(np.mean(secs["finetune"])) if secs.get("finetune") else None
    table = []
    for est in sorted(secs, key=lambda e: np.mean(secs[e])):
        v = np.array(secs[est])
        table.append({"estimator": est, "n_cells": int(v.size),
                      "mean_seconds": float(v.mean()), "median_seconds": float(np.median(v)),
                      "total_seconds": float(v.sum()),
                      "x_finetune": None if ft is None else float(v.mean() / ft)})
    summary = {"finetune_mean_seconds": ft, "n_estimators": len(table)}
    fig = None
    if plot:
        fig, ax = _figure((6, max(3, 0.35 * len(table))))
        ax.barh([r["estimator"] for r in table], [r["mean_seconds"] for r in table],
                color=["black" if r["estimator"] in TRUTHS else "C0" for r in table])
        ax.set_xscale("log")
        ax.set_xlabel("seconds per cell (mean)")
        ax.set_ylabel("estimator")
        ax.set_title("cost per cell (black: ground truth)", fontsize=9)
    return Analysis("cost", table, summary, fig)

