"""Reconstruction metrics in the data's units."""

from __future__ import annotations

import math

import numpy as np


def pixel_rmse(original: np.ndarray, reconstruction: np.ndarray) -> np.ndarray:
    """Per-pixel RMSE over channels, `(n_pixels,)` (differences in float64)."""
    return np.sqrt(np.mean((np.asarray(original, np.float64) - reconstruction) ** 2, axis=1))


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    """Root-mean-square difference over all pixels and channels."""
    return math.sqrt(float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)))
