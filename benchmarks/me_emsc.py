"""Issue 13, the optional part: would ME-EMSC (Solheim et al. 2019, J. Biophotonics 12:e201800415)
correct the scattered demo better than `emsc`? A trial, not a preprocessing step.

ME-EMSC models each spectrum as c + Σ pₖ·Mieₖ + a·r: r the reference, Mieₖ the leading principal
directions (99.96 % of the variance) of 100 van de Hulst extinction curves of an *absorbing* sphere
whose complex refractive index comes from r (imaginary part from r / ν̃, real part from its
Kramers–Kronig partner), for radii 2–7.1 µm and indices 1.1–1.4, orthogonal to r. It then iterates
per pixel: the pixel's corrected spectrum, scaled by basic EMSC to the reference and clipped at 0,
becomes the reference of its next Mie curves, until the fit's RMSE (rounded to 4 decimals) rises
or stands still twice. `MEEMSC` follows orange-spectroscopy's `me_emsc.py` (read as reference; the
reference spectrum normalised to a maximum of 1, as its Matrigel test spectrum is), vectorised:
the curves, their principal directions (eigenvectors of each pixel's 100×100 Gram matrix) and the
least-squares fits run for a block of pixels at once. `--check DIR` compares it with the published
MATLAB outputs that orange-spectroscopy tests against (`MieStd1_rawSpec.csv`, `MieStd2_refSpec.csv`,
`MieStd3_corr.csv` from its `datasets/emsc`, not redistributed here).

On demo scans (seeds given; ground-truth tissue pixels, a random sample of each set since the
iterations cost about 0.035 s per pixel on 2 cores), fitted on the normal training scans' tissue:
the apparent amide I position's spread, the tumour's amide I shift against normal tissue of the
abnormal scans, the first fit's multiplicative term (negative: the correction turns the spectrum
upside down), and the AUROC of a 2-component PCA's reconstruction error, fitted on the corrected
normal training pixels, for clean, scattered, `emsc(2,1)`, `emsc(2,0)` (basic EMSC, the step's default)
and ME-EMSC.

`python -m benchmarks.me_emsc [--seeds 0 13 14] [--pixels 1200] [--check DIR]`
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.signal import hilbert
from sklearn.decomposition import PCA
from sklearn.metrics import roc_auc_score

from benchmarks.common import demo_data, machine
from spectra_vae import anomaly, load_dataset
from spectra_vae.core.scattering import apparent_peak_position
from spectra_vae.preprocess.pipeline import Preprocessor
from spectra_vae.preprocess.tissue import TissueRule

MIN_SCALE = 0.05  # as spectra_vae.preprocess.emsc: a pixel with less reference than this is not divided


def complex_index(reference: np.ndarray, wn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per reference `(B, C)` (≥ 0, axis ascending): scaled imaginary index r / ν̃ and the scaled
    fluctuating real index, the Kramers–Kronig partner of r / ν̃, both extended by 200 flat channels
    at either end before the Hilbert transform (as the reference implementation)."""
    dw = wn[1] - wn[0]
    ext = np.arange(1, 201) * dw
    wn_ext = np.concatenate([wn[0] - dw * 201 + ext, wn, wn[-1] + ext])
    r_ext = np.concatenate([np.repeat(reference[:, :1], 200, 1), reference,
                            np.repeat(reference[:, -1:], 200, 1)], axis=1)
    kk = -hilbert(r_ext / (wn_ext * 100), axis=1).imag[:, 200:-200]
    return reference / (wn * 100), kk


def _van_de_hulst(imag: np.ndarray, real: np.ndarray, a0: np.ndarray, g: np.ndarray, wn: np.ndarray) -> np.ndarray:
    """Van de Hulst extinction of an absorbing sphere: `imag`, `real` `(B, 1, C)`, `a0`, `g` broadcast to them."""
    rho = a0 * (1 + g * real) * (wn * 100)
    tanb = imag / (1 / g + real)
    beta = np.arctan(tanb)
    cb, decay = np.cos(beta), np.exp(-rho * tanb)
    return (2 - 4 * decay * (cb / rho) * np.sin(rho - beta) - 4 * decay * (cb / rho) ** 2 * np.cos(rho - 2 * beta)
            + 4 * (cb / rho) ** 2 * np.cos(2 * beta))


