"""``taskrel rank``: which of my encoders for my data, and why (:func:`taskrel.rank`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["register", "print_ranking"]


def _cell(v: Any, r: Any) -> str:
    """A value and its (average) rank: ``0.91 (#1)``, ``0.5 (#1.5)``."""
    if v is None:
        return "-"
    return f"{v:.3g} (#{r:g})" if r is not None else f"{v:.3g}"


def _place(r: dict[str, Any]) -> str:
    """``2``, or ``=2`` for encoders tied on consensus and lead rank."""
    return f"={r['position']}" if r.get("tied_with") else str(r["position"])


def _consensus(r: dict[str, Any], n_voters: int) -> str:
    """``1.50``; ``2.00 (1/2)`` when fewer voters rank it; ``-`` when none."""
    c = r["consensus_rank"]
    if c is None:
        return "-"
    votes = r.get("votes", n_voters)
    return f"{c:.2f}" + (f" ({votes}/{n_voters})" if votes < n_voters else "")


def print_ranking(ranking: Any) -> None:
    """The ranked table, the "why" lines, the legend and the notes."""
    est = list(ranking.estimators)
    head = ["#", "encoder", "consensus"] + est + ["ref.loss", "labels", "L x W1"]
    lines = []
    for r in ranking.rows:
        t = r.get("terms") or {}
        lines.append([_place(r), r["encoder"], _consensus(r, len(ranking.voters))]
                     + [_cell(r["values"][e], r["ranks"].get(e)) for e in est]
                     + [_cell(t.get(k), None) for k in
                        ("reweighted_reference_loss", "label_mismatch", "lipschitz_x_w1")])
    w = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(head)]
    tgt, ref = ranking.target, ranking.reference
    print(f"target {tgt['name']} ({tgt['modality']}, {tgt['rows']} training rows, "
          f"{tgt['classes']} classes); reference {ref['name']} ({ref['rows']} rows)")
    print("  ".join(h.ljust(w[i]) if i < 2 else h.rjust(w[i]) for i, h in enumerate(head)))
    for line in lines:
        print("  ".join(c.ljust(w[i]) if i < 2 else c.rjust(w[i])
                        for i, c in enumerate(line)))
    print("\nwhy:")
    for r in ranking.rows:
        print(f"  {_place(r)}. {r['encoder']}: {r['why']}")
    print("\nlegend:")
    for line in ranking.legend():
        print(f"  {line}")
    for r in ranking.rows:
        if r.get("error"):  # said once, by the notes below
            continue
        for e, why in r["not_computed"].items():
            print(f"  not computed: {e} for {r['encoder']}: {why}")
    for r in ranking.rows:
        for w in r.get("warnings", []):
            print(f"  warning: {r['encoder']}: {w}")
    for n in ranking.notes:
        print(f"  note: {n}")
    src = "from the ranking cache" if ranking.from_cache else "computed"
    print(f"({src} in {ranking.seconds:.1f} s)")


def _cmd_rank(args: argparse.Namespace) -> int:
    from .._internal.serialize import atomic_write_json, atomic_write_text, csv_text
    from ..exceptions import TaskrelInputError
    from ..features.encoders import encoder_from_json
    from ..ranking import plot_ranking, rank

    # Output paths are checked before any work, not after minutes of encoding.
    for opt in ("json", "csv"):
        p = getattr(args, opt)
        if p is not None and Path(p).is_dir():
            raise TaskrelInputError(f"`--{opt}` must be a file path; {p!r} is a folder")
    if args.out is not None and Path(args.out).exists() and not Path(args.out).is_dir():
        raise TaskrelInputError(f"`--out` must be a folder; {args.out!r} is a file")
    common = dict(estimators=args.estimators, balanced=args.balanced,
                  label_col=args.label_col, max_reference=args.max_reference,
                  max_target=args.max_target, feature_dim=args.feature_dim,
                  seed=args.seed, device=args.device, progress=not args.quiet)
    if args.features is not None:
        if args.zoo is not None:
            raise TaskrelInputError("`--zoo` does not go with --features (the files are "
                                    "the candidates)")
        ranking = rank(**_features_inputs(args), **common)
    else:
        encoders = _encoders_input(args)
        for opt in ("names", "labels"):
            if getattr(args, opt) is not None:
                raise TaskrelInputError(f"`--{opt}` goes with --features")
        ranking = rank(args.target, encoders, reference=args.reference,
                       labels=not args.no_labels, text_col=args.text_col,
                       image_size=args.image_size or None,
                       skip_unreadable=args.skip_unreadable,
                       encoder_options=encoder_from_json(args.encoder_options)
                       if args.encoder_options else None, **common)
    print_ranking(ranking)
    written = []
    if args.json:
        atomic_write_json(args.json, ranking.to_dict())
        written.append(args.json)
    if args.csv:
        atomic_write_text(args.csv, csv_text(_flat(ranking)))
        written.append(args.csv)
    if args.out:
        out = Path(args.out)
        atomic_write_json(out / "ranking.json", ranking.to_dict())
        atomic_write_text(out / "ranking.csv", csv_text(_flat(ranking)))
        written += [str(out / "ranking.json"), str(out / "ranking.csv")]
        written += [str(p) for p in plot_ranking(ranking, out)]
    if written:
        print("wrote " + ", ".join(written))
    return 0


