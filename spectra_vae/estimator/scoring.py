"""The anomaly scores of a fitted `SpectraVAE` (see `spectra_vae.anomaly.monitor` for the method)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from typing_extensions import Self

from ..anomaly.monitor import Monitor, calibrate_monitor, fit_monitor, parse_statistics, pixel_statistics
from ..anomaly.scans import scan_table
from ..core.errors import DataError
from .base import VAEEstimator
from .checks import check_anomaly_method


class AnomalyScoring(VAEEstimator):
    """Per-pixel anomaly scores, calibration, flags and scan-level calls."""

    def score_samples(self, data: Any) -> pd.DataFrame:
        """Per pixel, with (scan, row, col) and whether it is tissue by the model's rule: the
        reconstruction RMSE (data units), the reconstruction NLL of decode(μ), the KL term, the
        residual statistics `inside`, `t2` and `q` (see `spectra_vae.anomaly.monitor`), the anomaly score
        (`anomaly_score`'s default) and, once calibrated, `flagged`. Higher is more anomalous in
        every score column; deterministic (the latent mean, never a random draw)."""
        ds = self.prepare(data)
        monitor = self._monitor()
        values = pixel_statistics(self, ds, monitor)
        coords = ds.coords
        frame = pd.DataFrame({"scan": np.asarray(ds.scans, dtype=object)[coords[:, 0]] if len(ds) else [],
                              "row": coords[:, 1], "col": coords[:, 2], "tissue": self.tissue_mask(ds), **values})
        frame["anomaly_score"] = monitor.combine(values)
        if monitor.threshold is not None:
            frame["flagged"] = frame["tissue"] & (frame["anomaly_score"] > monitor.threshold)
        return frame

    ANOMALY_SCORES = ("mspc", "elbo", "reconstruction", "kl", "inside", "t2", "q")

    def anomaly_score(self, data: Any, method: str = "mspc") -> np.ndarray:
        """One number per pixel, higher = more anomalous; deterministic, streamed in batches.

        `mspc` (default): Fisher's combination of the tail probabilities of the residual
        statistics inside (`inside`, `t2`) and outside (`q`) the principal directions of normal
        tissue's residuals (`monitor_.statistics`; see `spectra_vae.anomaly.monitor`). The parts:
        `inside` (squared residual within those directions), `t2` (the same scaled by their
        variances, Hotelling's T²), `q` (squared residual outside them), `kl` (the KL term), `elbo`
        (reconstruction NLL + β·KL at the latent mean), `reconstruction` (RMSE in the data's units).
        A combination of statistics joined by "+" (e.g. `"t2+q"`) is scored like `mspc` (Fisher's
        method over their tails).
        """
        check_anomaly_method(method, self.ANOMALY_SCORES)
        if "+" in method:
            prepared = self.prepare(data)
            monitor = self._monitor()
            values = pixel_statistics(self, prepared, monitor, monitored_only=True)
            return monitor.combine(values, parse_statistics(method))
        if method not in self.ANOMALY_SCORES:
            raise ValueError(f"method must be one of {self.ANOMALY_SCORES} or a combination such as 't2+q'; "
                             f"got {method!r}")
        if method == "mspc":
            return self.score_samples(data)["anomaly_score"].to_numpy()
        if method in ("inside", "t2", "q"):
            return pixel_statistics(self, self.prepare(data), self._monitor(), monitored_only=True)[method]
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

    def fit_anomaly_model(self, normal_train: Any, validation: Any = None,
                          noise_weighted: bool | None = None) -> Self:
        """Learn the residual structure of normal tissue from `normal_train` (fit does this itself).
        `noise_weighted`: judge each pixel's residual against its own noise level (None: when the
        preprocessing divides each spectrum by a factor of its own; see `spectra_vae.anomaly.monitor`)."""
        val = None if validation is None else self.training_pixels(validation)
        self.monitor_ = fit_monitor(self, self.training_pixels(normal_train), val, noise_weighted=noise_weighted)
        return self

    def calibrate(self, normal_data: Any, false_positive_rate: float = 0.01) -> Self:
        """Learn the anomaly score's distribution on the tissue pixels of held-out normal scans and
        set the threshold that flags `false_positive_rate` of them (stored in the checkpoint).

        Use scans the model did not train on; the validation scans serve (early stopping picks one
        of the epochs by their mean loss, which barely moves the tail of their score distribution).
        """
        self._monitor()
        self.monitor_ = calibrate_monitor(self._monitor(), self, self.prepare(normal_data), float(false_positive_rate))
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
        not), and the 99th-percentile pixel score. The limit is the nominal false-positive rate
        plus the one-sided 99 % spread of a normal scan's flagged fraction, widened by how much
        flags cluster in space on the calibration tissue."""
        monitor = self._monitor()
        if monitor.threshold is None:
            raise DataError("the model is not calibrated: call vae.calibrate(normal_scans, false_positive_rate=0.01)")
        ds = self.prepare(data)
        f = self.score_samples(ds)
        return scan_table(ds, f["anomaly_score"].to_numpy(), f["flagged"].to_numpy(), f["tissue"].to_numpy(),
                          float(monitor.false_positive_rate or 0.01), float(monitor.design_effect or 1.0))

