"""Run the task-relatedness ablation on a suite's cells (resumable), or write its report.

    python experiments/ablation.py --suite vision                  # every run, resumable
    python experiments/ablation.py --suite vision --runs tau=auto,tau=paper
    python experiments/ablation.py --suite vision --report         # ablation.csv + plots

Runs (``taskrel.experiments.ablation.RUNS``) are stored in ``results/ablation_<suite>.sqlite``,
one row per (encoder, target, run), keyed by a digest of the run's settings and of the
suite cell; a rerun computes only what is missing or stale. ``recipe=paper`` runs only on
the cells ``experiments/ablation.toml`` names. ``--report`` reads the store and the suite's
exported ``cells.csv`` / ``truth.csv`` / ``targets.csv`` (``docs/results/<suite>/``) and
writes ``ablation.csv``, ``ablation_views.json`` and plots next to them.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
import tomllib

ROOT = Path(__file__).resolve().parents[1]


def _cells(config, settings, runs):
    from taskrel.experiments.ablation import RUNS
    from taskrel.experiments.store import Cell

    cells = []
    for name in runs:
        spec = RUNS[name]
        encs, tgts = config.encoders, [t.name for t in config.targets]
        if spec.recipe == "paper":
            encs, tgts = settings["paper_encoders"], settings["paper_targets"]
        if spec.reference == "union" and not settings.get("union"):
            continue
        for t in tgts:
            for e in encs:
                cells.append(Cell(e, config.reference.name, t, 1.0, 0, name))
    return cells


def _spec(settings, name):
    from dataclasses import replace

    from taskrel.experiments.ablation import RUNS

    spec = RUNS[name]
    if spec.recipe == "paper":
        spec = replace(spec, max_iter=int(settings.get("paper_steps", 2001)))
    return spec


def run(a, config, settings) -> None:
    import torch

    from taskrel.experiments.ablation import RUNS, features_digest, run_cell, run_digest
    from taskrel.experiments.store import ResultsStore
    from taskrel.experiments.suite import run_grid, run_in_chunks

    torch.set_num_threads(a.threads)
    names = a.runs.split(",") if a.runs else list(RUNS)
    bad = [n for n in names if n not in RUNS]
    if bad:
        sys.exit(f"ablation.py: error: --runs names unknown runs {bad}; known: {list(RUNS)}")
    cells = [c for c in _cells(config, settings, names)
             if (not a.encoders or c.encoder in a.encoders.split(","))
             and (not a.targets or c.target in a.targets.split(","))]

    def digest(c):
        return run_digest(_spec(settings, c.estimator), features_digest(config, c))

    def fn(c):
        return run_cell(config, _spec(settings, c.estimator), c, settings.get("union"))

    db = ROOT / "results" / f"ablation_{config.name}.sqlite"
    deadline = None if a.max_minutes is None else time.time() + 60 * a.max_minutes
    with ResultsStore(db) as store:
        todo, stale, _ = store.missing({c: digest(c) for c in cells})
        print(f"ablation: {len(cells)} cells, {len(todo)} to compute "
              f"({len(stale)} stale)", flush=True)
        run_in_chunks(todo, lambda chunk: run_grid(chunk, fn, store, executor="local",
                                                   progress=False, digest=digest),
                      deadline=deadline, label="ablation")


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def fresh_rows(store, config, settings) -> list[dict]:
    """The store's rows whose digest is the one the current code and settings give
    their cell: a row computed by an older engine (``RELATEDNESS_REVISION``) or other
    settings never reaches a report. Prints how many were left out, per run."""
    from collections import Counter

    from taskrel.experiments.ablation import RUNS, features_digest, run_digest
    from taskrel.experiments.store import Cell

    want = {c: run_digest(_spec(settings, c.estimator), features_digest(config, c))
            for c in _cells(config, settings, list(RUNS))}
    rows, stale = [], Counter()
    for r in store.query():
        c = Cell(r["encoder"], r["reference"], r["target"], float(r["fraction"]),
                 int(r["seed"]), r["estimator"])
        if want.get(c) is not None and r.get("digest") == want[c]:
            rows.append(r)
        else:
            stale[r["estimator"]] += 1
    missing = len(want) - len(rows)
    if stale or missing:
        print(f"report: {len(rows)} fresh rows; left out {sum(stale.values())} stale or "
              f"unknown rows ({dict(sorted(stale.items()))}); {missing} runs not yet "
              "computed", flush=True)
    return rows


def report(a, config, settings) -> None:
    from taskrel._internal.serialize import atomic_write_text, csv_text
    from taskrel.experiments.ablation import (
        ABLATION_COLUMNS,
        ablation_rows,
        variant_values,
    )
    from taskrel.experiments.store import ResultsStore
    from taskrel.experiments.views import compute_views

    out = ROOT / "docs" / "results" / config.name
    targets = _read_csv(out / "targets.csv")
    K = {r["target"]: int(r["n_classes"]) for r in targets}
    with ResultsStore(ROOT / "results" / f"ablation_{config.name}.sqlite") as store:
        rows = fresh_rows(store, config, settings)
    variants = [r for r in variant_values(rows, K) if _keep(r["estimator"])]
    base = [r for r in _read_csv(out / "cells.csv") if float(r["fraction"]) == 1.0]
    for r in base:
        r["estimator"] = f"baseline:{r['estimator']}"
    variants += same_cells(variants + base, "recipe=paper")
    truth = _read_csv(out / "truth.csv")
    t0 = time.time()
    views = compute_views(variants + base, truth, targets, n_boot=a.n_boot, seed=0)
    print(f"views in {time.time() - t0:.0f} s", flush=True)
    rows_out = ablation_rows(views)
    atomic_write_text(out / "ablation.csv", csv_text(rows_out, ABLATION_COLUMNS))
    atomic_write_text(out / "ablation_views.json",
                      json.dumps(views, indent=1, allow_nan=False) + "\n")
    md = [f"# Task-relatedness ablation: {config.name}", "",
          "Generated by `python experiments/ablation.py --suite "
          f"{config.name} --report` from `ablation.csv`; every variant oriented lower = "
          "better, baselines as in `views.json`. 95 % bootstrap CIs: (i) over targets, "
          "(ii) mean over encoders of the per-encoder correlation, (iii) two-way cluster "
          "bootstrap over encoders and targets.", ""]
    md += _verdict(views)
    for truth in ("finetune_acc", "transfer_acc", "logreg_acc"):
        if any(truth in v for v in views["model_selection"].values()):
            md += _headline(views, truth)
    for truth in ("finetune_acc", "transfer_acc", "logreg_acc"):
        if any(truth in v for v in views["model_selection"].values()):
            _plot(views, truth, out / f"ablation_{truth}.png")
            md += _table(views, truth)
    atomic_write_text(out / "ablation_table.md", "\n".join(md) + "\n")
    _transport_plot(rows, K, out / "ablation_transport.png")
    n_var = len({r["estimator"] for r in variants})
    print(f"wrote {out / 'ablation.csv'} ({len(rows_out)} rows, {n_var} variants, "
          f"{len({r['estimator'] for r in base})} baselines)")


#: The full-grid variants and baselines that are also scored on the cells of a run that
#: covers only some of them (the paper recipe), so that run is compared on equal cells.
SAME_CELLS = ("reference_loss@tau=auto", "bound@tau=auto", "transformed_loss@tau=auto",
              "baseline:knn_accuracy", "baseline:sfda")
SUBSET_SEP = "~"


def _is_baseline(name: str) -> bool:
    """A baseline estimator on the whole grid (not task-relatedness, not a same-cells
    copy)."""
    return (name.startswith("baseline:") and not name.startswith("baseline:task_rel")
            and SUBSET_SEP not in name)


def same_cells(rows: list[dict], run: str) -> list[dict]:
    """Copies of the SAME_CELLS rows restricted to the (encoder, target) cells where
    ``run`` has a value, named ``<variant>~<run> cells``: the comparison on equal cells
    for a run that covers only part of the grid."""
    cells = {(r["encoder"], r["target"]) for r in rows
             if r["estimator"].split("@", 1)[-1] == run}
    return [dict(r, estimator=f"{r['estimator']}{SUBSET_SEP}{run} cells") for r in rows
            if r["estimator"] in SAME_CELLS and (r["encoder"], r["target"]) in cells]


#: The variants the plots show (when present), in this order, then the best baselines.
PLOTTED = ("bound@tau=auto", "bound@tau=paper", "bound@tau_nonvacuous", "bound@tau_tightest",
           "bound@recipe=paper", "bound_reference_lip@recipe=paper", "bound@pca=256",
           "bound@pca=none", "bound@reference=union", "bound_clipped@tau=auto",
           "bound_certified@tau=auto", "lipschitz_w1@tau=auto", "reference_loss@tau=auto",
           "reference_loss@tau=paper", "transport_cost@tau=auto", "transformed_loss@tau=auto",
           "transformed_loss@tau=paper", "transformed_loss@reference=union",
           "bound@tau=auto/label-free", "reference_loss@tau=auto/label-free",
           "transformed_loss@tau=auto/label-free")
_VIEW_STATS = (("model_selection", "weighted_tau", "(i) per target across the zoo: weighted tau"),
               ("within_encoder", "spearman", "(ii) within encoder: Spearman"),
               ("pooled", "spearman", "(iii) pooled: Spearman"))


def _transport_plot(rows, K, path: Path) -> None:
    """Realised transport cost against its worst case L x W1, per cell (tau=auto,
    labelled), with the bound's vacuity line log K_T - (ref. loss + H) per cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from taskrel.experiments.ablation import REPORTS

    pts = [(REPORTS["lipschitz_w1"](r["extra"], K[r["target"]]),
            REPORTS["transport_cost"](r["extra"], K[r["target"]]))
           for r in rows if r["estimator"] == "tau=auto" and r["value"] is not None]
    pts = [(a, b) for a, b in pts if a is not None and b is not None]
    if not pts:
        return
    x, y = np.array(pts).T
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.scatter(x, y, s=12)
    hi = float(max(x.max(), y.max()))
    ax.plot([0, hi], [0, hi], color="gray", lw=0.8, label="realised = worst case")
    ax.set_xlabel("worst case: Lipschitz x W1 (nats)")
    ax.set_ylabel("realised: transformed loss - (ref. loss + H) (nats)")
    ax.set_title(f"transport cost per cell, tau=auto ({len(pts)} cells)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(path)
    plt.close(fig)


def _fmt(s) -> str:
    if not s or s.get("value") is None:
        return "-"
    lo, hi = s.get("ci_low"), s.get("ci_high")
    ci = "" if lo is None or hi is None else f" [{lo:.2f}, {hi:.2f}]"
    return f"{s['value']:.2f}{ci}"


#: The variants the issue's acceptance names, in the headline table.
HEADLINE = (("τ auto (bound)", "bound@tau=auto"), ("τ paper 0.02 (bound)", "bound@tau=paper"),
            ("non-vacuous τ rule (bound)", "bound@tau_nonvacuous"),
            ("tightest τ of the grid (bound)", "bound@tau_tightest"),
            ("recipe paper, target-coordinate L (bound)", "bound@recipe=paper"),
            ("recipe paper, reference-coordinate L", "bound_reference_lip@recipe=paper"),
            ("union reference (bound)", "bound@reference=union"),
            ("certified Lipschitz (bound)", "bound_certified@tau=auto"),
            ("clipped at log K_T", "bound_clipped@tau=auto"),
            ("L x W1 alone", "lipschitz_w1@tau=auto"),
            ("transformed-classifier loss", "transformed_loss@tau=auto"),
            ("realised transport cost", "transport_cost@tau=auto"),
            ("**reference-loss term alone (default score)**", "reference_loss@tau=auto"),
            ("reference-loss term, union reference", "reference_loss@reference=union"),
            ("label-free bound", "bound@tau=auto/label-free"),
            ("label-free reference-loss term (default score)", "reference_loss@tau=auto/label-free"),
            ("label-free transformed loss (vs pseudo-labels)",
             "transformed_loss@tau=auto/label-free"))


def _headline(views, truth: str) -> list[str]:
    """The acceptance variants and, per column, the best baseline."""
    cols = (("model_selection", "weighted_tau"), ("model_selection", "regret"),
            ("within_encoder", "spearman"), ("pooled", "spearman"))

    def get(est, view, stat):
        return views[view].get(est, {}).get(truth, {}).get(stat)

    out = [f"## Headline against `{truth}`", "",
           "| variant | name | (i) weighted τ | (i) regret | (ii) Spearman | (iii) Spearman |",
           "|---|---|---|---|---|---|"]
    for label, name in HEADLINE:
        if name in views["model_selection"]:
            out.append(f"| {label} | `{name}` | "
                       + " | ".join(_fmt(get(name, v, st)) for v, st in cols) + " |")
    best = []
    for v, st in cols:
        sign = -1.0 if st == "regret" else 1.0
        cands = [(e, get(e, v, st)) for e in views[v] if _is_baseline(e)]
        cands = [(e, s) for e, s in cands if s and s.get("value") is not None]
        if cands:
            e, s = max(cands, key=lambda es: sign * es[1]["value"])
            best.append(f"{e.split(':', 1)[1]} {_fmt(s)}")
        else:
            best.append("-")
    out.append("| best baseline (per column) | | " + " | ".join(best) + " |")
    return out + [""]


#: The truths the report compares against, with their short names.
_TRUTHS = {"logreg_acc": "probe", "finetune_acc": "FT", "transfer_acc": "FT+fixed"}
#: The library's default score, compared with every baseline in `_verdict`.
DEFAULT_VARIANT = "reference_loss@tau=auto"
#: Beats / trails when ahead / behind by at least this much (point estimates).
MARGIN = 0.1


def _verdict(views) -> list[str]:
    """The default score against every baseline, per view and truth: the baseline's value
    and B / M / T (the default is ahead by >= MARGIN, within it, behind by >= MARGIN)."""
    cols = [(truth, view, stat) for truth in _TRUTHS for view, stat, _ in _VIEW_STATS]

    def val(est, truth, view, stat):
        s = views[view].get(est, {}).get(truth, {}).get(stat) or {}
        return s.get("value")

    cols = [c for c in cols if val(DEFAULT_VARIANT, *c) is not None]
    if not cols:
        return []
    short = {"model_selection": "(i)", "within_encoder": "(ii)", "pooled": "(iii)"}
    head = [f"{short[v]} {_TRUTHS[t]}" for t, v, _ in cols]
    mine = [val(DEFAULT_VARIANT, *c) for c in cols]
    out = [f"## The default score (`{DEFAULT_VARIANT}`) against each baseline", "",
           "Statistics: (i) weighted tau, (ii) mean within-encoder Spearman, (iii) pooled "
           "Spearman; probe = tuned logistic probe (`logreg_acc`), FT = fine-tuning "
           "(`finetune_acc`), FT+fixed = fine-tuning with the fixed encoders' probes "
           f"(`transfer_acc`, where the zoo has fixed encoders). B / M / T: the default is ahead by >= {MARGIN} / within "
           f"{MARGIN} / behind by >= {MARGIN} (point estimates; the CIs are in the tables "
           "below).", "",
           "| baseline | " + " | ".join(head) + " |", "|---|" + "---|" * len(cols),
           "| **task-relatedness (default score)** | "
           + " | ".join(f"**{m:.2f}**" for m in mine) + " |"]
    bases = [e for e in views["model_selection"] if _is_baseline(e)]
    bases.sort(key=lambda e: -(val(e, *cols[0]) if val(e, *cols[0]) is not None else -9.0))
    counts = {"B": 0, "M": 0, "T": 0}
    for e in bases:
        cells = []
        for c, m in zip(cols, mine):
            b = val(e, *c)
            if b is None:
                cells.append("-")
                continue
            mark = "B" if m - b >= MARGIN else "T" if b - m >= MARGIN else "M"
            counts[mark] += 1
            cells.append(f"{b:.2f} {mark}")
        out.append(f"| {e.split(':', 1)[1]} | " + " | ".join(cells) + " |")
    out += ["", f"Over all cells: beats {counts['B']}, matches {counts['M']}, "
            f"trails {counts['T']}.", ""]
    return out


def _table(views, truth: str) -> list[str]:
    """A markdown table of every variant and baseline against ``truth``, best view (i)
    first."""
    cols = (("model_selection", "weighted_tau"), ("model_selection", "regret"),
            ("within_encoder", "spearman"), ("pooled", "spearman"))

    def get(est, view, stat):
        return views[view].get(est, {}).get(truth, {}).get(stat)

    ests = sorted(views["model_selection"], key=lambda e: -((get(
        e, "model_selection", "weighted_tau") or {}).get("value") or -9.0))
    # The most targets any variant is scored on (the paper recipe runs on fewer cells).
    n = max((views["model_selection"][e].get(truth, {}).get("n_targets") or 0
             for e in ests), default=0)
    out = [f"## Against `{truth}` (up to {n} targets with this truth)", "",
           "| variant | (i) weighted τ | (i) regret | (ii) Spearman | (iii) Spearman |",
           "|---|---|---|---|---|"]
    for e in ests:
        if all(get(e, v, st) is None or get(e, v, st).get("value") is None
               for v, st in cols):
            continue
        out.append(f"| {e} | " + " | ".join(_fmt(get(e, v, st)) for v, st in cols) + " |")
    return out + [""]


def _plot(views, truth: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ms = views["model_selection"]

    def val(view, est, stat):
        s = views[view].get(est, {}).get(truth, {}).get(stat) or {}
        return s.get("value"), s.get("ci_low"), s.get("ci_high")

    base = sorted((e for e in ms if e.startswith("baseline:") and SUBSET_SEP not in e
                   and val("model_selection", e, "weighted_tau")[0] is not None),
                  key=lambda e: -val("model_selection", e, "weighted_tau")[0])[:4]
    names = [v for v in PLOTTED if v in ms] + base
    fig, axes = plt.subplots(1, 3, figsize=(15, 0.32 * len(names) + 1.5), sharey=True)
    y = np.arange(len(names))[::-1]
    for ax, (view, stat, title) in zip(axes, _VIEW_STATS):
        v = np.array([np.nan if val(view, n, stat)[0] is None else val(view, n, stat)[0]
                      for n in names], dtype=float)
        lo = np.array([np.nan if val(view, n, stat)[1] is None else val(view, n, stat)[1]
                       for n in names], dtype=float)
        hi = np.array([np.nan if val(view, n, stat)[2] is None else val(view, n, stat)[2]
                       for n in names], dtype=float)
        colors = ["tab:gray" if n.startswith("baseline:") else "tab:blue" for n in names]
        ax.barh(y, v, color=colors)
        ax.errorbar(v, y, xerr=[np.nan_to_num(v - lo), np.nan_to_num(hi - v)], fmt="none",
                    ecolor="black", lw=0.8)
        ax.axvline(0, color="black", lw=0.5)
        ax.set_title(title, fontsize=9)
        ax.set_xlim(-1, 1)
    axes[0].set_yticks(y)
    axes[0].set_yticklabels(names, fontsize=7)
    fig.suptitle(f"task-relatedness variants (blue) and the best baselines (gray) "
                 f"against {truth}; bars: 95% bootstrap CI", fontsize=10)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(path)
    plt.close(fig)


#: Reports kept for every run; the others only for the default runs (tau=auto).
_MAIN_REPORTS = ("bound", "reference_loss", "transformed_loss")


def _keep(variant: str) -> bool:
    rep, run = variant.split("@", 1)
    return rep in _MAIN_REPORTS or run.split("/")[0] in ("tau=auto", "recipe=paper")


#: The cells of the selection: (suite, truth) where fine-tuning or the probe is measured;
#: text's fine-tuning truth is transfer_acc (its fixed encoders are never fine-tuned).
SELECTION_CELLS = (("vision", "logreg_acc"), ("vision", "finetune_acc"),
                   ("text", "logreg_acc"), ("text", "transfer_acc"))


def select(a) -> None:
    """Rank every variant (and baseline) present in both suites by the views that matter
    to users: the mean over SELECTION_CELLS of view (i) weighted tau and of view (ii)
    Spearman, and their average. Writes docs/results/ablation_selection.{csv,md}."""
    from taskrel._internal.serialize import atomic_write_text, csv_text

    out = ROOT / "docs" / "results"
    views = {s: json.loads((out / s / "ablation_views.json").read_text())
             for s in ("vision", "text")}

    def get(suite, view, est, truth, stat):
        return ((views[suite][view].get(est, {}).get(truth, {}).get(stat)) or {}).get("value")

    def n_targets(suite, est, truth):
        return views[suite]["model_selection"].get(est, {}).get(truth, {}).get("n_targets")

    # A variant scored on fewer targets than the grid has (the paper recipe's cells) is
    # not comparable with the rest: it is ranked apart, beside the full-grid variants
    # restricted to the same cells (SAME_CELLS).
    full = {(s, t): max((n_targets(s, e, t) or 0) for e in views[s]["model_selection"])
            for s, t in SELECTION_CELLS}
    rows = []
    for est in sorted(set(views["vision"]["model_selection"])
                      & set(views["text"]["model_selection"])):
        i = [get(s, "model_selection", est, t, "weighted_tau") for s, t in SELECTION_CELLS]
        ii = [get(s, "within_encoder", est, t, "spearman") for s, t in SELECTION_CELLS]
        if any(v is None for v in i + ii):
            continue
        row = {"variant": est, "view_i": float(np.mean(i)), "view_ii": float(np.mean(ii))}
        row["both"] = (row["view_i"] + row["view_ii"]) / 2
        row["cells"] = ("grid" if all(n_targets(s, est, t) == full[s, t]
                                      for s, t in SELECTION_CELLS) else "subset")
        row.update({f"i_{s}_{t}": v for (s, t), v in zip(SELECTION_CELLS, i)})
        row.update({f"ii_{s}_{t}": v for (s, t), v in zip(SELECTION_CELLS, ii)})
        rows.append(row)
    rows.sort(key=lambda r: (r["cells"] != "grid", -r["both"]))
    cols = list(rows[0]) if rows else ["variant"]
    atomic_write_text(out / "ablation_selection.csv", csv_text(rows, cols))
    md = ["# Which task-relatedness variant ranks best (both suites)", "",
          "Generated by `python experiments/ablation.py --select` from "
          "`docs/results/{vision,text}/ablation_views.json`. Per variant: the mean over "
          + ", ".join(f"{s} {t}" for s, t in SELECTION_CELLS)
          + " of view (i) weighted tau and of view (ii) within-encoder Spearman, and "
          "their average (`both`); baselines (`baseline:`) for scale. Variants without "
          "a value in one of these columns are left out.", "",
          "## On the whole grid", "",
          "| rank | variant | (i) mean | (ii) mean | both |", "|---|---|---|---|---|"]
    grid = [r for r in rows if r["cells"] == "grid"]
    md += [f"| {k} | `{r['variant']}` | {r['view_i']:.2f} | {r['view_ii']:.2f} | "
           f"{r['both']:.2f} |" for k, r in enumerate(grid, 1)]
    sub = [r for r in rows if r["cells"] == "subset"]
    if sub:
        md += ["", "## On a subset of the cells (not comparable with the grid)", "",
               "Runs that cover only some cells (the paper recipe: 3 encoders x 3 targets "
               "per suite), next to full-grid variants and baselines restricted to the "
               f"same cells (`<name>{SUBSET_SEP}<run> cells`). With 3 encoders per "
               "target and 3 targets per encoder every statistic takes a few values "
               "only (a Spearman over 3 targets is one of -1, -0.5, 0.5, 1).", "",
               "| variant | (i) mean | (ii) mean | both |", "|---|---|---|---|"]
        md += [f"| `{r['variant']}` | {r['view_i']:.2f} | {r['view_ii']:.2f} | "
               f"{r['both']:.2f} |" for r in sub]
    atomic_write_text(out / "ablation_selection.md", "\n".join(md) + "\n")
    best = next((r for r in grid if not r["variant"].startswith("baseline:")), None)
    print(f"wrote {out / 'ablation_selection.csv'} ({len(rows)} rows); best variant: "
          f"{best and best['variant']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="vision")
    ap.add_argument("--runs", default=None, help="comma-separated run names (default all)")
    ap.add_argument("--encoders", default=None, help="comma-separated subset")
    ap.add_argument("--targets", default=None, help="comma-separated subset")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-minutes", type=float, default=None)
    ap.add_argument("--report", action="store_true")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--select", action="store_true",
                    help="rank the variants over both suites' reports (no --suite)")
    a = ap.parse_args()
    if a.select:
        return select(a)
    from taskrel.experiments.reproduce import check_config, suite_config_path
    from taskrel.experiments.suite import load_config

    config = check_config(load_config(suite_config_path(a.suite)))
    with open(ROOT / "experiments" / "ablation.toml", "rb") as f:
        settings = tomllib.load(f).get(config.name)
    if settings is None:
        sys.exit(f"ablation.py: error: experiments/ablation.toml has no [{config.name}]")
    (report if a.report else run)(a, config, settings)


if __name__ == "__main__":
    main()
