"""The fitted anomaly monitor as it is kept: its residual subspace, latent density, statistics, tails,
how they combine into one score, and its calibration (see `monitor` for what each statistic means).

Everything here is plain state and arithmetic on per-pixel statistics, so it serialises to plain
numbers (`Monitor.to_dict`, loadable with `torch.load(weights_only=True)`) and scores without a model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.errors import DataError
from .latent import LatentDensity
from .mspc import Subspace
from .scans import ScanLimit
from .spatial import check_smoothing
from .tails import (
    COMBINATIONS,
    TAIL_KINDS,
    Tail,
    chi2_log_sf,
    log_fisher_p,
    log_min_p,
    qin_index,
    tail_from_dict,
    to_score,
)

RESIDUAL_STATISTICS = ("t2", "q", "inside")
DERIVED = ("subspace",)  # computed from the other statistics' tails
STATISTICS = (*RESIDUAL_STATISTICS, *DERIVED, "kl", "latent")
DEFAULT_STATISTICS = ("subspace", "q")  # chosen by measurement: docs/anomaly.md, "How the default was chosen"
DEFAULT_COMBINATION = "fisher"
DEFAULT_TAIL = "empirical"
QIN_LEVEL = 0.01  # the level of the limits Qin's index divides each statistic by

def qin_key(statistics: Sequence[str]) -> str:
    """Where the tail of Qin's index over `statistics` is kept in `Monitor.tails`."""
    return "qin:" + "+".join(statistics)


@dataclass
class Monitor:
    """A fitted residual model: the subspace, the latent density, the statistics combined and how,
    their tails, and the calibration (threshold on the score −log₁₀ p, and the scan-level limit)."""

    subspace: Subspace
    statistics: tuple[str, ...]
    tails: dict[str, Tail]
    tails_from: str  # which pixels the tails were fitted on
    threshold: float | None = None  # on the score; set by calibrate
    false_positive_rate: float | None = None
    design_effect: float | None = None  # spatial clustering of flags on the calibration tissue
    calibration: dict[str, Any] = field(default_factory=dict)
    noise_reference: float | None = None  # normal tissue's median noise level; None: residuals not weighted
    combination: str = DEFAULT_COMBINATION
    tail_kind: str = DEFAULT_TAIL
    latent: LatentDensity | None = None
    scan_limit: ScanLimit | None = None
    sample_digest: str = ""  # which training tissue pixels the subspace (and fair baselines) were fitted on
    smoothing: int = 1  # the score averaged over the tissue of a k×k window (`spatial`); set by calibrate

    @property
    def available(self) -> tuple[str, ...]:
        """The statistics this monitor can compute (`latent` with a latent density; `subspace` once its tail
        is fitted, which a monitor saved before it existed lacks until `calibrate`)."""
        return tuple(s for s in STATISTICS if (s != "latent" or self.latent is not None)
                     and (s != "subspace" or not self.tails or "subspace" in self.tails))

    def subspace_statistic(self, values: dict[str, np.ndarray]) -> np.ndarray:
        """`subspace`: −log of the smaller tail probability of `inside` and `t2` (needs their tails)."""
        return -np.minimum(self.tails["inside"].log_sf(values["inside"]), self.tails["t2"].log_sf(values["t2"]))

    def raw(self, values: dict[str, np.ndarray], name: str) -> np.ndarray:
        """The statistic `name` per pixel (`subspace` derived from the others)."""
        return self.subspace_statistic(values) if name == "subspace" else values[name]

    def part_log_p(self, values: dict[str, np.ndarray], name: str) -> np.ndarray:
        """log of one statistic's tail probability under normal tissue."""
        return self.tails[name].log_sf(self.raw(values, name))

    def log_p(self, values: dict[str, np.ndarray], statistics: Sequence[str] | None = None,
              combination: str | None = None) -> np.ndarray:
        """log of the combined tail probability of `statistics` (default: the monitor's own) under normal
        tissue, by `combination` (default: the monitor's own; see `tails`)."""
        names = tuple(statistics or self.statistics)
        rule = combination or self.combination
        if rule == "qin":
            key = qin_key(names)
            if key not in self.tails:
                raise ValueError(f"Qin's index over {names} has no tail in this monitor (it has one for the "
                                 f"statistics it was calibrated with, {self.statistics}, with combination 'qin')")
            limits = [self.tails[s].quantile(QIN_LEVEL) for s in names]
            return self.tails[key].log_sf(qin_index([self.raw(values, s) for s in names], limits))
        parts = [self.part_log_p(values, s) for s in names]
        if len(parts) == 1:
            return parts[0]
        if rule == "min_p":
            return log_min_p(parts)
        if rule == "fisher":
            return log_fisher_p(parts)
        raise ValueError(f"combination must be one of {COMBINATIONS}; got {rule!r}")

    def score(self, values: dict[str, np.ndarray], statistics: Sequence[str] | None = None,
              combination: str | None = None) -> np.ndarray:
        """−log₁₀ of `log_p` (higher = more anomalous; 2 is p = 0.01 under normal tissue's tails)."""
        return to_score(self.log_p(values, statistics, combination))

    def to_dict(self) -> dict[str, Any]:
        return {"subspace": self.subspace.to_dict(), "statistics": list(self.statistics),
                "tails": {k: v.to_dict() for k, v in self.tails.items()}, "tails_from": self.tails_from,
                "threshold": self.threshold, "false_positive_rate": self.false_positive_rate,
                "design_effect": self.design_effect, "calibration": dict(self.calibration),
                "noise_reference": self.noise_reference, "combination": self.combination,
                "tail_kind": self.tail_kind, "latent": None if self.latent is None else self.latent.to_dict(),
                "scan_limit": None if self.scan_limit is None else self.scan_limit.to_dict(),
                "sample_digest": self.sample_digest, "smoothing": self.smoothing}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Monitor:
        statistics = tuple(d["statistics"])
        threshold = d.get("threshold")
        combination = d.get("combination")
        if combination is None:  # written before combinations had a null: Fisher's −2 Σ log p itself
            combination = "fisher"
            if threshold is not None:
                threshold = float(to_score(chi2_log_sf(np.array([threshold]), 2 * len(statistics)))[0])
        latent, limit = d.get("latent"), d.get("scan_limit")
        return cls(Subspace.from_dict(d["subspace"]), statistics,
                   {k: tail_from_dict(v) for k, v in d["tails"].items()}, str(d.get("tails_from", "")),
                   threshold, d.get("false_positive_rate"), d.get("design_effect"),
                   dict(d.get("calibration", {})), d.get("noise_reference"), combination,
                   str(d.get("tail_kind", "box")), None if latent is None else LatentDensity.from_dict(latent),
                   None if limit is None else ScanLimit.from_dict(limit), str(d.get("sample_digest", "")),
                   check_smoothing(d.get("smoothing", 1)))


