"""Training that does not blow up: long default runs, with the batch error watched at every step.

- Seed scale (default): 6 demo scans of 278×278; train on the 5 that are not `normal_test`
  (386 420 pixels) with default settings for `--epochs` (12) epochs, without validation, for
  each of `--seeds`; then the held-out RMSE (absorbance) on `normal_test` against PCA with 2
  components fitted on the same training pixels.
- `--big`: one default epoch over the out-of-core set (24 demo scans of 540×540, 12.4 GB,
  streamed), without validation; held out: the seed-scale set's `normal_test` scan (PCA-2 fitted
  on all 7 million training pixels, streamed).

For each run: whether it raised `TrainingError`, the recoveries it made (history), and spikes:
steps whose batch mean squared residual (normalised units) exceeded 10× the median of the 500
steps before (the prelude of a divergence), with the largest such ratio.
"""

from __future__ import annotations

import argparse
import time
from collections import deque

import numpy as np
import torch

from benchmarks.common import anon_memory_mb, demo_data, epochs_arg, machine
from benchmarks.out_of_core import PeakMemory
from spectra_vae import SpectraVAE, TrainingError, load_dataset
from spectra_vae import train as train_module
from spectra_vae.analysis import fit_pca, pca_errors

SPIKE_FACTOR, SPIKE_WINDOW = 10.0, 500


class StepWatch:
    """Records each training step's batch mean squared residual (reads, never changes, the loss)."""

    def __init__(self) -> None:
        self.mse: list[float] = []
        self._real = train_module.elbo_loss

    def __enter__(self) -> StepWatch:
        def watched(x, x_hat, *args, **kwargs):
            if torch.is_grad_enabled():
                self.mse.append(float((x - x_hat).detach().pow(2).mean()))
            return self._real(x, x_hat, *args, **kwargs)

        train_module.elbo_loss = watched
        return self

    def __exit__(self, *exc: object) -> None:
        train_module.elbo_loss = self._real

    def spikes(self) -> tuple[int, float]:
        """(steps above SPIKE_FACTOR × the median of the SPIKE_WINDOW before, the largest ratio)."""
        window: deque[float] = deque(maxlen=SPIKE_WINDOW)
        count, worst = 0, 0.0
        for v in self.mse:
            if len(window) >= 50:
                ratio = v / float(np.median(window))
                worst = max(worst, ratio)
                count += ratio > SPIKE_FACTOR
            window.append(v)
        return count, worst


def run(train, test, label: str, **params) -> None:
    t = time.perf_counter()
    vae = SpectraVAE(verbose=False, **params)
    with StepWatch() as watch, PeakMemory() as mem:
        base = anon_memory_mb()
        try:
            vae.fit(train)
            error = "none"
        except TrainingError as exc:
            error = str(exc)
    h = vae.history_
    spikes, worst = watch.spikes()
    line = (f"{label}: {time.perf_counter() - t:.0f} s, {len(watch.mse)} steps, {len(h)} epochs; TrainingError: "
            f"{error}; recoveries {int(h.recoveries.sum()) if len(h) else 0}; spikes {spikes} (largest ratio "
            f"{worst:.1f}); last train_loss {h.train_loss.iloc[-1] if len(h) else float('nan'):.4g}; "
            f"peak extra anonymous memory {mem.peak - base:.0f} MB")
    if test is not None and error == "none":
        vae_rmse = float(np.sqrt(np.mean(vae.reconstruction_error(test) ** 2)))
        pca_rmse = float(np.sqrt(np.mean(pca_errors(fit_pca(train, vae.latent_dim), test) ** 2)))
        verdict = 'below' if vae_rmse < pca_rmse else 'NOT below'
        line += f"; held-out RMSE {vae_rmse:.5f} (PCA-2 {pca_rmse:.5f}: {verdict})"
    print(line, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=epochs_arg, default=12,
                    help="a whole number, or auto (the library's default)")
    ap.add_argument("--size", type=int, default=278)
    ap.add_argument("--big", action="store_true", help="one default epoch over the out-of-core set instead")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    print(f"machine: {machine()}")
    if a.big:
        t = time.perf_counter()
        big = load_dataset(demo_data("big540x24", 24, 540))
        # held out: a scan of another demo set (the seed-scale test scan), never trained on
        test = load_dataset(demo_data(f"seed{a.size}", 6, a.size), split="normal_test")
        print(f"out of core: {len(big)} pixels, {len(big) * big.n_channels * 4 / 1e9:.1f} GB float32, opened in "
              f"{time.perf_counter() - t:.0f} s; held-out {test.source} {test.scans}")
        run(big, test, "one default epoch, seed 0", epochs=1, seed=0)
        return
    root = demo_data(f"seed{a.size}", 6, a.size)
    train = load_dataset(root, split=["normal_train", "normal_val", "abnormal"])
    test = load_dataset(root, split="normal_test")
    print(f"seed scale: train on {train.scans} ({len(train)} px), held-out {test.scans}; {a.epochs} default epochs")
    for seed in (int(s) for s in a.seeds.split(",")):
        run(train, test, f"seed {seed}", epochs=a.epochs, seed=seed)


if __name__ == "__main__":
    main()
