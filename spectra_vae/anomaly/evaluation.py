"""How well a score separates anomalies: ground truth per anomaly kind, AUROC with intervals over
scans, ROC curves, plain-words verdicts, and per-group score summaries and maps.

`normal_labels` says which labels are normal (default: the demo's background, stroma and
epithelium); every other label is an anomaly kind of its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from ..core.errors import DataError
from ..io.dataset import SpectralDataset
from ..io.demo import NORMAL_LABELS


def label_codes(dataset: SpectralDataset, normal_labels: Sequence[str]) -> tuple[list[int], dict[str, int]]:
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
    normal, _ = label_codes(dataset, normal_labels)
    truth = (~np.isin(labels, normal)).astype(int)
    truth[labels < 0] = -1
    return truth


def anomaly_kinds(dataset: SpectralDataset, normal_labels: Sequence[str] = NORMAL_LABELS) -> dict[str, np.ndarray]:
    """Per anomalous label present: a truth array (1 that kind, 0 normal, -1 other kinds or unlabelled)."""
    labels = dataset.labels
    if labels is None or not dataset.label_names:
        return {}
    normal, kinds = label_codes(dataset, normal_labels)
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
    """Percentile interval of the AUROC from a cluster bootstrap over groups (scans): pixels of one scan
    are correlated, so whole scans are resampled, stratified: the scans that hold anomalous pixels and
    those that do not are each resampled with replacement, as many as there are, so every resample
    holds both classes. NaN when fewer than two scans hold anomalous pixels (the interval would be a
    spread within one scan, not over scans) or fewer than two hold normal ones."""
    rng = np.random.default_rng(seed)
    ids = np.unique(groups)
    members = {g: np.flatnonzero(groups == g) for g in ids}
    positive = np.array([bool((truth[members[g]] == 1).any()) for g in ids])
    negative = np.array([bool((truth[members[g]] == 0).any()) for g in ids])
    if positive.sum() < 2 or negative.sum() < 2:
        return float("nan"), float("nan")
    strata = [ids[positive], ids[~positive]]
    values = []
    for _ in range(n_boot):
        picked = [g for stratum in strata if len(stratum) for g in rng.choice(stratum, len(stratum), replace=True)]
        take = np.concatenate([members[g] for g in picked])
        y = truth[take]
        if y.min() != y.max():
            values.append(roc_auc_score(y, score[take]))
    if len(values) < n_boot // 2:
        return float("nan"), float("nan")
    lo, hi = np.percentile(values, [50 * (1 - level), 100 - 50 * (1 - level)])
    return float(lo), float(hi)


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """The exact (Clopper & Pearson 1934) interval of a proportion, k successes of n."""
    if n <= 0:
        return float("nan"), float("nan")
    a = (1 - level) / 2
    lo = 0.0 if k == 0 else float(stats.beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(1 - a, k + 1, n - k))
    return lo, hi


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
        if not np.isfinite([lo[vae_name], hi[vae_name], lo[rival], hi[rival]]).all():
            text += " No interval over scans: fewer than two scans hold this kind."
        elif max(lo[vae_name], lo[rival]) <= min(hi[vae_name], hi[rival]):
            text += " Their intervals over scans overlap, so other scans may rank the two the other way."
    return text




def pp_curve(log_p: np.ndarray, smallest: float = 1e-4, points: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """(p, observed share of `log_p` at most log p) on a log grid from `smallest` to 1: a P–P check of
    tail probabilities on normal pixels (a tail that holds gives the diagonal)."""
    grid = np.geomspace(smallest, 1.0, points)
    lp = np.sort(np.asarray(log_p, dtype=np.float64))
    return grid, np.searchsorted(lp, np.log(grid), side="right") / max(len(lp), 1)


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


def flagged_by_label(frames: Mapping[str, pd.DataFrame], datasets: Mapping[str, SpectralDataset],
                     normal_labels: Sequence[str] = NORMAL_LABELS) -> pd.DataFrame:
    """Where the flags fall: per set of scans and ground-truth label, its tissue pixels (the frames of a
    calibrated model's `score_samples`, with `tissue` and `flagged`) and the share flagged. For a normal
    label that share is the false-positive rate of that kind of tissue; for an anomaly kind, the share of
    its pixels found. Pixels of one scan are not independent, so no interval is given: the scan-level
    calls carry the uncertainty over scans. Empty when no set has labels."""
    rows = []
    for name, frame in frames.items():
        ds = datasets[name]
        if ds.labels is None or not ds.label_names or "flagged" not in frame:
            continue
        normal, _ = label_codes(ds, normal_labels)
        tissue, flagged, labels = frame["tissue"].to_numpy(), frame["flagged"].to_numpy(), ds.labels
        for code, label in enumerate(ds.label_names):
            here = tissue & (labels == code)
            if here.any():
                rows.append({"scans": name, "label": label, "normal": code in normal, "tissue pixels": int(here.sum()),
                             "flagged": float(flagged[here].mean())})
    columns = ["scans", "label", "normal", "tissue pixels", "flagged"]
    return pd.DataFrame(rows, columns=columns).set_index(["scans", "label"])


def score_maps(dataset: SpectralDataset, values: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    """One image per scan of a per-pixel value, blank (NaN) outside the tissue `mask`."""
    masked = np.where(mask, np.asarray(values, dtype=float), np.nan)
    return {name: dataset.image(masked, k) for k, name in enumerate(dataset.scans)}

