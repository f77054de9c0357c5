"""Run the cells of a grid as Ray tasks (``pip install 'taskrel[ray]'``).

:class:`RayExecutor` has the executor interface of :mod:`taskrel.experiments.executors`:
``imap_unordered(fn, items)`` yields ``(item, result)`` in completion order, where
``result`` is ``fn(item)`` or the exception it raised. A Python exception inside ``fn``
is a result, not a reason to retry (it would fail again); a dead worker process
(killed, out of memory, ``os._exit``) is retried by Ray up to ``max_retries`` times,
and only after that is the item reported with Ray's error.
"""

from __future__ import annotations

import copy
import os
import pickle
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from ..._internal.validation import check_positive
from ...exceptions import TaskrelInputError

__all__ = ["RayExecutor", "CellError"]

T = TypeVar("T")
R = TypeVar("R")


class CellError(RuntimeError):
    """An exception raised by ``fn`` on a worker that could not be sent back as is."""


class _Raised:
    """``fn`` raised: carries the exception (or its text) back to the driver."""

    def __init__(self, exc: BaseException) -> None:
        self.text = "".join(traceback.format_exception(exc))
        try:
            pickle.dumps(exc)
        except Exception:  # an unpicklable exception comes back as its traceback text
            exc = None
        self.exc = exc


def _import_ray() -> Any:
    """Ray, imported on first use (this module imports without it, e.g. for doctests)."""
    try:
        import ray
    except ModuleNotFoundError as exc:
        if exc.name != "ray":
            raise
        raise TaskrelInputError(
            "the Ray executor needs Ray: `pip install 'taskrel[ray]'`"
        ) from None
    return ray


def _driver_paths() -> list[str]:
    """The driver's import path, less the interpreter's own (workers share those)."""
    src = str(Path(__file__).resolve().parents[4])  # .../src, above the taskrel package
    prefixes = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix)}
    out = [src]
    for p in sys.path:
        rp = os.path.realpath(p or os.getcwd())
        if os.path.isdir(rp) and not any(rp.startswith(pre) for pre in prefixes) \
                and rp not in out:
            out.append(rp)
    return out


def _call(fn: Callable[[Any], Any], item: Any) -> Any:
    try:
        return fn(item)
    except Exception as exc:  # reported as the cell's result; never retried
        return _Raised(exc)


class RayExecutor:
    """Spread ``fn(item)`` calls over a Ray cluster.

    Parameters
    ----------
    address : str, optional
        An existing cluster (``"auto"``, ``"ray://host:10001"``, ...). ``None``
        starts a local Ray instance on first use (stopped by :meth:`shutdown`), or
        uses the one already running in this process.
    num_cpus : int, optional
        CPUs of the local instance (``None``: all). Ignored with ``address``.
    num_gpus_per_task : float, default 0
        GPUs reserved by each task (for feature extraction or ``device="cuda"``).
    max_retries : int, default 3
        Retries of a task whose worker process died.
    progress : bool, default False
        Show a tqdm bar.
    max_in_flight : int, default 1000
        Tasks submitted ahead of the results being read.
    init_kwargs : dict, optional
        Extra keyword arguments for ``ray.init`` (e.g. ``object_store_memory``).
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        num_cpus: int | None = None,
        num_gpus_per_task: float = 0,
        *,
        max_retries: int = 3,
        progress: bool = False,
        max_in_flight: int = 1000,
        init_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if address is not None and not isinstance(address, str):
            raise TaskrelInputError(f"`address` must be a string or None; got {address!r}")
        if num_cpus is not None:
            num_cpus = check_positive(num_cpus, "num_cpus", integer=True)
        self.address = address
        self.num_cpus = num_cpus
        self.num_gpus_per_task = check_positive(num_gpus_per_task, "num_gpus_per_task",
                                                allow_zero=True)
        self.max_retries = check_positive(max_retries, "max_retries", integer=True,
                                          allow_zero=True)
        self.max_in_flight = check_positive(max_in_flight, "max_in_flight", integer=True)
        self.progress = bool(progress)
        self.init_kwargs = dict(init_kwargs or {})
        self._started = False
        self._ray = _import_ray()

    def _ensure_ray(self) -> None:
        ray = self._ray
        if ray.is_initialized():
            return
        kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        kw.update(self.init_kwargs)
        if self.address is None:
            # Local workers import what the driver imports (taskrel from a source
            # checkout, the driver script's own modules): give them its sys.path.
            env = kw.setdefault("runtime_env", {}).setdefault("env_vars", {})
            env.setdefault("PYTHONPATH", os.pathsep.join(_driver_paths()))
            ray.init(num_cpus=self.num_cpus, **kw)
        else:
            ray.init(address=self.address, **kw)
        self._started = True

    def shutdown(self) -> None:
        """Stop the Ray instance this executor started (no-op otherwise)."""
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()
        self._started = False

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def imap_unordered(
        self, fn: Callable[[T], R], items: Iterable[T]
    ) -> Iterator[tuple[T, R | BaseException]]:
        """Yield ``(item, fn(item) or its exception)`` as tasks finish."""
        self._ensure_ray()
        ray = self._ray
        items = list(items)
        remote = ray.remote(
            num_cpus=1, num_gpus=self.num_gpus_per_task, max_retries=self.max_retries,
            retry_exceptions=False,
        )(_call)
        fn_ref = ray.put(fn)
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(items), desc="grid (ray)", unit="cell")
        pending: dict[Any, T] = {}
        todo = iter(items)
        try:
            while True:
                while len(pending) < self.max_in_flight:
                    try:
                        item = next(todo)
                    except StopIteration:
                        break
                    pending[remote.remote(fn_ref, item)] = item
                if not pending:
                    return
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    item = pending.pop(ref)
                    try:
                        out = ray.get(ref)
                    except Exception as exc:  # worker died after all retries
                        result: Any = exc
                    else:
                        result = out
                        if isinstance(out, _Raised):
                            result = out.exc if isinstance(out.exc, BaseException) \
                                else CellError(out.text)
                    if bar is not None:
                        bar.update(1)
                    yield item, result
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
            if bar is not None:
                bar.close()

    def cluster_gpus(self) -> float:
        """GPUs in the cluster (starting or joining it if needed)."""
        self._ensure_ray()
        return float(self._ray.cluster_resources().get("GPU", 0.0))

    def with_gpus(self, num_gpus_per_task: float) -> RayExecutor:
        """This executor with another GPU reservation per task, on the same Ray
        instance (only the executor that started the instance shuts it down)."""
        new = copy.copy(self)
        new.num_gpus_per_task = check_positive(num_gpus_per_task, "num_gpus_per_task",
                                               allow_zero=True)
        new._started = False
        return new

    def __repr__(self) -> str:
        return (f"RayExecutor(address={self.address!r}, num_cpus={self.num_cpus!r}, "
                f"num_gpus_per_task={self.num_gpus_per_task!r})")
