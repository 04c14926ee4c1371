"""Analysis of a fitted model: per-pixel errors, the PCA baseline, error maps, latent embeddings."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA, IncrementalPCA

from ..core.metrics import pixel_rmse
from ..estimator.vae import SpectraVAE
from ..io.dataset import SpectralDataset
from ..io.load import as_dataset

PCA_IN_MEMORY_PIXELS = 2_000_000


def fit_pca(data: Any, n_components: int, seed: int = 0) -> PCA | IncrementalPCA:
    """PCA of the training pixels in absorbance units (streamed with IncrementalPCA when large)."""
    ds = as_dataset(data)
    if len(ds) <= PCA_IN_MEMORY_PIXELS:
        return PCA(n_components=n_components, random_state=seed).fit(ds.to_array())
    pca = IncrementalPCA(n_components=n_components)
    for chunk in ds.iter_chunks():
        if len(chunk) >= n_components:
            pca.partial_fit(chunk)
    return pca


def pca_reconstruct(pca: PCA | IncrementalPCA, data: Any) -> np.ndarray:
    """PCA reconstructions of the pixels of `data`, `(n_pixels, n_channels)`."""
    ds = as_dataset(data)
    return np.concatenate([pca.inverse_transform(pca.transform(c)) for c in ds.iter_chunks()]).astype(np.float32)


def pca_errors(pca: PCA | IncrementalPCA, data: Any) -> np.ndarray:
    """Per-pixel RMSE of the PCA reconstructions of `data`, `(n_pixels,)`, streamed in chunks."""
    parts = [pixel_rmse(c, pca.inverse_transform(pca.transform(c))) for c in as_dataset(data).iter_chunks()]
    return np.concatenate(parts) if parts else np.zeros(0)


def compare_with_pca(vae: SpectraVAE, train: Any, test: Any, n_components: int | None = None) -> pd.DataFrame:
    """The VAE against PCA with as many components as latent dimensions, on the same held-out pixels.

    PCA is fitted on `train` (the VAE's training pixels); both are scored on `test` as RMSE in
    absorbance units: over all test pixels and channels, and the median pixel's.
    """
    train, test = vae.prepare(train), vae.prepare(test)  # PCA sees what the VAE sees
    k = n_components or vae.latent_dim
    pca = fit_pca(train, k, seed=vae.seed)
    rows = []
    # Per-pixel errors, streamed: memory grows with the pixels, not with pixels × channels.
    for name, err in (("VAE", vae.reconstruction_error(test)), ("PCA", pca_errors(pca, test))):
        rows.append({"method": name, "components": k, "rmse": float(np.sqrt(np.mean(err**2))),
                     "median_pixel_rmse": float(np.median(err)), "pixels": len(err)})
    return pd.DataFrame(rows).set_index("method")


def known_noise_level(data_dir: Any, preprocess: str = "") -> float:
    """The data's noise s.d. in absorbance where it is known (the demo data record theirs in demo.json)
    and the model reconstructs absorbance at its own noise level (`plots.in_absorbance`); else 0 (unknown)."""
    import json
    from pathlib import Path

    from .plots import in_absorbance

    meta = Path(data_dir) / "demo.json"
    if not in_absorbance(preprocess) or not meta.is_file():
        return 0.0
    return float(json.loads(meta.read_text()).get("noise_sigma", 0.0))


def noise_level_to_mark(data_dir: Any, preprocess: str = "", given: float = 0.0) -> tuple[float, str]:
    """The noise s.d. to mark on an error histogram in the model's units, and why none is marked ("" when one
    is): `given` (absorbance), else the demo data's own; none after preprocessing that rescales, smooths or
    differentiates the spectra (EMSC, a normalisation), whose errors are not in absorbance."""
    from .plots import in_absorbance, value_label

    if not in_absorbance(preprocess):
        return 0.0, ((f"noise level {given:g} (absorbance) not marked: " if given else "no noise level marked: ")
                     + f"the model's spectra are {value_label(preprocess)} after {preprocess!r}, not absorbance")
    return (float(given) or known_noise_level(data_dir, preprocess)), ""


def error_maps(dataset: SpectralDataset, errors: np.ndarray) -> dict[str, np.ndarray]:
    """Per-pixel errors drawn back as one `(H, W)` image per scan (NaN where no pixel)."""
    return {name: dataset.image(errors, k) for k, name in enumerate(dataset.scans)}


def band_image(dataset: SpectralDataset, centre: float, half_width: float = 10.0) -> dict[str, np.ndarray]:
    """Mean absorbance within ±half_width cm⁻¹ of `centre`, as one image per scan."""
    wn = dataset.wavenumbers
    sel = np.flatnonzero(np.abs(wn - centre) <= half_width)
    if sel.size == 0:
        sel = np.array([int(np.argmin(np.abs(wn - centre)))])
    values = np.concatenate([c[:, sel].mean(axis=1) for c in dataset.iter_chunks()])
    return {name: dataset.image(values, k) for k, name in enumerate(dataset.scans)}


def dataset_overview(dataset: SpectralDataset) -> pd.DataFrame:
    """The dataset in numbers: scans, pixels, channels, wavenumber range, value range, exclusions."""
    summary = dataset.summary()
    wn = dataset.wavenumbers
    unit = "cm⁻¹" if dataset.wavenumbers_known else "(channel index)"
    rows = {
        "scans": len(dataset.scans),
        "usable pixels": len(dataset),
        "channels": dataset.n_channels,
        "wavenumber range": f"{wn.min():.1f}–{wn.max():.1f} {unit}",
        "channel spacing": f"{np.abs(np.diff(wn)).mean():.3f} {unit}" if len(wn) > 1 else "-",
        "absorbance min": f"{summary['min'].min():.4f}",
        "absorbance max": f"{summary['max'].max():.4f}",
        "non-finite pixels excluded": int(summary["nonfinite_excluded"].sum()),
    }
    if dataset.labels is not None and dataset.label_names:
        counts = np.bincount(dataset.labels[dataset.labels >= 0], minlength=len(dataset.label_names))
        rows["ground-truth pixels"] = ", ".join(f"{n} {c}" for n, c in zip(dataset.label_names, counts, strict=False))
    return pd.DataFrame({"value": [str(v) for v in rows.values()]}, index=list(rows))


def latent_grid(vae: SpectraVAE, z: np.ndarray | None = None, steps: int = 7, span: float = 2.0,
                percentiles: tuple[float, float] = (1.0, 99.0)) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Spectra decoded along each latent axis: {"z1": (values, spectra (steps, C)), …}.

    With `z` (latent means, e.g. of the tissue pixels) each axis is swept over the range the data occupy, its
    `percentiles` (1st–99th), the other axes held at the data's median; without, from −span to +span with the
    others at 0 (the prior's mean)."""
    centre = np.zeros(vae.latent_dim) if z is None else np.median(np.asarray(z, float), axis=0)
    out = {}
    for d in range(vae.latent_dim):
        lo, hi = (-span, span) if z is None else np.percentile(np.asarray(z, float)[:, d], percentiles)
        values = np.linspace(lo, hi, steps)
        grid = np.tile(centre, (steps, 1)).astype(np.float32)
        grid[:, d] = values
        out[f"z{d + 1}"] = (values, vae.decode(grid))
    return out


