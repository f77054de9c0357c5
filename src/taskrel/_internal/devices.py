"""Small torch helpers shared by the engine: device choice, threads, seeding."""

from __future__ import annotations

import torch

from ..exceptions import TaskrelInputError
from .validation import check_choice

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str | torch.device) -> torch.device:
    """Map ``"auto" | "cpu" | "cuda" | "cuda:N"`` to a torch device.

    ``"auto"`` picks CUDA when torch sees a GPU and falls back to the CPU otherwise.
    Asking for ``"cuda"`` on a machine without one is an error, not a silent fallback.
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
        raise TaskrelInputError(
            f"`device` is {device!r} but torch sees no CUDA GPU; use 'cpu' or 'auto'"
        )
    return torch.device(name)


def generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed`` (all random draws happen on the CPU)."""
    g = torch.Generator(device="cpu")
    g.manual_seed(int(seed))
    return g
