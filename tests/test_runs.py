"""A run owns its record: recorded splits are the truth when reopening, runs never overwrite each other."""

import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest

from spectra_vae import DataError, make_demo_dataset
from spectra_vae.__main__ import main
from spectra_vae.workflow import runs

TINY = {"epochs": 1, "hidden_dims": (16,), "batch_size": 128}


def test_reopened_run_keeps_its_recorded_splits_when_new_scans_are_added(tmp_path, bare_scans):
    data = bare_scans(tmp_path / "scans")
    vae, splits, _ = runs.train(data, tmp_path / "run", verbose=False, **TINY)
    trained = (splits.train.scans, splits.validation.scans, splits.test.scans)
    for k in range(3):  # three new scans, as a lab adds them after training
        shutil.copy(data / f"data{k}.npy", data / f"new{k}.npy")
    with pytest.warns(UserWarning, match=r"3 scan\(s\) in .* are not part of this run and are ignored"):
        opened = runs.open_run(tmp_path / "run")
    assert (opened.splits.train.scans, opened.splits.validation.scans, opened.splits.test.scans) == trained
    assert len(opened.splits.train) == len(splits.train)
    assert any("new0.npy" in n for n in opened.notes)
    assert "new0.npy" not in opened.scans().scans


def test_reopening_reports_changed_scans_and_refuses_missing_ones(tmp_path, bare_scans):
    data = bare_scans(tmp_path / "scans")
    _, splits, _ = runs.train(data, tmp_path / "run", verbose=False, **TINY)
    test_scan = data / splits.test.scans[0]
    arr = np.load(test_scan)
    arr[0, 0, 0] += 1.0
    np.save(test_scan, arr)
    with pytest.warns(UserWarning, match=f"{splits.test.scans[0]} changed since training: sampled content differs"):
        runs.open_run(tmp_path / "run")
    os.utime(test_scan, (1e9, 1e9))  # a copy to another machine: new time, same content
    np.save(test_scan, np.load(test_scan))
    (data / splits.train.scans[0]).unlink()
    with pytest.raises(DataError, match=f"missing: .*{splits.train.scans[0]}"):
        runs.open_run(tmp_path / "run")


def test_run_folder_holds_params_splits_history_tissue_rule_and_model(tmp_path):
    data = make_demo_dataset(tmp_path / "scans", n_scans=4, height=10, width=10, seed=6)
    vae, splits, final = runs.train(data, tmp_path / "run", verbose=False, normal_labels="background,stroma",
                                    **TINY)
    run = tmp_path / "run"
    params = json.loads((run / "params.json").read_text())
    assert params["data_dir"] == str(data.resolve()) and params["hidden_dims"] == [16]
    assert params["abnormal_split"] == "abnormal" and params["normal_labels"] == ["background", "stroma"]
    record = json.loads((run / "splits.json").read_text())
    split_file = json.loads((data / "data_splits.json").read_text())
    assert record["train"] == split_file["normal_train"] and record["abnormal"] == split_file["abnormal"]
    assert set(record["scans"]) == {f"data{k}.npy" for k in range(4)}
    assert record["tissue_rule"] == vae.tissue_rule_.to_dict()
    history = pd.read_csv(run / "history.csv")
    assert list(history.epoch) == list(vae.history.epoch) == [1]
    assert final == run / "model" / "final.pt" and final.exists()
    opened = runs.open_run(run)
    assert opened.abnormal.scans == split_file["abnormal"]
    assert opened.normal_labels == ("background", "stroma")


def test_an_existing_run_is_not_overwritten_unless_asked(tmp_path, capsys):
    data = make_demo_dataset(tmp_path / "scans", n_scans=4, height=10, width=10, seed=7)
    runs.train(data, tmp_path / "run", verbose=False, **TINY)
    before = (tmp_path / "run" / "model" / "final.pt").stat().st_mtime_ns
    with pytest.raises(runs.RunExistsError, match="already holds a run"):
        runs.train(data, tmp_path / "run", verbose=False, **TINY)
    rc = main(["pipeline", "--data", str(data), "--out", str(tmp_path / "run"), "--no-html", "--quiet"])
    assert rc == 1 and "already holds a run" in capsys.readouterr().err
    assert (tmp_path / "run" / "model" / "final.pt").stat().st_mtime_ns == before
    runs.train(data, tmp_path / "run", overwrite=True, verbose=False, **TINY | {"latent_dim": 3})
    assert json.loads((tmp_path / "run" / "params.json").read_text())["latent_dim"] == 3


def test_default_run_folders_never_collide(tmp_path):
    made = {runs.new_run_dir(tmp_path) for _ in range(20)}
    assert len(made) == 20 and all(p.is_dir() and p.parent == tmp_path for p in made)


def test_a_split_name_the_split_file_lacks_is_an_error_listing_its_names(tmp_path):
    data = make_demo_dataset(tmp_path / "scans", n_scans=4, height=10, width=10, seed=8)
    with pytest.raises(DataError, match=r"abnormal_split: .* has no split 'abnormal_corr' .*; it has \['abnormal', "):
        runs.train(data, tmp_path / "run", abnormal_split="abnormal_corr", verbose=False, **TINY)


