"""Flags and scan-level calls: the flagged fraction of each scan, and the limit above which it is abnormal.

A scan's flagged fraction varies for two reasons: flags of neighbouring pixels cluster within a
scan (`design_effect`, over tiles of normal tissue), and normal scans differ from each other
(patients, sections, thickness). `ScanLimit` models both, as batch-wise MSPC sets a limit on a
batch-level statistic from its distribution over normal batches (Nomikos & MacGregor 1995): each
normal calibration scan's flagged fraction, judged by a threshold that scan did not set, is taken
on the variance-stabilising scale asin √p, where its sampling variance within a scan of n pixels is
design effect / 4n whatever p is; there it is a random effect around a mean (DerSimonian & Laird
1986), and a new scan's limit is the one-sided prediction limit of that distribution (Student's t
with one degree of freedom per calibration scan beyond the first), widened by the scan's own
sampling variance at its size. It assumes the calibration scans are exchangeable with new normal
scans (drawn from the same patients' population, processed alike) and their effects roughly
normal on that scale.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ..core.errors import DataError
from ..io.dataset import SpectralDataset

SCAN_TILE = 16  # pixels: tiles over which the spatial clustering of flags is measured
MIN_SCANS_FOR_SPREAD = 3  # normal scans needed to estimate how scans differ (2 degrees of freedom)


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


def tile_dispersion(coords: np.ndarray, flags: np.ndarray, rate: float, tile: int = SCAN_TILE) -> float:
    """Pearson's dispersion of the flagged fraction over `tile`×`tile` tiles of (scan, row, col)
    `coords` around `rate` (≥ 1; 1 when fewer than two tiles are at least a quarter full)."""
    coords = np.asarray(coords)
    key = coords[:, 0] * 1_000_000 + (coords[:, 1] // tile) * 1000 + coords[:, 2] // tile
    _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=np.asarray(flags, dtype=float))
    big = counts >= tile * tile // 4
    if big.sum() < 2 or not 0 < rate < 1:
        return 1.0
    n, x = counts[big], sums[big]
    return max(1.0, float(np.mean((x - n * rate) ** 2 / (n * rate * (1 - rate)))))


def design_effect(dataset: SpectralDataset, flags: np.ndarray, mask: np.ndarray, rate: float,
                  tile: int = SCAN_TILE) -> float:
    """How much more flagged fractions vary than independent pixels would (≥ 1).

    Flags of neighbouring pixels cluster. Over tiles of `tile`×`tile` pixels of normal tissue,
    the variance of the flagged fraction around `rate` is compared with the binomial
    rate·(1 − rate)/n (Pearson's dispersion); a scan's flagged fraction then has variance
    design effect × rate·(1 − rate)/n_tissue within the scan.
    """
    return tile_dispersion(dataset.coords[mask], np.asarray(flags)[mask], rate, tile)


@dataclass(frozen=True)
class ScanLimit:
    """The flagged fraction above which a scan is called abnormal, at scan-level false-positive rate `level`.

    On the scale asin √p a normal scan's flagged fraction is `mean` + a between-scan effect of variance
    `between` + its sampling error within the scan, of variance design / 4n for n tissue pixels.
    The limit adds the uncertainty of `mean` (`mean_var`) and takes Student's t with `df` degrees of
    freedom (None: the normal quantile, for the one-scan fallback whose `between` is unknown, 0).
    """

    mean: float
    between: float
    mean_var: float
    design: float
    df: int | None
    level: float
    scans: int

    def spread(self, n_tissue: int) -> float:
        """The standard deviation of a new normal scan's asin √(flagged fraction) around `mean`."""
        return math.sqrt(self.between + self.mean_var + self.design / (4 * max(n_tissue, 1)))

    def quantile(self, level: float) -> float:
        """The upper `level` point of the prediction distribution (standardised)."""
        return float(stats.norm.isf(level) if self.df is None else stats.t.isf(level, self.df))

    def limit(self, n_tissue: int) -> float:
        return _back(self.mean + self.quantile(self.level) * self.spread(n_tissue))

    def interval(self, n_tissue: int, coverage: float = 0.9) -> tuple[float, float]:
        """The two-sided `coverage` prediction interval of a new normal scan's flagged fraction."""
        half = self.quantile((1 - coverage) / 2) * self.spread(n_tissue)
        return _back(self.mean - half), _back(self.mean + half)

    @property
    def spread_known(self) -> bool:
        """Whether the limit includes how normal scans differ (from at least `MIN_SCANS_FOR_SPREAD`)."""
        return self.df is not None

    @classmethod
    def within_one_scan(cls, rate: float, design: float, level: float = 0.01) -> ScanLimit:
        """The limit from the nominal `rate` and within-scan clustering alone: normal scans' differences
        are not in it (what one calibration scan, or two, can give)."""
        return cls(math.asin(math.sqrt(rate)), 0.0, 0.0, design, None, level, 1)

    @classmethod
    def fit(cls, flagged: np.ndarray, tissue: np.ndarray, design: float, level: float = 0.01) -> ScanLimit:
        """Random effects over normal scans: `flagged`/`tissue` pixels of each, each judged by a
        threshold it did not set (DerSimonian–Laird on asin √p)."""
        x, n = np.asarray(flagged, dtype=float), np.asarray(tissue, dtype=float)
        k = len(x)
        if k < MIN_SCANS_FOR_SPREAD:
            raise ValueError(f"the spread between scans needs at least {MIN_SCANS_FOR_SPREAD} normal scans")
        y = np.arcsin(np.sqrt(np.clip(x / np.maximum(n, 1), 0.0, 1.0)))
        v = design / (4 * np.maximum(n, 1))
        w = 1 / v
        fixed = float((w * y).sum() / w.sum())
        q = float((w * (y - fixed) ** 2).sum())
        between = max(0.0, (q - (k - 1)) / float(w.sum() - (w**2).sum() / w.sum()))
        w_star = 1 / (v + between)
        mean = float((w_star * y).sum() / w_star.sum())
        return cls(mean, between, float(1 / w_star.sum()), design, k - 1, level, k)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ScanLimit:
        return cls(float(d["mean"]), float(d["between"]), float(d["mean_var"]), float(d["design"]),
                   None if d.get("df") is None else int(d["df"]), float(d["level"]), int(d["scans"]))


def _back(y: float) -> float:
    """sin² y, the fraction back from the asin √p scale (clipped to [0, 1])."""
    return float(math.sin(min(max(y, 0.0), math.pi / 2)) ** 2)


def scan_threshold(n_tissue: int, rate: float, design: float, level: float = 0.99) -> float:
    """The flagged fraction above which a scan of `n_tissue` tissue pixels is called abnormal when only
    within-scan clustering is known: the nominal `rate` plus the one-sided `level` quantile of its
    spread (`ScanLimit.within_one_scan`; with several normal scans `ScanLimit.fit` adds their spread)."""
    return ScanLimit.within_one_scan(rate, design, 1 - level).limit(n_tissue)


def scan_table(dataset: SpectralDataset, scores: np.ndarray, flags: np.ndarray, mask: np.ndarray,
               limit: ScanLimit) -> pd.DataFrame:
    """Per scan: tissue pixels, flagged fraction, the 99th percentile pixel score, its limit and the
    call (flagged fraction above `limit.limit(tissue pixels)`)."""
    scan_of = dataset.scan_of()
    rows = []
    for k, name in enumerate(dataset.scans):
        sel = (scan_of == k) & mask
        n = int(sel.sum())
        frac = float(np.asarray(flags)[sel].mean()) if n else float("nan")
        threshold = limit.limit(n)
        rows.append({"scan": name, "tissue pixels": n, "flagged fraction": frac, "scan threshold": threshold,
                     "score p99": float(np.percentile(scores[sel], 99)) if n else float("nan"),
                     "abnormal": bool(n and frac > threshold)})
    return pd.DataFrame(rows).set_index("scan")
