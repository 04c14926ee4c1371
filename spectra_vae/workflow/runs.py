"""A run is a folder that owns its record: parameters, recorded splits, tissue rule, history, model.

```
<run>/params.json       every parameter of the run (model, splits, labels, data folder)
<run>/splits.json       the scan lists of each split as trained, with a fingerprint of each scan,
                        and the model's tissue rule
<run>/history.csv       one row per epoch
<run>/model/            best.pt, last.pt, final.pt
<run>/figures/, <run>/NN_name.ipynb (+ .html)   what the notebooks made
```

Reopening a run reads the recorded scan lists, never the seed: new scans in the data folder are
ignored and reported, scans changed since training are reported, missing scans are a
`DataError`. A run folder is never overwritten unless asked (`overwrite=True`).
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..core.claims import Claim
from ..core.distributed import broadcast_object, dist_info, init_distributed
from ..core.errors import DataError
from ..core.files import check_output_dir, regular_file, write_json_atomic, write_text_atomic
from ..core.version import __version__
from ..estimator.checks import check_component_start
from ..estimator.vae import SpectraVAE
from ..io.dataset import SpectralDataset
from ..io.demo import NORMAL_LABELS
from ..io.folders import SPLITS_FILE, available_splits, claim_output, data_files
from ..io.load import load_dataset
from ..preprocess.pipeline import Preprocessor
from ..preprocess.tissue import TissueRule
from .paths import (
    DEMO_DATA,
    FINAL,
    LAST,
    MODEL_DIR,
    demo_run_dir,
    figures_dir,
    is_demo_data,
    resolve_checkpoint,
    resolve_data_dir,
    runs_dir,
)
from .preflight import check_split_roles, check_training
from .records import (
    HISTORY,
    PARAMS,
    RECORD_FILES,
    SCORES,
    SPLITS,
    check_scans,
    fingerprint,
    read_record,
    recorded_data_dir,
    recorded_scans,
    split_record,
)
from .splits import Splits, check_split_names, make_splits

__all__ = ["HISTORY", "PARAMS", "SCORES", "SPLITS", "RunExistsError", "check_scans", "claim_run_dir", "fingerprint",
           "claim_run_folder", "is_run", "open_run", "read_record", "resume", "split_record", "train"]
DATA_FIGURES = "01_"  # figures of notebook 01 (the data, not the model): kept when a run is replaced


class RunExistsError(DataError):
    """The run folder already holds a run and overwriting was not asked for."""


# -- names and folders -----------------------------------------------------------------------
def new_run_dir(root: str | os.PathLike | None = None) -> Path:
    """A fresh folder `<root>/<YYYYmmdd-HHMMSS>-<6 hex>` (default root reports/runs), created here.

    The random suffix and an exclusive `mkdir` make two runs started in the same second distinct.
    """
    base = Path(root) if root is not None else runs_dir()
    base.mkdir(parents=True, exist_ok=True)
    while True:
        path = base / f"{_dt.datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
        try:
            path.mkdir()
            return path
        except FileExistsError:  # pragma: no cover - a 1 in 16 million coincidence
            continue


def is_run(path: str | os.PathLike) -> bool:
    """Whether `path` holds a training run (a record or a checkpoint)."""
    p = Path(path)
    return (p / PARAMS).exists() or (p / SPLITS).exists() or any((p / MODEL_DIR).glob("*.pt"))


def claim_run_dir(path: str | os.PathLike, overwrite: bool = False, *, notebooks: tuple[str, ...] = ()) -> Claim:
    """`path` claimed for a new run (`spectra_vae.core.claims`): refused with `RunExistsError` if it holds
    one, unless `overwrite`; refused if it is a folder of scans or another process's run in progress.
    Returns the claim, which the caller releases when the run is written.

    Overwriting removes what a run writes (record, model, the figures of the notebooks from 02 on,
    the executed `notebooks` and their HTML); notebook 01's figures describe the data, not the
    model, and stay (it runs before 02, in a pipeline and in JupyterLab); other files are left alone.
    """
    p = Path(path).expanduser()
    claim = claim_output(p, "run", "run folder", writes=[*RECORD_FILES, MODEL_DIR], legacy=_older_run)
    try:
        if is_run(p):
            if not overwrite:
                try:
                    created = read_record(p)[0].get("created", "")
                    what = f" (created {created})" if created else ""
                except DataError as exc:
                    what = f" (its record is damaged: {exc})"
                raise RunExistsError(f"{p} already holds a run{what}; give another run folder, or overwrite it on "
                                     "purpose: overwrite=True, -p overwrite True for 02_train, --overwrite for the "
                                     "command line")
            for name in RECORD_FILES:
                (p / name).unlink(missing_ok=True)
            shutil.rmtree(p / MODEL_DIR, ignore_errors=True)
            for fig in (p / "figures").glob("*") if (p / "figures").is_dir() else []:
                if not fig.name.startswith(DATA_FIGURES):
                    fig.unlink(missing_ok=True)
            for nb in notebooks:
                for f in (p / nb, (p / nb).with_suffix(".html")):
                    f.unlink(missing_ok=True)
    except BaseException:
        claim.release()
        raise
    return claim


def claim_run_folder(path: str | os.PathLike) -> Claim:
    """A run folder claimed for one writer without replacing anything in it (the notebooks after 02 write
    their figures and copies into the run they read, a resumed run goes on in its own)."""
    return claim_output(Path(path).expanduser(), "run", "run folder", writes=[*RECORD_FILES, MODEL_DIR],
                        legacy=_older_run)


def _older_run(folder: Path) -> bool:
    """A run folder written before folders carried markers: a run's record or model, and no scans."""
    return is_run(folder) and not [n for n in data_files(folder) if n not in RECORD_FILES]


