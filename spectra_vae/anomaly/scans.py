"""Thresholds, flags and scan-level calls: the flagged fraction of each scan and whether it is abnormal.

Flags of neighbouring pixels cluster, so a scan's flagged fraction varies more than independent
pixels would; `design_effect` measures how much, over tiles of normal tissue.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from ..core.errors import DataError
from ..io.dataset import SpectralDataset

SCAN_TILE = 16  # pixels: tiles over which the spatial clustering of flags is measured


def threshold_from_normal(normal_scores: np.ndarray, quantile: float = 0.99) -> float:
    """The `quantile` of scores on normal pixels: about 1 − quantile of normal pixels are flagged."""
    if not 0 < quantile < 1:
        raise DataError(f"quantile must be in (0, 1); got {quantile}")
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


def design_effect(dataset: SpectralDataset, flags: np.ndarray, mask: np.ndarray, rate: float,
                  tile: int = SCAN_TILE) -> float:
    """How much more flagged fractions vary than independent pixels would (≥ 1).

    Flags of neighbouring pixels cluster. Over tiles of `tile`×`tile` pixels of normal tissue,
    the variance of the flagged fraction around `rate` is compared with the binomial
    rate·(1 − rate)/n (Pearson's dispersion); a scan's flagged fraction then has variance
    design effect × rate·(1 − rate)/n_tissue.
    """
    coords = dataset.coords
    key = coords[:, 0] * 1_000_000 + (coords[:, 1] // tile) * 1000 + coords[:, 2] // tile
    key, f = key[mask], np.asarray(flags)[mask].astype(float)
    _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=f)
    big = counts >= tile * tile // 4
    if big.sum() < 2:
        return 1.0
    n, x = counts[big], sums[big]
    dispersion = float(np.mean((x - n * rate) ** 2 / (n * rate * (1 - rate))))
    return max(1.0, dispersion)


def scan_threshold(n_tissue: int, rate: float, design: float, level: float = 0.99) -> float:
    """The flagged fraction above which a scan of `n_tissue` tissue pixels is called abnormal:
    the nominal `rate` plus the one-sided `level` quantile of its spread on normal tissue."""
    sd = np.sqrt(design * rate * (1 - rate) / max(n_tissue, 1))
    return float(rate + stats.norm.ppf(level) * sd)


def scan_table(dataset: SpectralDataset, scores: np.ndarray, flags: np.ndarray, mask: np.ndarray,
               rate: float, design: float) -> pd.DataFrame:
    """Per scan: tissue pixels, flagged fraction, the 99th percentile pixel score, and the call
    (flagged fraction above `scan_threshold`)."""
    scan_of = dataset.scan_of()
    rows = []
    for k, name in enumerate(dataset.scans):
        sel = (scan_of == k) & mask
        n = int(sel.sum())
        frac = float(np.asarray(flags)[sel].mean()) if n else float("nan")
        limit = scan_threshold(n, rate, design)
        rows.append({"scan": name, "tissue pixels": n, "flagged fraction": frac, "scan threshold": limit,
                     "score p99": float(np.percentile(scores[sel], 99)) if n else float("nan"),
                     "abnormal": bool(n and frac > limit)})
    return pd.DataFrame(rows).set_index("scan")

