"""Anomaly detection: which pixels does a model of normal tissue not explain, and how sure is that?

The VAE's own scores live on the estimator (`score_samples`, `anomaly_score`, `calibrate`,
`predict`, `scan_scores`), computed by the residual monitor (`monitor`, on the statistics of `mspc`,
the tails and combinations of `tails` and the latent density of `latent`) and calibrated scan by
scan (`calibration`). Here also: the baselines fitted as the monitor is (`fit_baselines`,
`RXDetector`, `PCAMonitor`), the evaluation against ground truth (`evaluation`) and the scan-level
calls (`scans`).
"""

from .baselines import (
    Baselines,
    ModelView,
    PCAMonitor,
    RXDetector,
    baseline_scores,
    fair_tissue,
    fit_baselines,
    training_view,
)
from .calibration import calibrate_values
from .evaluation import (
    anomaly_kinds,
    auroc_interval,
    clopper_pearson,
    evaluate,
    evaluate_kinds,
    flagged_by_label,
    ground_truth_anomaly,
    pixel_groups,
    pp_curve,
    roc_curves,
    score_maps,
    score_statistics,
    verdict,
)
from .latent import LatentDensity
from .monitor import Monitor
from .protocol import FittedModel
from .scans import ScanLimit, design_effect, flagged_fraction, scan_table, scan_threshold, threshold_from_normal

__all__ = ["Baselines", "FittedModel", "LatentDensity", "ModelView", "Monitor", "PCAMonitor", "RXDetector",
           "ScanLimit", "anomaly_kinds", "auroc_interval", "baseline_scores", "calibrate_values", "clopper_pearson",
           "design_effect", "evaluate", "evaluate_kinds", "fair_tissue", "fit_baselines", "flagged_by_label",
           "flagged_fraction", "ground_truth_anomaly", "pixel_groups", "pp_curve", "roc_curves", "scan_table",
           "scan_threshold", "score_maps", "score_statistics", "threshold_from_normal", "training_view", "verdict"]
