"""Experiment grids: suite configs, the results store, executors, analyses, reports."""

from __future__ import annotations

from .suite import CellResult as CellResult
from .suite import DatasetSpec as DatasetSpec
from .suite import ExperimentConfig as ExperimentConfig
from .suite import GridReport as GridReport
from .suite import expand_grid as expand_grid
from .suite import load_config as load_config
from .suite import parse_config as parse_config
from .suite import run_grid as run_grid
from .suite import subset_cells as subset_cells

__all__ = ["DatasetSpec", "ExperimentConfig", "GridReport", "CellResult", "load_config",
           "parse_config", "expand_grid", "run_grid", "subset_cells"]
