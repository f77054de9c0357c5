"""The score registry: names -> functions with metadata (timm-style).

Each estimator registers itself with :func:`register_score`; :func:`compute_score`
reads a :class:`taskrel.io.Task` and supplies the inputs the estimator declares.
"""

from __future__ import annotations

import difflib
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..exceptions import TaskrelInputError
from ._common import check_probabilities

__all__ = ["ScoreSpec", "register_score", "list_scores", "get_score", "compute_score",
           "check_score_inputs"]

#: The input kinds an estimator may declare, in the order its positional arguments take.
INPUT_KINDS = ("features", "labels", "source_probs", "source_labels", "source_task")

_REGISTRY: dict[str, ScoreSpec] = {}


@dataclass(frozen=True)
class ScoreSpec:
    """A registered transferability estimator.

    Attributes
    ----------
    name : str
        Registry name (what the CLI takes).
    func : callable
        The pure function; its positional data arguments follow ``inputs`` in order
        (``"source_task"`` stands for two arguments: source features, source labels).
    higher_is_better : bool
        Direction: True when a larger score predicts better transfer.
    inputs : tuple of str
        Input kinds from ``{'features', 'labels', 'source_probs', 'source_labels',
        'source_task'}``.
    summary : str
        One line.
    paper : str
        Short reference (authors, venue, year).
    gpu : bool
        True when ``func`` takes ``device`` and runs in torch (on a GPU if asked);
        False for CPU-only estimators, to which :func:`compute_score` does not pass
        ``device``.
    """

    name: str
    func: Callable[..., float]
    higher_is_better: bool
    inputs: tuple[str, ...]
    summary: str
    paper: str
    gpu: bool = False

    @property
    def direction(self) -> str:
        return "higher is better" if self.higher_is_better else "lower is better"

    def __call__(self, *args: Any, **kwargs: Any) -> float:
        return self.func(*args, **kwargs)


def register_score(
    name: str,
    *,
    higher_is_better: bool,
    inputs: tuple[str, ...],
    summary: str,
    paper: str,
    gpu: bool = False,
) -> Callable[[Callable[..., float]], Callable[..., float]]:
    """Decorator: register ``func`` under ``name`` and return it unchanged."""
    bad = [k for k in inputs if k not in INPUT_KINDS]
    if bad:
        raise ValueError(f"unknown input kind(s) {bad} for score {name!r}")

    def deco(func: Callable[..., float]) -> Callable[..., float]:
        if name in _REGISTRY:
            warnings.warn(f"score {name!r} registered twice; the last one wins",
                          stacklevel=2)
        _REGISTRY[name] = ScoreSpec(name, func, bool(higher_is_better), tuple(inputs),
                                    summary, paper, bool(gpu))
        return func

    return deco


def list_scores() -> list[str]:
    """Names of all registered scores, sorted.

    Examples
    --------
    >>> from taskrel.scores import list_scores
    >>> "logme" in list_scores()
    True
    """
    return sorted(_REGISTRY)


def get_score(name: str) -> ScoreSpec:
    """Return the :class:`ScoreSpec` registered as ``name``.

    Raises
    ------
    TaskrelInputError
        For an unknown name; the message lists the valid names and the closest match.
    """
    if not isinstance(name, str) or name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise TaskrelInputError(
            f"`name` must be a registered score, one of {', '.join(list_scores())}; "
            f"got {name!r}{hint}"
        )
    return _REGISTRY[name]