def _encoders_input(args: argparse.Namespace) -> Any:
    """The candidates: ``--encoders`` (a string of specs) or ``--zoo`` (a TOML file's
    specs), exactly one of them, with a TARGET."""
    from ..exceptions import TaskrelInputError
    from ..features.encoders.specs import load_zoo

    if args.encoders is not None and args.zoo is not None:
        raise TaskrelInputError("give the candidates with --encoders or --zoo, not both")
    if args.target in (None, "-") or not (args.encoders or args.zoo):
        raise TaskrelInputError(
            "give a TARGET and --encoders, or --features FILE,FILE,... (precomputed "
            "embeddings, one file per candidate); --zoo FILE may replace --encoders")
    return load_zoo(args.zoo) if args.zoo is not None else args.encoders


def _features_inputs(args: argparse.Namespace) -> dict[str, Any]:
    """``rank``'s ``features`` and ``labels`` from ``--features``, ``--names`` and
    ``--labels`` (checked: no TARGET, encoders or --reference beside them)."""
    from ..exceptions import TaskrelInputError
    from ..features.precomputed import read_labels

    if args.target not in (None, "-"):
        raise TaskrelInputError(
            f"with --features the target rows come from the files; drop TARGET "
            f"{args.target!r} (or pass -)")
    for opt in ("encoders", "reference"):
        if getattr(args, opt) is not None:
            raise TaskrelInputError(
                f"`--{opt}` does not go with --features (the files hold each candidate's "
                "features" + (", and their reference rows as reference_features / "
                "reference_labels)" if opt == "reference" else ")"))
    paths = [q.strip() for q in args.features.split(",")]
    features: Any = paths
    if args.names is not None:
        names = [q.strip() for q in args.names.split(",")]
        if len(names) != len(paths) or "" in names or len(set(names)) != len(names):
            raise TaskrelInputError(
                f"`--names` must give {len(paths)} distinct names, one per --features "
                f"file; got {args.names!r}")
        features = dict(zip(names, paths))
    if args.labels is not None and args.no_labels:
        raise TaskrelInputError("`--labels` and `--no-labels` contradict each other")
    labels = read_labels(args.labels) if args.labels is not None else not args.no_labels
    return {"features": features, "labels": labels}


def _flat(ranking: Any) -> list[dict[str, Any]]:
    rows = []
    for r in ranking.rows:
        row = {"position": r["position"], "encoder": r["encoder"],
               "consensus_rank": r["consensus_rank"], "votes": r.get("votes"),
               "tied_with": ";".join(r.get("tied_with", [])),
               "error": r.get("error")}
        if "image_size" in r:
            row["image_size"] = r["image_size"]
        for e in ranking.estimators:
            row[e] = r["values"][e]
            row[f"{e}_rank"] = r["ranks"].get(e)
        row.update({f"tr_{k}": v for k, v in (r.get("terms") or {}).items()})
        row["why"] = r["why"]
        rows.append(row)
    return rows


