"""The notebooks as sources: jupytext pairs in sync, outputs stripped, one plain parameters cell."""

from __future__ import annotations

import ast
from pathlib import Path

import jupytext
import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
PAIRS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
CHECKED = "NBVAL_CHECK_OUTPUT"


def cells(nb: nbformat.NotebookNode) -> list[tuple[str, str, list[str]]]:
    return [(c.cell_type, c.source.strip(), list(c.metadata.get("tags", []))) for c in nb.cells]


def test_every_numbered_notebook_has_its_script():
    scripts = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))
    assert PAIRS and [p.stem for p in PAIRS] == [s.stem for s in scripts]


@pytest.mark.parametrize("notebook", PAIRS, ids=lambda p: p.stem)
def test_notebook_and_its_percent_script_hold_the_same_cells(notebook):
    script = notebook.with_suffix(".py")
    ipynb, py = cells(jupytext.read(notebook)), cells(jupytext.read(script, fmt="py:percent"))
    for k, (a, b) in enumerate(zip(ipynb, py, strict=False)):
        assert a == b, (f"{notebook.name} and {script.name} differ at cell {k}; "
                        "run `make notebooks` (jupytext --sync) after editing either")
    assert len(ipynb) == len(py), (f"{notebook.name} has {len(ipynb)} cells, {script.name} {len(py)}: "
                                   "run `make notebooks`")


@pytest.mark.parametrize("notebook", PAIRS, ids=lambda p: p.stem)
def test_committed_notebook_keeps_only_deliberately_checked_outputs(notebook):
    for cell in nbformat.read(notebook, as_version=4).cells:
        if cell.cell_type == "code" and CHECKED not in cell.source:
            assert cell.outputs == [] and cell.execution_count is None, (
                f"{notebook.name}: a cell has stored outputs; save with outputs cleared or run `make notebooks`")


@pytest.mark.parametrize("notebook", PAIRS, ids=lambda p: p.stem)
def test_one_parameters_cell_of_plain_literals_declaring_data_and_run_dir(notebook):
    nb = nbformat.read(notebook, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{notebook.name}: expected one cell tagged parameters, found {len(tagged)}"
    names = []
    for stmt in ast.parse(tagged[0].source).body:
        # papermill injects values after this cell, so anything derived here would go stale
        assert isinstance(stmt, (ast.Assign, ast.AnnAssign)), (
            f"{notebook.name}: {ast.unparse(stmt)!r} is not an assignment")
        value = stmt.value
        assert value is not None and isinstance(ast.literal_eval(value), (str, int, float, bool, type(None))), (
            f"{notebook.name}: parameter {ast.unparse(stmt)!r} is not a plain literal")
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
        names += [t.id for t in targets if isinstance(t, ast.Name)]
    assert {"data_dir", "run_dir"} <= set(names)
