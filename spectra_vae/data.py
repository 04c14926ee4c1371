"""Scans and datasets: memory-mapped pixels with their (scan, row, col), wavenumbers, labels, splits.

A *scan* is one image `(H, W, C)` or one table `(N, C)` (a table is a scan with width 1 and
no image geometry). A *dataset* is a list of scans and, per scan, the flat indices of the pixels
it holds: only pixels whose spectra are finite in every channel are usable. Nothing here loads
a whole directory into memory; `.npy` files are opened memory-mapped and read in chunks.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import DataError

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


def _open_npy(path: Path) -> np.ndarray:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npy array ({exc})") from exc
    if not isinstance(arr, np.ndarray):
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
    return arr.reshape(h * w, c), h, w, image


def _finite_pixels(pixels: np.ndarray) -> np.ndarray:
    """Flat indices of the pixels whose spectra are finite in every channel, read in chunks."""
    if pixels.dtype.kind in "iu":
        return np.arange(pixels.shape[0])
    keep = [np.flatnonzero(np.isfinite(pixels[s : s + CHUNK_PIXELS]).all(axis=1)) + s
            for s in range(0, pixels.shape[0], CHUNK_PIXELS)]
    return np.concatenate(keep)


def cache_dir() -> Path:
    """Where results of reading every pixel are kept between sessions: `$SPECTRA_VAE_CACHE`, else
    `$XDG_CACHE_HOME/spectra_vae`, else `~/.cache/spectra_vae`. Never beside the data."""
    if os.environ.get("SPECTRA_VAE_CACHE"):
        return Path(os.environ["SPECTRA_VAE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "spectra_vae"


def _finite_record(pixels: np.ndarray, path: Path) -> Path:
    """Where the finite check of a file is remembered, keyed by its path, size, modification time,
    inode, shape and dtype (so a changed file is checked again)."""
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}|{pixels.shape}|{pixels.dtype.str}"
    return cache_dir() / "finite" / (hashlib.sha1(key.encode()).hexdigest() + ".npy")


def _remember_finite(record: Path, n_pixels: int, finite: np.ndarray) -> None:
    """Write the record (the non-finite pixels, usually none); an unwritable cache only costs the re-check."""
    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        bad = np.setdiff1d(np.arange(n_pixels), finite, assume_unique=True).astype(np.int64)
        fd, tmp = tempfile.mkstemp(prefix=f".{record.name}.", suffix=".tmp", dir=record.parent)
        with os.fdopen(fd, "wb") as f:
            np.save(f, bad)
        os.replace(tmp, record)
    except OSError:
        pass


def _finite_pixels_cached(pixels: np.ndarray, path: Path | None) -> np.ndarray:
    """`_finite_pixels`, remembered per file: checking every pixel reads the whole file, which for
    data larger than RAM means a pass over the disk each time a dataset is opened."""
    if path is None or not isinstance(pixels, np.memmap) or pixels.dtype.kind in "iu":
        return _finite_pixels(pixels)
    record: Path | None = None
    try:
        record = _finite_record(pixels, path)
        if record.is_file():
            bad = np.load(record, allow_pickle=False)
            in_range = bad.size == 0 or (0 <= bad.min() and bad.max() < len(pixels))
            if bad.ndim == 1 and bad.dtype.kind == "i" and in_range:
                return np.setdiff1d(np.arange(len(pixels)), bad, assume_unique=True)
    except (OSError, ValueError):
        record = None
    finite = _finite_pixels(pixels)
    if record is not None:
        _remember_finite(record, len(pixels), finite)
    return finite


def _shared_finite_check(paths: list[Path]) -> dict[Path, np.ndarray]:
    """In a distributed run (an initialised torch process group), the finite pixels of `.npy`
    files, each file checked (or looked up in the cache) by one process only, files dealt
    round-robin, and the results exchanged; every process remembers them in its own cache.
    Empty when alone. Every process must open the same files, as `pipeline.train` does."""
    from .distributed import dist_info, gather_objects

    rank, world = dist_info()
    if world == 1 or not paths:
        return {}
    mine: dict[int, np.ndarray] = {}
    for k in range(rank, len(paths), world):
        try:
            pixels = _as_pixels(_open_npy(paths[k]), str(paths[k]))[0]
        except DataError:
            continue  # reported by the process that opens it for the dataset, which is every one
        finite = _finite_pixels_cached(pixels, paths[k])
        mine[k] = np.setdiff1d(np.arange(len(pixels)), finite, assume_unique=True).astype(np.int64)
    out: dict[Path, np.ndarray] = {}
    for part in gather_objects(mine):
        for k, bad in part.items():
            pixels = _as_pixels(_open_npy(paths[k]), str(paths[k]))[0]
            out[paths[k]] = np.setdiff1d(np.arange(len(pixels)), bad, assume_unique=True)
            if k % world != rank and pixels.dtype.kind not in "iu":
                try:
                    _remember_finite(_finite_record(pixels, paths[k]), len(pixels), out[paths[k]])
                except OSError:
                    pass
    return out


def check_wavenumbers(wavenumbers: Sequence[float] | np.ndarray, n_channels: int, where: str) -> np.ndarray:
    """Validate a wavenumber axis: one finite, strictly monotonic value per channel."""
    wn = np.asarray(wavenumbers, dtype=float)
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
            raw = self._replace(self._scans, self._index, preprocessor=None).read(indices, dtype)
            return self.preprocessor.transform(raw).astype(dtype, copy=False)
        out = np.empty((indices.size, self.n_channels), dtype=dtype)
        scan_k = np.searchsorted(self._offsets, indices, side="right") - 1
        for k in np.unique(scan_k):
            where = np.flatnonzero(scan_k == k)
            flat = self._index[k][indices[where] - self._offsets[k]]
            order = np.argsort(flat, kind="stable")
            out[where[order]] = self._scans[k].pixels[flat[order]]
        return out

    def to_array(self, dtype: type = np.float32) -> np.ndarray:
        """All pixels as one `(n_pixels, C)` array in memory (only for data that fits in RAM)."""
        out = np.empty((len(self), self.n_channels), dtype=dtype)
        pos = 0
        for block in self.iter_chunks(dtype=dtype):
            out[pos : pos + len(block)] = block
            pos += len(block)
        return out

    def image(self, values: np.ndarray, scan: int | str, fill: float = np.nan) -> np.ndarray:
        """Draw a per-pixel quantity (aligned with this dataset) back as the `(H, W)` image of `scan`."""
        values = np.asarray(values)
        if values.shape[0] != len(self):
            raise DataError(f"expected one value per pixel ({len(self)}), got {values.shape[0]}")
        k = self.scans.index(scan) if isinstance(scan, str) else int(scan)
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
        fr = np.asarray(fractions, dtype=float)
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
               labels: np.ndarray | None = None, finite: np.ndarray | None = None) -> tuple[Scan, np.ndarray]:
    pixels, h, w, image = _as_pixels(arr, where)
    if finite is None:
        finite = _finite_pixels_cached(pixels, path)
    n_bad = pixels.shape[0] - len(finite)
    if len(finite) == 0:
        raise DataError(f"{where}: no pixel has a finite spectrum (all {pixels.shape[0]} contain NaN or inf)")
    if n_bad:
        warnings.warn(f"{where}: excluded {n_bad} of {pixels.shape[0]} pixels with NaN or inf values",
                      stacklevel=3)
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        if labels.shape[0] != h * w:
            raise DataError(f"{where}: label map has {labels.shape[0]} pixels, scan has {h * w}")
    scan = Scan(name, pixels, h, w, path=path, labels=labels, is_image=image, n_nonfinite=n_bad)
    return scan, finite


def _read_splits(directory: Path) -> dict[str, list[str]]:
    path = directory / SPLITS_FILE
    try:
        splits = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{directory}: split requested but there is no {SPLITS_FILE}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(splits, dict) or not all(isinstance(v, list) for v in splits.values()):
        raise DataError(f"{path}: expected an object mapping split names to lists of files")
    return splits


def available_splits(directory: str | os.PathLike) -> dict[str, list[str]]:
    """The split names and file lists of a directory's `data_splits.json` ({} if it has none)."""
    d = Path(directory)
    return _read_splits(d) if (d / SPLITS_FILE).exists() else {}


