"""Messages: the package reports through `logging` (loggers named after its modules) and warnings.

Nothing is printed by the package itself. A library leaves handlers to the application, so by
default nothing would show; `show_messages` (called by `fit` with `verbose=True`) gives the
package's logger a plain handler when neither it nor the root logger has one, so a notebook or a
terminal shows what long work is doing. A user's own logging configuration always wins.
"""

from __future__ import annotations

import logging
import sys

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
