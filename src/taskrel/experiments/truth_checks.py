"""Checks of a benchmark's ground truth (issue 12): is it healthy and converged?

- :func:`reference_floor`: every ImageNet encoder's tuned logistic probe on the
  reference task itself must reach ``floor`` (0.80) accuracy;
- :func:`sanity_rule`: fine-tuned accuracy >= logistic-probe accuracy - ``margin``
  in at least ``share`` of the ImageNet-encoder cells (a fine-tuned model that loses to
  a linear probe is a bug of the benchmark, not a finding); the exceptions are listed;
- :func:`head_fallbacks`: fine-tuning cells that never beat their LP-FT head on
  validation (kept epoch 0), and among them those whose training diverged;
- :func:`winners`: by fine-tuned accuracy, which encoder is best for each target (a
  zoo whose best member never changes cannot test model selection);
- :func:`learning_curves_png`: the validation-accuracy curves of every fine-tuning
  cell, one panel per (encoder, target), one line per learning rate tried.

All take store rows (``ResultsStore.query()``) and average seeds first.

Examples
--------
>>> rows = [{"encoder": "a", "target": "t", "estimator": "finetune", "value": 0.9,
...          "seed": 0, "fraction": 1.0},
...         {"encoder": "a", "target": "t", "estimator": "logreg", "value": 0.95,
...          "seed": 0, "fraction": 1.0}]
>>> sanity_rule(rows, imagenet=["a"])["exceptions"][0]["gap"]
-0.05
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["IMAGENET_ENCODERS", "truth_table", "reference_floor", "sanity_rule", "winners",
           "head_fallbacks", "learning_curves_png"]

#: Encoders whose weights come from ImageNet (the floor and the sanity rule apply).
IMAGENET_ENCODERS = ("effnet_lite0", "effnet_lite1", "effnet_lite2",
                     "effnet_lite0_on_mnist5k", "effnet_lite0_b11")


def truth_table(rows: Sequence[Mapping[str, Any]], truth: str
                ) -> dict[tuple[str, str], float]:
    """``{(encoder, target): seed-mean value}`` of one truth at fraction 1.0."""
    acc: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in rows:
        if (r["estimator"] == truth and r.get("value") is not None
                and float(r.get("fraction", 1.0)) == 1.0):
            acc[(r["encoder"], r["target"])].append(float(r["value"]))
    return {k: float(np.mean(v)) for k, v in acc.items()}


def reference_floor(rows: Sequence[Mapping[str, Any]], *, floor: float = 0.80,
                    imagenet: Sequence[str] = IMAGENET_ENCODERS) -> dict[str, Any]:
    """The reference task's own logistic-probe accuracy per encoder, and whether every
    ImageNet encoder present reaches ``floor``."""
    lr = {e: v for (e, t), v in truth_table(rows, "logreg").items() if t == "reference"}
    checked = {e: v for e, v in lr.items() if e in imagenet}
    return {"floor": floor, "accuracy": lr,
            "below": sorted(e for e, v in checked.items() if v < floor),
            # None: no ImageNet encoder has a reference probe (e.g. a text suite)
            "holds": all(v >= floor for v in checked.values()) if checked else None}


def sanity_rule(rows: Sequence[Mapping[str, Any]], *, margin: float = 0.02,
                share: float = 0.90, imagenet: Sequence[str] = IMAGENET_ENCODERS
                ) -> dict[str, Any]:
    """Fine-tuning vs the tuned logistic probe on every (ImageNet encoder, target)
    pair that has both: the share with ``finetune >= logreg - margin`` and the
    exceptions (``gap = finetune - logreg``)."""
    ft, lr = truth_table(rows, "finetune"), truth_table(rows, "logreg")
    pairs = sorted(k for k in ft if k in lr and k[0] in imagenet)
    exc = [{"encoder": e, "target": t, "finetune": ft[(e, t)], "logreg": lr[(e, t)],
            "gap": round(ft[(e, t)] - lr[(e, t)], 4)}
           for e, t in pairs if ft[(e, t)] < lr[(e, t)] - margin]
    ok = len(pairs) - len(exc)
    frac = ok / len(pairs) if pairs else None
    return {"margin": margin, "required_share": share, "cells": len(pairs), "ok": ok,
            "share": frac, "holds": frac is not None and frac >= share, "exceptions": exc}


def head_fallbacks(rows: Sequence[Mapping[str, Any]], *, blowup: float = 10.0
                   ) -> list[dict[str, Any]]:
    """Fine-tuning cells (seed 0 or the lowest) whose kept epoch is 0: no epoch of any
    learning rate beat the LP-FT head on validation, so the reported accuracy is that of
    the logistic head on frozen features, not of a fine-tuned encoder. ``diverged``: the
    training loss after epoch 0 rose above ``blowup`` x max(epoch-0 loss, 0.1) at every
    rate tried (the encoder's updates wrecked the features), the benchmark's signature of
    a recipe that does not suit the encoder."""
    cells: dict[tuple[str, str], Mapping[str, Any]] = {}
    for r in sorted(rows, key=lambda r: r.get("seed", 0), reverse=True):
        rec = (r.get("extra") or {}).get("recipe") or {}
        if r["estimator"] == "finetune" and rec.get("curves"):
            cells[(r["encoder"], r["target"])] = rec
    out = []
    for (enc, tgt), rec in sorted(cells.items()):
        if rec.get("best_epoch") != 0:
            continue
        peaks = []
        for pts in rec["curves"].values():
            base = max(float(pts[0].get("train_loss") or 0.0), 0.1)
            later = [float(p["train_loss"]) for p in pts[1:] if p.get("train_loss") is not None]
            peaks.append(max(later) / base if later else 0.0)
        out.append({"encoder": enc, "target": tgt,
                    "max_loss_ratio": round(min(peaks), 1) if peaks else None,
                    "diverged": bool(peaks) and min(peaks) > blowup})
    return out


def winners(rows: Sequence[Mapping[str, Any]], truth: str = "finetune") -> dict[str, Any]:
    """Per target (not the reference), the encoder with the best ``truth``; how many
    distinct encoders win some target. Only *complete* targets count: those where every
    encoder that has ``truth`` on some target has it (a best-of-two on a half-computed
    column is no winner); the others are listed in ``partial``."""
    by_t: dict[str, dict[str, float]] = defaultdict(dict)
    for (e, t), v in truth_table(rows, truth).items():
        if t != "reference":
            by_t[t][e] = v
    encs = {e for d in by_t.values() for e in d}
    best = {t: max(sorted(d), key=lambda e: d[e]) for t, d in sorted(by_t.items())
            if len(d) >= 2 and set(d) == encs}
    partial = {t: len(d) for t, d in sorted(by_t.items()) if t not in best}
    return {"truth": truth, "best": best, "distinct": len(set(best.values())),
            "targets": len(best), "encoders": len(encs), "partial": partial}


def learning_curves_png(rows: Sequence[Mapping[str, Any]], path: str | Path) -> int:
    """One PNG with a panel per fine-tuning cell (seed 0 or the lowest seed): validation
    accuracy per epoch, one line per learning rate (the chosen one solid). Returns
    the number of panels (0: nothing written)."""
    from .._internal.serialize import atomic_write

    cells = {}
    for r in sorted(rows, key=lambda r: r.get("seed", 0), reverse=True):
        curves = ((r.get("extra") or {}).get("recipe") or {}).get("curves")
        if r["estimator"] == "finetune" and curves:
            cells[(r["encoder"], r["target"])] = r["extra"]["recipe"]
    if not cells:
        return 0
    from matplotlib.figure import Figure

    keys = sorted(cells)
    ncol = min(6, len(keys))
    nrow = -(-len(keys) // ncol)
    fig = Figure(figsize=(2.6 * ncol, 2.1 * nrow))
    axes = np.atleast_1d(fig.subplots(nrow, ncol, squeeze=False)).ravel()
    for ax, key in zip(axes, keys):
        rec = cells[key]
        for lr, curve in sorted(rec["curves"].items(), key=lambda kv: float(kv[0])):
            ep = [c["epoch"] for c in curve]
            acc = [c["val_accuracy"] for c in curve]
            chosen = float(lr) == float(rec["lr"])
            ax.plot(ep, acc, "-" if chosen else ":", marker="o", ms=2,
                    label=f"lr {float(lr):g}" + (" *" if chosen else ""))
        ax.axvline(rec["best_epoch"], color="grey", lw=0.5)
        ax.set_title(f"{key[0]}\n{key[1]}" + ("" if rec.get("converged") else " (cap)"),
                     fontsize=7)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=5)
    for ax in axes[len(keys):]:
        ax.set_visible(False)
    fig.supxlabel("epoch")
    fig.supylabel("validation accuracy")
    fig.tight_layout()
    atomic_write(Path(path), lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    return len(keys)