def _load_directory(directory: Path, wavenumbers: np.ndarray | None,
                    split: str | Sequence[str] | None) -> SpectralDataset:
    if not directory.is_dir():
        raise DataError(f"{directory}: no such directory")
    from .formats import SCAN_SUFFIXES, SIDECAR_SUFFIXES

    files, skipped = [], []
    entries = sorted(directory.iterdir(), key=lambda p: _natural_key(p.name))
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
        splits = _read_splits(directory)
        keys = [split] if isinstance(split, str) else list(split)
        wanted: list[str] = []
        for key in keys:
            if key not in splits:
                raise DataError(f"{directory / SPLITS_FILE}: no split {key!r}; have {sorted(splits)}")
            wanted += [Path(f).name for f in splits[key]]
        by_name = {p.name: p for p in files} | {p.stem: p for p in files}
        missing = [w for w in wanted if w not in by_name]
        if missing:
            raise DataError(f"{directory / SPLITS_FILE}: split {split!r} lists files that are not in "
                            f"{directory}: {missing[:5]}")
        files = [by_name[w] for w in wanted]
    if not files:
        raise DataError(f"{directory}: the directory holds no scans (.npy or another supported format)")

    label_names = None
    names_path = directory / LABELS_DIR / LABEL_NAMES_FILE
    if names_path.exists():
        label_names = [str(n) for n in json.loads(names_path.read_text())]

    scans, index, channels = [], [], None
    file_axis: tuple[Path, np.ndarray] | None = None
    shared = _shared_finite_check([p for p in files if p.suffix.lower() == ".npy"])
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
        labels = _open_npy(label_path) if label_path.exists() else None
        scan, finite = _make_scan(path.name, arr, str(path), path, labels, shared.get(path))
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
    elif (directory / WAVENUMBERS_FILE).exists():
        wn = check_wavenumbers(np.asarray(_open_npy(directory / WAVENUMBERS_FILE)), n_channels,
                               str(directory / WAVENUMBERS_FILE))
    elif file_axis is not None:
        wn = check_wavenumbers(file_axis[1], n_channels, str(file_axis[0]))
    else:
        wn, known = np.arange(n_channels, dtype=float), False
    return SpectralDataset(scans, index, wn, label_names, str(directory), known)


