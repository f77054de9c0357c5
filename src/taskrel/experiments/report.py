"""The reproduction report: every analysis of a suite's store rows, as markdown + files.

:func:`write_report` runs the analyses of :mod:`taskrel.experiments.analysis` on the rows of a
results store (decomposition per encoder, the bound check in every cell, correlation of
every estimator with the ground truths, the few-label sweep, model-zoo selection and
the cost), writes each one's CSV/JSON/PNG under ``out/<suite>/`` and a ``report.md``
that quotes their tables, the exact config, the package versions and the runtime.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from .._internal.serialize import (
    atomic_write_json,
    atomic_write_text,
    csv_text,
    to_jsonable,
)
from ..exceptions import TaskrelInputError
from .estimators import TRUTHS, UNLABELED
from .suite import REFERENCE_TARGET

__all__ = ["write_report", "bound_check", "md_table"]


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, (float, np.floating)):
        if not math.isfinite(float(v)):
            return "-"
        return f"{float(v):.3f}" if abs(float(v)) >= 1e-3 or v == 0 else f"{float(v):.2e}"
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(
            isinstance(x, (float, int)) for x in v):
        return f"[{v[0]:.2f}, {v[1]:.2f}]"
    return str(v)


def md_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None,
             *, max_rows: int = 80) -> str:
    """A markdown table of ``rows`` (numbers to 3 decimals; ``-`` for missing). Without
    ``columns``, every key of any row is a column, in order of first appearance."""
    if not rows:
        return "_(no rows)_\n"
    cols = list(columns) if columns else list(dict.fromkeys(k for r in rows for k in r))
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows[:max_rows]:
        out.append("| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |")
    if len(rows) > max_rows:
        out.append(f"\n_({len(rows) - max_rows} more rows in the CSV)_")
    return "\n".join(out) + "\n"


def bound_check(rows: Sequence[Mapping[str, Any]], *, estimator: str = "task_relatedness"
                ) -> list[dict[str, Any]]:
    """Per (encoder, target, seed) at fraction 1: the bound, the probe's transfer loss
    (same tau) and whether bound >= transfer loss."""
    probe = {(r["encoder"], r["target"], r["seed"]): r for r in rows
             if r["estimator"] == "linear_probe" and r["value"] is not None
             and math.isclose(r["fraction"], 1.0)}
    out = []
    for r in rows:
        if r["estimator"] != estimator or r["value"] is None \
                or not math.isclose(r["fraction"], 1.0):
            continue
        p = probe.get((r["encoder"], r["target"], r["seed"]))
        tl = None if p is None else (p.get("extra") or {}).get("loss")
        b = _bound(r)
        out.append({"encoder": r["encoder"], "target": r["target"], "seed": r["seed"],
                    "bound": b,
                    "transfer_loss": None if tl is None else float(tl),
                    "probe_accuracy": None if p is None else p["value"],
                    "bound_holds": None if tl is None else bool(b >= tl)})
    return sorted(out, key=lambda d: (d["encoder"], d["target"], d["seed"]))


def _bound(row: Mapping[str, Any]) -> float:
    """The bound of a task-relatedness row: ``extra.bound`` (the row's value is the
    ranking score, :attr:`taskrel.RelatednessResult.score`; rows written before the
    score existed hold the bound as their value)."""
    b = (row.get("extra") or {}).get("bound")
    return float(row["value"] if b is None else b)


def _estimators(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    seen: list[str] = []
    for r in rows:
        if r["estimator"] not in TRUTHS and r["estimator"] not in seen:
            seen.append(r["estimator"])
    return seen


def _correlations(rows: Sequence[Mapping[str, Any]], out: Path, truth: str,
                  fraction: float) -> list[dict[str, Any]]:
    from . import analysis as A

    table = []
    for est in _estimators(rows):
        pairs = A.pair_with_truth(rows, est, truth=truth, truth_fraction=1.0,
                                  fraction=fraction)
        row: dict[str, Any] = {"estimator": est, "truth": truth, "fraction": fraction,
                               "n": len(pairs),
                               "better": "higher" if A.higher_is_better(est) else "lower"}
        try:
            res = A.correlation([p["value"] for p in pairs], [p["truth"] for p in pairs],
                                n_boot=1000, seed=0, xlabel=est,
                                ylabel=f"{truth} accuracy",
                                labels=[f"{p['encoder']}/{p['target']}/s{p['seed']}"
                                        for p in pairs])
        except TaskrelInputError as exc:
            row["note"] = str(exc)
            table.append(row)
            continue
        s = res.summary
        row.update(pearson=s["pearson"], pearson_ci=s.get("pearson_ci"),
                   spearman=s["spearman"], spearman_ci=s.get("spearman_ci"))
        if est in ("task_relatedness", UNLABELED):
            res.write(out / f"correlation_{est}_{truth}_f{fraction:g}")
        table.append(row)
    return table


def write_report(config: Any, rows: list[dict[str, Any]], out: Path, *, grid: Any = None,
                 seconds: float | None = None, versions: Mapping[str, Any] | None = None,
                 reference_finetune: Sequence[Mapping[str, Any]] | None = None,
                 reference_finetune_error: str | None = None,
                 n_classes: Mapping[str, int] | None = None) -> dict[str, Any]:
    """Run every analysis on ``rows`` and write ``out/<config.name>/report.md``.

    Also writes the per-cell exports and the field's three views (``cells.csv``,
    ``truth.csv``, ``targets.csv``, ``views.json``: :mod:`taskrel.experiments.views`).
    ``n_classes`` (``{target: K}``) feeds the class-count-normalised truth; default:
    what the rows and the config's specs say (no dataset is loaded here).

    Renders only: the rows of the reference fine-tuning (paper Fig. 4b) are computed
    beforehand (:func:`taskrel.experiments.reference_finetune.try_reference_finetune`)
    and passed as ``reference_finetune`` (None: not run), or its failure as
    ``reference_finetune_error``.

    Returns the summary dict (also written as ``summary.json``).
    """
    d = Path(out) / config.name
    d.mkdir(parents=True, exist_ok=True)
    # The reference task's own truths (target "reference") are reported apart.
    reference_rows = [r for r in rows if r["target"] == REFERENCE_TARGET]
    rows = [r for r in rows if r["target"] != REFERENCE_TARGET]
    if not rows:
        raise TaskrelInputError(f"`rows` must hold the suite's results; got none for "
                                f"{config.name!r}")
    t0 = time.perf_counter()
    encs = sorted({r["encoder"] for r in rows})
    truths = [t for t in TRUTHS if any(r["estimator"] == t and r["value"] is not None
                                       for r in rows)]
    fracs = sorted({r["fraction"] for r in rows if r["estimator"] not in TRUTHS})
    summary: dict[str, Any] = {"suite": config.name, "quick": config.quick}
    md: list[str] = [f"# taskrel reproduction: `{config.name}` suite"
                     + (" (quick)" if config.quick else ""), ""]
    md += ["## Headline", ""]
    headline_at = len(md)
    views_md = _views_section(config, [*rows, *reference_rows], d, n_classes)
    md += views_md
    md += _bound_sections(rows, d, encs, summary)
    md += _correlation_section(rows, d, truths, summary)
    md += _sweep_section(rows, d, truths, fracs, summary)
    md += _zoo_section(rows, d, truths, fracs, encs, summary)
    md += _cost_section(rows, d)
    md += _reference_truth_section(reference_rows, d, summary)
    md += _truth_checks_section([*rows, *reference_rows], d, summary)
    md += _reference_finetune_section(config, d, reference_finetune,
                                      reference_finetune_error, summary)
    md[headline_at:headline_at] = [x for x in views_md if x.startswith(
        "- model_selection")] + _headline(summary) + [""]
    md += ["## Deviations from the paper", "", *_deviations(config), "", "## Run", ""]
    md += _run_section(rows, grid, seconds, t0, summary)
    md += _provenance_section(config, versions, summary)
    atomic_write_text(d / "report.md", "\n".join(md))
    atomic_write_json(d / "summary.json", to_jsonable(summary))
    return summary


def _views_section(config: Any, rows: Sequence[Mapping[str, Any]], d: Path,
                   n_classes: Mapping[str, int] | None) -> list[str]:
    """The field's three views (``cells.csv``, ``truth.csv``, ``targets.csv``,
    ``views.json``, ``views_model_selection.png``; the statistics live in
    ``views.json``, not in ``summary.json``)."""
    from . import views as V

    if n_classes is None:
        n_classes = V.suite_classes(config, rows)
    try:
        views = V.write_views(rows, d, n_classes=n_classes)
    except TaskrelInputError as exc:
        return ["## The field's three views", "", f"_Not computed: {exc}_", ""]
    return V.views_markdown(views)


def _reference_truth_section(rows: Sequence[Mapping[str, Any]], d: Path,
                             summary: dict[str, Any]) -> list[str]:
    """The reference task's own ground truths per encoder (mean over seeds)."""
    if not rows:
        return []
    acc: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        if r["value"] is not None:
            acc.setdefault((r["encoder"], r["estimator"]), []).append(float(r["value"]))
    table = [{"encoder": e, "truth": t, "accuracy": float(np.mean(v)), "seeds": len(v)}
             for (e, t), v in sorted(acc.items())]
    summary["reference_truth"] = table
    wide: dict[str, dict[str, Any]] = {}
    for r in table:
        wide.setdefault(r["encoder"], {"encoder": r["encoder"]})[r["truth"]] = r["accuracy"]
    wide_rows = list(wide.values())
    atomic_write_text(d / "reference_truth.csv", csv_text(table))
    return ["## The reference task's own ground truth", "",
            "Test accuracy on the reference task itself (the encoders' health check: "
            "every ImageNet encoder's tuned logistic probe must reach 0.80).", "",
            md_table(wide_rows), ""]


