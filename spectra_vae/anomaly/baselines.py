"""Anomaly detection: which pixels does a model of normal tissue not explain, and how sure is that?

The VAE's own scores live on the estimator (`score_samples`, `anomaly_score`, `calibrate`,
`predict`). Here are the baselines a chemometrician would run instead, fitted on exactly the
pixels and the preprocessing the VAE trains on — the RX detector (Reed & Yu 1990) with a
Ledoit–Wolf covariance, and PCA monitoring with Hotelling's T² and Q — and the evaluation:
ground truth per anomaly kind (`normal_labels` says which labels are normal), AUROC with
confidence intervals from a bootstrap over scans, calibrated flags and scan-level answers.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from ..core.errors import DataError
from ..estimator.vae import SpectraVAE
from ..io.dataset import SpectralDataset
from ..io.load import as_dataset
from .mspc import Moments, ScaledChi2, Subspace, fisher, ledoit_wolf

NORMAL_LABELS = ("background", "stroma", "epithelium")
SCAN_TILE = 16  # pixels: tiles over which the spatial clustering of flags is measured


class ModelView:
    """Pixels as the VAE's encoder sees them: preprocessed by its pipeline and normalised."""

    def __init__(self, vae: SpectraVAE, data: Any) -> None:
        self.dataset = vae.prepare(data)
        self.normaliser = vae.normaliser_

    def __len__(self) -> int:
        return len(self.dataset)

    def iter_chunks(self) -> Iterator[np.ndarray]:
        for chunk in self.dataset.iter_chunks():
            yield self.normaliser.transform(chunk).astype(np.float64)


def training_view(vae: SpectraVAE, normal_train: Any) -> ModelView:
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
        moments = Moments.of(_chunks(data))
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
        for chunk in _chunks(data):
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
        moments = Moments.of(_chunks(data))
        self.subspace_ = Subspace.fit(moments, self.n_components)
        self.n_samples_ = moments.n
        cal = self.statistics(data if calibration is None else calibration)
        self.tails_ = {k: ScaledChi2.fit(cal[k]) for k in ("t2", "q")}
        return self

    def statistics(self, data: Any) -> dict[str, np.ndarray]:
        parts = [self.subspace_.statistics(c) for c in _chunks(data)]
        return {k: np.concatenate([p[k] for p in parts]) if parts else np.zeros(0) for k in ("t2", "q")}

    def score_samples(self, data: Any) -> np.ndarray:
        s = self.statistics(data)
        return fisher(self.tails_[k].log_sf(s[k]) for k in ("t2", "q"))


def _chunks(data: Any) -> Iterator[np.ndarray]:
    if isinstance(data, ModelView):
        yield from data.iter_chunks()
    elif isinstance(data, np.ndarray):
        yield np.asarray(data, dtype=np.float64)
    else:
        yield from as_dataset(data).iter_chunks(dtype=np.float64)


