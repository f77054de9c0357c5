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
