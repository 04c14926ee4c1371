"""The papermill pipeline: the numbered notebooks run in order on one run folder, checked first.

Everything a run needs is checked before any notebook runs or anything is written (`check_run`):
every `-p` name is a parameter of some notebook, its value has the declared type and a valid sign
and range, the data exist, the split names are in the data's split file, the preprocessing fits the
data's axis, and the output folder can be written.
"""

from __future__ import annotations

import ast
import difflib
import logging
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..core.errors import DataError
from ..core.files import check_output_dir, write_text_atomic
from ..io.dataset import SpectralDataset
from ..io.folders import SPLITS_FILE, WAVENUMBERS_FILE, available_splits
from ..io.load import load_dataset
from ..preprocess.pipeline import Preprocessor
from . import runs
from .parameters import NOTEBOOK_PARAMETERS, SPLIT_PARAMETERS, check_parameters, coerce_parameter
from .paths import DEMO_DATA, project_root, resolve_data_dir, runs_dir
from .preflight import check_kernel, check_split_roles
from .splits import EXPLORED_SPLITS, check_split_names, explored_splits, split_names

logger = logging.getLogger(__name__)

NOTEBOOKS = ("01_data_exploration.ipynb", "02_train.ipynb", "03_reconstruction.ipynb",
             "04_latent_exploration.ipynb", "05_anomaly_detection.ipynb")



class PipelineError(RuntimeError):
    """A notebook of the pipeline failed; the message names the notebook, the cell and the error."""



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


def check_run(data: str | os.PathLike, out: str | os.PathLike, parameters: dict[str, Any],
              declared: dict[str, dict[str, dict[str, str]]]) -> dict[str, Any]:
    """Everything a pipeline run needs, checked before any notebook runs: every `-p` name is a
    parameter of some notebook, its value has the declared type and a valid sign and range, the
    data exist, the split names are in the data's split file, the preprocessing fits the data's
    axis, and `out` can be written. Returns the parameters as the notebooks' types."""
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
    check_split_roles(coerced, with_defaults=True)  # abnormal_split normal_train: one split in two roles
    if str(data) == "":
        raise DataError(f"data: give a folder of scans, or {DEMO_DATA!r} for the embedded demo data")
    data_dir = Path(data).expanduser() if str(data) != DEMO_DATA else None
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
    if coerced.get("preprocess"):  # steps that need the axis (cm⁻¹ on bare scans, a cut outside it) fail here
        scans = load_dataset(resolve_data_dir(data))
        Preprocessor(coerced["preprocess"]).check(scans.wavenumbers, known=scans.wavenumbers_known)
    check_output_dir(out, "out")
    return coerced


def run_pipeline(data: str | os.PathLike = DEMO_DATA, out: str | os.PathLike = "",
                 parameters: dict[str, Any] | None = None, notebooks_dir: str | os.PathLike | None = None,
                 notebooks: tuple[str, ...] = NOTEBOOKS, html: bool = True, kernel_name: str | None = None,
                 log: Callable[[str], Any] | None = None, overwrite: bool = False, live: bool = True) -> list[Path]:
    """Run the numbered notebooks in order with papermill; executed copies (+ HTML) go to the run `out`.

    `data` is a folder of scans, or "demo" for the embedded demo data. `out` "" is a new run folder
    under reports/runs (reports/demo for the demo data). A folder
    that already holds a run is refused unless `overwrite` (or the parameter `resume` is true).
    Every notebook gets `data_dir` and `run_dir` plus those of `parameters` it declares. All of
    it is checked first (`check_run`): a bad name, type or value is a `DataError` before any
    notebook runs or anything is written. `live` streams each notebook's cell progress and output
    as it runs; `log` takes the one-line messages (default: this module's logger). Stops at the first
    failing notebook with a `PipelineError` naming it, its cell and the error.
    """
    import papermill as pm

    say = log or logger.info
    src = Path(notebooks_dir) if notebooks_dir else project_root() / "notebooks"
    declared = {name: notebook_parameters(src / name) for name in notebooks}
    for name, params in declared.items():
        if not {"data_dir", "run_dir"} <= set(params):
            raise PipelineError(f"{src / name}: its parameters cell does not declare data_dir and run_dir "
                                f"(papermill found {sorted(params)})")
    check_kernel(kernel_name)
    parameters = check_run(data, out if str(out) else runs_dir(), dict(parameters or {}),
                           declared)
    data_dir = DEMO_DATA if str(data) == DEMO_DATA else str(Path(data).expanduser().resolve())
    overwrite = overwrite or parameters.get("overwrite") is True
    run, replace = runs.training_run_dir(out, data_dir, overwrite)
    out = run.expanduser().resolve()
    if "02_train.ipynb" in notebooks and not parameters.get("resume"):
        claim = runs.claim_run_dir(out, replace, notebooks=notebooks)
        parameters["overwrite"] = True  # this pipeline has claimed the folder for its run
    else:
        claim = runs.claim_run_folder(out)  # no other writer while the notebooks run
    written: list[Path] = []
    try:
        _execute(pm, src, declared, notebooks, data_dir, out, parameters, html, kernel_name, live, say, written)
    except BaseException:
        claim.release(discard=not written)  # a pipeline that ran no notebook leaves no folder behind
        raise
    claim.release()
    say(f"run folder: {out}")
    return written


