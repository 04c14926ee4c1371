"""Anomaly detection that cannot be tuned to one seed: demo seeds × layouts, calibration, real spectra.

Demo: for each seed and scan layout, a VAE with the default settings is trained on the normal
training scans, calibrated on the normal validation scans, and scored on the held-out scans
(the normal test scans and the abnormal scans). Each anomaly kind (tumour: normal molecules in
shifted proportions; paraffin: a compound normal tissue lacks) is evaluated apart: its pixels
against every normal tissue pixel of the held-out scans, tissue by the model's own rule. The
baselines (RX with Ledoit–Wolf, PCA with T² + Q at the latent size and at 99 % variance) are
fitted on the VAE's own training pixels. Calibration: the flagged fraction of the normal test
scans' tissue at nominal rates of 1 % and 5 %.

Real spectra (`--real`): the labelled FTIR spectra of pure biomolecules (collagen, DNA,
glycogen, lipids; 731 spectra, 902–1801 cm⁻¹) that ship with the orange-spectroscopy package,
fetched from PyPI into the cache at run time and never committed; skipped, saying so, when
PyPI cannot be reached. Held-out class: train on three classes, score the fourth against
held-out spectra of the three. Partial mixtures: held-out spectra of the three with 30 % of a
spectrum of the fourth mixed in, against the same spectra unmixed.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import demo_data, epochs_arg, machine, patience_options
from spectra_vae import SpectraVAE, anomaly, load_dataset
from spectra_vae.io.finite import cache_dir

VAE_METHODS = ("mspc", "inside+q", "t2+q", "inside+t2+q+kl", "inside", "t2", "q", "kl", "elbo", "reconstruction")
LAYOUTS = {"8x64": (8, 64), "6x96": (6, 96)}


def demo_run(seed: int, layout: str, epochs: int | str, n_boot: int,
             patience: int | None = None) -> tuple[pd.DataFrame, dict[str, float]]:
    n_scans, size = LAYOUTS[layout]
    path = demo_data(f"anomaly_{layout}_seed{seed}", n_scans, size, seed=seed)
    train, val, test, ab = (load_dataset(path, split=s) for s in ("normal_train", "normal_val", "normal_test",
                                                                  "abnormal"))
    held_out = load_dataset(path, split=["normal_test", "abnormal"])
    vae = SpectraVAE(epochs=epochs, seed=seed, verbose=False, **patience_options(patience)).fit(train, validation=val)
    mask = vae.tissue_mask(held_out)
    scores = {f"VAE {m}": vae.anomaly_score(held_out, m) for m in VAE_METHODS}
    base = anomaly.baseline_scores(vae, train, held_out, normal_calibration=val, vae_scores=scores["VAE mspc"])
    scores |= {k: v for k, v in base.items() if k != "VAE"}
    table = anomaly.evaluate_kinds(scores, held_out, mask, n_boot=n_boot, seed=seed)
    calibration = {}
    test_mask = vae.tissue_mask(test)
    for rate in (0.01, 0.05):
        vae.calibrate(val, false_positive_rate=rate)
        calibration[f"flagged at {rate:.0%}"] = float(vae.predict(test)[test_mask].mean())
    scans = vae.scan_scores(held_out)  # calibrated at 5 % (the last rate)
    calibration["abnormal scans called"] = f"{int(scans.loc[ab.scans, 'abnormal'].sum())}/{len(ab.scans)}"
    calibration["normal scans called"] = f"{int(scans.loc[test.scans, 'abnormal'].sum())}/{len(test.scans)}"
    calibration["residual directions"] = vae.monitor_.subspace.n_components
    calibration["epochs"] = len(vae.history)
    return table, calibration


def fetch_real_spectra() -> pd.DataFrame | None:
    """orange-spectroscopy's labelled spectra (collagen.csv) from its PyPI wheel, cached; None if unreachable."""
    target = cache_dir() / "datasets" / "orange_spectroscopy_collagen.csv"
    if not target.exists():
        with tempfile.TemporaryDirectory() as tmp:
            proc = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                                   "--only-binary=:all:", "orange-spectroscopy==0.9.3", "-d", tmp],
                                  capture_output=True, text=True)
            wheels = list(Path(tmp).glob("orange_spectroscopy-*.whl"))
            if proc.returncode != 0 or not wheels:
                print(f"real spectra: SKIPPED, could not fetch orange-spectroscopy from PyPI "
                      f"({(proc.stderr or proc.stdout).strip().splitlines()[-1:]})")
                return None
            with zipfile.ZipFile(wheels[0]) as z:
                data = z.read("orangecontrib/spectroscopy/datasets/collagen.csv")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    # Orange's header: row 2 holds column types, row 3 the class flag
    return pd.read_csv(io.StringIO(target.read_text()), skiprows=[1, 2])


