"""What the notebooks and the command line share: parameters, paths, splits, training, the papermill run."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .data import WAVENUMBERS_FILE, SpectralDataset, available_splits, load_dataset
from .demo import GENERATOR_VERSION, make_demo_dataset
from .errors import DataError  # noqa: F401  (notebooks raise it through here)
from .estimator import SpectraVAE

NOTEBOOKS = ("01_data_exploration.ipynb", "02_train.ipynb", "03_reconstruction.ipynb",
             "04_latent_exploration.ipynb", "05_anomaly_detection.ipynb")
DEMO = {"n_scans": 6, "height": 64, "width": 64, "seed": 0}  # the notebooks' default data
MODEL_DIR, FINAL = "model", "final.pt"


class PipelineError(RuntimeError):
    """A notebook of the pipeline failed; the message names the notebook, the cell and the error."""


# -- paths -----------------------------------------------------------------------------------
def project_root(start: str | os.PathLike | None = None) -> Path:
    """The repository root (the folder holding `notebooks/` and `spectra_vae/`), else the cwd."""
    here = Path(start or os.getcwd()).resolve()
    for d in (here, *here.parents):
        if (d / "notebooks").is_dir() and (d / "spectra_vae").is_dir():
            return d
    pkg_root = Path(__file__).resolve().parent.parent
    return pkg_root if (pkg_root / "notebooks").is_dir() else here


def resolve_data_dir(data_dir: str | os.PathLike = "") -> Path:
    """`""` → the embedded demo data (generated on first use, seeded); else the directory given."""
    if str(data_dir) == "":
        path = project_root() / "data" / "demo"
        meta = path / "demo.json"
        wanted = {**DEMO, "version": GENERATOR_VERSION}
        recorded = json.loads(meta.read_text()) if meta.exists() else {}
        if any(recorded.get(k) != v for k, v in wanted.items()):
            make_demo_dataset(path, **DEMO)
        return path
    path = Path(data_dir).expanduser()
    if not path.exists():
        raise DataError(f"parameter data_dir: {path} does not exist")
    return path


def resolve_run_dir(run_dir: str | os.PathLike = "", data_dir: str | os.PathLike = "") -> Path:
    """`""` → `reports/demo` for the demo data, a new folder under `reports/runs` for other data; created."""
    if str(run_dir) == "":
        from .runs import training_run_dir

        path = training_run_dir("", data_dir)[0]
    else:
        path = Path(run_dir).expanduser()
    (path / "figures").mkdir(parents=True, exist_ok=True)
    return path


def resolve_checkpoint(checkpoint: str, run_dir: Path) -> Path:
    """`""` → the model that 02_train wrote into `run_dir`; a clear error if there is none."""
    path = run_dir / MODEL_DIR / FINAL if checkpoint == "" else Path(checkpoint).expanduser()
    if not path.is_file():
        raise DataError(f"parameter checkpoint: no model at {path}; run 02_train.ipynb first "
                        "(with the same run_dir) or give checkpoint=<path to a .pt file>")
    return path


FIGURE_FORMATS = ("png", "svg")  # PNG to look at, SVG (vector) for papers and other tools


def save_figure(fig: Any, run_dir: Path, name: str, formats: tuple[str, ...] = FIGURE_FORMATS) -> Path:
    """Save a figure as `run_dir/figures/<name>.png` (and .svg) and return the PNG's path."""
    (run_dir / "figures").mkdir(parents=True, exist_ok=True)
    for fmt in formats:
        fig.savefig(run_dir / "figures" / f"{name}.{fmt}", dpi=110, bbox_inches="tight")
    return run_dir / "figures" / f"{name}.{formats[0]}"


