"""Realistic demo FTIR scans: round tissue cores of biomolecular bands on a noise background.

The lab's data are private, so every notebook and test runs on these. A scan is built as
Beer-Lambert absorbance: a per-pixel thickness times a mixture of pure-component spectra
(protein, collagen, nucleic acid, glycogen, lipid), each a sum of pseudo-Voigt bands at the
positions reported for tissue in the FTIR literature, plus white noise of a known level.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .errors import DataError

WAVENUMBER_RANGE = (950.0, 1800.0)
N_CHANNELS = 442
LABEL_NAMES = ("background", "stroma", "epithelium", "tumour")
GENERATOR_VERSION = 2  # bump when the generated spectra change, so cached demo data are remade
NOISE_SIGMA = 0.002  # absorbance units; background pixels are this noise only

# (centre cm⁻¹, full width at half maximum cm⁻¹, peak height) per band, per pure component.
COMPONENT_BANDS: dict[str, list[tuple[float, float, float]]] = {
    "protein": [  # cellular protein: amide I/II/III, CH2/CH3 bending, COO⁻
        (1655, 38, 1.00), (1545, 42, 0.62), (1455, 24, 0.12), (1395, 30, 0.11),
        (1310, 40, 0.05), (1240, 50, 0.07), (1080, 60, 0.03),
    ],
    "collagen": [  # stroma: amide bands plus the collagen triplet 1204/1240/1280 and 1338
        (1658, 40, 0.95), (1550, 44, 0.50), (1455, 22, 0.14), (1400, 28, 0.10),
        (1338, 15, 0.10), (1280, 18, 0.09), (1240, 20, 0.12), (1204, 15, 0.08),
        (1080, 40, 0.05), (1032, 30, 0.07),
    ],
    "nucleic_acid": [  # phosphate asym/sym stretch, base C=O, backbone
        (1715, 30, 0.22), (1240, 32, 0.45), (1085, 26, 0.55), (1055, 30, 0.20), (965, 18, 0.20),
    ],
    "glycogen": [(1152, 20, 0.35), (1080, 25, 0.60), (1025, 20, 0.90)],
    "lipid": [(1740, 18, 0.60), (1465, 20, 0.25), (1380, 20, 0.10), (1170, 30, 0.20)],
}
COMPONENTS = tuple(COMPONENT_BANDS)

# Mean composition (fractions of each component) per tissue class.  The tumour class differs
# from epithelium the way carcinoma is reported to: more nucleic acid (phosphate bands at 1240
# and 1085 cm⁻¹ up by roughly a quarter relative to amide), less glycogen (1025 cm⁻¹), and an
# amide I band about 2 cm⁻¹ lower (altered protein secondary structure). It is the same
# molecules in shifted proportions, each shift within the pixel-to-pixel spread of normal
# tissue, not a new molecule.
CLASS_COMPOSITION: dict[str, dict[str, float]] = {
    "stroma": {"protein": 0.15, "collagen": 0.78, "nucleic_acid": 0.03, "glycogen": 0.02, "lipid": 0.02},
    "epithelium": {"protein": 0.64, "collagen": 0.04, "nucleic_acid": 0.14, "glycogen": 0.11, "lipid": 0.07},
    "tumour": {"protein": 0.64, "collagen": 0.03, "nucleic_acid": 0.18, "glycogen": 0.07, "lipid": 0.08},
}
TUMOUR_AMIDE_I_SHIFT = -2.0  # cm⁻¹, mean shift; normal pixels vary by AMIDE_I_SHIFT_SD around 0
AMIDE_I_SHIFT_SD = 1.0  # cm⁻¹


def demo_wavenumbers(n_channels: int = N_CHANNELS) -> np.ndarray:
    """The demo's wavenumber axis in cm⁻¹, ascending (950–1800, ≈1.93 cm⁻¹ apart for 442)."""
    return np.linspace(*WAVENUMBER_RANGE, n_channels)


def pseudo_voigt(wavenumbers: np.ndarray, centre: float, fwhm: float, eta: float = 0.3) -> np.ndarray:
    """Unit-height pseudo-Voigt band: (1-η)·Gaussian + η·Lorentzian of the same FWHM."""
    x = (wavenumbers - centre) / (fwhm / 2)
    gauss = np.exp(-np.log(2) * x**2)
    lorentz = 1 / (1 + x**2)
    return (1 - eta) * gauss + eta * lorentz


def component_spectra(wavenumbers: np.ndarray, amide_i_shift: float = 0.0,
                      amide_i_only: bool = False) -> np.ndarray:
    """Pure-component spectra, shape (n_components, n_channels), in the order of COMPONENTS.

    `amide_i_shift` moves the amide I band (protein and collagen bands above 1600 cm⁻¹);
    `amide_i_only` keeps only those bands.
    """
    spectra = np.zeros((len(COMPONENTS), len(wavenumbers)))
    for k, name in enumerate(COMPONENTS):
        for centre, fwhm, height in COMPONENT_BANDS[name]:
            amide_i = name in ("protein", "collagen") and centre > 1600
            if amide_i_only and not amide_i:
                continue
            spectra[k] += height * pseudo_voigt(wavenumbers, centre + (amide_i_shift if amide_i else 0.0), fwhm)
    return spectra


