"""Issue 13 goals: scattering in the demo, and EMSC to correct it.

1. Realism: the apparent amide I position (maximum in 1600–1700 cm⁻¹, parabola through the top
   three channels) spreads across tissue pixels (ground truth) at least 3× as much in the
   scattered variant as in the clean one (same seed, same pixels).
2. Anomaly detection: train on the normal scans of a variant, score the abnormal scans' tissue
   (the model's tissue rule) with the current `vae.anomaly_score`, AUROC of tumour against normal
   tissue; PCA and RX on the same pixels and preprocessing. Clean, clean with `emsc(2,0)` (basic
   EMSC, the step's default) and with `emsc(2,1)` (with the dispersion term), scattered without
   correction and with either. Goal: scattered with emsc ≥ 0.95 × clean. After
   `emsc` the VAE's monitor weights residuals by each pixel's noise (see `spectra_vae.anomaly.monitor`);
   `VAE, unweighted` is the same model without that. Then, without training, PCA and RX by
   preprocessing: what dividing each spectrum does to them, and PCA's error with the same weighting.
3. Speed: EMSC (reference fit and correction) and rubberband on one 278×278 scattered scan, with
   the per-spectrum rubberband it replaced on a sample of the same pixels.

`python -m benchmarks.scatter` (`--skip-auroc`, `--skip-timing` run a part; SPECTRA_VAE_BENCH_DATA
puts the generated scans elsewhere than data/bench).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from benchmarks.common import demo_data, epochs_arg, machine, patience_options
from spectra_vae import SpectraVAE, anomaly, load_dataset
from spectra_vae.anomaly.monitor import noise_level, noise_weights
from spectra_vae.core.scattering import peak_position_spread
from spectra_vae.preprocess.diagnostics import pixel_terms
from spectra_vae.preprocess.hull import lower_hull
from spectra_vae.preprocess.pipeline import Preprocessor
from spectra_vae.preprocess.tissue import TissueRule
from spectra_vae.views.analysis import fit_pca, pca_errors

# Until 2026-11-26 (seventh session) `emsc` meant emsc(2,1), and the variants were named "clean, emsc"
# and "scattered, emsc" for it (benchmarks/RESULTS.md).
VARIANTS = (("clean", False, ""), ("clean, emsc(2,0)", False, "emsc(2,0)"), ("clean, emsc(2,1)", False, "emsc(2,1)"),
            ("scattered", True, ""), ("scattered, emsc(2,0)", True, "emsc(2,0)"),
            ("scattered, emsc(2,1)", True, "emsc(2,1)"))


def per_spectrum_rubberband(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """`rubberband` as it was before it was vectorised: Andrew's monotone chain, one spectrum at a time."""
    order = np.argsort(x)
    xs, ys = x[order], y[order].astype(np.float64)
    hull: list[int] = []
    for i in range(len(xs)):
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            if (xs[b] - xs[a]) * (ys[i] - ys[a]) - (ys[b] - ys[a]) * (xs[i] - xs[a]) <= 0:
                hull.pop()
            else:
                break
        hull.append(i)
    out = np.empty_like(ys)
    out[order] = np.interp(xs, xs[hull], ys[hull])
    return out


def amide_i_spread(size: int, seeds: list[int]) -> None:
    print(f"\n1. Apparent amide I position over tissue pixels (ground truth), 6 scans of {size}×{size}, clean vs "
          "scattered (same seed, same pixels); emsc fitted on each variant's tissue pixels")
    for seed in seeds:
        clean = load_dataset(demo_data(f"scatter{size}_seed{seed}_clean", 6, size, seed))
        scattered = load_dataset(demo_data(f"scatter{size}_seed{seed}_scattered", 6, size, seed, scatter=True))
        tissue = np.flatnonzero(clean.labels > 0)
        c, s = clean.select_pixels(tissue), scattered.select_pixels(tissue)
        xc, xs = c.to_array(), s.to_array()
        table = peak_position_spread({
            "clean": xc, "scattered": xs,
            **{f"{name}, {spec}": Preprocessor(spec).fit(d.wavenumbers, d).transform(x)
               for spec in ("emsc(2,1)", "emsc(2,0)") for name, d, x in (("scattered", s, xs), ("clean", c, xc))}},
            clean.wavenumbers)
        print(f"seed {seed}:\n{table.round(2).to_string()}")


