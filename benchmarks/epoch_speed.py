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
from spectra_vae.analysis import fit_pca, pca_errors, pixel_rmse
from spectra_vae.loss import elbo_loss
from spectra_vae.model import VAE, ModelConfig
from spectra_vae.normalise import Normaliser
from spectra_vae.train import PixelBatches, make_optimizer, resolve_device


def sync(device: torch.device) -> None:
    """Wait for queued device work, so a timing covers it (CUDA runs asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step(model: VAE, opt: torch.optim.Optimizer, x: torch.Tensor, precision: str = "fp32") -> None:
    """One optimiser step as `train_loop` takes it (same autocast rule, loss in float32)."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        x_hat, mu, logvar = model(x)
    x_hat, mu, logvar = x_hat.float(), mu.float(), logvar.float()
    model.update_noise(x, x_hat)
    loss = elbo_loss(x, x_hat, mu, logvar, kind="gaussian", beta=1.0, log_noise_var=model.noise_log_var()).total
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def new_model(device: torch.device, seed: int = 0, lr: float | None = None) -> tuple[VAE, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    m = VAE(ModelConfig(442)).to(device)
    return m, make_optimizer(m, lr or SpectraVAE().learning_rate, device)


def seed_loader(xn: np.ndarray) -> torch.utils.data.DataLoader:
    """The prototype's feeding: per-pixel `torch.tensor`, batches of 100, shuffled."""
    return torch.utils.data.DataLoader(SeedStylePixels(xn), batch_size=100, shuffle=True)


def seed_style_epoch(xn: np.ndarray, device: torch.device, max_seconds: float | None = None) -> tuple[float, int]:
    model, opt = new_model(device)
    t, n = time.perf_counter(), 0
    for x in seed_loader(xn):
        step(model, opt, x.to(device))
        n += len(x)
        if max_seconds and time.perf_counter() - t > max_seconds:
            break
    sync(device)
    return time.perf_counter() - t, n


def our_epoch(ds, norm: Normaliser, batch_size: int, device: torch.device, precision: str = "fp32",
              max_steps: int | None = None, in_memory_bytes: int | None = None) -> tuple[float, int, float, bool]:
    """Our feeding: (seconds of training, pixels seen, seconds to read and normalise, held in memory).

    `max_steps` stops early; `in_memory_bytes` overrides the in-memory budget (0: stream)."""
    model, opt = new_model(device)
    t0 = time.perf_counter()
    batches = PixelBatches(ds, norm, batch_size, device, in_memory_bytes=in_memory_bytes, max_batches=max_steps)
    sync(device)
    load = time.perf_counter() - t0
    g = torch.Generator().manual_seed(0)
    t, n = time.perf_counter(), 0
    for x in batches.epoch(g):
        step(model, opt, x, precision)
        n += len(x)
    sync(device)
    return time.perf_counter() - t, n, load, batches.in_memory


def floor_epoch(n: int, batch_size: int, device: torch.device, precision: str = "fp32") -> float:
    """The model's arithmetic alone: forward, loss, backward, step over pre-made tensors."""
    model, opt = new_model(device)
    xs = [torch.randn(batch_size, 442, device=device) for _ in range(32)]
    steps = int(np.ceil(n / batch_size))
    sync(device)
    t = time.perf_counter()
    for i in range(steps):
        step(model, opt, xs[i % len(xs)], precision)
    sync(device)
    return time.perf_counter() - t


def time_to_quality(train, test, budget: float, batch_size: int, seed_style: bool, device: torch.device,
                    precision: str = "fp32") -> dict[str, float]:
    """Train for `budget` seconds of wall clock (checked every batch); held-out RMSE (absorbance) reached.

    Both loops use the same model, loss, optimiser and normaliser; only the feeding differs. The
    clock starts before the data are read and normalised. RMSE is that of decode(μ) on the
    held-out pixels, against PCA with as many components fitted on the training pixels.
    """
    model, opt = new_model(device)
    start = time.perf_counter()
    norm = Normaliser(SpectraVAE().normalisation_method()).fit(train.iter_chunks())
    if seed_style:
        loader = seed_loader(norm.transform(train.to_array()))
        epoch_batches = lambda: (x.to(device) for x in loader)  # noqa: E731
    else:
        batches = PixelBatches(train, norm, batch_size, device)
        g = torch.Generator().manual_seed(0)
        epoch_batches = lambda: batches.epoch(g)  # noqa: E731
    n = 0
    while time.perf_counter() - start < budget:
        for x in epoch_batches():
            step(model, opt, x, precision)
            n += len(x)
            if time.perf_counter() - start >= budget:
                break
    sync(device)
    seconds = time.perf_counter() - start
    model.eval()
    x = test.to_array()
    with torch.no_grad():
        xt = torch.from_numpy(norm.transform(x)).to(device)
        recon = norm.inverse_transform(model.decode(model.encode(xt)[0]).cpu().numpy())
    pca = fit_pca(train, model.config.latent_dim)
    return {"seconds": seconds, "epochs": n / len(train),
            "vae_rmse": float(np.sqrt(np.mean(pixel_rmse(x, recon) ** 2))),
            "pca_rmse": float(np.sqrt(np.mean(pca_errors(pca, test) ** 2)))}


def profile(fn, *args) -> str:
    pr = cProfile.Profile()
    pr.enable()
    fn(*args)
    pr.disable()
    s = io.StringIO()
    pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(8)
    return "\n".join(line for line in s.getvalue().splitlines() if line.strip())[:2500]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=278)
    ap.add_argument("--batch-size", type=int, default=SpectraVAE().batch_size)
    ap.add_argument("--budget", type=float, default=60.0, help="seconds of training for time to quality (0: skip)")
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda, ... (all three loops run there)")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"), help="for our loop and the floor")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--quality-only", action="store_true", help="skip the epoch timings")
    a = ap.parse_args()
    device = resolve_device(a.device)
    print(f"machine: {machine()}; device {device}, precision {a.precision}")
    ds = load_dataset(demo_data(f"seed{a.size}", 6, a.size))
    norm = Normaliser("global_standard").fit(ds.iter_chunks())
    print(f"data: {len(ds)} pixels × {ds.n_channels} channels; our batch size {a.batch_size}")

    if not a.quality_only:
        xn = norm.transform(ds.to_array())
        seed_t, n_seed = seed_style_epoch(xn, device)
        ours_t, n_ours, load, held = our_epoch(ds, norm, a.batch_size, device, a.precision)
        floor_t = floor_epoch(n_ours, a.batch_size, device, a.precision)
        where = "held on the device" if held else "streamed from disk"
        print(f"seed-style epoch (DataLoader, per-pixel torch.tensor, batch 100, fp32): {seed_t:7.2f} s  "
              f"({n_seed / seed_t:,.0f} px/s)")
        print(f"our epoch (PixelBatches, batch {a.batch_size}, {a.precision}, data {where}):  {ours_t:7.2f} s  "
              f"({n_ours / ours_t:,.0f} px/s; +{load:.2f} s once per fit to read and normalise)")
        print(f"arithmetic floor (pre-made tensors, batch {a.batch_size}, {a.precision}):     {floor_t:7.2f} s")
        print(f"speed-up over seed-style: {seed_t / ours_t:.2f}×   ours / floor: {ours_t / floor_t:.2f}×")
        if a.profile:
            print("\n-- profile: seed-style, 20 s --\n" + profile(seed_style_epoch, xn, device, 20.0))
            report = profile(our_epoch, ds, norm, a.batch_size, device, a.precision)
            print("\n-- profile: ours, one epoch --\n" + report)
        del xn

    if a.budget > 0:
        root = ds.source
        train, test = load_dataset(root, split="normal_train"), load_dataset(root, split="normal_test")
        print(f"time to quality: train on {train.scans} ({len(train)} px), held-out {test.scans}")
        for label, seed_style in (("seed-style", True), ("ours", False)):
            r = time_to_quality(train, test, a.budget, a.batch_size, seed_style, device,
                                "fp32" if seed_style else a.precision)
            print(f"  {label:>10}: {r['seconds']:.0f} s = {r['epochs']:.2f} epochs → held-out RMSE "
                  f"{r['vae_rmse']:.5f} (PCA-2 on the same pixels: {r['pca_rmse']:.5f})")


if __name__ == "__main__":
    main()
