"""spectra_vae: a variational autoencoder for per-pixel FTIR spectra of tissue scans.

Nothing here does work at import time; see the numbered notebooks for the data flow.
"""

from __future__ import annotations

from .core.errors import DataError, TrainingError, TrainingWarning  # noqa: E402
from .core.metrics import rmse  # noqa: E402
from .core.version import __version__
from .estimator.vae import SpectraVAE
from .io.dataset import SpectralDataset  # noqa: E402
from .io.demo import make_demo_dataset  # noqa: E402
from .io.folders import available_splits
from .io.load import load_dataset

__all__ = ["DataError", "SpectraVAE", "SpectralDataset", "TrainingError", "TrainingWarning", "__version__",
           "available_splits", "load_dataset", "make_demo_dataset", "rmse"]
