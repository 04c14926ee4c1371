"""Each pixel with its neighbourhood: the spectrum and the mean spectrum of its k×k neighbours.

The `spatial` architecture's encoder reads both (tissue is regions, not pixels). Neighbours come
from the memory-mapped scan through the pixel coordinates the dataset keeps, a chunk of pixels at
a time, so the memory bound of streaming holds (a chunk reads its own rows and the k − 1 rows
around them). What counts as a neighbour is explicit:

- inside the scan (at an edge, fewer neighbours; none outside);
- a finite spectrum (a pixel excluded for NaN/inf is no neighbour);
- on the same side of the tissue rule as the centre pixel (`side`, when given): a tissue pixel at a
  core's edge is not averaged with the background beside it, nor background with tissue.

A pixel with no neighbour left takes its own spectrum as its neighbourhood's mean. Data without an
image geometry (a table of spectra) have no neighbourhoods: a `DataError` says so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np

from ..core.errors import DataError
from .dataset import SpectralDataset
from .scan import CHUNK_PIXELS

Side = Callable[[np.ndarray], np.ndarray]  # raw spectra (n, C) → bool (n,): which side of the tissue rule


class NeighbourhoodView:
    """A dataset's pixels as `(n, 2C)`: each spectrum, then the mean of its valid k×k neighbours'.

    Spectra are read as the dataset gives them (through its preprocessing view, if any); `side`
    sees the raw spectra. Reads like a dataset (`len`, `n_channels`, `iter_chunks`, `read`).
    """

    def __init__(self, data: SpectralDataset, size: int = 3, side: Side | None = None) -> None:
        if size < 3 or size % 2 == 0:
            raise DataError(f"neighbourhood: the k of a k×k neighbourhood must be odd and at least 3; got {size}")
        not_images = [s.name for s in data.scan_objects if not s.is_image]
        if not_images:
            raise DataError(f"{data.source or 'data'}: the spatial architecture needs images (H, W, C), and "
                            f"{not_images[:3]} {'is a table' if len(not_images) == 1 else 'are tables'} of "
                            "spectra without an image geometry; use architecture='mlp' for tables")
        self.data, self.size, self.side = data, size, side
        self.raw = data.raw()
        self.source = data.source

    def __len__(self) -> int:
        return len(self.data)

    @property
    def n_channels(self) -> int:
        return 2 * self.data.n_channels

    def iter_chunks(self, chunk_pixels: int = CHUNK_PIXELS, dtype: type = np.float32) -> Iterator[np.ndarray]:
        """The pixels in dataset order, `chunk_pixels` at a time, each `(m, 2C)`."""
        for s in range(0, len(self.data), chunk_pixels):
            yield self.read(np.arange(s, min(s + chunk_pixels, len(self.data))), dtype)

    def read(self, indices: np.ndarray | Sequence[int], dtype: type = np.float32) -> np.ndarray:
        """Pixels at dataset positions `indices` with their neighbourhoods' means, `(len(indices), 2C)`."""
        indices = np.asarray(indices, dtype=np.int64)
        centre = self.data.read(indices, dtype)
        return np.concatenate([centre, self.neighbour_means(indices, centre, dtype)], axis=1)

    def neighbour_means(self, indices: np.ndarray, centre: np.ndarray, dtype: type = np.float32) -> np.ndarray:
        """The mean spectrum of each pixel's valid neighbours (its own where it has none).

        Each scan's pixels that the chunk needs (its centres and every neighbour of them) are read,
        checked and preprocessed once, in file order, and every offset gathers from them."""
        out = np.zeros_like(centre, dtype=np.float64)
        counts = np.zeros(len(indices))
        coords = self.data.locate(indices)
        half = self.size // 2
        offsets = [(dr, dc) for dr in range(-half, half + 1) for dc in range(-half, half + 1) if dr or dc]
        for k in np.unique(coords[:, 0]):
            rows = np.flatnonzero(coords[:, 0] == k)
            scan = self.data.scan_objects[int(k)]
            r, c = coords[rows, 1], coords[rows, 2]
            around = []  # per offset: the centres that have that neighbour, and its flat index in the scan
            for dr, dc in offsets:
                rr, cc = r + dr, c + dc
                which = np.flatnonzero((rr >= 0) & (rr < scan.height) & (cc >= 0) & (cc < scan.width))
                around.append((which, rr[which] * scan.width + cc[which]))
            own = r * scan.width + c
            flat = np.unique(np.concatenate([own, *(f for _, f in around)]))  # sorted: reads in file order
            raw = np.asarray(scan.pixels[flat], dtype=np.float32)
            finite = np.asarray(np.isfinite(raw).all(axis=1))
            side: np.ndarray | None = None if self.side is None else self.side(np.where(np.isfinite(raw), raw, 0))
            good = raw[finite]
            if self.data.preprocessor is not None and len(good):
                good = self.data.preprocessor.transform(good)
            spectra = np.zeros((len(flat), centre.shape[1]), good.dtype)
            if len(good):
                spectra[finite] = good
            centre_side: np.ndarray | None = None if side is None else side[np.searchsorted(flat, own)]
            for which, neighbour in around:
                if not which.size:
                    continue
                at_flat = np.searchsorted(flat, neighbour)
                ok = finite[at_flat]
                if side is not None and centre_side is not None:
                    ok &= side[at_flat] == centre_side[which]
                if not ok.any():
                    continue
                at = rows[which[ok]]  # each centre once per offset: plain indexing adds correctly
                out[at] += spectra[at_flat[ok]]
                counts[at] += 1.0
        lonely = counts == 0
        means = out / np.maximum(counts, 1.0)[:, None]
        means[lonely] = centre[lonely]
        return means.astype(dtype, copy=False)
