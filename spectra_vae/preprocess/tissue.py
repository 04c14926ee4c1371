"""Which pixels are tissue: one rule, fitted with the model, stored in its checkpoint, used everywhere.

A scan is a tissue core on a background of noise-only pixels. Training on tissue only, the
anomaly calibration, the baselines, EMSC's reference spectrum and every notebook's masks need
the same answer to "is this pixel tissue?", so the answer is a small fitted object, a
`TissueRule`, rather than a threshold each caller finds again on whatever data it holds.

The measure is read from the raw spectra (before any preprocessing, which may scale the
background's noise up to tissue size): the mean absorbance of the amide I band (1630–1680 cm⁻¹)
where the axis is known and covers it, else the mean absorbance over all channels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.distributed import dist_info, gather_objects
from ..core.errors import DataError
from ..io.dataset import SpectralDataset, shard_positions

AMIDE_I_BAND = (1630.0, 1680.0)  # cm⁻¹
MEASURES = ("amide_i", "total", "none")
N_SIGMA = 10.0  # the threshold sits this many robust noise s.d. above the background
BACKGROUND_SHARE = 0.1  # background's median must lie below this fraction of tissue's median


def _raw(dataset: SpectralDataset) -> SpectralDataset:
    """The dataset without its preprocessing view: the tissue measure is read from raw spectra."""
    return dataset.raw() if dataset.preprocessor is not None else dataset


def default_measure(dataset: SpectralDataset) -> str:
    """`amide_i` when the wavenumber axis is known and covers the band, else `total`."""
    ds = _raw(dataset)
    wn = ds.wavenumbers
    if ds.wavenumbers_known and ((wn >= AMIDE_I_BAND[0]) & (wn <= AMIDE_I_BAND[1])).any():
        return "amide_i"
    return "total"


def _measure_key(dataset: SpectralDataset, measure: str) -> tuple[tuple[Any, ...], np.ndarray | None]:
    """What `dataset`'s measure reads: the key its values are kept under on the scans, and the raw channels it
    averages (None: every channel). A `DataError` when amide I is asked of an axis without the band."""
    ds = _raw(dataset)
    if measure == "total":
        return ("tissue", "total"), None
    wn = ds.wavenumbers
    sel = np.flatnonzero((wn >= AMIDE_I_BAND[0]) & (wn <= AMIDE_I_BAND[1]))
    if not ds.wavenumbers_known or sel.size == 0:
        raise DataError(f"{ds.source or 'data'}: the amide I tissue rule needs a wavenumber axis covering "
                        f"{AMIDE_I_BAND[0]:g}–{AMIDE_I_BAND[1]:g} cm⁻¹; this one "
                        + ("is unknown (channel numbers)" if not ds.wavenumbers_known
                           else f"spans {wn.min():g}–{wn.max():g} cm⁻¹"))
    return ("tissue", "amide_i", tuple(int(i) for i in sel)), sel


def tissue_intensity(dataset: SpectralDataset, measure: str) -> np.ndarray:
    """Per pixel of `dataset`, the tissue measure (mean absorbance of amide I, or of every channel). Each scan
    pixel is read once: the values are kept on the scans (`SpectralDataset.measured`), so every later step of
    a fit, and every view or subset of the same scans, looks them up instead of reading the data again."""
    if measure not in ("amide_i", "total"):
        return np.full(len(dataset), np.inf)
    key, channels = _measure_key(dataset, measure)
    return _raw(dataset).measured(key, lambda chunk: intensity_of(chunk, channels))


def intensity_of(chunk: np.ndarray, channels: np.ndarray | None) -> np.ndarray:
    """The measure of raw spectra `(m, C)` read from the scans: the mean over `channels` (None: every channel)."""
    return (chunk if channels is None else chunk[:, channels]).mean(axis=1)


def shared_tissue_intensity(dataset: SpectralDataset, measure: str) -> np.ndarray:
    """`tissue_intensity` of every pixel of `dataset`. In a distributed run each process measures its share
    (`SpectralDataset.shard`'s blocks) and the shares are exchanged: every process gets the whole array,
    having read a share of the data, and keeps it on its scans. Every process of the run must call it (a
    collective)."""
    rank, world = dist_info()
    if world == 1 or measure == "none":
        return tissue_intensity(dataset, measure)
    out = np.empty(len(dataset))
    mine = tissue_intensity(dataset.select_pixels(shard_positions(len(dataset), rank, world)), measure)
    for r, part in enumerate(gather_objects(mine)):
        out[shard_positions(len(dataset), r, world)] = part
    _raw(dataset).remember(_measure_key(dataset, measure)[0], out)
    return out


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """The threshold that maximises between-class variance of a 1-D sample (Otsu, 1979)."""
    hist, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres)
    mu0 = m0 / np.maximum(w0, 1)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(centres[int(np.argmax(between[:-1]))])


def background_threshold(values: np.ndarray, n_sigma: float = N_SIGMA) -> tuple[float, str]:
    """The level separating noise-only background from tissue, and a sentence saying how it was found.

    Otsu's split proposes a background class. It counts as background only if it is tight and
    near zero: its median plus `n_sigma` robust s.d. (1.4826·MAD) lies below tissue's median, and
    its median is below `BACKGROUND_SHARE` of tissue's. Then the threshold is the lower of Otsu's
    split and that noise level (thin tissue at a core's edge can fall below Otsu's split).
    Otherwise (scans cropped to the core) every pixel is tissue: the threshold is −∞.
    """
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size < 10 or float(values.max()) == float(values.min()):
        return -math.inf, "too few distinct pixels to find a background: every pixel counts as tissue"
    otsu = otsu_threshold(values)
    low, high = values[values <= otsu], values[values > otsu]
    med_bg, med_tissue = float(np.median(low)), float(np.median(high))
    sigma = 1.4826 * float(np.median(np.abs(low - med_bg)))
    noise_level = med_bg + n_sigma * sigma
    if low.size >= 10 and noise_level < med_tissue and abs(med_bg) < BACKGROUND_SHARE * abs(med_tissue):
        threshold = min(otsu, noise_level) if sigma > 0 else otsu
        share = float((values > threshold).mean())
        return threshold, (f"background found: threshold {threshold:.4g} (Otsu {otsu:.4g}, background median "
                           f"{med_bg:.3g} + {n_sigma:g} × noise s.d. {sigma:.3g}); {share:.1%} of pixels are tissue")
    return -math.inf, (f"no noise-only background in these pixels (the lower class, median {med_bg:.3g}, is not "
                       f"tight and near zero against tissue's {med_tissue:.3g}): every pixel counts as tissue, "
                       "as in scans cropped to the core")


def parse_tissue_threshold(value: Any) -> str | float:
    """A `tissue_threshold` setting: "auto" (None too), "none", or a finite number; else a `DataError`."""
    number: Any = value
    if value is None:
        return "auto"
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("auto", "none"):
            return text
        try:
            number = float(text)
        except ValueError:
            number = None
    is_number = isinstance(number, (int, float, np.floating, np.integer)) and not isinstance(number, bool)
    if is_number and math.isfinite(number):
        return float(number)
    raise DataError(f"parameter tissue_threshold: expected 'auto', 'none' or a finite number (absorbance), "
                    f"got {value!r}")


@dataclass(frozen=True)
class TissueRule:
    """A pixel is tissue when its `measure` exceeds `threshold` (−∞: every pixel; `measure="none"`: no mask).

    Fit it on training pixels with `TissueRule.fit(dataset)`; apply it with `mask` or `select`.
    `how` says in one sentence how the threshold came about, for reports.
    """

    measure: str = "amide_i"
    threshold: float = -math.inf
    how: str = ""

    def __post_init__(self) -> None:
        if self.measure not in MEASURES:
            raise DataError(f"tissue rule: measure must be one of {MEASURES}; got {self.measure!r}")

    @classmethod
    def fit(cls, dataset: SpectralDataset, threshold: float | str | None = "auto", shared: bool = False) -> TissueRule:
        """The rule for `dataset`'s pixels. `threshold`: "auto" (or None) finds it, a number sets
        it (in the measure's absorbance units), "none" switches the mask off. `shared`: in a distributed
        run, each process measures a share of the pixels (`shared_tissue_intensity`; all must call)."""
        setting = parse_tissue_threshold(threshold)
        if setting == "none":
            return cls("none", -math.inf, "no tissue mask: every pixel counts as tissue (tissue_threshold none)")
        measure = default_measure(dataset)
        fallback = ("" if measure == "amide_i" else
                    "no wavenumber axis covering amide I, so the tissue measure is the mean absorbance over all "
                    "channels; ")
        if setting == "auto":
            level, how = background_threshold(cls(measure).intensity(dataset, shared))
            return cls(measure, level, fallback + how)
        return cls(measure, float(setting), fallback + f"threshold {float(setting):.4g} set by the user")

    def intensity(self, dataset: SpectralDataset, shared: bool = False) -> np.ndarray:
        """Per pixel, the measure the rule thresholds (+∞ for `measure="none"`). `shared`: in a distributed
        run, each process measures a share (`shared_tissue_intensity`; all must call)."""
        return (shared_tissue_intensity if shared else tissue_intensity)(dataset, self.measure)

    def mask(self, dataset: SpectralDataset, shared: bool = False) -> np.ndarray:
        """Per pixel of `dataset` (raw or preprocessed view alike), True where it is tissue. `shared`: in a
        distributed run, each process measures a share (`shared_tissue_intensity`; all must call)."""
        if self.measure == "none" or self.threshold == -math.inf:
            return np.ones(len(dataset), bool)
        return self.intensity(dataset, shared) > self.threshold

    def mask_spectra(self, spectra: np.ndarray, wavenumbers: np.ndarray) -> np.ndarray:
        """The mask of raw spectra `(n, C)` on `wavenumbers` (the scans' own axis), without a dataset."""
        if self.measure == "none" or self.threshold == -math.inf:
            return np.ones(len(spectra), bool)
        if self.measure == "amide_i":
            sel = (wavenumbers >= AMIDE_I_BAND[0]) & (wavenumbers <= AMIDE_I_BAND[1])
            return np.asarray(spectra)[:, sel].mean(axis=1) > self.threshold
        return np.asarray(spectra).mean(axis=1) > self.threshold

    def mask_values(self, intensity: np.ndarray) -> np.ndarray:
        """The mask from already computed `intensity` values (of this rule's measure)."""
        if self.measure == "none":
            return np.ones(len(intensity), bool)
        return np.asarray(intensity) > self.threshold

    def select(self, dataset: SpectralDataset, shared: bool = False) -> SpectralDataset:
        """The dataset restricted to its tissue pixels (the same view: raw stays raw, preprocessed stays so).
        `shared`: as for `mask`."""
        if self.measure == "none" or self.threshold == -math.inf:
            return dataset
        return dataset.select_pixels(np.flatnonzero(self.mask(dataset, shared)))

    def __str__(self) -> str:
        if self.measure == "none":
            return "every pixel (no tissue mask)"
        what = "amide I (mean absorbance 1630–1680 cm⁻¹)" if self.measure == "amide_i" else "mean absorbance"
        return "every pixel" if self.threshold == -math.inf else f"{what} > {self.threshold:.4g}"

    def to_dict(self) -> dict[str, Any]:
        """Plain content for a checkpoint or a run record (−∞ is written as None)."""
        return {"measure": self.measure, "threshold": None if self.threshold == -math.inf else float(self.threshold),
                "how": self.how}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TissueRule:
        threshold = d.get("threshold")
        return cls(str(d.get("measure", "amide_i")), -math.inf if threshold is None else float(threshold),
                   str(d.get("how", "")))
