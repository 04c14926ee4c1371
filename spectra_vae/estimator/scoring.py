"""The anomaly scores of a fitted `SpectraVAE` (see `spectra_vae.anomaly.monitor` for the method)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from typing_extensions import Self

from ..anomaly.monitor import (
    DEFAULT_COMBINATION,
    DEFAULT_STATISTICS,
    DEFAULT_TAIL,
    Monitor,
    calibrate_monitor,
    fit_monitor,
    parse_method,
    pixel_statistics,
)
from ..anomaly.scans import ScanLimit, scan_table
from ..anomaly.spatial import check_images, check_smoothing, smooth_scores
from ..core.errors import DataError
from .base import VAEEstimator
from .checks import check_anomaly_method


class AnomalyScoring(VAEEstimator):
    """Per-pixel anomaly scores, calibration, flags and scan-level calls."""

    def score_samples(self, data: Any) -> pd.DataFrame:
        """Per pixel, with (scan, row, col) and whether it is tissue by the model's rule: the
        reconstruction RMSE (data units), the reconstruction NLL of decode(μ), the KL term, the
        monitor's statistics `t2`, `q`, `inside` and (with a latent density) `latent` (see
        `spectra_vae.anomaly.monitor`), the anomaly score (`anomaly_score`'s default, −log₁₀ p, averaged
        over each tissue pixel's k×k tissue window where the model was calibrated with `smoothing=k`; the
        pixel's own then in `pixel_score`) and, once calibrated, `flagged`. Higher is more anomalous in
        every score column; deterministic (the latent mean, never a random draw)."""
        ds = self.prepare(data)
        monitor = self._monitor()
        if monitor.smoothing > 1:
            check_images(ds)
        values = pixel_statistics(self, ds, monitor)
        coords = ds.coords
        frame = pd.DataFrame({"scan": np.asarray(ds.scans, dtype=object)[coords[:, 0]] if len(ds) else [],
                              "row": coords[:, 1], "col": coords[:, 2], "tissue": self.tissue_mask(ds), **values})
        frame["subspace"] = monitor.subspace_statistic(values)
        frame["anomaly_score"] = monitor.score(values)
        if monitor.smoothing > 1:
            frame["pixel_score"] = frame["anomaly_score"]
            frame["anomaly_score"] = smooth_scores(frame["pixel_score"].to_numpy(), coords, frame["tissue"].to_numpy(),
                                                   monitor.smoothing)
        if monitor.threshold is not None:
            frame["flagged"] = frame["tissue"] & (frame["anomaly_score"] > monitor.threshold)
        return frame

    ANOMALY_SCORES = ("mspc", "elbo", "reconstruction", "kl", "inside", "t2", "q", "subspace", "latent")

    def anomaly_score(self, data: Any, method: str = "mspc", smoothing: int | None = None) -> np.ndarray:
        """One number per pixel, higher = more anomalous; deterministic, streamed in batches.

        `smoothing` k: each tissue pixel's score averaged over the tissue pixels of its k×k window in its
        scan (background keeps its own); None: the calibrated smoothing for `mspc` (`calibrate`'s
        `smoothing`), none for the others; 1: none.

        `mspc` (default): −log₁₀ of the tail probability, under normal tissue, of the monitor's
        statistics combined by its rule (`monitor_.statistics`, `monitor_.combination`: by default
        Fisher's combination of `subspace`, the evidence inside the principal directions of normal
        tissue's residuals, and `q`, outside them; see `spectra_vae.anomaly.monitor`). The statistics
        alone: `inside` (the squared residual within those directions), `t2` (the same scaled by
        their variances, Hotelling's T²), `subspace` (−log of the smaller tail probability of those
        two), `q` (squared residual outside them), `latent` (−log density of the latent mean under
        the mixture of normal tissue's codes), `kl` (the KL term); `elbo` (reconstruction NLL + β·KL
        at the latent mean), `reconstruction` (RMSE in the data's units). Statistics joined by "+"
        (e.g. `"t2+q+latent"`) are scored like `mspc`, by the monitor's rule or one named before a
        colon (`"fisher:t2+q"`, `"min_p:t2+q"`, `"qin:t2+q"` where the monitor was calibrated with
        Qin's index).
        """
        check_anomaly_method(method, self.ANOMALY_SCORES)
        if smoothing is None:
            return self._anomaly_score(data, method)
        k = check_smoothing(smoothing)
        if method == "mspc" and k == self._monitor().smoothing:
            return self._anomaly_score(data, method)
        ds = self.prepare(data)
        if k > 1:
            check_images(ds)
        if method == "mspc":
            f = self.score_samples(ds)  # its tissue column: no second pass for the mask
            scores, tissue = f["pixel_score" if "pixel_score" in f else "anomaly_score"].to_numpy(), f["tissue"]
        else:
            scores, tissue = self._anomaly_score(ds, method), None
        if k == 1:
            return scores
        return smooth_scores(scores, ds.coords, self.tissue_mask(ds) if tissue is None else tissue.to_numpy(), k)

    def _anomaly_score(self, data: Any, method: str) -> np.ndarray:
        if "+" in method:
            monitor = self._monitor()
            rule, names = parse_method(method, monitor.available)
            values = pixel_statistics(self, self.prepare(data), monitor, monitored_only=True)
            return monitor.score(values, names, rule)
        if method not in self.ANOMALY_SCORES:
            raise ValueError(f"method must be one of {self.ANOMALY_SCORES} or a combination such as 't2+q'; "
                             f"got {method!r}")
        if method == "mspc":
            return self.score_samples(data)["anomaly_score"].to_numpy()
        if method in ("inside", "t2", "q", "subspace", "latent"):
            monitor = self._monitor()
            if method not in monitor.available:
                raise DataError("this model's residual model has no latent density: refit it with "
                                "vae.fit_anomaly_model(normal_training_data, validation=...)")
            return monitor.raw(pixel_statistics(self, self.prepare(data), monitor, monitored_only=True), method)
        values = pixel_statistics(self, self.prepare(data))
        if method == "elbo":
            return values["reconstruction_nll"] + self.beta * values["kl"]
        return values["reconstruction_error" if method == "reconstruction" else "kl"]

    def _monitor(self) -> Monitor:
        self._check_fitted()
        monitor = getattr(self, "monitor_", None)
        if monitor is None:
            raise DataError("this model has no residual model for anomaly scores (it was saved before they "
                            "existed, or is a best.pt written during training): call "
                            "vae.fit_anomaly_model(normal_training_data, validation=...) or load final.pt")
        return monitor

    def fit_anomaly_model(self, normal_train: Any, validation: Any = None, noise_weighted: bool | None = None, *,
                          statistics: tuple[str, ...] = DEFAULT_STATISTICS, combination: str = DEFAULT_COMBINATION,
                          tail_kind: str = DEFAULT_TAIL, n_components: int | str = "auto",
                          latent_components: int | str | None = "bic") -> Self:
        """Learn the residual structure of normal tissue from `normal_train` (fit does this itself, with
        the defaults). `noise_weighted`: judge each pixel's residual against its own noise level (None:
        when the preprocessing divides each spectrum by a factor of its own). `statistics`,
        `combination`, `tail_kind`: the score's parts, how their tail probabilities combine and how the
        tails are modelled (see `spectra_vae.anomaly.tails`); `n_components`: the residual directions
        monitored ("auto": those above the noise floor); `latent_components`: the size of the latent
        mixture ("bic", a number, or None for none)."""
        val = None if validation is None else self.training_pixels(validation)
        self.monitor_ = fit_monitor(self, self.training_pixels(normal_train), val, n_components, statistics,
                                    noise_weighted, combination, tail_kind, latent_components)
        return self

    def calibrate(self, normal_data: Any, false_positive_rate: float = 0.01, *,
                  scan_false_positive_rate: float = 0.01, normal_labels: tuple[str, ...] | None = None,
                  smoothing: int = 1) -> Self:
        """Learn the anomaly score's distribution on the tissue of normal scans the model did not train
        on, and set the threshold and the scan-level limit (stored in the checkpoint).

        The threshold is cross-conformal over scans: each calibration scan is judged by a threshold
        the others set, and the threshold flags `false_positive_rate` (in (0, 0.5)) of a held-out
        scan's tissue on average. How far those held-out shares spread sets the limit above which
        `scan_scores` calls a scan abnormal, at `scan_false_positive_rate` of normal scans. Give at
        least 3 normal scans: with one, the threshold flags the requested share of that scan only, and
        nothing about other scans can be measured (a warning says so). Data whose labels include
        others than `normal_labels` (default: background, stroma, epithelium, where the data use those
        names) are refused.

        `smoothing` k (odd, ≥ 3; 1: none): score each tissue pixel by the mean of its k×k window's tissue
        scores (tumour is a region, not a pixel), and set the threshold and limits on that score. It needs
        images, not tables of spectra. See docs/anomaly.md, "Smoothing over a neighbourhood".
        """
        self._monitor()
        self.monitor_ = calibrate_monitor(self._monitor(), self, self.prepare(normal_data), false_positive_rate,
                                          scan_false_positive_rate, normal_labels, smoothing)
        return self

    def predict(self, data: Any) -> np.ndarray:
        """1 for each pixel flagged as anomalous, 0 otherwise; background (by the tissue rule) is never
        flagged. The threshold is `calibrate`'s, or until then the one fit set: 1 % of the normal
        validation tissue (of the training tissue without validation data, where it flags too few)."""
        if self._monitor().threshold is None:
            raise DataError("the model is not calibrated: call vae.calibrate(normal_scans, false_positive_rate=0.01)")
        return self.score_samples(data)["flagged"].to_numpy().astype(np.int8)

    def scan_scores(self, data: Any) -> pd.DataFrame:
        """Per scan: tissue pixels, flagged fraction, its calibrated limit and the call (abnormal or
        not), and the 99th-percentile pixel score. The limit is the prediction limit of a normal
        scan's flagged fraction from how the calibration scans' held-out fractions spread (with fewer
        than 3 calibration scans, from how flags cluster within a scan only; see
        `spectra_vae.anomaly.scans.ScanLimit`)."""
        monitor = self._monitor()
        if monitor.threshold is None:
            raise DataError("the model is not calibrated: call vae.calibrate(normal_scans, false_positive_rate=0.01)")
        ds = self.prepare(data)
        f = self.score_samples(ds)
        limit = monitor.scan_limit or ScanLimit.within_one_scan(float(monitor.false_positive_rate or 0.01),
                                                                float(monitor.design_effect or 1.0))
        return scan_table(ds, f["anomaly_score"].to_numpy(), f["flagged"].to_numpy(), f["tissue"].to_numpy(), limit)
