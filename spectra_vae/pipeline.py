"""What the notebooks and the command line share: parameters, paths, splits, training, the papermill run."""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .data import SpectralDataset, available_splits, load_dataset
from .demo import GENERATOR_VERSION, make_demo_dataset
from .errors import DataError  # noqa: F401  (notebooks raise it through here)
from .estimator import SpectraVAE
from .preprocessing import parse as parse_preprocess

NOTEBOOKS = ("01_data_exploration.ipynb", "02_train.ipynb", "03_reconstruction.ipynb",
             "04_latent_exploration.ipynb", "05_anomaly_detection.ipynb")
DEMO = {"n_scans": 6, "height": 64, "width": 64, "seed": 0}  # the notebooks' default data
MODEL_DIR, FINAL, SPLITS_RECORD = "model", "final.pt", "splits.json"


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


def resolve_run_dir(run_dir: str | os.PathLike = "") -> Path:
    """`""` → `reports/demo` at the repository root; created if missing."""
    path = project_root() / "reports" / "demo" if str(run_dir) == "" else Path(run_dir).expanduser()
    (path / "figures").mkdir(parents=True, exist_ok=True)
    return path


def resolve_checkpoint(checkpoint: str, run_dir: Path) -> Path:
    """`""` → the model that 02_train wrote into `run_dir`; a clear error if there is none."""
    path = run_dir / MODEL_DIR / FINAL if checkpoint == "" else Path(checkpoint).expanduser()
    if not path.is_file():
        raise DataError(f"parameter checkpoint: no model at {path}; run 02_train.ipynb first "
                        "(with the same run_dir) or give checkpoint=<path to a .pt file>")
    return path


def save_figure(fig: Any, run_dir: Path, name: str) -> Path:
    """Save a figure as `run_dir/figures/<name>.png` and return the path."""
    path = run_dir / "figures" / f"{name}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


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
    """`"221,110"` (or a list) → (221, 110)."""
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
    tissue_threshold: float | None = None  # amide I level when training was on tissue pixels only


def make_splits(data_dir: Path, train_split: str = "normal_train", val_split: str = "normal_val",
                test_split: str = "normal_test", seed: int = 0, tissue_only: bool = False,
                tissue_threshold: float | None = None) -> Splits:
    """Named splits from `data_splits.json` when it has them, else a seeded 80/10/10 split by scan.

    `tissue_only`: training and validation keep only tissue pixels (amide I above
    `tissue_threshold`, by default the threshold found on the training pixels); the test split
    stays whole, so held-out errors can be read for tissue and background alike.
    """
    splits = _named_or_random_splits(data_dir, train_split, val_split, test_split, seed)
    if not tissue_only:
        return splits
    from .analysis import tissue_pixels

    n_train = len(splits.train)
    train, threshold = tissue_pixels(splits.train, tissue_threshold)
    val = None if splits.validation is None else tissue_pixels(splits.validation, threshold)[0]
    if len(train) == 0:
        raise DataError(f"{data_dir}: no training pixel has amide I above {threshold:.4g}; "
                        "nothing looks like tissue (train on all pixels instead)")
    how = (f"{splits.how}; training and validation on tissue pixels only (amide I > {threshold:.4g} "
           f"absorbance: {len(train)} of {n_train} training pixels)")
    return Splits(train, val, splits.test, how, threshold)


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


