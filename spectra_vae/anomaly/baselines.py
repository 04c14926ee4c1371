"""The baselines a chemometrician would run instead of the VAE, fitted as fairly as the VAE's monitor.

The RX detector (Reed & Yu 1990) with a Ledoit–Wolf covariance, and PCA monitoring with Hotelling's
T² and Q. Both are fitted on exactly the tissue pixels the VAE's residual model is fitted on (the
normal training tissue by the model's tissue rule, the same sample: `monitor.monitor_sample`, checked
by fingerprints), preprocessed and normalised as the VAE's encoder sees them, and, where the VAE's
residuals are weighted by each pixel's noise (after a per-spectrum scaling), with each pixel's
deviation from the normal mean weighted the same way. PCA's number of components follows the VAE's
own noise-floor rule (`mspc.components_above_noise`), with the 99 %-of-variance rule beside it; its
tails and combination are the VAE monitor's (`tails`), fitted on held-out normal tissue.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.errors import DataError
from ..io.dataset import SpectralDataset
from ..io.load import as_dataset
from .calibration import complement_eigenvalues, fit_tails
from .monitor import DEFAULT_COMBINATION, DEFAULT_TAIL, Monitor, monitor_sample, noise_weights
from .mspc import Moments, Subspace, ledoit_wolf
from .protocol import FittedModel
from .spatial import smooth_scores

PCA_RULES = {"PCA T²+Q (noise floor)": "auto", "PCA T²+Q (99 % var.)": "99%"}
RX_NAME = "RX (Ledoit–Wolf)"


class ModelView:
    """Pixels as the VAE's encoder sees them: preprocessed by its pipeline and normalised. With a
    `noise_reference` (and the normal `centre`), each pixel's deviation from the centre is weighted by
    its noise weight, as the VAE monitor weights its residuals."""

    def __init__(self, vae: FittedModel, data: Any, noise_reference: float | None = None,
                 centre: np.ndarray | None = None) -> None:
        self.dataset = vae.prepare(data)
        self.normaliser = vae.normaliser_
        self.noise_reference, self.centre = noise_reference, centre

    def __len__(self) -> int:
        return len(self.dataset)

    def iter_chunks(self) -> Iterator[np.ndarray]:
        for chunk in self.dataset.iter_chunks():
            x = self.normaliser.transform(chunk).astype(np.float64)
            if self.noise_reference is not None and self.centre is not None:
                x = self.centre + noise_weights(chunk, self.noise_reference)[:, None] * (x - self.centre)
            yield x


def training_view(vae: FittedModel, normal_train: Any) -> ModelView:
    """The VAE's own training pixels as it saw them; a `DataError` if `normal_train` holds others."""
    pixels = vae.training_pixels(normal_train)
    expected = getattr(vae, "training_digest_", None)
    if expected and pixels.pixel_digest() != expected:
        raise DataError(f"{pixels.source or 'data'}: these are not the pixels the model was trained on "
                        f"({len(pixels)} pixels from {pixels.scans}); baselines are fitted on the VAE's own "
                        "training tissue so the comparison is fair")
    return ModelView(vae, pixels)


def fair_tissue(vae: FittedModel, normal_train: Any) -> SpectralDataset:
    """The tissue pixels the VAE's residual model was fitted on, from its training data `normal_train`
    (checked against the fingerprints stored with the model and its monitor)."""
    pixels = training_view(vae, normal_train).dataset
    sample = monitor_sample(vae, pixels)
    monitor: Monitor | None = getattr(vae, "monitor_", None)
    if monitor is not None and monitor.sample_digest and sample.pixel_digest() != monitor.sample_digest:
        raise DataError(f"{pixels.source or 'data'}: these training pixels do not give the tissue sample the "
                        "model's residual model was fitted on; baselines are fitted on that same sample")
    return sample


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
    """PCA monitoring as in MSPC: T² inside `n_components` principal directions and Q outside, with
    tails fitted on normal calibration pixels and combined into −log₁₀ p as the VAE's monitor does.

    `n_components`: a number, "auto" (the noise-floor rule the VAE's residual model uses), or a
    variance share such as "99%".
    """

    def __init__(self, n_components: int | str, combination: str = DEFAULT_COMBINATION,
                 tail_kind: str = DEFAULT_TAIL) -> None:
        self.n_components = n_components
        self.combination, self.tail_kind = combination, tail_kind

    def fit(self, data: Any, calibration: Any = None) -> PCAMonitor:
        """Directions from `data`; tails from `calibration` (held-out normal pixels; else `data`)."""
        moments = Moments.of(pixel_chunks(data))
        self.subspace_ = Subspace.fit(moments, self.n_components)
        self.n_samples_ = moments.n
        self.monitor_ = Monitor(self.subspace_, ("t2", "q"), {}, "", combination=self.combination,
                                tail_kind=self.tail_kind)
        complement = Moments()
        for chunk in pixel_chunks(data if calibration is None else calibration):
            complement.update(self.subspace_.outside(chunk))
        cal = self.statistics(data if calibration is None else calibration)
        self.tails_ = self.monitor_.tails = fit_tails(self.monitor_, cal, complement_eigenvalues(complement))
        return self

    def statistics(self, data: Any) -> dict[str, np.ndarray]:
        parts = [self.subspace_.statistics(c) for c in pixel_chunks(data)]
        return {k: np.concatenate([p[k] for p in parts]) if parts else np.zeros(0) for k in ("t2", "q")}

    def score_samples(self, data: Any) -> np.ndarray:
        """−log₁₀ of the combined tail probability of T² and Q per pixel (higher = more anomalous)."""
        return self.monitor_.score(self.statistics(data))