def pick_pixels(errors: np.ndarray, mask: np.ndarray | None = None, n_worst: int = 3) -> dict[str, int]:
    """Dataset positions of telling pixels: the median, 90th percentile and worst-reconstructed ones."""
    idx = np.flatnonzero(mask) if mask is not None and mask.any() else np.arange(len(errors))
    order = idx[np.argsort(errors[idx], kind="stable")]
    picks = {"median pixel": int(order[len(order) // 2]), "90th percentile": int(order[int(0.9 * (len(order) - 1))])}
    worst = np.argsort(-errors, kind="stable")[:n_worst]
    picks |= {f"worst #{i + 1}": int(w) for i, w in enumerate(worst)}
    return picks


def pixel_name(dataset: SpectralDataset, position: int) -> str:
    """Where a pixel came from, as people say it: `data3.npy (row 12, col 40)`."""
    k, row, col = (int(v) for v in dataset.coords[position])
    return f"{dataset.scans[k]} (row {row}, col {col})"


def reconstruct_pixels(vae: SpectraVAE, data: Any, positions: Any) -> tuple[np.ndarray, np.ndarray]:
    """The spectra at dataset `positions` and their reconstructions, both as the model sees them.

    Reads only those pixels, in the order given (`(len(positions), n_channels)` each), with one
    pass of the model; `data` may be raw or already prepared by `vae.prepare`.
    """
    seen = vae.prepare(data)
    positions = np.asarray(positions, dtype=np.int64)
    originals = seen.read(positions)
    recons = np.empty_like(originals)
    # select_pixels returns the pixels sorted by position; put them back in the order asked for
    recons[np.argsort(positions, kind="stable")] = vae.reconstruct(seen.select_pixels(positions))
    return originals, recons


def embed(z: np.ndarray, method: str = "pca", max_points: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """2-D PCA or t-SNE embedding of latent points; returns (embedding, indices of the points used)."""
    rng = np.random.default_rng(seed)
    idx = np.arange(len(z)) if len(z) <= max_points else np.sort(rng.choice(len(z), max_points, replace=False))
    if method == "pca":
        if z.shape[1] < 2:
            return np.column_stack([z[idx, 0], np.zeros(len(idx))]), idx
        return PCA(n_components=2, random_state=seed).fit_transform(z[idx]), idx
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = float(min(30, max(5, (len(idx) - 1) // 3)))
        return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(z[idx]), idx
    raise ValueError(f"method must be 'pca' or 'tsne'; got {method!r}")
