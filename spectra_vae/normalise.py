"""Normalisers fitted on training pixels only, stored with the model, inverted for original units."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import DataError

METHODS = ("standard", "global_standard", "minmax", "global_minmax", "none")


@dataclass
class Normaliser:
    """x_norm = (x - offset) / scale, per channel.

    `standard`: per-channel mean and standard deviation. `global_standard`: per-channel mean and
    one standard deviation over all channels (keeps the spectra's shape: noisy low-absorbance
    channels are not blown up to unit variance). `minmax`: per-channel min and range,
    so training pixels lie in [0, 1]. `global_minmax`: the prototype's single min and range over
    all channels. `none`: identity. Channels that are constant in the training pixels keep scale 1.
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
        if isinstance(chunks, np.ndarray):
            chunks = [chunks]
        n, mean, m2 = 0, None, None
        lo = hi = None
        for block in chunks:
            b = np.asarray(block, dtype=np.float64)
            if b.shape[0] == 0:
                continue
            bn, bmean = b.shape[0], b.mean(axis=0)
            bm2 = ((b - bmean) ** 2).sum(axis=0)
            if mean is None:
                n, mean, m2, lo, hi = bn, bmean, bm2, b.min(axis=0), b.max(axis=0)
                continue
            # Chan et al. (1979) pairwise update of mean and sum of squared deviations.
            delta, total = bmean - mean, n + bn
            mean = mean + delta * bn / total
            m2 = m2 + bm2 + delta**2 * n * bn / total
            n = total
            lo, hi = np.minimum(lo, b.min(axis=0)), np.maximum(hi, b.max(axis=0))
        if mean is None:
            raise DataError("cannot fit a normaliser on zero pixels")
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
        else:
            offset, scale = np.zeros(c), np.ones(c)
        scale = np.where(scale > 0, scale, 1.0)
        self.offset_, self.scale_, self.n_samples_ = offset, scale, int(n)
        return self

    def _check(self, x: np.ndarray) -> None:
        if self.offset_ is None or self.scale_ is None:
            raise RuntimeError("Normaliser is not fitted")
        if x.shape[-1] != self.offset_.shape[0]:
            raise DataError(f"data have {x.shape[-1]} channels; the normaliser was fitted on {self.offset_.shape[0]}")

    def transform(self, x: np.ndarray) -> np.ndarray:
        self._check(x)
        return ((x - self.offset_) / self.scale_).astype(np.float32)

    def inverse_transform(self, x: np.ndarray) -> np.ndarray:
        self._check(x)
        return (x * self.scale_ + self.offset_).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """Plain content for a checkpoint (lists and numbers, safe for weights_only loading)."""
        return {"method": self.method, "offset": np.asarray(self.offset_).tolist(),
                "scale": np.asarray(self.scale_).tolist(), "n_samples": self.n_samples_}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normaliser:
        return cls(d["method"], np.asarray(d["offset"], dtype=np.float64),
                   np.asarray(d["scale"], dtype=np.float64), int(d.get("n_samples", 0)))
