"""`convert`: any readable source written as the lab's layout, one `.npy` scan per scan and `wavenumbers.npy`.

The destination is a conversion target (`spectra_vae.core.claims`): a new or empty folder, or one an
earlier conversion of the same source made. Never the source's own folder, nor any other folder of
scans: the copies would sit beside the originals and load twice, or overwrite them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..core.claims import read_marker
from ..core.errors import DataError
from ..core.files import check_output_dir, regular_file, save_npy_atomic, write_with
from ..core.resources import check_disk
from .folders import WAVENUMBERS_FILE, claim_output
from .load import load_dataset
from .scan import open_npy

KIND = "conversion"


def convert(source: str | Path, destination: str | Path) -> list[Path]:
    """Write any readable source as the lab's layout: one `<scan>.npy` `(H, W, C)` per scan + `wavenumbers.npy`.

    A Fortran-ordered `.npy` scan (which `load_dataset` refuses) is rewritten in C order slab by
    slab, never whole in memory. Everything is checked before anything is written: the destination
    (see the module's docstring), and that no two scans would be written to the same file.
    """
    src = Path(source).expanduser()
    out = check_output_dir(destination, "destination")
    if not os.path.lexists(src):
        raise DataError(f"{src}: no such file or directory")
    here = src.resolve() if src.is_dir() else src.resolve().parent
    if out.exists() and out.resolve() == here:
        raise DataError(f"destination {out}: is the source's own folder; the copies would overwrite the scans or "
                        "sit beside them and load twice: give another folder")
    wanted = str(src.resolve())
    marker = read_marker(out) if out.is_dir() else None
    done = marker.get("source") if marker is not None and marker["kind"] == KIND else None
    if done is not None and done != wanted:
        raise DataError(f"destination {out}: holds the conversion of {done}; give another folder for {wanted}")
    if src.suffix.lower() == ".npy" and not src.is_dir():
        arr = open_npy(regular_file(src))
        if not arr.flags.c_contiguous:
            check_disk(out, arr.nbytes, f"convert {src}")
            with claim_output(out, KIND, "destination", writes=(src.name,), info={"source": wanted}):
                return [_rewrite_in_c_order(arr, out / src.name)]
    ds = load_dataset(src)
    targets: dict[str, str] = {}
    for scan in ds.scan_objects:
        name = Path(scan.name).stem + ".npy"
        if name in targets or name == WAVENUMBERS_FILE:
            raise DataError(f"convert {src}: {targets.get(name, WAVENUMBERS_FILE)} and {scan.name} would both be "
                            f"written to {name}; rename one")
        targets[name] = scan.name
    kinds = [np.float64 if s.pixels.dtype == np.float64 else np.float32 for s in ds.scan_objects]  # no precision lost
    check_disk(out, sum(s.pixels.size * np.dtype(k).itemsize for s, k in zip(ds.scan_objects, kinds, strict=True)),
               f"convert {src}")
    written = []
    with claim_output(out, KIND, "destination", writes=[*targets, WAVENUMBERS_FILE], info={"source": wanted}):
        for scan, name, kind in zip(ds.scan_objects, targets, kinds, strict=True):
            shape = (scan.height, scan.width, scan.n_channels) if scan.is_image else (scan.height, scan.n_channels)
            cube = np.asarray(scan.pixels, dtype=kind).reshape(shape)
            written.append(save_npy_atomic(out / name, cube))
        if ds.wavenumbers_known:
            written.append(save_npy_atomic(out / WAVENUMBERS_FILE, np.asarray(ds.wavenumbers, dtype=float)))
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
