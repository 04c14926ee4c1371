"""Tail probabilities of monitoring statistics on normal tissue, and combinations with a named null.

Each statistic s of a pixel gets a p-value P(S ≥ s) under normal tissue from a tail model fitted on
normal pixels:

- `EmpiricalTail` (the monitor's default): the empirical survival function of the normal pixels, and
  beyond its upper 1 % (at least 100 pixels) an exponential tail fitted to the exceedances
  (peaks over a threshold, Pickands 1975), so strong anomalies keep their order instead of tying at
  1/(n + 1). It assumes nothing about the statistic's distribution.
- `ScaledChi2`: Box's (1954) g·χ²_h, g and h matching the mean and variance (of the normal values, or
  for Q of the quadratic form with the residual eigenvalues, as MSPC sets Q limits).
- `JacksonMudholkar`: Q's distribution from the residual eigenvalues θᵢ = Σⱼ λⱼⁱ (Jackson & Mudholkar
  1979), the classic Q limit; it assumes Gaussian residuals.

A pixel's statistics are combined into one p-value whose null is named (`combine`):

- `min_p`: the "T² or Q" rule at a Šidák-corrected level, p = 1 − (1 − min pᵢ)ᵐ; exact for
  independent statistics, conservative for positively dependent ones;
- `fisher`: −2 Σ log pᵢ against χ²₂ₘ (Fisher 1932), exact for independent statistics;
- `qin`: the combined index φ = Σ sᵢ/limᵢ (Yue & Qin 2001), each statistic over its limit at the
  monitor's level, with its own tail fitted on normal pixels like any statistic.

Every model writes itself as plain numbers (`to_dict`; `tail_from_dict` reads any of them), so a
checkpoint holding them loads with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from scipy import stats

TAIL_KINDS = ("empirical", "box", "jm")
COMBINATIONS = ("min_p", "fisher", "qin")
EXCEEDANCE_SHARE = 0.01  # the exponential tail starts at the upper 1 % of the normal values...
MIN_EXCEEDANCES = 100  # ...or further in, so that at least this many values fit it
KNOTS = 64  # points of the empirical survival function kept (log-spaced in probability)


class Tail(Protocol):
    """A model of a statistic's upper tail on normal pixels."""

    def log_sf(self, values: np.ndarray) -> np.ndarray:
        """log P(S ≥ s) per value (natural log)."""
        ...

    def quantile(self, p: float) -> float:
        """The value exceeded with probability `p` (the limit at level `p`)."""
        ...

    def to_dict(self) -> dict[str, Any]:
        ...


def chi2_log_sf(x: np.ndarray, df: float) -> np.ndarray:
    """log P(χ²_df ≥ x), finite far into the tail where scipy's `logsf` underflows to −∞.

    There the upper incomplete gamma function's asymptotic series is used (Abramowitz & Stegun
    6.5.32): log Q(a, y) ≈ (a − 1)·log y − y − log Γ(a) + log(1 + (a − 1)/y + (a − 1)(a − 2)/y²),
    with a = df/2 and y = x/2.
    """
    x = np.asarray(x, dtype=np.float64)
    out = np.asarray(stats.chi2.logsf(x, df), dtype=np.float64)
    far = ~np.isfinite(out) & (x > 0)
    if far.any():
        a, y = df / 2, x[far] / 2
        series = 1 + (a - 1) / y + (a - 1) * (a - 2) / y**2
        out[far] = (a - 1) * np.log(y) - y - math.lgamma(a) + np.log(np.maximum(series, 1e-300))
    return out


