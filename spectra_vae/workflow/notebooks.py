"""What the notebooks and the command line share: parameters, paths, splits, training, the papermill run."""

from __future__ import annotations

import ast
import difflib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

from ..core.errors import DataError  # noqa: F401  (notebooks raise it through here)
from ..core.files import check_output_dir, read_json
from ..estimator.vae import SpectraVAE, _check_device
from ..io.dataset import SpectralDataset
from ..io.demo import GENERATOR_VERSION, make_demo_dataset
from ..io.folders import SPLITS_FILE, WAVENUMBERS_FILE, available_splits
from ..io.load import load_dataset
from ..model.loss import RECONSTRUCTIONS
from ..model.train import PRECISIONS
from ..preprocess.pipeline import parse as parse_preprocess
from ..preprocess.tissue import parse_tissue_threshold

NOTEBOOKS = ("01_data_exploration.ipynb", "02_train.ipynb", "03_reconstruction.ipynb",
             "04_latent_exploration.ipynb", "05_anomaly_detection.ipynb")


class _DemoArgs(TypedDict):
    """Keyword arguments of `make_demo_dataset` (typed, so `**DEMO` type-checks)."""

    n_scans: int
    height: int
    width: int
    seed: int


DEMO: _DemoArgs = {"n_scans": 6, "height": 64, "width": 64, "seed": 0}  # the notebooks' default data
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
    pkg_root = Path(__file__).resolve().parents[2]
    return pkg_root if (pkg_root / "notebooks").is_dir() else here


def resolve_data_dir(data_dir: str | os.PathLike = "", scatter: bool = False) -> Path:
    """`""` → the embedded demo data (generated on first use, seeded; `scatter`: its scattered,
    "uncorrected" twin); else the directory given."""
    if str(data_dir) == "":
        path = project_root() / "data" / ("demo_scattered" if scatter else "demo")
        meta = path / "demo.json"
        wanted = {**DEMO, "version": GENERATOR_VERSION, "scatter": scatter}
        try:
            recorded = read_json(meta) if meta.exists() else {}
        except DataError:
            recorded = {}  # a damaged record of our own demo data: make the data again
        if not isinstance(recorded, dict) or any(recorded.get(k) != v for k, v in wanted.items()):
            make_demo_dataset(path, **DEMO, scatter=scatter)
        return path
    if not isinstance(data_dir, (str, os.PathLike)):
        raise DataError(f"parameter data_dir: expected a path, got {data_dir!r}")
    path = Path(data_dir).expanduser()
    if not path.exists():
        raise DataError(f"parameter data_dir: {path} does not exist")
    return path


def resolve_scattered_dir(scattered_dir: str | os.PathLike, data_dir: str | os.PathLike = "") -> Path | None:
    """The folder of the scattered ("uncorrected") variant of `data_dir`'s scans, or None for none:
    `"auto"` → the embedded demo's scattered twin when `data_dir` is the demo, else none; `""` or
    `"none"` → none; else the folder given."""
    text = str(scattered_dir).strip()
    if text.lower() in ("", "none"):
        return None
    if text.lower() == "auto":
        return resolve_data_dir("", scatter=True) if str(data_dir) == "" else None
    path = Path(text).expanduser()
    if not path.exists():
        raise DataError(f"parameter scattered_dir: {path} does not exist")
    return path


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