def pixel_chunks(data: Any) -> Iterator[np.ndarray]:
    if isinstance(data, ModelView):
        yield from data.iter_chunks()
    elif isinstance(data, np.ndarray):
        yield np.asarray(data, dtype=np.float64)
    else:
        yield from as_dataset(data).iter_chunks(dtype=np.float64)


@dataclass
class Baselines:
    """RX and the PCA monitors fitted fairly for one VAE (`fit_baselines`); `scores(data)` per pixel."""

    vae: FittedModel
    rx: RXDetector
    pca: dict[str, PCAMonitor]
    noise_reference: float | None
    centre: np.ndarray

    def view(self, data: Any) -> ModelView:
        return ModelView(self.vae, data, self.noise_reference, self.centre)

    @property
    def components(self) -> dict[str, int]:
        """The number of principal directions each PCA monitor keeps."""
        return {name: p.subspace_.n_components for name, p in self.pca.items()}

    def scores(self, data: Any) -> dict[str, np.ndarray]:
        view = self.view(data)
        return {**{name: p.score_samples(view) for name, p in self.pca.items()}, RX_NAME: self.rx.score_samples(view)}


def fit_baselines(vae: FittedModel, normal_train: Any, normal_calibration: Any = None,
                  components: Mapping[str, int | str] | None = None) -> Baselines:
    """RX and PCA (noise-floor and 99 % rules) fitted on the tissue sample the VAE's residual model was
    fitted on (`normal_train` must be the data the VAE trained on: checked), noise-weighted as the
    monitor is; the PCA tails on the tissue of `normal_calibration` (held-out normal scans) when given.
    `components`: the PCA monitors by name and number of components (default: `PCA_RULES`)."""
    sample = fair_tissue(vae, normal_train)
    monitor: Monitor | None = getattr(vae, "monitor_", None)
    reference = monitor.noise_reference if monitor is not None else None
    centre = Moments.of(ModelView(vae, sample).iter_chunks()).mean
    train = ModelView(vae, sample, reference, centre)
    cal = None
    if normal_calibration is not None:
        cal_ds = as_dataset(normal_calibration)
        cal = ModelView(vae, cal_ds.select_pixels(np.flatnonzero(vae.tissue_mask(cal_ds))), reference, centre)
    rule, kind = (monitor.combination, monitor.tail_kind) if monitor is not None else (DEFAULT_COMBINATION,
                                                                                     DEFAULT_TAIL)
    pca = {name: PCAMonitor(k, rule, kind).fit(train, cal) for name, k in (components or PCA_RULES).items()}
    return Baselines(vae, RXDetector().fit(train), pca, reference, centre)


def baseline_scores(vae: FittedModel, normal_train: Any, data: Any, normal_calibration: Any = None,
                    vae_scores: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The VAE's anomaly score and the fair baselines' (`fit_baselines`) on the pixels of `data`. Where the
    VAE's score is smoothed over a neighbourhood (calibrated with `smoothing`), so are the baselines', over
    the same tissue windows."""
    base = fit_baselines(vae, normal_train, normal_calibration)
    scores = base.scores(data)
    size = getattr(getattr(vae, "monitor_", None), "smoothing", 1)
    if size > 1:
        ds = vae.prepare(data)
        mask = vae.tissue_mask(ds)
        scores = {name: smooth_scores(s, ds.coords, mask, size) for name, s in scores.items()}
    return {"VAE": vae.anomaly_score(data) if vae_scores is None else np.asarray(vae_scores), **scores}
