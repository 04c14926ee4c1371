"""Messages: the package reports through `logging` (loggers named after its modules) and warnings.

Nothing is printed by the package itself. A library leaves handlers to the application, so by
default nothing would show; `show_messages` (called by `fit` with `verbose=True`) gives the
package's logger a plain handler when neither it nor the root logger has one, so a notebook or a
terminal shows what long work is doing. A user's own logging configuration always wins.
`plain_warnings` (the notebooks' first cell) shows the package's warnings as their message alone.
"""

from __future__ import annotations

import logging
import sys
import warnings

from .errors import TrainingWarning

PACKAGE = "spectra_vae"


def show_messages(level: int = logging.INFO) -> logging.Logger:
    """The package's logger, with a handler writing to stderr at `level` if nothing is configured."""
    logger = logging.getLogger(PACKAGE)
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False
    return logger


_PYTHON_FORMAT = warnings.formatwarning


def _plain_format(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  line: str | None = None) -> str:
    if issubclass(category, (UserWarning, TrainingWarning)):
        return f"{category.__name__}: {message}\n"
    return _PYTHON_FORMAT(message, category, filename, lineno, line)


def plain_warnings() -> None:
    """Show the package's warnings (`UserWarning`s about the data, `TrainingWarning`) as one line,
    `UserWarning: message`, without the file, line number and source line of the call that raised them: in a
    notebook that is the user's own cell, which says nothing. Other warnings keep Python's format. The
    notebooks call it in their first cell; it changes how this process shows warnings, so a library never does."""
    warnings.formatwarning = _plain_format
