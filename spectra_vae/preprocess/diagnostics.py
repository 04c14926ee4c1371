"""What a fitted pipeline's EMSC found per pixel: its terms as a table and as maps.

Diagnostics of the `emsc` step that need the whole pipeline (the steps before it) and a dataset;
the numerics are in `spectra_vae.preprocess.emsc`, which imports neither.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..io.dataset import SpectralDataset
from .emsc import EMSC, MIN_SCALE
from .pipeline import Preprocessor

# The per-pixel terms drawn as maps (where the fit has them), and what their colour bars say.
MAP_LABELS = {"multiplicative": "multiplicative term a", "dispersion_share": "dispersion b / a",
              "baseline": "baseline mean (absorbance)"}


def pixel_terms(preprocessor: Preprocessor, data: SpectralDataset) -> pd.DataFrame:
    """Per pixel of `data`, what the pipeline's `emsc` step fitted, aligned with the pixels so that
    `data.image(frame[column].to_numpy(), scan)` draws each column as a map.

    Columns: `multiplicative` (a, the amount of reference: path length and thickness), `dispersion`
    (b, where modelled) and `dispersion_share` (b / a, the artefact's strength whatever the
    thickness; NaN where guarded), `baseline` (the fitted polynomial's mean over the axis, absorbance),
    `baseline_0` … (Legendre coefficients), `residual_rmse` (what the model leaves, absorbance) and
    `guarded` (a ≤ MIN_SCALE: not divided). Streamed; `data` may be raw or a preprocessed view.
    """
    emsc: EMSC = preprocessor.fitted_step("emsc")
    raw = data.raw() if data.preprocessor is not None else data
    parts = []
    for chunk in raw.iter_chunks():
        x = preprocessor.transform_until(chunk, "emsc").astype(np.float64)
        coef = emsc.coefficients(x)
        frame = pd.DataFrame(coef, columns=emsc.terms)
        guarded = coef[:, 0] <= MIN_SCALE
        if emsc.dispersion:
            share = coef[:, 1] / np.where(guarded, 1.0, coef[:, 0])
            frame.insert(2, "dispersion_share", np.where(guarded, np.nan, share))
        frame.insert(3 if emsc.dispersion else 1, "baseline", emsc.baseline(coef).mean(axis=1))
        frame["residual_rmse"] = np.sqrt(np.mean((x - coef @ emsc.design_.T) ** 2, axis=1))
        frame["guarded"] = guarded
        parts.append(frame)
    if not parts:
        return pd.DataFrame(columns=[*emsc.terms, "dispersion_share", "baseline", "residual_rmse", "guarded"])
    return pd.concat(parts, ignore_index=True)


def has_emsc(preprocessor: Preprocessor | None) -> bool:
    """Whether a (fitted) pipeline has an `emsc` step, such as a model trained on uncorrected scans."""
    return preprocessor is not None and any(step.name == "emsc" for step in preprocessor.steps)


def term_maps(preprocessor: Preprocessor, data: SpectralDataset) -> dict[str, dict[str, np.ndarray]]:
    """EMSC's per-pixel terms as maps, `{term: {scan: (H, W) image}}`, for the terms of `MAP_LABELS`
    the fit has (`dispersion_share` only with the dispersion term); NaN where a scan has no pixel
    (excluded) and, for `dispersion_share`, where a pixel was guarded (background)."""
    terms = pixel_terms(preprocessor, data)
    return {column: {name: data.image(terms[column].to_numpy(dtype=np.float64), k)
                     for k, name in enumerate(data.scans)}
            for column in MAP_LABELS if column in terms}