def _truth_checks_section(rows: Sequence[Mapping[str, Any]], d: Path,
                          summary: dict[str, Any]) -> list[str]:
    """Is the ground truth healthy and converged? (:mod:`.truth_checks`)."""
    from .truth_checks import (
        IMAGENET_ENCODERS,
        head_fallbacks,
        learning_curves_png,
        reference_floor,
        sanity_rule,
        winners,
    )

    if not any(r["estimator"] in ("logreg", "finetune") for r in rows):
        return []
    floor, rule, win = reference_floor(rows), sanity_rule(rows), winners(rows)
    others = sorted({r["encoder"] for r in rows if r["estimator"] == "finetune"}
                    - set(IMAGENET_ENCODERS))
    rest = sanity_rule(rows, imagenet=others)
    falls = head_fallbacks(rows)
    summary["truth_checks"] = {"reference_floor": floor, "sanity_rule": rule,
                               "sanity_rule_other_encoders": rest, "winners": win,
                               "head_fallbacks": falls}
    md = ["## Ground-truth checks", "",
          f"- Reference floor (tuned logistic probe >= {floor['floor']:.2f} on the "
          f"reference for every ImageNet encoder): "
          + ("not applicable (no ImageNet encoder with a reference probe)."
             if floor["holds"] is None else "holds." if floor["holds"]
             else f"FAILS for {floor['below']}."),
          f"- Sanity rule (finetune >= logreg - {rule['margin']}): {rule['ok']} of "
          f"{rule['cells']} ImageNet-encoder cells"
          + (f" ({rule['share']:.0%}; required {rule['required_share']:.0%}: "
             f"{'holds' if rule['holds'] else 'FAILS'})." if rule["share"] is not None
             else "."),
          *([f"- The same rule on the other fine-tuned encoders ({', '.join(others)}; "
             f"not required): {rest['ok']} of {rest['cells']} cells ({rest['share']:.0%})"
             + (": exceptions " + ", ".join(
                 f"{x['encoder']} {x['target']} {x['gap']:+.3f}" for x in rest["exceptions"])
                if rest["exceptions"] else "") + "."] if rest["cells"] else []),
          f"- Best encoder by fine-tuned accuracy: {win['distinct']} distinct winners over "
          f"{win['targets']} targets fine-tuned for all {win['encoders']} encoders: "
          + (", ".join(f"{t}: {e}" for t, e in win["best"].items()) or "none yet") + "."
          + (" Not counted (column incomplete, encoders fine-tuned): "
             + ", ".join(f"{t} ({n})" for t, n in win["partial"].items()) + "."
             if win["partial"] else ""),
          ""]
    if rule["exceptions"]:
        md += ["Exceptions to the sanity rule:", "", md_table(rule["exceptions"]), ""]
    n_ft = len({(r["encoder"], r["target"]) for r in rows if r["estimator"] == "finetune"})
    if falls:
        div = [f for f in falls if f["diverged"]]
        md += [f"**Fine-tuning that never beat its LP-FT head:** {len(falls)} of {n_ft} "
               "cells kept epoch 0 (no epoch at any rate beat the logistic head on "
               "validation), so their `finetune_acc` is the head on frozen features; in "
               f"{len(div)} of them training diverged at every rate (training loss > 10x "
               "its epoch-0 value): "
               + (", ".join(f"{f['encoder']} {f['target']}" for f in div) or "none") + ".",
               ""]
    n = learning_curves_png(rows, d / "learning_curves.png")
    if n:
        md += [f"Learning curves of the {n} fine-tuning cells (validation accuracy per "
               "epoch; * the learning rate chosen on validation; grey: the epoch kept):",
               "", "![learning curves](learning_curves.png)", ""]
    return md


