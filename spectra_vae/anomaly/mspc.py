"""Multivariate statistical process control (MSPC) for spectra, streamed over pixels.

A model of normal variation is a principal subspace: the mean and the leading eigenvectors of
a covariance accumulated in one pass (`Moments`). A pixel is then judged twice, as MSPC does
with Hotelling's T² and Q (Jackson & Mudholkar 1979; MacGregor & Kourti 1995): by its position
inside the subspace (`t2`, each direction scaled by its variance; `inside`, the plain squared
projection of the same scores) and by its distance from it (`q`, the squared prediction error).
Their tails on normal pixels and how they are combined are in `tails`. The same machinery monitors
the VAE's residuals and, as a baseline, the spectra themselves (PCA with T² and Q); `ledoit_wolf`
gives the shrunk covariance of the RX baseline from the same one-pass moments.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Moments:
    """One-pass sums over `(n, C)` chunks: enough for the mean, the covariance and Ledoit–Wolf."""

    n: int = 0
    s1: np.ndarray | None = None  # Σ x
    s2: np.ndarray | None = None  # Σ x xᵀ
    r2: float = 0.0  # Σ ‖x‖²
    r4: float = 0.0  # Σ ‖x‖⁴
    r2x: np.ndarray | None = None  # Σ ‖x‖² x

    def update(self, x: np.ndarray) -> Moments:
        x = np.asarray(x, dtype=np.float64)
        if x.shape[0] == 0:
            return self
        sq = np.einsum("ij,ij->i", x, x)
        if self.s1 is None:
            c = x.shape[1]
            self.s1, self.s2, self.r2x = np.zeros(c), np.zeros((c, c)), np.zeros(c)
        self.n += x.shape[0]
        self.s1 += x.sum(0)
        self.s2 += x.T @ x
        self.r2 += float(sq.sum())
        self.r4 += float((sq**2).sum())
        self.r2x += sq @ x
        return self

    @classmethod
    def of(cls, chunks: Iterable[np.ndarray]) -> Moments:
        m = cls()
        for c in chunks:
            m.update(c)
        return m

    def as_array(self) -> np.ndarray:
        """Every sum in one flat array (to add the moments of several processes)."""
        assert self.s1 is not None and self.s2 is not None and self.r2x is not None
        return np.concatenate([[self.n, self.r2, self.r4], self.s1, self.s2.ravel(), self.r2x])

    @classmethod
    def from_array(cls, a: np.ndarray, n_channels: int) -> Moments:
        c = n_channels
        return cls(int(a[0]), a[3 : 3 + c], a[3 + c : 3 + c + c * c].reshape(c, c), float(a[1]), float(a[2]),
                   a[3 + c + c * c :])

    @property
    def mean(self) -> np.ndarray:
        assert self.s1 is not None
        return self.s1 / self.n

    def covariance(self, ddof: int = 0) -> np.ndarray:
        """The covariance of the pixels (1/(n − ddof) normalisation)."""
        assert self.s1 is not None and self.s2 is not None
        m = self.mean
        return (self.s2 - self.n * np.outer(m, m)) / (self.n - ddof)

    def centred_fourth(self) -> float:
        """Σ ‖x − mean‖⁴, from the raw sums (‖x − m‖² = ‖x‖² − 2xᵀm + ‖m‖²)."""
        assert self.s1 is not None and self.s2 is not None and self.r2x is not None
        m = self.mean
        c = float(m @ m)
        return (self.r4 + 4 * float(m @ self.s2 @ m) + self.n * c**2 - 4 * float(self.r2x @ m)
                + 2 * c * self.r2 - 4 * c * float(self.s1 @ m))


def ledoit_wolf(moments: Moments) -> tuple[np.ndarray, float]:
    """The Ledoit–Wolf (2004) shrunk covariance (1 − s)·S + s·(tr S / C)·I and its shrinkage s.

    The same estimate as scikit-learn's `LedoitWolf` (which needs every pixel in memory), from
    one-pass sums: β needs only Σ‖x − m‖⁴ and δ only ‖S‖²_F.
    """
    s = moments.covariance(ddof=0)
    n, c = moments.n, s.shape[0]
    mu = float(np.trace(s)) / c
    delta_ = float((s**2).sum())  # ‖S‖²_F
    beta = (moments.centred_fourth() / n - delta_) / (c * n)
    delta = (delta_ - 2 * mu * float(np.trace(s)) + c * mu**2) / c
    shrinkage = 0.0 if beta <= 0 else min(beta, delta) / delta
    return (1 - shrinkage) * s + shrinkage * mu * np.eye(c), shrinkage


def components_above_noise(eigenvalues: np.ndarray, n_samples: int) -> int:
    """How many principal directions rise above the noise floor.

    The noise floor is the median eigenvalue (most directions of a spectral residual are noise);
    a direction counts when its variance exceeds the largest that pure noise of that level
    reaches with `n_samples` pixels, the Marchenko–Pastur edge σ²(1 + √(C/n))², twice over.
    """
    eig = np.sort(np.asarray(eigenvalues, dtype=np.float64))[::-1]
    floor = float(np.median(eig))
    edge = floor * (1 + math.sqrt(len(eig) / max(n_samples, 1))) ** 2
    return int(max(1, (eig > 2 * edge).sum()))


@dataclass
class Subspace:
    """Mean and leading principal directions of normal pixels; statistics inside and outside.

    `t2`: Σⱼ (pⱼᵀ(x − m))² / λⱼ (Hotelling's T² in the subspace); `inside`: Σⱼ (pⱼᵀ(x − m))², the
    plain squared projection; `q`: ‖x − m‖² − inside, the squared distance from the subspace.
    """

    mean_: np.ndarray
    components_: np.ndarray  # (k, C)
    variances_: np.ndarray  # (k,)
    eigenvalues_: np.ndarray = field(repr=False)  # all C, for reports

    @classmethod
    def fit(cls, moments: Moments, n_components: int | str = "auto") -> Subspace:
        """`n_components`: a number, "auto" (`components_above_noise`), or "99%" style variance share."""
        w, v = np.linalg.eigh(moments.covariance(ddof=1))
        order = np.argsort(w)[::-1]
        w, v = np.clip(w[order], 0, None), v[:, order]
        if n_components == "auto":
            k = components_above_noise(w, moments.n)
        elif isinstance(n_components, str) and n_components.endswith("%"):
            share = float(n_components[:-1]) / 100
            k = int(np.searchsorted(np.cumsum(w) / w.sum(), share) + 1)
        else:
            k = int(n_components)
        k = max(1, min(k, len(w) - 1))
        return cls(moments.mean, v[:, :k].T.copy(), np.maximum(w[:k], 1e-12 * max(w[0], 1e-300)), w)

    @property
    def n_components(self) -> int:
        return int(self.components_.shape[0])

    def statistics(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """`t2`, `inside` and `q` per row of `x` `(n, C)`."""
        e = np.asarray(x, dtype=np.float64) - self.mean_
        proj = e @ self.components_.T
        inside = np.einsum("ij,ij->i", proj, proj)
        total = np.einsum("ij,ij->i", e, e)
        return {"t2": (proj**2 / self.variances_).sum(1), "inside": inside, "q": np.maximum(total - inside, 0.0)}

    def outside(self, x: np.ndarray) -> np.ndarray:
        """The part of x − mean outside the subspace, `(n, C)` (Q is its squared norm)."""
        e = np.asarray(x, dtype=np.float64) - self.mean_
        return e - (e @ self.components_.T) @ self.components_

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean_.tolist(), "components": self.components_.tolist(),
                "variances": self.variances_.tolist(), "eigenvalues": self.eigenvalues_.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Subspace:
        return cls(np.asarray(d["mean"]), np.asarray(d["components"]), np.asarray(d["variances"]),
                   np.asarray(d["eigenvalues"]))
