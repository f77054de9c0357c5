"""Which estimators should `taskrel rank` vote with? Measured, not chosen (issue 24).

    python experiments/select_default.py            # writes docs/results/default_selection.*

Reads the committed exports of every suite (``docs/results/<suite>/cells.csv`` and
``truth.csv``, fraction 1.0, seed means) and scores every candidate voter set:

- each single estimator, and every consensus of 2 or 3 estimators from the pool (the
  consensus is `taskrel rank`'s: per target, each member ranks the encoders with average
  ranks, the consensus is the mean rank; an encoder without every member's value is left
  out of that target);
- labelled candidates from the estimators that read the target's labels, label-free
  candidates (for ``--no-labels``) from those that read none;
- the static ranker (an encoder's mean truth on the other targets) beside them.

A candidate's score is view (i)'s weighted tau (``scipy.stats.weightedtau``, defaults)
per target, averaged over targets, then over the selection cells (suite, truth):
``SELECTION_CELLS``. The CI of the best candidates resamples targets within each suite
(1000 resamples, seeded). A consensus is kept as the default only if it beats each of its
members on that mean; otherwise the best single estimator is the default. The measured
best replaces `taskrel rank`'s current default (``ranking.DEFAULT_ESTIMATORS`` /
``DEFAULT_LABEL_FREE``) only when the paired bootstrap CI of their difference is above 0;
a difference inside the noise keeps the current default. Writes
``docs/results/default_selection.csv`` (every candidate) and ``.md`` (the top rows, the
verdict and the numbers the README quotes).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
#: (suite, truth) pairs the default is chosen on: the tuned probe and the end-to-end
#: truth of each suite (``transfer_acc`` on text: fine-tuning, or the probe for the
#: encoder that cannot be fine-tuned).
SELECTION_CELLS = (("vision", "logreg_acc"), ("vision", "finetune_acc"),
                   ("text", "logreg_acc"), ("text", "transfer_acc"),
                   ("population", "logreg_acc"), ("population", "finetune_acc"))
#: Which of a suite's cells are what ``taskrel rank`` computes under an estimator's name.
#: rank relates every target to one fixed reference (``ranking.DEFAULT_REFERENCES``), so on
#: the population suite, where ``task_relatedness`` reads each encoder's own source task
#: (the paper's design), the fixed-reference cells stand for rank's task-relatedness.
#: (OTCE and OT-NCE there also read the own source; they have no fixed-reference cells.)
RANK_ALIASES = {"population": {"task_relatedness_fixed": "task_relatedness",
                               "task_relatedness_unlabeled_fixed":
                                   "task_relatedness_unlabeled"}}
#: The largest consensus tried (every estimator, task-relatedness included, is a
#: candidate member, so the table says how each would do).
MAX_SIZE = 3


def _read(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def load(suite: str) -> tuple[dict, dict, list[str], list[str], dict[str, bool]]:
    """Seed-mean oriented matrices of a suite: ``est[name]`` and ``truth[name]`` are
    (encoders x targets) arrays (NaN where missing)."""
    from taskrel.experiments.views import _means, _transfer, TRUTH_SOURCES

    d = ROOT / "docs" / "results" / suite
    cells = [r for r in _read(d / "cells.csv") if float(r["fraction"]) == 1.0]
    alias = RANK_ALIASES.get(suite, {})
    if alias:
        cells = [{**r, "estimator": alias.get(r["estimator"], r["estimator"])}
                 for r in cells if r["estimator"] not in alias.values()]
    truth = _read(d / "truth.csv")
    hib = {r["estimator"]: r["higher_is_better"] == "True" for r in cells}
    est = _means(cells, "estimator", {e: 1.0 if h else -1.0 for e, h in hib.items()})
    tru = _means([{**r, "fraction": 1.0} for r in truth], "truth",
                 {t: 1.0 if TRUTH_SOURCES.get(t, ("", None, True))[2] else -1.0
                  for t in {r["truth"] for r in truth}})
    tr = _transfer(tru)
    if tr:
        tru[("transfer_acc", 1.0)] = tr
    encs = sorted({p[0] for v in (*est.values(), *tru.values()) for p in v})
    tgts = sorted({p[1] for v in (*est.values(), *tru.values()) for p in v})
    from taskrel.experiments.views import _matrix

    E = {name: _matrix(v, encs, tgts) for (name, _), v in est.items()}
    T = {name: _matrix(v, encs, tgts) for (name, _), v in tru.items()}
    return E, T, encs, tgts, hib


def consensus(mats: list[np.ndarray]) -> np.ndarray:
    """Minus the mean of the members' average ranks per target column (higher =
    better, as the views orient); NaN for an encoder any member lacks there."""
    from scipy.stats import rankdata

    out = np.full(mats[0].shape, np.nan)
    ok = np.all([np.isfinite(M) for M in mats], axis=0)
    for j in range(out.shape[1]):
        m = ok[:, j]
        if m.sum() == 0:
            continue
        ranks = [rankdata(-M[m, j], method="average") for M in mats]
        out[m, j] = -np.mean(ranks, axis=0)
    return out


def per_target_tau(E: np.ndarray, T: np.ndarray) -> np.ndarray:
    from taskrel.experiments.views import _per_target

    return _per_target(E, T)[0]["weighted_tau"]


def valid(r: dict, singles: dict[str, float]) -> bool:
    """A consensus must beat each of its members on the mean (a single always counts)."""
    ms = r["voters"].split("+")
    return len(ms) == 1 or all(r["mean_view_i"] > singles[m] for m in ms)


def decide(mine: list[dict], incumbent: str, boot, ci) -> tuple[dict, dict]:
    """The default of one mode from its candidate rows (``mine``, best mean first):
    the best *valid* candidate (:func:`valid`), which replaces ``incumbent`` (rank's
    current default, as ``+``-joined voters) only when the paired bootstrap CI of
    their difference is above 0. ``boot(voters)`` gives a candidate's paired draws,
    ``ci(draws)`` their 95 % interval. Returns the chosen row and the change record."""
    singles = {r["voters"]: r["mean_view_i"] for r in mine if r["size"] == 1}
    best = max((r for r in mine if valid(r, singles)),
               key=lambda r: np.nan_to_num(r["mean_view_i"], nan=-9))
    # The measured best replaces rank's current default only when it is better on
    # the paired bootstrap (CI of the difference above 0): a difference inside the
    # noise of 5-12 targets per suite is no reason to change what users get.
    inc = next((r for r in mine if r["voters"] == incumbent), None)
    change: dict = {"best": best["voters"], "incumbent": incumbent}
    if inc is not None and inc is not best and valid(inc, singles):
        inc_draws = boot(inc["voters"])
        change["diff"] = best["mean_view_i"] - inc["mean_view_i"]
        change["diff_ci"] = ci(boot(best["voters"]) - inc_draws)
        if change["diff_ci"][0] <= 0:
            best = inc
            inc["ci_low"], inc["ci_high"] = ci(inc_draws)
    change["default"] = best["voters"]
    return best, change


def main(argv: list[str] | None = None) -> int:
    from taskrel.experiments.views import _static, label_free

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--top", type=int, default=15, help="rows in the markdown tables")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "results",
                    help="folder of default_selection.csv/.md (default docs/results)")
    a = ap.parse_args(argv)
    data = {s: load(s) for s in {s for s, _ in SELECTION_CELLS}}
    common = set.intersection(*(set(d[0]) for d in data.values()))
    pools = {"labelled": sorted(e for e in common if not label_free(e)),
             "label-free": sorted(e for e in common if label_free(e))}
    rows, taus = [], {}
    for mode, pool in pools.items():
        cands = [c for k in range(1, MAX_SIZE + 1) for c in itertools.combinations(pool, k)]
        for c in cands + ([("static_ranker",)] if mode == "labelled" else []):
            per_cell = {}
            for s, t in SELECTION_CELLS:
                E, T, *_ = data[s]
                if t not in T:
                    sys.exit(f"select_default.py: {s} has no truth {t!r}")
                M = _static(T[t]) if c == ("static_ranker",) else consensus(
                    [E[e] for e in c])
                per_cell[(s, t)] = per_target_tau(M, T[t])
            taus[mode, c] = per_cell
            means = {k: float(np.nanmean(v)) if np.isfinite(v).any() else np.nan
                     for k, v in per_cell.items()}
            rows.append({"mode": mode, "voters": "+".join(c), "size": len(c),
                         "mean_view_i": float(np.mean(list(means.values()))),
                         **{f"{s}_{t}": means[s, t] for s, t in SELECTION_CELLS}})
    rows.sort(key=lambda r: (r["mode"], -np.nan_to_num(r["mean_view_i"], nan=-9)))

    def boot(mode: str, c: tuple[str, ...]) -> np.ndarray:
        """Bootstrap draws of the mean over cells: targets resampled within each suite
        (the same resampled targets for both truths of a suite, and for every
        candidate, so two candidates' draws are paired)."""
        draws = np.zeros(a.n_boot)
        by_suite = defaultdict(list)
        for (s, t), v in taus[mode, c].items():
            by_suite[s].append(v)
        n_cells = sum(len(v) for v in by_suite.values())
        for k, (s, vs) in enumerate(sorted(by_suite.items())):
            idx = np.random.default_rng([0, k]).integers(0, vs[0].size,
                                                         (a.n_boot, vs[0].size))
            for v in vs:
                with np.errstate(invalid="ignore"):
                    draws += np.nanmean(v[idx], axis=1) / n_cells
        return draws

    def ci(draws: np.ndarray) -> tuple[float, float]:
        lo, hi = np.percentile(draws, [2.5, 97.5])
        return float(lo), float(hi)

    from taskrel.ranking import DEFAULT_ESTIMATORS, DEFAULT_LABEL_FREE

    # rank's current defaults, as candidate names (label-free task-relatedness is the
    # registry's task_relatedness_unlabeled)
    incumbent = {"labelled": "+".join(sorted(DEFAULT_ESTIMATORS)),
                 "label-free": "+".join(sorted(
                     "task_relatedness_unlabeled" if e == "task_relatedness" else e
                     for e in DEFAULT_LABEL_FREE))}
    verdict, changes = {}, {}
    for mode in pools:
        mine = [r for r in rows if r["mode"] == mode and r["voters"] != "static_ranker"]
        for r in mine[:a.top]:
            r["ci_low"], r["ci_high"] = ci(boot(mode, tuple(r["voters"].split("+"))))
        verdict[mode], changes[mode] = decide(
            mine, incumbent[mode], lambda v, m=mode: boot(m, tuple(v.split("+"))), ci)
    # The winner of ~600 candidates is picked on the same numbers it is scored on, so
    # its score is optimistic. Out of suite: pick on the other suites, score on the held-out one.
    suites = sorted({s for s, _ in SELECTION_CELLS})
    held_out = []
    for mode in pools:
        mine = [r for r in rows if r["mode"] == mode and r["voters"] != "static_ranker"]
        for s in suites:
            def on(r, suite):
                return float(np.mean([r[f"{x}_{t}"] for x, t in SELECTION_CELLS
                                      if x == suite]))
            other = [x for x in suites if x != s]
            pick = max(mine, key=lambda r: np.nan_to_num(
                np.mean([on(r, x) for x in other]), nan=-9))
            held_out.append({"mode": mode, "held_out_suite": s, "picked_on": "+".join(other),
                             "voters": pick["voters"], "score_held_out": on(pick, s),
                             "default_held_out": on(verdict[mode], s)})
    cols = ["mode", "voters", "size", "mean_view_i", "ci_low", "ci_high",
            *[f"{s}_{t}" for s, t in SELECTION_CELLS]]
    from taskrel._internal.serialize import atomic_write_text, csv_text

    out = a.out
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "default_selection.csv",
                      csv_text([{k: r.get(k) for k in cols} for r in rows], cols))
    static = next(r for r in rows if r["voters"] == "static_ranker")
    md = ["# Which estimators `taskrel rank` votes with (measured)", "",
          "Generated by `python experiments/select_default.py` from the committed "
          "`docs/results/{vision,text,population}/cells.csv` and `truth.csv` (population: "
          "rank's fixed reference stands for task-relatedness, `RANK_ALIASES`). "
          "Score: view (i) "
          "weighted tau per target, mean over targets, then over "
          + ", ".join(f"{s} `{t}`" for s, t in SELECTION_CELLS)
          + ". A consensus is the mean of its members' average ranks, as `taskrel rank` "
          "computes it. 95 % CI: targets resampled within each suite. The static "
          f"ranker (ignores the target) scores {static['mean_view_i']:.3f} on the same "
          "mean.", ""]
    for mode in pools:
        v, ch = verdict[mode], changes[mode]
        if ch["best"] == ch["incumbent"]:
            why = "the measured best is rank's current default."
        elif "diff_ci" in ch:
            lo, hi = ch["diff_ci"]
            why = (f"measured best **{ch['best']}**, rank's current default "
                   f"**{ch['incumbent']}**; difference {ch['diff']:+.3f} "
                   f"[{lo:.3f}, {hi:.3f}] (paired bootstrap over targets): "
                   + ("above 0, so the default changes to the best." if lo > 0 else
                      "not above 0, so the current default stays."))
        else:
            why = (f"rank's current default **{ch['incumbent']}** is not a valid "
                   "candidate (a consensus that does not beat each member), so the best "
                   "replaces it.")
        md += [f"## {mode}", "",
               f"Default: **{v['voters']}** (mean {v['mean_view_i']:.3f}"
               + (f", CI [{v['ci_low']:.2f}, {v['ci_high']:.2f}]" if "ci_low" in v else "")
               + f"). Rule: {why}", "",
               "| voters | mean | CI | " + " | ".join(f"{s} {t}" for s, t in SELECTION_CELLS)
               + " |", "|---|---|---|" + "---|" * len(SELECTION_CELLS)]
        shown = [r for r in rows if r["mode"] == mode][:a.top]
        if mode == "labelled" and static not in shown:
            shown.append(static)
        for r in shown:
            ci = f"[{r['ci_low']:.2f}, {r['ci_high']:.2f}]" if "ci_low" in r else "-"
            md.append(f"| {r['voters']} | {r['mean_view_i']:.3f} | {ci} | " + " | ".join(
                f"{r[f'{s}_{t}']:.3f}" for s, t in SELECTION_CELLS) + " |")
        md.append("")
    md += ["## Out of suite", "",
           "The default above is picked on the numbers it is scored on. Picked on the "
           "other suites and scored on the held-out one (mean view (i) over that suite's "
           "two truths):", "",
           "| mode | picked on | its pick | score on the held-out suite | the default's "
           "score there |", "|---|---|---|---|---|"]
    md += [f"| {h['mode']} | {h['picked_on']} | {h['voters']} | {h['score_held_out']:.3f} "
           f"({h['held_out_suite']}) | {h['default_held_out']:.3f} |" for h in held_out]
    atomic_write_text(out / "default_selection.md", "\n".join(md) + "\n")
    print(json.dumps({m: {"voters": v["voters"], "mean_view_i": v["mean_view_i"],
                          **changes[m]} for m, v in verdict.items()}, indent=1))
    print(f"static ranker: {static['mean_view_i']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
