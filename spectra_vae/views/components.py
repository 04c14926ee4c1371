"""What an unmixing model learned, drawn: its component spectra with their strongest bands named by
wavenumber, and each component's abundance as a map per scan."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from scipy.signal import find_peaks

from ..io.dataset import SpectralDataset
from .plots import axis_label, scan_images

N_BANDS = 4  # strongest bands labelled per component


def strongest_bands(wavenumbers: np.ndarray, spectrum: np.ndarray, n: int = N_BANDS,
                    min_prominence: float = 0.05) -> list[float]:
    """The wavenumbers of a spectrum's `n` most prominent peaks (prominence ≥ `min_prominence` × its
    maximum), strongest first."""
    spectrum = np.asarray(spectrum, dtype=float)
    top = float(spectrum.max()) if spectrum.size else 0.0
    if top <= 0:
        return []
    peaks, props = find_peaks(spectrum, prominence=min_prominence * top)
    order = np.argsort(props["prominences"])[::-1][:n]
    return [float(wavenumbers[peaks[i]]) for i in order]


def component_spectra(wavenumbers: np.ndarray, spectra: np.ndarray, known: bool = True,
                      names: Sequence[str] | None = None, units: str = "absorbance at unit thickness") -> Figure:
    """One panel per learned component spectrum, its strongest bands marked and labelled."""
    k = len(spectra)
    fig, axes = plt.subplots(k, 1, figsize=(9, 1.9 * k + 0.6), sharex=True, squeeze=False)
    for i, ax in enumerate(axes[:, 0]):
        ax.plot(wavenumbers, spectra[i], color=f"C{i}", lw=1.2)
        for band in strongest_bands(wavenumbers, spectra[i]) if known else []:
            y = float(spectra[i][int(np.argmin(np.abs(wavenumbers - band)))])
            ax.annotate(f"{band:.0f}", (band, y), xytext=(0, 3), textcoords="offset points", ha="center",
                        fontsize="x-small")
        ax.set_ylabel(names[i] if names is not None else f"component {i + 1}", fontsize="small")
        ax.set_ylim(bottom=min(0.0, float(spectra[i].min())), top=float(spectra[i].max()) * 1.18 or 1.0)
    ax = axes[-1, 0]
    ax.set_xlabel(axis_label(known))
    lo, hi = float(np.min(wavenumbers)), float(np.max(wavenumbers))
    ax.set_xlim(hi, lo) if known else ax.set_xlim(lo, hi)  # wavenumbers decrease to the right
    fig.suptitle(f"Learned component spectra ({units}); strongest bands in cm⁻¹" if known
                 else f"Learned component spectra ({units})")
    fig.tight_layout()
    return fig


def abundance_maps(dataset: SpectralDataset, abundances: np.ndarray, mask: np.ndarray, component: int) -> Figure:
    """One component's abundance (0–1) per tissue pixel, a panel per scan; background blank."""
    values = np.where(mask, abundances[:, component], np.nan)
    return scan_images({n: dataset.image(values, k) for k, n in enumerate(dataset.scans)},
                       f"Abundance of component {component + 1} per tissue pixel", "abundance (0–1)",
                       vmin=0.0, vmax=1.0)
