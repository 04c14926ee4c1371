"""Execute 01 on the demo data and keep the outputs of NBVAL_CHECK_OUTPUT cells only."""
import subprocess, sys, tempfile, nbformat
from pathlib import Path
for name in ["notebooks/01_data_exploration.ipynb"]:
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "x.ipynb"
        subprocess.run([sys.executable, "-m", "papermill", name, str(out), "--cwd", "notebooks", "-p", "run_dir", d], check=True, capture_output=True)
        done = nbformat.read(out, as_version=4)
    src = nbformat.read(name, as_version=4)
    executed = {c.source: c for c in done.cells if c.cell_type == "code"}
    for c in src.cells:
        if c.cell_type == "code" and "NBVAL_CHECK_OUTPUT" in c.source:
            c.outputs = executed[c.source].outputs
            c.execution_count = 1
            print(c.outputs[0]["text"])
    nbformat.write(src, name)
