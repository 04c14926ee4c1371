"""Goal 4: data-parallel training under torchrun — N processes against one, same data and epochs.

Runs `torchrun --standalone --nproc_per_node K -m spectra_vae train …` for K = 1 and K = N on the
same demo data and prints, for each, the wall time, the median epoch time (training and
validation, from the model's history), pixel throughput and held-out RMSE (absorbance) with
PCA at as many components on the same pixels. On CPU the processes use gloo and torchrun gives
each one thread; one process uses all of torch's threads. Each process reads its own shard and
takes `batch_size` pixels per step, so N processes take N× larger steps per optimiser update
with the same learning rate.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import demo_data, machine
from spectra_vae.views.analysis import compare_with_pca
from spectra_vae.workflow import open_run


def run(data: Path, out: Path, nproc: int, epochs: int) -> dict[str, float]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           "-m", "spectra_vae", "train", "--data", str(data), "--epochs", str(epochs), "--out", str(out),
           "--patience", "0"]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    opened = open_run(out)
    vae, splits = opened.vae, opened.splits
    table = compare_with_pca(vae, splits.train, splits.test)
    seconds = vae.history["seconds"].to_numpy()
    epoch = float(np.median(seconds[1:] if len(seconds) > 1 else seconds))
    return {"wall": wall, "epoch": epoch, "px_per_s": len(splits.train) / epoch,
            "vae": table.loc["VAE", "rmse"], "pca": table.loc["PCA", "rmse"],
            "val_rmse": float(vae.history["val_rmse"].iloc[-1]), "train_px": len(splits.train)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--size", type=int, default=128, help="demo scans of SIZE×SIZE (6 scans)")
    ap.add_argument("--epochs", type=int, default=8)
    a = ap.parse_args()
    print(f"machine: {machine()}")
    data = demo_data(f"ddp{a.size}", 6, a.size)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for k in sorted({1, a.nproc}):
            r = results[k] = run(data, Path(tmp) / f"n{k}", k, a.epochs)
            print(f"{k} process(es): {r['wall']:.1f} s wall for {a.epochs} epochs of {r['train_px']} px; "
                  f"median epoch {r['epoch']:.2f} s ({r['px_per_s']:,.0f} px/s); held-out RMSE {r['vae']:.5f} "
                  f"(PCA-2 {r['pca']:.5f}); last val RMSE {r['val_rmse']:.5f}")
    one, many = results[1], results[a.nproc]
    print(f"{a.nproc} processes vs 1: epoch speed-up {one['epoch'] / many['epoch']:.2f}×, "
          f"held-out RMSE ratio {many['vae'] / one['vae']:.2f}")


if __name__ == "__main__":
    main()
