r"""``taskrel.rank``: which of my encoders should I fine-tune on my data, and why?

:func:`rank` takes a target task (an image folder with one sub-folder per class, a
CSV/TSV of texts and labels, a packaged dataset name or a
:class:`~taskrel.features.datasets.Dataset`) and a few candidate encoders, and returns
a :class:`Ranking`: one row per encoder with each estimator's value and rank, the
consensus rank, task-relatedness's three terms and a one-line "why". Embeddings that
already exist (one file or array per candidate: ``features=``, ``taskrel rank
--features``; :mod:`taskrel.features.precomputed`) skip stages 1-2's encoders and are
ranked the same way.

How a ranking is made, stage by stage (each stage is a function of the layers below):

1. **Inputs checked before any encoder runs**: the target (at least 2 classes with 2
   training rows each, unless ``labels=False``; no unreadable image), the reference,
   the estimator names, the device, and every encoder (loaded, so an unknown name or
   a remote model without local weights fails here, in one line).
2. **Features** of the target's and the reference's training rows through
   :func:`taskrel.features.extract.extract_task` (cached on disk, resumable), capped at
   ``max_target`` / ``max_reference`` rows (stratified by class). An encoder fitted to
   its data (``tfidf_svd``) is fitted once, on the target's rows, and encodes both
   tasks.
3. **Estimators** on the target's training rows (:func:`taskrel.scores.compute_score`).
   The target-only ones (registry inputs without ``source_task``: k-NN, SFDA,
   H-score, LogME, ...) read the target on its *own* top ``feature_dim`` principal
   directions (fitted on the target's rows), so the reference never changes their
   values; task-relatedness (:func:`taskrel.task_relatedness`) and the ``source_task``
   scores read both tasks on the *reference's* top ``feature_dim`` directions (the
   committed benchmark's setting), and give the bound and its terms. With
   ``balanced`` the estimators that can weigh every class the same
   (:func:`balanced_estimators`); without it an imbalanced target warns. An
   estimator that does not apply (LEEP without the encoder's own classifier head,
   any labelled score with ``labels=False``, task-relatedness for precomputed
   features without reference rows) is reported with the reason, never guessed.
4. **Ranks**: per estimator, 1 = predicted best, oriented by the score's
   ``higher_is_better``; equal values share their average rank (two encoders tied
   first are both #1.5), so the ranking does not depend on the order the encoders are
   listed in. The consensus is the mean rank over the *voting* estimators: every
   estimator asked for (default :data:`DEFAULT_ESTIMATORS`, or
   :data:`DEFAULT_LABEL_FREE` with ``labels=False``: both chosen by the benchmark)
   that was computed for at least two encoders; an encoder an
   estimator failed for is judged on the voters it has (its row's ``votes``). Equal
   consensus ranks are broken by :data:`LEAD_ESTIMATOR`'s rank, then by encoder name;
   encoders equal on both share their position (``tied_with``). An encoder whose
   features or estimators fail gets a row saying why (exception type and first
   line); the others are still ranked.
5. **Why**: :func:`explain` turns the numbers into a short sentence by fixed rules.

A rerun with the same inputs is instant: the rows are cached under
``<cache_dir>/rankings/<key>.json`` (written atomically), where ``<key>`` hashes the
target's and the reference's content fingerprints, the encoders' cache keys (weights by
content, input size, layer, ...) and row labels, the estimators, the options and the
taskrel version. Precomputed features are not cached
(nothing is extracted; the estimators are recomputed).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._internal.serialize import atomic_write_json
from ._internal.validation import check_bool
from .exceptions import TaskrelInputError

__all__ = ["rank", "Ranking", "resolve_target", "resolve_reference", "resolve_encoders",
           "consensus_ranks", "explain", "format_rank", "plot_ranking", "DEFAULT_ESTIMATORS",
           "DEFAULT_LABEL_FREE", "LEAD_ESTIMATOR", "DEFAULT_REFERENCES", "IMBALANCE_RATIO",
           "balanced_estimators", "warn_if_imbalanced"]

#: The default voters, by measurement (``experiments/select_default.py``;
#: docs/results/default_selection.md): of every single estimator and every consensus of
#: 2 or 3, the best mean view (i) weighted tau over the vision, text and population
#: suites against the tuned logistic probe and end-to-end accuracy; a consensus only if
#: it beats each of its members, and replaced only by a candidate better on a paired
#: bootstrap. k-NN accuracy + SFDA + task-relatedness 0.62 [0.57, 0.66], against k-NN
#: accuracy alone 0.56, SFDA 0.56, task-relatedness 0.25, k-NN + SFDA 0.59 and the
#: static ranker (which ignores the target) 0.36 (truths: every one three seeds).
DEFAULT_ESTIMATORS: tuple[str, ...] = ("knn_accuracy", "sfda", "task_relatedness")
#: The default voters without target labels (``labels=False``), chosen the same way
#: among the estimators that read no label: ETran's energy + task-relatedness with
#: pseudo-labels 0.21 [0.10, 0.31], against energy alone 0.15, task-relatedness alone
#: 0.12 and RankMe 0.09 (energy + RankMe + task-relatedness is level, +0.046
#: [-0.036, 0.119]; RankMe + task-relatedness is level at 0.225). On the
#: population suite the default and both its members are below the static ranker.
DEFAULT_LABEL_FREE: tuple[str, ...] = ("etran_energy", "task_relatedness")
#: Breaks ties of the consensus: the best single estimator over vision and text (level
#: with SFDA once the population suite is added: 0.559 vs 0.562).
LEAD_ESTIMATOR = "knn_accuracy"
#: The reference task per modality when none is given (the benchmark's references).
DEFAULT_REFERENCES: dict[str, tuple[str, ...]] = {
    "image": ("fashion_mnist", "digits"),  # digits when Fashion-MNIST is not installed
    "text": ("20newsgroups",),
}
_FORMAT = 7  # 7: encoder specs (row labels), native image sizes, each row's image_size
# (6: task-relatedness votes (default by measurement); 5: target-only estimators on the
# target's own projection, balanced; 4: average ranks, failures per encoder, tfidf_svd
# fitted once)
_TERMS = ("score", "bound", "reweighted_reference_loss", "label_mismatch", "lipschitz",
          "distribution_mismatch", "reference_accuracy", "transformed_accuracy",
          "pseudo_label_accuracy", "tau")


@dataclass(frozen=True)
class Ranking:
    """The answer of :func:`rank`.

    Attributes
    ----------
    rows : tuple of dict
        One per encoder, best first: ``encoder``, ``position`` (shared by encoders in
        a complete tie), ``tied_with`` (those encoders), ``consensus_rank`` (mean of
        its voters' ranks; None when none ranks it), ``votes`` (how many voters rank
        it), ``values`` / ``ranks`` (per estimator; average ranks, floats; None where
        not computed), ``not_computed`` (estimator -> reason), ``error`` (only when
        its features could not be extracted: exception type and first line),
        ``warnings`` (what the estimators warned, one line each), ``terms``
        (task-relatedness: bound, reweighted_reference_loss, label_mismatch,
        lipschitz, distribution_mismatch, lipschitz_x_w1, reference_accuracy, ...),
        ``feature_dim`` (the target-only estimators' dimension), ``reference_classes``,
        ``image_size`` (image encoders: the input size used, in pixels) and ``why``.
        ``encoder`` is the row's name: the spec's label (``NAME[...]`` as written, or
        its ``label=``).
    estimators : tuple of str
        In the order given.
    voters : tuple of str
        The estimators the consensus averages.
    directions : dict
        Estimator -> ``"higher is better"`` or ``"lower is better"``.
    target, reference : dict
        Name, modality (``features`` for precomputed features), rows used, classes,
        content fingerprint (of the labels, for precomputed features).
    options : dict
        Every setting that changes the numbers.
    seconds : float
        Wall time of this call.
    from_cache : bool
        Whether the rows came from the ranking cache.
    """

    rows: tuple[dict[str, Any], ...]
    estimators: tuple[str, ...]
    voters: tuple[str, ...]
    directions: dict[str, str]
    target: dict[str, Any]
    reference: dict[str, Any]
    options: dict[str, Any]
    seconds: float = 0.0
    from_cache: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def best(self) -> str:
        """The encoder ranked first (the first by name when several tie: see the
        row's ``tied_with``)."""
        return str(self.rows[0]["encoder"])

    def legend(self) -> list[str]:
        """What the columns mean and which way is better (printed under the table)."""
        lines = [f"{e}: {self.directions[e]}" + ("" if e in self.voters else
                                                  " (shown, does not vote)")
                 for e in self.estimators]
        lines += [
            "rank: 1 = predicted best by that estimator; equal values share their "
            "average rank (two tied first are both #1.5)",
            f"consensus: mean rank over {', '.join(self.voters) or '-'} (those computed "
            f"for the encoder: (k/n) when fewer); ties broken by {LEAD_ESTIMATOR} (best "
            "on average over both benchmarks), then by name; =k: tied on both, sharing "
            "place k",
            "task_relatedness: its score, the reweighted reference loss (ref.loss), lower = "
            "better; bound = ref.loss + labels + L x W1: its upper bound on the "
            "target loss (nats), lower = more related",
        ]
        return lines

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (the ``--json`` output)."""
        return {"ranking": [dict(r) for r in self.rows], "estimators": list(self.estimators),
                "voters": list(self.voters), "lead_estimator": LEAD_ESTIMATOR,
                "directions": dict(self.directions), "legend": self.legend(),
                "target": self.target, "reference": self.reference,
                "options": self.options, "seconds": self.seconds,
                "from_cache": self.from_cache, "notes": list(self.notes)}


# ---------------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------------
def resolve_target(target: Any, *, text_col: str = "text", label_col: str = "label",
                   labels: bool = True, skip_unreadable: bool = False,
                   limit: int | None = None) -> Any:
    """The target as a :class:`~taskrel.features.datasets.Dataset`, checked.

    ``target`` is a Dataset, an image folder (one sub-folder per class; read with
    ``from_image_folder(size="auto")``, so photos of mixed sizes are resized to one
    square of at most 256 pixels), a CSV/TSV file (``text_col``, ``label_col``) or a
    packaged dataset name. With ``labels``
    the target needs at least 2 classes with 2 training rows each. An unreadable
    image is an error unless ``skip_unreadable``. With ``limit`` a folder decodes only
    the ``limit`` rows per split that a ranking with ``max_target=limit`` encodes
    (``from_image_folder(limit=)``): the same images and features, without decoding
    the rest.
    """
    from .features.datasets import Dataset, list_datasets, load_dataset

    if isinstance(target, Dataset):
        ds = target
    elif isinstance(target, (str, os.PathLike)):
        ds = _dataset_from_path(target, text_col, label_col, skip_unreadable,
                                list_datasets(), load_dataset, "TARGET", limit)
    else:
        raise TaskrelInputError(f"`target` must be a Dataset, a folder, a CSV/TSV file "
                                f"or a dataset name; got {type(target).__name__}")
    _check_target(ds, labels)
    return ds


def _dataset_from_path(spec: Any, text_col: str, label_col: str, skip_unreadable: bool,
                       names: list[str], load: Any, what: str,
                       limit: int | None = None) -> Any:
    from .features.datasets import from_table
    from .features.image_folder import from_image_folder

    p = Path(spec)
    if p.is_dir():
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            ds = from_image_folder(p, size="auto", limit=limit)
        skipped = int(ds.meta.get("skipped", 0))
        if skipped and not skip_unreadable:
            raise TaskrelInputError(
                f"{what} folder {str(p)!r} has {skipped} unreadable image file(s); fix or "
                "remove them, or pass --skip-unreadable")
        return ds
    if p.is_file():
        return from_table(p, text_col, label_col)
    if str(spec) in names:
        return load(str(spec))
    raise TaskrelInputError(
        f"{what} must be an image folder, a CSV/TSV file or a packaged dataset "
        f"({', '.join(names)}); got {str(spec)!r}, which is none of these")


def _check_target(ds: Any, labels: bool) -> None:
    _check_class_counts(f"target {ds.name!r}", np.asarray(ds.y_train),
                        list(ds.class_names), labels)


def _check_class_counts(what: str, y: Any, class_names: list[str], labels: bool) -> None:
    """At least 4 rows; with ``labels``, 2 classes with 2 rows each (``y`` holds class
    ids into ``class_names``)."""
    n = len(y)
    if n < 4:
        raise TaskrelInputError(f"{what} has {n} training row(s); ranking needs at "
                                "least 4")
    if not labels:
        return
    counts = np.bincount(y, minlength=len(class_names))
    present = np.flatnonzero(counts)
    if present.size < 2:
        raise TaskrelInputError(
            f"{what} has {present.size} class(es) "
            f"({', '.join(class_names) or '-'}); ranking with labels needs at least "
            "2 (or use --no-labels)")
    thin = [class_names[i] for i in present if counts[i] < 2]
    if thin:
        raise TaskrelInputError(
            f"{what}: class(es) {thin[:5]} have 1 training row; every class "
            "needs at least 2")


def resolve_reference(reference: Any, modality: str, *, text_col: str = "text",
                      label_col: str = "label", limit: int | None = None) -> Any:
    """The reference task: ``reference`` (a Dataset, folder, CSV/TSV with the target's
    columns or packaged name) or the first installed of :data:`DEFAULT_REFERENCES`
    for the target's modality. ``limit`` as for :func:`resolve_target`."""
    from .features.datasets import Dataset, list_datasets, load_dataset

    if reference is None:
        errors = []
        for name in DEFAULT_REFERENCES[modality]:
            try:
                return load_dataset(name)
            except TaskrelInputError as exc:
                errors.append(f"{name}: {exc}")
        raise TaskrelInputError(f"no default {modality} reference is installed "
                                f"({'; '.join(errors)}); pass --reference")
    if isinstance(reference, Dataset):
        ds = reference
    else:
        ds = _dataset_from_path(reference, text_col, label_col, False, list_datasets(),
                                load_dataset, "--reference", limit)
    if ds.modality != modality:
        raise TaskrelInputError(f"the reference {ds.name!r} holds {ds.modality} inputs "
                                f"but the target holds {modality} inputs")
    if np.unique(ds.y_train).size < 2:
        raise TaskrelInputError(f"the reference {ds.name!r} needs at least 2 classes")
    return ds


def resolve_encoders(encoders: Any, modality: str, *, device: str = "auto",
                     image_size: int | None = None,
                     options: dict[str, Any] | None = None) -> list[Any]:
    """Load every candidate and check that it takes the target's modality.

    ``encoders`` is a comma-separated string of specs or a sequence of specs (strings
    ``NAME`` or ``NAME[key=value,...]``, or
    :class:`~taskrel.features.encoders.specs.EncoderSpec`, e.g. from
    :func:`~taskrel.features.encoders.specs.load_zoo`), :class:`Encoder` objects or
    torch modules. A spec loads with, per option, its own value, else ``options``'s
    (e.g. ``{"download": True}`` for the adapters), else, for ``image_size`` of an
    image encoder, ``image_size`` (None: the model's own size). Each encoder's
    ``label`` is its row's name (a spec's label; else its ``name``); two equal
    labels are an error naming them.
    """
    from .features.encoders import Encoder, load_encoder
    from .features.encoders.specs import EncoderSpec, encoder_specs

    out = []
    for e in encoder_specs(encoders):
        if isinstance(e, EncoderSpec):
            sized = modality == "image" and image_size and not e.name.startswith("hf:")
            opts = {**({"image_size": image_size} if sized else {}), **(options or {}),
                    **e.options}
            enc = load_encoder(e.name, device=device, **opts)
            enc.label = e.label
        elif isinstance(e, Encoder):
            enc = e
        else:
            enc = _module_encoder(e, device, image_size or 224)
        if enc.modality != modality:
            raise TaskrelInputError(f"encoder {_row_name(enc)!r} takes {enc.modality} "
                                    f"inputs but the target holds {modality} inputs")
        out.append(enc)
    names = [_row_name(enc) for enc in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise TaskrelInputError(
            f"`encoders` lists {dup} more than once; each row needs its own name (two "
            "checkpoints or layers of one model: give them different options or "
            "NAME[...,label=...])")
    return out


def _row_name(enc: Any) -> str:
    """The name of an encoder's rows in a ranking: its ``label`` (a spec's), else its
    ``name``."""
    return str(getattr(enc, "label", "") or enc.name)


def _module_encoder(module: Any, device: str, image_size: int) -> Any:
    """Wrap a torch module (images -> features) as an encoder; its weights' SHA-256
    is its cache identity."""
    try:
        import torch
    except ImportError:
        raise TaskrelInputError("an encoder object needs torch") from None
    if not isinstance(module, torch.nn.Module):
        raise TaskrelInputError(f"an encoder must be a name, an Encoder or a torch "
                                f"module; got {type(module).__name__}")
    from .features.encoders import TorchImageEncoder
    from .features.encoders.image import IMAGENET_MEAN, IMAGENET_STD

    h = hashlib.sha256()
    for k, v in module.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().numpy().tobytes())
    module.eval()
    with torch.no_grad():
        dim = int(module(torch.zeros(1, 3, image_size, image_size)).reshape(1, -1).shape[1])
    name = f"module:{type(module).__name__}:{h.hexdigest()[:12]}"
    return TorchImageEncoder(name, module, None, dim=dim, image_size=image_size,
                             mean=IMAGENET_MEAN, std=IMAGENET_STD, device=device,
                             key={"weights_sha256": h.hexdigest()[:32]})


def _check_estimators(estimators: Sequence[str] | str | None, labels: bool = True
                      ) -> tuple[str, ...]:
    from .scores import get_score

    if estimators is None:
        return DEFAULT_ESTIMATORS if labels else DEFAULT_LABEL_FREE
    items = estimators.split(",") if isinstance(estimators, str) else list(estimators)
    names = tuple(get_score(str(e).strip()).name for e in items if str(e).strip())
    if not names:
        raise TaskrelInputError(f"`estimators` must name at least one score; got "
                                f"{estimators!r}")
    if len(set(names)) != len(names):
        raise TaskrelInputError(f"`estimators` lists a score twice: {list(names)}")
    return names


def _check_size(v: Any) -> int | None:
    """``image_size``: None (each model's own) or an int >= 1."""
    return None if v is None else _check_int("image_size", v, 1)


def _check_int(name: str, v: Any, low: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
        raise TaskrelInputError(f"`{name}` must be an int >= {low}; got {v!r}")
    return int(v)


# ---------------------------------------------------------------------------------
# ranks and explanations
# ---------------------------------------------------------------------------------
def consensus_ranks(values: dict[str, dict[str, float | None]], encoders: Sequence[str],
                    higher_is_better: dict[str, bool], voters: Sequence[str],
                    lead: str | None = LEAD_ESTIMATOR
                    ) -> tuple[dict[str, dict[str, float | None]], dict[str, float],
                               list[str]]:
    """Per-estimator ranks, the consensus (mean voter rank) and the final order.

    Ranks are average ranks (:func:`scipy.stats.rankdata`, ``method="average"``):
    encoders with equal values share the mean of the places they span (two tied for
    first are both 1.5), so no rank depends on the order the encoders are listed in.
    The order is by consensus, then by ``lead``'s rank, then by encoder name (a fixed
    rule for complete ties; :func:`rank` marks such rows ``tied_with`` each other).

    Parameters
    ----------
    values : dict
        ``values[encoder][estimator]``, None where not computed.
    encoders : sequence of str
        The encoders (their order changes nothing).
    higher_is_better : dict
        Direction per estimator.
    voters : sequence of str
        Estimators the consensus averages. One not computed for an encoder ranks the
        encoders it was computed for, and the consensus of that encoder is the mean
        over the voters that rank it (NaN when none does).
    lead : str, optional
        The estimator whose rank breaks consensus ties.

    Returns
    -------
    ranks : dict
        ``ranks[encoder][estimator]``: 1.0 = best, None where not computed.
    consensus : dict
        Encoder -> mean voter rank (NaN without any).
    order : list of str
        Best first.

    Examples
    --------
    >>> v = {"a": {"x": 1.0, "y": 5.0}, "b": {"x": 2.0, "y": 4.0},
    ...      "c": {"x": 2.0, "y": 6.0}}
    >>> r, c, order = consensus_ranks(v, ["a", "b", "c"], {"x": True, "y": False},
    ...                               ["x", "y"])
    >>> r["b"], c["b"], order
    ({'x': 1.5, 'y': 1.0}, 1.25, ['b', 'c', 'a'])
    """
    from scipy.stats import rankdata

    ests = sorted({e for enc in encoders for e in values[enc]})
    ranks: dict[str, dict[str, float | None]] = {enc: {} for enc in encoders}
    for est in ests:
        have = sorted(enc for enc in encoders if values[enc].get(est) is not None)
        sign = -1.0 if higher_is_better[est] else 1.0
        got = rankdata([sign * float(values[enc][est]) for enc in have],  # type: ignore[arg-type]
                       method="average") if have else []
        for enc in encoders:
            ranks[enc][est] = None
        for enc, r in zip(have, got):
            ranks[enc][est] = float(r)
    cons: dict[str, float] = {}
    for enc in encoders:
        mine = [ranks[enc][v] for v in voters if ranks[enc].get(v) is not None]
        cons[enc] = float(np.mean(mine)) if mine else float("nan")
    return ranks, cons, sorted(encoders, key=lambda e: _order_key(e, ranks, cons, lead))


def _order_key(enc: str, ranks: dict[str, dict[str, float | None]],
               cons: dict[str, float], lead: str | None) -> tuple[float, float, str]:
    """(consensus, lead rank, name); the first two equal = a complete tie."""
    lr = ranks[enc].get(lead) if lead else None
    c = cons[enc]
    return (math.inf if math.isnan(c) else c, math.inf if lr is None else lr, enc)


def format_rank(r: float | None) -> str:
    """``1``, ``1.5`` or ``-`` (an average rank, shortest form)."""
    return "-" if r is None else f"{r:g}"


def explain(row: dict[str, Any], rows: Sequence[dict[str, Any]], *,
            n_reference_classes: int, voters: Sequence[str]) -> str:
    """A one-line, rule-based "why" for one encoder's row among all rows.

    Rules, in order (each adds a clause when it fires):

    0. a row whose features could not be extracted: "not ranked: feature extraction
       failed (<exception type>: <first line>)", and nothing else;
    1. agreement: "all N estimators rank it #k", else "estimators rank it #a-#b"
       (average ranks: #1.5 for two tied first); "k of N estimators rank it ... (x not
       computed)" when some voters could not be computed for it;
    1b. a complete tie (same consensus and lead rank): "tied with B";
    2. the reference head (trained on the encoder's reference features): "reference
       head near chance (acc x)" when below twice chance, "best reference-head accuracy"
       when the highest among several encoders;
    3. the distribution mismatch W1: "closest to the reference's features" (lowest
       among several encoders) / "farthest from the reference's features" (highest);
    4. the label mismatch: "large label mismatch" when it is at least 30% of the
       bound;
    5. the dominant term of the bound (its largest of the three terms and its share).
    """
    if row.get("error"):
        return f"not ranked: feature extraction failed ({row['error']})"
    parts: list[str] = []
    have = [v for v in voters if row["ranks"].get(v) is not None]
    rk = [row["ranks"][v] for v in have]
    if rk:
        span = f"#{format_rank(rk[0])}" if len(set(rk)) == 1 else \
            f"#{format_rank(min(rk))}-#{format_rank(max(rk))}"
        if len(have) < len(voters):
            missing = ", ".join(v for v in voters if v not in have)
            parts.append(f"{len(have)} of {len(voters)} estimators rank it {span} "
                         f"({missing} not computed)")
        else:
            parts.append(f"all {len(rk)} estimators rank it {span}" if len(set(rk)) == 1
                         else f"estimators rank it {span}")
    if row.get("tied_with"):
        parts.append(f"tied with {', '.join(row['tied_with'])} (same consensus and "
                     f"{LEAD_ESTIMATOR} rank)")
    t = row.get("terms") or {}
    others = [r["terms"] for r in rows if r.get("terms")]
    if t:
        parts += _term_clauses(t, others, n_reference_classes)
    return "; ".join(parts) if parts else "no estimator could be computed"


def _term_clauses(t: dict[str, Any], others: list[dict[str, Any]], k_r: int) -> list[str]:
    out = []
    acc = t.get("reference_accuracy")
    accs = [o["reference_accuracy"] for o in others]
    if acc is not None and acc < 2.0 / k_r:
        out.append(f"reference head near chance (acc {acc:.2f})")
    elif acc is not None and len(others) > 1 and acc == max(accs):
        out.append(f"best reference-head accuracy ({acc:.2f})")
    w = [o["distribution_mismatch"] for o in others]
    if len(others) > 1 and t["distribution_mismatch"] == min(w):
        out.append("closest to the reference's features (lowest W1)")
    elif len(others) > 1 and t["distribution_mismatch"] == max(w):
        out.append("farthest from the reference's features (highest W1)")
    terms = {"reference loss": t["reweighted_reference_loss"],
             "label mismatch": t["label_mismatch"], "L x W1": t["lipschitz_x_w1"]}
    total = sum(terms.values())
    if total > 0 and t["label_mismatch"] >= 0.3 * total:
        out.append("large label mismatch with the reference")
    if total > 0:
        name = max(terms, key=lambda k: terms[k])
        out.append(f"bound {t['bound']:.2f}, {terms[name] / total:.0%} from {name}")
    return out


# ---------------------------------------------------------------------------------
# the computation
# ---------------------------------------------------------------------------------
def _features(enc: Any, ds: Any, limit: int, cache: Any, device: str, progress: bool,
              probs: bool, fit: bool = True) -> Any:
    from .features.extract import extract_task

    return extract_task(enc, ds, split="train", limit=limit, cache_dir=cache,
                        device=device, progress=progress, with_source_probs=probs,
                        fit=fit)


def _fit_on_target(enc: Any, tgt_ds: Any, limit: int) -> bool:
    """Fit an encoder that learns from its data (``tfidf_svd``) once, on the target's
    selected training rows (the task being ranked); return whether it has ``fit``.

    Both tasks are then encoded with this one fit (``extract_task(fit=False)``), so
    the reference's and the target's features live in one vocabulary and one SVD
    basis, as task-relatedness, which compares the two feature spaces, needs. Fitted
    per task, the same text got unrelated vectors in the two. The encoder's
    ``cache_key`` records what it was fitted on (``fitted_on``), so these features
    never share a cache entry with a reference encoded by its own fit.
    """
    from .features.extract import selected_rows

    fit = getattr(enc, "fit", None)
    if not callable(fit):
        return False
    rows = selected_rows(tgt_ds, "train", limit)
    x = tgt_ds.x_train
    fit(x[rows] if isinstance(x, np.ndarray) else [x[i] for i in rows])
    return True


def _project(ref: Any, tgt: Any, k: int) -> tuple[Any, Any]:
    """Both tasks on the reference's top ``k`` principal directions (when wider): the
    shared space task-relatedness and the ``source_task`` scores compare them in."""
    from dataclasses import replace

    Xr = np.asarray(ref.features, np.float64)
    Xt = np.asarray(tgt.features, np.float64)
    if Xr.shape[1] > k:
        mean = Xr.mean(0)
        _, _, vt = np.linalg.svd(Xr - mean, full_matrices=False)
        comps = vt[:k].T
        Xr, Xt = (Xr - mean) @ comps, (Xt - mean) @ comps
    return replace(ref, features=Xr), replace(tgt, features=Xt)


def _own_projection(tgt: Any, k: int) -> Any:
    """The target on its own top ``k`` principal directions, when wider than ``k``
    (else unchanged): what the target-only estimators read, so that their values do
    not depend on the reference.

    Fitted on the target's rows: centered by their mean, the right singular vectors
    of the largest singular values, each signed so that its largest-magnitude entry
    is positive (scikit-learn's ``svd_flip`` rule: the same projection on every
    machine and run), directions of zero variance (beyond rank n - 1) dropped.
    """
    from dataclasses import replace

    X = np.asarray(tgt.features, np.float64)
    if X.shape[1] <= k:
        return tgt
    Xc = X - X.mean(0)
    _, sv, vt = np.linalg.svd(Xc, full_matrices=False)
    keep = int(min(k, np.count_nonzero(sv > sv[0] * max(X.shape) * np.finfo(float).eps)))
    comps = vt[:max(keep, 1)]
    signs = np.sign(comps[np.arange(comps.shape[0]), np.argmax(np.abs(comps), axis=1)])
    return replace(tgt, features=Xc @ (comps * signs[:, None]).T)


#: Why a score that needs the reference is not computed for a candidate without one.
_NO_REFERENCE = ("no reference rows for this candidate (reference_features and "
                 "reference_labels in its .npz, or `reference` in Python)")


def _score_values(name: str, ref: Any, tgt: Any, estimators: Sequence[str],
                  labels: bool, device: str, *, own: Any = None, balanced: bool = False
                  ) -> tuple[dict[str, Any], dict[str, str]]:
    """Each estimator's value (None where not computed) and the reasons.

    ``tgt`` and ``ref`` (None: no reference) in the reference's projection feed the
    scores whose inputs include ``source_task``; ``own`` (default ``tgt``), the
    target in its own projection, feeds the target-only scores. ``balanced`` goes
    to the scores that take it (:func:`balanced_estimators`).
    """
    from .scores import compute_score, get_score

    vals: dict[str, Any] = {}
    why: dict[str, str] = {}
    for est in estimators:
        spec = get_score(est)
        vals[est] = None
        if est == "task_relatedness":
            continue
        uses_ref = "source_task" in spec.inputs
        if not labels and "labels" in spec.inputs:
            why[est] = "needs target labels (label-free mode)"
        elif {"source_probs", "source_labels"} & set(spec.inputs) and \
                tgt.source_probs is None:
            why[est] = (f"{name} has no classifier head of its own (this score "
                        "needs its source-class probabilities)")
        elif uses_ref and ref is None:
            why[est] = _NO_REFERENCE
        else:
            kw = {"balanced": True} if balanced and est in balanced_estimators() else {}
            try:
                vals[est] = compute_score(est, tgt if uses_ref or own is None else own,
                                          source=ref, device=device, **kw)
            except MemoryError:
                raise
            except Exception as exc:  # noqa: BLE001 - reported in this encoder's row
                why[est] = _reason(exc)
    return vals, why


def balanced_estimators() -> tuple[str, ...]:
    """The registered scores that honour ``balanced`` (their function takes a
    ``balanced`` keyword): balanced k-NN accuracy (mean per-class recall) and
    class-weighted SFDA. The others weigh every row the same whatever ``balanced``
    says.

    Examples
    --------
    >>> balanced_estimators()
    ('knn_accuracy', 'sfda')
    """
    import inspect

    from .scores import get_score, list_scores

    return tuple(n for n in list_scores()
                 if "balanced" in inspect.signature(get_score(n).func).parameters)


def _reason(exc: BaseException) -> str:
    """One line for a failure: an input error's own message, else the exception's
    type and the first line of its message."""
    first = (str(exc).splitlines() or [""])[0]
    if isinstance(exc, TaskrelInputError):
        return first[:200]
    return (f"{type(exc).__name__}: {first}" if first else type(exc).__name__)[:200]


def _relatedness(ref: Any, tgt: Any, labels: bool, seed: int, device: str
                 ) -> dict[str, Any]:
    from .relatedness import task_relatedness

    k_r = int(np.unique(ref.labels).size)
    kw: dict[str, Any] = {"seed": seed, "device": device, "progress": False}
    k_t = None if tgt.labels is None else int(np.unique(tgt.labels).size)
    if k_t is not None and k_t > k_r:
        kw["b_mode"] = "learned"  # the sparse label map needs K_T <= K_R
    if not labels:
        kw["n_target_classes"] = min(k_t, k_r) if k_t is not None and k_t > 1 else None
    r = task_relatedness(ref.features, ref.labels, tgt.features,
                         tgt.labels if labels else None, **kw)
    d = r.to_dict()
    terms = {k: (None if d.get(k) is None else float(d[k])) for k in _TERMS}
    terms["lipschitz_x_w1"] = float(r.lipschitz * r.distribution_mismatch)
    return terms


def _encoder_row(enc: Any, ref_ds: Any, tgt_ds: Any, est: tuple[str, ...],
                 opts: dict[str, Any], cache: Any, progress: bool) -> dict[str, Any]:
    from .scores import get_score

    dev = opts["device"]
    want = any({"source_probs", "source_labels"} & set(get_score(e).inputs) for e in est)
    size = {"image_size": getattr(enc, "image_size", None)} \
        if enc.modality == "image" else {}
    try:
        fitted = _fit_on_target(enc, tgt_ds, opts["max_target"])
        ref = _features(enc, ref_ds, opts["max_reference"], cache, dev, progress, False,
                        fit=not fitted)
        tgt = _features(enc, tgt_ds, opts["max_target"], cache, dev, progress, want,
                        fit=not fitted)
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - this encoder's row says why
        return {"encoder": _row_name(enc), "values": {e: None for e in est},
                "not_computed": {e: "feature extraction failed" for e in est},
                "terms": {}, "warnings": [], "error": _reason(exc) + _size_hint(enc),
                "feature_dim": None, "has_source_head": bool(enc.has_source_head),
                **size}
    return {**_scored_row(_row_name(enc), ref, tgt, est, opts,
                          bool(enc.has_source_head)), **size}


def _size_hint(enc: Any) -> str:
    """For a failure of an image encoder run at another size than its own: " (at S
    px; its own size is N px)", the likely cause; else ""."""
    size, native = getattr(enc, "image_size", None), getattr(enc, "native_image_size",
                                                             None)
    if enc.modality != "image" or not size or not native or size == native:
        return ""
    return f" (at {size} px; its own size is {native} px)"


def _size_note(raw: list[dict[str, Any]], image_size: int | None) -> list[str]:
    """The input size of each image encoder, when not forced by ``image_size``."""
    sized = [r for r in raw if r.get("image_size")]
    if image_size is not None or not sized:
        return []
    return ["input sizes (each model's own unless its spec sets image_size=; "
            "--image-size N forces one): " + ", ".join(
                f"{r['encoder']} {r['image_size']} px" for r in sized)]


def _scored_row(name: str, ref: Any, tgt: Any, est: tuple[str, ...],
                opts: dict[str, Any], has_head: bool) -> dict[str, Any]:
    """One candidate's raw row from its target (and reference, or None) features.

    The target-only estimators read the target in its own projection
    (:func:`_own_projection`); task-relatedness and the ``source_task`` scores read
    both tasks in the reference's (:func:`_project`), which is computed only for them.
    """
    from .scores import get_score

    dev, lab, k = opts["device"], opts["labels"], opts["feature_dim"]
    own = _own_projection(tgt, k)
    uses_ref = any(e == "task_relatedness" or "source_task" in get_score(e).inputs
                   for e in est)
    ref_p, tgt_p = _project(ref, tgt, k) if ref is not None and uses_ref else (ref, tgt)
    terms: dict[str, Any] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vals, why = _score_values(name, ref_p, tgt_p, est, lab, dev, own=own,
                                  balanced=opts.get("balanced", False))
        if "task_relatedness" in est and ref_p is None:
            why["task_relatedness"] = _NO_REFERENCE
        elif "task_relatedness" in est:
            try:
                terms = _relatedness(ref_p, tgt_p, lab, opts["seed"], dev)
                vals["task_relatedness"] = terms["score"]
            except MemoryError:
                raise
            except Exception as exc:  # noqa: BLE001 - reported in this encoder's row
                why["task_relatedness"] = _reason(exc)
    said = [f"{w.category.__name__}: {str(w.message).splitlines()[0][:240]}"
            for w in caught]
    return {"encoder": name, "values": vals, "not_computed": why, "terms": terms,
            "warnings": list(dict.fromkeys(said)),
            "feature_dim": int(own.features.shape[1]), "has_source_head": has_head,
            "reference_classes": None if ref is None else
            int(np.unique(ref.labels).size)}


def _cache_file(cache: Path | None, key: dict[str, Any]) -> Path | None:
    if cache is None:
        return None
    blob = json.dumps(key, sort_keys=True, default=str).encode()
    return cache / "rankings" / f"{hashlib.sha256(blob).hexdigest()[:32]}.json"


def _describe(ds: Any, rows: int) -> dict[str, Any]:
    from .features.datasets import dataset_fingerprint

    return {"name": ds.name, "modality": ds.modality, "rows": int(min(rows, len(ds.y_train))),
            "classes": len(ds.class_names), "source": str(ds.meta.get("source", "")),
            "fingerprint": dataset_fingerprint(ds)[:16]}


def _assemble(raw: list[dict[str, Any]], est: tuple[str, ...], k_r: int
              ) -> tuple[tuple[dict[str, Any], ...], tuple[str, ...], list[str]]:
    """The rows, best first, the voters and the notes, from the encoders' raw rows.

    The voters are the estimators computed for at least two encoders (a vote
    compares encoders). An estimator that failed for some encoders still ranks
    the others (its ranks span 1..m over the m encoders it has), and the consensus of
    an encoder it failed for is the mean over the voters it has; the row's ``votes``
    says how many.

    Why not rank the failed encoders last for that estimator instead: a failure is
    about the estimator's numerics on those features (a singular covariance, a NaN in
    a solver, a class too small for it), not evidence that the encoder transfers
    worse; ranking it last would turn a numerical accident into a vote against it,
    and would let one fragile estimator sink an encoder the others rank first. The
    cost is that such an encoder is judged on fewer votes, which its row and ``why``
    say ("2 of 3 estimators rank it ...").

    Encoders whose features could not be extracted (``error`` in their row) have no
    rank and come last. Encoders with the same consensus and :data:`LEAD_ESTIMATOR`
    rank are a complete tie: ordered by name, they share the ``position`` (the
    place of the first of them) and list each other in ``tied_with``.
    """
    from .scores import get_score

    names = [r["encoder"] for r in raw]
    by = {r["encoder"]: r for r in raw}
    values = {r["encoder"]: r["values"] for r in raw}
    hib = {e: bool(get_score(e).higher_is_better) for e in est}
    # A vote compares encoders: an estimator computed for one encoder of several
    # would rank it #1 of 1, so it needs two (one, when one encoder has features).
    need = min(2, sum(not by[n].get("error") for n in names))
    computed = [e for e in est
                if need and sum(values[n][e] is not None for n in names) >= need]
    voters = computed
    notes = [f"{n} is not ranked: feature extraction failed ({by[n]['error']})"
             for n in names if by[n].get("error")]
    for e in est:
        miss = [n for n in names if values[n][e] is None and not by[n].get("error")]
        if e not in computed:
            done = [n for n in names if values[n][e] is not None]
            notes.append(f"{e} does not vote: computed for {', '.join(done) or 'no encoder'}"
                         + (" only" if done else ""))
        elif miss and e in voters:
            notes.append(f"{e} not computed for {', '.join(miss)}: it ranks the other "
                         "encoders, and their consensus averages the estimators they have")
        elif miss:
            notes.append(f"{e} not computed for {', '.join(miss)}")
    ranks, cons, order = consensus_ranks(values, names, hib, voters)
    tie = {n: _order_key(n, ranks, cons, LEAD_ESTIMATOR)[:2] for n in names}
    rows = []
    for i, n in enumerate(order):
        ranked = not math.isnan(cons[n])
        rows.append({
            **by[n], "position": 1 + sum(tie[m] < tie[n] for m in names) if ranked
            else i + 1,
            "tied_with": sorted(m for m in names if m != n and ranked and tie[m] == tie[n]),
            "consensus_rank": cons[n] if ranked else None,
            "votes": sum(ranks[n].get(v) is not None for v in voters),
            "ranks": ranks[n]})
    for r in rows:
        r["why"] = explain(r, rows, n_reference_classes=r.get("reference_classes") or k_r,
                           voters=voters)
    return tuple(rows), tuple(voters), notes


def rank(target: Any = None, encoders: Sequence[Any] | str | None = None, *,
         features: Any = None, reference: Any = None,
         estimators: Sequence[str] | str | None = None, labels: Any = True,
         balanced: bool = False, text_col: str = "text", label_col: str = "label",
         image_size: int | None = None, max_reference: int = 2000, max_target: int = 1000,
         feature_dim: int = 64, seed: int = 0, device: str = "auto",
         cache_dir: str | os.PathLike[str] | None | bool = None,
         skip_unreadable: bool = False, encoder_options: dict[str, Any] | None = None,
         progress: bool = True) -> Ranking:
    """Rank candidate encoders for a target task, and say why.

    Two ways in: a ``target`` task and ``encoders`` to run on it, or ``features``
    already computed, one entry per candidate (then no encoder runs, and ``target``
    and ``encoders`` stay None).

    Parameters
    ----------
    target : Dataset, path or str
        An image folder (one sub-folder per class), a CSV/TSV of texts and labels, or
        a packaged dataset name (:func:`taskrel.data.list_datasets`).
    encoders : sequence or comma-separated str
        Packaged names (:func:`taskrel.encoders.list_encoders`), ``timm:`` /
        ``torchvision:`` / ``hf:`` / ``open_clip:`` models with local weights,
        :class:`~taskrel.encoders.Encoder` objects or torch modules (images -> features).
        A name may carry its own options, ``NAME[key=value,...]`` (e.g.
        ``"timm:resnet50[weights=a.pth,image_size=224]"``, ``"hf:./bert[layer=4]"``,
        ``label=`` naming its row), and :class:`taskrel.encoders.EncoderSpec` objects
        (:func:`taskrel.load_zoo` reads a list from a TOML file) are accepted; each
        spec's options override ``encoder_options`` for that encoder. Rows are named by
        the spec (its ``label``; default the spec text), so two checkpoints or layers
        of one model are two rows; equal names are an error.
    features : mapping, sequence of paths or comma-separated str of paths, optional
        Precomputed features instead of ``target`` and ``encoders``: candidate name ->
        array of shape (n_samples, n_features), :class:`taskrel.io.Task` (its
        ``features``, ``labels``, ``source_probs``) or file path; or file paths
        (``.npz`` / ``.npy`` / ``.parquet``, named by their stems; formats in
        :mod:`taskrel.features.precomputed`). Every candidate holds the same target
        rows in the same order (same count, same labels); dimensions may differ.
    reference : Dataset, path, str or mapping, optional
        The reference task; default the first installed of :data:`DEFAULT_REFERENCES`.
        With ``features``: a mapping candidate name -> ``(reference_features,
        reference_labels)`` (or a Task) in that candidate's feature space, for
        task-relatedness (files carry them as ``reference_features`` /
        ``reference_labels``); a candidate without reference rows gets every other
        estimator, and task-relatedness says why it is missing.
    estimators : sequence or comma-separated str, optional
        Registered score names; default :data:`DEFAULT_ESTIMATORS`.
    labels : bool or array-like of shape (n_samples,)
        True: use the target's labels. False: label-free mode (target labels unused;
        task-relatedness uses pseudo-labels and the labelled scores are reported as not
        applicable). With ``features``, an array gives the target labels of candidates
        that carry none (those that do must agree).
    balanced : bool
        Weigh every target class the same, in the estimators that can
        (:func:`balanced_estimators`: balanced k-NN accuracy, class-weighted SFDA); a
        note lists the estimators that cannot. Without it an imbalanced target (largest
        class more than :data:`IMBALANCE_RATIO` times the smallest) warns
        (:class:`~taskrel.exceptions.AssumptionWarning`).
    text_col, label_col : str
        Columns of a CSV/TSV target (``label_col``: also of ``.parquet`` features).
    image_size : int or None
        Input size of every named image encoder. None (default): each model's own
        (timm: its pretrained config's input size; torchvision: its weights'
        transforms' crop; open_clip: the model's image size; the packaged
        EfficientNet-Lite0/1/2: 224/240/260 px, slow on a CPU; ``smallcnn:`` the size
        it was trained at). A spec's own ``image_size=`` overrides it. A size a model
        cannot take is a :class:`TaskrelInputError` naming the encoder, the size asked
        and the sizes it takes. Each row's ``image_size`` records the size used.
    max_reference, max_target : int
        Training rows used, stratified by class (each class keeps its share and at
        least 2 rows; :func:`taskrel._internal.sampling.stratified_rows`); with
        ``features`` the same rule picks the given rows.
    feature_dim : int
        The dimension cap (when features are wider). The target-only estimators read
        the target on its own top ``feature_dim`` principal directions (fitted on the
        target's rows, so they do not depend on the reference); task-relatedness and
        the scores that read the reference (``source_task`` inputs: OTCE, OT-NCE) read
        both tasks on the reference's.
    seed : int
        Task-relatedness's seed.
    device : str
        ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    cache_dir : path, None or False
        Feature and ranking cache root (None: ``$TASKREL_CACHE_DIR`` or
        ``~/.cache/taskrel``); False disables both caches. Not used with ``features``
        (nothing is extracted, and the ranking is recomputed).
    skip_unreadable : bool
        Skip unreadable images of an image-folder target instead of failing.
    encoder_options : dict, optional
        Passed to :func:`~taskrel.encoders.load_encoder` for every named encoder
        (``{"download": True}`` lets the ``timm:``/``hf:``/... adapters fetch weights);
        a spec's own options win.
    progress : bool
        Progress bars.

    Returns
    -------
    Ranking
        Best first; ``ranking.to_dict()`` is the JSON output.

    Raises
    ------
    TaskrelInputError
        Bad input, before any work: naming the argument (or file), what was expected
        and what was given.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> X, y = load_digits(return_X_y=True)
    >>> r = rank(features={"pixels": X[:300], "half": X[:300, ::2]}, labels=y[:300],
    ...          estimators="knn_accuracy,sfda", progress=False)
    >>> r.best, r.rows[0]["not_computed"]
    ('pixels', {})
    """
    t0 = time.perf_counter()
    given = None if isinstance(labels, (bool, np.bool_)) else labels
    est = _check_estimators(estimators, labels=given is not None or bool(labels))
    opts = {"labels": True if given is not None else bool(labels),
            "balanced": check_bool(balanced, "balanced"),
            "image_size": None if features is not None else _check_size(image_size),
            "seed": int(seed),
            "max_reference": _check_int("max_reference", max_reference, 10),
            "max_target": _check_int("max_target", max_target, 4),
            "feature_dim": _check_int("feature_dim", feature_dim, 1),
            "device": device}
    from ._internal.devices import check_device

    check_device(device)
    if features is not None:
        if target is not None or encoders is not None:
            raise TaskrelInputError(
                "pass either `features` (precomputed, one entry per candidate) or "
                "`target` and `encoders`, not both")
        raw, tdesc, rdesc, cached = (*_given_rows(features, given, reference, est, opts,
                                                  label_col, progress), False)
    else:
        if target is None or encoders is None or given is not None:
            raise TaskrelInputError(
                "`target` and `encoders` are required (or `features`, precomputed), and "
                "`labels` is True or False with them (a target carries its labels); got "
                f"target={type(target).__name__}, encoders={type(encoders).__name__}, "
                f"labels={type(labels).__name__}")
        raw, tdesc, rdesc, cached = _model_rows(
            target, encoders, reference, est, opts, text_col=text_col,
            label_col=label_col, skip_unreadable=skip_unreadable,
            encoder_options=encoder_options, cache_dir=cache_dir, progress=progress)
    rows, voters, notes = _assemble(raw, est, rdesc["classes"])
    from .scores import get_score

    return Ranking(rows, est, voters, {e: get_score(e).direction for e in est}, tdesc,
                   rdesc, opts, round(time.perf_counter() - t0, 3), cached,
                   tuple(notes + _balanced_notes(est, opts["balanced"])
                         + _size_note(raw, opts["image_size"])))


def _model_rows(target: Any, encoders: Any, reference: Any, est: tuple[str, ...],
                opts: dict[str, Any], *, text_col: str, label_col: str,
                skip_unreadable: bool, encoder_options: dict[str, Any] | None,
                cache_dir: Any, progress: bool
                ) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any], bool]:
    """Raw rows, target and reference descriptions and whether the rows came from the
    ranking cache, for a target task and encoders (features extracted, cached)."""
    from ._internal.versions import package_version
    from .features.extract import default_cache_dir, selected_rows

    device, labels = opts["device"], opts["labels"]
    # A photo folder decodes only the rows the ranking encodes.
    tgt_ds = resolve_target(target, text_col=text_col, label_col=label_col,
                            labels=labels, skip_unreadable=skip_unreadable,
                            limit=opts["max_target"])
    ref_ds = resolve_reference(reference, tgt_ds.modality, text_col=text_col,
                               label_col=label_col, limit=opts["max_reference"])
    encs = resolve_encoders(encoders, tgt_ds.modality, device=device,
                            image_size=opts["image_size"], options=encoder_options)
    if labels:
        y = np.asarray(tgt_ds.y_train)[selected_rows(tgt_ds, "train", opts["max_target"])]
        warn_if_imbalanced(tgt_ds.name, y, opts["balanced"])
    cache = None if cache_dir is False else (
        default_cache_dir() if cache_dir in (None, True) else Path(cache_dir))
    tdesc = _describe(tgt_ds, opts["max_target"])
    rdesc = _describe(ref_ds, opts["max_reference"])
    path = _cache_file(cache, {
        "format": _FORMAT, "taskrel": package_version("taskrel"), "target": tdesc,
        "reference": rdesc,
        "encoders": [{"label": _row_name(e), **e.cache_key()} for e in encs],
        "estimators": est, "options": {k: v for k, v in opts.items() if k != "device"},
        # A CUDA device switches the fast recipe to the batched entropic solver and the
        # torch scores to GPU arithmetic: the device kind is part of the answer's identity.
        "device": _device_kind(device)})
    got = _read_cached(path)
    if got is None:
        got = _compute(encs, ref_ds, tgt_ds, est, opts, cache, progress)
        if path is not None and not any(r.get("error") for r in got["raw"]):
            atomic_write_json(path, got)  # a failed extraction may pass on a rerun
    return got["raw"], tdesc, rdesc, bool(got.get("cached", False))


def _given_rows(features: Any, labels: Any, reference: Any, est: tuple[str, ...],
                opts: dict[str, Any], label_col: str, progress: bool
                ) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """Raw rows and the target and reference descriptions for precomputed features
    (:mod:`taskrel.features.precomputed`): every candidate's rows capped by the same
    stratified rule, then scored as the model path scores extracted features."""
    from tqdm.auto import tqdm

    from ._internal.sampling import limited_rows
    from .features.precomputed import precomputed_candidates
    from .io import Task

    cands = precomputed_candidates(features, labels=labels, reference=reference,
                                   label_col=label_col)
    origins = ", ".join(c.origin for c in cands)
    y_raw = cands[0].labels
    if y_raw is None and opts["labels"]:
        raise TaskrelInputError(
            f"`labels`: the target labels are missing (no labels in {origins}); give "
            "them (CLI: --labels FILE; Python: labels=array), or rank label-free "
            "(--no-labels / labels=False)")
    names, y = (None, None) if y_raw is None else np.unique(y_raw, return_inverse=True)
    n = cands[0].features.shape[0]
    if y is not None:
        _check_class_counts("the features' target", y, [str(c) for c in names],
                            opts["labels"])
    elif n < 4:
        raise TaskrelInputError(f"`features` hold {n} target row(s); ranking needs at "
                                "least 4")
    rows = limited_rows(n, opts["max_target"], y)
    if y is not None and opts["labels"]:
        warn_if_imbalanced("the features' target", y[rows], opts["balanced"])
    ref_c = next((c for c in cands if c.reference_labels is not None), None)
    ref_names, yr = (None, None) if ref_c is None else np.unique(
        ref_c.reference_labels, return_inverse=True)
    if yr is not None and ref_names.size < 2:
        raise TaskrelInputError(f"the reference rows of {ref_c.origin} need at least 2 "
                                f"classes; got {ref_names.tolist()}")
    rrows = None if yr is None else limited_rows(yr.size, opts["max_reference"], yr)
    raw = []
    for c in tqdm(cands, desc="rank: candidates", unit="candidate", disable=not progress):
        tgt = Task(features=c.features[rows], labels=None if y is None else y[rows],
                   source_probs=None if c.source_probs is None else c.source_probs[rows],
                   path=c.origin)
        ref = None if c.reference_features is None else Task(
            features=c.reference_features[rrows], labels=yr[rrows], path=c.origin)
        raw.append(_scored_row(c.name, ref, tgt, est, opts, c.source_probs is not None))
    tdesc = _describe_given("precomputed features", y_raw, rows.size, origins)
    rdesc = _describe_given(
        "none given" if ref_c is None else "reference rows given with the features",
        None if ref_c is None else ref_c.reference_labels,
        0 if rrows is None else rrows.size,
        ", ".join(c.origin for c in cands if c.reference_labels is not None))
    return raw, tdesc, rdesc


def _describe_given(name: str, y: Any, rows: int, source: str) -> dict[str, Any]:
    """A task description (as :func:`_describe`) for rows given as features."""
    h = hashlib.sha256()
    if y is not None:
        a = np.ascontiguousarray(y)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    return {"name": name, "modality": "features", "rows": int(rows),
            "classes": 0 if y is None else int(np.unique(y).size), "source": source,
            "fingerprint": h.hexdigest()[:16]}


#: Largest / smallest class count of the target above which :func:`rank` warns that
#: the accuracy-like estimators mostly measure the large classes (without ``balanced``).
IMBALANCE_RATIO = 3.0


def warn_if_imbalanced(name: str, y: Any, balanced: bool) -> None:
    """Warn (:class:`~taskrel.exceptions.AssumptionWarning`) when the target's largest
    class has more than :data:`IMBALANCE_RATIO` times the rows of its smallest and
    ``balanced`` is off: k-NN accuracy and SFDA then mostly reward the large classes."""
    from .exceptions import AssumptionWarning

    counts = np.unique(np.asarray(y), return_counts=True)[1]
    if balanced or counts.size < 2 or counts.max() <= IMBALANCE_RATIO * counts.min():
        return
    warnings.warn(
        f"target {name!r} is imbalanced: its largest class has {counts.max()} rows, its "
        f"smallest {counts.min()} ({counts.max() / counts.min():.1f}x > "
        f"{IMBALANCE_RATIO:g}x), so k-NN accuracy and SFDA mostly measure the large "
        "classes; pass --balanced (Python: balanced=True) for balanced k-NN accuracy "
        "and class-weighted SFDA", AssumptionWarning, stacklevel=3)


def _balanced_notes(est: tuple[str, ...], balanced: bool) -> list[str]:
    if not balanced:
        return []
    can = [e for e in est if e in balanced_estimators()]
    cannot = [e for e in est if e not in can and e != "task_relatedness"]
    return [f"balanced: {', '.join(can) or 'no estimator'} weigh every class the same"
            + (f"; {', '.join(cannot)} cannot and weigh every row the same"
               if cannot else "")]


def _device_kind(device: str) -> str:
    """``cpu`` or ``cuda``: what ``device`` (``auto`` included) resolves to here."""
    from ._internal.devices import resolve_device

    return resolve_device(device).type


def _read_cached(path: Path | None) -> dict[str, Any] | None:
    if path is None or not path.is_file():
        return None
    try:
        got = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(got, dict) or not isinstance(got.get("raw"), list):
        return None
    return {**got, "cached": True}


def _compute(encs: list[Any], ref_ds: Any, tgt_ds: Any, est: tuple[str, ...],
             opts: dict[str, Any], cache: Path | None, progress: bool) -> dict[str, Any]:
    from tqdm.auto import tqdm

    raw = []
    for enc in tqdm(encs, desc="rank: encoders", unit="encoder", disable=not progress):
        raw.append(_encoder_row(enc, ref_ds, tgt_ds, est, opts, cache, progress))
    if all(r.get("error") for r in raw):
        raise TaskrelInputError("every encoder failed: " + "; ".join(
            f"{r['encoder']}: {r['error']}" for r in raw))
    return {"raw": raw}


# ---------------------------------------------------------------------------------
# plots
# ---------------------------------------------------------------------------------
def plot_ranking(ranking: Ranking, out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write ``ranking.png`` (consensus and per-estimator ranks) and
    ``decomposition.png`` (task-relatedness's three terms per encoder) to ``out_dir``;
    return the paths written (none without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = list(ranking.rows)
    names = [r["encoder"] for r in rows][::-1]
    y = np.arange(len(rows))
    n_est = len(ranking.estimators)
    fig, ax = plt.subplots(figsize=(9.5, 1.4 + 0.8 * len(rows)))
    cons = [np.nan if r["consensus_rank"] is None else r["consensus_rank"] for r in rows]
    ax.barh(y, cons[::-1], height=0.8, color="0.85", label="consensus rank")
    for j, est in enumerate(ranking.estimators):
        rk = [r["ranks"].get(est) for r in rows][::-1]
        pts = [(v, i) for i, v in enumerate(rk) if v is not None]
        if pts:
            off = 0.6 * ((j + 0.5) / n_est - 0.5)  # one row of markers per estimator
            ax.scatter([p[0] for p in pts], [p[1] + off for p in pts], s=28,
                       label=est + ("" if est in ranking.voters else " (no vote)"),
                       marker="o^sDvP*"[j % 7], zorder=3)
    ax.set_yticks(y, names)
    ax.set_xlim(0, len(rows) + 0.5)
    ax.set_xlabel("rank (1 = predicted best)")
    ax.set_title(f"encoders for {ranking.target['name']} (reference "
                 f"{ranking.reference['name']}); best: {ranking.best}")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    paths = [_save(fig, out / "ranking.png", plt)]
    with_terms = [r for r in rows if r.get("terms")]
    if with_terms:
        paths.append(_plot_terms(with_terms, out / "decomposition.png", plt))
    return paths


def _plot_terms(rows: list[dict[str, Any]], path: Path, plt: Any) -> Path:
    x = np.arange(len(rows))
    a = np.array([r["terms"]["reweighted_reference_loss"] for r in rows])
    h = np.array([r["terms"]["label_mismatch"] for r in rows])
    lw = np.array([r["terms"]["lipschitz_x_w1"] for r in rows])
    fig, ax = plt.subplots(figsize=(1.8 + 1.3 * len(rows), 4.2))
    ax.bar(x, a, 0.6, label="reweighted reference loss")
    ax.bar(x, h, 0.6, bottom=a, label="label mismatch")
    ax.bar(x, lw, 0.6, bottom=a + h, label="Lipschitz x W1")
    ax.set_xticks(x, [r["encoder"] for r in rows], rotation=20, ha="right")
    ax.set_ylabel("nats (lower = more related)")
    ax.set_title("task-relatedness bound per encoder, by term")
    ax.legend(fontsize=8)
    return _save(fig, path, plt)


def _save(fig: Any, path: Path, plt: Any) -> Path:
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path
