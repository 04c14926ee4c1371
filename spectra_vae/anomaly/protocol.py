"""What the anomaly statistics need of a fitted model, as a small public protocol.

The monitor and the baselines take any object with these members (`SpectraVAE` has them): its
pixels as the encoder sees them, its network, normaliser and tissue rule. They never reach into
the estimator's private parts, and the anomaly floor never imports the estimator.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import numpy as np
import torch

from ..io.dataset import SpectralDataset
from ..model.networks import VAE, ModelConfig
from ..preprocess.normalise import Normaliser
from ..preprocess.pipeline import Preprocessor
from ..preprocess.tissue import TissueRule


class FittedModel(Protocol):
    """A fitted VAE as the anomaly statistics see it."""

    reconstruction: str
    latent_dim: int
    model_: VAE
    model_config_: ModelConfig
    normaliser_: Normaliser
    preprocessor_: Preprocessor
    tissue_rule_: TissueRule | None

    def prepare(self, data: Any) -> SpectralDataset:
        """The data as the model sees them (checked against its axis, preprocessed)."""
        ...

    def normalised_batches(self, data: Any) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        """(pixels as the model sees them, normalised tensor on the model's device), batch by batch."""
        ...

    def training_pixels(self, data: Any) -> SpectralDataset:
        """`data` as the model trained on it (preprocessed; tissue only when it trained so)."""
        ...

    def tissue_mask(self, data: Any) -> np.ndarray:
        """Per pixel, whether it is tissue by the model's rule."""
        ...

    def anomaly_score(self, data: Any, method: str = ...) -> np.ndarray:
        """The model's own anomaly score per pixel."""
        ...
