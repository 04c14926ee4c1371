"""A dataset: the usable pixels of one or more scans, each keeping its (scan, row, col).

Arrays are `(n_pixels, n_channels)`. Nothing here loads a whole directory into memory: pixels are
read from the (memory-mapped) scans in chunks, through a fitted preprocessing view when one is set.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..core.errors import DataError
from .scan import CHUNK_PIXELS, Scan


def shard_positions(n_pixels: int, rank: int, world: int, block: int = 8192) -> np.ndarray:
    """Process `rank`'s share of `n_pixels` positions among `world` processes: blocks of `block`
    consecutive positions dealt round-robin (fewer, smaller blocks on small data: several each)."""
    if world <= 1:
        return np.arange(n_pixels)
    block = max(1, min(block, n_pixels // (8 * world)))
    starts = np.arange(0, n_pixels, block)[rank::world]
    if not len(starts):
        return np.zeros(0, np.int64)
    return np.concatenate([np.arange(s, min(s + block, n_pixels)) for s in starts])


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
        axis = (f"{self.wavenumbers.min():g}–{self.wavenumbers.max():g} cm⁻¹" if self.wavenumbers_known
                else f"channel index {self.wavenumbers.min():g}–{self.wavenumbers.max():g} (no wavenumber axis)")
        return (f"SpectralDataset({len(self)} pixels, {len(self._scans)} scans, {self.n_channels} channels, "
                f"{axis}, source={self.source!r})")

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

    def locate(self, positions: np.ndarray | Sequence[int]) -> np.ndarray:
        """`(len(positions), 3)` (scan index, row, col) of the pixels at dataset `positions` only."""
        positions = np.asarray(positions, dtype=np.int64)
        if positions.size and (positions.min() < 0 or positions.max() >= len(self)):
            raise IndexError(f"pixel index out of range 0..{len(self) - 1}")
        scan_k = np.searchsorted(self._offsets, positions, side="right") - 1
        out = np.empty((len(positions), 3), np.int64)
        out[:, 0] = scan_k
        for k in np.unique(scan_k):
            where = np.flatnonzero(scan_k == k)
            flat = self._index[k][positions[where] - self._offsets[k]]
            out[where, 1], out[where, 2] = np.divmod(flat, self._scans[k].width)
        return out

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

    def measured(self, key: Hashable, measure: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """Per pixel, `measure` of its raw spectrum (a chunk `(m, C)` → `(m,)`), each scan pixel read once:
        the values are kept on the scans under `key` (which must name the measure and its channels), so a
        measure asked for again, by any view or subset of the same scans, is looked up, not read again."""
        ds = self.raw()
        out = np.empty(len(ds))
        missing = np.zeros(len(ds), bool)
        for k, (scan, idx) in enumerate(zip(ds._scans, ds._index, strict=True)):
            values, known = self._kept(scan, key)
            out[ds._offsets[k] : ds._offsets[k + 1]] = values[idx]
            missing[ds._offsets[k] : ds._offsets[k + 1]] = ~known[idx]
        todo = np.flatnonzero(missing)
        if todo.size:
            parts = [np.asarray(measure(c), dtype=float) for c in ds.select_pixels(todo).iter_chunks()]
            out[todo] = np.concatenate(parts)
            ds.remember(key, out[todo], todo)
        return out

    def remember(self, key: Hashable, values: np.ndarray, positions: np.ndarray | None = None) -> None:
        """Keep per-pixel `values` of the measure `key` (see `measured`) for the pixels at dataset `positions`
        (all of them: None), e.g. values another process of a distributed run measured."""
        positions = np.arange(len(self)) if positions is None else np.asarray(positions, dtype=np.int64)
        values = np.asarray(values, dtype=float)
        scan_k = np.searchsorted(self._offsets, positions, side="right") - 1
        for k in np.unique(scan_k):
            where = np.flatnonzero(scan_k == k)
            flat = self._index[k][positions[where] - self._offsets[k]]
            kept, known = self._kept(self._scans[k], key)
            kept[flat], known[flat] = values[where], True

    @staticmethod
    def _kept(scan: Scan, key: Hashable) -> tuple[np.ndarray, np.ndarray]:
        if key not in scan.measures:
            n = scan.height * scan.width
            scan.measures[key] = (np.zeros(n), np.zeros(n, bool))
        return scan.measures[key]

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
        return self.select_pixels(shard_positions(len(self), rank, world, block))

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



def check_compatible(wavenumbers: np.ndarray, n_channels: int, ds: SpectralDataset, what: str,
                     against: str, known: bool = True) -> None:
    """`ds` has `n_channels` channels on the same axis as `wavenumbers` (within 0.001 cm⁻¹, where both
    axes are known); `DataError` naming `what` and `against` with both axes otherwise."""
    if ds.n_channels != n_channels:
        raise DataError(f"{what}: has {ds.n_channels} channels but {against} expects {n_channels}")
    if known and ds.wavenumbers_known and not np.allclose(ds.wavenumbers, wavenumbers, rtol=0, atol=1e-3):
        raise DataError(f"{what}: wavenumber axis {ds.wavenumbers[0]:g}…{ds.wavenumbers[-1]:g} cm⁻¹ "
                        f"does not match {against}'s {wavenumbers[0]:g}…{wavenumbers[-1]:g} cm⁻¹")
