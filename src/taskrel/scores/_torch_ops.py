"""Torch building blocks for the estimators with a GPU path (the same code runs on CPU).

Arithmetic is float64 unless a function says otherwise. Reductions that feed a
score are BLAS products (no atomics), so a result does not depend on the order in
which GPU threads happen to finish.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from .._internal.devices import check_device as check_device
from ._common import gram as _np_gram

#: Largest one-hot block (rows x classes) formed at once by :func:`class_sums`.
_ONEHOT_ELEMS = 1 << 24


def to_tensor(a: NDArray[Any], device: torch.device,
              dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``a`` on ``device`` (no copy for a writable float64 array on the CPU)."""
    if not (a.flags.writeable and a.flags.c_contiguous):
        a = np.array(a, order="C")  # torch warns on read-only arrays; never write them
    return torch.from_numpy(a).to(device=device, dtype=dtype)


def labels_tensor(y: NDArray[np.int64], device: torch.device) -> torch.Tensor:
    return to_tensor(np.asarray(y, dtype=np.int64), device, torch.int64)


def class_counts(y: torch.Tensor, C: int) -> torch.Tensor:
    """Samples per class (float64, C)."""
    return torch.bincount(y, minlength=C).to(torch.float64)


def class_sums(A: torch.Tensor, y: torch.Tensor, C: int) -> torch.Tensor:
    """Per-class row sums of ``A`` (C x d): one-hot products over row blocks.

    O(n d C) flops like one dense product, deterministic on every device, and never
    more than ``2**24`` one-hot entries at once (a one-hot ImageNet label matrix would
    be 10 GB in float64).
    """
    n = A.shape[0]
    step = max(1, _ONEHOT_ELEMS // max(C, 1))
    out = torch.zeros((C, A.shape[1]), dtype=A.dtype, device=A.device)
    for s in range(0, n, step):
        yb = y[s:s + step]
        Y = torch.zeros((yb.numel(), C), dtype=A.dtype, device=A.device)
        Y[torch.arange(yb.numel(), device=A.device), yb] = 1.0
        out += Y.T @ A[s:s + step]
    return out


def gram(A: torch.Tensor, *, rows: bool = False) -> torch.Tensor:
    """Symmetric ``A^T A`` (or ``A A^T`` with ``rows=True``).

    For a float64 CPU tensor this is BLAS ``dsyrk`` through scipy (one triangle: half
    the flops of the ``matmul`` torch would run, measured 1.6x faster at 20000 x 512
    on one thread); elsewhere a plain product. Same quantity, only the kernel differs.
    """
    if A.device.type == "cpu" and A.dtype == torch.float64:
        return torch.from_numpy(_np_gram(A.numpy(), rows=rows))
    return A @ A.T if rows else A.T @ A