def training_run_dir(run_dir: str | os.PathLike, data_dir: str | os.PathLike, overwrite: bool = False
                     ) -> tuple[Path, bool]:
    """Where a training run goes, and whether it may replace a run already there.

    `run_dir` "" → reports/demo for the demo data (the demo's own run, replaced each time), else a
    new folder under reports/runs that no other run has.
    """
    if str(run_dir) == "":
        if is_demo_data(data_dir):
            return demo_run_dir(), True
        return new_run_dir(), overwrite
    return Path(run_dir).expanduser(), overwrite


def resolve_run_dir(run_dir: str | os.PathLike = "", data_dir: str | os.PathLike = DEMO_DATA) -> Path:
    """A run folder for a notebook's figures: `run_dir`, or "" → `reports/demo` for the demo data, a new
    folder under `reports/runs` for other data; made, with its `figures/`."""
    if not isinstance(run_dir, (str, os.PathLike)):
        raise DataError(f"parameter run_dir: expected a path, got {run_dir!r}")
    path = training_run_dir(run_dir, data_dir)[0]
    figures_dir(path)
    return path


def find_run(run_dir: str | os.PathLike = "", data_dir: str | os.PathLike = "") -> Path:
    """The run to open: `run_dir`, else the demo run (no `data_dir`, or the demo data) or the newest
    run on `data_dir`."""
    if str(run_dir) != "":
        return Path(run_dir).expanduser()
    if str(data_dir) == "" or is_demo_data(data_dir):
        return demo_run_dir()
    wanted = str(Path(data_dir).expanduser().resolve())
    candidates = []
    for p in (runs_dir()).glob(f"*/{PARAMS}"):
        try:
            params = read_record(p.parent)[0]
        except DataError as exc:
            warnings.warn(f"skipped a run whose record cannot be read: {exc}", UserWarning, stacklevel=2)
            continue
        if params.get("data_dir") == wanted:
            candidates.append((params.get("created", ""), p.parent))
    if not candidates:
        raise DataError(f"parameter run_dir: no run trained on {wanted} under {runs_dir()}; "
                        "give run_dir (the folder 02_train wrote)")
    return max(candidates)[1]


# -- the record ------------------------------------------------------------------------------
@dataclass
class Run:
    """An opened run: the model, the splits as recorded, and what changed in the data folder since."""

    path: Path
    vae: SpectraVAE
    splits: Splits
    data_dir: Path
    checkpoint: Path
    params: dict[str, Any]
    record: dict[str, Any]
    abnormal: SpectralDataset | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def normal_labels(self) -> tuple[str, ...]:
        """Label names that count as normal: the run's `normal_labels`, else background, stroma and
        epithelium (`spectra_vae.io.demo.NORMAL_LABELS`); every other label is an anomaly. () when the
        run's scans have no label maps: there is nothing to name."""
        parts = (self.splits.train, self.splits.validation, self.splits.test, self.abnormal)
        if all(ds is None or ds.labels is None for ds in parts):
            return ()
        return tuple(self.params.get("normal_labels") or NORMAL_LABELS)

    def scans(self) -> SpectralDataset:
        """Every scan of the run (train, validation, test, abnormal), whole, in that order."""
        return load_dataset(self.data_dir).select_scans(recorded_scans(self.record))

    def roles(self) -> dict[str, str]:
        """Per scan name, its split: train, validation, test or abnormal."""
        out: dict[str, str] = {}
        for role in ("abnormal", "test", "validation", "train"):
            out |= {n: role for n in self.record.get(role, [])}
        return out


