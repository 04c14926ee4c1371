"""One thread pool at a time: numpy's BLAS threads and torch's OpenMP threads must not take turns.

Work that alternates small numpy matrix products with torch's layers (the anomaly monitor's passes:
a network forward, then the residuals' moments and statistics, batch after batch) makes the two
pools hand the cores back and forth, each spinning while the other works: on 2 cores the monitor
took twice as long as with numpy's BLAS on one thread. `numpy_blas_single_thread` limits numpy's BLAS
to one thread for such a stretch (torch keeps its own threads).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def numpy_blas_single_thread(func: F) -> F:
    """Run `func` with numpy's BLAS on one thread (`threadpoolctl`, which scikit-learn installs)."""
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
