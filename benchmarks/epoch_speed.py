"""Epoch speed and time to quality: the public `SpectraVAE.fit` against the lab's prototype loop.

Seed scale: 6 demo scans of 278×278 (463 704 pixels × 442 channels). The prototype runs its own
loop with its own loss and scaling (`benchmarks/prototype.py`); `fit` runs with its defaults.

- **Epoch time.** Whole epochs, the two alternated (A B B A A B ...) so that a drift in the
  machine's speed falls on both, `--reps` times each; median and spread (min–max). For `fit`: the
  whole call with `epochs=1` (reading and normalising the data included) and the epoch alone (the
  history's `seconds`). For the prototype: the epoch alone, and its setup (reading the data into
  memory and scaling it). The arithmetic floor: `fit`'s own loop over batches made in advance.
- **Time to quality.** Both train on the normal training scans and are scored on the normal test
  scan: RMSE (absorbance) of decode(μ). The target is the RMSE the prototype reaches after 5
  epochs; the time to reach it is the wall clock from the start of training (setup included, the
  scoring between epochs excluded) to the end of the first epoch at or below it. `fit` scores the
  held-out scan itself each epoch (`validation=`, included in its time).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from benchmarks import prototype
from benchmarks.common import PremadeBatches, demo_data, loop_epoch, machine
from spectra_vae import SpectraVAE, load_dataset
from spectra_vae.model.train import resolve_device
from spectra_vae.views.analysis import fit_pca, pca_errors


def spread(values: list[float]) -> str:
    return (f"median {statistics.median(values):.2f} s (min {min(values):.2f}, max {max(values):.2f}; "
            f"n = {len(values)}: {', '.join(f'{v:.2f}' for v in values)})")


def prototype_epoch(path: str) -> tuple[float, float]:
    """(setup seconds: reading into memory and scaling, epoch seconds) of the prototype."""
    t = time.perf_counter()
    data = load_dataset(path).to_array()
    scaled, _, _ = prototype.min_max(data)
    model, optimizer, loader = prototype.setup(scaled.astype(np.float32))
    setup = time.perf_counter() - t
    t = time.perf_counter()
    prototype.train_epoch(model, optimizer, loader)
    return setup, time.perf_counter() - t


def fit_epoch(path: str, device: str, precision: str) -> tuple[float, float]:
    """(whole `fit(epochs=1)` call, its epoch's seconds from the history)."""
    t = time.perf_counter()
    vae = SpectraVAE(epochs=1, device=device, precision=precision, verbose=False).fit(load_dataset(path))
    return time.perf_counter() - t, float(vae.history.seconds.iloc[0])


def epoch_times(path: str, reps: int, device: str, precision: str) -> None:
    ds = load_dataset(path)
    print(f"epoch time: {len(ds)} pixels × {ds.n_channels} channels, {reps} repetitions alternated")
    proto_setup, proto, fit_call, fit_ep = [], [], [], []
    for r in range(reps):
        order = ("prototype", "fit") if r % 2 == 0 else ("fit", "prototype")
        for which in order:
            if which == "prototype":
                s, e = prototype_epoch(path)
                proto_setup.append(s)
                proto.append(e)
            else:
                c, e = fit_epoch(path, device, precision)
                fit_call.append(c)
                fit_ep.append(e)
            print(f"  rep {r + 1}: {which} done", flush=True)
    dev = resolve_device(device)
    bs = SpectraVAE().batch_size
    floor = [loop_epoch(PremadeBatches(len(ds), bs, dev), dev, precision)[0] for _ in range(reps)]
    print(f"prototype epoch (batch {prototype.BATCH_SIZE}, per-pixel torch.tensor, BCE + KL): {spread(proto)}")
    print(f"prototype setup (read into memory, min–max):                  {spread(proto_setup)}")
    print(f"fit, the epoch (history seconds; batch {bs}, {precision}):          {spread(fit_ep)}")
    print(f"fit(epochs=1), the whole call (reading and normalising incl.): {spread(fit_call)}")
    print(f"arithmetic floor (fit's loop on batches made in advance):     {spread(floor)}")
    m = statistics.median
    print(f"speed-up per epoch: {m(proto) / m(fit_ep):.2f}× (epoch against epoch), "
          f"{(m(proto) + m(proto_setup)) / m(fit_call):.2f}× (one epoch with setup against fit(epochs=1)); "
          f"fit's epoch / floor: {m(fit_ep) / m(floor):.2f}×")


def time_to_quality(root: str, reps: int, device: str, precision: str, max_epochs: int) -> None:
    train, test = load_dataset(root, split="normal_train"), load_dataset(root, split="normal_test")
    pca = float(np.sqrt(np.mean(pca_errors(fit_pca(train, 2), test) ** 2)))
    print(f"time to quality: train on {train.scans} ({len(train)} px), held-out {test.scans}; "
          f"PCA-2 held-out RMSE {pca:.5f}")
    x_test = test.to_array()
    proto_t, fit_t, targets = [], [], []
    for r in range(reps):
        # the prototype: 5 epochs, scored after each (scoring time not counted)
        t0 = time.perf_counter()
        data = train.to_array()
        scaled, lo, hi = prototype.min_max(data)
        model, optimizer, loader = prototype.setup(scaled.astype(np.float32), seed=r)
        clock, curve = time.perf_counter() - t0, []
        for _ in range(5):
            t = time.perf_counter()
            prototype.train_epoch(model, optimizer, loader)
            clock += time.perf_counter() - t
            rec = prototype.reconstruct(model, ((x_test - lo) / (hi - lo)).astype(np.float32), lo, hi)
            curve.append((clock, float(np.sqrt(np.mean((rec - x_test.astype(np.float64)) ** 2)))))
        target = curve[-1][1]
        reached = next(c for c, e in curve if e <= target)
        # fit: the held-out scan as validation data, so the history holds its RMSE after each epoch
        t = time.perf_counter()
        vae = SpectraVAE(epochs=max_epochs, patience=None, seed=r, device=device, precision=precision,
                         verbose=False).fit(train, validation=test)
        total = time.perf_counter() - t
        h = vae.history
        ends = total - h.seconds.sum() + h.seconds.cumsum()  # setup, then each epoch's end
        hit = np.flatnonzero(h.val_rmse.to_numpy() <= target)
        ours = float(ends.iloc[hit[0]]) if len(hit) else float("inf")
        proto_t.append(reached)
        fit_t.append(ours)
        targets.append(target)
        print(f"  rep {r + 1}: prototype after 5 epochs {target:.5f} at {reached:.1f} s (curve "
              + ", ".join(f"{e:.5f}" for _, e in curve) + "); fit reached it after "
              + (f"{hit[0] + 1} epoch(s), {ours:.1f} s" if len(hit) else f"— not within {max_epochs} epochs")
              + f" (its RMSE after {max_epochs}: {h.val_rmse.iloc[-1]:.5f})", flush=True)
    m = statistics.median
    print(f"prototype: {spread(proto_t)}; fit: {spread(fit_t)}; targets {', '.join(f'{v:.5f}' for v in targets)}")
    print(f"time to the prototype's 5-epoch quality: {m(proto_t) / m(fit_t):.2f}× sooner")


def batch_sizes(root: str, sizes: list[int], scalings: list[str], device: str, max_epochs: int,
                reference_epochs: int, seed: int) -> None:
    """Held-out RMSE against wall time for each batch size and learning-rate scaling (the peak rate
    2e-3 × (batch / 512)^½ or ^1), each trained `max_epochs` epochs with the held-out scan as validation
    (so the history holds its RMSE after every epoch); the target is the default's RMSE after
    `reference_epochs` epochs (batch 512), the time to it counted from the start of `fit`."""
    train, test = load_dataset(root, split="normal_train"), load_dataset(root, split="normal_test")
    defaults = SpectraVAE()
    t = time.perf_counter()
    ref = SpectraVAE(epochs=reference_epochs, patience=None, seed=seed, device=device,
                     verbose=False).fit(train, validation=test)
    ref_seconds = time.perf_counter() - t
    target = float(ref.history.val_rmse.iloc[-1])
    print(f"batch sizes: train {train.scans} ({len(train)} px), held-out {test.scans}; target: the default's "
          f"held-out RMSE after {reference_epochs} epochs at batch {defaults.batch_size}: {target:.5f} "
          f"(reached in {ref_seconds:.0f} s)")
    rows = []
    for size in sizes:
        for scaling in scalings:
            power = {"sqrt": 0.5, "linear": 1.0}[scaling]
            lr = defaults.learning_rate * (size / defaults.batch_size) ** power
            t = time.perf_counter()
            vae = SpectraVAE(epochs=max_epochs, patience=None, batch_size=size, learning_rate=lr, seed=seed,
                             device=device, verbose=False).fit(train, validation=test)
            total = time.perf_counter() - t
            h = vae.history
            ends = total - h.seconds.sum() + h.seconds.cumsum()
            hit = np.flatnonzero(h.val_rmse.to_numpy() <= target)
            rows.append({"batch": size, "scaling": scaling, "lr": f"{lr:.3g}",
                         "epoch s": round(float(h.seconds.median()), 2),
                         f"RMSE after {max_epochs}": round(float(h.val_rmse.iloc[-1]), 5),
                         "best RMSE": round(float(h.val_rmse.min()), 5),
                         "to target s": round(float(ends.iloc[hit[0]]), 1) if len(hit) else float("nan"),
                         "to target epochs": int(hit[0] + 1) if len(hit) else -1})
            print(rows[-1], flush=True)
    import pandas as pd

    print(pd.DataFrame(rows).to_string(index=False))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=278, help="demo scans of SIZE×SIZE (6 scans)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions of each measurement (≥ 3)")
    ap.add_argument("--device", default="auto", help="for fit and the floor (the prototype runs on the CPU)")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"), help="for fit and the floor")
    ap.add_argument("--max-epochs", type=int, default=20, help="fit's epochs at most, for time to quality")
    ap.add_argument("--skip-epoch", action="store_true", help="time to quality only")
    ap.add_argument("--skip-quality", action="store_true", help="epoch time only")
    ap.add_argument("--batch-sizes", type=int, nargs="*", default=[],
                    help="held-out RMSE against wall time at these batch sizes (e.g. 512 2048 8192 16384)")
    ap.add_argument("--scalings", nargs="+", default=["sqrt", "linear"], choices=("sqrt", "linear"),
                    help="how the learning rate grows with the batch")
    ap.add_argument("--batch-epochs", type=int, default=20, help="epochs per batch size")
    ap.add_argument("--reference-epochs", type=int, default=50, help="the default's epochs that set the target")
    a = ap.parse_args()
    print(f"machine: {machine()}; fit on {resolve_device(a.device)}, {a.precision}; "
          f"torch threads {torch.get_num_threads()}")
    path = str(demo_data(f"seed{a.size}", 6, a.size))
    if not a.skip_epoch:
        epoch_times(path, a.reps, a.device, a.precision)
    if not a.skip_quality:
        time_to_quality(path, a.reps, a.device, a.precision, a.max_epochs)
    if a.batch_sizes:
        batch_sizes(path, a.batch_sizes, a.scalings, a.device, a.batch_epochs, a.reference_epochs, seed=0)


if __name__ == "__main__":
    main()
