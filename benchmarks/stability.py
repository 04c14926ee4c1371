"""Training that does not blow up: long default runs, with the batch error watched at every step.

- Seed scale (default): 6 demo scans of 278×278; train on the 5 that are not `normal_test`
  (386 420 pixels) with default settings for `--epochs` (12) epochs, without validation, for
  each of `--seeds`; then the held-out RMSE (absorbance) on `normal_test` against PCA with 2
  components fitted on the same training pixels.
- `--scattered` trains on the scattered twin of the same scans (`make_demo_dataset(scatter=True)`,
  the lab's uncorrected variant), `--preprocess SPEC` with that preprocessing (`emsc`, as the
  README gives for uncorrected scans); the held-out RMSE is then in the preprocessed space, PCA-2
  fitted on the same preprocessed training pixels (`analysis.compare_with_pca`).
- `--big`: one default epoch over the out-of-core set (24 demo scans of 540×540, 12.4 GB,
  streamed), without validation; held out: the seed-scale set's `normal_test` scan (PCA-2 fitted
  on all 7 million training pixels, streamed). `--preprocess` applies here too (clean scans:
  there is no scattered twin of this set).

For each run: whether it raised `TrainingError`, the recoveries it made (history), and spikes:
steps whose batch mean squared residual (normalised units) exceeded 10× the median of the 500
steps before (the prelude of a divergence), with the largest such ratio. Each spike is listed
with where it came (step, share of the run), the share of its batch's squared residual that its
worst pixel carried (near 1: one odd pixel, not the model) and the median ratio of the 20 steps
after it (near 1: the model was not harmed; a divergence stays high).
"""

from __future__ import annotations

import argparse
import time
from collections import deque
from dataclasses import dataclass

import numpy as np
import torch

from benchmarks.common import anon_memory_mb, demo_data, epochs_arg, machine
from benchmarks.out_of_core import PeakMemory
from spectra_vae import SpectraVAE, TrainingError, load_dataset
from spectra_vae.model import train as train_module
from spectra_vae.views.analysis import compare_with_pca

SPIKE_FACTOR, SPIKE_WINDOW = 10.0, 500


@dataclass(frozen=True)
class Spike:
    step: int  # 0-based training step
    ratio: float  # batch error ÷ the median of the SPIKE_WINDOW steps before
    worst_pixel_share: float  # the share of the batch's squared residual in its worst pixel
    after: float  # median ratio of the AFTER steps that follow (same reference median)


class StepWatch:
    """Records each training step's batch mean squared residual and its worst pixel's share
    (reads, never changes, the loss)."""

    AFTER = 20

    def __init__(self) -> None:
        self.mse: list[float] = []
        self.worst_share: list[float] = []
        self._real = train_module.elbo_loss

    def __enter__(self) -> StepWatch:
        def watched(x, x_hat, *args, **kwargs):
            if torch.is_grad_enabled():
                per_pixel = (x - x_hat).detach().pow(2).sum(dim=1)
                total = float(per_pixel.sum())
                self.mse.append(total / x.numel())
                self.worst_share.append(float(per_pixel.max()) / total if total > 0 else 0.0)
            return self._real(x, x_hat, *args, **kwargs)

        train_module.elbo_loss = watched
        return self

    def __exit__(self, *exc: object) -> None:
        train_module.elbo_loss = self._real

    def spikes(self) -> tuple[list[Spike], float]:
        """(the steps above SPIKE_FACTOR × the median of the SPIKE_WINDOW before, the largest ratio)."""
        window: deque[float] = deque(maxlen=SPIKE_WINDOW)
        found, worst = [], 0.0
        for step, v in enumerate(self.mse):
            if len(window) >= 50:
                median = float(np.median(window))
                ratio = v / median
                worst = max(worst, ratio)
                if ratio > SPIKE_FACTOR:
                    after = self.mse[step + 1:step + 1 + self.AFTER]
                    found.append(Spike(step, ratio, self.worst_share[step],
                                       float(np.median(after)) / median if after else float("nan")))
            window.append(v)
        return found, worst


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
            f"{error}; recoveries {int(h.recoveries.sum()) if len(h) else 0}; spikes {len(spikes)} (largest ratio "
            f"{worst:.1f}); last train_loss {h.train_loss.iloc[-1] if len(h) else float('nan'):.4g}; "
            f"peak extra anonymous memory {mem.peak - base:.0f} MB")
    if test is not None and error == "none":
        # in the model's space (absorbance without preprocessing), PCA fitted on what the VAE sees
        table = compare_with_pca(vae, train, test)["rmse"]
        vae_rmse, pca_rmse = float(table["VAE"]), float(table["PCA"])
        verdict = 'below' if vae_rmse < pca_rmse else 'NOT below'
        line += f"; held-out RMSE {vae_rmse:.5f} (PCA-2 {pca_rmse:.5f}: {verdict})"
    print(line, flush=True)
    n = len(watch.mse)
    for spike in spikes:
        print(f"  spike at step {spike.step} ({spike.step / n:.0%} of the run): {spike.ratio:.1f}x; worst pixel "
              f"{spike.worst_pixel_share:.0%} of the batch's squared residual; next {StepWatch.AFTER} steps "
              f"{spike.after:.2f}x", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=epochs_arg, default=12,
                    help="a whole number, or auto (the library's default)")
    ap.add_argument("--size", type=int, default=278)
    ap.add_argument("--big", action="store_true", help="one default epoch over the out-of-core set instead")
    ap.add_argument("--scattered", action="store_true", help="the scattered twin of the seed-scale scans")
    ap.add_argument("--preprocess", default="", help="the estimator's preprocess, e.g. emsc (default: none)")
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
        run(big, test, "one default epoch, seed 0", epochs=1, seed=0, preprocess=a.preprocess)
        return
    root = (demo_data(f"seed{a.size}_scattered", 6, a.size, scatter=True) if a.scattered
            else demo_data(f"seed{a.size}", 6, a.size))
    train = load_dataset(root, split=["normal_train", "normal_val", "abnormal"])
    test = load_dataset(root, split="normal_test")
    print(f"seed scale{', scattered' if a.scattered else ''}: train on {train.scans} ({len(train)} px), held-out "
          f"{test.scans}; {a.epochs} default epochs{f', preprocess {a.preprocess}' if a.preprocess else ''}")
    for seed in (int(s) for s in a.seeds.split(",")):
        run(train, test, f"seed {seed}", epochs=a.epochs, seed=seed, preprocess=a.preprocess)


if __name__ == "__main__":
    main()