def _bound_sections(rows: Sequence[Mapping[str, Any]], d: Path, encs: Sequence[str],
                    summary: dict[str, Any]) -> list[str]:
    """Section 1: the decomposition per encoder, the bound check in every cell, and
    when the bound is vacuous (``bound_check.csv``, ``decomposition_<encoder>.*``)."""
    bc = bound_check(rows)
    atomic_write_text(d / "bound_check.csv", csv_text(bc, line_ending="\r\n"))
    held = [r["bound_holds"] for r in bc if r["bound_holds"] is not None]
    summary["bound_cells"] = len(held)
    summary["bound_violations"] = int(sum(not h for h in held))
    summary["bound_held_everywhere"] = bool(all(held)) if held else None
    md = ["## 1. Decomposition of the bound (paper Fig. 3)", "",
          "Task-relatedness = reweighted reference loss + label mismatch + Lipschitz x "
          "W1 (lower is better). The bound is an upper bound on the linear probe's "
          "cross-entropy on the target test split (the probe trained with the same "
          "Lipschitz target tau as the reference head). Fraction 1.0, lowest seed.", ""]
    for enc in encs:
        md += _decomposition(rows, d, enc)
    md += ["### Did the bound hold? (every cell at fraction 1.0)", "",
           f"bound >= transfer loss in {len(held) - summary['bound_violations']} of "
           f"{len(held)} cells.", "", md_table(bc), ""]
    vac = _vacuous(rows)
    summary["vacuous"] = vac
    md += ["### When is the bound vacuous?", "",
           "A bound above log K_T (the loss of a uniform guess) is vacuous. The "
           "large ones coincide with a measured Lipschitz constant of the transformed "
           "head far above tau (the learned feature map A is close to singular; the "
           "engine warns about it); the column counts cells with Lipschitz > 10 tau.",
           "", md_table(vac), ""]
    return md