# -- parameters ------------------------------------------------------------------------------
def check_int(name: str, value: Any, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        elif isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise DataError(f"parameter {name}: expected a whole number, got {value!r}")
    if minimum is not None and value < minimum:
        raise DataError(f"parameter {name}: must be ≥ {minimum}, got {value}")
    return int(value)


def check_float(name: str, value: Any, minimum: float | None = None, strict: bool = False) -> float:
    try:
        if isinstance(value, bool):
            raise ValueError
        out = float(value)
    except (TypeError, ValueError):
        raise DataError(f"parameter {name}: expected a number, got {value!r}") from None
    if not np.isfinite(out) or (minimum is not None and (out <= minimum if strict else out < minimum)):
        raise DataError(f"parameter {name}: must be {'>' if strict else '≥'} {minimum}, got {value!r}")
    return out


def check_bool(name: str, value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise DataError(f"parameter {name}: expected True or False, got {value!r}")


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise DataError(f"parameter {name}: must be one of {choices}, got {value!r}")
    return str(value)


def parse_hidden_dims(value: Any) -> tuple[int, ...]:
    """`"221,110"` (or a list, or one number as `-p hidden_dims 64` gives it) → (221, 110)."""
    if isinstance(value, (int, np.integer)):
        value = [value]
    parts = value.split(",") if isinstance(value, str) else list(value)
    dims = tuple(check_int("hidden_dims", p.strip() if isinstance(p, str) else p, 1) for p in parts if str(p).strip())
    if not dims:
        raise DataError(f"parameter hidden_dims: expected sizes such as '221,110', got {value!r}")
    return dims


# -- splits and training ---------------------------------------------------------------------
@dataclass
class Splits:
    train: SpectralDataset
    validation: SpectralDataset | None
    test: SpectralDataset
    how: str  # one line saying where the split came from

    def tissue_only(self, vae: SpectraVAE) -> Splits:
        """Training and validation restricted to tissue by the model's rule (as it trained); test stays whole."""
        rule = vae.tissue_rule_
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
    """Named splits from `data_splits.json` when it has them, else a seeded 80/10/10 split by scan."""
    return _named_or_random_splits(data_dir, train_split, val_split, test_split, seed)


def _named_or_random_splits(data_dir: Path, train_split: str, val_split: str, test_split: str,
                            seed: int) -> Splits:
    named = available_splits(data_dir) if data_dir.is_dir() else {}
    if train_split in named and test_split in named:
        val = load_dataset(data_dir, split=val_split) if named.get(val_split) else None
        return Splits(load_dataset(data_dir, split=train_split), val, load_dataset(data_dir, split=test_split),
                      f"splits {train_split!r}/{val_split!r}/{test_split!r} from {data_dir / 'data_splits.json'}")
    ds = load_dataset(data_dir)
    if len(ds.scans) >= 3:
        train, val, test = ds.split(by="scan", fractions=(0.8, 0.1, 0.1), seed=seed)
        how = f"random 80/10/10 split by scan (seed {seed}); no {train_split!r} in data_splits.json"
    else:
        train, val, test = ds.split(by="pixel", fractions=(0.8, 0.1, 0.1), seed=seed)
        how = f"random 80/10/10 split by pixel (seed {seed}): fewer than 3 scans, held-out scores are optimistic"
    return Splits(train, val, test, how)


def train(data_dir: str | os.PathLike, out: str | os.PathLike = "", *, epochs: int = 50, latent_dim: int = 2,
          hidden_dims: tuple[int, ...] = (221, 110), reconstruction: str = "gaussian", beta: float = 1.0,
          batch_size: int = 512, learning_rate: float = 2e-3, patience: int | None = 10, seed: int = 0,
          device: str = "auto", precision: str = "fp32", train_split: str = "normal_train",
          val_split: str = "normal_val", test_split: str = "normal_test", abnormal_split: str = "abnormal",
          normal_labels: str | list[str] = "", preprocess: str = "", tissue_only: bool = False,
          tissue_threshold: float | str = "auto", overwrite: bool = False,
          verbose: bool = True) -> tuple[SpectraVAE, Splits, Path]:
    """Train a run in `out` (see `spectra_vae.runs.train`); returns (vae, splits, path of final.pt).

    The model fits its tissue rule on the training pixels (`tissue_threshold`: "auto", "none" or
    a number); `tissue_only=True` trains and validates on the tissue pixels by that rule. An
    existing run in `out` is refused unless `overwrite=True`.
    """
    from . import runs

    return runs.train(data_dir, out, overwrite=overwrite, train_split=train_split, val_split=val_split,
                      test_split=test_split, abnormal_split=abnormal_split, normal_labels=normal_labels,
                      verbose=verbose, epochs=epochs, latent_dim=latent_dim, hidden_dims=tuple(hidden_dims),
                      reconstruction=reconstruction, beta=beta, batch_size=batch_size,
                      learning_rate=learning_rate, patience=patience, seed=seed, device=device,
                      precision=precision, preprocess=preprocess, tissue_only=tissue_only,
                      tissue_threshold=tissue_threshold)


def open_run(run_dir: str | os.PathLike = "", checkpoint: str = "", data_dir: str | os.PathLike = ""
             ) -> tuple[SpectraVAE, Splits, Path, Path]:
    """(vae, splits, data directory, checkpoint) of a run, its splits as recorded (`spectra_vae.runs.open_run`)."""
    from . import runs

    run = runs.open_run(run_dir, checkpoint, data_dir)
    return run.vae, run.splits, run.data_dir, run.checkpoint


# -- the papermill sequence ------------------------------------------------------------------
def parse_value(text: str) -> Any:
    """A `-p name value` string as papermill reads it: int, float, bool or None where it looks like one."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def run_pipeline(data: str | os.PathLike = "", out: str | os.PathLike = "",
                 parameters: dict[str, Any] | None = None, notebooks_dir: str | os.PathLike | None = None,
                 notebooks: tuple[str, ...] = NOTEBOOKS, html: bool = True, kernel_name: str | None = None,
                 log: Any = print, overwrite: bool = False, live: bool = True) -> list[Path]:
    """Run the numbered notebooks in order with papermill; executed copies (+ HTML) go to the run `out`.

    `out` "" is a new run folder under reports/runs (reports/demo for the demo data). A folder
    that already holds a run is refused unless `overwrite` (or the parameter `resume` is true).
    Every notebook gets `data_dir` and `run_dir` plus those of `parameters` it declares. `live`
    streams each notebook's cell progress and output as it runs. Stops at the first failing
    notebook with a `PipelineError` naming it, its cell and the error.
    """
    import sys

    import papermill as pm

    from . import runs

    src = Path(notebooks_dir) if notebooks_dir else project_root() / "notebooks"
    data_dir = str(Path(data).expanduser().resolve()) if str(data) else ""
    if data_dir and not Path(data_dir).exists():
        raise DataError(f"--data: {data_dir} does not exist")
    parameters = dict(parameters or {})
    overwrite = overwrite or parameters.get("overwrite") is True or str(parameters.get("overwrite")).lower() == "true"
    run, replace = runs.training_run_dir(out, data_dir, overwrite)
    out = run.expanduser().resolve()
    if "02_train.ipynb" in notebooks and not parameters.get("resume"):
        runs.claim_run_dir(out, replace, notebooks=notebooks)
        parameters["overwrite"] = True  # this pipeline has claimed the folder for its run
    out.mkdir(parents=True, exist_ok=True)
    if not live:  # live, notebook 01's own warning shows as it runs
        try:
            note = axis_warning(load_dataset(resolve_data_dir(data_dir)))
        except DataError:
            note = ""  # the first notebook names what is wrong with the data
        if note:
            log(f"warning: {note}")
    known: set[str] = set()
    written = []
    for name in notebooks:
        path = src / name
        if not path.exists():
            raise PipelineError(f"{path}: notebook not found")
        declared = set(pm.inspect_notebook(str(path)))
        if not {"data_dir", "run_dir"} <= declared:
            raise PipelineError(f"{path}: its parameters cell does not declare data_dir and run_dir "
                                f"(papermill found {sorted(declared)})")
        known |= declared
        params = {k: v for k, v in {"data_dir": data_dir, "run_dir": str(out), **parameters}.items() if k in declared}
        target = out / name
        log(f"[{name}] running with {params}")
        try:
            pm.execute_notebook(str(path), str(target), parameters=params, cwd=str(src), progress_bar=live,
                                kernel_name=kernel_name, stdout_file=sys.stdout if live else None,
                                stderr_file=sys.stderr if live else None)
        except pm.PapermillExecutionError as exc:
            raise PipelineError(f"{name} failed in cell {exc.exec_count} ({exc.ename}: {exc.evalue}); "
                                f"the partly executed notebook is {target}") from None
        written.append(target)
        if html:
            written.append(export_html(target))
    unused = set(parameters) - known - {"overwrite"}
    if unused:
        log(f"warning: no notebook declares the parameter(s) {sorted(unused)}; they were not used")
    log(f"run folder: {out}")
    return written


def axis_warning(dataset: SpectralDataset) -> str:
    """One sentence when the scans have no wavenumber axis (and what follows from it), else ""."""
    if dataset.wavenumbers_known:
        return ""
    return (f"{dataset.source}: no wavenumber axis (no {WAVENUMBERS_FILE}): spectra are drawn against channel "
            f"numbers 0–{dataset.n_channels - 1}, the tissue rule uses the mean absorbance over all channels "
            "instead of amide I, and preprocessing steps that take wavenumbers (cut, resample, amide1) read them "
            f"as channel numbers. Add {WAVENUMBERS_FILE} (one value per channel) to the folder to use cm⁻¹.")


def warn_if_no_axis(data: SpectralDataset | str | os.PathLike) -> str:
    """Warn (once, a `UserWarning`) when the scans have no wavenumber axis; returns the warning or ""."""
    import warnings

    note = axis_warning(data if isinstance(data, SpectralDataset) else load_dataset(data))
    if note:
        warnings.warn(note, UserWarning, stacklevel=2)
    return note


def export_html(notebook: Path) -> Path:
    """Write an HTML copy beside an executed notebook."""
    import nbformat
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nbformat.read(notebook, as_version=4))
    path = notebook.with_suffix(".html")
    path.write_text(body, encoding="utf-8")
    return path
