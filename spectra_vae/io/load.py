"""`load_dataset`: any source of spectra (a folder, a file of any supported format, an array, a
table) opened as a `SpectralDataset`, checked before any pixel is used."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.errors import DataError
from ..core.files import regular_file
from .dataset import SpectralDataset
from .finite import finite_pixels_cached, shared_finite_check
from .folders import (
    LABEL_NAMES_FILE,
    LABELS_DIR,
    SPLITS_FILE,
    WAVENUMBERS_FILE,
    read_label_names,
    scan_files,
    select_split_files,
)
from .readers import read_file
from .scan import Scan, as_pixels, channels_last, check_labels, check_wavenumbers, match_axis, open_npy
from .tables import is_number, numeric_cells, read_table


def _make_scan(name: str, arr: np.ndarray, where: str, path: Path | None = None,
               labels: np.ndarray | None = None, recheck: bool = False,
               finite: np.ndarray | None = None) -> tuple[Scan, np.ndarray]:
    pixels, h, w, image = as_pixels(arr, where)
    if labels is not None:
        labels = check_labels(labels, h, w, image, where)
    if finite is None:  # not already found by a distributed run's shared check
        finite = finite_pixels_cached(pixels, path, recheck)
    n_bad = pixels.shape[0] - len(finite)
    if len(finite) == 0:
        raise DataError(f"{where}: no pixel has a finite spectrum (all {pixels.shape[0]} contain NaN or inf)")
    if n_bad:
        warnings.warn(f"{where}: excluded {n_bad} of {pixels.shape[0]} pixels with NaN or inf values"
                      + (" (or values beyond float32's range)" if pixels.dtype.itemsize > 4 else ""),
                      stacklevel=3)
    scan = Scan(name, pixels, h, w, path=path, labels=labels, is_image=image, n_nonfinite=n_bad)
    return scan, finite



def _load_directory(directory: Path, wavenumbers: np.ndarray | None,
                    split: str | Sequence[str] | None, recheck: bool = False) -> SpectralDataset:
    files = scan_files(directory)
    if split is not None:
        files = select_split_files(directory, files, split)
    if not files:
        raise DataError(f"{directory}: the directory holds no scans (.npy or another supported format)")

    label_names = None
    names_path = directory / LABELS_DIR / LABEL_NAMES_FILE
    if os.path.lexists(names_path):
        label_names = read_label_names(names_path)

    scans, index, channels = [], [], None
    # The folder's axis (the argument, else wavenumbers.npy) is the reference for every file that states
    # its own; without one, the first such file's is. They must agree (reversed: the spectra are flipped).
    folder_axis: tuple[str, np.ndarray] | None = None
    if wavenumbers is not None:
        folder_axis = ("the wavenumbers argument", wavenumbers)
    elif os.path.lexists(directory / WAVENUMBERS_FILE):
        folder_axis = (str(directory / WAVENUMBERS_FILE), np.asarray(open_npy(directory / WAVENUMBERS_FILE)))
    file_axis: tuple[Path, np.ndarray] | None = None
    shared = shared_finite_check([p for p in files if p.suffix.lower() == ".npy"], recheck)
    for path in files:
        if path.suffix.lower() == ".npy":
            arr = open_npy(path)
        else:
            arr, own_wn = _read_other(path)
            if own_wn is not None:
                if folder_axis is not None:
                    arr = match_axis(arr, own_wn, folder_axis[1], str(path), folder_axis[0])
                elif file_axis is None:
                    file_axis = (path, own_wn)
                else:
                    arr = match_axis(arr, own_wn, file_axis[1], str(path), file_axis[0].name)
        label_path = directory / LABELS_DIR / (path.stem + ".npy")
        labels = open_npy(label_path) if os.path.lexists(label_path) else None
        scan, finite = _make_scan(path.name, arr, str(path), path, labels, recheck, shared.get(path))
        if labels is not None and label_names is not None and scan.labels is not None and scan.labels.size \
                and scan.labels.max() >= len(label_names):
            raise DataError(f"{label_path}: holds label {scan.labels.max()} but {names_path} names only "
                            f"{len(label_names)} classes (0…{len(label_names) - 1})")
        if channels is None:
            channels = (path, scan.n_channels)
        elif scan.n_channels != channels[1]:
            raise DataError(f"{path}: has {scan.n_channels} channels but {channels[0].name} has {channels[1]}")
        scans.append(scan)
        index.append(finite)

    n_channels = scans[0].n_channels
    known = True
    if wavenumbers is not None:
        wn = check_wavenumbers(wavenumbers, n_channels, f"{directory} (wavenumbers argument)")
    elif folder_axis is not None:
        wn = check_wavenumbers(folder_axis[1], n_channels, folder_axis[0])
    elif file_axis is not None:
        wn = check_wavenumbers(file_axis[1], n_channels, str(file_axis[0]))
    else:
        wn, known = np.arange(n_channels, dtype=float), False
    return SpectralDataset(scans, index, wn, label_names, str(directory), known)


def _from_array(arr: np.ndarray, name: str, where: str, wavenumbers: np.ndarray | None,
                path: Path | None = None, recheck: bool = False, finite: np.ndarray | None = None) -> SpectralDataset:
    scan, finite = _make_scan(name, arr, where, path, recheck=recheck, finite=finite)
    known = wavenumbers is not None
    wn = (check_wavenumbers(wavenumbers, scan.n_channels, where) if wavenumbers is not None
          else np.arange(scan.n_channels, dtype=float))
    return SpectralDataset([scan], [finite], wn, None, where, known)


def _from_frame(df: pd.DataFrame, name: str, where: str, wavenumbers: np.ndarray | None,
                header: Sequence[object] | None = None) -> SpectralDataset:
    """A table whose column names (or `header`, the file's own first row) are the wavenumbers."""
    columns = list(df.columns) if header is None else list(header)
    try:
        head = np.array([float(c) for c in columns], dtype=np.float64)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        bad = [c for c in columns if not is_number(c)]
        raise DataError(f"{where}: expected wavenumbers as column names; these are not numbers: {bad[:5]}") from None
    values = numeric_cells(df, where)
    if wavenumbers is not None:
        if not (header is None and isinstance(df.columns, pd.RangeIndex)):  # default labels state no axis
            values = match_axis(values, head, wavenumbers, where, "the wavenumbers argument")
        return _from_array(np.ascontiguousarray(values), name, where, wavenumbers)
    wn = head
    if len(head) > 1 and head[0] > head[-1]:
        # Store descending tables ascending so every dataset reads low → high.
        values, wn = values[:, ::-1], head[::-1]
    return _from_array(np.ascontiguousarray(values), name, where, wn)



def _read_other(path: Path, variable: str | None = None,
                wavenumbers_variable: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """A non-numpy scan as (cube or table, its wavenumbers), channels last."""
    if path.suffix.lower() in (".csv", ".tsv"):
        ds = load_dataset(path)
        return ds.scan_objects[0].pixels, ds.wavenumbers if ds.wavenumbers_known else None
    arr, wn = read_file(path, variable, wavenumbers_variable)
    if wn is not None and path.suffix.lower() in (".mat", ".h5", ".hdf5"):
        arr = channels_last(arr, len(wn), str(path))  # an array of unknown layout: the axis says which way
    elif wn is not None and arr.shape[-1] != len(wn):  # ENVI and Agilent state their layout
        raise DataError(f"{path}: its header states {len(wn)} wavenumbers but its data hold {arr.shape[-1]} channels "
                        f"(array {tuple(arr.shape)}); the header and the data disagree")
    if wn is not None and len(wn) > 1 and wn[0] > wn[-1]:
        arr, wn = arr[..., ::-1], wn[::-1]  # every dataset reads low → high
    return np.ascontiguousarray(arr), wn



def load_dataset(source: str | os.PathLike | np.ndarray | pd.DataFrame | SpectralDataset, *,
                 wavenumbers: Sequence[float] | np.ndarray | None = None,
                 split: str | Sequence[str] | None = None, variable: str | None = None,
                 wavenumbers_variable: str | None = None, recheck: bool = False) -> SpectralDataset:
    """Open scans as a `SpectralDataset`.

    `source`: a directory of `.npy` scans (with optional `wavenumbers.npy`, `labels/` and
    `data_splits.json`), one `.npy` file `(H, W, C)` or `(N, C)`, a CSV whose header row holds
    the wavenumbers, a numpy array, or a DataFrame with wavenumber columns. `split` selects the
    files listed under that key (or keys, which must not share files) of the directory's
    `data_splits.json`. Also reads MATLAB `.mat`, HDF5, ENVI `.hdr` and Agilent
    `.dat`/`.seq`/`.dmt` (see `spectra_vae.formats`); in `.mat`/HDF5 files `variable` and
    `wavenumbers_variable` name the arrays when the common names are not used. `recheck=True`
    reads every pixel of `.npy` scans for NaN/inf again instead of using the remembered result
    (see `cache_dir`). Only regular files are read; anything else is a `DataError` naming it.
    """
    if wavenumbers is None:
        wn = None
    else:
        try:
            wn = np.asarray(wavenumbers)
        except (TypeError, ValueError) as exc:
            raise DataError(f"wavenumbers: not an array of numbers ({exc})") from None
        if wn.dtype.kind not in "fiu":
            raise DataError(f"wavenumbers: must hold real numbers, got dtype {wn.dtype}")
        wn = wn.astype(float)
    if isinstance(source, SpectralDataset):
        return source
    if isinstance(source, pd.DataFrame):
        return _from_frame(source, "table", "DataFrame", wn)
    if isinstance(source, np.ndarray):
        return _from_array(source, "array", "array", wn)
    if not isinstance(source, (str, os.PathLike)):
        raise DataError("expected a path, a numpy array, a DataFrame or a SpectralDataset, "
                        f"got {type(source).__name__}")
    if not isinstance(recheck, bool):
        raise DataError(f"recheck: expected True or False, got {recheck!r}")
    for name, value in (("variable", variable), ("wavenumbers_variable", wavenumbers_variable)):
        if value is not None and not isinstance(value, str):
            raise DataError(f"{name}: expected the name of an array, got {value!r}")
    path = Path(source)
    if split is not None and not path.is_dir():
        raise DataError(f"{path}: split={split!r} needs a directory with {SPLITS_FILE}")
    if path.is_dir():
        return _load_directory(path, wn, split, recheck)
    if not os.path.lexists(path):
        raise DataError(f"{path}: no such file or directory")
    regular_file(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        shared = shared_finite_check([path], recheck)
        return _from_array(open_npy(path), path.name, str(path), wn, path, recheck, shared.get(path))
    if suffix in (".mat", ".h5", ".hdf5", ".hdr", ".dmt", ".seq", ".dat"):
        arr, own = _read_other(path, variable, wavenumbers_variable)
        if wn is not None and own is not None:
            arr = match_axis(arr, own, wn, str(path), "the wavenumbers argument")
        return _from_array(arr, path.name, str(path), wn if wn is not None else own, path)
    if suffix in (".csv", ".tsv", ".txt"):
        df, header = read_table(path)
        return _from_frame(df, path.name, str(path), wn, header)
    raise DataError(f"{path}: unsupported file type {suffix!r}; expected a directory, .npy, .csv, .mat, "
                    ".h5/.hdf5, ENVI .hdr, or Agilent .dat/.seq/.dmt")


def as_dataset(data: object) -> SpectralDataset:
    """Accept a dataset, array, DataFrame or path wherever a dataset is expected."""
    return data if isinstance(data, SpectralDataset) else load_dataset(data)  # type: ignore[arg-type]
