"""Is fine-tuning's ``probe_sd_floor`` active for an encoder? (Why stale cells may stand.)

    python experiments/sd_floor_check.py --suite text --encoder minilm_l3

The LP-FT head (``taskrel.features.finetune._probe_head``) gives weight 0 to a feature
whose sd over the training rows is below ``probe_sd_floor`` x the median sd. The text
suite added that floor (1e-3) after MiniLM-L3's fine-tuning cells had run, so their
digests are stale. If no feature of the encoder comes near the floor on any target, the
floor changes nothing for it and the stored cells are what the current recipe computes.
Prints, per fine-tuned target, the smallest sd / median sd of the encoder's raw
(fine-tuning) features over all of the target's training rows, and how many features lie
below 10 x the floor. The training split is 80 % of those rows, so a margin of orders of
magnitude is the evidence, not a value just above the floor.
"""

from __future__ import annotations

import argparse

import numpy as np


def main(argv: list[str] | None = None) -> int:
    import torch

    from taskrel.experiments.estimators import _text_module
    from taskrel.experiments.inputs import raw_rows, suite_dataset, suite_encoder
    from taskrel.experiments.reproduce import check_config, suite_config_path
    from taskrel.experiments.suite import REFERENCE_TARGET, load_config

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="text")
    ap.add_argument("--encoder", default="minilm_l3")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    c = check_config(load_config(suite_config_path(a.suite)))
    floor = float(c.finetune.get("probe_sd_floor", 0.0))
    enc = suite_encoder(c, a.encoder)
    targets = [t.name for t in c.targets
               if c.finetune_targets is None or t.name in c.finetune_targets]
    if c.reference_truths:
        targets.append(REFERENCE_TARGET)
    if suite_dataset(c.target(targets[0])).modality == "text":
        module, pre = _text_module(enc, int(c.finetune.get("max_tokens", 128)))
    else:
        module, pre = enc.torch_module(), enc.preprocess
    module.eval()
    print(f"{a.suite} / {a.encoder}: probe_sd_floor {floor:g}")
    for t in targets:
        ds = suite_dataset(c.target(t))
        key = "max_reference" if t == REFERENCE_TARGET else "max_target"
        xtr, *_ = raw_rows(ds, c.options.get(key), c.options.get("max_test"))
        with torch.no_grad():
            F = np.concatenate([module(pre(xtr[s:s + 128])).double().numpy()
                                for s in range(0, len(xtr), 128)])
        r = F.std(0) / np.median(F.std(0))
        print(f"  {t}: {len(xtr)} rows, min sd / median sd {r.min():.4f}, "
              f"{int((r < 10 * floor).sum())} features below 10 x the floor")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
