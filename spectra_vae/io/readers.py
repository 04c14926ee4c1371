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
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import DataError
from ..core.files import regular_file
from ..core.resources import memory_limit

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
    """(cube `(H, W, C)` or table `(N, C)`, wavenumbers in cm⁻¹ or None) from a non-numpy file.

    Only regular files are opened, the file's companions (ENVI data, Agilent tiles) included;
    array shapes are read before any data, so an array larger than half this machine's memory
    is refused instead of read.
    """
    suffix = path.suffix.lower()
    regular_file(path)
    _check_companions(path)
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
        raise DataError(f"{path}: could not be read as {suffix} ({type(exc).__name__}: {str(exc)[:300]})") from None
    raise DataError(f"{path}: unsupported file type {suffix!r}")


def _check_companions(path: Path) -> None:
    """The files a reader may open beside `path` (same stem, or stem_ for Agilent tiles) are regular files."""
    stem = path.stem.lower()
    try:
        entries = list(path.parent.iterdir())
    except OSError as exc:
        raise DataError(f"{path.parent}: cannot be listed ({exc.strerror or exc})") from None
    for entry in entries:
        name = entry.name.lower()
        if entry != path and (name.split(".")[0] == stem or name.startswith(stem + "_")):
            if entry.is_dir():
                continue
            regular_file(entry)


def _check_size(path: Path, name: str, shape: tuple[int, ...], itemsize: int) -> None:
    nbytes = int(np.prod(shape, dtype=object)) * itemsize
    if nbytes > memory_limit():
        raise DataError(f"{path}: array {name!r} of shape {tuple(shape)} needs {nbytes / 2**30:.1f} GiB in memory, "
                        f"more than half of this machine's ({2 * memory_limit() / 2**30:.1f} GiB); "
                        "save it as .npy scans in parts, which are read memory-mapped")


Meta = tuple[tuple[int, ...], str]  # shape, dtype kind


def _pick(arrays: dict[str, Meta], path: Path, variable: str | None,
          wavenumbers_variable: str | None) -> tuple[str, str | None]:
    """Names of the cube or table (the named one, else the largest 2-D/3-D numeric array) and of its axis.

    Decided from shapes alone, before any data are read."""
    numeric = {k: shape for k, (shape, kind) in arrays.items() if kind in "fiu"}
    if variable is not None:
        if variable not in numeric:
            raise DataError(f"{path}: no numeric variable {variable!r}; have {sorted(numeric)}")
        cube_name = variable
    else:
        candidates = {k: v for k, v in numeric.items() if len(v) in (2, 3) and min(v) > 1}
        if not candidates:
            raise DataError(f"{path}: no 2-D or 3-D numeric array found; have {sorted(numeric)}")
        cube_name = max(candidates, key=lambda k: int(np.prod(candidates[k], dtype=object)))
    dims = set(numeric[cube_name])  # an axis may match any dimension: the loader puts it last (`channels_last`)
    if wavenumbers_variable is not None:
        if wavenumbers_variable not in numeric:
            raise DataError(f"{path}: no variable {wavenumbers_variable!r} for wavenumbers; have {sorted(numeric)}")
        shape = numeric[wavenumbers_variable]
        if sum(d > 1 for d in shape) > 1:
            raise DataError(f"{path}: wavenumbers variable {wavenumbers_variable!r} has shape {shape}; "
                            "expected a vector")
        return cube_name, wavenumbers_variable
    lower = {k.lower(): k for k in numeric}
    for name in WAVENUMBER_NAMES:
        if name in lower:
            shape = numeric[lower[name]]
            size = int(np.prod(shape, dtype=object))
            if size in dims and size in shape and sum(d > 1 for d in shape) <= 1:
                return cube_name, lower[name]
    return cube_name, None


_CM = {"cm-1", "cm^-1", "1/cm", "wavenumber", "wavenumbers", "wavenumber(cm-1)", "wavenumbers(cm-1)",
       "inversecentimeters", "inversecentimetres", "reciprocalcentimeters", "kayser"}
_UM = {"micrometers", "micrometer", "micrometres", "micrometre", "microns", "micron", "um", "µm", "μm"}
_NM = {"nanometers", "nanometer", "nanometres", "nanometre", "nm"}


