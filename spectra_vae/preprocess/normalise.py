"""Normalisers fitted on training pixels only, stored with the model, inverted for original units."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.errors import DataError

PixelStats = tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # n, mean, M2, min, max


def merge_stats(a: PixelStats | None, b: PixelStats | None) -> PixelStats | None:
    """Combine per-channel count, mean, sum of squared deviations, min and max of two pixel sets."""
    if a is None or b is None:
        return a if b is None else b
    na, ma, m2a, loa, hia = a
    nb, mb, m2b, lob, hib = b
    # Chan, Golub & LeVeque (1979): pairwise update of mean and sum of squared deviations.
    n = na + nb
    delta = mb - ma
    return (n, ma + delta * nb / n, m2a + m2b + delta**2 * na * nb / n, np.minimum(loa, lob), np.maximum(hia, hib))


def pixel_stats(chunks: Iterable[np.ndarray] | np.ndarray) -> PixelStats | None:
    """One streamed pass of per-channel statistics over `(n, C)` chunks; None for no pixels."""
    if isinstance(chunks, np.ndarray):
        chunks = [chunks]
    stats: PixelStats | None = None
    for block in chunks:
        b = np.asarray(block, dtype=np.float64)
        if b.shape[0] == 0:
            continue
        mean = b.mean(axis=0)
        stats = merge_stats(stats, (b.shape[0], mean, ((b - mean) ** 2).sum(axis=0), b.min(axis=0), b.max(axis=0)))
    return stats


METHODS = ("standard", "global_standard", "minmax", "global_minmax", "global_scale", "none")


@dataclass
class Normaliser:
    """x_norm = (x - offset) / scale, per channel.

    `standard`: per-channel mean and standard deviation. `global_standard`: per-channel mean and
    one standard deviation over all channels (keeps the spectra's shape: noisy low-absorbance
    channels are not blown up to unit variance). `minmax`: per-channel min and range,
    so training pixels lie in [0, 1]. `global_minmax`: the prototype's single min and range over
    all channels. `global_scale`: no offset and one positive factor, the root mean square of all
    training values, so spectra keep their zero (absorbance stays absorbance, as the `unmixing`
    decoder's Beer–Lambert mixture needs). `none`: identity. Channels that are constant in the
    training pixels keep scale 1.

    Inputs made of several spectra side by side (the `spatial` encoder reads a pixel's spectrum and
    its neighbourhood's mean) are normalised spectrum by spectrum, with the same offset and scale.
    """

    method: str = "standard"
    offset_: np.ndarray | None = field(default=None, repr=False)
    scale_: np.ndarray | None = field(default=None, repr=False)
    n_samples_: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise DataError(f"normalisation must be one of {METHODS}; got {self.method!r}")

    def fit(self, chunks: Iterable[np.ndarray] | np.ndarray) -> Normaliser:
        """Fit from an `(n_pixels, C)` array or an iterable of such chunks (streamed, one pass)."""
        return self.fit_stats(pixel_stats(chunks))

    def fit_stats(self, stats: PixelStats | None) -> Normaliser:
        """Fit from accumulated statistics (e.g. merged across the processes of a distributed run)."""
        if stats is None:
            raise DataError("cannot fit a normaliser on zero pixels")
        n, mean, m2, lo, hi = stats
        if float(hi.max()) == float(lo.min()):
            raise DataError(f"the training data are constant (every value is {float(lo.min()):g}); "
                            "they cannot be normalised or learned from")
        c = mean.shape[0]
        if self.method == "standard":
            offset, scale = mean, np.sqrt(m2 / n)
        elif self.method == "global_standard":
            offset, scale = mean, np.full(c, np.sqrt(m2.sum() / (n * c)))
        elif self.method == "minmax":
            offset, scale = lo, hi - lo
        elif self.method == "global_minmax":
            offset, scale = np.full(c, lo.min()), np.full(c, hi.max() - lo.min())
        elif self.method == "global_scale":
            offset, scale = np.zeros(c), np.full(c, np.sqrt((m2.sum() + n * (mean**2).sum()) / (n * c)))
        else:
            offset, scale = np.zeros(c), np.ones(c)
        scale = np.where(scale > 0, scale, 1.0)
        self.offset_, self.scale_, self.n_samples_ = offset, scale, int(n)
        return self

    def _check(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The fitted (offset, scale), after checking that `x` matches them."""
        if self.offset_ is None or self.scale_ is None:
            raise RuntimeError("Normaliser is not fitted")
        c = self.offset_.shape[0]
        if x.shape[-1] == c:
            return self.offset_, self.scale_
        if x.shape[-1] % c == 0:  # several spectra side by side, each normalised alike
            k = x.shape[-1] // c
            return np.tile(self.offset_, k), np.tile(self.scale_, k)
        raise DataError(f"data have {x.shape[-1]} channels; the normaliser was fitted on {c}")

    def transform(self, x: np.ndarray) -> np.ndarray:
        """(x − offset) / scale as float32 (computed in float32: no float64 copy of large chunks)."""
        offset, inverse = self.float32_factors(x.shape[-1])
        out = np.subtract(x, offset, dtype=np.float32)
        out *= inverse
        return out

    def float32_factors(self, n_values: int) -> tuple[np.ndarray, np.ndarray]:
        """(offset, 1 / scale) as float32 for pixels of `n_values` values: `transform` is (x − offset) · that,
        so data normalised elsewhere (in place on a device) come out the same."""
        offset, scale = self._check(np.empty((0, n_values), np.float32))
        return offset.astype(np.float32), (1.0 / scale).astype(np.float32)

    def inverse_transform(self, x: np.ndarray) -> np.ndarray:
        offset, scale = self._check(x)
        out = np.multiply(x, scale.astype(np.float32), dtype=np.float32)
        out += offset.astype(np.float32)
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain content for a checkpoint (lists and numbers, safe for weights_only loading)."""
        return {"method": self.method, "offset": np.asarray(self.offset_).tolist(),
                "scale": np.asarray(self.scale_).tolist(), "n_samples": self.n_samples_}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normaliser:
        return cls(d["method"], np.asarray(d["offset"], dtype=np.float64),
                   np.asarray(d["scale"], dtype=np.float64), int(d.get("n_samples", 0)))
