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
    from ..io import atomic_write_json, load_task
    from ..scores import compute_score, get_score

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    specs = [get_score(m) for m in methods]  # fail fast on unknown names
    kw = {}
    if args.device is not None:
        check_device(args.device)  # fail fast, before loading anything
        kw["device"] = args.device
    task = load_task(args.task, require_labels=True)
    source = load_task(args.source, require_labels=True) if args.source else None
    rows: list[dict[str, Any]] = []
    for spec in specs:
        t0 = time.perf_counter()
        value = compute_score(spec.name, task, source=source, **kw)
        rows.append(dict(score=spec.name, value=value, direction=spec.direction,
                         higher_is_better=spec.higher_is_better,
                         seconds=round(time.perf_counter() - t0, 3)))
    w = max(len("score"), *(len(r["score"]) for r in rows))
    print(f"{'score':<{w}}  {'value':>12}  {'direction':<16}  seconds")
    for r in rows:
        print(f"{r['score']:<{w}}  {r['value']:>12.6g}  {r['direction']:<16}  "
              f"{r['seconds']:.2f}")
    if args.json:
        src_path = None if source is None else source.path
        atomic_write_json(args.json, dict(task=task.path, source=src_path,
                                          device=args.device, scores=rows))
        print(f"wrote {args.json}")
    return 0


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