def _decomposition(rows: Sequence[Mapping[str, Any]], d: Path, enc: str) -> list[str]:
    """One encoder's decomposition at fraction 1.0 and its lowest seed."""
    from . import analysis as A

    rel = [r for r in rows if r["estimator"] == "task_relatedness"
           and r["encoder"] == enc and math.isclose(r["fraction"], 1.0)
           and r["value"] is not None]
    if not rel:
        return []
    s0 = min(r["seed"] for r in rel)
    rel = [r for r in rel if r["seed"] == s0]
    probe = {r["target"]: (r["extra"] or {}).get("loss") for r in rows
             if r["estimator"] == "linear_probe" and r["encoder"] == enc
             and r["seed"] == s0 and math.isclose(r["fraction"], 1.0)}
    res = A.decomposition_plot([{"target": r["target"], **r["extra"]} for r in rel],
                               {t: v for t, v in probe.items() if v is not None})
    res = replace(res, name=f"decomposition_{enc}")
    res.write(d)
    return [f"### {enc}", "", f"![decomposition {enc}](decomposition_{enc}.png)", "",
            md_table(res.rows, ["target", "reweighted_reference_loss", "label_mismatch",
                                "lipschitz_x_w1", "bound", "transfer_loss", "gap",
                                "bound_holds"]), ""]