def extinction(imag: np.ndarray, real: np.ndarray, alpha0: np.ndarray, gamma: np.ndarray,
               wn: np.ndarray) -> np.ndarray:
    """Van de Hulst extinction of an absorbing sphere for every (alpha0, gamma) pair: `(B, K, C)`."""
    a0 = np.repeat(alpha0, len(gamma))[None, :, None]
    g = np.tile(gamma, len(alpha0))[None, :, None]
    return _van_de_hulst(imag[:, None, :], real[:, None, :], a0, g, wn)


def paired_extinction(imag: np.ndarray, real: np.ndarray, alpha0: np.ndarray, gamma: np.ndarray,
                      wn: np.ndarray) -> np.ndarray:
    """The same for one sphere per row: row b of `imag`, `real` `(B, C)` with `alpha0[b]`, `gamma[b]`: `(B, C)`."""
    return _van_de_hulst(imag[:, None, :], real[:, None, :], np.asarray(alpha0)[:, None, None],
                         np.asarray(gamma)[:, None, None], wn)[:, 0]


def sphere_parameters(radius: np.ndarray, index: np.ndarray, h: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """ME-EMSC's alpha0 = 4π·a·(n0 − 1) and gamma = h·ln 10 / (4π·½π·(n0 − 1)·a) for radii a (µm) and
    indices n0, element by element."""
    a, n0 = np.asarray(radius, dtype=np.float64) * 1e-6, np.asarray(index, dtype=np.float64)
    return 4 * np.pi * a * (n0 - 1), h * np.log(10) / (4 * np.pi * 0.5 * np.pi * (n0 - 1) * a)


def sphere_extinctions(spectra: np.ndarray, wn: np.ndarray, radius: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Per row of `spectra` `(B, C)`, the extinction of an absorbing sphere of its own `radius` (µm) and
    `index` whose complex index comes from that row (normalised to max 1): `(B, C)`, vectorised."""
    x = np.atleast_2d(np.asarray(spectra, dtype=np.float64))
    alpha0, gamma = sphere_parameters(np.atleast_1d(radius), np.atleast_1d(index))
    imag, real = complex_index(np.maximum(x / x.max(axis=1, keepdims=True), 0), wn)
    return paired_extinction(imag, real, alpha0, gamma, wn)


def sphere_extinction(spectrum: np.ndarray, wn: np.ndarray, radius: float, index: float) -> np.ndarray:
    """Extinction of one absorbing sphere whose index comes from `spectrum` (normalised to max 1)."""
    return sphere_extinctions(spectrum[None], wn, np.array([radius]), np.array([index]))[0]


def mie_directions(reference: np.ndarray, wn: np.ndarray, alpha0: np.ndarray, gamma: np.ndarray,
                   ncomp: int) -> tuple[np.ndarray, np.ndarray]:
    """Per reference `(B, C)`: the `ncomp` leading directions `(B, ncomp, C)` of its Mie curves made
    orthogonal to it (uncentred, as a truncated SVD), and the Gram eigenvalues, largest first."""
    q = extinction(*complex_index(np.maximum(reference, 0), wn), alpha0, gamma, wn)
    unit = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    q = q - np.einsum("bkc,bc->bk", q, unit)[:, :, None] * unit[:, None, :]
    w, v = np.linalg.eigh(q @ q.transpose(0, 2, 1))
    w, v = w[:, ::-1], v[:, :, ::-1]
    comps = v[:, :, :ncomp].transpose(0, 2, 1) @ q
    return comps / np.linalg.norm(comps, axis=2, keepdims=True), w


def fit_model(x: np.ndarray, comps: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least squares of each `x` row on [1, its comps, its reference]: (coefficients, residual, design)."""
    design = np.concatenate([np.ones((len(x), 1, x.shape[1])), comps, reference[:, None, :]], axis=1)
    gram = design @ design.transpose(0, 2, 1)
    coef = np.linalg.solve(gram, np.einsum("bkc,bc->bk", design, x)[..., None])[..., 0]
    return coef, x - np.einsum("bk,bkc->bc", coef, design), design


class MEEMSC:
    """ME-EMSC with per-pixel iterations against `reference` on ascending `wn` (cm⁻¹)."""

    def __init__(self, reference: np.ndarray, wn: np.ndarray, *, normalise: bool = True, max_iter: int = 30,
                 ncomp: int | None = None, explained: float = 99.96, h: float = 0.25, block: int = 256) -> None:
        self.wn = np.asarray(wn, dtype=np.float64)
        if not np.all(np.diff(self.wn) > 0):
            raise ValueError("the wavenumber axis must ascend")
        self.scale = float(np.max(reference)) if normalise else 1.0
        self.reference = np.maximum(np.asarray(reference, dtype=np.float64) / self.scale, 0)
        a, n0 = np.linspace(2, 7.1, 10), np.linspace(1.1, 1.4, 10)  # µm, and the sphere's index
        self.alpha0, self.gamma = sphere_parameters(a, n0, h)
        comps, w = mie_directions(self.reference[None], self.wn, self.alpha0, self.gamma, 30)
        share = np.cumsum(np.clip(w[0], 0, None)) / np.clip(w[0], 0, None).sum() * 100
        self.ncomp = ncomp or int(np.argmax(share > explained) + 1)
        self.comps = comps[0, :self.ncomp]
        self.max_iter, self.block = max_iter, block
        axis = 2 * (self.wn - self.wn.min()) / np.ptp(self.wn) - 1
        self.basic = np.stack([np.ones_like(axis), axis, axis**2, self.reference], axis=1)
        self.basic_solver = np.linalg.pinv(self.basic)

    def condition(self) -> float:
        """Condition number of the first iteration's design."""
        return float(np.linalg.cond(np.column_stack([np.ones(len(self.wn)), self.comps.T, self.reference])))

    def transform(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(corrected spectra, iterations, first fit's multiplicative term) per row of `x`."""
        x = np.asarray(x, dtype=np.float64) / self.scale
        out, iters, first = np.empty_like(x), np.zeros(len(x), int), np.empty(len(x))
        for s in range(0, len(x), self.block):
            sl = slice(s, s + self.block)
            out[sl], iters[sl], first[sl] = self._block(x[sl])
        return out * self.scale, iters, first

    def _correct(self, x: np.ndarray, coef: np.ndarray, design: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a = coef[:, -1]
        ok = a > MIN_SCALE
        return (x - np.einsum("bk,bkc->bc", coef[:, :-1], design[:, :-1])) / np.where(ok, a, 1)[:, None], ok

    def _block(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = len(x)
        coef, res, design = fit_model(x, np.broadcast_to(self.comps, (n, *self.comps.shape)),
                                      np.broadcast_to(self.reference, x.shape))
        first = coef[:, -1].copy()
        corrected, active = self._correct(x, coef, design)
        iters = np.ones(n, int)
        rmse = [np.round(np.sqrt(np.mean(res**2, axis=1)), 4)]
        for it in range(2, self.max_iter + 1):
            idx = np.flatnonzero(active)
            if idx.size == 0:
                break
            b = corrected[idx] @ self.basic_solver.T  # scale the corrected spectrum to the reference
            scaled = b[:, 3] > MIN_SCALE
            ref = np.maximum((corrected[idx] - b[:, :3] @ self.basic[:, :3].T)
                             / np.where(scaled, b[:, 3], 1)[:, None], 0)
            comps, _ = mie_directions(ref, self.wn, self.alpha0, self.gamma, self.ncomp)
            coef, res, design = fit_model(x[idx], comps, ref)
            new, ok = self._correct(x[idx], coef, design)
            ok &= scaled
            corrected[idx[ok]], iters[idx[ok]] = new[ok], it
            now = rmse[-1].copy()
            now[idx] = np.round(np.sqrt(np.mean(res**2, axis=1)), 4)
            stop = ~ok | (now[idx] > rmse[-1][idx])
            if len(rmse) > 1:
                stop |= (now[idx] == rmse[-1][idx]) & (now[idx] == rmse[-2][idx])
            active[idx[stop]] = False
            rmse.append(now)
        return corrected, iters, first


def check(directory: Path) -> None:
    """Against the reference implementation's published outputs (every 20th channel)."""
    raw = np.loadtxt(directory / "MieStd1_rawSpec.csv", usecols=np.arange(1, 779), delimiter=",")
    ref = np.loadtxt(directory / "MieStd2_refSpec.csv", usecols=np.arange(1, 752), delimiter=",")
    expected = np.loadtxt(directory / "MieStd3_corr.csv", usecols=np.arange(1, 40), delimiter=",")
    reference = np.interp(raw[0], ref[0], ref[1])
    for row, (name, kw) in enumerate((("default, at most 45 iterations", {"max_iter": 45}),
                                      ("14 components", {"ncomp": 14}), ("one iteration", {"max_iter": 1}))):
        me = MEEMSC(reference, raw[0], normalise=False, **kw)
        corrected, iters, _ = me.transform(raw[1][None])
        diff = np.abs(corrected[0, ::20] - expected[row]).max()
        print(f"check, {name}: {me.ncomp} components (condition {me.condition():.0f}), {iters[0]} iterations, "
              "largest difference from MATLAB "
              f"{diff:.1e} (values up to {np.abs(expected[row]).max():.2f})")


def trial(seed: int, pixels: int) -> pd.DataFrame:
    paths = {v: demo_data(f"scatter64_seed{seed}_{v}", 6, 64, seed, v == "scattered") for v in ("clean", "scattered")}
    sets = {(v, s): load_dataset(p, split=s) for v, p in paths.items() for s in ("normal_train", "abnormal")}
    train = sets["scattered", "normal_train"]
    wn, rule = train.wavenumbers, TissueRule.fit(train)
    rng = np.random.default_rng(seed)
    picks = {s: np.sort(rng.choice(np.flatnonzero(sets["clean", s].labels > 0),
                                   min(pixels, int((sets["clean", s].labels > 0).sum())), replace=False))
             for s in ("normal_train", "abnormal")}
    x = {(v, s): sets[v, s].to_array()[picks[s]] for v, s in sets}
    tumour = anomaly.ground_truth_anomaly(sets["scattered", "abnormal"])[picks["abnormal"]].astype(bool)
    variants = {"clean": (x["clean", "normal_train"], x["clean", "abnormal"]),
                "scattered": (x["scattered", "normal_train"], x["scattered", "abnormal"])}
    for spec in ("emsc(2,1)", "emsc(2,0)"):
        pre = Preprocessor(spec).fit(wn, rule.select(train))
        variants[spec] = (pre.transform(variants["scattered"][0]), pre.transform(variants["scattered"][1]))
    clean_reference = TissueRule.fit(sets["clean", "normal_train"]).select(sets["clean", "normal_train"])
    for name, reference in (("ME-EMSC", rule.select(train).to_array().mean(axis=0)),
                            ("ME-EMSC, clean reference", clean_reference.to_array().mean(axis=0))):
        t = time.perf_counter()
        me = MEEMSC(reference, wn)
        (tr, _, _), (ab, iters, first) = me.transform(variants["scattered"][0]), me.transform(variants["scattered"][1])
        variants[name] = (tr, ab)
        print(f"seed {seed}, {name}: {me.ncomp} components, condition {me.condition():.0f}; "
              f"{len(tr) + len(ab)} pixels in {time.perf_counter() - t:.0f} s; iterations median "
              f"{np.median(iters):.0f}, max {iters.max()}; first multiplicative term < 0 on {np.mean(first < 0):.1%} "
              f"of tissue pixels, ≤ {MIN_SCALE} on {np.mean(first <= MIN_SCALE):.1%}", flush=True)
    rows = []
    for name, (fit_on, scored) in variants.items():
        all_pos = apparent_peak_position(np.vstack([fit_on, scored]), wn)
        pos = apparent_peak_position(scored, wn)
        pca = PCA(2, random_state=seed).fit(fit_on)
        error = ((scored - pca.inverse_transform(pca.transform(scored))) ** 2).mean(axis=1)
        rows.append({"seed": seed, "variant": name, "amide I s.d. (cm⁻¹)": all_pos.std(),
                     "tumour − normal (cm⁻¹)": pos[tumour].mean() - pos[~tumour].mean(),
                     "PCA-2 AUROC": roc_auc_score(tumour, error)})
    return pd.DataFrame(rows)


def own_model(seed: int, pixels: int) -> pd.DataFrame:
    """ME-EMSC on scattering of its own kind: the clean demo's tissue pixels A (normal training and
    abnormal scans) plus, per pixel, s·Qext of an absorbing sphere whose index comes from the pixel's
    own A (normalised to a maximum of 1, as ME-EMSC does), radius and index drawn uniformly from the
    model's ranges (off its grid), a path-length factor m (log-normal, s.d. 0.1) and an offset c:
    x = m·A + s·Qext + c, with s·mean(Qext) = 0.1–0.3 × the spectrum's maximum. Whether ME-EMSC
    recovers A on the lab's 950–1800 cm⁻¹ when the scattering is what it models."""
    path = demo_data(f"scatter64_seed{seed}_clean", 6, 64, seed)
    sets = {s: load_dataset(path, split=s) for s in ("normal_train", "abnormal")}
    wn = sets["abnormal"].wavenumbers
    rng = np.random.default_rng(1000 + seed)
    clean, scattered, tumour = {}, {}, np.zeros(0, bool)
    for name, ds in sets.items():
        tissue = np.flatnonzero(ds.labels > 0)
        pick = np.sort(rng.choice(tissue, min(pixels, tissue.size), replace=False))
        a = ds.to_array()[pick].astype(np.float64)
        top = a.max(axis=1, keepdims=True)
        radius, index = rng.uniform(2, 7.1, len(a)), rng.uniform(1.1, 1.4, len(a))
        q = sphere_extinctions(a, wn, radius, index)
        s = rng.uniform(0.1, 0.3, (len(a), 1)) * top / q.mean(axis=1, keepdims=True)
        m = np.exp(rng.normal(0, 0.1, (len(a), 1)))
        clean[name] = a
        scattered[name] = m * a + s * q + rng.normal(0, 0.01, (len(a), 1)) * top
        if name == "abnormal":
            tumour = anomaly.ground_truth_anomaly(ds)[pick].astype(bool)
    fitted_on = scattered["normal_train"]
    variants = {"clean": (clean["normal_train"], clean["abnormal"]),
                "scattered": (fitted_on, scattered["abnormal"])}
    for spec in ("emsc(2,1)", "emsc(2,0)"):
        pre = Preprocessor(spec).fit(wn, fitted_on)
        variants[spec] = (pre.transform(fitted_on), pre.transform(scattered["abnormal"]))
    for name, reference in (("ME-EMSC", fitted_on.mean(axis=0)),
                            ("ME-EMSC, clean reference", clean["normal_train"].mean(axis=0))):
        me = MEEMSC(reference, wn)
        variants[name] = (me.transform(fitted_on)[0], me.transform(scattered["abnormal"])[0])
    rows = []
    for name, (tr, ab) in variants.items():
        pos = apparent_peak_position(ab, wn)
        both = np.vstack([tr, ab])
        truth = np.vstack([clean["normal_train"], clean["abnormal"]])
        # shape error: each corrected spectrum against its clean A, after the best scale and offset
        centred_t = truth - truth.mean(axis=1, keepdims=True)
        centred_b = both - both.mean(axis=1, keepdims=True)
        scale = (centred_t * centred_b).sum(axis=1, keepdims=True) / (centred_t**2).sum(axis=1, keepdims=True)
        shape_error = np.sqrt(np.mean((centred_b / np.where(scale > 0, scale, np.nan) - centred_t) ** 2, axis=1))
        rows.append({"seed": seed, "variant": name, "amide I s.d. (cm⁻¹)": apparent_peak_position(both, wn).std(),
                     "tumour − normal (cm⁻¹)": pos[tumour].mean() - pos[~tumour].mean(),
                     "shape error ÷ max": float(np.nanmedian(shape_error / truth.max(axis=1)))})
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 13, 14])
    ap.add_argument("--pixels", type=int, default=1200, help="tissue pixels sampled from each set")
    ap.add_argument("--check", type=Path, help="folder with orange-spectroscopy's MieStd*.csv")
    a = ap.parse_args()
    print(f"machine: {machine()}; {time.strftime('%Y-%m-%d %H:%M')}")
    if a.check:
        check(a.check)
    frame = pd.concat([trial(seed, a.pixels) for seed in a.seeds], ignore_index=True)
    print(frame.round(3).to_string(index=False))
    clean = frame[frame.variant == "clean"].set_index("seed")["amide I s.d. (cm⁻¹)"]
    spread = frame.assign(ratio=frame["amide I s.d. (cm⁻¹)"] / frame.seed.map(clean))
    means = spread.groupby("variant", sort=False)[[*frame.columns[2:], "ratio"]].mean()
    print(f"\nmean over seeds:\n{means.round(3).to_string()}")
    print("\nScattering of ME-EMSC's own kind on the clean demo's tissue (own_model):")
    own = pd.concat([own_model(seed, a.pixels // 2) for seed in a.seeds], ignore_index=True)
    print(own.round(3).to_string(index=False))
    means = own.groupby("variant", sort=False)[list(own.columns[2:])].mean()
    print(f"\nmean over seeds:\n{means.round(3).to_string()}")


if __name__ == "__main__":
    main()
