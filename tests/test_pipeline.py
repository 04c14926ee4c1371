import json
import subprocess
import sys

import nbformat
import numpy as np
import pytest

from spectra_vae import DataError, make_demo_dataset, pipeline
from spectra_vae.__main__ import main

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
            assert node.target.id in pipeline.PARAMETER_CHECKS, (name, node.target.id)
            pipeline.check_parameters({node.target.id: node.value.value})  # the default passes its own check
        assert all(not c.get("outputs") or "NBVAL_CHECK_OUTPUT" in c.source
                   for c in nb.cells if c.cell_type == "code"), f"{name} carries outputs"
    types: dict[str, set[str]] = {}
    for name in pipeline.NOTEBOOKS:
        for k, v in pipeline.notebook_parameters(NOTEBOOKS / name).items():
            types.setdefault(k, set()).add(v["type"])
    assert all(len(t) == 1 and t != {"None"} for t in types.values()), types  # one declared type per name


def test_parameter_checks_name_the_parameter():
    with pytest.raises(DataError, match="parameter epochs: expected a whole number, got 'abc'"):
        pipeline.check_int("epochs", "abc", 1)
    with pytest.raises(DataError, match="parameter latent_dim: must be ≥ 1, got 0"):
        pipeline.check_int("latent_dim", 0, 1)
    with pytest.raises(DataError, match="parameter data_dir: .* does not exist"):
        pipeline.resolve_data_dir("/no/such/dir")
    assert pipeline.parse_hidden_dims("221, 110") == (221, 110) and pipeline.parse_hidden_dims(8) == (8,)
    assert [pipeline.parse_value(v) for v in ("50", "0.5", "true", "abc")] == [50, 0.5, True, "abc"]
    with pytest.raises(DataError, match=r"parameter threshold_quantile: must be < 1"):
        pipeline.check_parameters({"threshold_quantile": 1})
    with pytest.raises(DataError, match=r"parameter seed: expected a whole number, got '²'"):
        pipeline.check_int("seed", "²")


def test_pipeline_runs_all_notebooks_into_the_report_folder(tmp_path):
    data = make_demo_dataset(tmp_path / "scans", n_scans=4, height=12, width=12, seed=1)
    out = tmp_path / "report"
    before = sorted((p.relative_to(data), p.stat().st_mtime_ns) for p in data.rglob("*"))
    rc = main(["pipeline", "--data", str(data), "--out", str(out), "-p", "epochs", "2", "-p", "max_points", "50"])
    assert rc == 0
    for name in pipeline.NOTEBOOKS:
        executed = nbformat.read(out / name, as_version=4)
        injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
        assert injected and str(data) in injected[0].source and str(out) in injected[0].source
        assert (out / name).with_suffix(".html").stat().st_size > 10_000
    nb02 = nbformat.read(out / "02_train.ipynb", as_version=4)
    assert "epochs = 2" in [c for c in nb02.cells if "injected-parameters" in c.metadata.get("tags", [])][0].source
    assert {"best.pt", "last.pt", "final.pt", "splits.json"} <= {p.name for p in (out / "model").iterdir()}
    record = json.loads((out / "model" / "splits.json").read_text())
    assert record["test"] == json.loads((data / "data_splits.json").read_text())["normal_test"]
    assert record["data_dir"] == str(data.resolve())
    # nothing is written next to the data: the data directory is exactly as it was
    assert sorted((p.relative_to(data), p.stat().st_mtime_ns) for p in data.rglob("*")) == before
    figures = {p.name for p in (out / "figures").iterdir()}
    assert {"01_mean_spectra.png", "02_loss_curves.png", "03_vae_vs_pca.png", "04_tsne.png"} <= figures


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


def test_tissue_only_training_uses_the_tissue_pixels_and_open_run_restores_them(tmp_path):
    from spectra_vae.tissue import tissue_intensity

    data = make_demo_dataset(tmp_path / "scans", n_scans=6, height=20, width=20, seed=3)
    vae, splits, final = pipeline.train(data, tmp_path / "run", epochs=1, hidden_dims=(16,),
                                        tissue_only=True, verbose=False)
    record = json.loads((tmp_path / "run" / "model" / "splits.json").read_text())
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
    reopened_vae, reopened, _, _ = pipeline.open_run(tmp_path / "run")
    assert reopened_vae.tissue_rule_ == rule
    np.testing.assert_array_equal(reopened.train.coords, splits.train.coords)
    np.testing.assert_array_equal(reopened.validation.coords, splits.validation.coords)
    assert pipeline.check_bool("tissue_only", "True") is True
    with pytest.raises(DataError, match="parameter tissue_only: expected True or False"):
        pipeline.check_bool("tissue_only", "yes")


def test_unit_scaling_preprocessing_on_all_pixels_warns_to_train_on_tissue(tmp_path):
    data = make_demo_dataset(tmp_path / "scans", n_scans=4, height=10, width=10, seed=4)
    with pytest.warns(UserWarning, match="tissue_only=True"):
        pipeline.train(data, tmp_path / "run", epochs=1, hidden_dims=(8,), preprocess="cut(950,1800)|vector",
                       verbose=False)
