"""The summary tables of docs/results/README.md, from the committed views.json files.

    python experiments/results_tables.py [--suites population]  # prints the markdown tables

One table per suite: every estimator and the static ranker in the field's three views
against the suite's tuned logistic probe and its end-to-end truth, with 95 % CIs, and
view (i)'s comparison with the static ranker (the paired difference's verdict).
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUITES = (("vision", ("logreg_acc", "finetune_acc")), ("text", ("logreg_acc", "transfer_acc")),
          ("population", ("logreg_acc", "finetune_acc")))


def _ci(s: dict | None) -> str:
    if not s or s.get("value") is None:
        return "-"
    if s.get("ci_low") is None:
        return f"{s['value']:.2f}"
    return f"{s['value']:.2f} [{s['ci_low']:.2f}, {s['ci_high']:.2f}]"


def table(suite: str, truths: tuple[str, ...]) -> str:
    v = json.loads((ROOT / "docs" / "results" / suite / "views.json").read_text())
    head = ["estimator"]
    for t in truths:
        head += [f"(i) τw {t}", f"vs static {t}", f"(ii) Spearman {t}",
                 f"(iii) Spearman {t}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    ests = sorted(v["model_selection"], key=lambda e: (e == "static_ranker", e))
    for e in ests:
        row = [f"**{e}**" if e == "static_ranker" else e]
        for t in truths:
            ms = v["model_selection"][e].get(t) or {}
            d = ms.get("weighted_tau_vs_static")
            row += [_ci(ms.get("weighted_tau")),
                    "-" if not d or d.get("value") is None else
                    f"{d['value']:+.2f} {ms.get('beats_static')}",
                    _ci(((v["within_encoder"].get(e) or {}).get(t) or {}).get("spearman")),
                    _ci(((v["pooled"].get(e) or {}).get(t) or {}).get("spearman"))]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suites", default=",".join(s for s, _ in SUITES))
    want = ap.parse_args(argv).suites.split(",")
    for suite, truths in SUITES:
        if suite not in want:
            continue
        print(f"#### {suite}\n")
        print(table(suite, truths))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
