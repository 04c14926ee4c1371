"""What this machine can hold: memory and disk, asked before anything large is allocated or written."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .errors import DataError


def physical_memory() -> int:
    """Bytes of physical memory on this machine (16 GiB where it cannot be asked)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 16 << 30


def memory_limit() -> int:
    """Bytes one array read into memory may take: half of this machine's physical memory."""
    return physical_memory() // 2


def gib(nbytes: float) -> str:
    """A size in words: "3.2 GiB"."""
    return f"{nbytes / 2**30:.1f} GiB"


def check_memory(nbytes: int, what: str, limit: int | None = None) -> None:
    """`DataError` naming `what` when it would need more than `limit` bytes of memory (default: half of
    this machine's), checked before anything is allocated."""
    limit = memory_limit() if limit is None else limit
    if nbytes > limit:
        raise DataError(f"{what}: would need about {gib(nbytes)} of memory, more than this machine allows for it "
                        f"({gib(limit)}, half of its {gib(physical_memory())}); choose smaller sizes")


def check_disk(folder: str | os.PathLike, nbytes: int, what: str) -> None:
    """`DataError` naming `what` when `folder` (or the nearest existing folder above it) has less free
    space than `nbytes`, checked before anything is written."""
    existing = Path(folder).expanduser()
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    try:
        free = shutil.disk_usage(existing).free
    except OSError:
        return
    if nbytes > free:
        raise DataError(f"{what}: would write about {gib(nbytes)}, but {existing} has {gib(free)} free")
