"""Two variants of the same scans side by side: scatter-corrected ("clean") and uncorrected ("scattered").

The lab keeps both variants of every scan, and `make_demo_dataset(..., scatter=True)` makes the
scattered twin of a demo dataset from the same seed: the same pixels at the same places, so they
compare pixel by pixel. `compare_variants` reads both on a common sample of tissue pixels and
returns what notebook 01 shows: mean spectra, the spread of the apparent amide I position, and the
spectra before and after EMSC, with EMSC's per-pixel terms over the whole scattered dataset for maps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..core.errors import DataError
from ..core.scattering import apparent_peak_position, peak_position_spread
from ..io.dataset import SpectralDataset
from .diagnostics import pixel_terms
from .pipeline import Preprocessor


@dataclass
class VariantComparison:
    """What `compare_variants` found. Spectra are `(n, C)` on `wavenumbers`, rows the same pixels in every variant."""

    wavenumbers: np.ndarray
    positions: np.ndarray  # dataset positions of the sampled tissue pixels
    spectra: dict[str, np.ndarray]  # variant → sampled spectra: clean, scattered, and each after EMSC
    spread: pd.DataFrame  # apparent amide I position per variant: mean, s.d., 5–95 %
    difference: pd.DataFrame  # RMS difference scattered − clean, before and after EMSC
    emsc_terms: pd.DataFrame  # EMSC's per-pixel terms over every pixel of the scattered dataset
    emsc: Preprocessor  # the EMSC fitted on the scattered variant's tissue pixels

    def means(self) -> dict[str, np.ndarray]:
        """Mean spectrum of the sampled tissue pixels, per variant."""
        return {name: x.mean(axis=0) for name, x in self.spectra.items()}

    def examples(self) -> dict[str, int]:
        """Rows of `spectra` worth looking at: the pixels EMSC found least and most dispersed (without
        its dispersion term: with the smallest and largest baseline), and a median one."""
        column, what = (("dispersion_share", "dispersion") if "dispersion_share" in self.emsc_terms
                        else ("baseline", "baseline"))
        share = self.emsc_terms[column].to_numpy()[self.positions]
        order = np.argsort(np.nan_to_num(share, nan=np.nanmedian(share)), kind="stable")
        return {f"least {what}": int(order[0]), "median": int(order[len(order) // 2]),
                f"most {what}": int(order[-1])}

    def peak_positions(self) -> dict[str, np.ndarray]:
        """Apparent amide I position of each sampled pixel, per variant (cm⁻¹)."""
        return {name: apparent_peak_position(x, self.wavenumbers) for name, x in self.spectra.items()}


def check_variants(clean: SpectralDataset, scattered: SpectralDataset) -> None:
    """Both datasets hold the same scans, pixels and axis, else a `DataError` saying what differs.

    Scans pair up in order (the first with the first, …): by name for two folders of the same files,
    and in the order of their split lists for the two variants in one folder under different names
    (`scan_pairs` shows the pairs)."""
    if len(clean.scans) != len(scattered.scans):
        raise DataError(f"the two variants hold different numbers of scans: {len(clean.scans)} "
                        f"({clean.scans[:4]}…) and {len(scattered.scans)} ({scattered.scans[:4]}…)")
    usable = [np.bincount(ds.scan_of(), minlength=len(ds.scans)) for ds in (clean, scattered)]
    for k, (a, b) in enumerate(zip(clean.scan_objects, scattered.scan_objects, strict=True)):
        if (a.height, a.width) != (b.height, b.width) or usable[0][k] != usable[1][k]:
            raise DataError(f"scan {a.name} and its uncorrected twin {b.name} differ in size: {a.height}×{a.width} "
                            f"with {usable[0][k]} usable pixels against {b.height}×{b.width} with {usable[1][k]}")
    if not np.array_equal(clean.coords, scattered.coords):
        raise DataError("the two variants hold different pixels (the pixels excluded as not finite differ)")
    if clean.n_channels != scattered.n_channels or not np.allclose(clean.wavenumbers, scattered.wavenumbers):
        raise DataError("the two variants have different wavenumber axes")


def scan_pairs(clean: SpectralDataset, scattered: SpectralDataset) -> pd.DataFrame:
    """Which scan is compared with which (scans pair up in order), with their pixel counts: for two
    split lists, the table to check that they name the same scans in the same order. (An automatic
    check on the images' fine detail was tried and dropped: the demo's per-pixel dispersion artefact
    decorrelates the two variants' detail about as much as a wrong pairing does.)"""
    check_variants(clean, scattered)
    pixels = np.bincount(clean.scan_of(), minlength=len(clean.scans))
    return pd.DataFrame({"clean": clean.scans, "scattered": scattered.scans, "pixels": pixels})


def compare_variants(clean: SpectralDataset, scattered: SpectralDataset, tissue: np.ndarray, degree: int = 2,
                     max_pixels: int = 20000, seed: int = 0,
                     dispersion: bool | tuple[bool, ...] = (False, True)) -> VariantComparison:
    """Compare the two variants on up to `max_pixels` of the `tissue` pixels (one mask for both).

    EMSC is fitted on each variant's tissue pixels and applied to it, once per entry of `dispersion`:
    `emsc(degree,0)`, basic EMSC (what the `emsc` step does, and so what a model trains on), and
    `emsc(degree,1)`, with the dispersion term, which is what shows and corrects the dispersion artefact
    (the apparent amide I position) but also takes out band shifts that are chemistry (README, Scattering
    and EMSC). If EMSC removes what scattering added, the two variants then agree. EMSC's per-pixel terms
    and `emsc` come from the last entry's fit on the scattered variant.
    """
    check_variants(clean, scattered)
    pool = np.flatnonzero(np.asarray(tissue, dtype=bool))
    if pool.size == 0:
        raise DataError("no tissue pixels to compare the variants on")
    rng = np.random.default_rng(seed)
    positions = np.sort(rng.choice(pool, min(max_pixels, pool.size), replace=False))
    x_clean, x_scattered = clean.read(positions), scattered.read(positions)
    spectra = {"clean": x_clean, "scattered": x_scattered}
    fitted: dict[str, Preprocessor] = {}
    for flag in (dispersion,) if isinstance(dispersion, bool) else dispersion:
        spec = f"emsc({degree},{int(flag)})"
        for name, ds, x in (("scattered", scattered, x_scattered), ("clean", clean, x_clean)):
            fitted[f"{name}, {spec}"] = Preprocessor(spec).fit(ds.wavenumbers, ds.select_pixels(pool))
            spectra[f"{name}, {spec}"] = fitted[f"{name}, {spec}"].transform(x)

    def rms(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.sqrt(np.mean((np.asarray(a, np.float64) - b) ** 2)))

    def centred(x: np.ndarray) -> np.ndarray:  # what varies from pixel to pixel, without the mean spectrum
        return x - x.mean(axis=0)

    pairs = {"as measured": ("scattered", "clean")} | {
        f"after {key[len('scattered, '):]}, each variant its own fit": (key, key.replace("scattered", "clean", 1))
        for key in spectra if key.startswith("scattered, ")}
    difference = pd.DataFrame({
        "RMS difference scattered − clean": {row: rms(spectra[a], spectra[b]) for row, (a, b) in pairs.items()},
        "… of each pixel's departure from its variant's mean": {
            row: rms(centred(spectra[a]), centred(spectra[b])) for row, (a, b) in pairs.items()}})
    last = [key for key in fitted if key.startswith("scattered, ")][-1]
    return VariantComparison(clean.wavenumbers, positions, spectra, peak_position_spread(spectra, clean.wavenumbers),
                             difference, pixel_terms(fitted[last], scattered), fitted[last])