@dataclass(frozen=True)
class ScaledChi2:
    """s ≈ g·χ²_h (Box 1954): g = var / (2·mean), h = 2·mean² / var."""

    g: float
    h: float

    @classmethod
    def fit(cls, values: np.ndarray) -> ScaledChi2:
        v = np.asarray(values, dtype=np.float64)
        v = v[np.isfinite(v)]
        if v.size < 2:
            raise ValueError("a tail needs at least two normal values")
        return cls.from_moments(float(v.mean()), float(v.var()))

    @classmethod
    def from_moments(cls, mean: float, var: float) -> ScaledChi2:
        """The tail with this mean and variance (a degenerate statistic gets a vanishing scale)."""
        if mean <= 0 or var <= 0:
            return cls(max(mean, 1e-300), 1.0)
        return cls(var / (2 * mean), 2 * mean**2 / var)

    @classmethod
    def from_eigenvalues(cls, eigenvalues: np.ndarray) -> ScaledChi2:
        """Box's tail of Q = Σ λⱼ zⱼ² (zⱼ standard normal): mean θ₁, variance 2θ₂."""
        lam = np.asarray(eigenvalues, dtype=np.float64)
        return cls.from_moments(float(lam.sum()), 2 * float((lam**2).sum()))

    def log_sf(self, values: np.ndarray) -> np.ndarray:
        return chi2_log_sf(np.maximum(np.asarray(values, dtype=np.float64), 0.0) / self.g, self.h)

    def quantile(self, p: float) -> float:
        return float(self.g * stats.chi2.isf(p, self.h))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "box", "g": self.g, "h": self.h}


@dataclass(frozen=True)
class JacksonMudholkar:
    """Q's tail from the eigenvalues λⱼ of the residual covariance outside the monitored directions.

    With θᵢ = Σⱼ λⱼⁱ and h₀ = 1 − 2θ₁θ₃/(3θ₂²),
    z = θ₁[(Q/θ₁)^h₀ − 1 − θ₂h₀(h₀ − 1)/θ₁²] / √(2θ₂h₀²) is standard normal (Jackson & Mudholkar 1979).
    """

    theta1: float
    theta2: float
    theta3: float

    @classmethod
    def from_eigenvalues(cls, eigenvalues: np.ndarray) -> JacksonMudholkar:
        lam = np.clip(np.asarray(eigenvalues, dtype=np.float64), 0.0, None)
        return cls(float(lam.sum()), float((lam**2).sum()), float((lam**3).sum()))

    @property
    def h0(self) -> float:
        return 1 - 2 * self.theta1 * self.theta3 / (3 * self.theta2**2)

    def _z(self, q: np.ndarray) -> np.ndarray:
        # (Q/θ₁)^h₀ falls as Q rises where h₀ < 0 (a few eigenvalues dominate): Q's upper tail is then
        # the transformed variable's lower one
        t1, t2, h0 = self.theta1, self.theta2, self.h0
        base = np.maximum(np.asarray(q, dtype=np.float64), 1e-300) / t1
        return math.copysign(1.0, h0) * t1 * (base**h0 - 1 - t2 * h0 * (h0 - 1) / t1**2) / math.sqrt(2 * t2 * h0**2)

    def log_sf(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(stats.norm.logsf(self._z(values)), dtype=np.float64)

    def quantile(self, p: float) -> float:
        t1, t2, h0 = self.theta1, self.theta2, self.h0
        z = math.copysign(1.0, h0) * float(stats.norm.isf(p))
        base = z * math.sqrt(2 * t2 * h0**2) / t1 + 1 + t2 * h0 * (h0 - 1) / t1**2
        return float(t1 * base ** (1 / h0)) if base > 0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "jm", "theta1": self.theta1, "theta2": self.theta2, "theta3": self.theta3}


@dataclass(frozen=True)
class EmpiricalTail:
    """The empirical survival function of normal values, with an exponential tail beyond its upper end.

    `values`/`log_p`: knots of log P(S ≥ s), increasing in s (log-linear between them); beyond the
    last knot log P decreases by 1 per `scale` (the mean excess of the normal values over it). Below
    the first knot P = 1. Distribution-free within the normal values' range.
    """

    values: tuple[float, ...]
    log_p: tuple[float, ...]
    scale: float

    @classmethod
    def fit(cls, values: np.ndarray) -> EmpiricalTail:
        v = np.sort(np.asarray(values, dtype=np.float64)[np.isfinite(values)])
        n = v.size
        if n < 2:
            raise ValueError("a tail needs at least two normal values")
        start = min(max(EXCEEDANCE_SHARE, MIN_EXCEEDANCES / n), 0.5)
        probs = np.geomspace(1.0, start, KNOTS)
        knots = np.quantile(v, 1 - probs, method="inverted_cdf")
        excess = v[v > knots[-1]] - knots[-1]
        scale = float(excess.mean()) if excess.size else float(max(v[-1] - v[0], 1e-12) / n)
        # ties (a statistic with an atom): P(S ≥ s) is the largest probability among equal knots
        xs, first = np.unique(knots, return_index=True)
        return cls(tuple(xs.tolist()), tuple(np.log(probs[first]).tolist()), max(scale, 1e-300))

    def log_sf(self, values: np.ndarray) -> np.ndarray:
        s = np.asarray(values, dtype=np.float64)
        xs, lp = np.asarray(self.values), np.asarray(self.log_p)
        out = np.interp(s, xs, lp) if len(xs) > 1 else np.where(s <= xs[0], 0.0, lp[0])
        beyond = s > xs[-1]
        out = np.where(beyond, lp[-1] - (s - xs[-1]) / self.scale, out)
        return np.where(np.isnan(s), np.nan, out)

    def quantile(self, p: float) -> float:
        xs, lp = np.asarray(self.values), np.asarray(self.log_p)
        lq = math.log(p)
        if lq <= lp[-1]:
            return float(xs[-1] + (lp[-1] - lq) * self.scale)
        return float(np.interp(-lq, -lp, xs))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "empirical", "values": list(self.values), "log_p": list(self.log_p), "scale": self.scale}


