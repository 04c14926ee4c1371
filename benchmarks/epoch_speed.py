"""Goal 1: epoch time at seed scale — seed-style DataLoader vs ours vs the arithmetic floor; time to quality.

Seed scale: 6 demo scans of 278×278 (≈464 000 pixels × 442 channels), the 442→221→110→2 model,
the same loss (Gaussian, shared calibrated σ, β=1) in all three loops; only the feeding differs.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time

import numpy as np
import torch

from benchmarks.common import SeedStylePixels, demo_data, machine
from spectra_vae import SpectraVAE, load_dataset
from spectra_vae.analysis import compare_with_pca
from spectra_vae.loss import elbo_loss
from spectra_vae.model import VAE, ModelConfig
from spectra_vae.normalise import Normaliser
from spectra_vae.preprocessing import Preprocessor
from spectra_vae.train import PixelBatches


def step(model: VAE, opt: torch.optim.Optimizer, x: torch.Tensor) -> None:
    x_hat, mu, logvar = model(x)
    model.update_noise(x, x_hat)
    loss = elbo_loss(x, x_hat, mu, logvar, kind="gaussian", beta=1.0, log_noise_var=model.noise_log_var()).total
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def new_model(seed: int = 0, lr: float | None = None) -> tuple[VAE, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    m = VAE(ModelConfig(442))
    return m, torch.optim.Adam(m.parameters(), lr=lr or SpectraVAE().learning_rate)


def seed_style_epoch(xn: np.ndarray, max_seconds: float | None = None) -> tuple[float, int]:
    model, opt = new_model()
    loader = torch.utils.data.DataLoader(SeedStylePixels(xn), batch_size=100, shuffle=True)
    t, n = time.perf_counter(), 0
    for x in loader:
        step(model, opt, x)
        n += len(x)
        if max_seconds and time.perf_counter() - t > max_seconds:
            break
    return time.perf_counter() - t, n


def our_epoch(ds, norm: Normaliser, batch_size: int) -> tuple[float, int, float]:
    model, opt = new_model()
    t0 = time.perf_counter()
    batches = PixelBatches(ds, norm, batch_size, torch.device("cpu"))
    load = time.perf_counter() - t0
    g = torch.Generator().manual_seed(0)
    t, n = time.perf_counter(), 0
    for x in batches.epoch(g):
        step(model, opt, x)
        n += len(x)
    return time.perf_counter() - t, n, load


def floor_epoch(n: int, batch_size: int) -> float:
    """The model's arithmetic alone: forward, loss, backward, step over pre-made tensors."""
    model, opt = new_model()
    xs = [torch.randn(batch_size, 442) for _ in range(32)]
    steps = int(np.ceil(n / batch_size))
    t = time.perf_counter()
    for i in range(steps):
        step(model, opt, xs[i % len(xs)])
    return time.perf_counter() - t


def time_to_quality(train, test, budget: float, batch_size: int, seed_style: bool) -> dict[str, float]:
    """Train for `budget` seconds of wall clock (checked every batch); held-out RMSE (absorbance) reached.

    Both loops use the same model, loss, optimiser and normaliser; only the feeding differs.
    """
    vae = SpectraVAE(verbose=False)
    vae.device_ = torch.device("cpu")
    vae.wavenumbers_, vae.wavenumbers_known_ = train.wavenumbers, True
    vae.preprocessor_ = Preprocessor("").fit(train.wavenumbers)
    vae.normaliser_ = Normaliser(vae.normalisation_method()).fit(train.iter_chunks())
    vae.model_config_ = ModelConfig(442)
    vae.model_, opt = new_model()
    start = time.perf_counter()
    if seed_style:
        xn = vae.normaliser_.transform(train.to_array())
        loader = torch.utils.data.DataLoader(SeedStylePixels(xn), batch_size=100, shuffle=True)
        epoch_batches = lambda: iter(loader)  # noqa: E731
    else:
        batches = PixelBatches(train, vae.normaliser_, batch_size, vae.device_)
        g = torch.Generator().manual_seed(0)
        epoch_batches = lambda: batches.epoch(g)  # noqa: E731
    n = 0
    while time.perf_counter() - start < budget:
        for x in epoch_batches():
            step(vae.model_, opt, x)
            n += len(x)
            if time.perf_counter() - start >= budget:
                break
    seconds = time.perf_counter() - start
    vae.model_.eval()
    table = compare_with_pca(vae, train, test)
    return {"seconds": seconds, "epochs": n / len(train), "vae_rmse": table.loc["VAE", "rmse"],
            "pca_rmse": table.loc["PCA", "rmse"]}


def profile(fn, *args) -> str:
    pr = cProfile.Profile()
    pr.enable()
    fn(*args)
    pr.disable()
    s = io.StringIO()
    pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(8)
    return "\n".join(l for l in s.getvalue().splitlines() if l.strip())[:2500]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=278)
    ap.add_argument("--batch-size", type=int, default=SpectraVAE().batch_size)
    ap.add_argument("--budget", type=float, default=60.0, help="seconds of training for time to quality")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--quality-only", action="store_true", help="skip the epoch timings")
    a = ap.parse_args()
    print(f"machine: {machine()}")
    ds = load_dataset(demo_data(f"seed{a.size}", 6, a.size))
    norm = Normaliser("global_standard").fit(ds.iter_chunks())
    xn = norm.transform(ds.to_array())
    print(f"data: {len(ds)} pixels × {ds.n_channels} channels; our batch size {a.batch_size}")

    if a.quality_only:
        a.profile = False
    seed_t, n_seed = seed_style_epoch(xn) if not a.quality_only else (float("nan"), 0)
    ours_t, n_ours, load = our_epoch(ds, norm, a.batch_size) if not a.quality_only else (float("nan"), 1, 0.0)
    floor_t = floor_epoch(n_ours, a.batch_size) if not a.quality_only else float("nan")
    print(f"seed-style epoch (DataLoader, per-pixel torch.tensor, batch 100): {seed_t:7.2f} s  ({n_seed / seed_t:,.0f} px/s)")
    print(f"our epoch (PixelBatches, batch {a.batch_size}):                     {ours_t:7.2f} s  ({n_ours / ours_t:,.0f} px/s; "
          f"+{load:.2f} s once per fit to read and normalise)")
    print(f"arithmetic floor (pre-made tensors, batch {a.batch_size}):           {floor_t:7.2f} s")
    print(f"speed-up over seed-style: {seed_t / ours_t:.2f}×   ours / floor: {ours_t / floor_t:.2f}×")

    if a.profile:
        print("\n-- profile: seed-style, 20 s --\n" + profile(seed_style_epoch, xn, 20.0))
        print("\n-- profile: ours, one epoch --\n" + profile(our_epoch, ds, norm, a.batch_size))

    if a.budget > 0:
        from spectra_vae import load_dataset as ld
        root = ds.source
        train, test = ld(root, split="normal_train"), ld(root, split="normal_test")
        print(f"time to quality: train on {train.scans} ({len(train)} px), held-out {test.scans}")
        for label, seed_style in (("seed-style", True), ("ours", False)):
            r = time_to_quality(train, test, a.budget, a.batch_size, seed_style)
            print(f"  {label:>10}: {r['seconds']:.0f} s = {r['epochs']:.2f} epochs → held-out RMSE "
                  f"{r['vae_rmse']:.5f} (PCA-2 on the same pixels: {r['pca_rmse']:.5f})")


if __name__ == "__main__":
    main()
