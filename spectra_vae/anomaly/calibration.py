"""Calibration that carries to new scans: tails on normal tissue, a threshold judged scan by scan, and
the scan-level limit from how normal scans differ.

A threshold set on the pixels it then judges flags its nominal share of them by construction; a new
patient's scan brings its own differences. So the threshold is cross-conformal over scans: each
normal calibration scan is flagged by a threshold (and tails) fitted on the other scans alone, and
the quantile level of the final threshold is the one at which these held-out scans are flagged at
the requested rate on average (scans weigh equally: a new scan is one draw). Their flagged
fractions are what a new scan can expect, and their spread sets the scan-level limit
(`scans.ScanLimit`). With one calibration scan none of this can be measured: its threshold flags the
requested share of that scan and promises nothing about another (the warning says so); with two,
the threshold is cross-conformal but the scans' spread still unknown.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core.errors import DataError
from ..io.dataset import SpectralDataset
from ..io.demo import NORMAL_LABELS
from .fitted import DERIVED, QIN_LEVEL, Monitor, qin_key
from .mspc import Moments
from .scans import MIN_SCANS_FOR_SPREAD, ScanLimit, tile_dispersion
from .spatial import check_smoothing, smooth_scores
from .tails import JacksonMudholkar, ScaledChi2, Tail, fit_tail, qin_index

MAX_FOLDS = 20  # calibration scans beyond this are grouped into this many folds
PREDICTION_COVERAGE = 0.9  # the interval of a new scan's flagged fraction that calibration reports


def check_rate(value: Any, name: str = "false_positive_rate") -> float:
    """A rate in (0, 0.5) as a float; `DataError` naming `name` otherwise (a threshold flagging half of
    normal tissue or more is no anomaly threshold)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise DataError(f"{name} must be a number in (0, 0.5); got {value!r}")
    v = float(value)
    if not (math.isfinite(v) and 0 < v < 0.5):
        raise DataError(f"{name} must be in (0, 0.5); got {value!r}")
    return v


def complement_eigenvalues(complement: Moments) -> np.ndarray:
    """Eigenvalues of the second moment (about the training residuals' mean) of the residuals outside
    the monitored directions: the λⱼ of Q's distribution."""
    if complement.n == 0 or complement.s2 is None:
        return np.zeros(0)
    return np.clip(np.linalg.eigvalsh(complement.s2 / complement.n), 0.0, None)


def fit_tails(monitor: Monitor, values: dict[str, np.ndarray], eigenvalues: np.ndarray | None = None
              ) -> dict[str, Tail]:
    """Tails of every statistic the monitor computes, of `monitor.tail_kind` (for "jm": Q's from the
    `eigenvalues`, the others by Box's moments; the latent statistic, which can be negative, and the
    derived `subspace`, which has no parametric form, always empirical), and for Qin's combination
    the tail of its index."""
    tails: dict[str, Tail] = {}
    for s in (s for s in monitor.available if s in values and s not in DERIVED):
        kind = monitor.tail_kind
        if s == "latent" or (kind == "jm" and (s != "q" or eigenvalues is None or not len(eigenvalues))):
            kind = "empirical" if s == "latent" else "box"
        tails[s] = fit_tail(values[s], kind, eigenvalues if kind == "jm" else None)
    with_base = copy.copy(monitor)
    with_base.tails = tails
    if "inside" in tails and "t2" in tails:
        tails["subspace"] = fit_tail(with_base.subspace_statistic(values), "empirical")
    if monitor.combination == "qin":
        names = monitor.statistics
        phi = qin_index([with_base.raw(values, s) for s in names], [tails[s].quantile(QIN_LEVEL) for s in names])
        tails[qin_key(names)] = fit_tail(phi, "empirical" if monitor.tail_kind == "empirical" else "box")
    return tails


def q_limits(values: np.ndarray, eigenvalues: np.ndarray, level: float) -> dict[str, float]:
    """Q's limit at `level` by Jackson & Mudholkar and by Box (both from the eigenvalues), Box from the
    values' moments, and the values' own quantile: the check of one against the others."""
    out = {"empirical": float(np.quantile(values, 1 - level)), "box (moments)": ScaledChi2.fit(values).quantile(level)}
    if len(eigenvalues) and eigenvalues.sum() > 0:
        out["jackson-mudholkar"] = JacksonMudholkar.from_eigenvalues(eigenvalues).quantile(level)
        out["box (eigenvalues)"] = ScaledChi2.from_eigenvalues(eigenvalues).quantile(level)
    return out


