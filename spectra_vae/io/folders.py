"""What a folder of scans says besides its scans: `data_splits.json`, `labels/`, which files are scans.

Split files map split names to file lists; entries are resolved inside the folder (never a path
outside it). A `.dmt`/`.seq`/`.hdr` owns the files of the same name (its data and headers).
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..core.claims import Claim, claim_folder
from ..core.errors import DataError
from ..core.files import json_type, read_json
from .readers import SCAN_SUFFIXES, SIDECAR_SUFFIXES

SPLITS_FILE = "data_splits.json"
WAVENUMBERS_FILE = "wavenumbers.npy"
LABELS_DIR = "labels"
LABEL_NAMES_FILE = "label_names.json"
OWNER_SUFFIXES = (".dmt", ".seq", ".hdr")  # a file with one of these owns same-named files
_IGNORED_FILES = {SPLITS_FILE, WAVENUMBERS_FILE, "demo.json", "README.md", "README.txt", ".DS_Store"}


def natural_key(name: str) -> list[object]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]



def read_splits(directory: Path) -> dict[str, list[str]]:
    """`data_splits.json`: an object mapping split names to lists of file names, checked entry by entry."""
    path = directory / SPLITS_FILE
    if not os.path.lexists(path):
        raise DataError(f"{directory}: split requested but there is no {SPLITS_FILE}")
    splits = read_json(path)
    if not isinstance(splits, dict):
        raise DataError(f"{path}: expected an object mapping split names to lists of files, got {json_type(splits)}")
    for name, files in splits.items():
        if not isinstance(files, list):
            raise DataError(f"{path}: split {name!r} must be a list of file names, got {json_type(files)}")
        bad = [f for f in files if not isinstance(f, str) or not f.strip()]
        if bad:
            raise DataError(f"{path}: split {name!r} lists entries that are not file names: {bad[:5]!r}")
        seen: set[str] = set()
        twice = []
        for f in files:
            if Path(f).name in seen:
                twice.append(f)
            seen.add(Path(f).name)
        if twice:
            raise DataError(f"{path}: split {name!r} lists {twice[:5]} more than once")
    return splits


def available_splits(directory: str | os.PathLike) -> dict[str, list[str]]:
    """The split names and file lists of a directory's `data_splits.json` ({} if it has none)."""
    d = Path(directory)
    return read_splits(d) if os.path.lexists(d / SPLITS_FILE) else {}


def read_label_names(path: Path) -> list[str]:
    names = read_json(path)
    if not isinstance(names, list):
        raise DataError(f"{path}: expected a list of class names, got {json_type(names)}")
    bad = [n for n in names if not isinstance(n, str)]
    if bad:
        raise DataError(f"{path}: class names must be strings; got {bad[:5]!r}")
    if len(set(names)) != len(names):
        raise DataError(f"{path}: class names must be distinct; got {names}")
    return names


def select_split_files(directory: Path, files: list[Path], split: str | Sequence[str]) -> list[Path]:
    splits = read_splits(directory)
    keys = [split] if isinstance(split, str) else list(split) if isinstance(split, (list, tuple)) else []
    if not keys or not all(isinstance(k, str) for k in keys):
        raise DataError(f"split: expected a split name or a list of names, got {split!r}")
    keys = list(dict.fromkeys(keys))  # a name given twice is the same split
    by_name = {p.name: p for p in files}
    stems: dict[str, list[Path]] = {}
    for p in files:
        stems.setdefault(p.stem, []).append(p)
    chosen: dict[Path, str] = {}
    for key in keys:
        if key not in splits:
            raise DataError(f"{directory / SPLITS_FILE}: no split {key!r}; have {sorted(splits)}")
        if not splits[key]:
            raise DataError(f"{directory / SPLITS_FILE}: split {key!r} lists no files")
        for entry in splits[key]:
            name = Path(entry).name  # never a path outside the directory
            if name in by_name:
                path = by_name[name]
            elif len(stems.get(name, [])) == 1:
                path = stems[name][0]
            elif name in stems:
                raise DataError(f"{directory / SPLITS_FILE}: split {key!r} lists {entry!r}, which could be any of "
                                f"{[p.name for p in stems[name]]}; give the file name with its suffix")
            else:
                absent = [e for e in splits[key] if Path(e).name not in by_name and Path(e).name not in stems]
                raise DataError(f"{directory / SPLITS_FILE}: split {key!r} lists files that are not scans in "
                                f"{directory}: {absent[:5]}")
            if path in chosen:
                raise DataError(f"{directory / SPLITS_FILE}: {path.name} is listed in both {chosen[path]!r} and "
                                f"{key!r}; splits used together must not share scans")
            chosen[path] = key
    return list(chosen)


