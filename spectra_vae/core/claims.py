"""Output folders: each is claimed by one writer at a time, and written only when it is spectra_vae's own.

A command that writes a folder (a run, an export, a conversion target, demo data, a sweep) claims it
first with `claim_folder`. The claim is a small marker file, `.spectra_vae.json`, that says what
the folder is (`{"kind": "run", …}`):

- A folder without a marker is claimed only when it holds no scans and none of the files the
  command would write (`holds_data`, `writes`): nothing is ever written into a folder of scans
  that spectra_vae did not make, and no file it did not write is overwritten. Folders made before
  markers existed are recognised by what they hold (`legacy`: a run's record, the demo's
  `demo.json`) and marked.
- A folder with a marker of another kind is refused (a run folder is not an export target).
- The marker appears atomically, already locked (written beside it, locked with `flock`, then
  hard-linked into place, which fails if one is there), and the writer holds an exclusive lock
  on it until it is done: a second writer is refused at once, never after the first has written.
  A lock dies with its process, so a killed writer leaves no stale lock.
- Child processes (the notebooks' kernels of a pipeline) inherit their parent's claims through
  `$SPECTRA_VAE_CLAIMS`.
"""

from __future__ import annotations

import datetime as _dt
import errno
import fcntl
import json
import os
import stat
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import DataError
from .files import check_output_dir
from .version import __version__

MARKER = ".spectra_vae.json"
CLAIMS_ENV = "SPECTRA_VAE_CLAIMS"  # folders this process's parent holds (os.pathsep-separated)
KINDS = {"run": "a training run", "export": "an export", "conversion": "a conversion target",
         "demo": "demo data", "sweep": "a sweep"}
_TRIES = 20


class FolderInUse(DataError):
    """Another process is writing into the folder now."""


@dataclass
class Claim:
    """A claimed output folder. `release()` (or the end of a `with` block) gives it back."""

    path: Path
    kind: str
    marker: dict[str, Any]
    made_folder: bool = False  # this claim created the folder
    marked: bool = False  # this claim wrote the marker (the folder was not marked before)
    _fd: int | None = field(default=None, repr=False)  # the lock; None: inherited from the parent process
    _exported: bool = field(default=False, repr=False)

    def release(self, discard: bool = False) -> None:
        """Unlock. `discard`: the writer wrote nothing of its own, so the marker this claim placed goes, and
        the folder too if the claim made it and it is empty (only empty folders are removed, never a file)."""
        if discard and self.marked and self._fd is not None:
            (self.path / MARKER).unlink(missing_ok=True)
            if self.made_folder:
                _remove_empty(self.path)
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None
        if self._exported:
            _set_inherited([p for p in _inherited() if p != str(self.path.resolve())])
            self._exported = False

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def read_marker(folder: str | os.PathLike) -> dict[str, Any] | None:
    """A folder's marker (None without one); `DataError` when it is damaged or not a regular file."""
    path = Path(folder) / MARKER
    if not os.path.lexists(path):
        return None
    st = os.lstat(path)
    if not stat.S_ISREG(st.st_mode):
        raise DataError(f"{path}: is not a regular file, so not a marker spectra_vae wrote")
    try:
        return _parse(path, path.read_bytes())
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def folder_kind(folder: str | os.PathLike) -> str | None:
    """What spectra_vae made `folder` as ("run", "export", …), from its marker; None without one."""
    marker = read_marker(folder)
    return None if marker is None else str(marker["kind"])


