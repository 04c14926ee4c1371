"""Anomaly detection: which pixels does a model of normal tissue not explain, and how sure is that?

The VAE's own scores live on the estimator (`score_samples`, `anomaly_score`, `calibrate`,
`predict`), computed by the residual monitor (`monitor`, on the statistics of `mspc`). Here also:
the baselines (`RXDetector`, `PCAMonitor`, `baseline_scores`), the evaluation against ground truth
(`evaluation`) and the scan-level calls (`scans`).
"""

from .baselines import ModelView, PCAMonitor, RXDetector, baseline_scores, training_view
from .evaluation import (
    anomaly_kinds,
    auroc_interval,
    evaluate,
    evaluate_kinds,
    ground_truth_anomaly,
    pixel_groups,
    roc_curves,
    score_maps,
    score_statistics,
    verdict,
)
from .monitor import Monitor
from .protocol import FittedModel
from .scans import design_effect, flagged_fraction, scan_table, scan_threshold, threshold_from_normal

__all__ = ["FittedModel", "ModelView", "Monitor", "PCAMonitor", "RXDetector", "anomaly_kinds", "auroc_interval",
           "baseline_scores", "design_effect", "evaluate", "evaluate_kinds", "flagged_fraction",
           "ground_truth_anomaly", "pixel_groups", "roc_curves", "scan_table", "scan_threshold", "score_maps",
           "score_statistics", "threshold_from_normal", "training_view", "verdict"]