def resolve_run_dir(run_dir: str | os.PathLike = "", data_dir: str | os.PathLike = "") -> Path:
    """`""` → `reports/demo` for the demo data, a new folder under `reports/runs` for other data; created."""
    if not isinstance(run_dir, (str, os.PathLike)):
        raise DataError(f"parameter run_dir: expected a path, got {run_dir!r}")
    if str(run_dir) == "":
        from .runs import training_run_dir

        path = training_run_dir("", data_dir)[0]
    else:
        path = Path(run_dir).expanduser()
    check_output_dir(check_output_dir(path, "parameter run_dir") / "figures", "parameter run_dir")
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
def check_int(name: str, value: Any, minimum: int | None = None, maximum: int | None = None) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        if isinstance(value, str) and re.fullmatch(r"\s*[-+]?[0-9]+\s*", value):
            value = int(value)
        elif isinstance(value, (float, np.floating)) and float(value).is_integer():
            value = int(value)
        else:
            raise DataError(f"parameter {name}: expected a whole number, got {value!r}")
    if minimum is not None and value < minimum:
        raise DataError(f"parameter {name}: must be ≥ {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise DataError(f"parameter {name}: must be ≤ {maximum}, got {value}")
    return int(value)


def check_float(name: str, value: Any, minimum: float | None = None, strict: bool = False,
                maximum: float | None = None) -> float:
    """A finite number ≥ `minimum` (> with `strict`) and ≤ `maximum` (< with `strict`)."""
    try:
        if isinstance(value, (bool, np.bool_)):
            raise ValueError
        out = float(value)
    except (TypeError, ValueError, OverflowError):
        raise DataError(f"parameter {name}: expected a number, got {value!r}") from None
    if not np.isfinite(out):
        raise DataError(f"parameter {name}: must be a finite number, got {value!r}")
    if minimum is not None and (out <= minimum if strict else out < minimum):
        raise DataError(f"parameter {name}: must be {'>' if strict else '≥'} {minimum}, got {value!r}")
    if maximum is not None and (out >= maximum if strict else out > maximum):
        raise DataError(f"parameter {name}: must be {'<' if strict else '≤'} {maximum}, got {value!r}")
    return out


def check_bool(name: str, value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise DataError(f"parameter {name}: expected True or False, got {value!r}")


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise DataError(f"parameter {name}: must be one of {choices}, got {value!r}")
    return value


def check_str(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise DataError(f"parameter {name}: expected text, got {value!r}")
    return value


def check_device(name: str, value: Any) -> str:
    """'auto', or a CPU, CUDA or MPS device this machine has."""
    def bad(_: str, why: str) -> DataError:
        return DataError(f"parameter {name}={value!r}: {why}")
    _check_device(check_str(name, value), bad)
    return value


def check_preprocess(name: str, value: Any) -> str:
    parse_preprocess(check_str(name, value))
    return value


def parse_hidden_dims(value: Any) -> tuple[int, ...]:
    """`"221,110"` (or a list, or one whole number for one layer) → (221, 110)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        value = [value]
    if not isinstance(value, (str, list, tuple)):
        raise DataError(f"parameter hidden_dims: expected sizes such as '221,110', got {value!r}")
    parts = value.split(",") if isinstance(value, str) else list(value)
    dims = tuple(check_int("hidden_dims", p.strip() if isinstance(p, str) else p, 1) for p in parts if str(p).strip())
    if not dims:
        raise DataError(f"parameter hidden_dims: expected sizes such as '221,110', got {value!r}")
    return dims


def check_epochs(name: str, value: Any) -> int | str:
    """'auto' (see `spectra_vae.train.plan_epochs`) or a whole number ≥ 1 (text as typed is read)."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        return check_int(name, value, 1)
    except DataError:
        raise DataError(f"parameter {name}: expected 'auto' or a whole number ≥ 1, got {value!r}") from None


def _whole(minimum: int, maximum: int | None = None) -> Callable[[str, Any], Any]:
    return lambda name, value: check_int(name, value, minimum, maximum)


def _number(minimum: float, strict: bool = False, maximum: float | None = None) -> Callable[[str, Any], Any]:
    return lambda name, value: check_float(name, value, minimum, strict, maximum)


# Every notebook parameter and the check its notebook applies in its first cell; the pipeline
# applies the same checks to `-p` values before any notebook runs.
PARAMETER_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "data_dir": check_str, "run_dir": check_str, "checkpoint": check_str,
    "epochs": check_epochs, "latent_dim": _whole(1), "batch_size": _whole(1), "patience": _whole(0),
    "seed": _whole(0, 2**62), "max_pixels": _whole(1), "max_points": _whole(10),
    "hidden_dims": lambda name, value: parse_hidden_dims(value),
    "reconstruction": lambda name, value: check_choice(name, value, RECONSTRUCTIONS),
    "precision": lambda name, value: check_choice(name, value, PRECISIONS),
    "beta": _number(0.0), "learning_rate": _number(0.0, strict=True), "noise_level": _number(0.0),
    "threshold_quantile": _number(0.0, strict=True, maximum=1.0),
    "device": check_device, "preprocess": check_preprocess, "tissue_only": check_bool,
    "tissue_threshold": lambda name, value: parse_tissue_threshold(value),
    "train_split": check_str, "val_split": check_str, "test_split": check_str,
    "normal_split": check_str, "abnormal_split": check_str, "threshold_split": check_str, "normal_labels": check_str,
    "overwrite": check_bool, "resume": check_bool, "scattered_dir": check_str, "emsc_degree": _whole(0, 10),
    "split": check_str, "scattered_split": check_str,
    "false_positive_rate": _number(0.0, strict=True, maximum=1.0), "n_bootstrap": _whole(0),
}


def check_parameters(values: dict[str, Any]) -> dict[str, Any]:
    """Check notebook parameters by name (type, sign, range, choices); the checked values."""
    out = {}
    for name, value in values.items():
        check = PARAMETER_CHECKS.get(name)
        out[name] = check(name, value) if check is not None else value
    return out


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
    """The named splits of the folder's `data_splits.json` (every name must be in it); a seeded 80/10/10
    split by scan only where the folder has no such file."""
    return _named_or_random_splits(data_dir, train_split, val_split, test_split, seed)


def _named_or_random_splits(data_dir: Path, train_split: str, val_split: str, test_split: str,
                            seed: int) -> Splits:
    """The named splits of the folder's `data_splits.json`; a seeded random split only where it has none.

    Every name asked for must be in the file (`val_split=""` means no validation); the three
    splits must not share a scan.
    """
    wanted = {"train_split": train_split, "val_split": val_split, "test_split": test_split}
    for what, key in wanted.items():
        check_str(what, key)
    if data_dir.is_dir() and os.path.lexists(data_dir / SPLITS_FILE):
        named = check_split_names(data_dir, wanted, required=set(wanted))
        train, test = load_dataset(data_dir, split=train_split), load_dataset(data_dir, split=test_split)
        val = load_dataset(data_dir, split=val_split) if named.get(val_split) else None
        _check_disjoint({f"training split {train_split!r}": train, f"validation split {val_split!r}": val,
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


def _check_disjoint(parts: dict[str, SpectralDataset | None], where: Path) -> None:
    """No scan file in two of the parts (names can differ: 'data0' and 'data0.npy' are one file)."""
    owner: dict[str, str] = {}
    for part, ds in parts.items():
        for scan in [] if ds is None else ds.scan_objects:
            key = str(scan.path.resolve()) if scan.path is not None else scan.name
            if key in owner and owner[key] != part:
                raise DataError(f"{where}: {scan.name} is in both the {owner[key]} and the {part}; the splits "
                                "used together in one run must not share scans")
            owner[key] = part


def train(data_dir: str | os.PathLike, out: str | os.PathLike = "", *, epochs: int | str = "auto", latent_dim: int = 2,
          hidden_dims: tuple[int, ...] = (221, 110), reconstruction: str = "gaussian", beta: float = 1.0,
          batch_size: int = 512, learning_rate: float = 2e-3, patience: int | None = 10, seed: int = 0,
          device: str = "auto", precision: str = "fp32", train_split: str = "normal_train",
          val_split: str = "normal_val", test_split: str = "normal_test", abnormal_split: str = "abnormal",
          normal_labels: str | list[str] = "", preprocess: str = "", tissue_only: bool = False,
          tissue_threshold: float | str = "auto", overwrite: bool = False, checkpoint_minutes: float | None = 30.0,
          verbose: bool = True) -> tuple[SpectraVAE, Splits, Path]:
    """Train a run in `out` (see `spectra_vae.runs.train`); returns (vae, splits, path of final.pt).

    The model fits its tissue rule on the training pixels (`tissue_threshold`: "auto", "none" or
    a number); `tissue_only=True` trains and validates on the tissue pixels by that rule. An
    existing run in `out` is refused unless `overwrite=True`. `checkpoint_minutes`: `last.pt` is
    also written within an epoch at most this often.
    """
    from . import runs

    return runs.train(data_dir, out, overwrite=overwrite, train_split=train_split, val_split=val_split,
                      test_split=test_split, abnormal_split=abnormal_split, normal_labels=normal_labels,
                      verbose=verbose, epochs=epochs, latent_dim=latent_dim, hidden_dims=tuple(hidden_dims),
                      reconstruction=reconstruction, beta=beta, batch_size=batch_size,
                      learning_rate=learning_rate, patience=patience, seed=seed, device=device,
                      precision=precision, preprocess=preprocess, tissue_only=tissue_only,
                      tissue_threshold=tissue_threshold, checkpoint_minutes=checkpoint_minutes)


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


def notebook_parameters(path: Path) -> dict[str, dict[str, str]]:
    """A notebook's parameters as papermill reads its parameters cell: name → {type, default} (as text)."""
    import papermill as pm

    if not path.is_file():
        raise PipelineError(f"{path}: notebook not found")
    try:
        found = pm.inspect_notebook(str(path))
    except Exception as exc:  # nbformat and papermill raise several kinds for a broken notebook
        raise PipelineError(f"{path}: its parameters cannot be read ({type(exc).__name__}: {exc})") from None
    return {k: {"type": str(v.get("inferred_type_name", "None")), "default": str(v.get("default", ""))}
            for k, v in found.items()}


# declared as text ("auto") but also a number: read by their own check, so the notebook gets 50, not "50"
TEXT_OR_NUMBER: dict[str, Callable[[str, Any], Any]] = {"epochs": check_epochs}


def coerce_parameter(name: str, value: Any, type_name: str, where: str) -> Any:
    """A `-p` value as the type its parameters cell declares (`epochs: int = 30`); text from the
    command line is parsed, other values must already have that type. Undeclared types pass."""
    if type_name == "int":
        return check_int(name, value)
    if type_name == "float":
        return check_float(name, value)
    if type_name == "bool":
        return check_bool(name, value)
    if name in TEXT_OR_NUMBER:
        return TEXT_OR_NUMBER[name](name, value)
    if type_name == "str":
        if not isinstance(value, str):
            raise DataError(f"parameter {name}: {where} declares it as text (str), got {value!r}")
        return value
    return parse_value(value) if isinstance(value, str) else value  # no declared type: as papermill reads it


def check_run(data: str | os.PathLike, out: str | os.PathLike, parameters: dict[str, Any],
              declared: dict[str, dict[str, dict[str, str]]]) -> dict[str, Any]:
    """Everything a pipeline run needs, checked before any notebook runs: every `-p` name is a
    parameter of some notebook, its value has the declared type and a valid sign and range, the
    data exist, the split names are in the data's split file, and `out` can be written. Returns
    the parameters as the notebooks' types."""
    if not isinstance(data, (str, os.PathLike)):
        raise DataError(f"data: expected a path, got {data!r}")
    for reserved, option in (("data_dir", "data (--data)"), ("run_dir", "out (--out)")):
        if reserved in parameters:
            raise DataError(f"parameter {reserved}: the pipeline sets it from {option}; give it there")
    types: dict[str, tuple[str, str]] = {}
    for notebook, params in declared.items():
        for k, v in params.items():
            types.setdefault(k, (v["type"], notebook))
    unknown = [k for k in parameters if k not in types]
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(types), n=1)
        raise DataError(f"parameter {unknown[0]}: no notebook of the pipeline declares it"
                        + (f" (did you mean {close[0]!r}?)" if close else "")
                        + f"; the parameters are {sorted(set(types) - {'data_dir', 'run_dir'})}")
    coerced = {k: coerce_parameter(k, v, *types[k]) for k, v in parameters.items()}
    check_parameters(coerced)
    data_dir = Path(data).expanduser() if str(data) else None
    if data_dir is not None and not data_dir.exists():
        raise DataError(f"data: {data_dir} does not exist")
    if data_dir is not None and data_dir.is_dir() and os.path.lexists(data_dir / SPLITS_FILE):
        wanted = {}
        for k in types:
            if k.endswith("_split") and k not in EXPLORED_SPLITS:
                default = next(p[k]["default"] for p in declared.values() if k in p)
                try:
                    wanted[k] = coerced.get(k, ast.literal_eval(default))
                except (ValueError, SyntaxError):
                    continue
        required = {"train_split", "val_split", "test_split"} | set(parameters)
        check_split_names(data_dir, {k: v for k, v in wanted.items() if isinstance(v, str)}, required)
        # what notebook 01 explores may overlap the training splits; its names need only exist
        for k in EXPLORED_SPLITS:
            for name in split_names(coerced.get(k, "")):
                check_split_names(data_dir, {k: name}, {k})
    check_output_dir(out, "out")
    return coerced


def run_pipeline(data: str | os.PathLike = "", out: str | os.PathLike = "",
                 parameters: dict[str, Any] | None = None, notebooks_dir: str | os.PathLike | None = None,
                 notebooks: tuple[str, ...] = NOTEBOOKS, html: bool = True, kernel_name: str | None = None,
                 log: Any = print, overwrite: bool = False, live: bool = True) -> list[Path]:
    """Run the numbered notebooks in order with papermill; executed copies (+ HTML) go to the run `out`.

    `out` "" is a new run folder under reports/runs (reports/demo for the demo data). A folder
    that already holds a run is refused unless `overwrite` (or the parameter `resume` is true).
    Every notebook gets `data_dir` and `run_dir` plus those of `parameters` it declares. All of
    it is checked first (`check_run`): a bad name, type or value is a `DataError` before any
    notebook runs or anything is written. `live` streams each notebook's cell progress and output
    as it runs. Stops at the first failing notebook with a `PipelineError` naming it, its cell and
    the error.
    """
    import sys

    import papermill as pm

    from . import runs

    src = Path(notebooks_dir) if notebooks_dir else project_root() / "notebooks"
    declared = {name: notebook_parameters(src / name) for name in notebooks}
    for name, params in declared.items():
        if not {"data_dir", "run_dir"} <= set(params):
            raise PipelineError(f"{src / name}: its parameters cell does not declare data_dir and run_dir "
                                f"(papermill found {sorted(params)})")
    parameters = check_run(data, out if str(out) else project_root() / runs.RUNS_DIR, dict(parameters or {}),
                           declared)
    data_dir = str(Path(data).expanduser().resolve()) if str(data) else ""
    overwrite = overwrite or parameters.get("overwrite") is True
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
    written = []
    for name in notebooks:
        path = src / name
        params = {k: v for k, v in {"data_dir": data_dir, "run_dir": str(out), **parameters}.items()
                  if k in declared[name]}
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
    log(f"run folder: {out}")
    return written


def axis_warning(dataset: SpectralDataset) -> str:
    """One sentence when the scans have no wavenumber axis (and what follows from it), else ""."""
    if dataset.wavenumbers_known:
        return ""
    return (f"{dataset.source}: no wavenumber axis (no {WAVENUMBERS_FILE}): spectra are drawn against channel "
            f"numbers 0–{dataset.n_channels - 1}, the tissue rule uses the mean absorbance over all channels "
            "instead of amide I, and preprocessing steps that take wavenumbers (cut, resample, amide1) are refused. "
            f"Add {WAVENUMBERS_FILE} (one value per channel) to the folder to use cm⁻¹.")


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