def _from_array(arr: np.ndarray, name: str, where: str, wavenumbers: np.ndarray | None,
                path: Path | None = None, finite: np.ndarray | None = None) -> SpectralDataset:
    scan, finite = _make_scan(name, arr, where, path, finite=finite)
    known = wavenumbers is not None
    wn = (check_wavenumbers(wavenumbers, scan.n_channels, where) if known
          else np.arange(scan.n_channels, dtype=float))
    return SpectralDataset([scan], [finite], wn, None, where, known)


def _from_frame(df: pd.DataFrame, name: str, where: str, wavenumbers: np.ndarray | None) -> SpectralDataset:
    try:
        header = np.array([float(c) for c in df.columns])
    except (TypeError, ValueError):
        bad = [c for c in df.columns if not _is_number(c)]
        raise DataError(f"{where}: expected wavenumbers as column names; these are not numbers: {bad[:5]}") from None
    values = df.to_numpy()
    if values.dtype.kind not in "fiu":
        try:
            values = values.astype(float)
        except ValueError:
            raise DataError(f"{where}: table holds non-numeric values") from None
    wn = header if wavenumbers is None else wavenumbers
    if len(header) > 1 and header[0] > header[-1] and wavenumbers is None:
        # Store descending tables ascending so every dataset reads low → high.
        values, wn = values[:, ::-1], header[::-1]
    return _from_array(np.ascontiguousarray(values), name, where, wn)


def _read_other(path: Path, variable: str | None = None,
                wavenumbers_variable: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """A non-numpy scan as (cube or table, its wavenumbers), channels last."""
    from .formats import read_file

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
    except (TypeError, ValueError):
        return False


def load_dataset(source: str | os.PathLike | np.ndarray | pd.DataFrame | SpectralDataset, *,
                 wavenumbers: Sequence[float] | np.ndarray | None = None,
                 split: str | Sequence[str] | None = None, variable: str | None = None,
                 wavenumbers_variable: str | None = None) -> SpectralDataset:
    """Open scans as a `SpectralDataset`.

    `source`: a directory of `.npy` scans (with optional `wavenumbers.npy`, `labels/` and
    `data_splits.json`), one `.npy` file `(H, W, C)` or `(N, C)`, a CSV whose header row holds
    the wavenumbers, a numpy array, or a DataFrame with wavenumber columns. `split` selects the
    files listed under that key (or keys) of the directory's `data_splits.json`. Also reads
    MATLAB `.mat`, HDF5, ENVI `.hdr` and Agilent `.dat`/`.seq`/`.dmt` (see `spectra_vae.formats`);
    in `.mat`/HDF5 files `variable` and `wavenumbers_variable` name the arrays when the common
    names are not used.
    """
    wn = None if wavenumbers is None else np.asarray(wavenumbers, dtype=float)
    if isinstance(source, SpectralDataset):
        return source
    if isinstance(source, pd.DataFrame):
        return _from_frame(source, "table", "DataFrame", wn)
    if isinstance(source, np.ndarray):
        return _from_array(source, "array", "array", wn)
    path = Path(source)
    if split is not None and not path.is_dir():
        raise DataError(f"{path}: split={split!r} needs a directory with {SPLITS_FILE}")
    if path.is_dir():
        return _load_directory(path, wn, split)
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        shared = _shared_finite_check([path])
        return _from_array(_open_npy(path), path.name, str(path), wn, path, shared.get(path))
    if suffix in (".mat", ".h5", ".hdf5", ".hdr", ".dmt", ".seq", ".dat"):
        arr, own = _read_other(path, variable, wavenumbers_variable)
        return _from_array(arr, path.name, str(path), wn if wn is not None else own, path)
    if suffix in (".csv", ".tsv", ".txt"):
        try:
            df = pd.read_csv(path, sep=None, engine="python")
        except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
            raise DataError(f"{path}: not a readable table ({exc})") from exc
        return _from_frame(df, path.name, str(path), wn)
    raise DataError(f"{path}: unsupported file type {suffix!r}; expected a directory, .npy, .csv, .mat, "
                    ".h5/.hdf5, ENVI .hdr, or Agilent .dat/.seq/.dmt")


def as_dataset(data: object) -> SpectralDataset:
    """Accept a dataset, array, DataFrame or path wherever a dataset is expected."""
    return data if isinstance(data, SpectralDataset) else load_dataset(data)  # type: ignore[arg-type]
