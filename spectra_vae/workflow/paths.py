"""Where things are: the repository, the demo data, run folders, checkpoints, figures.

Paths come from arguments or a run's record, never from the current directory: the repository is
the folder that holds this package (an editable install, as `make setup` makes), and the reports
root can be redirected with `$SPECTRA_VAE_REPORTS` (the tests do, so that they never write into
the user's `reports/`). Nothing generates data unless asked: the word `demo` names the embedded
demo data, and `ensure_demo_data` is the one function that writes them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypedDict

from ..core.claims import FolderInUse, wait_for_folder
from ..core.errors import DataError
from ..core.files import check_output_dir, read_json
from ..io.demo import GENERATOR_VERSION, make_demo_dataset
from ..io.demo_truth import TRUTH_VERSION

DEMO_DATA = "demo"  # the data_dir / --data value that names the embedded demo data
REPORTS_ENV = "SPECTRA_VAE_REPORTS"  # redirects the reports root (default: <repository>/reports)
MODEL_DIR, FINAL, LAST = "model", "final.pt", "last.pt"  # a run's checkpoints: <run>/model/final.pt
FIGURE_FORMATS = ("png", "svg")  # PNG to look at, SVG (vector) for papers and other tools


class DemoArgs(TypedDict):
    """Keyword arguments of `make_demo_dataset` (typed, so `**DEMO` type-checks)."""

    n_scans: int
    height: int
    width: int
    seed: int


DEMO: DemoArgs = {"n_scans": 6, "height": 64, "width": 64, "seed": 0}  # the notebooks' default data


def project_root() -> Path:
    """The repository this package was installed from (the folder holding `notebooks/` and
    `spectra_vae/`); a `DataError` when the package is installed elsewhere (a wheel), where
    every folder must be given."""
    root = Path(__file__).resolve().parents[2]
    if (root / "notebooks").is_dir() and (root / "spectra_vae").is_dir():
        return root
    raise DataError(f"spectra_vae is installed outside its repository ({root}), so there is no default folder "
                    "for data, runs or notebooks: give them (--data, --out, --notebooks; data_dir, run_dir)")


def reports_root() -> Path:
    """Where runs go by default: `$SPECTRA_VAE_REPORTS`, else `<repository>/reports`."""
    if os.environ.get(REPORTS_ENV):
        return Path(os.environ[REPORTS_ENV]).expanduser()
    return project_root() / "reports"


def demo_run_dir() -> Path:
    """The demo's own run folder (`reports/demo`), replaced by every demo run."""
    return reports_root() / "demo"


def runs_dir() -> Path:
    """The default home of new runs (`reports/runs`)."""
    return reports_root() / "runs"


def demo_data_dir(scatter: bool = False) -> Path:
    """The folder of the embedded demo data (`data/demo`, or `data/demo_scattered` for its scattered
    twin); nothing is written here (see `ensure_demo_data`)."""
    return project_root() / "data" / ("demo_scattered" if scatter else "demo")


def ensure_demo_data(scatter: bool = False) -> Path:
    """The embedded demo data, written (seeded, deterministic) when the folder is missing or was made
    by another generator version; returns the folder."""
    path = demo_data_dir(scatter)
    meta = path / "demo.json"
    # a folder made before the ground truth was written (no "truth" in demo.json) is made again
    wanted = {**DEMO, "version": GENERATOR_VERSION, "scatter": scatter, "truth": TRUTH_VERSION}
    try:
        recorded = read_json(meta) if meta.exists() else {}
    except DataError:
        recorded = {}  # a damaged record of our own demo data: make the data again
    if not isinstance(recorded, dict) or any(recorded.get(k) != v for k, v in wanted.items()):
        try:
            make_demo_dataset(path, **DEMO, scatter=scatter)
        except FolderInUse:  # another process is writing them now: wait for it, then use what it wrote
            wait_for_folder(path)
            return ensure_demo_data(scatter)
    return path


def is_demo_data(data_dir: str | os.PathLike) -> bool:
    """Whether `data_dir` names the embedded demo data (the word `demo`, or its folder)."""
    if str(data_dir) == DEMO_DATA:
        return True
    try:
        return Path(data_dir).expanduser().resolve() == demo_data_dir().resolve()
    except DataError:
        return False


def resolve_data_dir(data_dir: str | os.PathLike, scatter: bool = False) -> Path:
    """`"demo"` → the embedded demo data (`ensure_demo_data`; `scatter`: its scattered twin); else
    the folder given, which must exist."""
    if not isinstance(data_dir, (str, os.PathLike)):
        raise DataError(f"parameter data_dir: expected a path, got {data_dir!r}")
    if str(data_dir) == DEMO_DATA:
        return ensure_demo_data(scatter)
    if str(data_dir) == "":
        raise DataError(f"parameter data_dir: give a folder of scans, or {DEMO_DATA!r} for the embedded demo data")
    path = Path(data_dir).expanduser()
    if not path.exists():
        raise DataError(f"parameter data_dir: {path} does not exist")
    return path


def resolve_scattered_dir(scattered_dir: str | os.PathLike, data_dir: str | os.PathLike) -> Path | None:
    """The folder of the scattered ("uncorrected") variant of `data_dir`'s scans, or None for none:
    `"auto"` → the embedded demo's scattered twin when `data_dir` is the demo, else none; `""` or
    `"none"` → none; else the folder given."""
    text = str(scattered_dir).strip()
    if text.lower() in ("", "none"):
        return None
    if text.lower() == "auto":
        return resolve_data_dir(DEMO_DATA, scatter=True) if str(data_dir) == DEMO_DATA else None
    path = Path(text).expanduser()
    if not path.exists():
        raise DataError(f"parameter scattered_dir: {path} does not exist")
    return path


def resolve_checkpoint(checkpoint: str, run_dir: Path) -> Path:
    """`""` → the model that 02_train wrote into `run_dir`; a clear error if there is none."""
    path = run_dir / MODEL_DIR / FINAL if checkpoint == "" else Path(checkpoint).expanduser()
    if not path.is_file():
        raise DataError(f"parameter checkpoint: no model at {path}; run 02_train.ipynb first "
                        "(with the same run_dir) or give checkpoint=<path to a .pt file>")
    return path


def figures_dir(run_dir: Path) -> Path:
    """`run_dir/figures`, made if needed (checked writable first)."""
    check_output_dir(check_output_dir(run_dir, "parameter run_dir") / "figures", "parameter run_dir")
    (run_dir / "figures").mkdir(parents=True, exist_ok=True)
    return run_dir / "figures"


def save_figure(fig: Any, run_dir: Path, name: str, formats: tuple[str, ...] = FIGURE_FORMATS) -> Path:
    """Save a figure as `run_dir/figures/<name>.png` (and .svg) and return the PNG's path."""
    folder = figures_dir(run_dir)
    for fmt in formats:
        fig.savefig(folder / f"{name}.{fmt}", dpi=110, bbox_inches="tight")
    return folder / f"{name}.{formats[0]}"