def _subset(values: dict[str, np.ndarray], keep: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[keep] for k, v in values.items()}


def _folds(scan_ids: np.ndarray) -> np.ndarray:
    """Per pixel its fold: its scan, or with more than `MAX_FOLDS` scans a group of scans (round robin)."""
    return scan_ids % MAX_FOLDS if scan_ids.max() + 1 > MAX_FOLDS else scan_ids


def upper_order_statistic(ordered: np.ndarray, level: float) -> float:
    """The value of sorted `ordered` that `level` of them exceed at most: its ⌈(1 − level)·n⌉-th smallest."""
    return ordered[min(len(ordered) - 1, int(math.ceil((1 - level) * len(ordered))) - 1)]


def tissue_scores(monitor: Monitor, values: dict[str, np.ndarray], coords: np.ndarray) -> np.ndarray:
    """The monitor's score of tissue pixels given as their statistics and (scan, row, col) `coords`,
    averaged over each pixel's tissue neighbours when the monitor smooths (`spatial`)."""
    score = monitor.score(values)
    return score if monitor.smoothing == 1 else smooth_scores(score, coords, np.ones(len(score), bool),
                                                              monitor.smoothing)


def cross_conformal(monitor: Monitor, values: dict[str, np.ndarray], scan_ids: np.ndarray, rate: float,
                    eigenvalues: np.ndarray | None, coords: np.ndarray,
                    counted: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """The quantile level whose threshold, fitted without a scan, flags `rate` of a held-out scan's
    tissue on average over the scans; and each scan's flagged pixels at that level. Only `counted`
    pixels are scores (the others are their neighbours, for smoothing)."""
    keep = np.ones(len(scan_ids), bool) if counted is None else counted
    folds = _folds(scan_ids)
    held: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (others' sorted scores, fold scores, fold scans)
    for f in np.unique(folds):
        inside = folds == f
        m = copy.copy(monitor)
        m.tails = fit_tails(monitor, _subset(values, ~inside), eigenvalues)
        s = tissue_scores(m, values, coords)
        held.append((np.sort(s[~inside & keep]), s[inside & keep], scan_ids[inside & keep]))
    n_scans = int(scan_ids.max()) + 1

    def flagged(level: float) -> np.ndarray:
        counts = np.zeros(n_scans)
        for others, scores, ids in held:
            t = upper_order_statistic(others, level)
            counts += np.bincount(ids, weights=(scores > t).astype(float), minlength=n_scans)
        return counts

    tissue = np.bincount(scan_ids[keep], minlength=n_scans).astype(float)

    def mean_rate(level: float) -> float:
        return float(np.mean(flagged(level) / np.maximum(tissue, 1)))

    lo, hi = math.log(rate / 100), math.log(min(0.5, 20 * rate))
    if mean_rate(math.exp(lo)) > rate:
        hi = lo
    elif mean_rate(math.exp(hi)) < rate:
        lo = hi
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mean_rate(math.exp(mid)) < rate else (lo, mid)
    level = math.exp(hi)
    return level, flagged(level)


def calibrate_values(monitor: Monitor, values: dict[str, np.ndarray], scan_ids: np.ndarray, coords: np.ndarray,
                     rate: float, scan_level: float = 0.01, eigenvalues: np.ndarray | None = None,
                     scan_names: Sequence[str] | None = None, smoothing: int = 1,
                     counted: np.ndarray | None = None) -> Monitor:
    """A copy of `monitor` calibrated on normal tissue pixels given as their statistics `values`, their
    scans (`scan_ids`, 0..k−1) and (scan, row, col) `coords`: tails, the cross-conformal threshold
    flagging `rate` of a new scan on average, and the scan-level limit at `scan_level`. With
    `smoothing` k > 1 the threshold is on the score averaged over each pixel's k×k tissue window.
    `counted` (default: all): the pixels whose scores calibrate; the others only lend their scores to
    their neighbours' windows (a sample's margin)."""
    m = copy.deepcopy(monitor)
    m.smoothing = check_smoothing(smoothing)
    scan_ids = np.asarray(scan_ids, dtype=np.int64)
    keep = np.ones(len(scan_ids), bool) if counted is None else np.asarray(counted, dtype=bool)
    n_scans = int(scan_ids.max()) + 1 if len(scan_ids) else 0
    names = list(scan_names) if scan_names is not None else [str(i) for i in range(n_scans)]
    m.tails = fit_tails(m, values, eigenvalues)
    score = tissue_scores(m, values, coords)[keep]
    tissue = np.bincount(scan_ids[keep], minlength=n_scans).astype(float)
    if n_scans >= 2:
        level, held_flags = cross_conformal(m, values, scan_ids, rate, eigenvalues, coords, keep)
    else:
        level, held_flags = rate, None
    order = np.sort(score)
    m.threshold = float(upper_order_statistic(order, level))
    flags = score > m.threshold
    m.false_positive_rate = rate
    m.design_effect = tile_dispersion(coords[keep], flags, rate)
    spread = held_flags is not None and n_scans >= MIN_SCANS_FOR_SPREAD
    m.scan_limit = (ScanLimit.fit(held_flags, tissue, m.design_effect, scan_level) if spread and held_flags is not None
                    else ScanLimit.within_one_scan(rate, m.design_effect, scan_level))
    m.calibration = {"pixels": int(len(score)), "scans": names, "flagged_fraction": float(flags.mean()),
                     "quantile_level": level, "p_threshold": float(10 ** -m.threshold),
                     "scan_level": scan_level, "spread_between_scans": bool(spread),
                     "tissue_pixels": {n: int(c) for n, c in zip(names, tissue, strict=True)}}
    if held_flags is not None:
        held = held_flags / np.maximum(tissue, 1)
        m.calibration["held_out_fraction"] = {n: float(f) for n, f in zip(names, held, strict=True)}
    if spread:
        m.calibration["expected_fraction"] = list(m.scan_limit.interval(int(np.median(tissue)), PREDICTION_COVERAGE))
    if eigenvalues is not None and "q" in values:
        m.calibration["q_limits"] = q_limits(values["q"][keep], eigenvalues, rate)
    return m


def odd_scans(monitor: Monitor) -> list[str]:
    """Calibration scans flagged above the scan limit fitted on the other calibration scans (with at least
    `MIN_SCANS_FOR_SPREAD` others): scans that may not be normal tissue."""
    held = monitor.calibration.get("held_out_fraction", {})
    counts = monitor.calibration.get("tissue_pixels", {})
    if len(held) <= MIN_SCANS_FOR_SPREAD or monitor.design_effect is None:
        return []
    odd = []
    for name in held:
        others = [s for s in held if s != name]
        limit = ScanLimit.fit(np.array([held[s] * counts[s] for s in others]), np.array([counts[s] for s in others]),
                              monitor.design_effect, float(monitor.calibration["scan_level"]))
        if held[name] > limit.limit(counts[name]):
            odd.append(name)
    return odd


def check_normal(normal: SpectralDataset, normal_labels: Sequence[str] | None) -> None:
    """`DataError` when `normal` holds no pixels, or carries labels of which some are not normal
    (`normal_labels`; default: the demo's background, stroma and epithelium, where those are its labels)."""
    if len(normal) == 0:
        raise DataError(f"{normal.source or 'data'}: no pixels to calibrate on")
    names = list(normal.label_names or [])
    labels = normal.labels
    if labels is None or not names:
        return
    wanted = list(normal_labels) if normal_labels is not None else [n for n in NORMAL_LABELS if n in names]
    if normal_labels is None and len(wanted) < len(NORMAL_LABELS):
        return  # labels of another scheme and no normal_labels given: nothing to check against
    unknown = [n for n in wanted if n not in names]
    if unknown:
        raise DataError(f"{normal.source or 'data'}: normal_labels {unknown} are not among the label names {names}")
    codes = [names.index(n) for n in wanted]
    bad = (labels >= 0) & ~np.isin(labels, codes)
    if bad.any():
        found = sorted({names[c] for c in np.unique(labels[bad])})
        raise DataError(f"{normal.source or 'data'}: calibration needs normal tissue, but {int(bad.sum())} pixels are "
                        f"labelled {found} (normal labels: {wanted}); calibrate on normal scans only")


def one_scan_caution(n_scans: int, rate: float) -> str:
    """What a calibration on fewer than `MIN_SCANS_FOR_SPREAD` normal scans can promise."""
    what = ("The threshold flags {rate:.1%} of that one scan's tissue by construction; how a new normal scan "
            "differs from it is unmeasured, so a new scan's flagged share can lie far from {rate:.1%} either way"
            if n_scans == 1 else
            "Each scan was judged by a threshold the other set, but two scans cannot measure how normal scans "
            "differ")
    return (f"calibrated on {n_scans} normal scan(s). " + what.format(rate=rate) + ", and the scan-level limit "
            f"counts only how flags cluster within a scan. Calibrate on at least {MIN_SCANS_FOR_SPREAD} normal "
            "scans the model did not train on (more is better) for a threshold that carries to new scans.")
