"""``taskrel score`` and ``taskrel scores``: transferability estimators from the CLI."""

from __future__ import annotations

import argparse
import time
from typing import Any

__all__ = ["register"]


def _cmd_scores(args: argparse.Namespace) -> int:
    from .._internal.devices import check_device
    from ..scores import get_score, list_scores

    dev = str(check_device(args.device)) if args.device else None
    names = list_scores()
    width = max(len(n) for n in names)
    for name in names:
        spec = get_score(name)
        arrow = "+" if spec.higher_is_better else "-"
        where = (dev if spec.gpu else "cpu") if dev else ("gpu" if spec.gpu else "cpu")
        print(f"{name:<{width}}  {arrow}  {where:<6}  {spec.summary}  "
              f"[{', '.join(spec.inputs)}]")
    print("(+ higher is better, - lower is better; " + (
        f"the device each score runs on with --device {args.device})" if dev else
        "gpu: has a torch path, takes --device; cpu: CPU only)"))
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    from .._internal.devices import check_device
    from .._internal.validation import check_output_path
    from ..exceptions import TaskrelInputError
    from ..io import atomic_write_json, check_task, load_task
    from ..scores import check_score_inputs, compute_score, get_score

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods:
        raise TaskrelInputError(
            f"`METHOD`: give one or more score names separated by commas (see "
            f"`taskrel scores`); got {args.methods!r}")
    try:
        specs = [get_score(m) for m in methods]  # fail fast on unknown names
    except TaskrelInputError as exc:
        raise TaskrelInputError(f"`METHOD`: {exc}") from None
    kw = {}
    if args.device is not None:
        try:
            check_device(args.device)  # fail fast, before loading anything
        except TaskrelInputError as exc:
            raise TaskrelInputError(f"`--device`: {exc}") from None
        kw["device"] = args.device
    if args.json:
        check_output_path(args.json, "--json")
    task = load_task(args.task, require_labels=True)
    check_task(task, "TASK", require_labels=True)
    source = load_task(args.source, require_labels=True) if args.source else None
    if source is not None:
        check_task(source, "--source", require_labels=True)
        readers = [s.name for s in specs if "source_task" in s.inputs]
        d_s, d_t = source.features.shape[1], task.features.shape[1]
        if readers and d_s != d_t:
            raise TaskrelInputError(
                f"`--source` and `TASK` must have the same number of features for "
                f"{', '.join(readers)}: {d_s} vs {d_t} ({args.source!r} vs "
                f"{args.task!r})")
    for spec in specs:
        check_score_inputs(spec.name, task, source=source)
    rows = [_one_score(spec, task, source, kw, compute_score) for spec in specs]
    w = max(len("score"), *(len(r["score"]) for r in rows))
    print(f"{'score':<{w}}  {'value':>12}  {'direction':<16}  seconds")
    for r in rows:
        value = "-" if r["value"] is None else f"{r['value']:.6g}"
        print(f"{r['score']:<{w}}  {value:>12}  {r['direction']:<16}  "
              f"{r['seconds']:.2f}" + (f"  ({r['reason']})" if r["value"] is None else ""))
    if args.json:
        src_path = None if source is None else source.path
        atomic_write_json(args.json, dict(task=task.path, source=src_path,
                                          device=args.device, scores=rows))
        print(f"wrote {args.json}")
    return 0


def _one_score(spec: Any, task: Any, source: Any, kw: dict[str, Any],
               compute: Any) -> dict[str, Any]:
    """One row of the table; a score that cannot give a finite value on these
    (already validated) inputs gets ``value`` None and the reason."""
    from ..exceptions import TaskrelInputError

    t0 = time.perf_counter()
    reason = None
    try:
        value: float | None = compute(spec.name, task, source=source, **kw)
    except TaskrelInputError as exc:
        value, reason = None, str(exc)
    row = dict(score=spec.name, value=value, direction=spec.direction,
               higher_is_better=spec.higher_is_better,
               seconds=round(time.perf_counter() - t0, 3))
    if reason is not None:
        row["reason"] = reason
    return row


def register(subparsers: Any) -> None:
    """Add the ``score`` and ``scores`` subcommands to the ``taskrel`` parser."""
    s = subparsers.add_parser(
        "score",
        help="transferability scores of a task file (LogME, LEEP, ...)",
        description="Compute registered transferability scores on a task file's train "
        "arrays and print them with their direction. `taskrel scores` lists the names.",
    )
    s.add_argument("methods", metavar="METHOD[,METHOD...]",
                   help="comma-separated score names, e.g. logme,leep,h_score")
    s.add_argument("task", metavar="TASK.npz",
                   help="task file (features, labels[, source_probs])")
    s.add_argument("--source", metavar="REF.npz",
                   help="reference task for otce, ot_nce and task_relatedness")
    s.add_argument("--json", metavar="OUT.json", help="also write the table as JSON")
    s.add_argument("--device", metavar="DEVICE",
                   help="cpu, auto, cuda or cuda:N for the scores with a torch path "
                   "(default: each score's own, cpu; task_relatedness: auto); the "
                   "others (see `taskrel scores`) run on the CPU whatever it says")
    s.set_defaults(func=_cmd_score)

    ls = subparsers.add_parser("scores", help="list the registered scores",
                               description="One line per registered score: direction, "
                               "whether it runs on a GPU, summary, inputs.")
    ls.add_argument("--device", metavar="DEVICE",
                    help="show the device each score would run on with this --device")
    ls.set_defaults(func=_cmd_scores)
