"""How long `epochs="auto"` trains, and what the held-out figures are when it stops (issue 31).

On fresh demo seeds and layouts (`--seeds`, `--layouts` as SCANSxSIZE, a third of the scans
abnormal; the demo's own split file), the default model is trained with `epochs="auto"` on the
normal training scans, validated on the normal validation scan, and measured on the held-out scans:
epochs trained, the best epoch and how many came after it, the wall time of `fit`, the held-out
RMSE ÷ PCA at the same latent size (normal test scans), and the tumour and paraffin AUROC (abnormal
scans, tissue by the model's rule). Run it on two commits to compare two training rules on the same
data (`git worktree add /tmp/old <commit>` and `PYTHONPATH=/tmp/old python -m benchmarks.training_length`),
or against the whole plan with no early stopping (`--patience 0`: every epoch `"auto"` plans is trained).
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time

import pandas as pd

from benchmarks.common import demo_data, machine, patience_options
from spectra_vae import SpectraVAE, anomaly, load_dataset
from spectra_vae.views.analysis import compare_with_pca


def layout(text: str) -> tuple[int, int]:
    scans, _, size = text.partition("x")
    return int(scans), int(size)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[41, 42, 43], help="demo generator seeds")
    ap.add_argument("--layouts", type=layout, nargs="+", default=[(6, 64), (8, 96)], help="SCANSxSIZE")
    ap.add_argument("--training-seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--scattered", action="store_true", help="the demo's uncorrected (scattered) variant")
    ap.add_argument("--preprocess", default="", help="e.g. emsc, for the scattered variant")
    ap.add_argument("--patience", type=int, default=None,
                    help="0: no early stopping, every planned epoch is trained (the reference a stopping rule "
                    "is measured against); default: the estimator's own")
    args = ap.parse_args()
    import spectra_vae

    commit = subprocess.run(["git", "-C", str(spectra_vae.__path__[0]), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    print(f"command: python -m benchmarks.training_length {shlex.join(sys.argv[1:])}\n"
          f"spectra_vae from {spectra_vae.__path__[0]} at commit {commit}\nmachine: {machine()}\n", flush=True)
    rows = []
    for n_scans, size in args.layouts:
        for seed in args.seeds:
            folder = demo_data(f"length_{n_scans}x{size}_s{seed}{'_scattered' if args.scattered else ''}", n_scans,
                               size, seed, scatter=args.scattered)
            train, val, test, ab = (load_dataset(folder, split=s)
                                    for s in ("normal_train", "normal_val", "normal_test", "abnormal"))
            for training_seed in args.training_seeds:
                t = time.perf_counter()
                vae = SpectraVAE(seed=training_seed, preprocess=args.preprocess, verbose=False,
                                 **patience_options(args.patience)).fit(train, validation=val)
                seconds = time.perf_counter() - t
                h = vae.history
                table = compare_with_pca(vae, train, test)
                mask = vae.tissue_mask(ab)
                kinds = anomaly.evaluate_kinds({"VAE": vae.anomaly_score(ab)}, ab, mask)["AUROC"]
                row = {"layout": f"{n_scans}x{size}", "seed": seed, "training seed": training_seed,
                       "epochs": len(h), "planned": vae.epochs_, "best epoch": vae.best_epoch_,
                       "after best": len(h) - vae.best_epoch_, "fit s": round(seconds, 1),
                       "rmse ÷ PCA": round(table.loc["VAE", "rmse"] / table.loc["PCA", "rmse"], 4),
                       **{f"AUROC {kind}": round(float(v), 4) for (kind, _), v in kinds.items()}}
                rows.append(row)
                print(pd.Series(row).to_frame().T.to_string(index=False), flush=True)
    frame = pd.DataFrame(rows)
    print("\nall runs:\n" + frame.to_string(index=False))
    numeric = frame.drop(columns=["layout", "seed", "training seed"])
    print("\nmean over runs:\n" + numeric.mean().round(4).to_string())


if __name__ == "__main__":
    main()
