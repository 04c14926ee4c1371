"""Runs side by side: held-out figures of each run, one table of many runs, the best run per criterion.

Every figure is measured on the run's own recorded held-out scans (its test split, whole scans),
in the space the model reconstructs (after its preprocessing), with PCA at as many components
fitted on the same training pixels beside it. `score` (negative RMSE in absorbance units) is the
figure comparable across preprocessing.
"""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..anomaly.evaluation import anomaly_kinds, evaluate, ground_truth_anomaly
from ..core.errors import DataError
from ..core.files import write_json_atomic
from ..estimator.vae import SpectraVAE
from ..views.analysis import compare_with_pca
from . import runs

ACTIVE_KL = 0.01  # nats: a latent dimension whose mean KL over held-out pixels exceeds this is in use
FLAG_RATE = 0.01  # the false-positive rate the flags are calibrated to (a new normal scan's, on average)
# criterion → whether higher is better; the best run per criterion is picked by these
CRITERIA = {"rmse": False, "rmse_vs_pca": False, "score": True, "auroc": True}
_NOT_PARAMS = {"created", "spectra_vae_version", "resumed", "device", "verbose"}


def latent_kl_per_dimension(vae: Any, data: Any) -> np.ndarray:
    """Mean KL(q(z|x) ‖ N(0, 1)) of each latent dimension over the pixels of `data` (nats)."""
    mu, logvar = vae.encode(data)
    keep = np.isfinite(mu).all(axis=1)
    kl = 0.5 * (mu[keep].astype(np.float64) ** 2 + np.exp(logvar[keep]) - 1.0 - logvar[keep])
    return kl.mean(axis=0) if len(kl) else np.zeros(mu.shape[1])


def calibrated(run: runs.Run) -> SpectraVAE | None:
    """The run's model calibrated on its normal validation scans at `FLAG_RATE` by the rule of
    `SpectraVAE.calibrate` (cross-conformal over the scans, the scan-level limit from their spread), as a
    copy: the run's own model is left as it was. None where the run has too few validation pixels. With
    fewer than three validation scans `calibrate` warns what the threshold cannot promise, and
    `anomaly_figures` records how many scans set it."""
    val = run.splits.validation
    if val is None or not len(val):
        return None
    model = copy.copy(run.vae)  # calibrate replaces monitor_ on the copy; weights and the rest are shared
    try:
        return model.calibrate(val, false_positive_rate=FLAG_RATE, normal_labels=tuple(run.normal_labels))
    except DataError:
        return None


def anomaly_figures(run: runs.Run) -> dict[str, float]:
    """Where the abnormal scans have labels: AUROC of the VAE's anomaly score for all anomalies and per
    kind (`auroc_<kind>`), over the tissue of the abnormal scans; and, calibrated at `FLAG_RATE` on the
    validation scans, the share of anomalous and of normal tissue pixels flagged there and of the
    normal test scans' tissue (near `FLAG_RATE` on average over runs when three or more validation scans
    set the threshold: `calibration_scans`)."""
    vae, ab = run.vae, run.abnormal
    truth = ground_truth_anomaly(ab, run.normal_labels) if ab is not None else None
    if ab is None or truth is None:
        return {}
    mask = vae.tissue_mask(ab)
    if not ((truth[mask] == 1).any() and (truth[mask] == 0).any()):
        return {}
    scores = vae.anomaly_score(ab)
    out = {"auroc": float(evaluate({"VAE": scores}, truth, mask).loc["VAE", "AUROC"])}
    for kind, kind_truth in anomaly_kinds(ab, run.normal_labels).items():
        if (kind_truth[mask] == 1).any():
            out[f"auroc_{kind}"] = float(evaluate({"VAE": scores}, kind_truth, mask).loc["VAE", "AUROC"])
    model = calibrated(run)
    if model is not None:
        flagged = model.predict(ab).astype(bool)
        test = run.splits.test
        out |= {"flag_rate_anomalous": float(flagged[mask & (truth == 1)].mean()),
                "flag_rate_normal_tissue": float(flagged[mask & (truth == 0)].mean()),
                "flag_rate_normal_test": float(model.predict(test)[vae.tissue_mask(test)].mean())}
    return out


