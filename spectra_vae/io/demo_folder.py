"""The demo data's own folder: recognised, claimed and sized before a scan is generated.

`make_demo_dataset` writes only into a new or empty folder, or one that holds demo data already
(its marker, or for folders made before markers its `demo.json`), so regenerating the demo
(`make data`, `ensure_demo_data`) works while a folder of the user's own scans is refused.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ..core.claims import Claim
from ..core.resources import check_disk, check_memory
from .folders import LABELS_DIR, SPLITS_FILE, WAVENUMBERS_FILE, claim_output

GENERATOR = "spectra_vae.make_demo_dataset"  # demo.json's "generator": how older demo folders are recognised
META = "demo.json"
SIDE = (LABELS_DIR, "truth", "scattering")  # per-scan companions, one file per scan stem
WORK_ARRAYS = 12  # float64 arrays of one scan's size alive at once while it is generated (peak 9.6 measured, scattered)


def is_demo_folder(folder: Path) -> bool:
    """Whether `folder` holds demo data that `make_demo_dataset` wrote before folders carried markers."""
    meta = folder / META
    try:
        if not meta.is_file():
            return False
        return json.loads(meta.read_text()).get("generator") == GENERATOR
    except (OSError, ValueError, AttributeError):
        return False


def claim_demo_folder(out: Path, n_scans: int, height: int, width: int, n_channels: int, itemsize: int) -> Claim:
    """The folder claimed for demo data, after checking that a scan fits in memory and all of them on disk;
    scans that an earlier, larger demo left there (beyond `n_scans`) are removed."""
    check_memory(height * width * n_channels * 8 * WORK_ARRAYS, f"demo scans of {height}×{width} pixels")
    check_disk(out, n_scans * height * width * (n_channels * itemsize + 8 * 8), f"{n_scans} demo scans")
    names = [f"data{i}.npy" for i in range(n_scans)]
    claim = claim_output(out, "demo", "demo data folder", legacy=is_demo_folder,
                         writes=[*names, WAVENUMBERS_FILE, SPLITS_FILE, META, *SIDE])
    try:
        _remove_beyond(out, n_scans)
    except BaseException:
        claim.release()
        raise
    return claim


def _remove_beyond(out: Path, n_scans: int) -> None:
    """The scans data{i} with i ≥ `n_scans` that the previous demo in this folder wrote (as its demo.json
    says), and their companions: a smaller demo would otherwise leave them to load as unlisted scans."""
    try:
        before = int(json.loads((out / META).read_text()).get("n_scans", 0))
    except (OSError, ValueError, AttributeError, TypeError):
        return
    for i in range(n_scans, before):
        for folder in (out, *(out / s for s in SIDE)):
            for f in folder.glob(f"data{i}.*") if folder.is_dir() else []:
                if re.fullmatch(rf"data{i}\.(npy|npz)", f.name) and f.is_file():
                    os.unlink(f)
