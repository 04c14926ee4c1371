import json
import subprocess
import sys

import nbformat
import numpy as np
import pytest

from spectra_vae import DataError, make_demo_dataset
from spectra_vae import workflow as pipeline
from spectra_vae.__main__ import main
from spectra_vae.workflow import notebooks, parameters

NOTEBOOKS = pipeline.project_root() / "notebooks"


def test_every_notebook_has_one_parameters_cell_of_annotated_plain_literals_that_the_checks_know():
    import ast
    for name in pipeline.NOTEBOOKS:
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, name
        for node in ast.parse(tagged[0].source).body:
            # annotated (`epochs: int = 20`), so papermill reports the type the pipeline checks -p values against
            assert isinstance(node, ast.AnnAssign) and isinstance(node.value, ast.Constant), (name, ast.dump(node))
            assert ast.unparse(node.annotation) == type(node.value.value).__name__, (name, ast.unparse(node))
            assert node.target.id in pipeline.ALL_PARAMETERS, (name, node.target.id)
            pipeline.check_parameters({node.target.id: node.value.value})  # the default passes its own check
        assert all(not c.get("outputs") or "NBVAL_CHECK_OUTPUT" in c.source
                   for c in nb.cells if c.cell_type == "code"), f"{name} carries outputs"
    types: dict[str, set[str]] = {}
    for name in pipeline.NOTEBOOKS:
        for k, v in notebooks.notebook_parameters(NOTEBOOKS / name).items():
            types.setdefault(k, set()).add(v["type"])
    assert all(len(t) == 1 and t != {"None"} for t in types.values()), types  # one declared type per name


def test_parameter_checks_name_the_parameter():
    with pytest.raises(DataError, match="parameter latent_dim: expected a whole number, got 'abc'"):
        pipeline.check_parameter("latent_dim", "abc")
    with pytest.raises(DataError, match="parameter latent_dim: must be ≥ 1, got 0"):
        pipeline.check_parameter("latent_dim", 0)
    with pytest.raises(DataError, match="parameter data_dir: .* does not exist"):
        pipeline.resolve_data_dir("/no/such/dir")
    assert pipeline.check_parameter("hidden_dims", "221, 110") == (221, 110)
    assert pipeline.check_parameter("hidden_dims", 8) == (8,)
    assert [pipeline.check_parameter("epochs", v) for v in ("auto", " Auto ", 5, "5", 5.0)] == ["auto", "auto", 5, 5, 5]
    for bad in (0, "0", "many", 1.5, None, True):
        with pytest.raises(DataError, match="parameter epochs: expected 'auto' or a whole number ≥ 1"):
            pipeline.check_parameter("epochs", bad)
    assert [parameters.parse_value(v) for v in ("50", "0.5", "true", "abc")] == [50, 0.5, True, "abc"]
    with pytest.raises(DataError, match=r"parameter threshold_quantile: must be < 1"):
        pipeline.check_parameters({"threshold_quantile": 1})
    with pytest.raises(DataError, match=r"parameter seed: expected a whole number, got '²'"):
        pipeline.check_parameter("seed", "²")


LAB_SPLITS = {"normal_train": "normal_corr_train", "normal_val": "normal_corr_val", "normal_test": "normal_corr_test",
              "abnormal": "abnormal_corr"}


def test_pipeline_runs_all_notebooks_into_the_run_folder_with_the_labs_split_names_and_cut_snv(tmp_path):
    data = make_demo_dataset(tmp_path / "scans", n_scans=4, height=12, width=12, seed=1)
    named = json.loads((data / "data_splits.json").read_text())
    (data / "data_splits.json").write_text(json.dumps({LAB_SPLITS[k]: v for k, v in named.items()}))
    out = tmp_path / "report"
    before = sorted((p.relative_to(data), p.stat().st_mtime_ns) for p in data.rglob("*"))
    rc = main(["pipeline", "--data", str(data), "--out", str(out), "--quiet", "-p", "epochs", "2",
               "-p", "max_points", "50", "-p", "preprocess", "cut(1000,1700)|snv", "-p", "tissue_only", "True",
               *[a for k, v in zip(("train_split", "val_split", "test_split", "abnormal_split"), LAB_SPLITS.values(),
                                   strict=True) for a in ("-p", k, v)]])
    assert rc == 0
    for name in pipeline.NOTEBOOKS:
        executed = nbformat.read(out / name, as_version=4)
        injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
        assert injected and str(data) in injected[0].source and str(out) in injected[0].source
        assert (out / name).with_suffix(".html").stat().st_size > 10_000
    nb02 = nbformat.read(out / "02_train.ipynb", as_version=4)
    assert "epochs = 2" in [c for c in nb02.cells if "injected-parameters" in c.metadata.get("tags", [])][0].source
    assert {"best.pt", "last.pt", "final.pt"} <= {p.name for p in (out / "model").iterdir()}
    assert {"params.json", "splits.json", "history.csv"} <= {p.name for p in out.iterdir()}
    record = json.loads((out / "splits.json").read_text())
    assert record["test"] == named["normal_test"] and record["abnormal"] == named["abnormal"]
    assert record["data_dir"] == str(data.resolve())
    # split names given once, to 02, reach 05: the abnormal scans are scored
    nb05 = nbformat.read(out / "05_anomaly_detection.ipynb", as_version=4)
    printed = "".join(o.get("text", "") for c in nb05.cells for o in c.get("outputs", []))
    assert f"abnormal: {named['abnormal']}" in printed and "AUROC" in printed
    # nothing is written next to the data: the data directory is exactly as it was
    assert sorted((p.relative_to(data), p.stat().st_mtime_ns) for p in data.rglob("*")) == before
    figures = {p.name for p in (out / "figures").iterdir()}
    assert {"01_mean_spectra.png", "02_loss_curves.png", "03_vae_vs_pca.png", "04_tsne.png", "04_traversals.svg",
            "05_inside_vs_q.png"} <= figures
    assert any(f.startswith("05_roc_") for f in figures)  # one ROC figure per anomaly kind present


