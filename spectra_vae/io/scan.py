"""A scan: one image `(H, W, C)` or one table `(N, C)` of spectra, viewed as `(H*W, C)` pixels.

A table is a scan with width 1 and no image geometry. `.npy` files are opened memory-mapped; the
checks here (shape, dtype, memory order, labels, the wavenumber axis) run before any pixel is read.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import DataError
from ..core.files import regular_file

CHUNK_PIXELS = 65536  # pixels read at a time


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
    # Per-pixel measures already read from `pixels` (`SpectralDataset.measured`): key → (values, known),
    # each `(H*W,)`. A pass over a scan larger than memory reads it from disk; a measure asked for again
    # (the tissue rule's, by each step of a fit) is then looked up instead of read again.
    measures: dict[Any, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False, compare=False)

    @property
    def n_channels(self) -> int:
        return int(self.pixels.shape[1])



def open_npy(path: Path) -> np.ndarray:
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


def as_pixels(arr: np.ndarray, where: str) -> tuple[np.ndarray, int, int, bool]:
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



def check_labels(labels: np.ndarray, h: int, w: int, image: bool, where: str) -> np.ndarray:
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



def axis_text(wavenumbers: np.ndarray) -> str:
    """An axis in words for messages: "950…1800 cm⁻¹, 442 channels"."""
    wn = np.asarray(wavenumbers, dtype=float).ravel()
    return f"{wn[0]:g}…{wn[-1]:g} cm⁻¹, {len(wn)} channels" if wn.size else "empty"


def match_axis(values: np.ndarray, own: np.ndarray, reference: np.ndarray, where: str, against: str) -> np.ndarray:
    """`values` (channels last) on their own axis `own`, put on `reference`'s channel order.

    When two sources state an axis they must agree: the same axis (within a hundredth of a channel
    or 0.001 cm⁻¹), or the same reversed, when the spectra are flipped to match. Anything else is a
    `DataError` naming both (`where` and `against`), never a silent choice of one.
    """
    own = np.asarray(own, dtype=float).ravel()
    ref = np.asarray(reference)
    if ref.dtype.kind not in "fiu" or ref.ndim != 1:
        return values  # a malformed reference is refused by its own check
    ref = ref.astype(float)
    if len(own) == len(ref) and len(ref) > 0:
        steps = np.abs(np.diff(ref))
        tol = max(1e-3, 0.01 * float(steps.min())) if steps.size and np.isfinite(steps).all() else 1e-3
        if np.allclose(own, ref, rtol=0, atol=tol):
            return values
        if np.allclose(own[::-1], ref, rtol=0, atol=tol):
            return np.ascontiguousarray(values[..., ::-1])
    raise DataError(f"{where}: its wavenumber axis ({axis_text(own)}) differs from {against}'s "
                    f"({axis_text(ref)}); make them the same axis (or resample the scans) so that each channel "
                    "means one wavenumber")


def channels_last(arr: np.ndarray, n_channels: int, where: str) -> np.ndarray:
    """A cube or table whose spectral axis (of `n_channels` values, stated beside it) is put last.

    The axis must match exactly one dimension, or the last of several (with a warning naming them,
    since the spectra could run along either); matching none is a `DataError` naming both shapes."""
    shape = tuple(arr.shape)
    matching = [d for d, n in enumerate(shape) if n == n_channels]
    if not matching:
        raise DataError(f"{where}: its wavenumber axis has {n_channels} values, but no dimension of its array "
                        f"{shape} has that length; the axis does not belong to the array")
    if len(matching) > 1:
        warnings.warn(f"{where}: its wavenumber axis has {n_channels} values, as many as dimensions {matching} of "
                      f"its array {shape}; the spectra are read along the last (channels last). If they run along "
                      "another dimension, save the array channels-last", UserWarning, stacklevel=4)
    if matching[-1] == len(shape) - 1:
        return arr
    return np.moveaxis(arr, matching[0], -1)  # channels first (C, H, W) or by line (H, C, W) → last