def parse_method(method: str, available: Sequence[str] = STATISTICS) -> tuple[str | None, tuple[str, ...]]:
    """`"t2+q"` → (None, ("t2", "q")); `"fisher:t2+q"` → ("fisher", ("t2", "q")): an optional combination
    rule and the statistics whose tail probabilities a score combines."""
    rule, _, names = method.rpartition(":")
    parts = tuple(s.strip() for s in names.split("+") if s.strip())
    if rule and rule not in COMBINATIONS:
        raise ValueError(f"a combination rule is one of {COMBINATIONS}; got {rule!r} in {method!r}")
    if not parts or any(s not in available for s in parts) or len(set(parts)) != len(parts):
        raise ValueError(f"a combination names distinct statistics among {tuple(available)} joined by '+', "
                         f"optionally after a rule such as 'fisher:'; got {method!r}")
    return rule or None, parts


def parse_statistics(method: str) -> tuple[str, ...]:
    """`"t2+q"` → ("t2", "q") (the statistics of `parse_method`)."""
    return parse_method(method)[1]


def check_choices(statistics: Sequence[str], combination: str, tail_kind: str) -> None:
    """`DataError` unless the statistics, combination and tail kind are ones the monitor knows."""
    unknown = [s for s in statistics if s not in STATISTICS]
    if unknown or not statistics or len(set(statistics)) != len(statistics):
        raise DataError(f"anomaly statistics must be distinct ones of {STATISTICS}; got {tuple(statistics)!r}")
    if combination not in COMBINATIONS:
        raise DataError(f"combination must be one of {COMBINATIONS}; got {combination!r}")
    if tail_kind not in TAIL_KINDS:
        raise DataError(f"tail kind must be one of {TAIL_KINDS}; got {tail_kind!r}")
    if combination == "qin" and "latent" in statistics:
        raise DataError("Qin's index adds statistics over their limits, which needs non-negative statistics; "
                        "the latent density's is not: combine it by min_p or fisher")
