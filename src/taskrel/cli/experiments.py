"""CLI: ``taskrel results export|views`` and ``taskrel analyze ...`` over a results store."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..exceptions import TaskrelInputError

__all__ = ["register", "ANALYSES"]

ANALYSES = ("correlation", "zoo", "sweep", "decomposition", "cost")


def _open(db: str) -> Any:
    from ..experiments.store import ResultsStore

    if Path(db).is_dir():
        raise TaskrelInputError(f"`DB` must be a results database file; {db!r} is a folder")
    if not Path(db).is_file():
        raise TaskrelInputError(f"`DB`: results database {db!r} does not exist")
    try:
        return ResultsStore(db, readonly=True)
    except TaskrelInputError as exc:
        raise TaskrelInputError(f"`DB`: {exc}") from None


def _truth_fraction(text: str) -> float | None:
    if text == "matched":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a number in (0, 1] or 'matched'; got {text!r}") from None


def _cmd_export(args: argparse.Namespace) -> int:
    from .._internal.validation import check_output_path

    if Path(args.out).suffix.lower() not in (".csv", ".parquet", ".pq"):
        raise TaskrelInputError(f"`OUT` must end in .csv or .parquet; got {args.out!r}")
    check_output_path(args.out, "OUT")
    with _open(args.db) as store:
        n = store.export(args.out)
    print(f"wrote {n} rows to {args.out}")
    return 0


def _cmd_views(args: argparse.Namespace) -> int:
    from .._internal.validation import check_output_path, check_positive, check_seed
    from ..experiments import load_config
    from ..experiments.views import suite_classes, write_views

    check_output_path(args.out, "--out", kind="dir")
    check_seed(args.seed, "--seed")
    check_positive(args.n_boot, "--n-boot", integer=True)
    config = load_config(args.config) if args.config else None
    with _open(args.db) as store:
        rows = store.query()
    if not rows:
        raise TaskrelInputError(f"results database {args.db!r} has no rows")
    k = suite_classes(config, rows, load=args.load_datasets) if config else {}
    views = write_views(rows, args.out, n_classes=k, orientation=_orientation(args),
                        n_boot=args.n_boot, seed=args.seed)
    print("view (i) weighted tau, mean over targets:")
    for e, by in views["model_selection"].items():
        vals = {t: s["weighted_tau"]["value"] for t, s in by.items()}
        print(f"  {e:28s} " + "  ".join(
            f"{t} {'-' if v is None else f'{v:+.3f}'}" for t, v in vals.items()))
    print(f"wrote cells.csv, truth.csv, targets.csv and views.json to {args.out}")
    return 0


def _orientation(args: argparse.Namespace) -> dict[str, bool]:
    o = {n: False for n in args.lower_is_better or []}
    o.update({n: True for n in args.higher_is_better or []})
    return o


def _analyze(args: argparse.Namespace) -> Any:
    from .._internal.validation import check_output_path, check_positive, check_seed
    from ..experiments import analysis as A

    check_output_path(args.out, "--out", kind="dir")
    check_seed(args.seed, "--seed")
    check_positive(args.n_boot, "--n-boot", integer=True)
    if not 0 < args.fraction <= 1:
        raise TaskrelInputError(f"`--fraction` must be in (0, 1]; got {args.fraction!r}")
    if args.truth_fraction is not None and not 0 < args.truth_fraction <= 1:
        raise TaskrelInputError(
            f"`--truth-fraction` must be in (0, 1] or 'matched'; got {args.truth_fraction!r}")
    with _open(args.db) as store:
        rows = store.query()
    if not rows:
        raise TaskrelInputError(f"results database {args.db!r} has no rows")
    o = _orientation(args)
    kind = args.analysis
    if kind == "correlation":
        pairs = A.pair_with_truth(rows, args.estimator, truth=args.truth,
                                  truth_fraction=args.truth_fraction,
                                  fraction=args.fraction)
        if args.encoder:
            pairs = [p for p in pairs if p["encoder"] == args.encoder]
        if len(pairs) < 3:
            raise TaskrelInputError(
                f"--estimator {args.estimator!r} has {len(pairs)} cells with "
                f"{args.truth!r} truth at fraction {args.fraction}; need 3 or more"
            )
        return A.correlation(
            [p["value"] for p in pairs], [p["truth"] for p in pairs],
            n_boot=args.n_boot, seed=args.seed, xlabel=args.estimator,
            ylabel=f"{args.truth} accuracy",
            labels=[f"{p['encoder']}/{p['target']}/s{p['seed']}" for p in pairs])
    if kind == "zoo":
        return A.zoo_selection_from_rows(rows, truth=args.truth, fraction=args.fraction,
                                         estimators=args.estimators, orientation=o)
    if kind == "sweep":
        return A.few_label_sweep(rows, truth=args.truth, truth_fraction=args.truth_fraction,
                                 method=args.method, estimators=args.estimators,
                                 orientation=o)
    if kind == "decomposition":
        rel = [r for r in rows if r["estimator"] == args.estimator
               and abs(r["fraction"] - args.fraction) < 1e-12
               and (args.encoder is None or r["encoder"] == args.encoder)]
        encs = sorted({r["encoder"] for r in rel})
        if not rel:
            raise TaskrelInputError(
                f"no {args.estimator!r} rows at fraction {args.fraction}"
                + (f" for encoder {args.encoder!r}" if args.encoder else ""))
        if len(encs) > 1:
            raise TaskrelInputError(
                f"--encoder is required when the store has several encoders: {encs}")
        rel = [r for r in rel if r["seed"] == min(x["seed"] for x in rel)]
        probe = {r["target"]: r["extra"].get("loss") for r in rows
                 if r["estimator"] == "linear_probe" and r["encoder"] == encs[0]
                 and r["seed"] == rel[0]["seed"]}
        results = [{"target": r["target"], **r["extra"]} for r in rel]
        return A.decomposition_plot(results, {t: v for t, v in probe.items()
                                              if v is not None})
    return A.cost_table(rows)


def _cmd_analyze(args: argparse.Namespace) -> int:
    res = _analyze(args)
    paths = res.write(args.out)
    print(json.dumps(res.summary, indent=2, default=str)[:4000])
    for k, p in paths.items():
        print(f"wrote {k}: {p}")
    return 0


def register(sub: Any) -> None:
    """Add ``results`` and ``analyze`` to the ``taskrel`` subcommands."""
    r = sub.add_parser("results", help="results store: export rows, the three views")
    rs = r.add_subparsers(dest="results_command", required=True)
    e = rs.add_parser("export", help="write every row of DB to CSV or Parquet",
                      description="Write every row of a results database to OUT "
                      "(.csv, or .parquet with pyarrow installed).")
    e.add_argument("db", help="results database (SQLite)")
    e.add_argument("out", help="OUT.csv or OUT.parquet")
    e.set_defaults(func=_cmd_export)
    v = rs.add_parser(
        "views", help="per-cell exports and the field's three views of DB",
        description="Write cells.csv, truth.csv, targets.csv and views.json (model "
        "selection per target, within an encoder, pooled; with bootstrap CIs) for the "
        "rows of DB into --out.")
    v.add_argument("db", help="results database (SQLite)")
    v.add_argument("--out", required=True, help="output folder")
    v.add_argument("--config", help="the suite's TOML config (class counts per target "
                   "for the normalised truth)")
    v.add_argument("--load-datasets", dest="load_datasets", action="store_true",
                   help="load the config's datasets for class counts the config "
                   "does not state")
    v.add_argument("--n-boot", dest="n_boot", type=int, default=1000)
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--lower-is-better", dest="lower_is_better", nargs="+", metavar="NAME")
    v.add_argument("--higher-is-better", dest="higher_is_better", nargs="+",
                   metavar="NAME")
    v.set_defaults(func=_cmd_views)

    a = sub.add_parser(
        "analyze", help="analyses of a results store (CSV, JSON and PNG)",
        description="correlation: estimator vs ground truth with bootstrap CIs; "
        "zoo: model selection per target; sweep: correlation per fraction of target "
        "data; decomposition: the bound's terms per target; cost: seconds per cell.")
    a.add_argument("analysis", choices=ANALYSES)
    a.add_argument("db", help="results database (SQLite)")
    a.add_argument("--out", required=True, help="output folder")
    a.add_argument("--estimator", default="task_relatedness",
                   help="estimator for correlation/decomposition (default task_relatedness)")
    a.add_argument("--estimators", nargs="+", help="zoo/sweep: only these estimators")
    a.add_argument("--truth", default="finetune",
                   help="ground-truth estimator name: finetune (default) or linear_probe")
    a.add_argument("--fraction", type=float, default=1.0,
                   help="fraction of target data of the estimator rows (default 1.0)")
    a.add_argument("--truth-fraction", dest="truth_fraction", type=_truth_fraction,
                   default=1.0, help="fraction of the ground-truth rows (default 1.0), or "
                   "'matched': the estimator row's own fraction and seed")
    a.add_argument("--encoder", help="correlation/decomposition: only this encoder")
    a.add_argument("--method", choices=("spearman", "pearson"), default="spearman")
    a.add_argument("--n-boot", dest="n_boot", type=int, default=1000)
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--lower-is-better", dest="lower_is_better", nargs="+", metavar="NAME",
                   help="estimators whose lower values predict better transfer")
    a.add_argument("--higher-is-better", dest="higher_is_better", nargs="+",
                   metavar="NAME")
    a.set_defaults(func=_cmd_analyze)
