"""The estimator: `SpectraVAE`, the scikit-learn face of the model (fit, transform, score, anomaly
scores, calibrate, save/load/resume), and the table of its parameters (`params.PARAMETERS`)."""

from .params import PARAMETERS
from .vae import SpectraVAE

__all__ = ["PARAMETERS", "SpectraVAE"]