def score_run(run_dir: str | os.PathLike) -> dict[str, float]:
    """Held-out figures of one run, written to its scores.json and returned."""
    run = runs.open_run(run_dir)
    vae, splits = run.vae, run.splits
    table = compare_with_pca(vae, splits.train, splits.test)
    kl = latent_kl_per_dimension(vae, splits.test)
    try:
        score = vae.score(splits.test)
    except DataError:  # preprocessing that cannot be undone: no figure in absorbance units
        score = math.nan
    figures = {"rmse": float(table.loc["VAE", "rmse"]), "pca_rmse": float(table.loc["PCA", "rmse"]),
               "rmse_vs_pca": float(table.loc["VAE", "rmse"] / table.loc["PCA", "rmse"]),
               "score": float(score), "kl": float(kl.sum()), "active_dims": int((kl > ACTIVE_KL).sum()),
               "epochs_trained": len(vae.history), "best_epoch": int(vae.best_epoch_),
               "test_pixels": len(splits.test)}
    figures |= anomaly_figures(run)
    write_json_atomic(run.path / runs.SCORES, figures)
    return figures


def find_runs(run_dir: str | os.PathLike = "", run_list: str = "") -> list[Path]:
    """The runs to compare: those listed (comma-separated), else `run_dir` if it is a run, else its runs."""
    if run_list.strip():
        folders = [Path(p.strip()).expanduser() for p in run_list.split(",") if p.strip()]
        bad = [str(p) for p in folders if not runs.is_run(p)]
        if bad:
            raise DataError(f"parameter runs: not run folders: {bad}")
        return folders
    folder = runs.find_run(run_dir)
    if runs.is_run(folder):
        return [folder]
    found = sorted(p for p in folder.iterdir() if p.is_dir() and runs.is_run(p)) if folder.is_dir() else []
    if not found:
        raise DataError(f"parameter run_dir: {folder} is not a run and holds no runs")
    return found


def collect(folders: list[Path]) -> pd.DataFrame:
    """One row per run: its parameters and held-out figures (scores.json, computed where missing)."""
    rows = []
    for folder in folders:
        params, _ = runs.read_record(folder)
        scores_path = folder / runs.SCORES
        figures = json.loads(scores_path.read_text()) if scores_path.exists() else score_run(folder)
        flat = {k: (",".join(map(str, v)) if isinstance(v, list) else v) for k, v in params.items()
                if k not in _NOT_PARAMS}
        rows.append({"run": folder.name, **flat, **figures, "path": str(folder)})
    return pd.DataFrame(rows).set_index("run")


def varying(table: pd.DataFrame) -> list[str]:
    """The parameter columns whose value differs between runs (what a sweep varied)."""
    figures = {"rmse", "pca_rmse", "rmse_vs_pca", "score", "kl", "active_dims", "epochs_trained", "best_epoch",
               "test_pixels", "auroc", "flag_rate_anomalous", "flag_rate_normal_tissue", "flag_rate_normal_test",
               "calibration_scans", "path"}
    return [c for c in table.columns if c not in figures and not c.startswith("auroc_")
            and table[c].astype(str).nunique() > 1]


def best_runs(table: pd.DataFrame) -> pd.DataFrame:
    """Per criterion (lowest held-out RMSE, RMSE relative to PCA, highest score, AUROC) the best run."""
    rows = []
    for column, higher in CRITERIA.items():
        if column not in table or table[column].isna().all():
            continue
        best = table[column].idxmax() if higher else table[column].idxmin()
        rows.append({"criterion": column, "better": "higher" if higher else "lower", "best run": best,
                     "value": table.loc[best, column]})
    return pd.DataFrame(rows).set_index("criterion")
