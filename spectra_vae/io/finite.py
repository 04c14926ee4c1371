"""Which pixels are usable: those whose spectra are finite in every channel, found once per file.

Checking every pixel reads the whole file, which for data larger than RAM is a pass over the disk
each time a dataset is opened; the result is remembered per file in `cache_dir()` (never beside the
data), keyed so that a changed file is checked again. In a distributed run the files are dealt out
between the processes and the results exchanged.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from ..core.distributed import dist_info, gather_objects
from ..core.errors import DataError
from ..core.files import save_npy_atomic
from .scan import CHUNK_PIXELS, as_pixels, open_npy

RECHECK_ENV = "SPECTRA_VAE_RECHECK"


def finite_pixels(pixels: np.ndarray) -> np.ndarray:
    """Flat indices of the pixels whose spectra are finite in every channel, read in chunks.

    Pixels are read as float32; a float64 value beyond float32's range would turn into inf there,
    so it counts as non-finite too."""
    if pixels.dtype.kind in "iu":
        return np.arange(pixels.shape[0])
    keep = []
    for s in range(0, pixels.shape[0], CHUNK_PIXELS):
        block = pixels[s : s + CHUNK_PIXELS]
        ok = np.isfinite(block)
        if block.dtype.itemsize > 4:
            ok &= np.abs(block) <= np.finfo(np.float32).max
        keep.append(np.flatnonzero(ok.all(axis=1)) + s)
    return np.concatenate(keep)


def cache_dir() -> Path:
    """Where results of reading every pixel are kept between sessions: `$SPECTRA_VAE_CACHE`, else
    `$XDG_CACHE_HOME/spectra_vae`, else `~/.cache/spectra_vae`. Never beside the data."""
    if os.environ.get("SPECTRA_VAE_CACHE"):
        return Path(os.environ["SPECTRA_VAE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "spectra_vae"



def _file_key(path: Path, pixels: np.ndarray) -> str:
    # ctime cannot be set by the user: rewriting a file in place and restoring its mtime (as
    # `rsync --inplace -t` does) still moves it, so a restored mtime does not revive an old record.
    st = path.stat()
    return (f"{path.resolve()}|{st.st_dev}|{st.st_ino}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}|"
            f"{pixels.shape}|{pixels.dtype.str}")


def _finite_record(key: str) -> Path:
    return cache_dir() / "finite" / (hashlib.sha1(key.encode()).hexdigest() + ".npy")


def _remember_finite(record: Path, n_pixels: int, finite: np.ndarray) -> None:
    """Write a record (the non-finite pixels, usually none); an unwritable cache only costs the re-check."""
    try:  # atomic, with a unique temporary name: processes on several nodes may share the cache
        save_npy_atomic(record, np.setdiff1d(np.arange(n_pixels), finite, assume_unique=True).astype(np.int64))
    except OSError:
        pass


def finite_pixels_cached(pixels: np.ndarray, path: Path | None, recheck: bool = False) -> np.ndarray:
    """`finite_pixels`, remembered per file: checking every pixel reads the whole file, which for
    data larger than RAM means a pass over the disk each time a dataset is opened. The record
    (the non-finite pixels, usually none) is keyed by the file's path, device, inode, size,
    modification and change times, so a changed file is checked again; `recheck` (or
    `$SPECTRA_VAE_RECHECK=1`) ignores the record and writes a new one. An unwritable cache only
    costs the re-check."""
    if path is None or not isinstance(pixels, np.memmap) or pixels.dtype.kind in "iu":
        return finite_pixels(pixels)
    recheck = recheck or os.environ.get(RECHECK_ENV, "").strip().lower() not in ("", "0", "false", "no")
    record: Path | None = None
    try:
        key = _file_key(path, pixels)
        record = _finite_record(key)
        if not recheck and record.is_file():
            bad = np.load(record, allow_pickle=False)
            in_range = bad.size == 0 or (0 <= bad.min() and bad.max() < len(pixels))
            if bad.ndim == 1 and bad.dtype.kind == "i" and in_range:
                return np.setdiff1d(np.arange(len(pixels)), bad, assume_unique=True)
    except Exception:  # an unreadable record only costs the check
        record = None
    finite = finite_pixels(pixels)
    try:
        if record is not None and _file_key(path, pixels) != key:
            record = None  # the file changed while it was read: remember nothing
    except OSError:
        record = None
    if record is not None:
        _remember_finite(record, len(pixels), finite)
    return finite


def shared_finite_check(paths: list[Path], recheck: bool = False) -> dict[Path, np.ndarray]:
    """In a distributed run (an initialised torch process group), the finite pixels of `.npy`
    files, each file checked (or looked up in the cache) by one process only, files dealt
    round-robin, and the results exchanged; every process remembers them in its own cache.
    Empty when alone. Every process must open the same files, as `spectra_vae.workflow.train` does."""
    rank, world = dist_info()
    if world == 1 or not paths:
        return {}
    mine: dict[int, np.ndarray] = {}
    for k in range(rank, len(paths), world):
        try:
            pixels = as_pixels(open_npy(paths[k]), str(paths[k]))[0]
        except DataError:
            continue  # reported by the process that opens it for the dataset, which is every one
        finite = finite_pixels_cached(pixels, paths[k], recheck)
        mine[k] = np.setdiff1d(np.arange(len(pixels)), finite, assume_unique=True).astype(np.int64)
    out: dict[Path, np.ndarray] = {}
    for part in gather_objects(mine):
        for k, bad in part.items():
            pixels = as_pixels(open_npy(paths[k]), str(paths[k]))[0]
            out[paths[k]] = np.setdiff1d(np.arange(len(pixels)), bad, assume_unique=True)
            if k % world != rank and pixels.dtype.kind not in "iu":
                try:
                    _remember_finite(_finite_record(_file_key(paths[k], pixels)), len(pixels), out[paths[k]])
                except OSError:
                    pass
    return out

