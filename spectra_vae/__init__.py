"""spectra_vae: a variational autoencoder for per-pixel FTIR spectra of tissue scans.

Nothing here does work at import time; see the numbered notebooks for the data flow.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .data import SpectralDataset, available_splits, load_dataset  # noqa: E402
from .demo import make_demo_dataset  # noqa: E402
from .errors import DataError, TrainingError, TrainingWarning  # noqa: E402
from .estimator import SpectraVAE, rmse  # noqa: E402

__all__ = ["DataError", "SpectraVAE", "SpectralDataset", "TrainingError", "TrainingWarning", "__version__",
           "available_splits", "load_dataset", "make_demo_dataset", "rmse"]
