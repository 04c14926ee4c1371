"""A density of normal tissue's latent codes: "is this code unusual?" beside "is this spectrum explained?".

A Gaussian mixture of the latent means μ(x) of normal training tissue, its number of components
chosen by the Bayesian information criterion (Schwarz 1978), as LREN (Jiang et al., AAAI 2021) fits
a mixture on an autoencoder's latent space. The monitor's `latent` statistic is the negative log
density −log p(μ(x)); one component gives the latent Mahalanobis distance (up to a constant and a
factor ½). Stored as plain numbers, so a checkpoint holding it loads with `weights_only=True`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import logsumexp

MAX_COMPONENTS = 8  # BIC chooses among 1..8 components
MAX_FIT_POINTS = 5_000  # latent means the mixture is fitted on, at most (evenly spread over the sample)


@dataclass(frozen=True)
class LatentDensity:
    """A Gaussian mixture: weights (K,), means (K, d), Cholesky factors of the precisions (K, d, d)."""

    weights: np.ndarray
    means: np.ndarray
    precision_cholesky: np.ndarray
    bic: dict[int, float]  # the criterion per number of components tried (for the record)

    @property
    def n_components(self) -> int:
        return int(len(self.weights))

    @classmethod
    def fit(cls, latent_means: np.ndarray, n_components: int | str = "bic", seed: int = 0) -> LatentDensity:
        """Fitted on `(n, d)` latent means of normal tissue; `n_components`: a number, or "bic"."""
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.mixture import GaussianMixture

        z = np.asarray(latent_means, dtype=np.float64)
        z = z[np.isfinite(z).all(1)]
        if len(z) > MAX_FIT_POINTS:
            z = z[np.linspace(0, len(z) - 1, MAX_FIT_POINTS).round().astype(np.int64)]
        if len(z) < 2:
            raise ValueError("a latent density needs at least two latent means")
        if n_components == "bic":
            candidates = list(range(1, min(MAX_COMPONENTS, max(1, len(z) // 50)) + 1))
        else:
            candidates = [int(n_components)]
        best, bic = None, {}
        for k in candidates:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                gm = GaussianMixture(k, covariance_type="full", reg_covar=1e-6, n_init=1, max_iter=200,
                                     random_state=seed).fit(z)
            bic[k] = float(gm.bic(z))
            if best is None or bic[k] < bic[best.n_components]:
                best = gm
        assert best is not None
        return cls(np.asarray(best.weights_), np.asarray(best.means_), np.asarray(best.precisions_cholesky_), bic)

    def component_log_densities(self, latent_means: np.ndarray) -> np.ndarray:
        """log(wₖ · N(z; μₖ, Σₖ)) per row of `(n, d)` and component: `(n, K)`. Their log-sum is log p(z);
        their argmax the component a code most likely belongs to."""
        z = np.asarray(latent_means, dtype=np.float64)
        d = z.shape[1]
        parts = []
        for w, m, chol in zip(self.weights, self.means, self.precision_cholesky, strict=True):
            y = (z - m) @ chol
            log_det = float(np.log(np.diag(chol)).sum())
            parts.append(math.log(w) - 0.5 * d * math.log(2 * math.pi) + log_det - 0.5 * np.einsum("ij,ij->i", y, y))
        return np.stack(parts, axis=1)

    def log_density(self, latent_means: np.ndarray) -> np.ndarray:
        """log p(z) per row of `(n, d)`."""
        return np.asarray(logsumexp(self.component_log_densities(latent_means), axis=1), dtype=np.float64)

    def statistic(self, latent_means: np.ndarray) -> np.ndarray:
        """The monitor's `latent` statistic, −log p(z) (higher = a less usual code)."""
        return -self.log_density(latent_means)

    def to_dict(self) -> dict[str, Any]:
        return {"weights": self.weights.tolist(), "means": self.means.tolist(),
                "precision_cholesky": self.precision_cholesky.tolist(),
                "bic": {str(k): v for k, v in self.bic.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LatentDensity:
        return cls(np.asarray(d["weights"], dtype=np.float64), np.asarray(d["means"], dtype=np.float64),
                   np.asarray(d["precision_cholesky"], dtype=np.float64),
                   {int(k): float(v) for k, v in d.get("bic", {}).items()})
