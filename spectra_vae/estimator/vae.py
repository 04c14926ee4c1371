"""`SpectraVAE`: the VAE as a scikit-learn-style estimator over spectral datasets."""

from __future__ import annotations

from .components import ComponentResults
from .inference import Inference
from .persistence import Persistence
from .scoring import AnomalyScoring


class SpectraVAE(Persistence, AnomalyScoring, ComponentResults, Inference):
    """A variational autoencoder of per-pixel spectra, and a scikit-learn transformer (`clone`, pipelines,
    `GridSearchCV`): `fit(X)` → `transform(X)` gives latent means, `score(X)` the negative RMSE in
    absorbance units (higher is better).

    `X` is a `SpectralDataset`, a path, or an array/DataFrame of pixels `(n_pixels, n_channels)`
    (a DataFrame's column names are its wavenumbers). For arrays and DataFrames, pixels with a
    non-finite value are left out of fitting and come back as NaN rows, so outputs keep one row
    per input row; for datasets, outputs hold the usable pixels (`dataset.coords`).

    Defaults: the prototype's 442→221→110→2 shape (LeakyReLU 0.2), standardisation with one mean
    and one standard deviation fitted on the training pixels (`global_standard`), and a Gaussian
    likelihood with one calibrated noise level (`noise="shared"`), β = 1, float32 arithmetic
    (`precision="bf16"` trains under bfloat16 autocast). `epochs="auto"`: 50 epochs, more on small
    data, so that a run takes at least 3000 optimiser steps (`spectra_vae.model.train.plan_epochs`; the
    epochs planned are `epochs_`). Learned state ends in `_` (`model_`, `normaliser_`,
    `wavenumbers_`, `history_`).

    The parts: `base.VAEEstimator` (configuration, fitting, inference), `scoring.AnomalyScoring`
    (anomaly scores, calibration, flags), `persistence.Persistence` (save, load, resume),
    `inference.Inference` (reconstructions, errors, `score`) and `components.ComponentResults` (what the
    unmixing architecture learned).
    """

