"""Extended multiplicative signal correction (EMSC) of scattering, vectorised over pixels.

Each spectrum x is modelled as

    x ≈ a·r + Σₖ cₖ·Pₖ(ν)  [+ b·K(r) with `dispersion`]

with r a reference spectrum (the mean of the training tissue pixels), Legendre polynomials Pₖ of
the wavenumber up to `degree` for the broad scattering baseline and, with `dispersion`, K(r) the
reference's Kramers–Kronig partner (`spectra_vae.core.scattering.kramers_kronig_partner`) standing for
the dispersion artefact. Without it (the default, basic EMSC) the dispersion artefact stays in; with
it, band shifts of the same derivative shape that are chemistry (the demo tumour's amide I shift)
are taken out as well (README, Scattering and EMSC). EMSC is
Martens & Stark 1991 (J. Pharm. Biomed. Anal. 9:625); the dispersion regressor follows Kohler et al.
2005 (Appl. Spectrosc. 59:707), who extend EMSC with Mie and dispersion terms for cells, and Bassan et
al. 2009 (Analyst 134:1586) for what the artefact is. One least-squares solve serves every pixel:
the coefficients are x @ pinv(M)ᵀ for the design M, never a loop over spectra. The corrected
spectrum is (x − b·K(r) − Σ cₖPₖ) / a; where a ≤ `MIN_SCALE` (noise-only background, which holds no
reference) it is not divided: x − b·K(r) − Σ cₖPₖ (b = 0 without the dispersion term).

ME-EMSC (Solheim et al. 2019, J. Biophotonics 12:e201800415) replaces the polynomial and the single
dispersion regressor by principal components of many Mie extinction curves computed from the
reference's complex refractive index over a range of sphere radii and indices, and iterates per
pixel with the corrected spectrum as the next reference. It is not a step here: `benchmarks/me_emsc.py`
measures a vectorised version (README, Scattering and EMSC: on the demo's scattering it makes the
amide I band worse, and it costs about 0.035 s per pixel on 2 cores).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.errors import DataError
from ..core.scattering import kramers_kronig_partner

MIN_SCALE = 0.05  # pixels holding less than 5 % of the reference are not divided by it
BLOCK = 4096  # spectra corrected at a time


@dataclass(eq=False)
class EMSC:
    """EMSC with a fixed `reference` on `wavenumbers`; `degree` of the baseline polynomial;
    `dispersion`: whether the reference's Kramers–Kronig partner is a regressor (default: basic EMSC)."""

    reference: np.ndarray
    wavenumbers: np.ndarray
    degree: int = 2
    dispersion: bool = False
    design_: np.ndarray = field(init=False, repr=False)  # (n_channels, n_terms)
    solver_: np.ndarray = field(init=False, repr=False)  # (n_terms, n_channels): the pseudo-inverse

    def __post_init__(self) -> None:
        self.reference = np.asarray(self.reference, dtype=np.float64)
        self.wavenumbers = np.asarray(self.wavenumbers, dtype=np.float64)
        self.degree = int(self.degree)
        self.dispersion = bool(self.dispersion)
        if self.reference.shape != self.wavenumbers.shape:
            raise ValueError(f"EMSC reference has {self.reference.shape} values for {self.wavenumbers.shape} channels")
        wn = self.wavenumbers
        span = float(np.ptp(wn)) or 1.0
        x = 2 * (wn - wn.min()) / span - 1  # the axis on [−1, 1], where Legendre polynomials are orthogonal
        columns = [self.reference[:, None]]
        if self.dispersion:
            columns.append(kramers_kronig_partner(self.reference, wn)[:, None])
        columns.append(np.polynomial.legendre.legvander(x, self.degree))
        baseline = columns[-1]
        apart = self.reference - baseline @ np.linalg.lstsq(baseline, self.reference, rcond=None)[0]
        if not np.linalg.norm(apart) > 1e-6 * np.linalg.norm(self.reference):
            # zero, flat or a polynomial itself: a·r and the baseline are the same thing, and `a`
            # would be any number (pinv would quietly split the spectrum between them)
            raise DataError(f"emsc({self.degree},{int(self.dispersion)}): the reference spectrum (the mean of the "
                            "training tissue pixels) is " + ("zero" if not np.any(self.reference) else
                                                             f"a polynomial of degree ≤ {self.degree}")
                            + ", so EMSC cannot tell the amount of tissue from the baseline; check that the training "
                            "scans hold tissue spectra, or lower the degree")
        self.design_ = np.hstack(columns)
        self.solver_ = np.linalg.pinv(self.design_)

    @property
    def terms(self) -> list[str]:
        """Names of the coefficients, in the order of `coefficients`' columns."""
        return (["multiplicative"] + (["dispersion"] if self.dispersion else [])
                + [f"baseline_{k}" for k in range(self.degree + 1)])

    def coefficients(self, spectra: np.ndarray) -> np.ndarray:
        """Least-squares coefficients of every spectrum `(n, C)` → `(n, n_terms)`, one solve for all."""
        return np.asarray(spectra, dtype=np.float64) @ self.solver_.T

    def scale(self, coefficients: np.ndarray) -> np.ndarray:
        """What each spectrum is divided by, `(n, 1)`: its multiplicative term, or 1 where that is ≤ MIN_SCALE."""
        a = coefficients[:, :1]
        return np.where(a > MIN_SCALE, a, 1.0)

    def additive(self, coefficients: np.ndarray) -> np.ndarray:
        """Per spectrum, the fitted dispersion part and baseline `(n, C)`: what correction subtracts."""
        return coefficients[:, 1:] @ self.design_[:, 1:].T

    def baseline(self, coefficients: np.ndarray) -> np.ndarray:
        """Per spectrum, the fitted polynomial baseline alone `(n, C)`."""
        k = self.degree + 1
        return coefficients[:, -k:] @ self.design_[:, -k:].T

    def correct(self, spectra: np.ndarray, return_additive: bool = False
                ) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(corrected spectra `(n, C)` float32, coefficients `(n, n_terms)`[, the subtracted part `(n, C)`
        float32]), in blocks of `BLOCK` spectra so that float64 intermediates stay small."""
        x = np.asarray(spectra)
        corrected = np.empty(x.shape, dtype=np.float32)
        coef = np.empty((len(x), self.design_.shape[1]))
        additive = np.empty(x.shape, dtype=np.float32) if return_additive else None
        for s in range(0, len(x), BLOCK):
            block = x[s:s + BLOCK].astype(np.float64)
            c = coef[s:s + BLOCK] = self.coefficients(block)
            add = self.additive(c)
            corrected[s:s + BLOCK] = (block - add) / self.scale(c)
            if additive is not None:
                additive[s:s + BLOCK] = add
        return (corrected, coef, additive) if additive is not None else (corrected, coef)

    def to_dict(self) -> dict[str, Any]:
        """Plain content for a checkpoint (`torch.load(weights_only=True)`) or a JSON record."""
        return {"reference": [float(v) for v in self.reference], "wavenumbers": [float(v) for v in self.wavenumbers],
                "degree": self.degree, "dispersion": self.dispersion}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EMSC:
        return cls(np.asarray(d["reference"], dtype=np.float64), np.asarray(d["wavenumbers"], dtype=np.float64),
                   int(d["degree"]), bool(d["dispersion"]))