def register(sub: Any) -> None:
    """Add ``rank`` to the ``taskrel`` subcommands."""
    from ..ranking import DEFAULT_ESTIMATORS, DEFAULT_LABEL_FREE

    r = sub.add_parser(
        "rank", help="rank candidate encoders for your data, and say why",
        description="Which of my encoders should I fine-tune on this data, and why?\n"
        "Extracts features (cached), computes the estimators and task-relatedness\n"
        "against a reference task, and prints a ranked table with a consensus rank\n"
        "and a one-line reason per encoder. With --features, ranks embeddings you\n"
        "already have (one file per candidate) instead of running encoders.",
        epilog="examples:\n"
        "  taskrel rank my_images/ --encoders effnet_lite0,effnet_lite1\n"
        "  taskrel rank my_images/ --encoders \"timm:resnet50[weights=a.pth],"
        "timm:resnet50[weights=b.pth]\"\n"
        "  taskrel rank my_images/ --encoders \"effnet_lite0[image_size=96],"
        "effnet_lite1[image_size=96,label=lite1]\"\n"
        "  taskrel rank my_texts.csv --encoders \"hf:./bert[layer=4],hf:./bert[layer=8]\"\n"
        "  taskrel rank my_images/ --zoo zoo.toml\n"
        "  taskrel rank --features a.npz,b.npz --names model_a,model_b\n"
        "  taskrel rank --features a.npy,b.parquet --labels y.npy\n\n"
        "--features files (every one holds the same target rows in the same order;\n"
        "feature dimensions may differ):\n"
        "  .npz      'features' (n x d) and 'labels' (n); optionally\n"
        "            'reference_features' + 'reference_labels' (the reference task in\n"
        "            the same feature space: task-relatedness needs them) and\n"
        "            'source_probs' (n x C_s, the encoder's own head: LEEP, NCE)\n"
        "  .npy      features only; labels from --labels\n"
        "  .parquet  a --label-col column and a list column 'features' or numeric\n"
        "            columns (needs pyarrow)\n\n"
        "encoder specs: NAME[key=value,...] gives one candidate its own options (they\n"
        "override --encoder-options): weights=PATH (local weights, keyed by content),\n"
        "image_size=N, layer=K (timm: feature_info index or module name, pooled;\n"
        "hf: hidden state, 0 = embeddings, -1 = last), pretrained=false, seed=N,\n"
        "label=NAME (the row's name; default the spec as written). A zoo file (TOML)\n"
        "lists them, one [[encoder]] table each; relative weights paths are read\n"
        "from the file's folder:\n"
        "  [[encoder]]\n"
        "  name = \"timm:resnet50\"\n"
        "  label = \"r50-inat\"\n"
        "  weights = \"ckpt/r50_inat.pth\"\n\n"
        "image sizes: each image encoder runs at its own input size unless\n"
        "--image-size N (all) or a spec's image_size= (that one) says otherwise:\n"
        "timm's pretrained config, torchvision's weights' crop, open_clip's model\n"
        "size, 224/240/260 px for the packaged effnet_lite0/1/2 (slow on a CPU;\n"
        "--image-size 96 has 5x fewer pixels), a smallcnn's trained size. A size a model\n"
        "cannot take is one error line; a note lists the sizes used and the JSON\n"
        "records each row's image_size.\n",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("target", nargs="?",
                   help="image folder (one sub-folder per class), CSV/TSV of texts and "
                   "labels, or a packaged dataset name (taskrel datasets); omit (or -) "
                   "with --features")
    r.add_argument("--encoders", metavar="A,B[k=v,...],...",
                   help="packaged names (taskrel encoders) or timm:/torchvision:/hf:/"
                   "open_clip: models with local weights, each optionally with its "
                   "own options NAME[key=value,...] (specs below)")
    r.add_argument("--zoo", metavar="ZOO.toml",
                   help="the candidates from a TOML file of [[encoder]] tables, "
                   "instead of --encoders (format below)")
    r.add_argument("--features", metavar="F1,F2,...",
                   help="precomputed embeddings instead of TARGET and --encoders: one "
                   ".npz/.npy/.parquet file per candidate (formats below)")
    r.add_argument("--names", metavar="A,B,...",
                   help="names of the --features candidates (default: the file stems)")
    r.add_argument("--labels", metavar="FILE",
                   help="target labels for --features files without them: .npy, or "
                   "text with one label per line")
    r.add_argument("--encoder-options", metavar="JSON",
                   help='options for every named encoder, e.g. \'{"download": true}\' '
                   "to let timm:/hf:/torchvision:/open_clip: fetch weights; a spec's "
                   "own options win")
    r.add_argument("--reference", help="packaged dataset or image folder (default: "
                   "fashion_mnist, else digits, for images; 20newsgroups for texts)")
    r.add_argument("--estimators", help="comma-separated score names; all of them vote "
                   f"(default: {','.join(DEFAULT_ESTIMATORS)}; with --no-labels "
                   f"{','.join(DEFAULT_LABEL_FREE)}: the committed benchmark's best, "
                   "docs/results/default_selection.md)")
    r.add_argument("--no-labels", action="store_true",
                   help="label-free mode: target labels unused (task-relatedness on "
                   "pseudo-labels)")
    r.add_argument("--balanced", action="store_true",
                   help="weigh every target class the same: balanced k-NN accuracy, "
                   "class-weighted SFDA (the other estimators cannot; a note says so)")
    r.add_argument("--text-col", default="text", help="text column of a CSV/TSV target")
    r.add_argument("--label-col", default="label",
                   help="label column of a CSV/TSV target or of .parquet --features")
    r.add_argument("--image-size", type=int, default=None, metavar="N",
                   help="input size of every image encoder (default: each model's "
                   "own, e.g. 224-260 px for the packaged effnets; 0 = the same)")
    r.add_argument("--max-reference", type=int, default=2000)
    r.add_argument("--max-target", type=int, default=1000)
    r.add_argument("--feature-dim", type=int, default=64,
                   help="dimension cap: target-only estimators read the target's own "
                   "top principal directions, task-relatedness the reference's")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    r.add_argument("--skip-unreadable", action="store_true",
                   help="skip unreadable images instead of failing")
    r.add_argument("--json", metavar="OUT.json", help="write the ranking as JSON")
    r.add_argument("--csv", metavar="OUT.csv", help="write the ranking as CSV")
    r.add_argument("--out", metavar="DIR",
                   help="write ranking.json, ranking.csv, ranking.png, decomposition.png")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.set_defaults(func=_cmd_rank)