def _execute(pm: Any, src: Path, declared: dict[str, dict[str, dict[str, str]]], notebooks: tuple[str, ...],
             data_dir: str, out: Path, parameters: dict[str, Any], html: bool, kernel_name: str | None, live: bool,
             say: Callable[[str], Any], written: list[Path]) -> None:
    """The notebooks run in order into the claimed run folder; each one done (and its HTML) joins `written`."""
    out.mkdir(parents=True, exist_ok=True)
    if not live:  # live, notebook 01's own warning shows as it runs
        try:
            note = axis_warning(load_dataset(resolve_data_dir(data_dir)))
        except DataError:
            note = ""  # the first notebook names what is wrong with the data
        if note:
            say(f"warning: {note}")
    explored = run_explored_splits(resolve_data_dir(data_dir), parameters)
    for name in notebooks:
        path = src / name
        params = {k: v for k, v in {"data_dir": data_dir, "run_dir": str(out), **explored, **parameters}.items()
                  if k in declared[name]}
        target = out / name
        say(f"[{name}] running with {params}")
        try:
            pm.execute_notebook(str(path), str(target), parameters=params, cwd=str(src), progress_bar=live,
                                kernel_name=kernel_name, stdout_file=sys.stdout if live else None,
                                stderr_file=sys.stderr if live else None)
        except pm.PapermillExecutionError as exc:
            raise PipelineError(f"{name} failed in cell {exc.exec_count} ({exc.ename}: {exc.evalue}); "
                                f"the partly executed notebook is {target}") from None
        except Exception as exc:  # the kernel did not start or died (jupyter's and papermill's own errors)
            if not written:
                target.unlink(missing_ok=True)  # papermill's unexecuted copy
            raise PipelineError(f"{name} could not be run ({type(exc).__name__}: {exc})") from None
        written.append(target)
        if html:
            written.append(export_html(target))


def run_explored_splits(data: Path, parameters: dict[str, Any]) -> dict[str, str]:
    """Notebook 01's `split` and `scattered_split` in a pipeline run, where the data folder has a split file
    and neither was given: the run's own splits, and their uncorrected twins where the folder holds them
    (`splits.explored_splits`), so that 01 explores the scans the run uses. {} otherwise."""
    if set(EXPLORED_SPLITS) & set(parameters) or not (data.is_dir() and os.path.lexists(data / SPLITS_FILE)):
        return {}
    run_splits = [parameters.get(k, NOTEBOOK_PARAMETERS[k].default) for k in SPLIT_PARAMETERS]
    explored = explored_splits(available_splits(data), [k for k in run_splits if isinstance(k, str)])
    if "scattered_dir" in parameters:  # a folder of the other variant given: it is read with `split`'s names
        explored.pop("scattered_split", None)
    return explored if explored.get("split") else {}


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
    write_text_atomic(path, body)
    return path

