"""Figures of the two variants of the same scans, corrected and uncorrected for scattering (notebook 01).

They draw what `spectra_vae.preprocess.variants.compare_variants` found: the same pixels as measured (absorbance)
and after EMSC (in units of each variant's reference spectrum: a pixel of the reference's thickness keeps its
size), and the spread of the apparent amide I position.
"""

from __future__ import annotations

import re

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from ..io.dataset import SpectralDataset
from ..preprocess.variants import VariantComparison
from .plots import ABS_LABEL, histograms, spectrum_axes, value_label

BASIC = re.compile(r"emsc\((\d+),0\)")  # basic EMSC: what the `emsc` step does, so what a model trains on


def variant_name(key: str) -> str:
    """A variant as a legend says it: `scattered, emsc(2,0)` → `scattered, emsc(2,0) = emsc, as a model trains`."""
    basic = BASIC.search(key)
    return f"{key} = emsc, as a model trains" if basic is not None and basic.group(1) == "2" else key


def _panels(comparison: VariantComparison) -> list[tuple[str, str, list[tuple[str, str, str]]]]:
    """(title, y label, [(variant, colour, line style)]) of the two panels: as measured, in absorbance, and after
    EMSC, in reference units: the scattered variant with each EMSC beside the clean one after basic EMSC."""
    keys = list(comparison.spectra)
    return [("as measured", ABS_LABEL, [("clean", "C0", "-"), ("scattered", "C1", "-")]),
            ("after EMSC, each variant its own fit", value_label("emsc"),
             [(k, "C0", "--") for k in keys if k.startswith("clean, ") and BASIC.search(k)]
             + [(k, "C2" if BASIC.search(k) else "C4", "-") for k in keys if k.startswith("scattered, ")])]


def mean_spectra(comparison: VariantComparison, known: bool = True) -> Figure:
    """Mean spectrum of the sampled tissue pixels per variant: as measured (absorbance) and after EMSC (reference
    units), on two axes, since the two are in different units."""
    means = comparison.means()
    fig, axes = plt.subplots(1, 2, figsize=(13, 4))
    for ax, (title, ylabel, curves) in zip(axes, _panels(comparison), strict=True):
        for key, colour, style in curves:
            ax.plot(comparison.wavenumbers, means[key], lw=1, color=colour, ls=style, label=variant_name(key))
        spectrum_axes(ax, comparison.wavenumbers, known, ylabel)
        ax.set_title(title, fontsize="medium")
        ax.legend(fontsize="x-small")
    fig.suptitle(f"Mean tissue spectrum per variant ({len(comparison.positions)} pixels)")
    fig.tight_layout()
    return fig


def before_after_emsc(comparison: VariantComparison, dataset: SpectralDataset) -> Figure:
    """The telling pixels of `comparison.examples()`, one column each: as measured (top, absorbance), and after
    EMSC (bottom, reference units): the scattered variant with basic EMSC (what a model trains on) and with
    `emsc(…,1)`, beside the clean variant after basic EMSC, which is what both should look like."""
    examples = comparison.examples()
    panels = _panels(comparison)
    ncols = len(examples)
    fig, axes = plt.subplots(2, ncols, figsize=(5.2 * ncols, 7.2), squeeze=False, sharex=True)
    for col, (what, row) in enumerate(examples.items()):
        k, r, c = (int(v) for v in dataset.coords[int(comparison.positions[row])])
        for line, (_, ylabel, curves) in enumerate(panels):
            ax = axes[line, col]
            for key, colour, style in curves:
                ax.plot(comparison.wavenumbers, comparison.spectra[key][row], lw=1, color=colour, ls=style,
                        label=variant_name(key))
            spectrum_axes(ax, comparison.wavenumbers, dataset.wavenumbers_known, ylabel)
            if col:
                ax.set_ylabel("")
            if line == 0:
                ax.set_xlabel("")
                ax.set_title(f"{what}: {dataset.scans[k]} (row {r}, col {c})", fontsize="small")
    for line, (title, _, _) in enumerate(panels):
        axes[line, 0].legend(fontsize="x-small", title=title, title_fontsize="x-small")
    fig.suptitle("The same tissue pixels before and after EMSC")
    fig.tight_layout()
    return fig


def amide_i_positions(comparison: VariantComparison) -> Figure:
    """Histograms of the apparent amide I position per variant, with each one's mean ± s.d.; the clean variant
    after EMSC is left out of the figure (its spread is in `comparison.spread`)."""
    shown = {variant_name(k): v for k, v in comparison.peak_positions().items()
             if not (k.startswith("clean") and "emsc" in k)}
    fig = histograms(shown, "apparent amide I position (cm⁻¹)\n(maximum in 1600–1700 cm⁻¹: parabola through the "
                            "top three channels)", "Apparent amide I position, tissue pixels")
    fig.axes[0].legend(fontsize="x-small", loc="upper left")  # the scattered variants' long tail is low there
    return fig