def claim_folder(path: str | os.PathLike, kind: str, *, what: str = "--out", writes: Sequence[str] = (),
                 holds_data: Callable[[Path], list[str]] | None = None,
                 legacy: Callable[[Path], bool] | None = None, info: dict[str, Any] | None = None,
                 wait: bool = False) -> Claim:
    """Claim `path` (made if missing) as a folder of `kind` for this process; see the module's docstring.

    `writes`: the names the command writes there; `holds_data(folder)`: the names that make a folder
    someone's data (scans and their side files); `legacy(folder)`: whether an unmarked folder is one
    spectra_vae made of this kind before markers existed. `info` goes into a new marker. `wait`:
    wait for another writer to finish instead of refusing. `DataError` (`FolderInUse` for another
    writer) naming `what` and the folder, before anything is written.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown folder kind {kind!r}")
    folder = check_output_dir(path, what)
    made = False
    if not folder.exists():
        try:
            folder.mkdir(parents=True)
            made = True
        except FileExistsError:
            pass
        except OSError as exc:
            raise DataError(f"{what} {folder}: cannot be made ({exc.strerror or exc})") from None
    try:
        claim = _claim(folder, kind, what, writes, holds_data, legacy, info or {}, wait, made)
    except BaseException:
        if made:
            _remove_empty(folder)
        raise
    claim.made_folder = made
    if claim._fd is not None:
        _set_inherited([*_inherited(), str(folder.resolve())])
        claim._exported = True
    return claim


def wait_for_folder(path: str | os.PathLike) -> None:
    """Return once no other process is writing into `path` (at once when it has no marker)."""
    try:
        fd = _open_marker(Path(path) / MARKER)
    except OSError:
        return
    try:
        _lock(fd, wait=True)
    finally:
        os.close(fd)


# -- how -------------------------------------------------------------------------------------
def _claim(folder: Path, kind: str, what: str, writes: Sequence[str], holds_data: Callable[[Path], list[str]] | None,
           legacy: Callable[[Path], bool] | None, info: dict[str, Any], wait: bool, made: bool) -> Claim:
    marker = folder / MARKER
    for _ in range(_TRIES):
        try:
            st = os.lstat(marker)
        except FileNotFoundError:
            if not made:
                _check_unmarked(folder, what, writes, holds_data, legacy)
            content = {"kind": kind, **info, "created": _dt.datetime.now().isoformat(timespec="seconds"),
                       "spectra_vae_version": __version__}
            fd = _place_locked_marker(folder, content)
            if fd is None:
                continue  # another writer placed one first: look at theirs
            return Claim(folder, kind, content, marked=True, _fd=fd)
        if not stat.S_ISREG(st.st_mode):
            raise DataError(f"{what} {folder}: its {MARKER} is not a regular file, so not a marker spectra_vae "
                            "wrote; give another folder")
        try:
            fd = _open_marker(marker)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise DataError(f"{what} {folder}: its {MARKER} cannot be read ({exc.strerror or exc})") from None
        try:
            locked = _lock(fd, wait)
            if locked and os.fstat(fd).st_ino != _inode(marker):
                os.close(fd)  # the marker was replaced while we waited: look again
                continue
            content = _parse(marker, _read_all(fd))
        except BaseException:
            os.close(fd)
            raise
        if content["kind"] != kind:
            os.close(fd)
            raise DataError(f"{what} {folder}: holds {KINDS[content['kind']]} made by spectra_vae (its {MARKER} "
                            f"says so), not {KINDS[kind]}; give another folder")
        if not locked:
            os.close(fd)
            if str(folder.resolve()) in _inherited():
                return Claim(folder, kind, content)  # the process that started this one holds it
            raise FolderInUse(f"{what} {folder}: another spectra_vae process is writing into this "
                              f"{kind} folder now; wait for it to finish, or give another folder")
        return Claim(folder, kind, content, _fd=fd)
    raise FolderInUse(f"{what} {folder}: other processes keep claiming it; try again")


def _check_unmarked(folder: Path, what: str, writes: Sequence[str], holds_data: Callable[[Path], list[str]] | None,
                    legacy: Callable[[Path], bool] | None) -> None:
    """An existing folder without a marker may be claimed only when it is empty of data and of the
    files the command would write, or recognisably spectra_vae's own from before markers."""
    if legacy is not None and legacy(folder):
        return
    found = holds_data(folder) if holds_data is not None else []
    if found:
        raise DataError(f"{what} {folder}: holds scans or their side files ({', '.join(found[:5])}"
                        f"{', …' if len(found) > 5 else ''}) that spectra_vae did not write; nothing is written into "
                        "a folder of scans: give an empty or new folder")
    clash = [name for name in writes if os.path.lexists(folder / name)]
    if clash:
        raise DataError(f"{what} {folder}: already holds {', '.join(clash[:5])}, which spectra_vae did not write "
                        f"there (the folder has no {MARKER}); give an empty or new folder, or move them away")


def _place_locked_marker(folder: Path, content: dict[str, Any]) -> int | None:
    """Write the marker beside its place, lock it, and hard-link it into place: it appears whole and
    locked, or not at all (None: another marker was placed first)."""
    fd, name = tempfile.mkstemp(prefix=f"{MARKER}.", suffix=".tmp", dir=folder)
    try:
        _write_marker(fd, content)
        try:
            os.link(name, folder / MARKER)
        except FileExistsError:
            os.close(fd)
            return None
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
            # no hard links here (some network or FAT file systems): exclusive creation, then the content
            fd2 = _create_exclusive(folder / MARKER)
            if fd2 is None:
                os.close(fd)
                return None
            os.close(fd)
            fd = fd2
            _write_marker(fd, content)
        return fd
    except BaseException:
        try:
            os.close(fd)
        except OSError:
            pass
        raise
    finally:
        Path(name).unlink(missing_ok=True)


def _open_marker(marker: Path) -> int:
    """A marker opened for reading (and locking), never through a link, never blocking on a FIFO."""
    return os.open(marker, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)


def _write_marker(fd: int, content: dict[str, Any]) -> None:
    """Lock a new marker's descriptor and write `content` to disk through it."""
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, (json.dumps(content, indent=2) + "\n").encode())
    os.fsync(fd)


def _create_exclusive(path: Path) -> int | None:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    except FileExistsError:
        return None


def _lock(fd: int, wait: bool) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _inode(path: Path) -> int:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return -1


def _read_all(fd: int, limit: int = 1 << 16) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, limit)


def _parse(path: Path, data: bytes) -> dict[str, Any]:
    try:
        content = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        content = None
    if not isinstance(content, dict) or content.get("kind") not in KINDS:
        raise DataError(f"{path}: not a marker spectra_vae wrote (expected a JSON object whose 'kind' is one of "
                        f"{sorted(KINDS)}); if this folder is yours, move the file away")
    return content


def _inherited() -> list[str]:
    return [p for p in os.environ.get(CLAIMS_ENV, "").split(os.pathsep) if p]


def _set_inherited(paths: list[str]) -> None:
    if paths:
        os.environ[CLAIMS_ENV] = os.pathsep.join(dict.fromkeys(paths))
    else:
        os.environ.pop(CLAIMS_ENV, None)


def _remove_empty(folder: Path) -> None:
    """Remove `folder` and the folders below it when they hold no file at all."""
    if not folder.is_dir() or folder.is_symlink():
        return
    for sub in _subfolders_deepest_first(folder):
        try:
            sub.rmdir()
        except OSError:
            pass
    try:
        folder.rmdir()
    except OSError:
        pass


def _subfolders_deepest_first(folder: Path) -> Iterator[Path]:
    subs = [Path(root) / d for root, dirs, _ in os.walk(folder) for d in dirs]
    yield from sorted(subs, key=lambda p: len(p.parts), reverse=True)