def tail_from_dict(d: dict[str, Any]) -> Tail:
    """Any tail model from its `to_dict` (a dict without "kind" is Box's, as monitors wrote it before)."""
    kind = d.get("kind", "box")
    if kind == "empirical":
        return EmpiricalTail(tuple(float(x) for x in d["values"]), tuple(float(x) for x in d["log_p"]),
                             float(d["scale"]))
    if kind == "jm":
        return JacksonMudholkar(float(d["theta1"]), float(d["theta2"]), float(d["theta3"]))
    return ScaledChi2(float(d["g"]), float(d["h"]))


def fit_tail(values: np.ndarray, kind: str = "empirical", eigenvalues: np.ndarray | None = None) -> Tail:
    """A tail of `kind` fitted on normal `values`; "jm" (and "box" when `eigenvalues` are given) from
    the residual eigenvalues outside the monitored directions instead (Q only)."""
    if kind not in TAIL_KINDS:
        raise ValueError(f"tail kind must be one of {TAIL_KINDS}; got {kind!r}")
    if kind == "jm":
        if eigenvalues is None:
            raise ValueError("the Jackson–Mudholkar tail needs the residual eigenvalues (it is Q's)")
        return JacksonMudholkar.from_eigenvalues(eigenvalues)
    if kind == "box":
        return ScaledChi2.from_eigenvalues(eigenvalues) if eigenvalues is not None else ScaledChi2.fit(values)
    return EmpiricalTail.fit(values)


# -- combinations ------------------------------------------------------------------------------
def fisher(log_p: Sequence[np.ndarray]) -> np.ndarray:
    """Fisher's statistic −2 Σ log pᵢ (χ²₂ₘ for m independent uniform p-values)."""
    return -2 * np.sum(list(log_p), axis=0)


def log_min_p(log_p: Sequence[np.ndarray]) -> np.ndarray:
    """log of the Šidák-corrected smallest p-value, 1 − (1 − min pᵢ)ᵐ."""
    parts = list(log_p)
    smallest = np.minimum.reduce(parts)
    # log(1 − (1 − p)^m) = log(−expm1(m·log1p(−p))), accurate for small p (and 0 at p = 1); below
    # p = e⁻³⁰ it is log m + log p to double precision, also where p itself underflows
    m = len(parts)
    with np.errstate(divide="ignore"):
        exact = np.log(-np.expm1(m * np.log1p(-np.exp(np.maximum(smallest, -30.0)))))
    return np.where(smallest < -30.0, np.log(m) + smallest, exact)


def log_fisher_p(log_p: Sequence[np.ndarray]) -> np.ndarray:
    """log p of Fisher's statistic under its χ²₂ₘ null."""
    parts = list(log_p)
    return chi2_log_sf(fisher(parts), 2 * len(parts))


def qin_index(values: Sequence[np.ndarray], limits: Sequence[float]) -> np.ndarray:
    """Yue & Qin's (2001) combined index φ = Σ sᵢ / limᵢ."""
    return np.sum([np.asarray(v, dtype=np.float64) / lim for v, lim in zip(values, limits, strict=True)], axis=0)


def to_score(log_p: np.ndarray) -> np.ndarray:
    """−log₁₀ p: the monitor's score (2 means p = 0.01 under normal tissue's tails)."""
    return -np.asarray(log_p, dtype=np.float64) / math.log(10)
