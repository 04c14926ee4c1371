"""Write the API reference: one page per module of `spectra_vae`, found by walking the package.

Run by mkdocs-gen-files during `mkdocs build`; nothing is written into the repository. The pages
follow the code: a module that moves or appears is documented where it now is, with no list to
keep. Packages get a page of their own docstring (their members are documented where they are
defined); private modules (`_name.py`) and `__main__.py` are left out.
"""

from __future__ import annotations

from pathlib import Path

import mkdocs_gen_files

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "spectra_vae"

nav = mkdocs_gen_files.Nav()
for path in sorted(PACKAGE.rglob("*.py")):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if any(p.startswith("_") and p != "__init__" for p in parts):
        continue  # __main__, private modules
    is_package = parts[-1] == "__init__"
    if is_package:
        parts = parts[:-1]
    page = Path("reference", *parts[1:], "index.md") if is_package else Path("reference", *parts[1:]).with_suffix(".md")
    name = ".".join(parts)
    nav[tuple(parts[1:]) or ("spectra_vae",)] = page.relative_to("reference").as_posix()
    with mkdocs_gen_files.open(page, "w") as fh:
        if is_package:
            fh.write(f"::: {name}\n    options:\n      members: false\n")
        else:
            fh.write(f"::: {name}\n")
    mkdocs_gen_files.set_edit_path(page, path.relative_to(ROOT))

with mkdocs_gen_files.open("reference/SUMMARY.md", "w") as fh:
    fh.writelines(nav.build_literate_nav())