def baseline_scores(vae: SpectraVAE, normal_train: Any, data: Any, normal_calibration: Any = None,
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


# -- ground truth ----------------------------------------------------------------------------
def _label_codes(dataset: SpectralDataset, normal_labels: Sequence[str]) -> tuple[list[int], dict[str, int]]:
    names = list(dataset.label_names or [])
    unknown = [n for n in normal_labels if n not in names]
    if unknown:
        raise DataError(f"{dataset.source or 'data'}: normal_labels {unknown} are not among the label names "
                        f"{names}")
    normal = [names.index(n) for n in normal_labels]
    kinds = {n: i for i, n in enumerate(names) if n not in normal_labels}
    return normal, kinds


def ground_truth_anomaly(dataset: SpectralDataset, normal_labels: Sequence[str] = NORMAL_LABELS) -> np.ndarray | None:
    """Per pixel: 1 where the label is not one of `normal_labels`, 0 where it is, -1 unlabelled; None if no labels."""
    labels = dataset.labels
    if labels is None or not dataset.label_names:
        return None
    normal, _ = _label_codes(dataset, normal_labels)
    truth = (~np.isin(labels, normal)).astype(int)
    truth[labels < 0] = -1
    return truth


def anomaly_kinds(dataset: SpectralDataset, normal_labels: Sequence[str] = NORMAL_LABELS) -> dict[str, np.ndarray]:
    """Per anomalous label present: a truth array (1 that kind, 0 normal, -1 other kinds or unlabelled)."""
    labels = dataset.labels
    if labels is None or not dataset.label_names:
        return {}
    normal, kinds = _label_codes(dataset, normal_labels)
    is_normal = np.isin(labels, normal)
    out = {}
    for name, code in kinds.items():
        if (labels == code).any():
            truth = np.full(len(labels), -1)
            truth[is_normal] = 0
            truth[labels == code] = 1
            out[name] = truth
    return out


# -- evaluation ------------------------------------------------------------------------------
def auroc_interval(truth: np.ndarray, score: np.ndarray, groups: np.ndarray, n_boot: int = 1000,
                   seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the AUROC from a bootstrap over groups (scans): pixels of one scan
    are correlated, so whole scans are resampled. NaN where too few groups hold both classes."""
    rng = np.random.default_rng(seed)
    ids = np.unique(groups)
    members = {g: np.flatnonzero(groups == g) for g in ids}
    values = []
    for _ in range(n_boot):
        take = np.concatenate([members[g] for g in rng.choice(ids, len(ids), replace=True)])
        y = truth[take]
        if y.min() != y.max():
            values.append(roc_auc_score(y, score[take]))
    if len(values) < n_boot // 2:
        return float("nan"), float("nan")
    lo, hi = np.percentile(values, [50 * (1 - level), 100 - 50 * (1 - level)])
    return float(lo), float(hi)


def evaluate(scores: Mapping[str, np.ndarray], truth: np.ndarray, mask: np.ndarray | None = None,
             groups: np.ndarray | None = None, n_boot: int = 0, seed: int = 0) -> pd.DataFrame:
    """AUROC (with a bootstrap interval over `groups` when `n_boot` > 0) and average precision of
    each score against ground truth (1 anomalous, 0 normal; -1 ignored), within `mask`."""
    keep = truth >= 0 if mask is None else (truth >= 0) & mask
    y = truth[keep]
    if y.size == 0 or y.min() == y.max():
        raise DataError("ground truth holds only one class among the pixels evaluated")
    rows = []
    for name, s in scores.items():
        s = np.asarray(s)[keep]
        row = {"score": name, "AUROC": roc_auc_score(y, s), "average precision": average_precision_score(y, s),
               "anomalous pixels": int(y.sum()), "normal pixels": int((y == 0).sum())}
        if n_boot and groups is not None:
            row["AUROC low"], row["AUROC high"] = auroc_interval(y, s, np.asarray(groups)[keep], n_boot, seed)
        rows.append(row)
    return pd.DataFrame(rows).set_index("score").sort_values("AUROC", ascending=False)


def evaluate_kinds(scores: Mapping[str, np.ndarray], dataset: SpectralDataset, mask: np.ndarray | None = None,
                   normal_labels: Sequence[str] = NORMAL_LABELS, n_boot: int = 0, seed: int = 0) -> pd.DataFrame:
    """`evaluate` for each anomaly kind apart (its pixels against the normal ones), one row per kind and score."""
    tables = {kind: evaluate(scores, truth, mask, dataset.scan_of(), n_boot, seed)
              for kind, truth in anomaly_kinds(dataset, normal_labels).items()
              if ((truth == 1) & (True if mask is None else mask)).any()}
    if not tables:
        raise DataError(f"{dataset.source or 'data'}: no labelled anomalous pixels "
                        f"(normal labels: {list(normal_labels)})")
    return pd.concat(tables, names=["kind", "score"])


def roc_curves(scores: Mapping[str, np.ndarray], truth: np.ndarray, mask: np.ndarray | None = None
               ) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """{name: (false-positive rate, true-positive rate, AUROC)}."""
    keep = truth >= 0 if mask is None else (truth >= 0) & mask
    out = {}
    for name, s in scores.items():
        fpr, tpr, _ = roc_curve(truth[keep], np.asarray(s)[keep])
        out[name] = (fpr, tpr, float(roc_auc_score(truth[keep], np.asarray(s)[keep])))
    return out


def verdict(table: pd.DataFrame, vae_name: str = "VAE") -> str:
    """Plain sentences: per anomaly kind (or for one table), does the VAE separate best, or which
    baseline beats it and by how much; a tie when the two agree to the three decimals shown, and
    a caution when their bootstrap intervals over scans overlap."""
    if isinstance(table.index, pd.MultiIndex):
        return " ".join(f"{kind}: {verdict(table.loc[kind], vae_name)}" for kind in table.index.unique(0))
    vae_auc = float(table.loc[vae_name, "AUROC"])
    others = table["AUROC"].drop(vae_name)
    rival = str(others.idxmax())
    rival_auc = float(others.max())
    if round(vae_auc, 3) == round(rival_auc, 3):
        return f"A tie: the VAE and {rival} both reach AUROC {vae_auc:.3f}."
    if vae_auc > rival_auc:
        text = f"The VAE separates best: AUROC {vae_auc:.3f} against {rival_auc:.3f} for the best baseline, {rival}."
    else:
        text = (f"A baseline wins: {rival} reaches AUROC {rival_auc:.3f}, the VAE {vae_auc:.3f}. On these data "
                f"the simpler method separates better.")
    if {"AUROC low", "AUROC high"} <= set(table.columns):
        lo, hi = table["AUROC low"], table["AUROC high"]
        if max(lo[vae_name], lo[rival]) <= min(hi[vae_name], hi[rival]):
            text += " Their intervals over scans overlap, so other scans may rank the two the other way."
    return text


# -- thresholds, flags, scans ----------------------------------------------------------------
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


def score_statistics(groups: Mapping[str, pd.DataFrame], columns: Sequence[str]) -> pd.DataFrame:
    """min, max, mean and quantiles of each score column, one column block per pixel group."""
    out = {}
    for group, frame in groups.items():
        for col in columns:
            out[(col, group)] = frame[col].describe(percentiles=[0.05, 0.25, 0.5, 0.75, 0.95, 0.99]).drop("count")
    return pd.DataFrame(out)


def pixel_groups(frames: Mapping[str, pd.DataFrame], datasets: Mapping[str, SpectralDataset],
                 normal_labels: Sequence[str] = NORMAL_LABELS) -> dict[str, pd.DataFrame]:
    """Tissue pixels of each set of scans, split by ground truth where there is any:
    "<set>: normal tissue" and "<set>: <kind>" per anomaly kind (the frames carry a `tissue` column)."""
    groups = {}
    for name, frame in frames.items():
        ds, tissue = datasets[name], frame["tissue"].to_numpy()
        kinds = anomaly_kinds(ds, normal_labels)
        if not kinds:
            groups[name] = frame[tissue]
            continue
        normal = next(iter(kinds.values())) == 0
        groups[f"{name}: normal tissue"] = frame[tissue & normal]
        for kind, truth in kinds.items():
            groups[f"{name}: {kind}"] = frame[tissue & (truth == 1)]
    return {k: g for k, g in groups.items() if len(g)}


def score_maps(dataset: SpectralDataset, values: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    """One image per scan of a per-pixel value, blank (NaN) outside the tissue `mask`."""
    masked = np.where(mask, np.asarray(values, dtype=float), np.nan)
    return {name: dataset.image(masked, k) for k, name in enumerate(dataset.scans)}
