"""Issue 6 goal: AUROC of tumour vs normal tissue pixels in abnormal demo scans — VAE, PCA, RX.

The VAE (defaults) and both baselines are fitted on the normal training scans only; scores are
evaluated on the tissue pixels (spectral mask) of the abnormal scans against ground truth. Run
over several demo seeds so one lucky draw does not decide it.
"""

from __future__ import annotations

import argparse

import pandas as pd

from benchmarks.common import demo_data, machine
from spectra_vae import SpectraVAE, anomaly, load_dataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=50)
    a = ap.parse_args()
    print(f"machine: {machine()}")
    rows = []
    for seed in a.seeds:
        path = demo_data(f"anomaly{a.size}_seed{seed}", 6, a.size, seed=seed)
        train, val = load_dataset(path, split="normal_train"), load_dataset(path, split="normal_val")
        ab = load_dataset(path, split="abnormal")
        vae = SpectraVAE(epochs=a.epochs, seed=seed, verbose=False).fit(train, validation=val)
        scores = anomaly.baseline_scores(vae, train, ab)
        table = anomaly.evaluate(scores, anomaly.ground_truth_anomaly(ab), vae.tissue_mask(ab))
        rows.append(table["AUROC"].rename(f"seed {seed}"))
        print(f"seed {seed}: " + ", ".join(f"{k} {v:.3f}" for k, v in table["AUROC"].items())
              + f"  ({len(vae.history)} epochs)")
    summary = pd.concat(rows, axis=1)
    summary["mean"] = summary.mean(axis=1)
    summary["min"] = summary.drop(columns="mean").min(axis=1)
    print("\nAUROC, tumour vs normal tissue of abnormal scans:")
    print(summary.round(3).to_string())


if __name__ == "__main__":
    main()
