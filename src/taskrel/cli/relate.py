"""``taskrel relate``: task-relatedness of a reference task to a target task (the
bound and its terms), with the linear probe's transfer loss beside it."""

from __future__ import annotations

import argparse
from typing import Any

from ..exceptions import TaskrelInputError

__all__ = ["register"]


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def _print_relate(out: dict[str, Any]) -> None:
    rows = [
        ("reweighted reference loss", out["reweighted_reference_loss"]),
        ("label mismatch H(Y''|Y')", out["label_mismatch"]),
        ("distribution mismatch W1", out["distribution_mismatch"]),
        ("Lipschitz constant (measured)", out["lipschitz"]),
        ("  x W1", out["lipschitz"] * out["distribution_mismatch"]),
        ("bound (task-relatedness)", out["bound"]),
        ("score (ranks by: reweighted ref. loss)", out.get("score")),
        ("Lipschitz constant (certified)", out["lipschitz_certified"]),
        ("bound with certified constant", out["bound_certified"]),
        ("trivial bound log K_T", out["trivial_bound"]),
        ("transformed-reference accuracy", out["transformed_accuracy"]),
        ("transfer loss (linear probe)", out.get("transfer_loss")),
        ("transfer accuracy (linear probe)", out.get("transfer_accuracy")),
        ("tau", out["tau"]),
        ("seconds", out["seconds"]),
    ]
    if out.get("pseudo_label_accuracy") is not None:
        rows.append(("pseudo-label accuracy", out["pseudo_label_accuracy"]))
    width = max(len(r[0]) for r in rows)
    print(f"task-relatedness  ({out['label_source']} target labels, "
          f"recipe={out['settings']['recipe']}, b_mode={out['settings']['b_mode']})")
    for name, v in rows:
        print(f"  {name:<{width}}  {_fmt(v)}")
    if out.get("bound_exceeds_trivial"):
        print("  note: the bound is above log K_T, which a uniform head already achieves")


def _cmd_relate(args: argparse.Namespace) -> int:
    from .._internal.devices import check_device
    from .._internal.validation import check_output_path, check_seed
    from ..io import atomic_write_json, check_task, load_task
    from ..probe import linear_probe
    from ..relatedness import split_task, task_relatedness

    check_seed(args.seed, "--seed")
    try:
        check_device(args.device)
    except TaskrelInputError as exc:
        raise TaskrelInputError(f"`--device`: {exc}") from None
    tau = args.tau if args.tau in ("auto", "paper") else _float(args.tau, "--tau")
    if args.json:
        check_output_path(args.json, "--json")
    ref = load_task(args.reference, require_labels=True)
    tgt = load_task(args.target, require_labels=not args.no_target_labels)
    check_task(ref, "reference", require_labels=True)
    check_task(tgt, "target")
    d_r, d_t = ref.features.shape[1], tgt.features.shape[1]
    if d_r != d_t:
        raise TaskrelInputError(
            f"`reference` and `target` must have the same number of features: {d_r} "
            f"vs {d_t} ({args.reference!r} vs {args.target!r}; one encoder's features)")
    use_labels = tgt.labels is not None and not args.no_target_labels
    kw: dict[str, Any] = dict(
        tau=tau,
        recipe=args.recipe,
        b_mode=args.b_mode,
        seed=args.seed,
        device=args.device,
        progress=not args.quiet,
        class_weights=args.class_weights,
        pseudo_labels=args.pseudo_labels,
    )
    if ref.test_features is not None:
        kw.update(reference_test_features=ref.test_features,
                  reference_test_labels=ref.test_labels)
    t_train_X, t_train_y = tgt.features, tgt.labels
    t_test_X, t_test_y = tgt.test_features, tgt.test_labels
    if t_test_X is None and tgt.labels is not None:
        # The same seeded stratified 80/20 split the library would make, made here so
        # that the probe and the bound see the same target test split.
        import numpy as np

        from .._internal.validation import check_features, check_labels

        X = check_features(tgt.features, "target features")
        _, y_idx = check_labels(tgt.labels, "target labels")
        tr, te = split_task(X, y_idx, seed=args.seed)
        y = np.asarray(tgt.labels)
        t_train_X, t_train_y, t_test_X, t_test_y = X[tr], y[tr], X[te], y[te]
    if t_test_X is not None:
        kw["target_test_features"] = t_test_X
        kw["target_test_labels"] = t_test_y
    result = task_relatedness(
        ref.features, ref.labels, t_train_X, t_train_y if use_labels else None, **kw
    )
    out = result.to_dict()
    out["reference"] = ref.path
    out["target"] = tgt.path
    out["transfer_loss"] = out["transfer_accuracy"] = None
    if t_train_y is not None and t_test_y is not None:
        head_recipe = "paper" if args.recipe == "paper" else "fast"  # the head's recipe
        probe = linear_probe(t_train_X, t_train_y, t_test_X, t_test_y, tau=result.tau,
                             recipe=head_recipe, seed=args.seed, device=args.device)
        out["transfer_loss"] = probe.loss
        out["transfer_accuracy"] = probe.accuracy
        out["probe"] = probe.to_dict()
    _print_relate(out)
    if args.json:
        atomic_write_json(args.json, out)
        print(f"wrote {args.json}")
    return 0


def _float(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (value > 0 and value != float("inf")):
        raise TaskrelInputError(
            f"`{name}` must be a positive number, 'auto' or 'paper'; got {text!r}")
    return value


def register(sub: Any) -> None:
    """Add ``relate`` to the ``taskrel`` subcommands."""
    r = sub.add_parser(
        "relate",
        help="task-relatedness of a reference task to a target task (the bound)",
        description="Bound the target loss by the transformed reference task: "
        "reweighted reference loss + label mismatch + Lipschitz x W1.",
    )
    r.add_argument("reference", help="reference task file (.npz with features, labels)")
    r.add_argument("target", help="target task file (.npz with features[, labels])")
    r.add_argument("--no-target-labels", action="store_true",
                   help="ignore target labels (use pseudo-labels); any labels in the "
                   "file are used only to check the pseudo-labels")
    r.add_argument("--recipe", choices=("fast", "paper", "batched"), default="fast")
    r.add_argument("--b-mode", dest="b_mode", choices=("sparse", "learned"),
                   default="sparse")
    r.add_argument("--pseudo-labels", dest="pseudo_labels",
                   choices=("classifier", "kmeans"), default="classifier")
    r.add_argument("--tau", default="auto",
                   help="Lipschitz target: a number, 'auto' (default) or 'paper' (0.02)")
    r.add_argument("--class-weights", dest="class_weights",
                   choices=("prior", "uniform"), default="prior")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--device", default="auto", help="auto | cpu | cuda")
    r.add_argument("--json", metavar="OUT.json", help="write the full result as JSON")
    r.add_argument("--quiet", action="store_true", help="no progress output")
    r.set_defaults(func=_cmd_relate)
