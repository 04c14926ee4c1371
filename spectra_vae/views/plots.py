"""Figures. Each function returns a matplotlib Figure; spectra run high → low wavenumber."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator

from ..io.dataset import SpectralDataset

WN_LABEL = "wavenumber (cm⁻¹)"
ABS_LABEL = "absorbance (a.u.)"
# What each preprocessing step makes of absorbance, for axis labels: (words, unit after it). A unit of None keeps
# absorbance's; every step of `spectra_vae.preprocess.steps.REGISTRY` is here (tests/test_plots.py checks).
_VALUE_STEPS: dict[str, tuple[str, str | None]] = {
    "cut": ("", None), "resample": ("", None),
    "baseline": ("baseline-corrected", None), "rubberband": ("baseline-corrected", None),
    "savgol": ("smoothed", None),  # a derivative (its third argument) is labelled as one, below
    "snv": ("SNV-normalised", "unitless"), "vector": ("vector-normalised", "unitless"),
    "amide1": ("amide I-normalised", "unitless"),
    # (x − baseline) / a: each spectrum as a multiple of the reference (the mean training tissue spectrum)
    "emsc": ("EMSC-corrected", "reference units"),
}


def _steps(preprocess: str) -> list[tuple[str, list[str]]]:
    """`"cut(1000,1700)|snv"` → [("cut", ["1000", "1700"]), ("snv", [])]."""
    out = []
    for part in [p.strip().lower() for p in (preprocess or "").split("|") if p.strip()]:
        name, _, rest = part.partition("(")
        out.append((name.strip(), [a.strip() for a in rest.rstrip(")").split(",") if a.strip()]))
    return out


def value_label(preprocess: str = "") -> str:
    """What spectra are in after a preprocessing pipeline, for axis labels: "absorbance (a.u.)" without one.

    Steps that keep absorbance's units say what they did ("baseline-corrected absorbance (a.u.)"); after a
    step that changes the units (a normalisation, EMSC) the label says "spectrum" and the new unit, never
    absorbance; a Savitzky–Golay derivative is "derivative n of …" per channel."""
    words, unit, deriv = [], None, 0
    for name, args in _steps(preprocess):
        word, changes = _VALUE_STEPS.get(name, ("", None))
        if name == "savgol" and len(args) > 2 and int(float(args[2])):
            deriv, word = int(float(args[2])), ""
        if word and word not in words:
            words.append(word)
        unit = changes or unit
    what = " ".join([*words, "absorbance" if unit is None else "spectrum"])
    if deriv:
        what = f"derivative {deriv} of {what}"
        unit = f"{unit or 'a.u.'} per channel"
    return f"{what} ({unit or 'a.u.'})" if (words or deriv) else ABS_LABEL


def in_absorbance(preprocess: str = "") -> bool:
    """Whether spectra after `preprocess` are absorbance at its own noise level: nothing rescales, smooths or
    differentiates them (only `cut`, `resample`, baseline removal), so a noise s.d. in absorbance applies."""
    return all(name in ("cut", "resample", "baseline", "rubberband") for name, _ in _steps(preprocess))


def axis_label(known: bool) -> str:
    """The spectral axis: wavenumber in cm⁻¹, or channel number when the scans have no axis."""
    return WN_LABEL if known else "channel number (no wavenumber axis)"


def spectrum_axes(ax: plt.Axes, wavenumbers: np.ndarray, known: bool = True, ylabel: str = ABS_LABEL) -> None:
    """Label an axis for spectra; wavenumbers decrease to the right, as spectroscopists read them."""
    ax.set_xlabel(axis_label(known))
    ax.set_ylabel(ylabel)
    lo, hi = float(np.min(wavenumbers)), float(np.max(wavenumbers))
    ax.set_xlim(hi, lo) if known else ax.set_xlim(lo, hi)


def mean_spectra(dataset: SpectralDataset, mask: np.ndarray | None = None, max_pixels: int = 20000, seed: int = 0,
                 ncols: int = 3, max_panels: int = 12) -> Figure:
    """Mean ± one standard deviation spectrum of each scan's `mask` pixels (tissue; all pixels without a mask),
    from up to `max_pixels` of them, one panel per scan on a shared scale (the first `max_panels` scans)."""
    scan_of = dataset.scan_of()
    chosen = np.ones(len(dataset), bool) if mask is None else np.asarray(mask, bool)
    shown = list(enumerate(dataset.scans))[:max_panels]
    ncols = max(1, min(ncols, len(shown)))
    nrows = int(np.ceil(len(shown) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 2.9 * nrows + 0.5), squeeze=False,
                             sharex=True, sharey=True)
    rng = np.random.default_rng(seed)
    for ax, (k, name) in zip(axes.flat, shown, strict=False):
        idx = np.flatnonzero((scan_of == k) & chosen)
        if len(idx) > max_pixels:
            idx = np.sort(rng.choice(idx, max_pixels, replace=False))
        if len(idx):
            x = dataset.read(idx)
            m, s = x.mean(0), x.std(0)
            ax.fill_between(dataset.wavenumbers, m - s, m + s, color="C0", alpha=0.25, lw=0, label="± 1 s.d.")
            ax.plot(dataset.wavenumbers, m, color="C0", lw=1.1, label="mean")
        else:
            ax.text(0.5, 0.5, "no pixels", transform=ax.transAxes, ha="center", va="center")
        ax.set_title(f"{name} ({len(idx)} pixels)", fontsize="small")
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    for k, ax in enumerate(axes.flat[:len(shown)]):
        spectrum_axes(ax, dataset.wavenumbers, dataset.wavenumbers_known)
        if k % ncols:
            ax.set_ylabel("")
        if k + ncols < len(shown):
            ax.set_xlabel("")
    axes.flat[0].legend(fontsize="x-small", loc="upper left")
    which = "tissue pixels" if mask is not None else "all pixels"
    more = f"; the first {len(shown)} of {len(dataset.scans)} scans" if len(shown) < len(dataset.scans) else ""
    fig.suptitle(f"Mean ± 1 s.d. spectrum per scan, {which}{more}")
    fig.tight_layout()
    return fig


def spectra(wavenumbers: np.ndarray, curves: Mapping[str, np.ndarray], title: str,
            known: bool = True, ylabel: str = ABS_LABEL) -> Figure:
    """Several labelled spectra on one axis."""
    fig, ax = plt.subplots(figsize=(9, 4))
    for label, y in curves.items():
        ax.plot(wavenumbers, y, lw=1, label=label)
    spectrum_axes(ax, wavenumbers, known, ylabel)
    ax.set_title(title)
    ax.legend(fontsize="small", ncol=2)
    fig.tight_layout()
    return fig


def label_outer_panels(axes: np.ndarray, n: int, ncols: int) -> None:
    """Pixel axis labels on the outer panels of a grid of `n` scan images only (scans of different sizes
    would push inner labels into their neighbours); the grid's unused panels switched off."""
    for k, ax in enumerate(axes.flat):
        if k >= n:
            ax.axis("off")
            continue
        if k + ncols >= n:  # nothing below this panel
            ax.set_xlabel("col (pixel)")
        if k % ncols == 0:
            ax.set_ylabel("row (pixel)")


