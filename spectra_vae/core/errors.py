"""Errors that name what is wrong with the user's data or run."""

from __future__ import annotations


class DataError(ValueError):
    """Bad input data: a file, array, axis or parameter that cannot be used as given."""


class TrainingError(RuntimeError):
    """Training cannot go on (for example the loss became NaN or infinite)."""


class TrainingWarning(RuntimeWarning):
    """Training went on after something went wrong (for example a recovery from a non-finite loss)."""
