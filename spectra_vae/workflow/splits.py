"""Splits by scan: the named splits of a folder's `data_splits.json`, or a seeded split where it has none.

A split name asked for must be in the file (with a did-you-mean), and the splits used together in
one run must not share a scan. Notebook 01 also explores splits (`split`, `scattered_split`) that
may overlap the training ones; in a pipeline run it explores the run's own (`explored_splits`).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import DataError
from ..io.dataset import SpectralDataset
from ..io.folders import SPLITS_FILE, available_splits
from ..io.load import load_dataset
from ..preprocess.tissue import TissueRule
from .paths import resolve_scattered_dir

EXPLORED_SPLITS = ("split", "scattered_split")  # notebook 01's: comma-separated, and not training splits


def split_names(text: str) -> list[str]:
    """`"normal_corr_train, abnormal_corr"` → the split names, in order ([] for "")."""
    if not isinstance(text, str):
        raise DataError(f"expected split names separated by commas, got {text!r}")
    return [name.strip() for name in text.split(",") if name.strip()]


def load_scattered_variant(data: Path, data_dir: str | os.PathLike, scattered_dir: str | os.PathLike,
                           split: str = "", scattered_split: str = "") -> tuple[str, SpectralDataset | None]:
    """The uncorrected ("scattered") variant of the scans notebook 01 explores, and where it came from.

    - Two folders of the same files: `scattered_dir` (`"auto"`: the demo's twin), read with the same
      `split` names as the corrected scans.
    - Both variants in one folder under different names, as the lab keeps them: `scattered_split`
      names their split(s) in `data_dir` (or in `scattered_dir` when one is given), listed in the same
      order as `split`'s, since scans pair up in order.
    (description, None) when there is no scattered variant."""
    folder = resolve_scattered_dir(scattered_dir, data_dir)
    names = split_names(scattered_split)
    if names:
        folder = folder if str(scattered_dir).strip().lower() not in ("", "none", "auto") else data
        return f"{folder}, split {', '.join(names)}", load_dataset(folder, split=names)
    if folder is None:
        return "none", None
    same = split_names(split)
    where = f"{folder}, split {', '.join(same)}" if same else str(folder)
    return where, load_dataset(folder, split=same or None)



# The lab keeps both variants of every scan under split names that differ in one part: corr ↔ uncorr.
_TWIN_PARTS = {"corr": "uncorr", "uncorr": "corr", "corrected": "uncorrected", "uncorrected": "corrected"}


def twin_split(name: str) -> tuple[str, bool] | None:
    """The split name of the other variant of the same scans in the lab's naming, and whether `name` is the
    uncorrected one: `normal_corr_train` → (`normal_uncorr_train`, False); None when no one part of the name
    (between `_`, `-`, `.` or spaces) is `corr`, `uncorr`, `corrected` or `uncorrected`."""
    parts = re.split(r"([_\-. ])", name)
    found = [i for i, part in enumerate(parts) if part.lower() in _TWIN_PARTS]
    if len(found) != 1:
        return None
    word = parts[found[0]].lower()
    parts[found[0]] = _TWIN_PARTS[word]
    return "".join(parts), word.startswith("un")


def explored_splits(named: dict[str, list[str]], run_splits: Sequence[str]) -> dict[str, str]:
    """What notebook 01 explores in a run on `run_splits` (its train, validation, test and abnormal split names;
    those missing from the folder's splits `named`, or empty, are skipped): `split`, the run's scans, and where
    the folder holds their other variant too under the lab's names (`twin_split`, for every one of them),
    `scattered_split`, the uncorrected twins. The corrected variant is the one explored and the uncorrected one
    shown beside it, whichever of the two the run trains on."""
    names = [n for n in dict.fromkeys(run_splits) if n and n in named]
    twins = [twin_split(n) for n in names]
    if not names or any(t is None or t[0] not in named for t in twins):
        return {"split": ",".join(names)}
    uncorrected = {t[1] for t in twins if t is not None}
    if len(uncorrected) != 1:  # some of the run's splits corrected, some not: no pairing to show
        return {"split": ",".join(names)}
    others = [t[0] for t in twins if t is not None]
    corrected, scattered = (others, names) if uncorrected.pop() else (names, others)
    return {"split": ",".join(corrected), "scattered_split": ",".join(scattered)}


@dataclass
class Splits:
    train: SpectralDataset
    validation: SpectralDataset | None
    test: SpectralDataset
    how: str  # one line saying where the split came from

    def tissue_only(self, rule: TissueRule | None) -> Splits:
        """Training and validation restricted to tissue by the model's rule (as it trained); test stays whole."""
        if rule is None:
            return self
        n = len(self.train)
        train = rule.select(self.train)
        val = None if self.validation is None else rule.select(self.validation)
        how = (f"{self.how}; training and validation on tissue pixels only ({rule}: {len(train)} of {n} "
               "training pixels)")
        return Splits(train, val, self.test, how)


def make_splits(data_dir: Path, train_split: str = "normal_train", val_split: str = "normal_val",
                test_split: str = "normal_test", seed: int = 0) -> Splits:
    """The named splits of the folder's `data_splits.json`; a seeded 80/10/10 split by scan only where
    the folder has no such file.

    Every name asked for must be in the file (`val_split=""` means no validation); the three
    splits must not share a scan.
    """
    wanted = {"train_split": train_split, "val_split": val_split, "test_split": test_split}
    for what, key in wanted.items():
        if not isinstance(key, str):
            raise DataError(f"parameter {what}: expected text, got {key!r}")
    if data_dir.is_dir() and os.path.lexists(data_dir / SPLITS_FILE):
        named = check_split_names(data_dir, wanted, required=set(wanted))
        train, test = load_dataset(data_dir, split=train_split), load_dataset(data_dir, split=test_split)
        val = load_dataset(data_dir, split=val_split) if named.get(val_split) else None
        check_disjoint({f"training split {train_split!r}": train, f"validation split {val_split!r}": val,
                         f"test split {test_split!r}": test}, data_dir / SPLITS_FILE)
        validation = f"{val_split!r}" if val is not None else ("no validation" if val_split == ""
                                                               else f"no validation ({val_split!r} is empty)")
        return Splits(train, val, test, f"splits {train_split!r}/{validation}/{test_split!r} from "
                                        f"{data_dir / SPLITS_FILE}")
    ds = load_dataset(data_dir)
    if len(ds.scans) >= 3:
        train, val, test = ds.split(by="scan", fractions=(0.8, 0.1, 0.1), seed=seed)
        how = f"random 80/10/10 split by scan (seed {seed}); {data_dir} has no {SPLITS_FILE}"
    else:
        train, val, test = ds.split(by="pixel", fractions=(0.8, 0.1, 0.1), seed=seed)
        how = f"random 80/10/10 split by pixel (seed {seed}): fewer than 3 scans, held-out scores are optimistic"
    return Splits(train, val, test, how)


def check_split_names(data_dir: Path, wanted: dict[str, str], required: set[str]) -> dict[str, list[str]]:
    """The folder's named splits, after checking the names asked for (parameter → split name).

    A `required` parameter must name a split of the file (`val_split=""`: none); the others are
    checked where the file has them. Two different split names used together must not list the
    same scan. Returns the file's splits.
    """
    named = available_splits(data_dir)
    for what, key in wanted.items():
        if key not in named and what in required and not (what == "val_split" and key == ""):
            close = difflib.get_close_matches(key, list(named), n=1)
            raise DataError(f"parameter {what}: {data_dir / SPLITS_FILE} has no split {key!r}"
                            + (f" (did you mean {close[0]!r}?)" if close else "")
                            + f"; it has {sorted(named)}"
                            + ("; val_split='' trains without validation" if what == "val_split" else ""))
    owner: dict[str, str] = {}
    for key in dict.fromkeys(v for v in wanted.values() if v in named):
        for f in named[key]:
            name = Path(f).name
            if owner.get(name, key) != key:
                raise DataError(f"{data_dir / SPLITS_FILE}: {name} is in both split {owner[name]!r} and split "
                                f"{key!r}; the splits used together in one run must not share scans")
            owner[name] = key
    return named


def check_disjoint(parts: dict[str, SpectralDataset | None], where: Path) -> None:
    """No scan file in two of the parts (names can differ: 'data0' and 'data0.npy' are one file)."""
    owner: dict[str, str] = {}
    for part, ds in parts.items():
        for scan in [] if ds is None else ds.scan_objects:
            key = str(scan.path.resolve()) if scan.path is not None else scan.name
            if key in owner and owner[key] != part:
                raise DataError(f"{where}: {scan.name} is in both the {owner[key]} and the {part}; the splits "
                                "used together in one run must not share scans")
            owner[key] = part


