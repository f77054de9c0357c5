r"""Flush denormal floats to zero while features are extracted, then restore the
setting.

A denormal (subnormal) float32 is a nonzero value below ``2**-126`` (about 1.2e-38).
x86 CPUs handle arithmetic on them in microcode, often tens of times slower than on
normal numbers; a network whose activations decay towards zero can spend most of its
time there. With flushing on (the FTZ and DAZ bits of the MXCSR register), denormal
inputs and results are read and written as zero instead, so a value changes by less
than 1.2e-38: features change at that level only.

:func:`torch.set_flush_denormal` has no getter and sets the bits of the *calling
thread* only: torch's intra-op worker threads (OpenMP) keep their own setting
(measured: with 2 threads, half of an elementwise product of denormals is flushed).
:func:`flush_denormals` therefore flushes what runs on the calling thread: all of it
with one intra-op thread, the calling thread's share otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["flush_denormals", "denormals_flushed"]

#: A float32 denormal (below the smallest normal number, 2**-126 ~ 1.18e-38).
_DENORMAL = 1e-39


def denormals_flushed() -> bool:
    """Whether the calling thread flushes denormals to zero now.

    Read from the arithmetic (torch has no getter): ``1e-39 * 1`` in float32 is zero
    with flushing on (a one-element op runs on the calling thread) and 1e-39 without.
    """
    import torch

    return bool((torch.tensor([_DENORMAL], dtype=torch.float32) * 1.0).item() == 0.0)


@contextmanager
def flush_denormals(enabled: bool = True) -> Iterator[bool]:
    """Flush denormals to zero on the calling thread inside the block, then restore the
    previous setting (also after an exception).

    Yields whether flushing is on inside the block (False where the CPU cannot: torch
    supports it on x86 with SSE3 and on ARM; and without torch, which an extraction by a
    numpy-only text encoder does not need).

    Examples
    --------
    >>> with flush_denormals() as on:
    ...     inside = denormals_flushed()
    >>> inside == on, denormals_flushed()
    (True, False)
    """
    try:
        import torch
    except ImportError:
        yield False
        return
    before = denormals_flushed()
    if enabled == before:
        yield before
        return
    supported = torch.set_flush_denormal(enabled)
    try:
        yield bool(enabled and supported)
    finally:
        torch.set_flush_denormal(before)