def recorded_splits(data_dir: Path, record: dict[str, Any]) -> tuple[Splits, SpectralDataset | None]:
    """The run's splits rebuilt from its recorded scan lists (a pixel split: re-split those scans)."""
    ds = load_dataset(data_dir)
    how = record.get("how", "recorded splits")
    val: SpectralDataset | None
    if record.get("by") == "pixel":
        train, val, test = ds.select_scans(record["train"]).split(by="pixel", fractions=(0.8, 0.1, 0.1),
                                                                  seed=int(record.get("seed", 0)))
    else:
        train, test = ds.select_scans(record["train"]), ds.select_scans(record["test"])
        val = ds.select_scans(record["validation"]) if record.get("validation") else None
    abnormal = ds.select_scans(record["abnormal"]) if record.get("abnormal") else None
    return Splits(train, val, test, f"{how} (as recorded with the run)"), abnormal


def open_run(run_dir: str | os.PathLike = "", checkpoint: str = "", data_dir: str | os.PathLike = "") -> Run:
    """A run's model and splits exactly as recorded at training time.

    `data_dir` "" means the folder the run was trained on; another folder (the data moved) must
    hold the same scans. New scans there are ignored and reported in `Run.notes` (and as a warning).
    """
    run = find_run(run_dir, data_dir)
    params, record = read_record(run)
    if not record:
        raise DataError(f"{run}: no recorded splits ({SPLITS}); this run cannot be reopened on its own splits")
    ckpt = resolve_checkpoint(checkpoint, run)
    vae = SpectraVAE.load(ckpt)
    data = recorded_data_dir(run, record, "open_run") if str(data_dir) == "" else resolve_data_dir(data_dir)
    notes = check_scans(data, record)
    for note in notes:
        warnings.warn(note, UserWarning, stacklevel=2)
    splits, abnormal = recorded_splits(data, record)
    if vae.tissue_rule_ is None and record.get("tissue_rule"):
        vae.tissue_rule_ = TissueRule.from_dict(record["tissue_rule"])
    if vae.tissue_only:
        splits = splits.tissue_only(vae.tissue_rule_)
    return Run(run, vae, splits, data, ckpt, params, record, abnormal, notes)