def _arrays_for(spec: ScoreSpec, task: Any, source: Any) -> list[Any]:
    args: list[Any] = []
    where = getattr(task, "path", None) or "the task"
    for kind in spec.inputs:
        if kind == "features":
            args.append(task.features)
        elif kind == "labels":
            if task.labels is None:
                raise TaskrelInputError(
                    f"score {spec.name!r} needs target labels; {where} has none")
            args.append(task.labels)
        elif kind in ("source_probs", "source_labels"):
            probs = getattr(task, "source_probs", None)
            if probs is None:
                raise TaskrelInputError(
                    f"score {spec.name!r} needs `source_probs` (n x C_s probabilities "
                    f"of the encoder's own head) in the task; {where} has none")
            if kind == "source_probs":
                check_probabilities(probs, "source_probs")  # the score gets them as given
                args.append(probs)
            else:
                args.append(np.argmax(check_probabilities(probs, "source_probs"), axis=1))
        elif kind == "source_task":
            if source is None:
                raise TaskrelInputError(
                    f"score {spec.name!r} needs `source` (a reference task with "
                    f"features and labels); got None")
            if source.labels is None:
                raise TaskrelInputError(
                    f"score {spec.name!r} needs source labels; "
                    f"{getattr(source, 'path', None) or 'the source task'} has none")
            args.extend([source.features, source.labels])
    return args


def _numeric_errors() -> tuple[type[BaseException], ...]:
    """The errors a score raises when its arithmetic fails on valid inputs: NumPy's
    and, when torch is loaded (a score with a torch path ran), torch's
    ``LinAlgError`` (e.g. SFDA's ``eigh`` on constant features)."""
    errors: tuple[type[BaseException], ...] = (np.linalg.LinAlgError, FloatingPointError,
                                               OverflowError)
    torch = sys.modules.get("torch")
    linalg_error = getattr(getattr(torch, "linalg", None), "LinAlgError", None)
    if isinstance(linalg_error, type) and issubclass(linalg_error, BaseException):
        errors += (linalg_error,)
    return errors


def compute_score(name: str, task: Any, *, source: Any = None, **kwargs: Any) -> float:
    """Compute the registered score ``name`` on a task's train split.

    Parameters
    ----------
    name : str
        A name from :func:`list_scores`.
    task : taskrel.io.Task
        The target task; only its train arrays (``features``, ``labels``,
        ``source_probs``) are used, never ``test_*``.
    source : taskrel.io.Task, optional
        Reference task, for scores whose inputs include ``"source_task"`` (OTCE,
        OT-NCE, task-relatedness).
    **kwargs
        Passed to the estimator. ``device`` (``'cpu'``, ``'auto'``, ``'cuda'``,
        ``'cuda:N'``) is validated for every score and passed only to those with a
        torch path (``get_score(name).gpu``); the others run on the CPU whatever it
        says (a documented no-op, so one ``device`` serves a mixed list of scores).

    Returns
    -------
    float
        The score; see ``get_score(name).higher_is_better`` for its direction.
    """
    spec = get_score(name)
    if "device" in kwargs:
        from ._torch_ops import check_device

        check_device(kwargs["device"])
        if not spec.gpu:
            kwargs = {k: v for k, v in kwargs.items() if k != "device"}
    arrays = check_score_inputs(name, task, source=source)
    try:
        value = float(spec.func(*arrays, **kwargs))
    except _numeric_errors() as exc:
        raise TaskrelInputError(
            f"score {name!r} cannot be computed on these features "
            f"({type(exc).__name__}: {str(exc).splitlines()[0][:120]}); they may be "
            "constant, collinear or of extreme scale") from None
    if not np.isfinite(value):
        raise TaskrelInputError(
            f"score {name!r} gave {value} on these features, not a finite value; they "
            "may be constant, collinear or of extreme scale")
    return value


def check_score_inputs(name: str, task: Any, *, source: Any = None) -> list[Any]:
    """Check that ``task`` (and ``source``) hold what score ``name`` reads, before any
    work; return its positional arrays.

    ``source_probs`` must be finite, non-negative probabilities with rows summing to
    1 (within ``PROB_SUM_ATOL``), also for the scores that read only their argmax.
    """
    spec = get_score(name)
    for what, t in (("task", task), ("source", source)):
        if t is None and what == "source":
            continue
        if not all(hasattr(t, a) for a in ("features", "labels")):
            raise TaskrelInputError(
                f"`{what}` must be a taskrel.io.Task (load_task(...) or "
                f"Task(features=..., labels=...)); got {type(t).__name__}")
    return _arrays_for(spec, task, source)
