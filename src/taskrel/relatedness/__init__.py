"""The task-relatedness engine: the bound on the target loss and its stages."""

from __future__ import annotations

from .engine import B_MODES as B_MODES
from .engine import PAPER_TAU as PAPER_TAU
from .engine import RECIPES as RECIPES
from .engine import auto_tau as auto_tau
from .engine import split_task as split_task
from .engine import task_relatedness as task_relatedness

__all__ = ["task_relatedness", "auto_tau", "split_task", "RECIPES", "B_MODES", "PAPER_TAU"]
