"""Goal 2: train from a dataset larger than the in-memory limit, streamed memory-mapped from disk.

Default: 24 demo scans of 540×540 (≈7 M pixels, ≈12.5 GB float32). Reports extra anonymous
memory (file pages of the memory map excluded) and pixel throughput against a small in-memory
dataset, over the same number of training steps.

`--prepare`: instead, what `fit` costs around its epochs on the large set (the last scan validation,
the others training): `SpectraVAE(epochs=1).fit` whole, its epoch, the rest (the passes before the
first epoch and the residual model after the last), and `fit_anomaly_model` again on the same data;
with `--cold`, each from a page cache the large set was evicted from (as on a set larger than memory).
"""

from __future__ import annotations

import argparse
import logging
import threading
import time

import numpy as np
import torch

from benchmarks.common import anon_memory_mb, demo_data, evict_from_page_cache, loop_epoch, machine
from spectra_vae import load_dataset
from spectra_vae.model.batches import PixelBatches
from spectra_vae.preprocess.normalise import Normaliser


class PeakMemory:
    def __init__(self) -> None:
        self.peak, self._stop = anon_memory_mb(), threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, anon_memory_mb())
            time.sleep(0.05)

    def __enter__(self) -> PeakMemory:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()


def throughput(ds, norm: Normaliser, batch_size: int, steps: int, in_memory_bytes: int) -> tuple[float, bool]:
    """Pixels per second over the first `steps` training steps (fit's own loop), and whether the data
    were held in memory (reading them in is not timed; streaming is)."""
    batches = PixelBatches(ds, norm, batch_size, torch.device("cpu"), in_memory_bytes=in_memory_bytes,
                           max_batches=steps)
    seconds, n = loop_epoch(batches, torch.device("cpu"))
    return n / seconds, batches.in_memory


def batch_mixing(ds, norm: Normaliser, batch_size: int, n_batches: int) -> float:
    """Mean number of distinct scans per batch in the streamed order (how well shuffling mixes)."""
    scan_of = ds.scan_of()
    batches = PixelBatches(ds, norm, batch_size, torch.device("cpu"), in_memory_bytes=0)
    counts: list[int] = []
    for idx in batches.stream_pools(torch.Generator().manual_seed(0)):
        for s in range(0, len(idx) - batch_size + 1, batch_size):
            counts.append(len(np.unique(scan_of[idx[s:s + batch_size]])))
            if len(counts) >= n_batches:
                return float(np.mean(counts))
    return float(np.mean(counts))


def prepare(big_path, preprocess: str, tissue_only: bool, cold: bool) -> None:
    """`fit(epochs=1)` on the large set, timed whole and apart from its epoch; then `fit_anomaly_model`."""
    from spectra_vae import SpectraVAE

    ds = load_dataset(big_path)
    train, val = ds.select_scans(ds.scans[:-1]), ds.select_scans(ds.scans[-1:])
    print(f"large: {len(train):,} training pixels, {len(val):,} validation ({len(ds) * ds.n_channels * 4 / 1e9:.1f} GB "
          f"float32); preprocess={preprocess!r}, tissue_only={tissue_only}")
    if cold:
        print(f"evicted {evict_from_page_cache(ds):,.0f} MB of the large dataset from the page cache")
    # fit says how long the passes before its first epoch took (from a million training pixels on, verbose)
    said: list[str] = []
    catch = logging.Handler()
    catch.emit = lambda record: said.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("spectra_vae")
    logger.addHandler(catch)
    logger.setLevel(logging.INFO)
    vae = SpectraVAE(epochs=1, patience=None, seed=0, preprocess=preprocess, tissue_only=tissue_only, verbose=True)
    t = time.perf_counter()
    vae.fit(train, validation=val)
    whole = time.perf_counter() - t
    logger.removeHandler(catch)
    epoch = float(vae.history_["seconds"].sum())
    before = next((m for m in said if m.startswith("prepared in")), "not said (fewer than a million pixels)")
    print(f"fit(epochs=1): {whole:.1f} s; its epoch {epoch:.1f} s; the rest (passes before the first epoch, the "
          f"residual model after) {whole - epoch:.1f} s; before the first epoch: {before}")
    if cold:
        print(f"evicted {evict_from_page_cache(ds):,.0f} MB of the large dataset from the page cache")
    t = time.perf_counter()
    vae.fit_anomaly_model(train, val)
    print(f"fit_anomaly_model on the same data: {time.perf_counter() - t:.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scans", type=int, default=24)
    ap.add_argument("--size", type=int, default=540)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--cold", action="store_true",
                    help="also measure with the large dataset evicted from the page cache (reads from disk)")
    ap.add_argument("--prepare", action="store_true",
                    help="time fit(epochs=1) on the large set apart from its epoch, and fit_anomaly_model")
    ap.add_argument("--preprocess", default="", help="with --prepare: the pipeline fitted (e.g. emsc)")
    ap.add_argument("--tissue-only", action="store_true", help="with --prepare: train on tissue only")
    a = ap.parse_args()
    print(f"machine: {machine()}")
    if a.prepare:
        prepare(demo_data(f"big{a.size}x{a.scans}", a.scans, a.size), a.preprocess, a.tissue_only, a.cold)
        return
    small = load_dataset(demo_data("seed278", 6, 278))
    norm = Normaliser("global_standard").fit(small.iter_chunks())
    small_tp, small_mem = throughput(small, norm, a.batch_size, a.steps, 2 * 1024**3)
    print(f"small ({len(small)} px, in memory: {small_mem}): {small_tp:,.0f} px/s")

    big_path = demo_data(f"big{a.size}x{a.scans}", a.scans, a.size)
    base = anon_memory_mb()
    t = time.perf_counter()
    big = load_dataset(big_path)
    print(f"large: {len(big)} px × {big.n_channels} ch = {len(big) * big.n_channels * 4 / 1e9:.1f} GB float32; "
          f"opened (finite check over every pixel) in {time.perf_counter() - t:.0f} s, "
          f"+{anon_memory_mb() - base:.0f} MB anonymous")
    t = time.perf_counter()
    load_dataset(big_path)
    print(f"opened again in {time.perf_counter() - t:.2f} s (the finite check is remembered per file; "
          f"the first open above may have used a record from an earlier run)")
    for cache in ("warm", "cold") if a.cold else ("warm",):
        if cache == "cold":
            print(f"evicted {evict_from_page_cache(big):,.0f} MB of the large dataset from the page cache")
        with PeakMemory() as mem:
            big_tp, big_mem = throughput(big, norm, a.batch_size, a.steps, 2 * 1024**3)
        print(f"large streamed, {cache} page cache (in memory: {big_mem}): {big_tp:,.0f} px/s = "
              f"{big_tp / small_tp:.0%} of small; peak extra anonymous memory {mem.peak - base:.0f} MB")
    mixing = batch_mixing(big, norm, a.batch_size, 200)
    print(f"shuffle: a streamed batch of {a.batch_size} mixes pixels from {mixing:.1f} "
          f"of {len(big.scans)} scans on average")


if __name__ == "__main__":
    main()
