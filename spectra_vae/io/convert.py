"""`convert`: any readable source written as the lab's layout, one `.npy` scan per scan and `wavenumbers.npy`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.files import check_output_dir, regular_file, save_npy_atomic, write_with
from .load import load_dataset
from .scan import open_npy


def convert(source: str | Path, destination: str | Path) -> list[Path]:
    """Write any readable source as the lab's layout: one `<scan>.npy` `(H, W, C)` per scan + `wavenumbers.npy`.

    A Fortran-ordered `.npy` scan (which `load_dataset` refuses) is rewritten in C order slab by
    slab, never whole in memory.
    """
    src = Path(source)
    out = check_output_dir(destination, "destination")
    if src.suffix.lower() == ".npy" and not src.is_dir():
        arr = open_npy(regular_file(src))
        if not arr.flags.c_contiguous:
            out.mkdir(parents=True, exist_ok=True)
            return [_rewrite_in_c_order(arr, out / src.name)]
    ds = load_dataset(source)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for scan in ds.scan_objects:
        shape = (scan.height, scan.width, scan.n_channels) if scan.is_image else (scan.height, scan.n_channels)
        cube = np.asarray(scan.pixels, dtype=np.float32).reshape(shape)
        written.append(out / (Path(scan.name).stem + ".npy"))
        save_npy_atomic(written[-1], cube)
    if ds.wavenumbers_known:
        written.append(out / "wavenumbers.npy")
        save_npy_atomic(written[-1], np.asarray(ds.wavenumbers, dtype=float))
    return written


def _rewrite_in_c_order(arr: np.ndarray, target: Path, slab_bytes: int = 64 << 20) -> Path:
    """Copy a (memory-mapped) array to `target` in C order, `slab_bytes` at a time; atomic."""
    def write(tmp: Path) -> None:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=arr.dtype, shape=arr.shape)
        row = max(1, arr[0].nbytes if arr.ndim > 1 else arr.itemsize)
        step = max(1, slab_bytes // row)
        for start in range(0, arr.shape[0], step):
            out[start : start + step] = arr[start : start + step]
        out.flush()
        del out

    return write_with(target, write)
