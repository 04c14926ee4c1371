"""The real-spectra part of `benchmarks.anomaly`: held-out classes and partial mixtures.

The labelled FTIR spectra of pure biomolecules (collagen, DNA, glycogen, lipids; 731 spectra,
902–1801 cm⁻¹) that ship with the orange-spectroscopy package, fetched from PyPI into the cache at
run time and never committed; skipped, saying so, when PyPI cannot be reached. Held-out class:
train on three classes, score the fourth against held-out spectra of the three. Partial mixtures:
held-out spectra of the three with 30 % of a spectrum of the fourth mixed in, against the same
spectra unmixed. A table has no image geometry, so every spectrum is "tissue".
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from benchmarks.common import fetch_from_wheel
from spectra_vae import SpectraVAE, anomaly, load_dataset
from spectra_vae.io.finite import cache_dir


def fetch_real_spectra() -> pd.DataFrame | None:
    """orange-spectroscopy's labelled spectra (collagen.csv) from its PyPI wheel, cached; None if unreachable."""
    target = cache_dir() / "datasets" / "orange_spectroscopy_collagen.csv"
    if not fetch_from_wheel("orange-spectroscopy==0.9.3",
                            {"orangecontrib/spectroscopy/datasets/collagen.csv": target}, "real spectra"):
        return None
    # Orange's header: row 2 holds column types, row 3 the class flag
    return pd.read_csv(io.StringIO(target.read_text()), skiprows=[1, 2])


def real_runs(frame: pd.DataFrame, seeds: list[int], epochs: int, methods: tuple[str, ...]) -> pd.DataFrame:
    """Per seed and unseen class, the AUROC of each VAE score in `methods` and of the fair baselines."""
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
                scores = {f"VAE {m}": vae.anomaly_score(ds, m) for m in methods}
                scores |= anomaly.fit_baselines(vae, train, val).scores(ds)
                table = anomaly.evaluate(scores, truth)
                for name, auc in table["AUROC"].items():
                    rows.append({"case": case, "unseen": unseen, "seed": seed, "score": name, "AUROC": auc})
    return pd.DataFrame(rows)