def train(data_dir: str | os.PathLike, out: str | os.PathLike, *, epochs: int = 50, latent_dim: int = 2,
          hidden_dims: tuple[int, ...] = (221, 110), reconstruction: str = "gaussian", beta: float = 1.0,
          batch_size: int = 512, learning_rate: float = 2e-3, patience: int | None = 10, seed: int = 0,
          device: str = "auto", precision: str = "fp32", train_split: str = "normal_train",
          val_split: str = "normal_val",
          test_split: str = "normal_test", preprocess: str = "", tissue_only: bool = False,
          checkpoint_minutes: float | None = 30.0, resume: bool = False,
          verbose: bool = True) -> tuple[SpectraVAE, Splits, Path]:
    """Train on the training split with checkpoints in `out/model/`; writes `out/model/final.pt`.

    `tissue_only=True` trains (and validates) on tissue pixels only; see `make_splits`.
    `checkpoint_minutes`: `last.pt` is also written within an epoch at most this often.
    `resume=True`: when `out/model/last.pt` exists, go on from it (to `epochs`) instead of
    starting again, as a batch job requeued after its time limit does.
    """
    data = resolve_data_dir(data_dir)
    if not tissue_only and any(step.name in ("snv", "vector") for step in parse_preprocess(preprocess)):
        warnings.warn(f"preprocess {preprocess!r} scales every spectrum to unit size, noise-only background "
                      "included, which can make the VAE collapse onto the background: train with "
                      "tissue_only=True", UserWarning, stacklevel=2)
    from .train import dist_info, init_distributed

    # Under torchrun, join the process group first: the processes then share opening the data
    # (each file's finite check is done by one of them).
    rank = init_distributed()[0]
    splits = make_splits(data, train_split, val_split, test_split, seed, tissue_only)
    model_dir = Path(out) / MODEL_DIR
    vae = SpectraVAE(latent_dim=latent_dim, hidden_dims=hidden_dims, reconstruction=reconstruction,
                     beta=beta, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                     patience=patience, seed=seed, device=device, precision=precision, preprocess=preprocess,
                     checkpoint_minutes=checkpoint_minutes, verbose=verbose)
    model_dir.mkdir(parents=True, exist_ok=True)
    record = {"data_dir": str(data.resolve()), "train_split": train_split, "val_split": val_split,
              "test_split": test_split, "seed": seed, "how": splits.how,
              "tissue_only": tissue_only, "tissue_threshold": splits.tissue_threshold, "train": splits.train.scans,
              "validation": splits.validation.scans if splits.validation is not None else [],
              "test": splits.test.scans}
    if rank == 0:
        (model_dir / SPLITS_RECORD).write_text(json.dumps(record, indent=2))
    last = model_dir / "last.pt"
    if resume and last.is_file():
        vae = SpectraVAE.resume(last, splits.train, validation=splits.validation, checkpoint_dir=model_dir,
                                epochs=epochs)
    else:
        vae.fit(splits.train, validation=splits.validation, checkpoint_dir=model_dir)
    final = model_dir / FINAL
    if dist_info()[0] == 0:  # in a distributed run only the first process writes
        vae.save(final)
    return vae, splits, final


def open_run(run_dir: str | os.PathLike = "", checkpoint: str = "", data_dir: str | os.PathLike = ""
             ) -> tuple[SpectraVAE, Splits, Path, Path]:
    """The model of a training run and the same splits it was trained with.

    Returns (vae, splits, data directory, checkpoint path). `data_dir` "" means the data the run
    was trained on (from its `splits.json`), or the demo data.
    """
    run = resolve_run_dir(run_dir)
    ckpt = resolve_checkpoint(checkpoint, run)
    vae = SpectraVAE.load(ckpt)
    record_path = ckpt.parent / SPLITS_RECORD
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    if str(data_dir) == "" and record.get("data_dir") and Path(record["data_dir"]).exists():
        data = Path(record["data_dir"])
    else:
        data = resolve_data_dir(data_dir)
    splits = make_splits(data, record.get("train_split", "normal_train"), record.get("val_split", "normal_val"),
                         record.get("test_split", "normal_test"), int(record.get("seed", 0)),
                         bool(record.get("tissue_only", False)), record.get("tissue_threshold"))
    return vae, splits, data, ckpt


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


def run_pipeline(data: str | os.PathLike = "", out: str | os.PathLike = "reports/run",
                 parameters: dict[str, Any] | None = None, notebooks_dir: str | os.PathLike | None = None,
                 notebooks: tuple[str, ...] = NOTEBOOKS, html: bool = True,
                 kernel_name: str | None = None, log: Any = print) -> list[Path]:
    """Run the numbered notebooks in order with papermill; executed copies (+ HTML) go to `out`.

    Every notebook gets `data_dir` and `run_dir` plus those of `parameters` it declares. Stops
    at the first failing notebook with a `PipelineError` naming it, its cell and the error.
    """
    import papermill as pm

    src = Path(notebooks_dir) if notebooks_dir else project_root() / "notebooks"
    out = Path(out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    data_dir = str(Path(data).expanduser().resolve()) if str(data) else ""
    if data_dir and not Path(data_dir).exists():
        raise DataError(f"--data: {data_dir} does not exist")
    parameters = dict(parameters or {})
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
            pm.execute_notebook(str(path), str(target), parameters=params, cwd=str(src),
                                progress_bar=False, kernel_name=kernel_name, log_output=False)
        except pm.PapermillExecutionError as exc:
            raise PipelineError(f"{name} failed in cell {exc.exec_count} ({exc.ename}: {exc.evalue}); "
                                f"the partly executed notebook is {target}") from None
        written.append(target)
        if html:
            written.append(export_html(target))
    unused = set(parameters) - known
    if unused:
        log(f"warning: no notebook declares the parameter(s) {sorted(unused)}; they were not used")
    return written


def export_html(notebook: Path) -> Path:
    """Write an HTML copy beside an executed notebook."""
    import nbformat
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nbformat.read(notebook, as_version=4))
    path = notebook.with_suffix(".html")
    path.write_text(body, encoding="utf-8")
    return path
