"""Readers for instrument and exchange formats: each returns a cube or table and its wavenumbers.

| format | suffix | reader |
| --- | --- | --- |
| numpy | `.npy` | numpy (memory-mapped) |
| table | `.csv`, `.tsv`, `.txt` | pandas; the header row holds the wavenumbers |
| MATLAB | `.mat` | scipy (v5) or h5py (v7.3) |
| HDF5 | `.h5`, `.hdf5` | h5py |
| ENVI | `.hdr` (+ its data file) | Spectral Python (`spectral`) |
| Agilent FTIR imaging | `.dat`/`.seq` (tile), `.dmt` (mosaic) | `agilent-format` |

The optional readers are in the `formats` extra (`pip install spectra_vae[formats]`); a
missing one raises `DataError` naming the package to install.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError

WAVENUMBER_NAMES = ("wavenumbers", "wavenumber", "wavenums", "wn", "wavelengths", "wavelength", "wl",
                    "xaxis", "x_axis", "axis", "energy")
SCAN_SUFFIXES = (".npy", ".mat", ".h5", ".hdf5", ".hdr", ".dmt", ".seq", ".csv", ".tsv")
# Files that belong to another file's scan (ENVI data beside .hdr, Agilent tiles and mosaics).
SIDECAR_SUFFIXES = (".dat", ".img", ".raw", ".bsp", ".dmd", ".drd", ".dms")


def _optional(module: str, package: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise DataError(f"reading this format needs the package {package!r}: pip install {package} "
                        "(or pip install 'spectra_vae[formats]')") from None


def read_file(path: Path, variable: str | None = None,
              wavenumbers_variable: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """(cube `(H, W, C)` or table `(N, C)`, wavenumbers or None) from a non-numpy file."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".mat":
            return _read_mat(path, variable, wavenumbers_variable)
        if suffix in (".h5", ".hdf5"):
            return _read_hdf5(path, variable, wavenumbers_variable, transpose=False)
        if suffix == ".hdr":
            return _read_envi(path)
        if suffix in (".dmt", ".seq", ".dat"):
            return _read_agilent(path)
    except DataError:
        raise
    except Exception as exc:  # readers raise many kinds; the user needs the file and the reason
        raise DataError(f"{path}: could not be read as {suffix} ({type(exc).__name__}: {exc})") from exc
    raise DataError(f"{path}: unsupported file type {suffix!r}")


def _pick(arrays: dict[str, np.ndarray], path: Path, variable: str | None,
          wavenumbers_variable: str | None) -> tuple[np.ndarray, np.ndarray | None]:
    """The cube or table (the named one, else the largest 2-D/3-D numeric array) and its axis."""
    numeric = {k: v for k, v in arrays.items() if isinstance(v, np.ndarray) and v.dtype.kind in "fiu"}
    if variable is not None:
        if variable not in numeric:
            raise DataError(f"{path}: no numeric variable {variable!r}; have {sorted(numeric)}")
        cube = numeric[variable]
    else:
        candidates = {k: v for k, v in numeric.items() if v.ndim in (2, 3) and min(v.shape) > 1}
        if not candidates:
            raise DataError(f"{path}: no 2-D or 3-D numeric array found; have {sorted(numeric)}")
        cube = max(candidates.values(), key=lambda v: v.size)
    wn = None
    if wavenumbers_variable is not None:
        if wavenumbers_variable not in numeric:
            raise DataError(f"{path}: no variable {wavenumbers_variable!r} for wavenumbers; have {sorted(numeric)}")
        wn = numeric[wavenumbers_variable].ravel()
    else:
        lower = {k.lower(): v for k, v in numeric.items()}
        for name in WAVENUMBER_NAMES:
            if name in lower and lower[name].size == cube.shape[-1] and lower[name].size in lower[name].shape:
                wn = lower[name].ravel()
                break
    return np.asarray(cube), None if wn is None else np.asarray(wn, dtype=float)


def _read_mat(path: Path, variable: str | None, wn_variable: str | None) -> tuple[np.ndarray, np.ndarray | None]:
    from scipy.io import loadmat

    try:
        data = loadmat(path)
    except NotImplementedError:  # MATLAB v7.3 files are HDF5, stored column-major
        return _read_hdf5(path, variable, wn_variable, transpose=True)
    return _pick({k: v for k, v in data.items() if not k.startswith("__")}, path, variable, wn_variable)


def _read_hdf5(path: Path, variable: str | None, wn_variable: str | None,
               transpose: bool) -> tuple[np.ndarray, np.ndarray | None]:
    h5py = _optional("h5py", "h5py")
    arrays: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:
        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset) and obj.dtype.kind in "fiu":
                arr = obj[()]
                arrays[name] = arr.T if transpose else arr
                arrays.setdefault(name.rsplit("/", 1)[-1], arrays[name])
        f.visititems(visit)
    return _pick(arrays, path, variable, wn_variable)


def _read_envi(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    envi = _optional("spectral.io.envi", "spectral")
    img = envi.open(str(path))
    cube = np.asarray(img.load())
    centers = getattr(img.bands, "centers", None)
    return cube, None if not centers else np.asarray(centers, dtype=float)


def _read_agilent(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    agilent = _optional("agilent_format", "agilent-format")
    if path.suffix.lower() == ".dmt":
        reader = agilent.agilentMosaic(str(path))
    else:  # a single tile: the .seq and its .dat belong together
        reader = agilent.agilentImage(str(path.with_suffix(".dat")) if path.suffix.lower() == ".seq" else str(path))
    return np.asarray(reader.data), np.asarray(reader.wavenumbers, dtype=float)


def convert(source: str | Path, destination: str | Path) -> list[Path]:
    """Write any readable source as the lab's layout: one `<scan>.npy` `(H, W, C)` per scan + `wavenumbers.npy`."""
    from .data import load_dataset
    from .demo import _save_npy_atomic

    ds = load_dataset(source)
    out = Path(destination)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for scan in ds.scan_objects:
        shape = (scan.height, scan.width, scan.n_channels) if scan.is_image else (scan.height, scan.n_channels)
        cube = np.asarray(scan.pixels, dtype=np.float32).reshape(shape)
        written.append(out / (Path(scan.name).stem + ".npy"))
        _save_npy_atomic(written[-1], cube)
    if ds.wavenumbers_known:
        written.append(out / "wavenumbers.npy")
        _save_npy_atomic(written[-1], np.asarray(ds.wavenumbers, dtype=float))
    return written