def scan_images(images: Mapping[str, np.ndarray], title: str, colorbar_label: str,
                cmap: str = "viridis", vmin: float | None = None, vmax: float | None = None,
                ncols: int = 4, categorical_names: Sequence[str] | None = None, centre: float | None = None) -> Figure:
    """One panel per scan (NaN = no pixel), a shared colour scale, and a labelled colour bar.

    The scale runs from the 1st to the 99th percentile unless `vmin`/`vmax` are given; `centre` makes it
    symmetric about that value (for a diverging colour map, whose middle colour then means `centre`)."""
    n = len(images)
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols + 1, 3.0 * nrows + 0.6), squeeze=False)
    finite = [v[np.isfinite(v)] for v in images.values() if np.isfinite(v).any()]
    allv = np.concatenate(finite) if finite else np.zeros(1)
    vmin = float(np.nanpercentile(allv, 1)) if vmin is None else vmin
    vmax = float(np.nanpercentile(allv, 99)) if vmax is None else vmax
    if centre is not None:
        half = max(abs(vmin - centre), abs(vmax - centre)) or 1.0
        vmin, vmax = centre - half, centre + half
    if categorical_names is not None:
        cmap_obj = plt.get_cmap(cmap, len(categorical_names))
        vmin, vmax = -0.5, len(categorical_names) - 0.5
    else:
        cmap_obj = plt.get_cmap(cmap)
    if centre is not None:  # a diverging map's middle colour is near white: pixels without a value in grey
        cmap_obj = cmap_obj.with_extremes(bad="0.65")
    im = None
    for ax, (name, img) in zip(axes.flat, images.items(), strict=False):
        im = ax.imshow(img, cmap=cmap_obj, vmin=vmin, vmax=vmax, interpolation="nearest")
        ax.set_title(name, fontsize="small")
    label_outer_panels(axes, n, ncols)
    if im is not None:
        cb = fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8)
        cb.set_label(colorbar_label)
        if categorical_names is not None:
            cb.set_ticks(range(len(categorical_names)))
            cb.set_ticklabels(list(categorical_names))
    fig.suptitle(title)
    return fig


