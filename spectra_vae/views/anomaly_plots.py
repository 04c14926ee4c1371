"""Figures of the anomaly monitor: its tails against held-out normal tissue (P–P), and score maps on a
scale that shows both kinds of anomaly with the calibrated threshold marked. Each returns a Figure."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from .plots import label_outer_panels

SCORE_LABEL = "−log₁₀ p under normal tissue (2: p = 0.01)"
SCORE_FLOOR = 0.1  # −log₁₀ p below this (p > 0.8) is drawn in the scale's lowest colour


def pp_plot(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], title: str, n_pixels: int | None = None) -> Figure:
    """Observed share of normal pixels with a tail probability at most p, against p (log–log): a tail that
    holds on these pixels lies on the diagonal. With `n_pixels`, the band a perfect tail would stay in
    (binomial, 95 %, pixels taken as independent; neighbouring pixels are not, so real spread is wider)."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    lo = min(float(np.min(p)) for p, _ in curves.values())
    grid = np.geomspace(lo, 1.0, 100)
    ax.plot(grid, grid, color="grey", ls=":", lw=1, label="tail holds")
    if n_pixels:
        half = 1.96 * np.sqrt(grid * (1 - grid) / n_pixels)
        ax.fill_between(grid, np.maximum(grid - half, lo / 10), grid + half, color="grey", alpha=0.15,
                        label=f"binomial 95 % ({n_pixels} pixels)")
    for name, (p, observed) in curves.items():
        ax.plot(p, np.maximum(observed, lo / 10), lw=1.5, label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, 1)
    ax.set_ylim(lo / 10, 1.5)
    ax.set_xlabel("nominal tail probability p (fitted on the calibration scans)")
    ax.set_ylabel("held-out normal tissue pixels with p-value ≤ p")
    ax.set_title(title)
    ax.legend(fontsize="small", loc="lower right")
    fig.tight_layout()
    return fig


def score_maps(images: Mapping[str, np.ndarray], threshold: float | None, title: str,
               colorbar_label: str = SCORE_LABEL, ncols: int = 4) -> Figure:
    """One panel per scan of −log₁₀ p (NaN: no tissue) on a logarithmic colour scale, so that a tumour's
    few units and a foreign compound's hundreds both show; flagged pixels (above `threshold`) outlined,
    and the threshold marked on the colour bar."""
    n = len(images)
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols + 1, 3.0 * nrows + 0.6), squeeze=False)
    finite = [v[np.isfinite(v)] for v in images.values() if np.isfinite(v).any()]
    top = max([float(v.max()) for v in finite] + [2.0 * (threshold or 1.0), 1.0])
    norm = LogNorm(SCORE_FLOOR, top)
    cmap = plt.get_cmap("inferno").with_extremes(bad="0.85")
    im = None
    for ax, (name, img) in zip(axes.flat, images.items(), strict=False):
        im = ax.imshow(np.clip(img, SCORE_FLOOR, None), cmap=cmap, norm=norm, interpolation="nearest")
        if threshold is not None and (np.nan_to_num(img, nan=0.0) > threshold).any():
            ax.contour(np.nan_to_num(img, nan=0.0) > threshold, levels=[0.5], colors="cyan", linewidths=0.6)
        ax.set_title(name, fontsize="small")
    label_outer_panels(axes, n, ncols)
    if im is not None:
        cb = fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8)
        cb.set_label(colorbar_label)
        if threshold is not None:
            cb.ax.axhline(threshold, color="cyan", lw=2)
            cb.ax.text(-0.15, threshold, "threshold ", transform=cb.ax.get_yaxis_transform(), color="black",
                       va="center", ha="right", fontsize="x-small", clip_on=False)
    fig.suptitle(title + ("" if threshold is None else " (flagged pixels outlined)"))
    return fig
