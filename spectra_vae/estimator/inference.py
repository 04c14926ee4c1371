"""What a fitted `SpectraVAE` computes from data besides latent means: log-variances, reconstructions (in the
model's space or undone to the original units), per-pixel errors, decoded latent points, and `score`."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from ..core.errors import DataError
from ..core.metrics import pixel_rmse
from ..io.dataset import SpectralDataset
from ..io.load import as_dataset
from .base import PREDICT_BATCH, VAEEstimator, concat, every_row
from .checks import latent_points


class Inference(VAEEstimator):
    """Reconstructions, errors, decoded points and the scikit-learn `score` of a fitted model."""

    def encode(self, data: Any) -> tuple[np.ndarray, np.ndarray]:
        """Latent means and log-variances, each `(n_pixels, latent_dim)`."""
        ds, mus, logvars = as_dataset(data), [], []
        with torch.no_grad():
            for _, x in self.normalised_batches(ds):
                mu, logvar = self.model_.encode(x)
                mus.append(mu.cpu().numpy())
                logvars.append(logvar.cpu().numpy())
        return (every_row(data, ds, concat(mus, self.latent_dim)),
                every_row(data, ds, concat(logvars, self.latent_dim)))

    def score(self, data: Any, y: Any = None) -> float:
        """Negative RMSE in absorbance units of the reconstructions at the latent mean, over all pixels
        and the channels the model keeps; higher is better, and comparable across preprocessing,
        normalisation and β (scikit-learn's `score`, used by `GridSearchCV` and `cross_val_score`).

        Per-spectrum normalisations and baselines (`snv`, `vector`, `amide1`, `baseline`,
        `rubberband`, `emsc`) are undone pixel by pixel; a leading `cut` compares on its channels.
        Steps that cannot be undone (`resample`, `savgol`, a `cut` after another step) raise `DataError`.
        """
        self._check_fitted()
        steps = self.preprocessor_.steps
        lead = 0
        while lead < len(steps) and steps[lead].name == "cut":
            lead += 1
        total, count = 0.0, 0
        for original, back in self._in_original_units(data, lead, "score"):
            total += float(((back.astype(np.float64) - original) ** 2).sum())
            count += original.size
        return -math.sqrt(total / max(count, 1))

    def _in_original_units(self, data: Any, lead: int, what: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Per chunk of pixels: (the spectra after the first `lead` steps of the pipeline, their
        reconstructions in the same units: the rest of the pipeline undone pixel by pixel)."""
        ds = as_dataset(data)
        prepared = self.prepare(ds)  # also checks the axis
        head, rest = self.preprocessor_.split(lead)
        if not rest.invertible:
            after = " after its cut" if lead else ""
            raise DataError(f"{what}: preprocess {self.preprocess!r} cannot be undone{after}, so there is no result "
                            "in absorbance units; compare such models by reconstruction_error in their own space")
        raw = ds.raw()
        with torch.no_grad():
            for s in range(0, len(raw), PREDICT_BATCH):
                positions = np.arange(s, min(s + PREDICT_BATCH, len(raw)))
                a = head.transform(raw.read(positions)) if head else raw.read(positions)
                processed, undo = rest.transform(a, return_inverse=True)
                r = self._decode_mean(self._model_input(prepared, positions, processed))
                yield a, rest.inverse_transform(r, undo)

    def _model_input(self, prepared: SpectralDataset, positions: np.ndarray, spectra: np.ndarray) -> torch.Tensor:
        """The encoder's input for pixels at `positions` of `prepared` whose spectra (as the model sees
        them) are `spectra`: normalised, with their neighbourhoods' mean for the spatial architecture."""
        if self.model_config_.architecture == "spatial":
            spectra = np.concatenate([spectra, self._inputs(prepared).neighbour_means(positions, spectra)], axis=1)
        return torch.from_numpy(self.normaliser_.transform(spectra)).to(self.device_)

    def decode(self, z: np.ndarray) -> np.ndarray:
        """Spectra (absorbance, original units) decoded from latent points `(n, latent_dim)`."""
        self._check_fitted()
        with torch.no_grad():
            zt = torch.as_tensor(latent_points(z, self.model_config_.latent_dim), device=self.device_)
            x = self.model_.decode(zt).cpu().numpy()
        return self.normaliser_.inverse_transform(x)

    def reconstruct(self, data: Any, original_units: bool = False) -> np.ndarray:
        """Reconstructions decode(μ) in the input's absorbance units, `(n_pixels, n_channels)`.

        With a preprocessing pipeline they are in the preprocessed space (on its axis);
        `original_units=True` undoes the pipeline for each pixel where it is invertible.
        """
        ds = as_dataset(data)
        if original_units and self.preprocessor_:
            return every_row(data, ds, self._reconstruct_original(ds))
        out = []
        with torch.no_grad():
            for _, x in self.normalised_batches(ds):
                out.append(self._decode_mean(x))
        return every_row(data, ds, concat(out, self.model_config_.n_channels))

    def _reconstruct_original(self, data: Any) -> np.ndarray:
        if not self.preprocessor_.invertible:
            raise DataError(f"preprocess {self.preprocessor_.spec!r} cannot be undone; reconstructions exist only "
                            "in the preprocessed space")
        out = [back for _, back in self._in_original_units(data, 0, "reconstruct")]
        return concat(out, len(self.wavenumbers_))

    def reconstruction_error(self, data: Any) -> np.ndarray:
        """Per-pixel RMSE over channels between each spectrum and its reconstruction (absorbance)."""
        ds, out = as_dataset(data), []
        with torch.no_grad():
            for chunk, x in self.normalised_batches(ds):
                r = self._decode_mean(x)
                out.append(pixel_rmse(chunk, r))
        return every_row(data, ds, np.concatenate(out) if out else np.zeros(0))
