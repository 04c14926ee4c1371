"""The baselines a chemometrician would run instead of the VAE, fitted as the VAE is.

The RX detector (Reed & Yu 1990) with a Ledoit–Wolf covariance, and PCA monitoring with
Hotelling's T² and Q, both fitted on exactly the pixels and the preprocessing the VAE trains on
(`training_view` checks that), and scored on pixels as the VAE's encoder sees them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ..core.errors import DataError
from ..io.load import as_dataset
from .mspc import Moments, ScaledChi2, Subspace, fisher, ledoit_wolf
from .protocol import FittedModel


class ModelView:
    """Pixels as the VAE's encoder sees them: preprocessed by its pipeline and normalised."""

    def __init__(self, vae: FittedModel, data: Any) -> None:
        self.dataset = vae.prepare(data)
        self.normaliser = vae.normaliser_

    def __len__(self) -> int:
        return len(self.dataset)

    def iter_chunks(self) -> Iterator[np.ndarray]:
        for chunk in self.dataset.iter_chunks():
            yield self.normaliser.transform(chunk).astype(np.float64)


def training_view(vae: FittedModel, normal_train: Any) -> ModelView:
    """The VAE's own training pixels as it saw them; a `DataError` if `normal_train` holds others."""
    pixels = vae.training_pixels(normal_train)
    expected = getattr(vae, "training_digest_", None)
    if expected and pixels.pixel_digest() != expected:
        raise DataError(f"{pixels.source or 'data'}: these are not the pixels the model was trained on "
                        f"({len(pixels)} pixels from {pixels.scans}); baselines are fitted on the VAE's own "
                        "training pixels so the comparison is fair")
    return ModelView(vae, pixels)


# -- baselines -------------------------------------------------------------------------------
class RXDetector:
    """Squared Mahalanobis distance to the mean and covariance of normal training pixels (RX).

    The covariance of hundreds of correlated channels is near singular; by default it is
    shrunk towards a scaled identity by the Ledoit–Wolf (2004) rule, computed from one streamed
    pass (`shrinkage` may also be a fixed number in [0, 1]).
    """

    def __init__(self, shrinkage: str | float = "ledoit-wolf") -> None:
        self.shrinkage = shrinkage

    def fit(self, data: Any) -> RXDetector:
        moments = Moments.of(pixel_chunks(data))
        if moments.n < 2:
            raise DataError("RX needs at least two training pixels")
        if self.shrinkage == "ledoit-wolf":
            cov, self.shrinkage_ = ledoit_wolf(moments)
        else:
            s = float(self.shrinkage)
            if not 0 <= s <= 1:
                raise DataError(f"RX shrinkage must be 'ledoit-wolf' or a number in [0, 1]; got {self.shrinkage!r}")
            emp = moments.covariance(ddof=0)
            cov, self.shrinkage_ = (1 - s) * emp + s * np.trace(emp) / len(emp) * np.eye(len(emp)), s
        self.mean_, self.n_samples_ = moments.mean, moments.n
        self.cholesky_ = np.linalg.cholesky(cov + 1e-12 * np.trace(cov) / len(cov) * np.eye(len(cov)))
        return self

    def score_samples(self, data: Any) -> np.ndarray:
        """Squared Mahalanobis distance per pixel, `(n_pixels,)`."""
        out = []
        for chunk in pixel_chunks(data):
            w = np.linalg.solve(self.cholesky_, (chunk - self.mean_).T)
            out.append((w**2).sum(0))
        return np.concatenate(out) if out else np.zeros(0)


class PCAMonitor:
    """PCA monitoring as in MSPC: T² inside `n_components` principal directions and Q outside,
    each with a scaled-χ² tail fitted on normal calibration pixels, combined by Fisher's method.

    `n_components`: a number, or a variance share such as "99%".
    """

    def __init__(self, n_components: int | str) -> None:
        self.n_components = n_components

    def fit(self, data: Any, calibration: Any = None) -> PCAMonitor:
        """Directions from `data`; tails from `calibration` (held-out normal pixels; else `data`)."""
        moments = Moments.of(pixel_chunks(data))
        self.subspace_ = Subspace.fit(moments, self.n_components)
        self.n_samples_ = moments.n
        cal = self.statistics(data if calibration is None else calibration)
        self.tails_ = {k: ScaledChi2.fit(cal[k]) for k in ("t2", "q")}
        return self

    def statistics(self, data: Any) -> dict[str, np.ndarray]:
        parts = [self.subspace_.statistics(c) for c in pixel_chunks(data)]
        return {k: np.concatenate([p[k] for p in parts]) if parts else np.zeros(0) for k in ("t2", "q")}

    def score_samples(self, data: Any) -> np.ndarray:
        s = self.statistics(data)
        return fisher(self.tails_[k].log_sf(s[k]) for k in ("t2", "q"))


def pixel_chunks(data: Any) -> Iterator[np.ndarray]:
    if isinstance(data, ModelView):
        yield from data.iter_chunks()
    elif isinstance(data, np.ndarray):
        yield np.asarray(data, dtype=np.float64)
    else:
        yield from as_dataset(data).iter_chunks(dtype=np.float64)


def baseline_scores(vae: FittedModel, normal_train: Any, data: Any, normal_calibration: Any = None,
                    vae_scores: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The VAE's anomaly score and the baselines' on the pixels of `data`.

    Every baseline is fitted on the VAE's own training pixels (`normal_train` must be the data
    it was fitted on: checked), preprocessed and normalised as the VAE sees them; tails of the
    PCA monitors come from `normal_calibration` (held-out normal tissue) when given.
    """
    train = training_view(vae, normal_train)
    view = ModelView(vae, data)
    cal = None
    if normal_calibration is not None:
        cal_ds = as_dataset(normal_calibration)
        cal = ModelView(vae, cal_ds.select_pixels(np.flatnonzero(vae.tissue_mask(cal_ds))))
    k = vae.latent_dim
    pca_k, pca_99 = PCAMonitor(k).fit(train, cal), PCAMonitor("99%").fit(train, cal)
    return {
        "VAE": vae.anomaly_score(data) if vae_scores is None else np.asarray(vae_scores),
        f"PCA T²+Q ({k} comp.)": pca_k.score_samples(view),
        "PCA T²+Q (99 % var.)": pca_99.score_samples(view),
        "RX (Ledoit–Wolf)": RXDetector().fit(train).score_samples(view),
    }


