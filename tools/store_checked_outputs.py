"""Refresh the outputs that nbval compares (`make checked-outputs`).

Cells marked `# NBVAL_CHECK_OUTPUT` keep their output in the committed notebook, and
`make test` fails when a run prints something else. After a deliberate change to what such a
cell prints (the demo generator, the overview table), run this: it executes each notebook on
the demo data with papermill and copies the new outputs of those cells, and only those, into
the committed `.ipynb`. Every other output stays stripped. The paired `.py` holds no outputs,
so the pair stays in sync.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
MARK = "NBVAL_CHECK_OUTPUT"


def refresh(notebook: Path) -> int:
    """Copy the executed outputs of the marked cells into `notebook`; returns how many cells."""
    source = nbformat.read(notebook, as_version=4)
    marked = [c for c in source.cells if c.cell_type == "code" and MARK in c.source]
    if not marked:
        return 0
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / notebook.name
        subprocess.run([sys.executable, "-m", "papermill", str(notebook), str(out), "--cwd", str(NOTEBOOKS),
                        "-p", "run_dir", scratch], check=True, capture_output=True)
        executed = {c.source: c for c in nbformat.read(out, as_version=4).cells if c.cell_type == "code"}
    for cell in marked:
        cell.outputs = executed[cell.source].outputs
        cell.execution_count = 1
        print(f"{notebook.name}:\n" + "".join(o.get("text", "") for o in cell.outputs))
    nbformat.write(source, notebook)
    return len(marked)


if __name__ == "__main__":
    total = sum(refresh(nb) for nb in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")))
    print(f"refreshed {total} checked cell(s)")