# -- training and resuming -------------------------------------------------------------------
def _parse_labels(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    return [str(v).strip() for v in items if str(v).strip()]


def read_component_start(path: str | os.PathLike, vae: SpectraVAE, axis: np.ndarray, known: bool = True) -> np.ndarray:
    """Reference spectra from a file (`.npy` of `(K, n_channels)` on the model's axis, or a table whose
    header holds wavenumbers, interpolated onto it), checked for `vae` (architecture, K, axis, values):
    `(K, n_channels)`; `DataError` naming the file. `axis`: the model's (after preprocessing); `known`:
    whether the data have wavenumbers (else a table's header cannot be placed on it)."""
    spectra = load_dataset(path)  # a spectrum with NaN or inf is left out, with a warning that says so
    values = spectra.to_array()
    table = pd.DataFrame(values, columns=spectra.wavenumbers) if spectra.wavenumbers_known else values
    try:
        return check_component_start(table, vae.architecture, vae.latent_dim, len(axis), axis if known else None)
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None


def train(data_dir: str | os.PathLike, out: str | os.PathLike = "", *, overwrite: bool = False,
          train_split: str = "normal_train", val_split: str = "normal_val", test_split: str = "normal_test",
          abnormal_split: str = "abnormal", normal_labels: str | list[str] = "", verbose: bool = True,
          component_start: str | os.PathLike = "", **model: Any) -> tuple[SpectraVAE, Splits, Path]:
    """Train a new run in `out` ("" → a new folder; see `training_run_dir`); returns (vae, splits, final.pt).

    Everything is checked before the folder is claimed (`claim_run_dir`: a folder of scans, another run
    or another writer is refused): the split names, the parameters, the preprocessing against the axis,
    the training pixels and the model's memory (`preflight.check_training`). Then params.json and
    splits.json are written before training (so an interrupted run can be resumed), then
    model/final.pt, history.csv and the tissue rule. `model` holds `SpectraVAE` parameters;
    `component_start` a file of reference spectra an unmixing model's components start from
    (`read_component_start`), checked against the model's axis before the folder is claimed too.
    """
    data = resolve_data_dir(data_dir)
    rank, world = init_distributed()
    if world > 1 and str(out) == "":
        raise DataError("a distributed run needs --out: every process must write to and read from the same folder")
    names = {"train_split": train_split, "val_split": val_split, "test_split": test_split,
             "abnormal_split": abnormal_split}
    check_split_roles(names)
    if data.is_dir() and (data / SPLITS_FILE).exists():  # names checked, and no scan in two of them
        given = {k: v for k, v in names.items() if v}
        check_split_names(data, given, required=set(given))
    splits = make_splits(data, train_split, val_split, test_split, int(model.get("seed", 0)))
    named = available_splits(data) if data.is_dir() else {}
    abnormal = load_dataset(data, split=abnormal_split) if named.get(abnormal_split) else None
    vae = SpectraVAE(verbose=verbose, **model)
    vae._check_params()  # bad data, split names or parameters fail before any folder is touched
    # steps that need the axis (a cut outside the data, cm⁻¹ on bare scans) fail here, not after the record
    axis = Preprocessor(vae.preprocess).check(splits.train.wavenumbers, known=splits.train.wavenumbers_known)
    start = None
    if str(component_start):
        start = read_component_start(component_start, vae, axis, splits.train.wavenumbers_known)
    check_training(vae, splits.train)
    if str(out):
        check_output_dir(out, "out")
    run, replace = training_run_dir(out, data_dir, overwrite)
    claim, refused = None, None
    if rank == 0:  # the first process claims the folder; the others wait for it, then write only below it
        try:
            claim = claim_run_dir(run, replace)
        except DataError as exc:
            refused = exc
    if world > 1 and broadcast_object(refused is not None):
        raise refused or DataError(f"{run}: the first process could not claim the run folder; see its error")
    if refused is not None:
        raise refused
    try:
        if rank == 0:
            params = {"data_dir": str(data.resolve()), **names, "normal_labels": _parse_labels(normal_labels),
                      **{k: v for k, v in vae.get_params().items() if k != "verbose"},
                      **({"component_start": str(Path(component_start).resolve())} if start is not None else {}),
                      "created": _dt.datetime.now().isoformat(timespec="seconds"), "spectra_vae_version": __version__}
            write_json_atomic(run / PARAMS, params)
            record = split_record(data, splits, abnormal, vae.seed) | {"tissue_only": vae.tissue_only}
            write_json_atomic(run / SPLITS, record)
        model_dir = run / MODEL_DIR
        model_dir.mkdir(parents=True, exist_ok=True)
        vae.fit(splits.train, validation=splits.validation, checkpoint_dir=model_dir, component_start=start)
        if vae.tissue_only:
            splits = splits.tissue_only(vae.tissue_rule_)
        if dist_info()[0] == 0:  # in a distributed run only the first process writes
            _finish(run, vae, splits.how)
    finally:
        if claim is not None:
            claim.release()
    return vae, splits, run / MODEL_DIR / FINAL


def _finish(run: Path, vae: SpectraVAE, how: str) -> None:
    """The model, history and tissue rule written into the run once training ends."""
    vae.save(run / MODEL_DIR / FINAL)
    write_text_atomic(run / HISTORY, vae.history.to_csv(index=False))
    _, record = read_record(run)
    assert vae.tissue_rule_ is not None  # fit sets it, and a run's checkpoints store it for resume
    write_json_atomic(run / SPLITS, record | {"how_trained": how, "tissue_rule": vae.tissue_rule_.to_dict()})


def resume(run_dir: str | os.PathLike, epochs: int | str | None = None) -> tuple[SpectraVAE, Splits, Path]:
    """Continue a run from its `last` checkpoint on its recorded splits, to `epochs` (default: as planned).
    The run's folder is claimed while it trains: a second writer is refused."""
    run = Path(run_dir).expanduser()
    last = run / MODEL_DIR / LAST
    if not last.exists():
        raise DataError(f"resume: {run} has no {MODEL_DIR}/{LAST} to continue from")
    params, record = read_record(run)
    if not record:
        raise DataError(f"resume: {run} has no recorded splits ({SPLITS})")
    data = recorded_data_dir(run, record, "resume")
    for note in check_scans(data, record):
        warnings.warn(note, UserWarning, stacklevel=2)
    splits, _ = recorded_splits(data, record)
    with claim_run_folder(run):
        vae = SpectraVAE.resume(last, splits.train, validation=splits.validation, checkpoint_dir=run / MODEL_DIR,
                                epochs=epochs)
        if vae.tissue_only:
            splits = splits.tissue_only(vae.tissue_rule_)
        if params:
            write_json_atomic(run / PARAMS, params | {"epochs": vae.epochs,
                                                      "resumed": _dt.datetime.now().isoformat(timespec="seconds")})
        _finish(run, vae, splits.how)
    return vae, splits, run / MODEL_DIR / FINAL


def read_history(run: str | os.PathLike) -> pd.DataFrame:
    """A run's history.csv (from its final checkpoint for runs from before history.csv)."""
    p = Path(run)
    if (p / HISTORY).exists():
        try:
            return pd.read_csv(regular_file(p / HISTORY))
        except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:  # EmptyDataError is a ValueError
            raise DataError(f"{p / HISTORY}: not a readable history table ({type(exc).__name__}: {exc})") from None
    return SpectraVAE.load(p / MODEL_DIR / FINAL, device="cpu").history