def _correlation_section(rows: Sequence[Mapping[str, Any]], d: Path,
                         truths: Sequence[str], summary: dict[str, Any]) -> list[str]:
    """Section 2: every estimator against each truth (``correlations.csv``)."""
    md = ["## 2. Correlation with transferability (paper Fig. 4a)", "",
          "Pearson and Spearman over all (encoder, target) cells, 95% bootstrap "
          "percentile CIs (1000 resamples of the pairs). Estimators see all target "
          "training rows (fraction 1.0); the truth is the mean over seeds. For "
          "lower-is-better estimators (task_relatedness, otce, pactran) a *negative* "
          "correlation is agreement.", ""]
    corr_all = []
    for truth in truths:
        corr = _correlations(rows, d, truth, 1.0)
        corr_all += corr
        md += [f"### truth: {truth} test accuracy", "",
               md_table(corr, ["estimator", "better", "n", "pearson", "pearson_ci",
                               "spearman", "spearman_ci"]), ""]
        png = d / f"correlation_task_relatedness_{truth}_f1" / "correlation.png"
        if png.is_file():
            md += [f"![task-relatedness vs {truth}]({png.relative_to(d)})", ""]
    atomic_write_text(d / "correlations.csv", csv_text(corr_all, line_ending="\r\n"))
    summary["correlations"] = corr_all
    return md


def _sweep_section(rows: Sequence[Mapping[str, Any]], d: Path, truths: Sequence[str],
                   fracs: Sequence[float], summary: dict[str, Any]) -> list[str]:
    """Section 3: the few-label sweep per truth (``sweep_<truth>.*``)."""
    from . import analysis as A

    md = ["## 3. Few-label sweep (paper Fig. 5)", "",
          f"Spearman correlation, over (encoder, target) cells, of each estimator "
          f"computed on a fraction {list(fracs)} of the target training rows with the "
          "truth measured on all of them; sign flipped for lower-is-better estimators, "
          "so positive = agrees. Mean and std over seeds.", ""]
    summary["sweep"] = {}
    for truth in truths:
        try:
            sw = A.few_label_sweep(rows, truth=truth, truth_fraction=1.0)
        except TaskrelInputError as exc:
            md += [f"_sweep vs {truth} not computed: {exc}_", ""]
            continue
        sw = replace(sw, name=f"sweep_{truth}")
        sw.write(d)
        summary["sweep"][truth] = sw.rows
        md += [f"### truth: {truth}", "", f"![sweep {truth}](sweep_{truth}.png)", "",
               _pivot(sw.rows, "estimator", "fraction", "mean"), ""]
    return md


def _zoo_section(rows: Sequence[Mapping[str, Any]], d: Path, truths: Sequence[str],
                 fracs: Sequence[float], encs: Sequence[str], summary: dict[str, Any]
                 ) -> list[str]:
    """Section 4: model-zoo selection per truth and fraction (``zoo_<truth>_f<f>.*``)."""
    from . import analysis as A

    md = ["## 4. Model-zoo selection", "",
          "Per target, each estimator picks the encoder it ranks best; regret = best "
          "truth accuracy - the pick's truth accuracy. Weighted tau conventions: "
          "`weighted_tau_both` = scipy.stats.weightedtau(score, truth) with defaults "
          "(SFDA evaluation code); `weighted_tau_by_truth` = weightedtau(truth, score, "
          "rank=None) (Model-Spider code).", ""]
    summary["zoo"] = {}
    if len(encs) < 2:
        md += ["_Only one encoder: no zoo to select from._", ""]
    for truth in truths:
        for fr in sorted({1.0, min(fracs)} if fracs else {1.0}, reverse=True):
            try:
                zoo = A.zoo_selection_from_rows(rows, truth=truth, fraction=fr)
            except TaskrelInputError as exc:
                md += [f"_zoo vs {truth} at fraction {fr:g} not computed: {exc}_", ""]
                continue
            name = f"zoo_{truth}_f{fr:g}"
            zoo = replace(zoo, name=name)
            zoo.write(d)
            by = zoo.summary.get("by_estimator", {})
            table = [{"estimator": k, **v} for k, v in by.items()]
            summary["zoo"][f"{truth}@{fr:g}"] = by
            md += [f"### truth: {truth}, estimators on fraction {fr:g}", "",
                   md_table(table, ["estimator", "n_targets", "top1_hit_rate",
                                    "mean_regret", "max_regret", "mean_kendall_tau",
                                    "mean_weighted_tau_both",
                                    "mean_weighted_tau_by_truth"]), "",
                   f"Per target: `{name}.csv`.", ""]
    return md


