"""Small torch helpers shared by the engine and the scores: device choice, seeding.

Two validators, one rule: :func:`resolve_device` (the engine, encoders, probe and
fine-tuning) and :func:`check_device` (the scores and their CLI) map a device name to
a ``torch.device``; ``"auto"`` is CUDA when torch sees a GPU and the CPU otherwise, and
asking for CUDA on a machine without one is an error, never a silent fallback.
"""

from __future__ import annotations

from typing import Any

import torch

from ..exceptions import TaskrelInputError
from .validation import check_choice

__all__ = ["DEVICES", "resolve_device", "check_device", "generator"]

DEVICES = ("auto", "cpu", "cuda")
_DEVICE_HELP = "'auto', 'cpu', 'cuda' or 'cuda:N' (a str or torch.device)"


def _no_cuda(device: Any) -> TaskrelInputError:
    return TaskrelInputError(
        f"`device` is {device!r} but torch sees no CUDA GPU; use 'cpu' or 'auto'")


def resolve_device(device: str | torch.device) -> torch.device:
    """Map ``"auto" | "cpu" | "cuda" | "cuda:N"`` to a torch device.

    ``"auto"`` picks CUDA when torch sees a GPU and falls back to the CPU otherwise.
    Asking for ``"cuda"`` on a machine without one is an error, not a silent fallback.
    A ``torch.device`` is returned as it is.
    """
    if isinstance(device, torch.device):
        return device
    if isinstance(device, str) and device.startswith("cuda:"):
        name = device
    else:
        name = check_choice(device, "device", DEVICES)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise _no_cuda(device)
    return torch.device(name)


def check_device(device: Any) -> torch.device:
    """Validate ``device`` and return the torch device it names (the scores' rule).

    Stricter than :func:`resolve_device`: a ``torch.device`` is checked too, ``cuda:N``
    must name a GPU torch sees, and anything else is rejected with the list of valid
    forms. ``"auto"`` is CUDA when torch sees a GPU, else the CPU (silently).
    """
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise TaskrelInputError(f"`device` must be {_DEVICE_HELP}; got {device!r}")
    if device in DEVICES:
        return resolve_device(device)
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise TaskrelInputError(f"`device` must be {_DEVICE_HELP}; got {device!r}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise _no_cuda(device)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise TaskrelInputError(
                f"`device` is {device!r} but torch sees {torch.cuda.device_count()} "
                "CUDA GPU(s)")
    return dev


def generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed`` (all random draws happen on the CPU)."""
    g = torch.Generator(device="cpu")
    g.manual_seed(int(seed))
    return g
