"""Goal 5: scoring at scan scale — transform, reconstruct and anomaly scores stream in batches."""

from __future__ import annotations

import argparse
import time
import tracemalloc

from benchmarks.common import anon_memory_mb, demo_data, machine
from benchmarks.out_of_core import PeakMemory
from spectra_vae import SpectraVAE, load_dataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=278)
    a = ap.parse_args()
    print(f"machine: {machine()}")
    path = demo_data(f"seed{a.size}", 6, a.size)
    ds = load_dataset(path)
    vae = SpectraVAE(epochs=1, verbose=False).fit(load_dataset(path, split="normal_val"))
    one = ds.select_scans([0])
    for name, fn in (("transform", vae.transform), ("reconstruct", vae.reconstruct),
                     ("reconstruction_error", vae.reconstruction_error), ("anomaly_score", vae.anomaly_score)):
        t = time.perf_counter()
        fn(one)
        print(f"{name:>22} of one {a.size}×{a.size} scan ({len(one)} px): {time.perf_counter() - t:.2f} s")
    for label, data in (("1 scan", one), (f"{len(ds.scans)} scans", ds)):
        base = anon_memory_mb()
        tracemalloc.start()
        with PeakMemory() as mem:
            s = vae.anomaly_score(data)
        live = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        # RSS also counts freed blocks the C allocator keeps for reuse; tracemalloc counts live arrays.
        print(f"anomaly_score over {label:>8} ({len(data):>7} px): peak live numpy/Python memory {live / 1e6:5.0f} MB, "
              f"peak extra RSS {mem.peak - base:5.0f} MB (the scores themselves: {s.nbytes / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
