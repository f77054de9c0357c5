"""``taskrel reproduce``: run a suite end to end and write its report."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..exceptions import TaskrelInputError

__all__ = ["register"]


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from .._internal.validation import check_output_path
    from ..experiments.reproduce import (
        SUITES,
        check_config,
        run_suite,
        suite_config_path,
    )
    from ..experiments.suite import load_config

    check_output_path(args.out, "--out", kind="dir")
    if args.db:
        check_output_path(args.db, "--db")
    if args.threads < 0:
        raise TaskrelInputError(f"`--threads` must be >= 0; got {args.threads}")
    if args.num_cpus is not None and args.num_cpus < 1:
        raise TaskrelInputError(f"`--num-cpus` must be >= 1; got {args.num_cpus}")
    if args.config:
        configs = [load_config(args.config, quick=args.quick)]
    else:
        suites = SUITES if args.suite == "all" else (args.suite,)
        configs = [load_config(suite_config_path(s), quick=args.quick) for s in suites]
    checked = []
    for cfg in configs:
        if args.device:
            cfg = type(cfg)(**{**cfg.__dict__, "options": {**cfg.options,
                                                           "device": args.device}})
        checked.append(check_config(cfg))  # every config, before any cell runs
    for cfg in checked:
        db = args.db or str(Path("results") / f"{cfg.name}{'-quick' if cfg.quick else ''}"
                            ".sqlite")
        if args.db and len(configs) > 1:
            db = str(Path(args.db).with_suffix("")) + f"-{cfg.name}.sqlite"
        print(f"[{cfg.name}] grid -> {db}; report -> {Path(args.out) / cfg.name}")
        s = run_suite(cfg, db=db, out=args.out, executor=args.executor,
                      progress=not args.quiet, threads=args.threads,
                      executor_options=_executor_options(args),
                      report_only=args.report_only)
        if args.report_only:
            print(f"[{cfg.name}] report only: {s['missing_cells']} cells of the grid are "
                  "not in the store yet")
            if s.get("stale_cells"):
                print(f"[{cfg.name}] report only: {s['stale_cells']} stored cells are stale "
                      f"(computed under other inputs, reported as they are): "
                      f"{s['stale_by_estimator']}")
        print(f"[{cfg.name}] wrote {Path(args.out) / cfg.name / 'report.md'}; "
              f"bound held in every cell: {s.get('bound_held_everywhere')}; "
              f"failed cells: {len(s.get('failed', []))}")
    return 0


def _executor_options(args: argparse.Namespace) -> dict[str, Any]:
    if args.executor != "ray":
        if args.address is not None or args.num_cpus is not None:
            raise TaskrelInputError(
                "`--address` and `--num-cpus` need `--executor ray`; got executor "
                f"{args.executor!r}")
        return {}
    opts: dict[str, Any] = {"progress": False}
    if args.address is not None:
        opts["address"] = args.address
    if args.num_cpus is not None:
        opts["num_cpus"] = args.num_cpus
    return opts


def register(sub: Any) -> None:
    """Add ``reproduce`` to the ``taskrel`` subcommands."""
    p = sub.add_parser(
        "reproduce",
        help="run a paper-style suite (grid, analyses, report) end to end",
        description="Run experiments/<suite>.toml through the results store (resumable), "
        "then the decomposition, correlation, few-label sweep, zoo and cost analyses; "
        "write <out>/<suite>/report.md with CSV, JSON and PNG files.")
    p.add_argument("--suite", choices=("vision", "text", "population", "all"),
                   default=None)
    p.add_argument("--config", help="a TOML config of your own instead of --suite")
    p.add_argument("--quick", action="store_true", help="use the config's [quick] section")
    p.add_argument("--executor", choices=("local", "ray"), default="local")
    p.add_argument("--address", default=None,
                   help="Ray cluster to join (e.g. auto, ray://host:10001); default: start "
                   "a local one")
    p.add_argument("--num-cpus", type=int, default=None,
                   help="CPUs of the local Ray instance (default: all)")
    p.add_argument("--db", help="SQLite results store (default results/<suite>.sqlite)")
    p.add_argument("--out", default="docs/results", help="report folder (default docs/results)")
    p.add_argument("--device", help="override options.device (auto | cpu | cuda)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch and BLAS threads (default 1; 0 leaves them alone)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--report-only", action="store_true",
                   help="compute nothing: render the report from the rows --db holds "
                   "(a suite run in stages with experiments/stage.py)")

    def run(args: argparse.Namespace) -> int:
        if bool(args.suite) == bool(args.config):
            raise TaskrelInputError(
                f"give exactly one of --suite or --config; got suite={args.suite!r}, "
                f"config={args.config!r}")
        return _cmd_reproduce(args)

    p.set_defaults(func=run)