def real_runs(frame: pd.DataFrame, seeds: list[int], epochs: int) -> pd.DataFrame:
    classes = sorted(frame["type"].unique())
    spectra = frame.drop(columns="type")
    wn = np.array([float(c) for c in spectra.columns])
    order = np.argsort(wn)
    x_all, wn = spectra.to_numpy(np.float32)[:, order], wn[order]
    rows = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        for unseen in classes:
            normal = np.flatnonzero(frame["type"].to_numpy() != unseen)
            other = np.flatnonzero(frame["type"].to_numpy() == unseen)
            perm = rng.permutation(normal)
            n_tr, n_va = int(0.6 * len(perm)), int(0.2 * len(perm))
            tr, va, te = perm[:n_tr], perm[n_tr : n_tr + n_va], perm[n_tr + n_va :]
            train = load_dataset(x_all[tr], wavenumbers=wn)
            val = load_dataset(x_all[va], wavenumbers=wn)
            # small tables: batches of 64 so a run takes a few hundred optimiser steps
            vae = SpectraVAE(epochs=epochs, batch_size=64, seed=seed, tissue_threshold="none",
                             verbose=False).fit(train, validation=val)
            mixed = 0.7 * x_all[te] + 0.3 * x_all[rng.choice(other, len(te))]
            cases = {"held-out class": np.concatenate([x_all[te], x_all[other]]),
                     "30 % mixture": np.concatenate([x_all[te], mixed])}
            for case, x in cases.items():
                truth = np.r_[np.zeros(len(te), int), np.ones(len(x) - len(te), int)]
                ds = load_dataset(x, wavenumbers=wn)
                scores = {f"VAE {m}": vae.anomaly_score(ds, m) for m in VAE_METHODS}
                base = anomaly.baseline_scores(vae, train, ds, normal_calibration=val,
                                               vae_scores=scores["VAE mspc"])
                scores |= {k: v for k, v in base.items() if k != "VAE"}
                table = anomaly.evaluate(scores, truth)
                for name, auc in table["AUROC"].items():
                    rows.append({"case": case, "unseen": unseen, "seed": seed, "score": name, "AUROC": auc})
    return pd.DataFrame(rows)


def summarise(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    return frame.groupby(by)["AUROC"].agg(["mean", "min", "max", "count"]).round(3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[11, 12, 13, 14, 15])
    ap.add_argument("--layouts", nargs="+", default=list(LAYOUTS), choices=list(LAYOUTS))
    ap.add_argument("--epochs", type=epochs_arg, default=30,
                    help="a whole number, or auto (the library's default)")
    ap.add_argument("--patience", type=int, help="the estimator's patience (default: its own; 0: none)")
    ap.add_argument("--bootstrap", type=int, default=200, help="bootstrap samples over scans for AUROC intervals")
    ap.add_argument("--real", action="store_true", help="also the real-spectra check (fetches from PyPI once)")
    ap.add_argument("--real-only", action="store_true")
    ap.add_argument("--real-seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--real-epochs", type=int, default=200)
    a = ap.parse_args()
    print(f"machine: {machine()}")
    if not a.real_only:
        tables, calib = [], []
        for layout in a.layouts:
            for seed in a.seeds:
                table, cal = demo_run(seed, layout, a.epochs, a.bootstrap, a.patience)
                tables.append(table.assign(seed=seed, layout=layout).reset_index())
                calib.append({"layout": layout, "seed": seed, **cal})
                auc = table["AUROC"].unstack(0)
                print(f"\n{layout} seed {seed}: " + "; ".join(
                    f"{kind}: VAE {auc.loc['VAE mspc', kind]:.3f}, best baseline "
                    f"{auc[kind].drop([i for i in auc.index if i.startswith('VAE')]).max():.3f}"
                    for kind in auc.columns) + f"  | {cal}", flush=True)
        demo = pd.concat(tables)
        print("\nDemo, AUROC per anomaly kind over every seed and layout (mean, worst, best):")
        print(summarise(demo, ["kind", "score"]).sort_values(["kind", "mean"], ascending=[True, False]).to_string())
        print("\nIntervals (95 %, bootstrap over scans), per run:")
        cols = ["layout", "seed", "kind", "score", "AUROC", "AUROC low", "AUROC high"]
        print(demo[demo["score"].isin(["VAE mspc", "RX (Ledoit–Wolf)"])][cols].round(3).to_string(index=False))
        print("\nCalibration on the normal test scans' tissue (threshold from the normal validation scans):")
        print(pd.DataFrame(calib).to_string(index=False))
    if a.real or a.real_only:
        frame = fetch_real_spectra()
        if frame is not None:
            real = real_runs(frame, a.real_seeds, a.real_epochs)
            print(f"\nReal spectra ({len(frame)} labelled FTIR spectra, orange-spectroscopy's collagen.csv), "
                  f"AUROC mean over {len(a.real_seeds)} seeds × 4 unseen classes:")
            print(summarise(real, ["case", "score"]).sort_values(["case", "mean"], ascending=[True, False]).to_string())
            print("\nper unseen class (mean over seeds):")
            print(real.groupby(["case", "unseen", "score"])["AUROC"].mean().unstack(1).round(3).to_string())


if __name__ == "__main__":
    main()