def to_wavenumbers(axis: np.ndarray, unit: Any, where: str, says_wavelength: bool = False) -> np.ndarray | None:
    """An axis in cm⁻¹ from one in cm⁻¹, µm or nm (as its header or attribute states); None for 'index'.

    Without a unit the values are taken as cm⁻¹, except values all below 100 (mid-infrared
    wavelengths in µm, 2.5–25, would otherwise pass as wavenumbers), which are refused.
    """
    axis = np.asarray(axis, dtype=float).ravel()
    if isinstance(unit, np.ndarray) and unit.size == 1:
        unit = unit.item()  # an HDF5 attribute stored as a one-element array
    if isinstance(unit, bytes):
        unit = unit.decode("utf-8", "replace")
    u = "" if unit is None else "".join(str(unit).lower().split()).replace("⁻¹", "-1")
    if u in ("", "unknown", "none"):
        if axis.size and np.isfinite(axis).all() and np.abs(axis).max() < 100:
            raise DataError(f"{where}: the spectral axis ({axis.min():g}…{axis.max():g}) states no unit and looks "
                            "like wavelengths in µm, not wavenumbers in cm⁻¹; state the unit (for ENVI: "
                            "'wavelength units = Micrometers' or '= Wavenumber' in the header)")
        if says_wavelength:
            warnings.warn(f"{where}: the axis is called a wavelength but states no unit; its values "
                          f"({axis.min():g}…{axis.max():g}) are taken as wavenumbers in cm⁻¹", UserWarning,
                          stacklevel=4)
        return axis
    if u == "index":
        return None
    if u in _CM:
        return axis
    if u in _UM or u in _NM:
        if not (np.isfinite(axis).all() and (axis > 0).all()):
            raise DataError(f"{where}: wavelengths in {unit} must be finite and positive to convert to cm⁻¹")
        return (1e4 if u in _UM else 1e7) / axis
    raise DataError(f"{where}: spectral axis unit {unit!r} is not one of cm⁻¹ (Wavenumber), micrometers or "
                    "nanometers")


def _read_mat(path: Path, variable: str | None, wn_variable: str | None) -> tuple[np.ndarray, np.ndarray | None]:
    from scipy.io import loadmat, whosmat

    try:
        listing = whosmat(path)
    except NotImplementedError:  # MATLAB v7.3 files are HDF5, stored column-major
        return _read_hdf5(path, variable, wn_variable, transpose=True)
    kinds = {"double": ("f", 8), "single": ("f", 4), "int8": ("i", 1), "uint8": ("u", 1), "int16": ("i", 2),
             "uint16": ("u", 2), "int32": ("i", 4), "uint32": ("u", 4), "int64": ("i", 8), "uint64": ("u", 8)}
    classes = {name: kinds.get(cls, ("O", 8)) for name, _, cls in listing}  # cells, structs, text: not numeric
    meta = {name: (tuple(int(d) for d in shape), classes[name][0]) for name, shape, _ in listing}
    cube_name, wn_name = _pick(meta, path, variable, wn_variable)
    _check_size(path, cube_name, meta[cube_name][0], classes[cube_name][1])
    wanted = [cube_name] + ([wn_name] if wn_name else [])
    data = loadmat(path, variable_names=wanted)
    cube = data.get(cube_name)
    if not isinstance(cube, np.ndarray) or cube.dtype.kind not in "fiu":
        raise DataError(f"{path}: variable {cube_name!r} is not a numeric array")
    wn = None
    if wn_name:
        wn = to_wavenumbers(np.asarray(data[wn_name]), None, f"{path} ({wn_name})",
                            says_wavelength=wn_name.lower().startswith(("wavelength", "wl")))
    return cube, wn


def _read_hdf5(path: Path, variable: str | None, wn_variable: str | None,
               transpose: bool) -> tuple[np.ndarray, np.ndarray | None]:
    h5py = _optional("h5py", "h5py")
    with h5py.File(path, "r") as f:
        datasets: dict[str, Any] = {}

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset) and obj.dtype.kind in "fiu":
                if obj.is_virtual or obj.external:
                    # the data would come from other files, outside the one the user gave
                    how = "a virtual dataset" if obj.is_virtual else "external storage"
                    raise DataError(f"{path}: dataset {name!r} is {how}, whose data live in other files; only "
                                    "self-contained HDF5 files are read")
                datasets[name] = obj
                datasets.setdefault(name.rsplit("/", 1)[-1], obj)

        f.visititems(visit)
        meta = {k: (tuple(d.shape[::-1]) if transpose else tuple(d.shape), d.dtype.kind) for k, d in datasets.items()}
        cube_name, wn_name = _pick(meta, path, variable, wn_variable)
        cube_ds = datasets[cube_name]
        _check_size(path, cube_name, tuple(cube_ds.shape), cube_ds.dtype.itemsize)
        cube = cube_ds[()]
        wn = None
        if wn_name:
            wn_ds = datasets[wn_name]
            unit = next((wn_ds.attrs[a] for a in ("units", "unit", "Units", "Unit") if a in wn_ds.attrs), None)
            wn = to_wavenumbers(wn_ds[()], unit, f"{path} ({wn_name})",
                                says_wavelength=wn_name.rsplit("/", 1)[-1].lower().startswith(("wavelength", "wl")))
    return (cube.T if transpose else cube), wn


