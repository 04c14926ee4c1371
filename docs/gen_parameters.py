"""Write the parameters page from the package's one table of parameters (`spectra_vae.core.params`).

Run by mkdocs-gen-files during `mkdocs build`. The model's parameters are `SpectraVAE`'s constructor
arguments, notebook 02's `-p` parameters and `train`'s options; the notebooks' own come after. A
parameter added to the table appears here with its default, its values and its help text.
"""

from __future__ import annotations

import mkdocs_gen_files

from spectra_vae.estimator.params import PARAMETERS
from spectra_vae.workflow.parameters import NOTEBOOK_PARAMETERS


def cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def rows(params: dict) -> list[str]:
    out = ["| parameter | default | values | what it does | `train` option |", "| --- | --- | --- | --- | --- |"]
    for p in params.values():
        flag = f"`{p.flag}`" if p.cli else ""
        out.append(f"| `{p.name}` | `{cell(repr(p.default))}` | {cell(p.constraint)} | {cell(p.help)} | {flag} |")
    return out


lines = [
    "# Parameters",
    "",
    "Written from the package's one table of parameters when the site is built: the same table checks",
    "`SpectraVAE`'s arguments, notebook 02's parameters cell, `pipeline -p` and `train`'s options, and",
    "writes `train --help`. A value of the wrong type, sign or range is refused with a `DataError`",
    "naming the parameter, before any work. On the command line and with `-p`, a value typed as text",
    "is read as its type (`-p epochs 50`, `-p hidden_dims \"221,110\"`).",
    "",
    "## The model's parameters",
    "",
    "`SpectraVAE(...)` arguments, notebook 02's parameters (`-p NAME VALUE` for papermill and",
    "`pipeline`) and `train`'s options. Why the defaults are what they are: [Defaults](defaults.md).",
    "",
    *rows(PARAMETERS),
    "",
    "## The notebooks' own parameters",
    "",
    "Paths, split names and what the later notebooks show; given with `-p NAME VALUE` (those with a",
    "`train` option also there). Notebooks 03–05 read the data folder, the splits and `normal_labels`",
    "from the run's record.",
    "",
    *rows(NOTEBOOK_PARAMETERS),
    "",
]
with mkdocs_gen_files.open("parameters.md", "w") as fh:
    fh.write("\n".join(lines))
mkdocs_gen_files.set_edit_path("parameters.md", "spectra_vae/estimator/params.py")