def test_cropped_scans_are_all_tissue_through_training_and_reopening(tmp_path):
    demo = make_demo_dataset(tmp_path / "demo", n_scans=4, height=24, width=24, seed=9)
    cropped = tmp_path / "cropped"
    cropped.mkdir()
    for k in range(4):  # the middle 8×8 pixels of each core: tissue only, as a lab crops scans to the core
        np.save(cropped / f"data{k}.npy", np.load(demo / f"data{k}.npy")[8:16, 8:16])
        assert (np.load(demo / "labels" / f"data{k}.npy")[8:16, 8:16] > 0).all()
    shutil.copy(demo / "wavenumbers.npy", cropped)
    vae, splits, _ = runs.train(cropped, tmp_path / "run", tissue_only=True, verbose=False, **TINY)
    assert vae.tissue_rule_.threshold == -np.inf, vae.tissue_rule_.how
    opened = runs.open_run(tmp_path / "run")
    assert opened.vae.tissue_mask(opened.scans()).all()
    assert len(opened.splits.train) == 64 * len(opened.splits.train.scans)


def test_train_command_takes_auto_epochs_and_records_them_as_asked(tmp_path, monkeypatch):
    from spectra_vae.model import schedule as train_module

    monkeypatch.setattr(train_module, "AUTO_EPOCHS", 2)
    monkeypatch.setattr(train_module, "AUTO_MIN_STEPS", 3)
    data = make_demo_dataset(tmp_path / "scans", n_scans=4, height=10, width=10, seed=10)
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--hidden-dims", "16",
                 "--patience", "0"]) == 0  # no --epochs: auto
    assert json.loads((tmp_path / "run" / "params.json").read_text())["epochs"] == "auto"
    assert len(pd.read_csv(tmp_path / "run" / "history.csv")) == 3  # one batch an epoch: 3 steps need 3 epochs
    assert main(["train", "--resume", str(tmp_path / "run")]) == 0  # as planned: nothing left to do
    assert len(pd.read_csv(tmp_path / "run" / "history.csv")) == 3
    monkeypatch.setattr(train_module, "AUTO_MIN_STEPS", 5)  # the same "auto" on more steps a run: goes on
    assert main(["train", "--resume", str(tmp_path / "run"), "--epochs", "auto"]) == 0
    assert len(pd.read_csv(tmp_path / "run" / "history.csv")) == 5
    assert json.loads((tmp_path / "run" / "params.json").read_text())["epochs"] == "auto"
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "other"), "--epochs", "AUTO",
                 "--hidden-dims", "16", "--patience", "0"]) == 0
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "bad"), "--epochs", "many"]) == 1
    assert not (tmp_path / "bad").exists()


def test_train_resume_extends_a_run_on_its_recorded_splits(tmp_path):
    data = make_demo_dataset(tmp_path / "scans", n_scans=4, height=10, width=10, seed=10)
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--epochs", "1",
                 "--hidden-dims", "16", "--patience", "0"]) == 0
    (data / "extra.npy").write_bytes((data / "data0.npy").read_bytes())  # must not join the run
    with pytest.warns(UserWarning, match="extra.npy"):
        assert main(["train", "--resume", str(tmp_path / "run"), "--epochs", "3"]) == 0
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    assert list(history.epoch) == [1, 2, 3]
    assert json.loads((tmp_path / "run" / "params.json").read_text())["epochs"] == 3
    assert runs.open_run(tmp_path / "run").vae.history.epoch.tolist() == [1, 2, 3]


def test_train_starts_unmixing_from_a_file_of_reference_spectra_and_refuses_bad_ones(tmp_path, capsys):
    from spectra_vae import SpectraVAE
    from spectra_vae.io.demo import component_spectra
    from spectra_vae.model.unmixing import START_FLOOR

    data = make_demo_dataset(tmp_path / "scans", n_scans=4, height=10, width=10, seed=10)
    coarse = np.arange(900.0, 1851.0, 5.0)  # a library's own axis, wider than the scans'
    references = pd.DataFrame(component_spectra(coarse), columns=coarse)
    good = tmp_path / "references.csv"
    references.to_csv(good, index=False)
    args = ["train", "--data", str(data), "--architecture", "unmixing", "--latent-dim", "5", "--hidden-dims", "16",
            "--epochs", "1", "--learning-rate", "1e-12", "--patience", "0"]
    assert main([*args, "--out", str(tmp_path / "run"), "--component-start", str(good)]) == 0
    assert json.loads((tmp_path / "run" / "params.json").read_text())["component_start"] == str(good.resolve())
    vae = SpectraVAE.load(tmp_path / "run" / "model" / "final.pt")
    learned = vae.component_spectra_
    expected = np.stack([np.interp(vae.wavenumbers_, coarse, row) for row in references.to_numpy()])
    expected = np.maximum(expected / expected.max(axis=1, keepdims=True), START_FLOOR)
    assert np.allclose(learned / learned.max(axis=1, keepdims=True), expected, rtol=1e-4, atol=1e-6)

    narrow = tmp_path / "narrow.csv"
    references.loc[:, (coarse > 1000) & (coarse < 1700)].to_csv(narrow, index=False)
    four = tmp_path / "four.csv"
    references.iloc[:4].to_csv(four, index=False)
    for bad, why in ((narrow, "must cover it"), (four, "expected (5, "), (tmp_path / "absent.csv", "absent.csv")):
        assert main([*args, "--out", str(tmp_path / "bad"), "--component-start", str(bad)]) == 1
        err = capsys.readouterr().err
        assert why in err and str(bad.name) in err
        assert not (tmp_path / "bad").exists()  # refused before the run folder was claimed
