"""The task-relatedness engine: the bound on the target loss, as a pipeline of stages.

``task_relatedness`` (one call) and :class:`TaskRelatedness` (fit a reference once,
relate it to many targets) run the same stages: splits -> reference head -> target
labels -> label map B and prior D -> feature map (A, b) from :data:`SOLVERS` ->
held-out bound -> assumption checks -> result. See ``docs/architecture.md``.
"""

from __future__ import annotations

from .config import B_MODES as B_MODES
from .config import RECIPES as RECIPES
from .config import RelatednessConfig as RelatednessConfig
from .engine import task_relatedness as task_relatedness
from .estimator import TaskRelatedness as TaskRelatedness
from .solvers import SOLVERS as SOLVERS
from .splits import split_task as split_task
from .tau import PAPER_TAU as PAPER_TAU
from .tau import auto_tau as auto_tau
from .tau import resolve_tau as resolve_tau

__all__ = ["task_relatedness", "TaskRelatedness", "RelatednessConfig", "auto_tau",
           "resolve_tau", "split_task", "RECIPES", "B_MODES", "PAPER_TAU", "SOLVERS"]
