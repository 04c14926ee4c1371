"""The package's shape (docs/layout.md): floors without cycles, no private names across modules, small
modules, a wheel that carries every sub-package, and one table of parameters behind every face."""

from __future__ import annotations

import ast
import inspect
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

import spectra_vae
from spectra_vae import SpectraVAE
from spectra_vae.estimator.params import PARAMETERS
from spectra_vae.workflow.parameters import ALL_PARAMETERS

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "spectra_vae"
MAX_MODULE_LINES = 500


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _is_package(name: str, modules: dict[str, Path]) -> bool:
    return modules[name].name == "__init__.py"


def _imports(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, list[str]]]:
    """(module imported, names taken from it) for every import in `path`, function-level ones included,
    `if TYPE_CHECKING:` blocks left out; `from . import x` of a submodule counts as importing that module."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for n in ast.walk(node)}
    package = name if _is_package(name, modules) else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name.startswith("spectra_vae")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("spectra_vae"):
                continue
            names = [a.name for a in node.names]
            subs = [n for n in names if f"{target}.{n}" in modules]
            found += [(f"{target}.{n}", []) for n in subs]
            rest = [n for n in names if n not in subs]
            if rest:
                found.append((target, rest))
    return found


def test_no_import_cycle_between_modules():
    """A module never imports (directly or through others) a module that imports it back; a package's
    `__init__` only re-exports, so it is left out of the graph."""
    modules = _modules()
    graph = {name: {t for t, _ in _imports(name, path, modules) if t in modules and t != name
                    and not _is_package(t, modules)}
             for name, path in modules.items() if not _is_package(name, modules)}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " → ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_no_private_name_is_imported_from_another_module():
    modules = _modules()
    bad = [f"{name}: {target}.{n}" for name, path in modules.items() for target, names in _imports(name, path, modules)
           for n in names if n.startswith("_") and not n.startswith("__") and target != name]
    assert not bad, bad


def test_no_module_is_over_the_size_limit():
    sizes = {name: len(path.read_text().splitlines()) for name, path in _modules().items()}
    assert not {n: s for n, s in sizes.items() if s > MAX_MODULE_LINES}, sizes


def test_the_constructor_and_the_parameter_table_agree():
    signature = inspect.signature(SpectraVAE.__init__).parameters
    assert [n for n in signature if n != "self"] == list(PARAMETERS)
    for name, p in PARAMETERS.items():
        assert signature[name].default == p.default, name
        p.check(p.default)  # every default passes its own constraint
        assert p.help and p.constraint.text
    assert SpectraVAE().get_params() == {n: p.default for n, p in PARAMETERS.items()}


def test_notebook_02_declares_the_table_s_parameters_with_its_defaults():
    """Notebook 02's parameters cell is the table's model parameters (as papermill can pass them: text for
    tuples and for values that may be text), with the table's defaults."""
    nb = nbformat.read(ROOT / "notebooks" / "02_train.ipynb", as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    declared = {node.target.id: node.value.value for node in ast.parse(cell.source).body}  # type: ignore[union-attr]
    model = {n for n, p in PARAMETERS.items() if p.cli}
    missing = model - set(declared) - {"normalisation", "noise", "checkpoint_minutes"}
    assert not missing, f"notebook 02 lacks {sorted(missing)}"
    for name, value in declared.items():
        p = ALL_PARAMETERS[name]
        assert p.check(value, text=True) == p.check(p.default, text=True) or (name == "patience" and value == 10), name


def test_train_help_and_pipeline_help_are_written_from_the_table():
    env = {**os.environ, "COLUMNS": "200"}
    train = subprocess.run([sys.executable, "-m", "spectra_vae", "train", "--help"], capture_output=True, text=True,
                           env=env, check=True).stdout
    for name, p in PARAMETERS.items():
        if p.cli:
            assert p.flag in train and p.help.split(";")[0][:40] in " ".join(train.split()), name
    pipeline = subprocess.run([sys.executable, "-m", "spectra_vae", "pipeline", "--help"], capture_output=True,
                              text=True, env=env, check=True).stdout
    for name in ("epochs", "latent_dim", "train_split", "false_positive_rate", "max_points", "scattered_split"):
        assert f"  {name} " in pipeline, name


def test_an_installed_wheel_imports_every_module(tmp_path):
    """Packaging finds every sub-package: a wheel built from the repository, installed on its own, imports
    every module (`packages = ["spectra_vae"]` alone would leave the sub-packages out)."""
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path / "dist"), str(ROOT)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("spectra_vae-*.whl"))
    target = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                              str(wheel)], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-2000:]
    names = sorted(_modules())
    code = ("import importlib, sys\n"
            f"for name in {names!r}:\n"
            "    importlib.import_module(name)\n"
            "import spectra_vae\n"
            "print(spectra_vae.__file__)\n")
    env = {**os.environ, "PYTHONPATH": str(target)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().startswith(str(target)), proc.stdout  # the wheel's copy, not the repository's


def test_the_package_face_keeps_its_names():
    for name in ("SpectraVAE", "SpectralDataset", "load_dataset", "available_splits", "make_demo_dataset",
                 "DataError", "TrainingError", "TrainingWarning", "rmse", "__version__"):
        assert hasattr(spectra_vae, name), name
    from spectra_vae.anomaly import PCAMonitor, RXDetector  # noqa: F401
    from spectra_vae.io import cache_dir  # noqa: F401
    from spectra_vae.model import plan_epochs  # noqa: F401
    from spectra_vae.preprocess import TissueRule, pixel_terms  # noqa: F401
    from spectra_vae.views import explore  # noqa: F401
    from spectra_vae.workflow import open_run  # noqa: F401