def smooth_field(rng: np.random.Generator, height: int, width: int, length: float) -> np.ndarray:
    """A zero-mean, unit-variance Gaussian random field with correlation length ~`length` pixels."""
    noise = rng.standard_normal((height, width))
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    kernel = np.exp(-2 * (np.pi * length) ** 2 * (fx**2 + fy**2))
    field = np.fft.irfft2(np.fft.rfft2(noise) * kernel, s=(height, width))
    return (field - field.mean()) / (field.std() + 1e-12)


def make_demo_scan(
    rng: np.random.Generator,
    height: int,
    width: int,
    *,
    abnormal: bool = False,
    noise: float = NOISE_SIGMA,
    scatter: bool = False,
    wavenumbers: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One scan: absorbance (height, width, n_channels) float32 and its label map (uint8)."""
    wn = demo_wavenumbers() if wavenumbers is None else wavenumbers
    size = min(height, width)
    yy, xx = np.mgrid[0:height, 0:width].astype(float)

    # A round core, slightly off centre, with a wobbly edge.
    cy, cx = height / 2 + rng.normal(0, 0.03 * size), width / 2 + rng.normal(0, 0.03 * size)
    radius = size * rng.uniform(0.36, 0.44)
    r = np.hypot(yy - cy, xx - cx)
    core = r < radius * (1 + 0.05 * smooth_field(rng, height, width, 0.15 * size))

    labels = np.zeros((height, width), dtype=np.uint8)
    epithelium = smooth_field(rng, height, width, 0.08 * size) > 0.25
    labels[core] = LABEL_NAMES.index("stroma")
    labels[core & epithelium] = LABEL_NAMES.index("epithelium")
    if abnormal:
        # A tumour nest: a distorted disc inside the core, invading stroma and epithelium.
        angle, dist = rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.4) * radius
        ty, tx = cy + dist * np.sin(angle), cx + dist * np.cos(angle)
        t_radius = radius * rng.uniform(0.35, 0.5)
        blob = np.hypot(yy - ty, xx - tx) < t_radius * (1 + 0.25 * smooth_field(rng, height, width, 0.06 * size))
        labels[core & blob] = LABEL_NAMES.index("tumour")

    # Per-pixel composition: the class mean, modulated by smooth and pixel-level variation.
    normal_spectra = component_spectra(wn)
    tumour_spectra = component_spectra(wn, TUMOUR_AMIDE_I_SHIFT)
    n_comp = len(COMPONENTS)
    fields = np.stack([smooth_field(rng, height, width, 0.05 * size) for _ in range(n_comp)], axis=-1)
    thickness = 0.55 * np.exp(0.18 * smooth_field(rng, height, width, 0.12 * size))
    thickness *= np.clip(1.2 * (1 - (r / radius) ** 8), 0.25, 1.0)  # thinner at the core's edge
    # Amide I position varies from pixel to pixel (protein secondary structure), σ ≈ 1 cm⁻¹.
    amide_shift = AMIDE_I_SHIFT_SD * smooth_field(rng, height, width, 0.04 * size)
    d_amide_i = np.gradient(component_spectra(wn, amide_i_only=True), wn, axis=1)

    absorbance = np.zeros((height * width, len(wn)), dtype=np.float32)
    flat_labels = labels.ravel()
    for name in CLASS_COMPOSITION:
        idx = np.flatnonzero(flat_labels == LABEL_NAMES.index(name))
        if idx.size == 0:
            continue
        mean = np.array([CLASS_COMPOSITION[name][c] for c in COMPONENTS])
        log_frac = np.log(mean)[None, :] + 0.25 * fields.reshape(-1, n_comp)[idx]
        log_frac += 0.08 * rng.standard_normal((idx.size, n_comp))
        frac = np.exp(log_frac)
        frac /= frac.sum(axis=1, keepdims=True)
        spectra = tumour_spectra if name == "tumour" else normal_spectra
        pixel = frac @ spectra
        # First-order shift of the amide I band: S(ν - δ) ≈ S(ν) - δ·S'(ν). The tumour's mean
        # shift moves the same band, so it lies within the normal variation, not beside it.
        shift = amide_shift.ravel()[idx, None]
        pixel -= shift * (frac @ d_amide_i)
        pixel *= thickness.ravel()[idx, None] * (1 + 0.03 * rng.standard_normal((idx.size, 1)))
        absorbance[idx] = pixel

    if scatter:
        # "Uncorrected" spectra: a smooth, pixel-varying scattering baseline under the tissue.
        x = (wn - wn.min()) / np.ptp(wn)
        tissue = flat_labels > 0
        offset = 0.05 * np.exp(0.3 * smooth_field(rng, height, width, 0.1 * size)).ravel()
        slope = 0.08 * np.exp(0.4 * smooth_field(rng, height, width, 0.1 * size)).ravel()
        phase = rng.uniform(0, 2 * np.pi)
        wiggle = 0.02 * np.sin(2 * np.pi * x * 1.3 + phase)
        baseline = offset[:, None] + slope[:, None] * x[None, :] ** 1.5 + wiggle[None, :]
        absorbance[tissue] += baseline[tissue].astype(np.float32)

    absorbance += rng.standard_normal(absorbance.shape, dtype=np.float32) * np.float32(noise)
    return absorbance.reshape(height, width, len(wn)), labels


def _save_npy_atomic(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.save(f, array)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def demo_splits(n_scans: int, n_abnormal: int) -> dict[str, list[str]]:
    """Split file lists: normal scans into train/val/test by scan; abnormal scans apart."""
    names = [f"data{i}.npy" for i in range(n_scans)]
    normal, abnormal = names[: n_scans - n_abnormal], names[n_scans - n_abnormal :]
    n_val = 1 if len(normal) >= 3 else 0
    n_test = max(1, round(0.2 * len(normal))) if len(normal) >= 3 else 0
    n_train = len(normal) - n_val - n_test
    return {
        "normal_train": normal[:n_train],
        "normal_val": normal[n_train : n_train + n_val],
        "normal_test": normal[n_train + n_val :],
        "abnormal": abnormal,
    }


def make_demo_dataset(
    directory: str | os.PathLike,
    *,
    n_scans: int = 6,
    height: int = 64,
    width: int = 64,
    seed: int = 0,
    n_abnormal: int | None = None,
    noise: float = NOISE_SIGMA,
    scatter: bool = False,
    dtype: str = "float32",
) -> Path:
    """Write demo scans `data{i}.npy` (H, W, 442), `wavenumbers.npy`, `labels/`, `data_splits.json`.

    The last `n_abnormal` scans (default: a third, at least one when n_scans > 1) hold a
    tumour-like region. `scatter=True` adds scattering baselines (the "uncorrected" variant).
    Returns the directory. Same arguments, same files.
    """
    from .data import check_output_dir

    def whole(x: object) -> bool:
        return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))

    if not all(whole(x) for x in (n_scans, height, width, seed)) or n_scans < 1 or height < 4 or width < 4 or seed < 0:
        raise DataError(f"need whole numbers n_scans ≥ 1, height and width ≥ 4, seed ≥ 0; got {n_scans!r}, "
                        f"{height!r}, {width!r}, {seed!r}")
    if n_abnormal is None:
        n_abnormal = max(1, n_scans // 3) if n_scans > 1 else 0
    if not whole(n_abnormal) or not 0 <= n_abnormal <= n_scans:
        raise DataError(f"n_abnormal must be a whole number in 0..{n_scans}; got {n_abnormal!r}")
    if not (isinstance(noise, (int, float)) and not isinstance(noise, bool) and np.isfinite(noise) and noise >= 0):
        raise DataError(f"noise must be a finite number ≥ 0; got {noise!r}")
    if dtype not in ("float32", "float64"):
        raise DataError(f"dtype must be 'float32' or 'float64'; got {dtype!r}")
    out = check_output_dir(directory, "demo data folder")
    (out / "labels").mkdir(parents=True, exist_ok=True)
    wn = demo_wavenumbers()
    rngs = [np.random.default_rng([seed, i]) for i in range(n_scans)]
    for i, rng in enumerate(rngs):
        abnormal = i >= n_scans - n_abnormal
        scan, labels = make_demo_scan(rng, height, width, abnormal=abnormal, noise=noise,
                                      scatter=scatter, wavenumbers=wn)
        _save_npy_atomic(out / f"data{i}.npy", scan.astype(dtype, copy=False))
        _save_npy_atomic(out / "labels" / f"data{i}.npy", labels)
    _save_npy_atomic(out / "wavenumbers.npy", wn)
    (out / "labels" / "label_names.json").write_text(json.dumps(list(LABEL_NAMES)))
    (out / "data_splits.json").write_text(json.dumps(demo_splits(n_scans, n_abnormal), indent=2))
    meta = {
        "generator": "spectra_vae.make_demo_dataset", "version": GENERATOR_VERSION, "n_scans": n_scans,
        "height": height,
        "width": width, "seed": seed, "n_abnormal": n_abnormal, "noise_sigma": noise,
        "scatter": scatter, "label_names": list(LABEL_NAMES),
        "tumour_differs_by": "nucleic acid 0.14→0.18, glycogen 0.11→0.07, amide I −2 cm⁻¹",
    }
    (out / "demo.json").write_text(json.dumps(meta, indent=2))
    return out