def intensity_images(dataset: SpectralDataset, values: np.ndarray, measure: str) -> tuple[Figure, str]:
    """One image per scan of the tissue rule's `measure` (per-pixel `values`, from `tissue_intensity`), and the
    name to save it under: amide I (`amide_i_images`), or the mean absorbance over all channels where the scans
    have no wavenumber axis covering amide I (`mean_absorbance_images`)."""
    if measure == "amide_i":
        title, name = "Amide I intensity (mean absorbance 1630–1680 cm⁻¹)", "amide_i_images"
    else:
        title = "Mean absorbance over all channels (no wavenumber axis covering amide I)"
        name = "mean_absorbance_images"
    images = {n: dataset.image(values, k) for k, n in enumerate(dataset.scans)}
    return scan_images(images, title, "mean absorbance (a.u.)"), name


def loss_scale(ax: plt.Axes, curves: Sequence[Any]) -> None:
    """A loss axis people can read: log where every value is positive; else linear (a Gaussian NLL goes below
    zero), its range fitted to the epochs after the first tenth, which can run orders of magnitude above, with a
    note of how many points lie above the axis."""
    values = [np.asarray(c, float) for c in curves if len(c)]
    values = [v[np.isfinite(v)] for v in values]
    if not values or not any(len(v) for v in values):
        return
    if all((v > 0).all() for v in values):
        ax.set_yscale("log")
        return
    tail = np.concatenate([v[len(v) // 10:] for v in values])
    lo, hi = float(tail.min()), float(tail.max())
    pad = 0.05 * ((hi - lo) or abs(hi) or 1.0)
    ax.set_ylim(lo - pad, hi + pad)
    above = sum(int((v > hi + pad).sum()) for v in values)
    if above:
        ax.text(0.98, 0.97, f"{above} earlier value(s) above the axis", transform=ax.transAxes, ha="right",
                va="top", fontsize="x-small", color="grey")


def training_history(history: pd.DataFrame, best_epoch: int | None = None, units: str = ABS_LABEL) -> Figure:
    """Loss curves: reconstruction and KL apart (log scale where positive), validation RMSE."""
    has_val = "val_loss" in history
    fig, axes = plt.subplots(1, 3 if "val_rmse" in history else 2, figsize=(13, 3.8))
    panels = [("reconstruction", "reconstruction term (NLL per pixel)"), ("kl", "KL term per pixel (nats)")]
    for ax, (term, ylabel) in zip(axes, panels, strict=False):
        ax.plot(history.epoch, history[f"train_{term}"], marker=".", label="train")
        if has_val:
            ax.plot(history.epoch, history[f"val_{term}"], marker=".", label="validation")
        loss_scale(ax, [history[f"train_{term}"]] + ([history[f"val_{term}"]] if has_val else []))
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.set_title(term)
    if "val_rmse" in history:
        ax = axes[2]
        ax.plot(history.epoch, history.val_rmse, marker=".", color="C1", label="validation")
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"RMSE of reconstruction, {units}")
        ax.set_title("validation RMSE (latent mean)")
    for ax in axes:
        if best_epoch:
            ax.axvline(best_epoch, color="grey", ls="--", lw=1, label=f"best epoch {best_epoch}")
        ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def reconstructions(wavenumbers: np.ndarray, originals: np.ndarray, recons: np.ndarray,
                    titles: Sequence[str], extra: Mapping[str, np.ndarray] | None = None,
                    known: bool = True, ncols: int = 3, ylabel: str = ABS_LABEL) -> Figure:
    """Original vs reconstruction, one panel per pixel, with the residual underneath."""
    n = len(originals)
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(5 * ncols, 3.3 * nrows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.axis("off")
            continue
        ax.plot(wavenumbers, originals[i], color="k", lw=1, label="original")
        ax.plot(wavenumbers, recons[i], color="C3", lw=1, label="VAE")
        for j, (name, arr) in enumerate((extra or {}).items()):
            ax.plot(wavenumbers, arr[i], lw=0.8, ls="--", color=f"C{j}", label=name)
        ax.plot(wavenumbers, originals[i] - recons[i], color="grey", lw=0.6, label="residual (VAE)")
        spectrum_axes(ax, wavenumbers, known, ylabel)
        ax.set_title(titles[i], fontsize="small")
        if i == 0:
            ax.legend(fontsize="x-small")
    fig.tight_layout()
    return fig


def error_histogram(errors: Mapping[str, np.ndarray], noise_level: float | None = None,
                    title: str = "Per-pixel reconstruction RMSE", units: str = ABS_LABEL) -> Figure:
    """Distribution of per-pixel RMSE (log x), optionally with the known noise level marked."""
    fig, ax = plt.subplots(figsize=(7, 3.8))
    allv = np.concatenate([e[e > 0] for e in errors.values()])
    bins = np.logspace(np.log10(allv.min()), np.log10(allv.max()), 60)
    for name, e in errors.items():
        ax.hist(e, bins=bins, histtype="step", lw=1.4,  # type: ignore[arg-type]  # stubs: no ndarray bins
                label=f"{name} (median {np.median(e):.2g})")
    if noise_level:
        ax.axvline(noise_level, color="k", ls=":", label=f"noise level {noise_level:g}")
    ax.set_xscale("log")
    if allv.max() > 10 * allv.min():  # over a decade matplotlib labels every minor tick, and they overlap
        plain = FuncFormatter(lambda v, _: f"{v:g}")
        ax.xaxis.set_major_formatter(plain)
        ax.xaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
        ax.xaxis.set_minor_formatter(plain)
    ax.set_xlabel(f"per-pixel RMSE, {units}")
    ax.set_ylabel("pixels")
    ax.set_title(title)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def method_comparison(table: pd.DataFrame, title: str, units: str = ABS_LABEL) -> Figure:
    """Bar chart of RMSE per method (the table of `analysis.compare_with_pca`)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    ax.bar(table.index.astype(str), table["rmse"], color=["C3", "C0", "C2", "C4"][: len(table)])
    for i, v in enumerate(table["rmse"]):
        ax.text(i, v, f"{v:.3g}", ha="center", va="bottom", fontsize="small")
    ax.set_ylabel(f"held-out RMSE, {units}")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def latent_scatter(z: np.ndarray, groups: np.ndarray, group_names: Sequence[str], title: str,
                   axis_names: tuple[str, str] = ("z₁", "z₂"), max_points: int = 20000, seed: int = 0) -> Figure:
    """2-D scatter of latent points coloured by group (scan, label, …)."""
    rng = np.random.default_rng(seed)
    idx = np.arange(len(z)) if len(z) <= max_points else rng.choice(len(z), max_points, replace=False)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    for g, name in enumerate(group_names):
        sel = idx[groups[idx] == g]
        if len(sel):
            ax.scatter(z[sel, 0], z[sel, 1], s=3, alpha=0.5, label=f"{name} ({(groups == g).sum()})",
                       rasterized=True)
    ax.set_xlabel(axis_names[0])
    ax.set_ylabel(axis_names[1])
    ax.set_title(title)
    ax.legend(markerscale=4, fontsize="small")
    fig.tight_layout()
    return fig


def latent_traversal(wavenumbers: np.ndarray, spectra_by_dim: Mapping[str, tuple[np.ndarray, np.ndarray]],
                     known: bool = True, ylabel: str = ABS_LABEL, others: str = "others at 0") -> Figure:
    """Spectra decoded along each latent axis: {dim name: (values, spectra (n, C))} (`analysis.latent_grid`);
    `others` says where the other axes were held."""
    n = len(spectra_by_dim)
    fig, axes = plt.subplots(1, n, figsize=(6 * n, 4), squeeze=False)
    for ax, (name, (values, curves)) in zip(axes.flat, spectra_by_dim.items(), strict=False):
        colours = plt.get_cmap("coolwarm")(np.linspace(0, 1, len(values)))
        for v, y, c in zip(values, curves, colours, strict=False):
            ax.plot(wavenumbers, y, color=c, lw=1, label=f"{name} = {v:+.2f}")
        spectrum_axes(ax, wavenumbers, known, ylabel)
        ax.set_title(f"decoded along {name}, {others}", fontsize="medium")
        ax.legend(fontsize="x-small")
    fig.tight_layout()
    return fig


def score_scatter(groups: Mapping[str, tuple[np.ndarray, np.ndarray]], xlabel: str, ylabel: str,
                  title: str, max_points: int = 20000, seed: int = 0) -> Figure:
    """Scatter of two per-pixel scores (log axes), one colour per pixel group."""
    rng = np.random.default_rng(seed)
    fig, ax = plt.subplots(figsize=(7, 5.5))
    for name, (x, y) in groups.items():
        idx = np.arange(len(x)) if len(x) <= max_points else rng.choice(len(x), max_points, replace=False)
        ax.scatter(np.maximum(x[idx], 1e-12), np.maximum(y[idx], 1e-12), s=3, alpha=0.4, label=f"{name} ({len(x)})",
                   rasterized=True)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(markerscale=4, fontsize="small")
    fig.tight_layout()
    return fig


def roc(curves: Mapping[str, tuple[np.ndarray, np.ndarray, float]], title: str,
        positive: str = "anomalous") -> Figure:
    """ROC curves with their AUROC in the legend; `positive` names the pixels to find."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name, (fpr, tpr, auc) in curves.items():
        ax.plot(fpr, tpr, lw=1.5, label=f"{name}: AUROC {auc:.3f}")
    ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=1, label="chance")
    ax.set_xlabel("false-positive rate (normal tissue pixels flagged)")
    ax.set_ylabel(f"true-positive rate ({positive} pixels flagged)")
    ax.set_title(title)
    ax.legend(fontsize="small", loc="lower right")
    fig.tight_layout()
    return fig


def loss_curves(histories: Mapping[str, pd.DataFrame], column: str = "val_loss", title: str = "",
                ylabel: str = "") -> Figure:
    """One column of several runs' histories (e.g. validation loss) overlaid, one line per run."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, h in histories.items():
        if column in h:
            ax.plot(h["epoch"], h[column], marker=".", lw=1.2, label=name)
    loss_scale(ax, [h[column].to_numpy() for h in histories.values() if column in h])
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel or column)
    ax.set_title(title or f"{column} per epoch")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def spectra_panels(wavenumbers: np.ndarray, panels: Mapping[str, Mapping[str, np.ndarray]], known: bool = True,
                   ncols: int = 3) -> Figure:
    """One axis per panel (title → {label: spectrum}), e.g. the same pixel in several variants."""
    n = len(panels)
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 3.6 * nrows), squeeze=False)
    for ax, (title, curves) in zip(axes.flat, panels.items(), strict=False):
        for j, (label, y) in enumerate(curves.items()):
            ax.plot(wavenumbers, y, lw=1, color=f"C{j}", label=label)
        spectrum_axes(ax, wavenumbers, known)
        ax.set_title(title, fontsize="small")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize="x-small")
    fig.tight_layout()
    return fig


def histograms(values: Mapping[str, np.ndarray], xlabel: str, title: str, bins: int = 60) -> Figure:
    """Distributions of one quantity in several groups, on shared bins, each with its mean ± s.d."""
    fig, ax = plt.subplots(figsize=(7, 3.8))
    allv = np.concatenate([np.asarray(v, float) for v in values.values()])
    edges = np.linspace(np.percentile(allv, 0.5), np.percentile(allv, 99.5), bins + 1)
    for name, v in values.items():
        ax.hist(v, bins=edges, histtype="step", lw=1.4,  # type: ignore[arg-type]  # stubs: no ndarray bins
                label=f"{name} ({np.mean(v):.1f} ± {np.std(v):.1f})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("pixels")
    ax.set_title(title)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig
