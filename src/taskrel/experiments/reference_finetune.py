"""Paper Fig. 4b: fine-tuning the encoder on the reference task makes every related
target better, and task-relatedness sees it.

:func:`reference_finetune` computes the rows; :func:`taskrel.experiments.report.write_report`
renders them (``reference_finetune.csv``, ``.png`` and a section of ``report.md``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..exceptions import TaskrelInputError
from .inputs import pca, raw_rows, suite_dataset, suite_encoder
from .suite import ExperimentConfig

__all__ = ["reference_finetune", "try_reference_finetune"]


def reference_finetune(config: ExperimentConfig, encoder: str, *, seed: int = 0
                       ) -> list[dict[str, Any]]:
    """Bound and transferability per target, before and after fine-tuning ``encoder``
    end to end on the reference task.

    The encoder is fine-tuned on the reference's training rows (``max_reference``)
    with the config's ``[finetune]`` recipe; both encoders then encode the reference
    and every target (same rows as the grid, same ``feature_dim`` projection fitted
    on each encoder's own reference features), and task-relatedness (all target
    training rows) and the linear probe (same tau) are computed for each.

    Returns
    -------
    list of dict
        One row per (target, stage) with ``stage`` in {"pretrained", "reference-finetuned"}.
    """
    from ..features.finetune import finetune

    enc = suite_encoder(config, encoder)
    ref_ds = suite_dataset(config.reference)
    if ref_ds.modality != "image":
        raise TaskrelInputError(
            f"`encoder`: reference fine-tuning is built for image encoders; got {encoder!r}")
    cap_r = config.options.get("max_reference", None)
    xr, yr, xr_te, yr_te = raw_rows(ref_ds, cap_r, cap_r)
    kw = {k: v for k, v in config.finetune.items() if k not in ("image_size", "max_tokens")}
    ft = finetune(enc.torch_module(), enc.preprocess, xr, yr, xr_te, yr_te, seed=seed,
                  device="cpu", return_module=True, **kw)
    modules = {"pretrained": enc.torch_module(), "reference-finetuned": ft.module}
    rows = []
    for stage, mod in modules.items():
        for row in _stage_rows(config, enc, mod, (xr, yr, xr_te, yr_te), seed):
            rows.append({"encoder": encoder, "stage": stage, **row,
                         "reference_finetune_accuracy": float(ft.test_accuracy)})
    return rows


def try_reference_finetune(config: ExperimentConfig
                           ) -> tuple[list[dict[str, Any]] | None, str | None]:
    """:func:`reference_finetune` of ``options.reference_finetune``, for the report.

    Returns ``(rows, None)``; ``(None, None)`` when the option is not set; and
    ``([], "<exception type>: <message>")`` when it failed (the report says what
    failed instead of losing the grid's results).
    """
    encoder = config.options.get("reference_finetune")
    if not encoder:
        return None, None
    try:
        return reference_finetune(config, encoder), None
    except Exception as exc:  # noqa: BLE001 - the report says what failed
        return [], f"{type(exc).__name__}: {exc}"


def _stage_rows(config: ExperimentConfig, enc: Any, mod: Any, ref_rows: tuple[Any, ...],
                seed: int) -> list[dict[str, Any]]:
    """Bound and probe per target of the features of one module (one stage)."""
    from ..features.finetune import linear_probe_cell
    from ..relatedness import resolve_tau, task_relatedness

    xr, yr, xr_te, yr_te = ref_rows
    Fr, Fr_te = (_encode_module(mod, enc.preprocess, x) for x in (xr, xr_te))
    k = config.options.get("feature_dim", None)
    if k is not None and int(k) < Fr.shape[1]:
        mean, comps = pca(Fr, int(k))
    else:
        mean, comps = np.zeros(Fr.shape[1]), np.eye(Fr.shape[1])
    Zr, Zr_te = (Fr - mean) @ comps, (Fr_te - mean) @ comps
    tau_v = float(resolve_tau(config.options.get("tau", "auto"), Zr, yr,
                              name="options.tau")[0])
    rows = []
    for spec in config.targets:
        xt, yt, xt_te, yt_te = raw_rows(suite_dataset(spec),
                                        config.options.get("max_target", None),
                                        config.options.get("max_test", None))
        Zt = (_encode_module(mod, enc.preprocess, xt) - mean) @ comps
        Zt_te = (_encode_module(mod, enc.preprocess, xt_te) - mean) @ comps
        r = task_relatedness(Zr, yr, Zt, yt, reference_test_features=Zr_te,
                             reference_test_labels=yr_te, tau=tau_v, seed=seed,
                             device="cpu")
        p = linear_probe_cell(Zt, yt, Zt_te, yt_te, tau=tau_v, seed=seed, device="cpu")
        rows.append({"target": spec.name, "bound": float(r.bound),
                     "reweighted_reference_loss": float(r.reweighted_reference_loss),
                     "label_mismatch": float(r.label_mismatch),
                     "lipschitz_x_w1": float(r.lipschitz * r.distribution_mismatch),
                     "transfer_loss": float(p["extra"]["loss"]),
                     "probe_accuracy": float(p["value"])})
    return rows


def _encode_module(module: Any, preprocess: Any, x: Any, batch_size: int = 256
                   ) -> np.ndarray:
    """Features of ``x`` through ``module`` (eval mode, no gradients, float64)."""
    import torch

    out = []
    module.eval()
    with torch.no_grad():
        for s in range(0, len(x), batch_size):
            f = module(preprocess(x[s:s + batch_size]))
            out.append(f.flatten(1).numpy().astype(np.float64))
    return np.concatenate(out)