def _read_envi(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    envi = _optional("spectral.io.envi", "spectral")
    img = envi.open(str(path))
    if not hasattr(img, "load") or not hasattr(img, "shape"):
        raise DataError(f"{path}: an ENVI spectral library, not an image")
    _check_size(path, "image", tuple(img.shape), np.dtype(img.dtype).itemsize)
    metadata = getattr(img, "metadata", {}) or {}
    centers = getattr(img.bands, "centers", None)
    if "wavelength" in metadata and not centers:
        raise DataError(f"{path}: the header's 'wavelength' field could not be read as numbers")
    wn = None
    if centers:
        wn = to_wavenumbers(np.asarray(centers, dtype=float), getattr(img.bands, "band_unit", None),
                            f"{path} (wavelength)", says_wavelength=True)
    cube = np.asarray(img.load())
    return cube, wn


AGILENT_HEADER_BYTES = 2244  # the number of points is an int32 at byte 2236 of the .bsp/.dmt header
AGILENT_PREAMBLE = 255  # float32 values before a tile's data
AGILENT_FPA = tuple((2**n) ** 2 for n in range(1, 8))  # pixels of a square focal-plane array tile: 2×2 … 128×128


def _agilent_files(path: Path) -> tuple[Path, Path, int]:
    """(header, first data tile, number of tiles) of an Agilent tile or mosaic, found as `agilent-format` finds them."""
    folder = path.parent
    if path.suffix.lower() == ".dmt":
        first = (path.stem + "_0000_0000.dmd").casefold()
        tiles = [p for p in folder.iterdir() if p.name.casefold().startswith(path.stem.casefold() + "_")
                 and p.suffix.lower() == ".dmd"]
        tile = next((p for p in tiles if p.name.casefold() == first), None)
        if tile is None:
            raise DataError(f"{path}: an Agilent mosaic without its first tile ({path.stem}_0000_0000.dmd)")
        # the reader allocates (tiles along x) × (tiles along y) tiles, counted as it counts them
        along = [sum(bool(re.fullmatch(pattern, p.stem[len(path.stem) + 1:])) for p in tiles)
                 for pattern in (r"\d{4}_0000", r"0000_\d{4}")]
        return path, tile, along[0] * along[1]
    bsp = path.with_suffix(".bsp")
    if not bsp.is_file():
        bsp = folder / bsp.name.lower()
    data = path.with_suffix(".dat")
    for needed in (bsp, data):
        if not needed.is_file():
            raise DataError(f"{path}: an Agilent tile needs {needed.name} beside it")
    return bsp, data, 1


def check_agilent(path: Path) -> tuple[int, int]:
    """The number of points an Agilent header declares, checked against its data file's size before
    `agilent-format` reads anything (it builds the axis as a list of that many numbers first); returns
    (points, pixels per tile). `DataError` naming both files when they disagree."""
    header, tile, n_tiles = _agilent_files(path)
    for part in (header, tile):
        regular_file(part)
    if header.stat().st_size < AGILENT_HEADER_BYTES:
        raise DataError(f"{header}: {header.stat().st_size} bytes, too short for an Agilent header "
                        f"({AGILENT_HEADER_BYTES} at least)")
    with open(header, "rb") as f:
        f.seek(2236)
        n_points = int(np.frombuffer(f.read(4), "<i4")[0])
        f.seek(2216)
        spacing = float(np.frombuffer(f.read(8), "<f8")[0])
    values = tile.stat().st_size // 4 - AGILENT_PREAMBLE
    if n_points < 2 or not np.isfinite(spacing) or spacing == 0:
        raise DataError(f"{header}: declares {n_points} points {spacing:g} cm⁻¹ apart; not a spectral axis")
    if values <= 0 or values % n_points or values // n_points not in AGILENT_FPA:
        raise DataError(f"{header}: declares {n_points} points per spectrum, but {tile.name} holds {max(values, 0)} "
                        "values, which is not a square tile of spectra of that many points; the files do not belong "
                        "together or one is damaged")
    _check_size(path, "mosaic" if n_tiles > 1 else "tile", (n_tiles, values), 4)
    return n_points, values // n_points


def _read_agilent(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    agilent = _optional("agilent_format", "agilent-format")
    check_agilent(path)
    if path.suffix.lower() == ".dmt":
        reader = agilent.agilentMosaic(str(path))
    else:  # a single tile: the .seq and its .dat belong together
        reader = agilent.agilentImage(str(path.with_suffix(".dat")) if path.suffix.lower() == ".seq" else str(path))
    return np.asarray(reader.data), np.asarray(reader.wavenumbers, dtype=float)