def _outputs(notebook) -> str:
    nb = nbformat.read(notebook, as_version=4)
    return "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []) if o.output_type == "stream")


def test_bare_scans_go_through_every_notebook_on_channel_numbers_with_one_warning(tmp_path, monkeypatch, capsys,
                                                                                  bare_scans):
    data = bare_scans(tmp_path / "scans", n_scans=4, size=10)
    kernels = tmp_path / "jupyter" / "kernels" / "spectra-test"  # a kernel of another name: --kernel picks it
    kernels.mkdir(parents=True)
    (kernels / "launch.py").write_text(  # counts its launches, then is an ordinary IPython kernel
        "import pathlib, runpy\n"
        "with pathlib.Path(__file__).with_name('launched').open('a') as f:\n    f.write('x')\n"
        "runpy.run_module('ipykernel_launcher', run_name='__main__')\n")
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, str(kernels / "launch.py"), "-f", "{connection_file}"],
        "display_name": "spectra test", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    out = tmp_path / "run"
    rc = main(["pipeline", "--data", str(data), "--out", str(out), "--no-html", "--kernel", "spectra-test",
               "-p", "epochs", "1", "-p", "max_points", "50", "-p", "hidden_dims", "16"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err[-3000:]
    # one clear warning, from notebook 01 as it runs (live: its output and cell progress show in the terminal)
    assert (captured.out + captured.err).count("no wavenumber axis (no wavenumbers.npy)") == 1
    assert "Executing" in captured.err and "tissue rule of this model" in captured.out
    assert (kernels / "launched").read_text() == "x" * len(pipeline.NOTEBOOKS)  # every notebook ran in that kernel
    nb01 = nbformat.read(out / "01_data_exploration.ipynb", as_version=4)
    warned = [o for c in nb01.cells for o in c.get("outputs", []) if o.get("name") == "stderr"
              and "no wavenumber axis" in o.text]
    assert len(warned) == 1 and "channel numbers" in warned[0].text
    assert "mean absorbance over all channels" in _outputs(out / "02_train.ipynb")
    assert json.loads((out / "splits.json").read_text())["tissue_rule"]["measure"] == "total"


def test_pipeline_stops_at_the_first_failing_notebook_and_names_it(tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    np.save(bad / "a.npy", np.ones((4, 4, 10), np.float32))
    np.save(bad / "b.npy", np.ones((4, 4, 12), np.float32))
    rc = main(["pipeline", "--data", str(bad), "--out", str(tmp_path / "r"), "--no-html"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "01_data_exploration.ipynb failed in cell" in err and "DataError" in err and "b.npy" in err
    assert not (tmp_path / "r" / "02_train.ipynb").exists()


def test_train_command_trains_without_jupyter(tmp_path):
    data = make_demo_dataset(tmp_path / "scans", n_scans=4, height=10, width=10, seed=2)
    proc = subprocess.run([sys.executable, "-m", "spectra_vae", "train", "--data", str(data), "--epochs", "2",
                           "--hidden-dims", "32,16", "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "trained 2 epochs" in proc.stdout and "PCA" in proc.stdout
    assert (tmp_path / "run" / "model" / "final.pt").exists()
    assert (tmp_path / "run" / "params.json").exists() and (tmp_path / "run" / "history.csv").exists()


def test_tissue_only_training_uses_the_tissue_pixels_and_open_run_restores_them(tmp_path):
    from spectra_vae.preprocess.tissue import tissue_intensity

    data = make_demo_dataset(tmp_path / "scans", n_scans=6, height=20, width=20, seed=3)
    vae, splits, final = pipeline.train(data, tmp_path / "run", epochs=1, hidden_dims=(16,),
                                        tissue_only=True, verbose=False)
    record = json.loads((tmp_path / "run" / "splits.json").read_text())
    rule = vae.tissue_rule_
    assert record["tissue_only"] is True and record["tissue_rule"] == rule.to_dict()
    whole = pipeline.make_splits(data)
    amide = tissue_intensity(whole.train, "amide_i")
    assert rule.measure == "amide_i" and np.isfinite(rule.threshold)
    assert len(splits.train) == int((amide > rule.threshold).sum()) < len(whole.train)
    assert (tissue_intensity(splits.train, "amide_i") > rule.threshold).all()
    # the tissue pixels are the labelled ones: background (label 0) is nearly absent
    assert (splits.train.labels == 0).mean() < 0.05 < (whole.train.labels == 0).mean()
    assert len(splits.test) == len(whole.test)  # held-out scans stay whole
    assert "tissue pixels only" in splits.how
    opened = pipeline.open_run(tmp_path / "run")
    reopened_vae, reopened = opened.vae, opened.splits
    assert reopened_vae.tissue_rule_ == rule
    np.testing.assert_array_equal(reopened.train.coords, splits.train.coords)
    np.testing.assert_array_equal(reopened.validation.coords, splits.validation.coords)
    assert pipeline.check_parameter("tissue_only", "True") is True
    with pytest.raises(DataError, match="parameter tissue_only: expected True or False"):
        pipeline.check_parameter("tissue_only", "yes")


def test_unit_scaling_preprocessing_on_all_pixels_warns_to_train_on_tissue(tmp_path):
    data = make_demo_dataset(tmp_path / "scans", n_scans=4, height=10, width=10, seed=4)
    with pytest.warns(UserWarning, match="tissue_only=True"):
        pipeline.train(data, tmp_path / "run", epochs=1, hidden_dims=(8,), preprocess="cut(950,1800)|vector",
                       verbose=False)


def test_make_lab_leaves_the_kernels_matplotlib_backend_alone_and_headless_verbs_set_agg(tmp_path):
    import os
    import shutil

    if shutil.which("make") is None:
        pytest.skip("no make on this machine")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / ".installed").touch()  # newer than pyproject.toml: `make setup` counts as done
    for tool in ("jupyter", "python"):  # stand-ins that say which backend they were given
        (venv / "bin" / tool).write_text('#!/bin/sh\necho "MPLBACKEND=${MPLBACKEND-unset}"\n')
        (venv / "bin" / tool).chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    root = pipeline.project_root()

    def make(target: str) -> str:
        proc = subprocess.run(["make", "-s", target, f"VENV={venv}"], cwd=root, env=env, capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    assert "MPLBACKEND=unset" in make("lab")
    assert "MPLBACKEND=Agg" in make("bench")


def test_a_run_on_uncorrected_scans_trains_with_emsc_and_reopens_with_the_same_correction(tmp_path, scattered_dir):
    """`-p preprocess emsc`, as the README gives it for uncorrected scans: the run checks the step
    before it writes (a fitted step has no data yet then), fits it on the training tissue, and the
    reopened model corrects exactly as the trained one; its anomaly monitor weights residuals."""
    vae, splits, _ = pipeline.train(scattered_dir, tmp_path / "run", epochs=1, hidden_dims=(16,), preprocess="emsc",
                                    verbose=False)
    assert vae.preprocessor_.fitted_step("emsc") is not None and vae.monitor_.noise_reference is not None
    opened = pipeline.open_run(tmp_path / "run")
    reopened, reopened_splits = opened.vae, opened.splits
    x = splits.test.to_array()
    np.testing.assert_array_equal(reopened.preprocessor_.transform(x), vae.preprocessor_.transform(x))
    np.testing.assert_allclose(reopened.anomaly_score(reopened_splits.test), vae.anomaly_score(splits.test))
    with pytest.raises(DataError, match="whole polynomial degree"):
        pipeline.train(scattered_dir, tmp_path / "bad", epochs=1, preprocess="emsc(11)", verbose=False)
    assert not (tmp_path / "bad").exists()


def test_notebook_03_draws_the_emsc_terms_of_a_model_trained_with_emsc(tmp_path, scattered_dir):
    """Notebooks 02 and 03 with papermill on uncorrected scans, `-p preprocess emsc`: 03 maps what the
    model's EMSC fitted (basic EMSC: the multiplicative term and the baseline, no dispersion share)."""
    pipeline.run_pipeline(scattered_dir, tmp_path / "run", {"preprocess": "emsc", "epochs": 1, "hidden_dims": "16"},
                          notebooks=("02_train.ipynb", "03_reconstruction.ipynb"), html=False, live=False)
    figures = {p.name for p in (tmp_path / "run" / "figures").glob("03_emsc_*.png")}
    assert figures == {"03_emsc_multiplicative.png", "03_emsc_baseline.png"}
