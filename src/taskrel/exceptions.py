"""Exceptions and warnings raised by taskrel."""

from __future__ import annotations

__all__ = ["TaskrelInputError", "ConvergenceWarning", "AssumptionWarning"]


class TaskrelInputError(ValueError):
    """Bad input: the message names the argument, what was expected and what was given."""


class ConvergenceWarning(UserWarning):
    """An iterative solver stopped before meeting its tolerance; the text names the knob."""


class AssumptionWarning(UserWarning):
    """A run-time check of an assumption of the bound failed (see docs/theory.md)."""