def _cost_section(rows: Sequence[Mapping[str, Any]], d: Path) -> list[str]:
    """Section 5: seconds per cell (``cost.*``)."""
    from . import analysis as A

    cost = A.cost_table(rows)
    cost.write(d)
    return ["## 5. Cost", "", "Seconds per cell (feature extraction is cached and not "
            "included after the first cell of an (encoder, task) pair).", "",
            md_table(cost.rows), ""]


def _reference_finetune_section(config: Any, d: Path,
                                rf: Sequence[Mapping[str, Any]] | None,
                                error: str | None, summary: dict[str, Any]
                                ) -> list[str]:
    """Section 6: paper Fig. 4b from precomputed rows (``reference_finetune.*``)."""
    md = ["## 6. Reference fine-tuning (paper Fig. 4b)", ""]
    rf_enc = config.options.get("reference_finetune")
    if not rf_enc:
        return md + ["_Not run: set `options.reference_finetune = \"<image encoder>\"` "
                     "in the config._", ""]
    if error is not None:
        md += [f"_Failed: {error}_", ""]
    if not rf:
        return md
    atomic_write_text(d / "reference_finetune.csv", csv_text(rf, line_ending="\r\n"))
    _reference_finetune_png(rf, d / "reference_finetune.png")
    pairs = _rf_pairs(rf)
    summary["reference_finetune"] = pairs
    return md + [
        f"`{rf_enc}` fine-tuned end to end on the reference (its reference test "
        f"accuracy: {rf[0]['reference_finetune_accuracy']:.3f}); per target the "
        "bound and the probe's transfer loss (all target training rows, same tau "
        "rule) before and after. The paper's claim: every related target "
        "improves (both drop).", "",
        "![reference fine-tuning](reference_finetune.png)", "",
        md_table(pairs), ""]


def _headline(summary: Mapping[str, Any]) -> list[str]:
    """The headline bullets: task-relatedness's correlations and zoo picks, the bound."""
    head = []
    for c in summary["correlations"]:
        if c["estimator"] == "task_relatedness" and "pearson" in c:
            head.append(f"- task_relatedness vs {c['truth']} accuracy over {c['n']} cells: "
                        f"Pearson {c['pearson']:.3f} {_fmt(c.get('pearson_ci'))}, "
                        f"Spearman {c['spearman']:.3f} {_fmt(c.get('spearman_ci'))} "
                        "(negative = agrees: lower score, higher accuracy).")
    for key, by in summary["zoo"].items():
        if "task_relatedness" in by:
            z = by["task_relatedness"]
            best = min(by.items(), key=lambda kv: kv[1]["mean_regret"])
            head.append(f"- zoo selection ({key}): task_relatedness mean regret "
                        f"{z['mean_regret']:.3f}, top-1 {z['top1_hit_rate']:.2f}; lowest "
                        f"mean regret: {best[0]} ({best[1]['mean_regret']:.3f}).")
    n = summary["bound_cells"]
    head.append(f"- bound >= transfer loss in {n - summary['bound_violations']} of "
                f"{n} cells.")
    return head