def scan_files(directory: Path) -> list[Path]:
    """The scan files of a folder in natural order (data2 before data10), one per scan; other files are
    reported in one warning. A `.dmt`/`.seq`/`.hdr` owns the files of its name (its data, tiles, headers)."""
    if not directory.is_dir():
        raise DataError(f"{directory}: no such directory")
    files: list[Path] = []
    skipped: list[Path] = []
    try:
        entries = sorted(directory.iterdir(), key=lambda p: natural_key(p.name))
    except OSError as exc:
        raise DataError(f"{directory}: cannot be listed ({exc.strerror or exc})") from None
    # One scan per stem: a .dmt/.seq/.hdr owns the files of the same name (its data and headers);
    # where several share a stem, the first in OWNER_SUFFIXES wins (a mosaic over its tiles).
    owners: dict[str, Path] = {}
    for entry in entries:
        suffix = entry.suffix.lower()
        if suffix in OWNER_SUFFIXES and entry.is_file():
            key = entry.stem.lower()
            if key not in owners or OWNER_SUFFIXES.index(suffix) < OWNER_SUFFIXES.index(owners[key].suffix.lower()):
                owners[key] = entry
    claimed: dict[str, Path] = {}  # scan name (stem) → the file that gives it, for its labels and its .npy copy
    for entry in entries:
        if entry.name in _IGNORED_FILES or entry.name.startswith(".") or entry.is_dir():
            continue
        suffix, key = entry.suffix.lower(), entry.stem.lower()
        scan_file = suffix in SCAN_SUFFIXES and suffix not in OWNER_SUFFIXES
        if key in owners and owners[key] != entry and not scan_file:
            continue  # part of another file's scan
        if suffix in SIDECAR_SUFFIXES and suffix != ".dat":
            continue  # mosaic tiles and backgrounds; an unowned .dat is reported as skipped
        if suffix in SCAN_SUFFIXES:
            other = owners.get(key) if scan_file and key in owners else claimed.get(entry.stem)
            if other is not None and other != entry:
                raise DataError(f"{directory}: {other.name} and {entry.name} both claim the scan name "
                                f"{entry.stem!r} (and labels/{entry.stem}.npy); keep one of them (a converted copy "
                                "beside its original would load twice)")
            claimed[entry.stem] = entry
        (files if suffix in SCAN_SUFFIXES else skipped).append(entry)
    if skipped:
        warnings.warn(f"{directory}: skipped {len(skipped)} file(s) that are not .npy scans: "
                      + ", ".join(p.name for p in skipped[:10]), stacklevel=4)
    return files


def data_files(directory: Path) -> list[str]:
    """The names in `directory` that make it someone's folder of scans: scans of any format, their
    companions, `wavenumbers.npy`, `data_splits.json` and `labels/` (hidden names left out)."""
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return []
    known = (*SCAN_SUFFIXES, *SIDECAR_SUFFIXES, *OWNER_SUFFIXES)
    return [n for n in names if not n.startswith(".") and (n in (SPLITS_FILE, WAVENUMBERS_FILE, LABELS_DIR)
                                                           or Path(n).suffix.lower() in known)]


def claim_output(path: str | os.PathLike, kind: str, what: str, *, writes: Sequence[str] = (),
                 legacy: Callable[[Path], bool] | None = None, info: dict[str, Any] | None = None) -> Claim:
    """Claim an output folder for one writer (`spectra_vae.core.claims.claim_folder`), refusing any folder
    of scans that spectra_vae did not make (`data_files`)."""
    return claim_folder(path, kind, what=what, writes=writes, holds_data=data_files, legacy=legacy, info=info)
