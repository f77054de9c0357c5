"""Retry a batched computation with a smaller batch when memory runs out.

The computation is re-run from scratch at each size, so a result is always the
result of one complete call: an out-of-memory error never leaves a partial (and so
wrong) number behind.
"""

from __future__ import annotations

import gc
import warnings
from typing import Callable, TypeVar

from .validation import check_positive

__all__ = ["with_oom_fallback", "BatchSizeWarning", "is_oom_error"]

T = TypeVar("T")


class BatchSizeWarning(ResourceWarning):
    """The requested batch did not fit in memory; a smaller one was used."""


def is_oom_error(exc: BaseException) -> bool:
    """True for CUDA out-of-memory, Python ``MemoryError`` and torch's CPU allocator error."""
    if isinstance(exc, MemoryError):
        return True
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    oom_cls = getattr(torch.cuda, "OutOfMemoryError", None)
    if oom_cls is not None and isinstance(exc, oom_cls):
        return True
    if isinstance(exc, RuntimeError):
        msg = str(exc)
        return "out of memory" in msg or "can't allocate memory" in msg
    return False


def _free_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass


def with_oom_fallback(
    fn: Callable[[int], T], batch_size: int, *, min_batch: int = 1
) -> T:
    """Call ``fn(batch_size)``, halving the batch on out-of-memory until it fits.

    Parameters
    ----------
    fn : callable
        ``fn(batch)`` runs the whole computation with batches of ``batch`` rows and
        returns its result. It must not keep state between calls: every retry starts
        over.
    batch_size : int
        The batch to try first.
    min_batch : int, default 1
        The smallest batch to try. Below it the last out-of-memory error is raised.

    Returns
    -------
    The result of the first call that completes.

    Warns
    -----
    BatchSizeWarning
        Each time a batch is halved (the message names both sizes).

    Examples
    --------
    >>> def f(b):
    ...     if b > 100:
    ...         raise MemoryError
    ...     return b
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     with_oom_fallback(f, 1000, min_batch=10)
    62
    """
    batch = check_positive(batch_size, "batch_size", integer=True)
    floor = check_positive(min_batch, "min_batch", integer=True)
    if floor > batch:
        from ..exceptions import TaskrelInputError

        raise TaskrelInputError(
            f"`min_batch` must be <= `batch_size`; got {floor} > {batch}"
        )
    while True:
        kind = None
        try:
            return fn(batch)
        except BaseException as exc:  # noqa: BLE001 - filtered just below
            if not is_oom_error(exc) or batch // 2 < floor:
                raise
            kind = type(exc).__name__
        # Outside the handler, so the traceback (and the tensors it holds) is gone.
        _free_memory()
        smaller = batch // 2
        warnings.warn(
            f"out of memory ({kind}) with batch {batch}; retrying with batch {smaller}",
            BatchSizeWarning,
            stacklevel=2,
        )
        batch = smaller
