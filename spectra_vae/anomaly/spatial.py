"""A pixel's score averaged over the tissue around it: tumour in a core is a region, not a pixel.

`smooth_scores` replaces each included pixel's score by the mean of the included pixels' scores in
its k×k window (itself among them), within its own scan. Included pixels are tissue by the model's
rule: background beside a core's edge does not dilute the tissue's scores, and a background pixel
keeps its own score. A calibration with `smoothing=k` sets its threshold on scores smoothed the same
way, so the promised false-positive rate is the smoothed score's (`calibration.calibrate_values`).
"""

from __future__ import annotations

import numpy as np

from ..core.errors import DataError


def check_smoothing(size: object) -> int:
    """`size` as the k of a k×k window: 1 (no smoothing) or an odd number ≥ 3; `DataError` otherwise."""
    if isinstance(size, (bool, np.bool_)) or not isinstance(size, (int, np.integer)):
        raise DataError(f"smoothing must be 1 (none) or an odd whole number ≥ 3 (a k×k window); got {size!r}")
    k = int(size)
    if k < 1 or k % 2 == 0:
        raise DataError(f"smoothing must be 1 (none) or an odd whole number ≥ 3 (a k×k window); got {size!r}")
    return k


def _box_sum(image: np.ndarray, size: int) -> np.ndarray:
    """Sum over each pixel's size×size window (zero outside the image), by cumulative sums."""
    half = size // 2
    padded = np.pad(image, ((half + 1, half), (half + 1, half)))
    c = padded.cumsum(axis=0).cumsum(axis=1)
    h, w = image.shape
    return c[size:size + h, size:size + w] - c[:h, size:size + w] - c[size:size + h, :w] + c[:h, :w]


def smooth_scores(scores: np.ndarray, coords: np.ndarray, include: np.ndarray, size: int) -> np.ndarray:
    """Each included pixel's score as the mean over the included pixels of its size×size window in its
    scan; the others keep their own. `coords`: (scan, row, col) per pixel, pixels listed at most once."""
    scores = np.asarray(scores, dtype=np.float64)
    size = check_smoothing(size)
    out = scores.copy()
    include = np.asarray(include, dtype=bool) & np.isfinite(scores)
    if size == 1 or not include.any():
        return out
    coords = np.asarray(coords, dtype=np.int64)
    for k in np.unique(coords[include, 0]):
        at = np.flatnonzero(include & (coords[:, 0] == k))
        r, c = coords[at, 1], coords[at, 2]
        r0, c0 = r.min(), c.min()  # only the tissue's bounding box, not the whole scan
        shape = (int(r.max() - r0 + 1), int(c.max() - c0 + 1))
        total, count = np.zeros(shape), np.zeros(shape)
        total[r - r0, c - c0] = scores[at]
        count[r - r0, c - c0] = 1.0
        out[at] = _box_sum(total, size)[r - r0, c - c0] / _box_sum(count, size)[r - r0, c - c0]
    return out


def near(coords: np.ndarray, marked: np.ndarray, size: int) -> np.ndarray:
    """Per pixel of (scan, row, col) `coords`, whether a `marked` pixel of its scan lies in its size×size
    window: the pixels whose windows `smooth_scores` would reach from the marked ones."""
    coords = np.asarray(coords, dtype=np.int64)
    out = np.zeros(len(coords), bool)
    for k in np.unique(coords[marked, 0]):
        at = np.flatnonzero(coords[:, 0] == k)
        r, c = coords[at, 1], coords[at, 2]
        r0, c0 = r.min(), c.min()
        grid = np.zeros((int(r.max() - r0 + 1), int(c.max() - c0 + 1)))
        grid[r[marked[at]] - r0, c[marked[at]] - c0] = 1.0
        out[at] = _box_sum(grid, size)[r - r0, c - c0] > 0.5
    return out


def check_images(data: object, what: str = "smoothing") -> None:
    """`DataError` when `data` (a dataset) holds scans without an image geometry (tables of spectra)."""
    tables = [s.name for s in getattr(data, "scan_objects", []) if not s.is_image]
    if tables:
        raise DataError(f"{getattr(data, 'source', None) or 'data'}: {what} averages scores over image "
                        f"neighbourhoods, and {tables[:3]} {'is a table' if len(tables) == 1 else 'are tables'} of "
                        "spectra without an image geometry; use smoothing=1 for tables")