def auroc(size: int, seeds: list[int], epochs: int | str, train_seeds: list[int] | None = None,
          variants: list[str] | None = None, patience: int | None = None) -> None:
    """`train_seeds`: train each variant once per training seed (default: the data seed) and report
    the spread between them; `variants`: only these names of VARIANTS; `patience`: the estimator's
    (None: its default)."""
    print(f"\n2. AUROC, tumour vs normal tissue of the abnormal scans, 6 scans of {size}×{size}, epochs {epochs}")
    rows = []
    chosen = [v for v in VARIANTS if variants is None or v[0] in variants]
    for seed, train_seed in ((s, t) for s in seeds for t in (train_seeds or [s])):
        for name, scatter, preprocess in chosen:
            path = demo_data(f"scatter{size}_seed{seed}_{'scattered' if scatter else 'clean'}", 6, size, seed, scatter)
            train, val = load_dataset(path, split="normal_train"), load_dataset(path, split="normal_val")
            ab = load_dataset(path, split="abnormal")
            t = time.perf_counter()
            vae = SpectraVAE(epochs=epochs, seed=train_seed, preprocess=preprocess, verbose=False,
                             **patience_options(patience)).fit(train, validation=val)
            scores = anomaly.baseline_scores(vae, train, ab)
            if vae.monitor_.noise_reference is not None:  # what the noise weighting of residuals adds
                scores["VAE, unweighted"] = vae.fit_anomaly_model(train, val, noise_weighted=False).anomaly_score(ab)
            table = anomaly.evaluate(scores, anomaly.ground_truth_anomaly(ab), vae.tissue_mask(ab))
            best = float(vae.history["val_loss"].min()) if "val_loss" in vae.history else float("nan")
            row = {"seed": seed, "train seed": train_seed, "variant": name, **table["AUROC"].to_dict(),
                   "epochs run": len(vae.history), "planned": vae.epochs_, "best val loss": best,
                   "s": time.perf_counter() - t}
            rows.append(row)
            print("  ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()), flush=True)
    frame = pd.DataFrame(rows)
    scores = [c for c in frame.columns
              if c not in ("seed", "train seed", "variant", "epochs run", "planned", "best val loss", "s")]
    if train_seeds:
        spread = frame.groupby(["variant", "seed"], sort=False)["VAE"].agg(["min", "max", "mean"])
        print(f"\nVAE AUROC over training seeds {train_seeds}:\n{spread.round(3).to_string()}")
        return
    summary = frame.pivot(index="variant", columns="seed", values="VAE").loc[[v[0] for v in chosen]]
    summary["mean"] = summary.mean(axis=1)
    print(f"\nVAE AUROC per seed:\n{summary.round(3).to_string()}")
    for variant, goal in (("scattered, emsc(2,0)", " (emsc's default; goal ≥ 0.95)"),
                          ("scattered, emsc(2,1)", " (goal ≥ 0.95)"), ("scattered", "")):
        if variant in summary.index and "clean" in summary.index:
            ratio = summary.loc[variant] / summary.loc["clean"]
            print(f"{variant} ÷ clean: {', '.join(f'{v:.3f}' for v in ratio)}{goal}")
    print(f"\nmean AUROC over seeds, every score:\n{frame.groupby('variant')[scores].mean().round(3).to_string()}")


def normalisation_effect(size: int, seeds: list[int]) -> None:
    """Why a correction that divides each spectrum (emsc, snv) can lower AUROC: PCA and RX only (no
    training), fitted on the normal training scans' tissue after each preprocessing, scored on the
    abnormal scans' tissue, and on the tissue where EMSC's multiplicative term a > 0.6 (thin tissue,
    whose noise division amplifies, left out)."""
    print(f"\n2b. PCA (2 comp.) / RX AUROC by preprocessing, fitted on tissue pixels, 6 scans of {size}×{size}")
    rows = []
    for seed in seeds:
        for variant, scatter in (("clean", False), ("scattered", True)):
            path = demo_data(f"scatter{size}_seed{seed}_{variant}", 6, size, seed, scatter)
            train, ab = load_dataset(path, split="normal_train"), load_dataset(path, split="abnormal")
            rule = TissueRule.fit(train)
            truth, tissue = anomaly.ground_truth_anomaly(ab), rule.mask(ab)
            a = pixel_terms(Preprocessor("emsc(2,1)").fit(train.wavenumbers, rule.select(train)), ab)["multiplicative"]
            thick = tissue & (a.to_numpy() > 0.6)
            for spec in ("", "emsc(2,1)", "emsc(2,0)", "snv"):
                pre = Preprocessor(spec).fit(train.wavenumbers, rule.select(train))
                fit_on = rule.select(train.preprocessed(pre))
                ds = ab.preprocessed(pre)
                scores = {"PCA": pca_errors(fit_pca(fit_on, 2, seed=seed), ds),
                          "RX": anomaly.RXDetector().fit(fit_on).score_samples(ds)}
                # the residual weighting the VAE's monitor uses after such steps, applied to PCA's error
                reference = float(np.median(noise_level(fit_on.to_array())))
                scores["PCA, noise-weighted"] = scores["PCA"] * noise_weights(ds.to_array(), reference)
                for where, mask in (("tissue", tissue), ("tissue, a > 0.6", thick)):
                    auc = anomaly.evaluate(scores, truth, mask)["AUROC"]
                    rows.append({"seed": seed, "variant": variant, "preprocess": spec or "none", "pixels": where,
                                 **{k: auc[k] for k in scores}})
    frame = pd.DataFrame(rows).groupby(["variant", "preprocess", "pixels"], sort=False)[
        ["PCA", "PCA, noise-weighted", "RX"]].mean()
    print(f"mean over seeds {seeds}:\n{frame.round(3).to_string()}")


def timing(size: int) -> None:
    path = demo_data(f"scatter{size}_timing", 1, size, seed=0, scatter=True)
    ds = load_dataset(path)
    print(f"\n3. Speed on one scattered {size}×{size} scan ({len(ds)} pixels × {ds.n_channels} channels)")
    t = time.perf_counter()
    rule = TissueRule.fit(ds)
    pre = Preprocessor("emsc").fit(ds.wavenumbers, rule.select(ds))
    t_fit = time.perf_counter() - t
    x = ds.to_array()
    t = time.perf_counter()
    pre.transform(x)
    t_emsc = time.perf_counter() - t
    t = time.perf_counter()
    ds.preprocessed(pre).to_array()
    t_stream = time.perf_counter() - t
    print(f"emsc: reference from the tissue pixels (tissue rule included) {t_fit:.2f} s; correction of every pixel "
          f"in memory {t_emsc:.2f} s, streamed from the file in chunks {t_stream:.2f} s")
    wn = ds.wavenumbers
    t = time.perf_counter()
    hull = lower_hull(wn, x)
    t_hull = time.perf_counter() - t
    sample = np.random.default_rng(0).choice(len(x), 5000, replace=False)
    t = time.perf_counter()
    old = np.stack([per_spectrum_rubberband(wn, x[i]) for i in sample])
    t_old = (time.perf_counter() - t) * len(x) / len(sample)
    print(f"rubberband, vectorised: {t_hull:.2f} s for every pixel; per spectrum (before): {t_old:.1f} s "
          f"extrapolated from 5000 pixels; largest difference on those {np.abs(hull[sample] - old).max():.2g}")
    clean = load_dataset(demo_data(f"scatter{size}_timing_clean", 1, size, seed=0))
    tissue = np.flatnonzero(clean.labels > 0)
    table = peak_position_spread({"clean": clean.select_pixels(tissue).to_array(),
                                  "scattered": ds.select_pixels(tissue).to_array()}, wn)
    print(f"apparent amide I position on this scan's tissue pixels:\n{table.round(2).to_string()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=epochs_arg, default="auto",
                    help="auto (the default: the library's) or a whole number")
    ap.add_argument("--timing-size", type=int, default=278)
    ap.add_argument("--train-seeds", type=int, nargs="+", help="train each variant with each of these seeds")
    ap.add_argument("--variants", nargs="+", help=f"only these of {[v[0] for v in VARIANTS]}")
    ap.add_argument("--patience", type=int, help="the estimator's patience (default: its own; 0: none)")
    ap.add_argument("--skip-auroc", action="store_true")
    ap.add_argument("--skip-timing", action="store_true")
    a = ap.parse_args()
    unknown = sorted(set(a.variants or []) - {v[0] for v in VARIANTS})
    if unknown:  # commands in RESULTS.md written before the seventh session say "clean, emsc" for emsc(2,1)
        ap.error(f"unknown variants {unknown}; the variants are {[v[0] for v in VARIANTS]} "
                 "(\"…, emsc\" in older commands is \"…, emsc(2,1)\")")
    print(f"machine: {machine()}; {time.strftime('%Y-%m-%d %H:%M')}")
    amide_i_spread(a.size, a.seeds)
    if not a.skip_auroc:
        auroc(a.size, a.seeds, a.epochs, a.train_seeds, a.variants, a.patience)
    normalisation_effect(a.size, a.seeds)
    if not a.skip_timing:
        timing(a.timing_size)


if __name__ == "__main__":
    main()
