"""Shared by the benchmark scripts: data on disk, memory readings, the seed-style loop."""

from __future__ import annotations

import json
import mmap
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from spectra_vae import make_demo_dataset
from spectra_vae.demo import GENERATOR_VERSION

BENCH_DATA = Path(os.environ.get("SPECTRA_VAE_BENCH_DATA", "data/bench"))


def demo_data(name: str, n_scans: int, size: int, seed: int = 0, scatter: bool = False) -> Path:
    """Demo scans for a benchmark, generated once and reused (remade when the generator changed)."""
    path = BENCH_DATA / name
    meta = path / "demo.json"
    wanted = {"n_scans": n_scans, "height": size, "width": size, "seed": seed, "scatter": scatter,
              "version": GENERATOR_VERSION}
    recorded = json.loads(meta.read_text()) if meta.exists() else {}
    if any(recorded.get(k) != v for k, v in wanted.items()):
        t = time.perf_counter()
        make_demo_dataset(path, n_scans=n_scans, height=size, width=size, seed=seed, scatter=scatter)
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


class SeedStylePixels(torch.utils.data.Dataset):
    """The prototype's feeding: one pixel per __getitem__, converted with torch.tensor."""

    def __init__(self, x: np.ndarray) -> None:
        self.x = x

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.tensor(self.x[i])
