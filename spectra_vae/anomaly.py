"""Anomaly detection: which pixels does a model of normal tissue not explain?

Scores (higher = more anomalous) from the VAE, and two baselines on the same pixels: PCA
reconstruction error with as many components as latent dimensions, and the RX detector
(Mahalanobis distance to the normal training pixels' mean and covariance; Reed & Yu, 1990).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from .analysis import fit_pca, pca_errors
from .data import SpectralDataset, as_dataset
from .estimator import SpectraVAE


class RXDetector:
    """Squared Mahalanobis distance to the mean and covariance of (normal) training pixels.

    The covariance is accumulated in one streamed pass and regularised by `ridge` × its mean
    eigenvalue, so near-singular spectral covariances stay invertible.
    """

    def __init__(self, ridge: float = 1e-6) -> None:
        self.ridge = ridge

    def fit(self, data: Any) -> RXDetector:
        ds = as_dataset(data)
        n, s, ss = 0, None, None
        for chunk in ds.iter_chunks(dtype=np.float64):
            s = chunk.sum(0) if s is None else s + chunk.sum(0)
            ss = chunk.T @ chunk if ss is None else ss + chunk.T @ chunk
            n += len(chunk)
        if n < 2 or s is None or ss is None:
            raise ValueError("RX needs at least two training pixels")
        self.mean_ = s / n
        cov = (ss - n * np.outer(self.mean_, self.mean_)) / (n - 1)
        cov += self.ridge * np.trace(cov) / cov.shape[0] * np.eye(cov.shape[0])
        self.cholesky_ = np.linalg.cholesky(cov)
        return self

    def score_samples(self, data: Any) -> np.ndarray:
        """Squared Mahalanobis distance per pixel, `(n_pixels,)`."""
        out = []
        for chunk in as_dataset(data).iter_chunks(dtype=np.float64):
            w = np.linalg.solve(self.cholesky_, (chunk - self.mean_).T)
            out.append((w**2).sum(0))
        return np.concatenate(out) if out else np.zeros(0)


def baseline_scores(vae: SpectraVAE, normal_train: Any, data: Any,
                    vae_scores: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """VAE, PCA and RX scores of the pixels of `data`, the baselines fitted on `normal_train`.

    `vae_scores`: the VAE's anomaly scores of `data` when already computed.
    """
    train, ds = vae.prepare(normal_train), vae.prepare(data)  # baselines see what the VAE sees
    pca = fit_pca(train, vae.latent_dim, seed=vae.seed)
    pca_err = pca_errors(pca, ds)
    return {
        "VAE": vae.anomaly_score(ds) if vae_scores is None else vae_scores,
        f"PCA ({vae.latent_dim} comp.) error": pca_err,
        "RX (Mahalanobis)": RXDetector().fit(train).score_samples(ds),
    }


def ground_truth_anomaly(dataset: SpectralDataset, anomalous: tuple[str, ...] = ("tumour",)) -> np.ndarray | None:
    """Per pixel: 1 where the label is one of `anomalous`, 0 for other labels, -1 unknown; None if no labels."""
    labels = dataset.labels
    if labels is None or not dataset.label_names:
        return None
    codes = [dataset.label_names.index(a) for a in anomalous if a in dataset.label_names]
    truth = np.isin(labels, codes).astype(int)
    truth[labels < 0] = -1
    return truth


def evaluate(scores: dict[str, np.ndarray], truth: np.ndarray, mask: np.ndarray | None = None) -> pd.DataFrame:
    """AUROC and average precision of each score against ground truth (1 anomalous, 0 normal; -1 ignored)."""
    keep = truth >= 0 if mask is None else (truth >= 0) & mask
    y = truth[keep]
    if y.min() == y.max():
        raise ValueError("ground truth holds only one class among the pixels evaluated")
    rows = [{"score": name, "AUROC": roc_auc_score(y, s[keep]),
             "average precision": average_precision_score(y, s[keep]),
             "anomalous pixels": int(y.sum()), "normal pixels": int((y == 0).sum())} for name, s in scores.items()]
    return pd.DataFrame(rows).set_index("score").sort_values("AUROC", ascending=False)


def roc_curves(scores: dict[str, np.ndarray], truth: np.ndarray, mask: np.ndarray | None = None
               ) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """{name: (false-positive rate, true-positive rate, AUROC)}."""
    keep = truth >= 0 if mask is None else (truth >= 0) & mask
    out = {}
    for name, s in scores.items():
        fpr, tpr, _ = roc_curve(truth[keep], s[keep])
        out[name] = (fpr, tpr, float(roc_auc_score(truth[keep], s[keep])))
    return out


def threshold_from_normal(normal_scores: np.ndarray, quantile: float = 0.99) -> float:
    """The `quantile` of scores on normal validation pixels: about 1 − quantile of normal pixels are flagged."""
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be in (0, 1); got {quantile}")
    return float(np.quantile(normal_scores, quantile))


def flagged_fraction(dataset: SpectralDataset, scores: np.ndarray, threshold: float,
                     mask: np.ndarray | None = None) -> pd.DataFrame:
    """Per scan: tissue pixels, flagged pixels (score > threshold) and the flagged fraction."""
    scan_of = dataset.scan_of()
    mask = np.ones(len(dataset), bool) if mask is None else mask
    rows = []
    for k, name in enumerate(dataset.scans):
        sel = (scan_of == k) & mask
        flagged = int((scores[sel] > threshold).sum())
        rows.append({"scan": name, "tissue pixels": int(sel.sum()), "flagged": flagged,
                     "flagged fraction": flagged / max(int(sel.sum()), 1)})
    return pd.DataFrame(rows).set_index("scan")


def score_statistics(groups: dict[str, pd.DataFrame], columns: tuple[str, ...]) -> pd.DataFrame:
    """min, max, mean and quantiles of each score column, one column block per pixel group."""
    stats = {}
    for group, frame in groups.items():
        for col in columns:
            d = frame[col].describe(percentiles=[0.05, 0.25, 0.5, 0.75, 0.95, 0.99])
            stats[(col, group)] = d.drop("count")
    return pd.DataFrame(stats)


def verdict(table: pd.DataFrame, vae_name: str = "VAE") -> str:
    """One plain sentence: does the VAE separate best, or which baseline beats it and by how much."""
    best = table["AUROC"].idxmax()
    vae_auc = float(table.loc[vae_name, "AUROC"])
    if best == vae_name:
        runner = table["AUROC"].drop(vae_name).idxmax()
        return (f"The VAE separates best: AUROC {vae_auc:.3f} against {table.loc[runner, 'AUROC']:.3f} "
                f"for the best baseline, {runner}.")
    return (f"A baseline wins: {best} reaches AUROC {table.loc[best, 'AUROC']:.3f}, the VAE "
            f"{vae_auc:.3f}. On these data the simpler method separates better.")
