"""What the `unmixing` architecture learned, in the field's terms: component spectra, abundances, thickness.

Its decoder is x̂ = t · Σₖ aₖ·sₖ + b (`spectra_vae.model.unmixing`). These are read in absorbance
units: the component spectra at unit thickness (t = 1), so that t · Σₖ aₖ·sₖ is absorbance. Other
architectures have none of them: asking raises `AttributeError`, as for any attribute a model does
not have.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..io.load import as_dataset
from ..model.unmixing import UnmixingVAE
from .base import VAEEstimator


class ComponentResults(VAEEstimator):
    """`component_spectra_`, `abundances(data)` and `thickness(data)` of an unmixing model."""

    def _unmixing(self, what: str) -> UnmixingVAE:
        model = getattr(self, "model_", None)
        if not isinstance(model, UnmixingVAE):
            architecture = getattr(self, "architecture", "?")
            raise AttributeError(f"{what}: only the unmixing architecture has component spectra, abundances and "
                                 f"thickness; this model's is {architecture!r}")
        return model

    @property
    def component_spectra_(self) -> np.ndarray:
        """`(K, n_channels)` learned component spectra in absorbance units at unit thickness, on the
        model's axis (`preprocessor_.output_wavenumbers_`); non-negative."""
        model = self._unmixing("component_spectra_")
        with torch.no_grad():
            s = model.components().cpu().numpy().astype(np.float64)
        assert self.normaliser_.scale_ is not None
        return s * self.normaliser_.scale_[None, :]

    def _unmix(self, data: Any) -> tuple[np.ndarray, np.ndarray]:
        model = self._unmixing("abundances/thickness")
        abundances, thickness = [], []
        with torch.no_grad():
            for _, x in self.normalised_batches(as_dataset(data)):
                a, t, _ = model.unmix(x)
                abundances.append(a.cpu().numpy())
                thickness.append(t.cpu().numpy())
        k = self.model_config_.latent_dim
        return (np.concatenate(abundances) if abundances else np.zeros((0, k)),
                np.concatenate(thickness) if thickness else np.zeros(0))

    def abundances(self, data: Any) -> np.ndarray:
        """`(n_pixels, K)` abundances at the latent mean, on the simplex (≥ 0, rows summing to 1)."""
        return self._unmix(data)[0].astype(np.float64)

    def thickness(self, data: Any) -> np.ndarray:
        """`(n_pixels,)` thickness t > 0: absorbance ≈ t · Σₖ aₖ·sₖ + baseline, with `component_spectra_`."""
        return self._unmix(data)[1].astype(np.float64)
