"""The task-relatedness engine: the bound on the target loss and its stages."""

from __future__ import annotations

from .engine import B_MODES as B_MODES
from .engine import RECIPES as RECIPES
from .engine import split_task as split_task
from .engine import task_relatedness as task_relatedness
from .tau import PAPER_TAU as PAPER_TAU
from .tau import auto_tau as auto_tau
from .tau import resolve_tau as resolve_tau

__all__ = ["task_relatedness", "auto_tau", "split_task", "RECIPES", "B_MODES", "PAPER_TAU",
           "resolve_tau"]
