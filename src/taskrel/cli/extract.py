"""CLI subcommands ``extract``, ``datasets`` and ``encoders`` (feature extraction)."""

from __future__ import annotations

import argparse
import json
import re
from typing import Any

from ..exceptions import TaskrelInputError

__all__ = ["register"]


def _cmd_extract(args: argparse.Namespace) -> int:
    from .._internal.devices import check_device
    from .._internal.validation import check_output_path, check_positive
    from ..features.encoders import encoder_from_json, load_encoder
    from ..features.extract import extract_task

    for flag, v in (("--limit", args.limit), ("--image-size", args.image_size),
                    ("--batch-size", args.batch_size)):
        if v is not None:
            check_positive(v, flag, integer=True)
    try:
        check_device(args.device)  # before the encoder (and its weights) load
    except TaskrelInputError as exc:
        raise TaskrelInputError(f"`--device`: {exc}") from None
    _check_dataset(args.dataset)
    from ..features.encoders.specs import parse_encoder_spec

    spec = parse_encoder_spec(args.encoder, what="ENCODER")  # NAME or NAME[key=value,...]
    stem = re.sub(r"[^A-Za-z0-9._=-]+", "_", args.encoder).strip("_")
    out = args.out or f"{stem}__{args.dataset}.npz"
    check_output_path(out, "--out")
    if args.cache_dir is not None and not args.no_cache:
        check_output_path(args.cache_dir, "--cache-dir", kind="dir")
    opts = encoder_from_json(args.encoder_options) if args.encoder_options else {}
    if args.image_size is not None:
        opts["image_size"] = args.image_size
    enc = load_encoder(spec.name, device=args.device, **{**opts, **spec.options})
    task = extract_task(enc, args.dataset, split=args.split, limit=args.limit, out=out,
                        cache_dir=False if args.no_cache else args.cache_dir,
                        progress=not args.quiet, batch_size=args.batch_size)
    parts = [f"features {task.features.shape}"]
    if task.test_features is not None:
        parts.append(f"test_features {task.test_features.shape}")
    if task.source_probs is not None:
        parts.append(f"source_probs {task.source_probs.shape}")
    hits = {s: f"{i['chunks_from_cache']}/{i['chunks']}"
            for s, i in task.meta["cache"].items()}
    print(f"wrote {out}: {', '.join(parts)}; cached chunks {hits}; "
          f"{task.meta['seconds']:.1f} s")
    return 0


def _check_dataset(name: str) -> None:
    from ..features.datasets import list_datasets

    names = list_datasets()
    if name not in names:
        raise TaskrelInputError(
            f"`DATASET` must be one of {', '.join(names)} (see `taskrel datasets`); "
            f"got {name!r}")


def _cmd_datasets(args: argparse.Namespace) -> int:
    from ..features.datasets import list_datasets, load_dataset

    names = list_datasets()
    if not args.details:
        print("\n".join(names))
        return 0
    rows: list[dict[str, Any]] = []
    for n in names:
        try:
            d = load_dataset(n)
            rows.append({"name": n, "modality": d.modality, "train": len(d.y_train),
                         "test": len(d.y_test), "classes": d.n_classes})
        except Exception as exc:  # noqa: BLE001 - report, keep listing
            rows.append({"name": n, "error": str(exc)})
    print(json.dumps(rows, indent=1) if args.json else "\n".join(
        f"{r['name']:<16} " + (f"{r['modality']:<6} train {r['train']:>6}  test "
                               f"{r['test']:>6}  classes {r['classes']}"
                               if "error" not in r else f"unavailable: {r['error']}")
        for r in rows))
    return 0


def _cmd_encoders(args: argparse.Namespace) -> int:
    from ..features.encoders import list_encoders

    print("\n".join(list_encoders()))
    return 0


def register(sub: Any) -> None:
    """Add the subcommands to an ``argparse`` subparsers object."""
    e = sub.add_parser("extract", help="encode a dataset into a task file (cached)",
                       description="Encode DATASET with ENCODER into a task file with "
                       "features, labels, test split, class names, source probabilities "
                       "and metadata. Features are cached and resumable.")
    e.add_argument("encoder", help="encoder name (see `taskrel encoders`) or spec "
                   "NAME[key=value,...] as in `taskrel rank --encoders` (its options "
                   "override --encoder-options and --image-size)")
    e.add_argument("dataset", help="dataset name (see `taskrel datasets`)")
    e.add_argument("--split", choices=("train", "test", "both"), default="both")
    e.add_argument("--limit", type=int, default=None, help="at most N rows per split")
    e.add_argument("--out", metavar="TASK.npz", default=None,
                   help="output file (default ENCODER__DATASET.npz)")
    e.add_argument("--device", default="auto", help="auto | cpu | cuda")
    e.add_argument("--image-size", dest="image_size", type=int, default=None,
                   help="input size in pixels for image encoders")
    e.add_argument("--encoder-options", dest="encoder_options", default=None,
                   metavar="JSON", help='e.g. \'{"max_seq_length": 128}\'')
    e.add_argument("--batch-size", dest="batch_size", type=int, default=None)
    e.add_argument("--cache-dir", dest="cache_dir", default=None,
                   help="feature cache (default $TASKREL_CACHE_DIR or ~/.cache/taskrel)")
    e.add_argument("--no-cache", dest="no_cache", action="store_true")
    e.add_argument("--quiet", action="store_true", help="no progress bars")
    e.set_defaults(func=_cmd_extract)

    d = sub.add_parser("datasets", help="list the packaged datasets")
    d.add_argument("--details", action="store_true", help="load each; show counts")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=_cmd_datasets)

    n = sub.add_parser("encoders", help="list the registered encoders")
    n.set_defaults(func=_cmd_encoders)
