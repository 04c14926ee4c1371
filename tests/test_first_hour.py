"""A new lab member's first hour (issue 32): the README's quick start trains on normal scans, the tests leave the
user's reports alone, notebook 01's figures survive notebook 02, the pipeline checks the preprocessing before the
first notebook, and notebook 01 explores the run's own splits."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import nbformat
import numpy as np
import pytest

import spectra_vae
from spectra_vae import workflow
from spectra_vae.__main__ import main
from spectra_vae.io.demo import NORMAL_LABELS
from spectra_vae.workflow import paths, runs
from spectra_vae.workflow.splits import explored_splits, twin_split

ROOT = workflow.project_root()
NOTEBOOKS = ROOT / "notebooks"
LAB = {"normal_train": "normal_corr_train", "normal_val": "normal_corr_val", "normal_test": "normal_corr_test",
       "abnormal": "abnormal_corr"}


def printed(notebook) -> str:
    nb = nbformat.read(notebook, as_version=4)
    return "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []) if o.output_type == "stream")


def snapshot(folder) -> list[tuple[str, int]]:
    """Every file under `folder` with its modification time (empty when the folder does not exist)."""
    return sorted((str(p.relative_to(folder)), p.stat().st_mtime_ns) for p in folder.rglob("*")) if folder.exists() \
        else []


def quick_start() -> str:
    """The one ```python block under "## Quick start (Python)" in the README."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start (Python)", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, f"expected one python block in the quick start, found {len(blocks)}"
    return blocks[0]


def test_the_readmes_quick_start_runs_and_trains_on_normal_scans_only(tmp_path, monkeypatch):
    """The block as written, in a temporary folder, on a small demo made there (six 12×12 scans instead of 64×64)."""
    real = spectra_vae.make_demo_dataset
    monkeypatch.setattr(spectra_vae, "make_demo_dataset",
                        lambda path, **kw: real(path, **{"height": 12, "width": 12, **kw}))
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(quick_start(), "README.md (Quick start)", "exec"), scope)
    train, test, vae = scope["train"], scope["test"], scope["vae"]
    splits = json.loads((tmp_path / "data" / "demo" / "data_splits.json").read_text())
    assert set(train.scans) <= set(splits["normal_train"]) and not set(train.scans) & set(splits["abnormal"])
    names = np.asarray(train.label_names)[np.unique(train.labels[train.labels >= 0])]
    assert set(names) <= set(NORMAL_LABELS)  # no tumour, no paraffin among the training pixels
    assert scope["Z"].shape == (len(test), 2) and (tmp_path / "models" / "run1" / "final.pt").is_file()
    assert len(vae.history) == 50


def test_make_test_leaves_the_users_reports_alone(tmp_path):
    """nbval runs a notebook as stored (data_dir "demo", run_dir "": reports/demo) in a kernel of its own; the root
    conftest redirects the reports root for it, so the user's reports/ keep every file and modification time."""
    reports = ROOT / "reports"
    before = snapshot(reports)
    env = {k: v for k, v in os.environ.items() if k != paths.REPORTS_ENV} | {"TMPDIR": str(tmp_path),
                                                                             "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
                           "notebooks/01_data_exploration.ipynb"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert snapshot(reports) == before
    redirected = list(tmp_path.glob("spectra_vae_reports_*/demo/figures/01_mean_spectra.png"))
    assert len(redirected) == 1  # the notebook's figures went to the redirected root instead


def test_notebook_01_then_02_keeps_01s_figures_when_02_replaces_the_run(tmp_path, demo_dir):
    """As on the demo in JupyterLab, where 02 always replaces the run in reports/demo: a run is already in the
    folder, 01 draws the data there, 02 replaces the run."""
    import papermill as pm

    run = tmp_path / "run"
    runs.train(demo_dir, run, epochs=1, hidden_dims=(8,), verbose=False)  # the run 02 replaces
    common = {"data_dir": str(demo_dir), "run_dir": str(run)}
    pm.execute_notebook(str(NOTEBOOKS / "01_data_exploration.ipynb"), str(tmp_path / "01.ipynb"), cwd=str(NOTEBOOKS),
                        parameters={**common, "max_pixels": 200}, progress_bar=False)
    drawn = {p.name: p.stat().st_mtime_ns for p in (run / "figures").glob("01_*")}
    assert {"01_mean_spectra.png", "01_amide_i_images.svg", "01_tissue_mask.png"} <= set(drawn)
    created = json.loads((run / "params.json").read_text())["created"]
    pm.execute_notebook(str(NOTEBOOKS / "02_train.ipynb"), str(tmp_path / "02.ipynb"), cwd=str(NOTEBOOKS),
                        parameters={**common, "overwrite": True, "epochs": 1, "hidden_dims": "8"}, progress_bar=False)
    assert {p.name: p.stat().st_mtime_ns for p in (run / "figures").glob("01_*")} == drawn
    assert (run / "figures" / "02_loss_curves.png").is_file()
    assert json.loads((run / "params.json").read_text())["created"] >= created  # the run was replaced


@pytest.mark.parametrize("out", ["given", "default"])
def test_preprocessing_the_axis_cannot_take_fails_before_notebook_01_and_leaves_no_run_folder(
        tmp_path, monkeypatch, capsys, bare_scans, out):
    data = bare_scans(tmp_path / "scans", n_scans=3)
    monkeypatch.setenv(paths.REPORTS_ENV, str(tmp_path / "reports"))
    target = ["--out", str(tmp_path / "run")] if out == "given" else []
    rc = main(["pipeline", "--data", str(data), *target, "--no-html", "-p", "preprocess", "cut(1000,1700)|snv"])
    err = capsys.readouterr().err
    assert rc == 1 and "cut" in err and "wavenumber" in err
    assert "01_data_exploration" not in err  # no notebook ran
    assert not (tmp_path / "run").exists() and not (tmp_path / "reports").exists()


def test_twin_split_names_follow_the_labs_corr_and_uncorr():
    assert twin_split("normal_corr_train") == ("normal_uncorr_train", False)
    assert twin_split("abnormal_uncorr") == ("abnormal_corr", True)
    assert twin_split("normal_train") is None and twin_split("corr_uncorr") is None
    named = {n: [] for n in [*LAB.values(), *(n.replace("corr", "uncorr") for n in LAB.values())]}
    expected = {"split": ",".join(LAB.values()),
                "scattered_split": ",".join(n.replace("corr", "uncorr") for n in LAB.values())}
    assert explored_splits(named, list(LAB.values())) == expected
    # a run on the uncorrected scans: 01 still explores the corrected ones, with the run's beside them
    assert explored_splits(named, [n.replace("corr", "uncorr") for n in LAB.values()]) == expected
    assert explored_splits(named, ["normal_corr_train", "", "missing"]) == {
        "split": "normal_corr_train", "scattered_split": "normal_uncorr_train"}
    assert explored_splits({"normal_train": [], "abnormal": []}, list(LAB)) == {"split": "normal_train,abnormal"}


def test_in_a_pipeline_notebook_01_explores_the_runs_splits_beside_their_uncorrected_twins(
        tmp_path, demo_dir, scattered_dir):
    """The lab's folder: both variants under their own names and 8 split lists; `-p train_split …` as the README
    gives it. 01 explores the run's corrected scans, not all twelve, and shows the uncorrected twins beside them."""
    folder = tmp_path / "lab"
    folder.mkdir()
    shutil.copy(demo_dir / "wavenumbers.npy", folder)
    named = json.loads((demo_dir / "data_splits.json").read_text())
    lists = {}
    for key, scans in named.items():
        for variant, source in (("corr", demo_dir), ("uncorr", scattered_dir)):
            lists[LAB[key].replace("corr", variant)] = [s.replace(".npy", f"_{variant}.npy") for s in scans]
            for s in scans:
                shutil.copy(source / s, folder / s.replace(".npy", f"_{variant}.npy"))
    (folder / "data_splits.json").write_text(json.dumps(lists))
    given = {f"{k}_split": v for k, v in zip(("train", "val", "test", "abnormal"), LAB.values(), strict=True)}
    workflow.run_pipeline(folder, tmp_path / "run", {**given, "epochs": 1, "hidden_dims": "8", "max_pixels": 300},
                          notebooks=("01_data_exploration.ipynb", "02_train.ipynb"), html=False, live=False)
    out = printed(tmp_path / "run" / "01_data_exploration.ipynb")
    uncorr = ", ".join(n.replace("corr", "uncorr") for n in LAB.values())
    assert f"split {','.join(LAB.values())}" in out and f"scattered variant: {folder}, split {uncorr}" in out
    assert re.search(r"scans\s+6\b", out)  # the run's six, not the folder's twelve
    assert re.search(r"data0_corr.npy +data0_uncorr.npy", out)
    assert (tmp_path / "run" / "figures" / "01_variants_before_after_emsc.png").is_file()


def test_a_run_without_label_maps_has_no_normal_labels_to_report(tmp_path, bare_scans):
    data = bare_scans(tmp_path / "scans", n_scans=3)
    runs.train(data, tmp_path / "run", epochs=1, hidden_dims=(8,), verbose=False)
    assert workflow.open_run(tmp_path / "run").normal_labels == ()
