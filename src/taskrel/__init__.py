"""taskrel: will this pre-trained encoder transfer to my task, and why?

Task-relatedness (Mehra, Zhang & Hamm, NeurIPS 2024): an upper bound on the target loss
built from a reference task transformed to look like the target.
"""

from __future__ import annotations

from .exceptions import AssumptionWarning as AssumptionWarning
from .exceptions import ConvergenceWarning as ConvergenceWarning
from .exceptions import TaskrelInputError as TaskrelInputError
from .heads import LinearHead as LinearHead
from .heads import train_linear_head as train_linear_head
from .features.encoders.specs import load_zoo as load_zoo
from .io import load_task as load_task
from .probe import linear_probe as linear_probe
from .probe import logistic_probe as logistic_probe
from .ranking import Ranking as Ranking
from .ranking import rank as rank
from .relatedness import auto_tau as auto_tau
from .relatedness import task_relatedness as task_relatedness
from .result import ProbeResult as ProbeResult
from .result import RelatednessResult as RelatednessResult

__version__ = "0.1.0"

__all__ = [
    "AssumptionWarning",
    "ConvergenceWarning",
    "LinearHead",
    "ProbeResult",
    "Ranking",
    "RelatednessResult",
    "TaskrelInputError",
    "auto_tau",
    "linear_probe",
    "logistic_probe",
    "rank",
    "load_task",
    "load_zoo",
    "task_relatedness",
    "train_linear_head",
    "__version__",
]
