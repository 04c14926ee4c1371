"""Scans and datasets: memory-mapped pixels with their (scan, row, col), wavenumbers, labels, splits.

A *scan* is one image `(H, W, C)` or one table `(N, C)` (a table is a scan with width 1 and
no image geometry). A *dataset* is a list of scans and, per scan, the flat indices of the pixels
it holds: only pixels whose spectra are finite in every channel are usable. Nothing here loads
a whole directory into memory; `.npy` files are opened memory-mapped and read in chunks.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import stat
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..core.errors import DataError

SPLITS_FILE = "data_splits.json"
WAVENUMBERS_FILE = "wavenumbers.npy"
LABELS_DIR = "labels"
LABEL_NAMES_FILE = "label_names.json"
CHUNK_PIXELS = 65536
OWNER_SUFFIXES = (".dmt", ".seq", ".hdr")  # a file with one of these owns same-named files
_IGNORED_FILES = {SPLITS_FILE, WAVENUMBERS_FILE, "demo.json", "README.md", "README.txt", ".DS_Store"}


@dataclass(frozen=True, eq=False)
class Scan:
    """One scan: its pixels as an `(H*W, C)` (possibly memory-mapped) array and where it came from."""

    name: str
    pixels: np.ndarray  # (H*W, C)
    height: int
    width: int
    path: Path | None = None
    labels: np.ndarray | None = None  # (H*W,) integer class per pixel
    is_image: bool = True
    n_nonfinite: int = 0

    @property
    def n_channels(self) -> int:
        return int(self.pixels.shape[1])


def _natural_key(name: str) -> list[object]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


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


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "true/false", type(None): "null",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _open_npy(path: Path) -> np.ndarray:
    regular_file(path)
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # a damaged header raises ValueError, SyntaxError, tokenize.TokenError, ...
        raise DataError(f"{path}: not a readable .npy array ({type(exc).__name__}: {str(exc)[:200]})") from None
    if not isinstance(arr, np.ndarray):
        close = getattr(arr, "close", None)
        if close is not None:
            close()  # an .npz archive keeps its file open
        raise DataError(f"{path}: expected one array, found {type(arr).__name__}")
    return arr


def _as_pixels(arr: np.ndarray, where: str) -> tuple[np.ndarray, int, int, bool]:
    """View an `(H, W, C)` or `(N, C)` array as `(H*W, C)` pixels, with (H, W, is_image)."""
    if arr.dtype.kind not in "fiu":
        raise DataError(f"{where}: expected numeric absorbance values, got dtype {arr.dtype}")
    if arr.ndim == 3:
        h, w, c = arr.shape
        image = True
    elif arr.ndim == 2:
        (h, c), w, image = arr.shape, 1, False
    else:
        raise DataError(f"{where}: expected shape (H, W, channels) or (pixels, channels), got {arr.shape}")
    if h * w == 0 or c == 0:
        raise DataError(f"{where}: empty array of shape {arr.shape}")
    if c < 2:
        raise DataError(f"{where}: expected a spectrum per pixel (channels last), got shape {arr.shape}")
    if isinstance(arr, np.memmap) and not arr.flags.c_contiguous:
        # Each spectrum would be scattered over the whole file: viewing it as (pixels, channels)
        # means copying the whole scan into memory.
        raise DataError(f"{where}: the array is stored in Fortran (column-major) order, which cannot be read "
                        "spectrum by spectrum without copying the whole scan into memory; convert it once: "
                        f"python -m spectra_vae convert {where} <output folder>")
    return arr.reshape(h * w, c), h, w, image


def _finite_pixels(pixels: np.ndarray) -> np.ndarray:
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


RECHECK_ENV = "SPECTRA_VAE_RECHECK"


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
    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        bad = np.setdiff1d(np.arange(n_pixels), finite, assume_unique=True).astype(np.int64)
        # a unique temporary name: processes on several nodes may share the cache directory
        fd, tmp = tempfile.mkstemp(prefix=f".{record.name}.", suffix=".tmp", dir=record.parent)
        with os.fdopen(fd, "wb") as f:
            np.save(f, bad)
        os.replace(tmp, record)
    except OSError:
        pass


def _finite_pixels_cached(pixels: np.ndarray, path: Path | None, recheck: bool = False) -> np.ndarray:
    """`_finite_pixels`, remembered per file: checking every pixel reads the whole file, which for
    data larger than RAM means a pass over the disk each time a dataset is opened. The record
    (the non-finite pixels, usually none) is keyed by the file's path, device, inode, size,
    modification and change times, so a changed file is checked again; `recheck` (or
    `$SPECTRA_VAE_RECHECK=1`) ignores the record and writes a new one. An unwritable cache only
    costs the re-check."""
    if path is None or not isinstance(pixels, np.memmap) or pixels.dtype.kind in "iu":
        return _finite_pixels(pixels)
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
    finite = _finite_pixels(pixels)
    try:
        if record is not None and _file_key(path, pixels) != key:
            record = None  # the file changed while it was read: remember nothing
    except OSError:
        record = None
    if record is not None:
        _remember_finite(record, len(pixels), finite)
    return finite


def _shared_finite_check(paths: list[Path], recheck: bool = False) -> dict[Path, np.ndarray]:
    """In a distributed run (an initialised torch process group), the finite pixels of `.npy`
    files, each file checked (or looked up in the cache) by one process only, files dealt
    round-robin, and the results exchanged; every process remembers them in its own cache.
    Empty when alone. Every process must open the same files, as `pipeline.train` does."""
    from ..core.distributed import dist_info, gather_objects

    rank, world = dist_info()
    if world == 1 or not paths:
        return {}
    mine: dict[int, np.ndarray] = {}
    for k in range(rank, len(paths), world):
        try:
            pixels = _as_pixels(_open_npy(paths[k]), str(paths[k]))[0]
        except DataError:
            continue  # reported by the process that opens it for the dataset, which is every one
        finite = _finite_pixels_cached(pixels, paths[k], recheck)
        mine[k] = np.setdiff1d(np.arange(len(pixels)), finite, assume_unique=True).astype(np.int64)
    out: dict[Path, np.ndarray] = {}
    for part in gather_objects(mine):
        for k, bad in part.items():
            pixels = _as_pixels(_open_npy(paths[k]), str(paths[k]))[0]
            out[paths[k]] = np.setdiff1d(np.arange(len(pixels)), bad, assume_unique=True)
            if k % world != rank and pixels.dtype.kind not in "iu":
                try:
                    _remember_finite(_finite_record(_file_key(paths[k], pixels)), len(pixels), out[paths[k]])
                except OSError:
                    pass
    return out


def check_wavenumbers(wavenumbers: Sequence[float] | np.ndarray, n_channels: int, where: str) -> np.ndarray:
    """Validate a wavenumber axis: one finite, strictly monotonic value per channel."""
    try:
        raw = np.asarray(wavenumbers)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{where}: wavenumber axis is not an array of numbers ({exc})") from None
    if raw.dtype.kind not in "fiu":
        raise DataError(f"{where}: wavenumber axis must hold real numbers, got dtype {raw.dtype}")
    wn = np.asarray(raw, dtype=float)
    if wn.ndim != 1 or wn.shape[0] != n_channels:
        raise DataError(f"{where}: wavenumber axis has shape {wn.shape}; expected ({n_channels},) "
                        "to match the channels")
    if not np.isfinite(wn).all():
        raise DataError(f"{where}: wavenumber axis has non-finite values")
    d = np.diff(wn)
    if n_channels > 1 and not ((d > 0).all() or (d < 0).all()):
        raise DataError(f"{where}: wavenumber axis is not strictly increasing or decreasing")
    return wn


@dataclass(eq=False)
class SpectralDataset:
    """Pixels of one or more scans. Arrays are `(n_pixels, n_channels)`; pixels keep (scan, row, col)."""

    _scans: list[Scan]
    _index: list[np.ndarray]  # per scan, sorted flat pixel indices that this dataset holds
    wavenumbers: np.ndarray
    label_names: list[str] | None = None
    source: str = ""
    wavenumbers_known: bool = True
    preprocessor: Any = None  # a fitted spectra_vae.preprocessing.Preprocessor applied on reading
    raw_wavenumbers: np.ndarray | None = None  # the scans' own axis when a preprocessor changes it
    _offsets: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._offsets = np.concatenate([[0], np.cumsum([len(i) for i in self._index])]).astype(np.int64)

    # -- what it holds -------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._offsets[-1])

    def __repr__(self) -> str:
        return (f"SpectralDataset({len(self)} pixels, {len(self._scans)} scans, {self.n_channels} channels, "
                f"{self.wavenumbers.min():g}–{self.wavenumbers.max():g} cm⁻¹, source={self.source!r})")

    @property
    def n_channels(self) -> int:
        return len(self.wavenumbers)

    @property
    def scans(self) -> list[str]:
        return [s.name for s in self._scans]

    @property
    def scan_objects(self) -> list[Scan]:
        return list(self._scans)

    @property
    def n_nonfinite(self) -> dict[str, int]:
        """Per scan, the pixels excluded because a channel held NaN or ±inf."""
        return {s.name: s.n_nonfinite for s in self._scans}

    @property
    def coords(self) -> np.ndarray:
        """`(n_pixels, 3)` int array of (scan index in `scans`, row, col) per pixel."""
        parts = []
        for k, (scan, idx) in enumerate(zip(self._scans, self._index, strict=False)):
            rows, cols = np.divmod(idx, scan.width)
            parts.append(np.column_stack([np.full(len(idx), k), rows, cols]))
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros((0, 3), np.int64)

    @property
    def labels(self) -> np.ndarray | None:
        """Per-pixel ground-truth class (-1 where a scan has no label map), or None if none has."""
        if all(s.labels is None for s in self._scans):
            return None
        return np.concatenate([np.asarray(s.labels[idx], dtype=np.int64) if s.labels is not None
                               else np.full(len(idx), -1, np.int64)
                               for s, idx in zip(self._scans, self._index, strict=False)])

    def scan_of(self) -> np.ndarray:
        """Per pixel, the index of its scan in `scans`."""
        return np.repeat(np.arange(len(self._scans)), [len(i) for i in self._index])

    def summary(self) -> pd.DataFrame:
        """One row per scan: geometry, usable and excluded pixels, value range (read in chunks)."""
        rows = []
        for scan, idx in zip(self._scans, self._index, strict=False):
            lo, hi = np.inf, -np.inf
            for s in range(0, len(idx), CHUNK_PIXELS):
                block = scan.pixels[idx[s : s + CHUNK_PIXELS]]
                lo, hi = min(lo, float(block.min())), max(hi, float(block.max()))
            rows.append({"scan": scan.name, "height": scan.height, "width": scan.width,
                         "pixels": len(idx), "nonfinite_excluded": scan.n_nonfinite,
                         "min": lo, "max": hi})
        return pd.DataFrame(rows).set_index("scan")

    # -- reading pixels ------------------------------------------------------------------
    def iter_chunks(self, chunk_pixels: int = CHUNK_PIXELS, dtype: type = np.float32) -> Iterator[np.ndarray]:
        """The pixels in dataset order, `chunk_pixels` at a time, each `(m, C)` array in memory."""
        for scan, idx in zip(self._scans, self._index, strict=False):
            for s in range(0, len(idx), chunk_pixels):
                sel = idx[s : s + chunk_pixels]
                # A contiguous run reads as a slice, which is much faster than fancy indexing.
                if len(sel) and sel[-1] - sel[0] == len(sel) - 1:
                    block = scan.pixels[sel[0] : sel[-1] + 1]
                else:
                    block = scan.pixels[sel]
                block = np.asarray(block, dtype=dtype)
                if self.preprocessor is not None:
                    block = self.preprocessor.transform(block).astype(dtype, copy=False)
                yield block

    def read(self, indices: np.ndarray | Sequence[int], dtype: type = np.float32) -> np.ndarray:
        """Pixels at dataset positions `indices`, `(len(indices), C)`, in the order given."""
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
            raise IndexError(f"pixel index out of range 0..{len(self) - 1}")
        if self.preprocessor is not None:
            return self.preprocessor.transform(self.raw().read(indices, dtype)).astype(dtype, copy=False)
        out: np.ndarray = np.empty((indices.size, self.n_channels), dtype=dtype)
        scan_k = np.searchsorted(self._offsets, indices, side="right") - 1
        for k in np.unique(scan_k):
            where = np.flatnonzero(scan_k == k)
            flat = self._index[k][indices[where] - self._offsets[k]]
            order = np.argsort(flat, kind="stable")
            out[where[order]] = self._scans[k].pixels[flat[order]]
        return out

    def to_array(self, dtype: type = np.float32) -> np.ndarray:
        """All pixels as one `(n_pixels, C)` array in memory (only for data that fits in RAM)."""
        out: np.ndarray = np.empty((len(self), self.n_channels), dtype=dtype)
        pos = 0
        for block in self.iter_chunks(dtype=dtype):
            out[pos : pos + len(block)] = block
            pos += len(block)
        return out

    def image(self, values: np.ndarray, scan: int | str, fill: float = np.nan) -> np.ndarray:
        """Draw a per-pixel quantity (aligned with this dataset) back as the `(H, W)` image of `scan`."""
        values = np.asarray(values)
        if values.ndim == 0 or values.shape[0] != len(self):
            raise DataError(f"expected one value per pixel ({len(self)}), got shape {values.shape}")
        if isinstance(scan, str):
            if scan not in self.scans:
                raise DataError(f"{self.source}: no scan named {scan!r}; have {self.scans}")
            k = self.scans.index(scan)
        elif isinstance(scan, (int, np.integer)) and 0 <= scan < len(self._scans):
            k = int(scan)
        else:
            raise DataError(f"{self.source}: scan must be a name or a number from 0 to {len(self._scans) - 1}; "
                            f"got {scan!r}")
        s = self._scans[k]
        img = np.full((s.height * s.width,) + values.shape[1:], fill, dtype=float)
        img[self._index[k]] = values[self._offsets[k] : self._offsets[k + 1]]
        return img.reshape((s.height, s.width) + values.shape[1:])

    # -- subsets and splits --------------------------------------------------------------
    def _replace(self, scans: list[Scan], index: list[np.ndarray], **changes: Any) -> SpectralDataset:
        kw: dict[str, Any] = {"wavenumbers": self.wavenumbers, "preprocessor": self.preprocessor,
                              "raw_wavenumbers": self.raw_wavenumbers}
        if "preprocessor" in changes and changes["preprocessor"] is None and self.raw_wavenumbers is not None:
            kw |= {"wavenumbers": self.raw_wavenumbers, "raw_wavenumbers": None}
        kw |= changes
        return SpectralDataset(scans, index, kw["wavenumbers"], self.label_names, self.source,
                               self.wavenumbers_known, kw["preprocessor"], kw["raw_wavenumbers"])

    def pixel_digest(self) -> str:
        """A short fingerprint of which pixels of which scans this dataset holds (not their values)."""
        h = hashlib.sha1()
        for scan, idx in zip(self._scans, self._index, strict=True):
            h.update(scan.name.encode() + b"\0")
            h.update(np.ascontiguousarray(idx, dtype=np.int64).tobytes())
        return h.hexdigest()[:16]

    def raw(self) -> SpectralDataset:
        """The same pixels without a preprocessing view: spectra as the scans hold them."""
        return self if self.preprocessor is None else self._replace(self._scans, self._index, preprocessor=None)

    def preprocessed(self, preprocessor: Any) -> SpectralDataset:
        """A view whose pixels pass through a fitted preprocessing pipeline when read."""
        if self.preprocessor is not None:
            raise DataError(f"{self.source}: the dataset is already preprocessed")
        if not preprocessor:
            return self
        return self._replace(self._scans, self._index, preprocessor=preprocessor,
                             wavenumbers=preprocessor.output_wavenumbers_, raw_wavenumbers=self.wavenumbers)

    def select_scans(self, names: Sequence[str | int]) -> SpectralDataset:
        """The dataset restricted to the scans named (or numbered) in `names`, in that order."""
        ks = []
        for n in names:
            if isinstance(n, (int, np.integer)):
                ks.append(int(n))
                continue
            key = Path(str(n)).name
            matches = [k for k, s in enumerate(self._scans) if key in (s.name, Path(s.name).stem, Path(s.name).name)]
            if not matches:
                raise DataError(f"{self.source}: no scan named {n!r}; have {self.scans}")
            ks.append(matches[0])
        return self._replace([self._scans[k] for k in ks], [self._index[k] for k in ks])

    def select_pixels(self, positions: np.ndarray) -> SpectralDataset:
        """The dataset restricted to the pixels at dataset positions `positions` (kept in scan order)."""
        positions = np.sort(np.asarray(positions, dtype=np.int64))
        if positions.size and (positions[0] < 0 or positions[-1] >= len(self)):
            raise DataError(f"{self.source}: pixel positions must be from 0 to {len(self) - 1}")
        scan_k = np.searchsorted(self._offsets, positions, side="right") - 1
        index = [self._index[k][positions[scan_k == k] - self._offsets[k]] for k in range(len(self._scans))]
        return self._replace(list(self._scans), index)

    def shard(self, rank: int, world: int, block: int = 8192) -> SpectralDataset:
        """This process's share of the pixels: blocks of `block` consecutive pixels dealt round-robin."""
        if world <= 1:
            return self
        block = max(1, min(block, len(self) // (8 * world)))  # small data: still several blocks each
        starts = np.arange(0, len(self), block)[rank::world]
        if not len(starts):
            return self.select_pixels(np.zeros(0, np.int64))
        positions = np.concatenate([np.arange(s, min(s + block, len(self))) for s in starts])
        return self.select_pixels(positions)

    def split(self, by: str = "scan", fractions: Sequence[float] = (0.8, 0.1, 0.1),
              seed: int = 0) -> tuple[SpectralDataset, ...]:
        """Random split into `len(fractions)` parts, by whole scans (default) or by pixel.

        Pixels of one scan are strongly correlated, so a pixel split overstates held-out
        quality; it is kept for comparison with the prototype. By scan, each part with a
        non-zero fraction gets at least one scan.
        """
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
            raise DataError(f"split seed must be a whole number ≥ 0; got {seed!r}")
        try:
            fr = np.asarray(fractions, dtype=float)
        except (TypeError, ValueError):
            raise DataError(f"fractions must be numbers; got {fractions!r}") from None
        if fr.ndim != 1 or len(fr) < 2 or (fr < 0).any() or not np.isclose(fr.sum(), 1.0):
            raise DataError(f"fractions must be two or more non-negative numbers summing to 1; got {tuple(fractions)}")
        rng = np.random.default_rng(seed)
        if by == "scan":
            n = len(self._scans)
            need = int((fr > 0).sum())
            if n < need:
                raise DataError(f"{self.source}: cannot split {n} scan(s) into {need} parts by scan; "
                                "give more scans or use by='pixel'")
            counts = [max(1, round(f * n)) if f > 0 else 0 for f in fr[1:]]
            while n - sum(counts) < (1 if fr[0] > 0 else 0):
                counts[int(np.argmax(counts))] -= 1
            counts = [n - sum(counts)] + counts
            order = rng.permutation(n)
            bounds = np.cumsum([0] + counts)
            return tuple(self.select_scans([int(k) for k in sorted(order[a:b])])
                         for a, b in zip(bounds[:-1], bounds[1:], strict=False))
        if by == "pixel":
            n = len(self)
            order = rng.permutation(n)
            bounds = np.round(np.cumsum(np.concatenate([[0], fr])) * n).astype(int)
            return tuple(self.select_pixels(order[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=False))
        raise DataError(f"split by must be 'scan' or 'pixel'; got {by!r}")


# -- loading ---------------------------------------------------------------------------------
def _make_scan(name: str, arr: np.ndarray, where: str, path: Path | None = None,
               labels: np.ndarray | None = None, recheck: bool = False,
               finite: np.ndarray | None = None) -> tuple[Scan, np.ndarray]:
    pixels, h, w, image = _as_pixels(arr, where)
    if labels is not None:
        labels = _check_labels(labels, h, w, image, where)
    if finite is None:  # not already found by a distributed run's shared check
        finite = _finite_pixels_cached(pixels, path, recheck)
    n_bad = pixels.shape[0] - len(finite)
    if len(finite) == 0:
        raise DataError(f"{where}: no pixel has a finite spectrum (all {pixels.shape[0]} contain NaN or inf)")
    if n_bad:
        warnings.warn(f"{where}: excluded {n_bad} of {pixels.shape[0]} pixels with NaN or inf values"
                      + (" (or values beyond float32's range)" if pixels.dtype.itemsize > 4 else ""),
                      stacklevel=3)
    scan = Scan(name, pixels, h, w, path=path, labels=labels, is_image=image, n_nonfinite=n_bad)
    return scan, finite


def _check_labels(labels: np.ndarray, h: int, w: int, image: bool, where: str) -> np.ndarray:
    """A label map as `(H*W,)` int64: whole numbers, shaped like the scan (negative = unknown)."""
    shapes = [(h, w), (h * w,)] if image else [(h,), (h, 1)]
    if labels.shape not in shapes:
        # a transposed map has the right number of pixels and would put every label in the wrong place
        raise DataError(f"{where}: label map has shape {labels.shape}; expected {shapes[0]} like the scan")
    values = np.asarray(labels)
    if values.dtype.kind == "b":
        values = values.astype(np.int64)
    if values.dtype.kind == "f":
        if not (np.isfinite(values).all() and (values == np.round(values)).all()):
            raise DataError(f"{where}: label map holds values that are not whole numbers (NaN or fractions)")
    elif values.dtype.kind not in "iu":
        raise DataError(f"{where}: label map must hold whole numbers, got dtype {values.dtype}")
    if values.size and (values.max() > np.iinfo(np.int64).max // 2):
        raise DataError(f"{where}: label map holds a label out of range ({values.max()})")
    return values.astype(np.int64).reshape(-1)


def _read_splits(directory: Path) -> dict[str, list[str]]:
    """`data_splits.json`: an object mapping split names to lists of file names, checked entry by entry."""
    path = directory / SPLITS_FILE
    if not os.path.lexists(path):
        raise DataError(f"{directory}: split requested but there is no {SPLITS_FILE}")
    splits = read_json(path)
    if not isinstance(splits, dict):
        raise DataError(f"{path}: expected an object mapping split names to lists of files, got {_json_type(splits)}")
    for name, files in splits.items():
        if not isinstance(files, list):
            raise DataError(f"{path}: split {name!r} must be a list of file names, got {_json_type(files)}")
        bad = [f for f in files if not isinstance(f, str) or not f.strip()]
        if bad:
            raise DataError(f"{path}: split {name!r} lists entries that are not file names: {bad[:5]!r}")
        seen: set[str] = set()
        twice = []
        for f in files:
            if Path(f).name in seen:
                twice.append(f)
            seen.add(Path(f).name)
        if twice:
            raise DataError(f"{path}: split {name!r} lists {twice[:5]} more than once")
    return splits


def available_splits(directory: str | os.PathLike) -> dict[str, list[str]]:
    """The split names and file lists of a directory's `data_splits.json` ({} if it has none)."""
    d = Path(directory)
    return _read_splits(d) if os.path.lexists(d / SPLITS_FILE) else {}


def _read_label_names(path: Path) -> list[str]:
    names = read_json(path)
    if not isinstance(names, list):
        raise DataError(f"{path}: expected a list of class names, got {_json_type(names)}")
    bad = [n for n in names if not isinstance(n, str)]
    if bad:
        raise DataError(f"{path}: class names must be strings; got {bad[:5]!r}")
    if len(set(names)) != len(names):
        raise DataError(f"{path}: class names must be distinct; got {names}")
    return names


def _select_split_files(directory: Path, files: list[Path], split: str | Sequence[str]) -> list[Path]:
    splits = _read_splits(directory)
    keys = [split] if isinstance(split, str) else list(split) if isinstance(split, (list, tuple)) else []
    if not keys or not all(isinstance(k, str) for k in keys):
        raise DataError(f"split: expected a split name or a list of names, got {split!r}")
    keys = list(dict.fromkeys(keys))  # a name given twice is the same split
    by_name = {p.name: p for p in files}
    stems: dict[str, list[Path]] = {}
    for p in files:
        stems.setdefault(p.stem, []).append(p)
    chosen: dict[Path, str] = {}
    for key in keys:
        if key not in splits:
            raise DataError(f"{directory / SPLITS_FILE}: no split {key!r}; have {sorted(splits)}")
        if not splits[key]:
            raise DataError(f"{directory / SPLITS_FILE}: split {key!r} lists no files")
        for entry in splits[key]:
            name = Path(entry).name  # never a path outside the directory
            if name in by_name:
                path = by_name[name]
            elif len(stems.get(name, [])) == 1:
                path = stems[name][0]
            elif name in stems:
                raise DataError(f"{directory / SPLITS_FILE}: split {key!r} lists {entry!r}, which could be any of "
                                f"{[p.name for p in stems[name]]}; give the file name with its suffix")
            else:
                absent = [e for e in splits[key] if Path(e).name not in by_name and Path(e).name not in stems]
                raise DataError(f"{directory / SPLITS_FILE}: split {key!r} lists files that are not scans in "
                                f"{directory}: {absent[:5]}")
            if path in chosen:
                raise DataError(f"{directory / SPLITS_FILE}: {path.name} is listed in both {chosen[path]!r} and "
                                f"{key!r}; splits used together must not share scans")
            chosen[path] = key
    return list(chosen)


def _load_directory(directory: Path, wavenumbers: np.ndarray | None,
                    split: str | Sequence[str] | None, recheck: bool = False) -> SpectralDataset:
    if not directory.is_dir():
        raise DataError(f"{directory}: no such directory")
    from .readers import SCAN_SUFFIXES, SIDECAR_SUFFIXES

    files: list[Path] = []
    skipped: list[Path] = []
    try:
        entries = sorted(directory.iterdir(), key=lambda p: _natural_key(p.name))
    except OSError as exc:
        raise DataError(f"{directory}: cannot be listed ({exc.strerror or exc})") from None
    # One scan per stem: a .dmt/.seq/.hdr owns the files of the same name (its data and headers);
    # where several share a stem, the first in OWNER_SUFFIXES wins (a mosaic over its tiles).
    owners: dict[str, Path] = {}
    for entry in entries:
        suffix = entry.suffix.lower()
        if suffix in OWNER_SUFFIXES and entry.is_file():
            key = entry.stem.lower()
            if key not in owners or OWNER_SUFFIXES.index(suffix) < OWNER_SUFFIXES.index(owners[key].suffix.lower()):
                owners[key] = entry
    for entry in entries:
        if entry.name in _IGNORED_FILES or entry.name.startswith(".") or entry.is_dir():
            continue
        suffix, key = entry.suffix.lower(), entry.stem.lower()
        if key in owners and owners[key] != entry:
            continue  # part of another file's scan
        if suffix in SIDECAR_SUFFIXES and suffix != ".dat":
            continue  # mosaic tiles and backgrounds; an unowned .dat is reported as skipped
        (files if suffix in SCAN_SUFFIXES else skipped).append(entry)
    if skipped:
        warnings.warn(f"{directory}: skipped {len(skipped)} file(s) that are not .npy scans: "
                      + ", ".join(p.name for p in skipped[:10]), stacklevel=3)
    if split is not None:
        files = _select_split_files(directory, files, split)
    if not files:
        raise DataError(f"{directory}: the directory holds no scans (.npy or another supported format)")

    label_names = None
    names_path = directory / LABELS_DIR / LABEL_NAMES_FILE
    if os.path.lexists(names_path):
        label_names = _read_label_names(names_path)

    scans, index, channels = [], [], None
    file_axis: tuple[Path, np.ndarray] | None = None
    shared = _shared_finite_check([p for p in files if p.suffix.lower() == ".npy"], recheck)
    for path in files:
        if path.suffix.lower() == ".npy":
            arr = _open_npy(path)
        else:
            arr, own_wn = _read_other(path)
            if own_wn is not None:
                if file_axis is None:
                    file_axis = (path, own_wn)
                elif len(own_wn) != len(file_axis[1]) or not np.allclose(own_wn, file_axis[1], atol=1e-3):
                    raise DataError(f"{path}: its wavenumber axis ({own_wn[0]:g}…{own_wn[-1]:g} cm⁻¹, {len(own_wn)} "
                                    f"channels) differs from {file_axis[0].name}'s ({file_axis[1][0]:g}…"
                                    f"{file_axis[1][-1]:g} cm⁻¹, {len(file_axis[1])}); resample them first")
        label_path = directory / LABELS_DIR / (path.stem + ".npy")
        labels = _open_npy(label_path) if os.path.lexists(label_path) else None
        scan, finite = _make_scan(path.name, arr, str(path), path, labels, recheck, shared.get(path))
        if labels is not None and label_names is not None and scan.labels is not None and scan.labels.size \
                and scan.labels.max() >= len(label_names):
            raise DataError(f"{label_path}: holds label {scan.labels.max()} but {names_path} names only "
                            f"{len(label_names)} classes (0…{len(label_names) - 1})")
        if channels is None:
            channels = (path, scan.n_channels)
        elif scan.n_channels != channels[1]:
            raise DataError(f"{path}: has {scan.n_channels} channels but {channels[0].name} has {channels[1]}")
        scans.append(scan)
        index.append(finite)

    n_channels = scans[0].n_channels
    known = True
    if wavenumbers is not None:
        wn = check_wavenumbers(wavenumbers, n_channels, f"{directory} (wavenumbers argument)")
    elif os.path.lexists(directory / WAVENUMBERS_FILE):
        wn = check_wavenumbers(np.asarray(_open_npy(directory / WAVENUMBERS_FILE)), n_channels,
                               str(directory / WAVENUMBERS_FILE))
    elif file_axis is not None:
        wn = check_wavenumbers(file_axis[1], n_channels, str(file_axis[0]))
    else:
        wn, known = np.arange(n_channels, dtype=float), False
    return SpectralDataset(scans, index, wn, label_names, str(directory), known)


def _from_array(arr: np.ndarray, name: str, where: str, wavenumbers: np.ndarray | None,
                path: Path | None = None, recheck: bool = False, finite: np.ndarray | None = None) -> SpectralDataset:
    scan, finite = _make_scan(name, arr, where, path, recheck=recheck, finite=finite)
    known = wavenumbers is not None
    wn = (check_wavenumbers(wavenumbers, scan.n_channels, where) if wavenumbers is not None
          else np.arange(scan.n_channels, dtype=float))
    return SpectralDataset([scan], [finite], wn, None, where, known)


def _from_frame(df: pd.DataFrame, name: str, where: str, wavenumbers: np.ndarray | None,
                header: Sequence[object] | None = None) -> SpectralDataset:
    """A table whose column names (or `header`, the file's own first row) are the wavenumbers."""
    columns = list(df.columns) if header is None else list(header)
    try:
        head = np.array([float(c) for c in columns], dtype=np.float64)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        bad = [c for c in columns if not _is_number(c)]
        raise DataError(f"{where}: expected wavenumbers as column names; these are not numbers: {bad[:5]}") from None
    values = df.to_numpy()
    if values.dtype.kind not in "fiu":
        try:
            values = values.astype(float)
        except (TypeError, ValueError):
            raise DataError(f"{where}: table holds non-numeric values") from None
    wn = head if wavenumbers is None else wavenumbers
    if len(head) > 1 and head[0] > head[-1] and wavenumbers is None:
        # Store descending tables ascending so every dataset reads low → high.
        values, wn = values[:, ::-1], head[::-1]
    return _from_array(np.ascontiguousarray(values), name, where, wn)


MAX_HEADER_BYTES = 16 << 20


def _read_table(path: Path) -> tuple[pd.DataFrame, list[str]]:
    """A CSV/TSV table and its header row as written (pandas would rename repeated names: 1000, 1000.1).

    The delimiter is one of , ; tab | or blanks, found from the header row (a free sniffer would
    happily split on a letter)."""
    regular_file(path)
    try:
        with open(path, encoding="utf-8", newline="") as f:
            first = f.readline(MAX_HEADER_BYTES)
        if len(first) >= MAX_HEADER_BYTES:
            raise DataError(f"{path}: the header row is longer than {MAX_HEADER_BYTES >> 20} MB; not a table")
        if not first.strip():
            raise DataError(f"{path}: not a readable table (no header row of wavenumbers)")
        sep = "\t" if path.suffix.lower() == ".tsv" else csv.Sniffer().sniff(first, delimiters=",;\t| ").delimiter
        if sep == " ":
            names = first.split()
            df = pd.read_csv(path, sep=r"\s+", engine="python")
        else:
            names = next(csv.reader([first.rstrip("\r\n")], delimiter=sep))
            df = pd.read_csv(path, sep=sep, engine="c")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, csv.Error, ValueError) as exc:
        raise DataError(f"{path}: not a readable table ({type(exc).__name__}: {str(exc)[:200]})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    names = [n.strip() for n in names]
    if len(names) != df.shape[1]:
        raise DataError(f"{path}: the header row has {len(names)} fields but the table {df.shape[1]} columns")
    if df.shape[0] == 0:
        raise DataError(f"{path}: the table has a header row but no spectra")
    return df, names


def _read_other(path: Path, variable: str | None = None,
                wavenumbers_variable: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """A non-numpy scan as (cube or table, its wavenumbers), channels last."""
    from .readers import read_file

    if path.suffix.lower() in (".csv", ".tsv"):
        ds = load_dataset(path)
        return ds.scan_objects[0].pixels, ds.wavenumbers if ds.wavenumbers_known else None
    arr, wn = read_file(path, variable, wavenumbers_variable)
    if wn is not None and arr.shape[-1] != len(wn) and arr.shape[0] == len(wn):
        arr = np.moveaxis(arr, 0, -1)  # channels first → last
    if wn is not None and len(wn) > 1 and wn[0] > wn[-1]:
        arr, wn = arr[..., ::-1], wn[::-1]  # every dataset reads low → high
    return np.ascontiguousarray(arr), wn


def _is_number(x: object) -> bool:
    try:
        float(x)  # type: ignore[arg-type]
        return True
    except (TypeError, ValueError, OverflowError):
        return False


def load_dataset(source: str | os.PathLike | np.ndarray | pd.DataFrame | SpectralDataset, *,
                 wavenumbers: Sequence[float] | np.ndarray | None = None,
                 split: str | Sequence[str] | None = None, variable: str | None = None,
                 wavenumbers_variable: str | None = None, recheck: bool = False) -> SpectralDataset:
    """Open scans as a `SpectralDataset`.

    `source`: a directory of `.npy` scans (with optional `wavenumbers.npy`, `labels/` and
    `data_splits.json`), one `.npy` file `(H, W, C)` or `(N, C)`, a CSV whose header row holds
    the wavenumbers, a numpy array, or a DataFrame with wavenumber columns. `split` selects the
    files listed under that key (or keys, which must not share files) of the directory's
    `data_splits.json`. Also reads MATLAB `.mat`, HDF5, ENVI `.hdr` and Agilent
    `.dat`/`.seq`/`.dmt` (see `spectra_vae.formats`); in `.mat`/HDF5 files `variable` and
    `wavenumbers_variable` name the arrays when the common names are not used. `recheck=True`
    reads every pixel of `.npy` scans for NaN/inf again instead of using the remembered result
    (see `cache_dir`). Only regular files are read; anything else is a `DataError` naming it.
    """
    if wavenumbers is None:
        wn = None
    else:
        try:
            wn = np.asarray(wavenumbers)
        except (TypeError, ValueError) as exc:
            raise DataError(f"wavenumbers: not an array of numbers ({exc})") from None
        if wn.dtype.kind not in "fiu":
            raise DataError(f"wavenumbers: must hold real numbers, got dtype {wn.dtype}")
        wn = wn.astype(float)
    if isinstance(source, SpectralDataset):
        return source
    if isinstance(source, pd.DataFrame):
        return _from_frame(source, "table", "DataFrame", wn)
    if isinstance(source, np.ndarray):
        return _from_array(source, "array", "array", wn)
    if not isinstance(source, (str, os.PathLike)):
        raise DataError("expected a path, a numpy array, a DataFrame or a SpectralDataset, "
                        f"got {type(source).__name__}")
    if not isinstance(recheck, bool):
        raise DataError(f"recheck: expected True or False, got {recheck!r}")
    for name, value in (("variable", variable), ("wavenumbers_variable", wavenumbers_variable)):
        if value is not None and not isinstance(value, str):
            raise DataError(f"{name}: expected the name of an array, got {value!r}")
    path = Path(source)
    if split is not None and not path.is_dir():
        raise DataError(f"{path}: split={split!r} needs a directory with {SPLITS_FILE}")
    if path.is_dir():
        return _load_directory(path, wn, split, recheck)
    if not os.path.lexists(path):
        raise DataError(f"{path}: no such file or directory")
    regular_file(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        shared = _shared_finite_check([path], recheck)
        return _from_array(_open_npy(path), path.name, str(path), wn, path, recheck, shared.get(path))
    if suffix in (".mat", ".h5", ".hdf5", ".hdr", ".dmt", ".seq", ".dat"):
        arr, own = _read_other(path, variable, wavenumbers_variable)
        return _from_array(arr, path.name, str(path), wn if wn is not None else own, path)
    if suffix in (".csv", ".tsv", ".txt"):
        df, header = _read_table(path)
        return _from_frame(df, path.name, str(path), wn, header)
    raise DataError(f"{path}: unsupported file type {suffix!r}; expected a directory, .npy, .csv, .mat, "
                    ".h5/.hdf5, ENVI .hdr, or Agilent .dat/.seq/.dmt")


def as_dataset(data: object) -> SpectralDataset:
    """Accept a dataset, array, DataFrame or path wherever a dataset is expected."""
    return data if isinstance(data, SpectralDataset) else load_dataset(data)  # type: ignore[arg-type]
