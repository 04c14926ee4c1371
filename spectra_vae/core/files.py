"""Files: guards before anything is opened or written, and the one atomic writer.

Every file the package writes (scans, records, checkpoints, exports, cache entries) goes through
`atomic_path`: a temporary file with a unique name beside the target, flushed to disk, then
renamed over it. A crash leaves the old file or the new one, never half a file, and two writers
at once never share a temporary name.
"""

from __future__ import annotations

import json
import math
import os
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np

from .errors import DataError

STALE_SECONDS = 3600.0  # a temporary file untouched this long was left by a writer that died
_KINDS = {stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
          stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a directory"}


def regular_file(path: str | os.PathLike) -> Path:
    """`path` if it is a regular file (symbolic links followed), else `DataError`.

    Checked before anything opens it: opening a FIFO blocks until something writes to it, and a
    device can be read forever.
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(mode):
        kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
        raise DataError(f"{path}: is {kind}; only regular files are read")
    return path


def check_output_dir(path: str | os.PathLike, what: str) -> Path:
    """`path` as a folder that exists or can be made, and that can be written into; `DataError` naming
    `what` (e.g. "--out") otherwise. Checked before anything is written, so a refusal leaves nothing."""
    path = Path(path).expanduser()
    if os.path.lexists(path) and not path.is_dir():
        raise DataError(f"{what} {path}: exists and is not a folder")
    existing = path
    while not existing.exists():
        # is_symlink, not lexists: a folder that another process (torchrun's first) makes between
        # the two looks is no broken link
        if existing.is_symlink():
            raise DataError(f"{what} {path}: {existing} is a broken symbolic link")
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise DataError(f"{what} {path}: {existing} is not a folder, so nothing can be written below it")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise DataError(f"{what} {path}: {existing} is not writable")
    return path


def read_json(path: str | os.PathLike) -> Any:
    """The JSON value in a regular file; `DataError` naming the file when it is anything else."""
    path = regular_file(path)
    try:
        return json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise DataError(f"{path}: not valid JSON ({type(exc).__name__}: {str(exc)[:200]})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def json_type(value: Any) -> str:
    """What a JSON value is, in words ("an object", "a list", …), for messages."""
    return {dict: "an object", list: "a list", str: "a string", bool: "true/false", type(None): "null",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def plain(obj: Any, for_json: bool = False) -> Any:
    """Numpy scalars, tuples and paths → Python numbers, lists and text: content that
    `torch.load(weights_only=True)` reads. `for_json`: also keys → text and non-finite floats → None, for
    JSON (which has neither number keys nor NaN). Keys stay as they are otherwise (an optimiser's
    state is keyed by parameter number)."""
    if isinstance(obj, dict):
        return {(str(k) if for_json else k): plain(v, for_json) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v, for_json) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if for_json and isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


# -- the one atomic writer -------------------------------------------------------------------
@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside `path` to write to; when the block ends without an error the file is
    flushed to disk and renamed over `path` (atomic), otherwise removed and `path` left unchanged.

    The name is unique (`mkstemp`), so concurrent writers never collide; temporary files that a
    killed writer left for the same target over an hour ago are removed first (a live writer's file
    is younger, so it is never removed from under it)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{target.name}.*.tmp"):
        try:
            if stale.stat().st_mtime < time.time() - STALE_SECONDS:
                stale.unlink()
        except OSError:
            pass
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _sync_dir(target.parent)


@contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "wb", encoding: str | None = None) -> Iterator[IO[Any]]:
    """`atomic_path`, opened: `with atomic_file(p, "w", "utf-8") as f: f.write(text)`."""
    with atomic_path(path) as tmp, open(tmp, mode, encoding=encoding) as f:
        yield f


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write text (UTF-8) to `path` atomically."""
    with atomic_file(path, "w", "utf-8") as f:
        f.write(text)
    return Path(path)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """Write `obj` as indented JSON to `path` atomically (numpy values, tuples, paths made plain)."""
    return write_text_atomic(path, json.dumps(plain(obj, for_json=True), indent=2) + "\n")


def save_npy_atomic(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write one array as `.npy` to `path` atomically."""
    with atomic_file(path) as f:
        np.save(f, array)
    return Path(path)


def write_with(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Atomically write `path` with a writer that takes a path (HDF5, memory-mapped arrays)."""
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def _sync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass  # some file systems cannot fsync a directory; the rename itself is atomic

