"""A sweep: notebook 02 once per combination of parameter values (papermill), each a run; then the table.

`python -m spectra_vae sweep --data D --out R --grid latent_dim=2,5,10 --grid beta=0.5,1 -p epochs 50`
writes `R/<nn>-latent_dim-2_beta-0.5/` (a run each), `R/runs.csv` (parameters and held-out
figures, one row per run) and `R/06_compare_runs.ipynb` (executed).
"""

from __future__ import annotations

import itertools
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from ..core.errors import DataError
from ..core.files import write_text_atomic
from ..io.folders import claim_output, data_files
from . import compare, runs
from .notebooks import PipelineError, export_html, run_pipeline
from .parameters import check_parameters
from .paths import project_root

logger = logging.getLogger(__name__)

TRAIN_NOTEBOOK, COMPARE_NOTEBOOK = "02_train.ipynb", "06_compare_runs.ipynb"
TABLE = "runs.csv"


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """`["latent_dim=2,5,10", "beta=0.5,1"]` → {"latent_dim": [2, 5, 10], "beta": [0.5, 1]}.

    Values are separated by commas, or by semicolons when a value holds commas
    (`hidden_dims=221,110;64,32`). They stay text, as typed: each is read as the type notebook 02
    declares, as `-p` values are, and checked before any run starts.
    """
    grid: dict[str, list[Any]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        name = name.strip()
        parts = [v.strip() for v in values.split(";" if ";" in values else ",") if v.strip()]
        if not sep or not name.isidentifier() or not parts:
            raise DataError(f"--grid {item!r}: expected NAME=V1,V2,... (e.g. latent_dim=2,5,10)")
        if name in grid:
            raise DataError(f"--grid {name} is given twice")
        grid[name] = parts
    if not grid:
        raise DataError("sweep: give at least one --grid NAME=V1,V2,...")
    return grid


def combinations(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, the last name varying fastest."""
    return [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]


def run_name(index: int, combo: dict[str, Any]) -> str:
    """`03-latent_dim-5_beta-0.5`: the number keeps names distinct and in order; the rest says what varied."""
    text = "_".join(f"{k}-{v}" for k, v in combo.items())
    return f"{index:02d}-" + re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")


def run_sweep(data: str | os.PathLike, out: str | os.PathLike, grid: dict[str, list[Any]],
              fixed: dict[str, Any] | None = None, *, kernel_name: str | None = None, overwrite: bool = False,
              live: bool = True, notebooks_dir: str | os.PathLike | None = None,
              log: Callable[[str], Any] | None = None) -> pd.DataFrame:
    """Train and score one run per combination under `out`; write runs.csv and the comparison notebook.

    Every combination's values are checked (type, sign, range) before the first run starts."""
    import papermill as pm

    log = log or logger.info
    src = Path(notebooks_dir) if notebooks_dir else project_root() / "notebooks"
    fixed = dict(fixed or {})
    declared = set(pm.inspect_notebook(str(src / TRAIN_NOTEBOOK)))
    unknown = sorted((set(grid) | set(fixed)) - declared)
    if unknown:
        raise DataError(f"sweep: {TRAIN_NOTEBOOK} has no parameter(s) {unknown}; it has {sorted(declared)}")
    both = sorted(set(grid) & set(fixed))
    if both:
        raise DataError(f"sweep: {both} given both as --grid and -p")
    combos = combinations(grid)
    for combo in combos:  # a bad value fails now, not after hours of the runs before it
        check_parameters({**fixed, **combo})
    out = Path(out).expanduser().resolve()
    targets = [out / run_name(i + 1, c) for i, c in enumerate(combos)]
    taken = [str(t) for t in targets if runs.is_run(t)]
    if taken and not overwrite:
        raise runs.RunExistsError(f"sweep: {len(taken)} run(s) already in {out}: {taken[:3]}; give another --out "
                                  "or --overwrite")
    claim = claim_output(out, "sweep", "--out", writes=(TABLE, COMPARE_NOTEBOOK), legacy=_older_sweep)
    try:
        table = _sweep(src, data, out, combos, targets, fixed, kernel_name, live, log)
    except BaseException:  # a sweep that made nothing leaves no folder behind
        claim.release(discard=not any(runs.is_run(t) for t in targets) and not (out / TABLE).exists())
        raise
    claim.release()
    return table


def _older_sweep(folder: Path) -> bool:
    """A sweep written before folders carried markers: its runs.csv and nothing that looks like scans besides."""
    return (folder / TABLE).is_file() and data_files(folder) == [TABLE]


def _sweep(src: Path, data: str | os.PathLike, out: Path, combos: list[dict[str, Any]], targets: list[Path],
           fixed: dict[str, Any], kernel_name: str | None, live: bool, log: Callable[[str], Any]) -> pd.DataFrame:
    import papermill as pm

    for k, (combo, target) in enumerate(zip(combos, targets, strict=True)):
        log(f"[sweep {k + 1}/{len(combos)}] {target.name}")
        run_pipeline(data, target, {**fixed, **combo}, notebooks_dir=src, notebooks=(TRAIN_NOTEBOOK,), html=False,
                     kernel_name=kernel_name, log=log, overwrite=True, live=live)
        compare.score_run(target)
    table = compare.collect(targets)
    write_text_atomic(out / TABLE, table.to_csv())
    target = out / COMPARE_NOTEBOOK
    try:
        pm.execute_notebook(str(src / COMPARE_NOTEBOOK), str(target), parameters={"run_dir": str(out)},
                            cwd=str(src), progress_bar=live, kernel_name=kernel_name)
    except pm.PapermillExecutionError as exc:
        raise PipelineError(f"{COMPARE_NOTEBOOK} failed in cell {exc.exec_count} ({exc.ename}: {exc.evalue}); "
                            f"the partly executed notebook is {target}") from None
    export_html(target)
    return table
