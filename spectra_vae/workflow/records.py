"""A run's record, read as untrusted input: `params.json` and `splits.json` checked section by section.

A record is written by the run, but a person, a crash or another program may have changed it since.
It is read once, by `read_record`, and every part a later step uses is checked first: JSON that
parses, an object of the expected sections, each of its type (`data_dir` text, split names text,
scan lists of plain file names, fingerprints, the tissue rule). Scan names are resolved inside the
data folder, as `data_splits.json` entries are (an absolute path or `..` is refused, never opened),
and a recorded scan is opened only when it is a regular file. What is wrong is a `DataError` naming
the file and the section. `train --out`, `train --resume`, `export` and `open_run` all read runs here.
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path
from typing import Any

from ..core.errors import DataError
from ..core.files import json_type, read_json, regular_file
from ..io.dataset import SpectralDataset
from ..io.folders import WAVENUMBERS_FILE
from ..io.readers import SCAN_SUFFIXES
from ..preprocess.tissue import TissueRule
from .parameters import ALL_PARAMETERS, SPLIT_PARAMETERS
from .paths import MODEL_DIR
from .splits import Splits

PARAMS, SPLITS, HISTORY, SCORES = "params.json", "splits.json", "history.csv", "scores.json"
RECORD_FILES = (PARAMS, SPLITS, HISTORY, SCORES)
SAMPLE_BLOCK, SAMPLE_BLOCKS = 65536, 4  # bytes per sampled block and blocks per fingerprint
SCAN_LISTS = ("train", "validation", "test", "abnormal")
_TEXT_PARAMS = ("data_dir", "created", "resumed", "spectra_vae_version", *SPLIT_PARAMETERS)
_UNCHECKED = ("device",)  # a run trained on another machine's device is still readable here


# -- reading -----------------------------------------------------------------------------------
def read_record(run: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """(params, splits record) of a run, each checked (`check_params`, `check_splits`); {} where a file is
    absent. Runs from before params.json keep their splits in model/splits.json."""
    run = Path(run)
    splits_path = run / SPLITS if os.path.lexists(run / SPLITS) else run / MODEL_DIR / SPLITS
    params = check_params(read_json(run / PARAMS), run / PARAMS) if os.path.lexists(run / PARAMS) else {}
    record = check_splits(read_json(splits_path), splits_path) if os.path.lexists(splits_path) else {}
    return params, record


def check_params(params: Any, path: Path) -> dict[str, Any]:
    """`params.json`: an object whose known sections have their types (the parameter table's constraints
    for the model's and notebooks' parameters)."""
    if not isinstance(params, dict):
        raise DataError(f"{path}: expected an object of parameters, got {json_type(params)}")
    for key, value in params.items():
        if key in _TEXT_PARAMS or key in _UNCHECKED:
            if not isinstance(value, str):
                raise DataError(f"{path}: section {key!r} must be text, got {json_type(value)}")
        elif key == "normal_labels":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise DataError(f"{path}: section 'normal_labels' must be a list of label names, got {value!r}")
        elif key in ALL_PARAMETERS:
            try:
                ALL_PARAMETERS[key].check(value)
            except DataError as exc:
                raise DataError(f"{path}: section {key!r}: {str(exc).split(': ', 1)[-1]}") from None
    if "data_dir" in params and not params["data_dir"]:
        raise DataError(f"{path}: section 'data_dir' is empty")
    return params


def check_splits(record: Any, path: Path) -> dict[str, Any]:
    """`splits.json`: the data folder, the scan lists of each split (plain file names, each once), how the
    split was made, the fingerprints and the tissue rule; missing lists other than `train` stand for none."""
    if not isinstance(record, dict):
        raise DataError(f"{path}: expected an object (data folder, scan lists, fingerprints), got {json_type(record)}")

    def bad(key: str, why: str) -> DataError:
        return DataError(f"{path}: section {key!r} {why}")

    if not isinstance(record.get("data_dir"), str) or not record["data_dir"]:
        raise bad("data_dir", "is missing or not text: the record must say which data folder the run used"
                  if "data_dir" not in record else f"must be the data folder as text, got {record['data_dir']!r}")
    for key in SCAN_LISTS:
        if key not in record:
            if key in ("train", "test"):
                raise bad(key, f"is missing: the record lists no {key} scans")
            continue
        names = record[key]
        if not isinstance(names, list):
            raise bad(key, f"must be a list of scan file names, got {json_type(names)}")
        for name in names:
            check_scan_name(name, path, key)
        if len(set(names)) != len(names):
            raise bad(key, f"lists a scan more than once: {sorted({n for n in names if names.count(n) > 1})}")
    if not record["train"]:
        raise bad("train", "lists no scans")
    for key in ("how", "how_trained"):
        if key in record and not isinstance(record[key], str):
            raise bad(key, f"must be text, got {json_type(record[key])}")
    if record.get("by", "scan") not in ("scan", "pixel"):
        raise bad("by", f"must be 'scan' or 'pixel', got {record['by']!r}")
    seed = record.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise bad("seed", f"must be a whole number ≥ 0, got {seed!r}")
    if not isinstance(record.get("tissue_only", False), bool):
        raise bad("tissue_only", f"must be true or false, got {record['tissue_only']!r}")
    scans = record.get("scans", {})
    if not isinstance(scans, dict):
        raise bad("scans", f"must map scan names to fingerprints, got {json_type(scans)}")
    for name, print_ in scans.items():
        check_scan_name(name, path, "scans")
        if not (isinstance(print_, dict) and _whole(print_.get("size")) and _number(print_.get("mtime"))
                and isinstance(print_.get("sample_sha1"), str)):
            raise bad("scans", f"holds a fingerprint of {name!r} that is not {{size, mtime, sample_sha1}}: {print_!r}")
    if record.get("tissue_rule") is not None:
        rule = record["tissue_rule"]
        try:
            parsed = TissueRule.from_dict(rule)
        except (DataError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise bad("tissue_rule", f"is not a tissue rule ({type(exc).__name__}: {exc})") from None
        if math.isnan(parsed.threshold) or parsed.threshold == math.inf:
            raise bad("tissue_rule", f"has threshold {parsed.threshold}")
    return record


def check_scan_name(name: Any, path: Path, key: str) -> str:
    """A recorded scan: a plain file name inside the data folder (no folder part, not `..`), never a path."""
    if not isinstance(name, str) or not name or name in (".", "..") or "\0" in name \
            or name != Path(name).name or "/" in name or "\\" in name:
        raise DataError(f"{path}: section {key!r} lists {name!r}, which is not the file name of a scan in the data "
                        "folder (a recorded scan is never a path elsewhere)")
    return name


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# -- the data folder against the record ----------------------------------------------------------
def scan_path(data: Path, name: str) -> Path:
    """Where scan `name` of a data source lives (the source itself when it is one file), inside `data`."""
    return data if data.is_file() else data / Path(name).name


def fingerprint(path: Path) -> dict[str, Any]:
    """Size, modification time and a SHA-1 of a few sampled blocks of a file: a cheap change detector.
    Only a regular file is opened (a FIFO would block)."""
    regular_file(path)
    st = path.stat()
    h = hashlib.sha1(str(st.st_size).encode())
    with open(path, "rb") as f:
        starts = {int(i * max(st.st_size - SAMPLE_BLOCK, 0) / max(SAMPLE_BLOCKS - 1, 1)) for i in range(SAMPLE_BLOCKS)}
        for start in sorted(starts):
            f.seek(start)
            h.update(f.read(SAMPLE_BLOCK))
    return {"size": st.st_size, "mtime": st.st_mtime, "sample_sha1": h.hexdigest()}


def scan_files(dataset: SpectralDataset) -> dict[str, Path]:
    """Scan name → file of every scan of `dataset` that has one."""
    return {s.name: s.path for s in dataset.scan_objects if s.path is not None}


def split_record(data_dir: Path, splits: Splits, abnormal: SpectralDataset | None, seed: int) -> dict[str, Any]:
    """The scan lists of each split with a fingerprint of every scan file."""
    train, val, test = splits.train, splits.validation, splits.test
    by = "pixel" if set(train.scans) & set(test.scans) else "scan"
    files: dict[str, Path] = {}
    for ds in (train, val, test, abnormal):
        if ds is not None:
            files |= scan_files(ds)
    return {"data_dir": str(data_dir.resolve()), "how": splits.how, "by": by, "seed": seed,
            "train": train.scans, "validation": val.scans if val is not None else [], "test": test.scans,
            "abnormal": abnormal.scans if abnormal is not None else [],
            "scans": {name: fingerprint(p) for name, p in files.items()}}


def recorded_scans(record: dict[str, Any]) -> list[str]:
    """Every scan the record lists, once, in the order train, validation, test, abnormal."""
    return list(dict.fromkeys(n for key in SCAN_LISTS for n in record.get(key, [])))


def check_scans(data_dir: Path, record: dict[str, Any]) -> list[str]:
    """Notes on the data folder against the record; a `DataError` when recorded scans are missing or are
    not regular files."""
    recorded = recorded_scans(record)
    missing = [n for n in recorded if not os.path.lexists(scan_path(data_dir, n))]
    if missing:
        raise DataError(f"{data_dir}: {len(missing)} scan(s) this run was trained and tested with are missing: "
                        f"{missing[:10]}; restore them or give data_dir where they are")
    for name in recorded:
        regular_file(scan_path(data_dir, name))
    notes = []
    present = [p.name for p in sorted(data_dir.iterdir()) if p.is_file() and p.suffix.lower() in SCAN_SUFFIXES
               and not p.name.startswith(".") and p.name != WAVENUMBERS_FILE] if data_dir.is_dir() else []
    new = [n for n in present if n not in recorded]
    if new:
        notes.append(f"{len(new)} scan(s) in {data_dir} are not part of this run and are ignored: {new[:10]}"
                     + (" …" if len(new) > 10 else ""))
    for name, was in record.get("scans", {}).items():
        if name not in recorded:
            continue  # a fingerprint of a scan the run does not use: nothing to open
        now = fingerprint(scan_path(data_dir, name))
        what = [f"{k} {was[k]} → {now[k]}" for k in ("size",) if was.get(k) != now[k]]
        if was.get("sample_sha1") != now["sample_sha1"]:
            what.append("sampled content differs")
        if not what and was.get("mtime") != now["mtime"]:
            what.append("modification time differs (sampled content identical)")
        if what:
            notes.append(f"{name} changed since training: {', '.join(what)}")
    return notes


def recorded_data_dir(run: Path, record: dict[str, Any], what: str) -> Path:
    """The data folder a run's record names, which must exist (`what` says who asks: "resume", …)."""
    data = Path(record["data_dir"]).expanduser()
    if not data.exists():
        raise DataError(f"{what}: the data folder of {run}, {data}, does not exist; give the folder where its scans "
                        "are now")
    return data