def _run_section(rows: Sequence[Mapping[str, Any]], grid: Any, seconds: float | None,
                 t0: float, summary: dict[str, Any]) -> list[str]:
    """The run: cells computed and failed, cells without a value, wall time."""
    md: list[str] = []
    if grid is not None:
        md += [f"- cells: {grid.total} ({grid.computed} computed now, {grid.skipped} "
               f"from the store, {len(grid.failed)} failed)"]
        if getattr(grid, "stale", 0):
            md.append(f"  - {grid.stale} rows recomputed: the config changed what they "
                      "depend on (their digest differed)")
        if getattr(grid, "legacy", 0):
            md.append(f"  - {grid.legacy} rows kept without a check: written by an older "
                      "taskrel, they have no digest")
        for cell, msg in grid.failed[:20]:
            md.append(f"  - failed: {cell}: {msg[:200]}")
        summary["failed"] = [[str(c), m] for c, m in grid.failed]
    na = [r for r in rows if r["value"] is None]
    if na:
        why: dict[tuple[str, str], int] = defaultdict(int)
        for r in na:
            why[(r["estimator"], (r["extra"] or {}).get("not_applicable", "no value"))] += 1
        md += [f"- cells without a value: {len(na)} ("
               + "; ".join(f"{e}: {w} x{n}" for (e, w), n in why.items()) + ")"]
    if seconds is not None:
        md.append(f"- wall time of this run: {seconds:.0f} s (grid), plus "
                  f"{time.perf_counter() - t0:.0f} s analyses")
        summary["seconds"] = seconds
    cell_secs = sum(float(r.get("seconds") or 0) for r in rows)
    md.append(f"- summed cell seconds in the store: {cell_secs:.0f} s")
    stamps = sorted(str(r["timestamp"]) for r in rows if r.get("timestamp"))
    if stamps:
        span = (datetime.fromisoformat(stamps[-1])
                - datetime.fromisoformat(stamps[0])).total_seconds()
        md.append(f"- rows written from {stamps[0]} to {stamps[-1]} ({span / 60:.1f} min; "
                  "the first cell's feature extraction comes before the first row)")
        summary["store_span_seconds"] = span
    return md


def _provenance_section(config: Any, versions: Mapping[str, Any] | None,
                        summary: dict[str, Any]) -> list[str]:
    """Package versions and the exact config."""
    summary["versions"] = dict(versions or {})
    return ["", "### Package versions", "", "```",
            json.dumps(dict(versions or {}), indent=1), "```", "",
            "### Exact config", "", "```json",
            json.dumps(_config_dict(config), indent=1), "```", ""]


