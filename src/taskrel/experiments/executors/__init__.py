"""Executors: where the cells of an experiment grid run.

An executor has one method, ``imap_unordered(fn, items)``, which yields
``(item, result)`` pairs in completion order, where ``result`` is ``fn(item)`` or the
exception it raised (an executor never stops the grid because one cell failed). The
driver process (:func:`taskrel.experiments.run_grid`) writes each result to the store
as it arrives, whatever executor computed it.

``"local"`` (default) runs the cells one after another in this process;
``"ray"`` spreads them over a Ray cluster (``pip install 'taskrel[ray]'``).

Examples
--------
>>> ex = get_executor("local")
>>> sorted(r for _, r in ex.imap_unordered(lambda x: x * x, [1, 2, 3]))
[1, 4, 9]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, TypeVar

from ...exceptions import TaskrelInputError

__all__ = ["Executor", "LocalExecutor", "get_executor", "EXECUTORS"]

T = TypeVar("T")
R = TypeVar("R")

EXECUTORS = ("local", "ray")


class Executor(Protocol):
    """What :func:`taskrel.experiments.run_grid` needs from an executor."""

    def imap_unordered(
        self, fn: Callable[[T], R], items: Iterable[T]
    ) -> Iterator[tuple[T, R | BaseException]]: ...


class LocalExecutor:
    """Serial, in-process execution (the default; no extra dependency)."""

    name = "local"

    def imap_unordered(
        self, fn: Callable[[T], R], items: Iterable[T]
    ) -> Iterator[tuple[T, R | BaseException]]:
        for item in items:
            try:
                result: R | BaseException = fn(item)
            except Exception as exc:  # a failed cell is reported, the grid goes on
                result = exc
            yield item, result

    def __repr__(self) -> str:
        return "LocalExecutor()"


def get_executor(name: str, **kwargs: Any) -> Executor:
    """Make an executor by name: ``"local"`` or ``"ray"`` (``address=None`` starts a
    local Ray instance, a string connects to an existing cluster).

    Raises
    ------
    TaskrelInputError
        For an unknown name, or ``"ray"`` when Ray (or taskrel's Ray executor) is not
        installed.
    """
    if name == "local":
        if kwargs:
            raise TaskrelInputError(
                f"the local executor takes no options; got {sorted(kwargs)}"
            )
        return LocalExecutor()
    if name == "ray":
        try:
            from .ray_executor import RayExecutor
        except ModuleNotFoundError as exc:
            missing = exc.name or ""
            if missing == "ray" or missing.startswith("ray.") or missing.endswith(
                "ray_executor"
            ):
                raise TaskrelInputError(
                    "executor 'ray' needs Ray and taskrel's Ray executor: "
                    f"`pip install 'taskrel[ray]'` (missing module {missing!r})"
                ) from None
            raise
        return RayExecutor(**kwargs)
    raise TaskrelInputError(
        f"`executor` must be one of {', '.join(repr(e) for e in EXECUTORS)}; got {name!r}"
    )