def _rf_pairs(rf: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    by: dict[str, dict[str, Mapping[str, Any]]] = defaultdict(dict)
    for r in rf:
        by[r["target"]][r["stage"]] = r
    out = []
    for t, st in by.items():
        a, b = st.get("pretrained"), st.get("reference-finetuned")
        if a is None or b is None:
            continue
        out.append({"target": t, "bound_before": a["bound"], "bound_after": b["bound"],
                    "loss_before": a["transfer_loss"], "loss_after": b["transfer_loss"],
                    "acc_before": a["probe_accuracy"], "acc_after": b["probe_accuracy"],
                    "bound_dropped": b["bound"] < a["bound"],
                    "loss_dropped": b["transfer_loss"] < a["transfer_loss"]})
    return out


def _reference_finetune_png(rf: Sequence[Mapping[str, Any]], path: Path) -> None:
    from matplotlib.figure import Figure

    pairs = _rf_pairs(rf)
    fig = Figure(figsize=(7, 3.5))
    axes = fig.subplots(1, 2)
    x = np.arange(len(pairs))
    for ax, key, title in ((axes[0], "bound", "task-relatedness bound"),
                           (axes[1], "loss", "probe transfer loss")):
        ax.bar(x - 0.2, [p[f"{key}_before"] for p in pairs], 0.4, label="pre-trained")
        ax.bar(x + 0.2, [p[f"{key}_after"] for p in pairs], 0.4,
               label="reference-fine-tuned")
        ax.set_xticks(x)
        ax.set_xticklabels([p["target"] for p in pairs], rotation=30, ha="right", fontsize=7)
        ax.set_ylabel("nats")
        ax.set_title(title, fontsize=9)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    tmp.replace(path)


def _vacuous(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per (estimator, fraction): cells, cells with bound > log K_T, and cells whose
    measured Lipschitz constant exceeds 10 x tau."""
    by: dict[tuple[str, float], list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        if r["estimator"].startswith("task_relatedness") and r["value"] is not None:
            by[(r["estimator"], float(r["fraction"]))].append(r)
    out = []
    for (est, fr), rs in sorted(by.items()):
        ex = [r["extra"] or {} for r in rs]
        out.append({
            "estimator": est, "fraction": fr, "cells": len(rs),
            "bound_above_log_K": sum(1 for r, e in zip(rs, ex)
                                     if e.get("trivial_bound") is not None
                                     and _bound(r) > e["trivial_bound"]),
            "lipschitz_over_10_tau": sum(1 for e in ex if e.get("lipschitz") and e.get("tau")
                                         and e["lipschitz"] > 10 * e["tau"]),
            "median_bound": float(np.median([_bound(r) for r in rs])),
        })
    return out


def _deviations(config: Any) -> list[str]:
    out = ["- Config description: " + " ".join(x.strip() for x in config.description.split("\n"))]
    o, ft = config.options, config.finetune
    out.append(f"- Small budgets to fit 2 CPU cores: at most {o.get('max_reference')} "
               f"reference, {o.get('max_target')} target training and {o.get('max_test')} "
               f"target test rows; fine-tuning recipe {ft}.")
    sizes = o.get("image_sizes") or {}
    if sizes or "image_size" in ft:
        per = ", ".join(f"{k} {v} px" for k, v in sorted(sizes.items()))
        rest = (f"; every other image encoder at {ft['image_size']} px"
                if "image_size" in ft else "")
        out.append(f"- Images are encoded at {per or 'the default size'}{rest} "
                   "(derived `<base>_on_<data>` encoders inherit their base's; the paper "
                   "uses the encoders' native sizes).")
    if config.quick:
        out.append(f"- Quick run: encoders {list(config.encoders)}, targets "
                   f"{[t.name for t in config.targets]}, fractions "
                   f"{list(config.fractions)}, seeds {list(config.seeds)} only; "
                   "correlations over so few cells have wide CIs.")
    out.append("- Task-relatedness uses taskrel's fast recipe (docs/theory.md), not the "
               "paper's full alternating optimisation; tau by taskrel's auto rule unless "
               "the config sets `options.tau`.")
    out.append("- OTCE has no auxiliary tasks to fit its weights (both 1); LEEP/NCE run "
               "only on encoders with a classification head.")
    if not config.options.get("reference_finetune"):
        out.append("- Reference fine-tuning (Fig. 4b) is not run for this config.")
    return out


#: Files or folders that mark the root of a project (its paths are written from there).
_PROJECT_MARKERS = (".git", "pyproject.toml")


def _portable_path(path: str | os.PathLike[str] | None) -> str | None:
    """``path`` as a committed report may show it: relative to the root of the project
    that holds it (the nearest folder above it with a ``.git`` or ``pyproject.toml``),
    else its file name alone; never an absolute path of the machine that wrote it.

    >>> _portable_path(None) is None
    True
    >>> _portable_path("/nowhere/at/all/suite.toml")
    'suite.toml'
    """
    if path is None:
        return None
    p = Path(path).expanduser().resolve()
    for root in p.parents:
        if any((root / m).exists() for m in _PROJECT_MARKERS):
            return p.relative_to(root).as_posix()
    return p.name


def _config_dict(config: Any) -> dict[str, Any]:
    return {"name": config.name, "quick": config.quick,
            "path": _portable_path(config.path),
            "reference": config.reference.to_dict(),
            "targets": [t.to_dict() for t in config.targets],
            "encoders": list(config.encoders), "estimators": list(config.estimators),
            "fractions": list(config.fractions), "seeds": list(config.seeds),
            "ground_truth": {"estimators": list(config.truth_estimators),
                             "fractions": list(config.truth_fractions),
                             "finetune_encoders": None if config.finetune_encoders is None
                             else list(config.finetune_encoders)},
            "finetune": dict(config.finetune), "options": dict(config.options)}


def _pivot(rows: Sequence[Mapping[str, Any]], r_key: str, c_key: str, v_key: str) -> str:
    cols = sorted({r[c_key] for r in rows})
    by: dict[Any, dict[Any, Any]] = defaultdict(dict)
    for r in rows:
        sd = r.get("std")
        v = r[v_key]
        by[r[r_key]][r[c_key]] = "-" if v is None or not math.isfinite(v) else (
            f"{v:.2f}" + (f" ± {sd:.2f}" if sd is not None and math.isfinite(sd) and sd > 0
                          else ""))
    head = "| " + r_key + " | " + " | ".join(f"{c:g}" for c in cols) + " |"
    lines = [head, "|" + "---|" * (len(cols) + 1)]
    for k, vals in by.items():
        lines.append(f"| {k} | " + " | ".join(vals.get(c, "-") for c in cols) + " |")
    return "\n".join(lines) + "\n"
