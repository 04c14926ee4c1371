"""Run records, checkpoints and prepared data are input too (issue 33, part 2): each is checked section by
section, and what is wrong is a `DataError` naming the file and the section, never a traceback, a read
outside the data folder or a silent wrong result."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from spectra_vae import DataError, SpectraVAE, load_dataset, make_demo_dataset
from spectra_vae.__main__ import main
from spectra_vae.workflow import runs

TINY = {"epochs": 1, "hidden_dims": (8,), "batch_size": 64, "verbose": False}


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A trained run (model, record) to copy and damage."""
    root = tmp_path_factory.mktemp("records")
    data = make_demo_dataset(root / "scans", n_scans=4, height=8, width=8, seed=9)
    runs.train(data, root / "run", **TINY)
    return data, root / "run"


def _copy(run_folder, tmp_path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(run_folder[1], run)
    return run


def _edit(path: Path, change) -> None:
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


DAMAGES = {
    "params not JSON": ("params.json", None, "params.json: not valid JSON"),
    "params a list": ("params.json", lambda p: [p], "params.json: expected an object of parameters"),
    "params data_dir a number": ("params.json", lambda p: {**p, "data_dir": 3}, "section 'data_dir' must be text"),
    "params labels text": ("params.json", lambda p: {**p, "normal_labels": "stroma"}, "section 'normal_labels'"),
    "params latent_dim text": ("params.json", lambda p: {**p, "latent_dim": "two"}, "section 'latent_dim'"),
    "splits not JSON": ("splits.json", None, "splits.json: not valid JSON"),
    "splits a number": ("splits.json", lambda r: 7, "splits.json: expected an object"),
    "splits without data_dir": ("splits.json", lambda r: {k: v for k, v in r.items() if k != "data_dir"},
                                "section 'data_dir' is missing"),
    "splits train text": ("splits.json", lambda r: {**r, "train": "data0.npy"}, "section 'train' must be a list"),
    "splits absolute path": ("splits.json", lambda r: {**r, "test": ["/etc/passwd"]},
                             "section 'test' lists '/etc/passwd', which is not the file name"),
    "splits parent": ("splits.json", lambda r: {**r, "train": ["../data0.npy"]}, "section 'train' lists '../data0"),
    "splits fingerprint": ("splits.json", lambda r: {**r, "scans": {"data0.npy": [1]}}, "section 'scans'"),
    "splits tissue rule": ("splits.json", lambda r: {**r, "tissue_rule": [1, 2]}, "section 'tissue_rule'"),
    "splits by": ("splits.json", lambda r: {**r, "by": "row"}, "section 'by'"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_record_is_refused_naming_file_and_section_by_every_reader(tmp_path, run_folder, capsys, damage):
    pytest.importorskip("h5py")
    name, change, message = DAMAGES[damage]
    run = _copy(run_folder, tmp_path)
    if change is None:
        (run / name).write_text('{"data_dir": ')
    else:
        _edit(run / name, change)
    with pytest.raises(DataError, match=message):
        runs.open_run(run)
    for argv in (["train", "--resume", str(run)], ["export", str(run), "--out", str(tmp_path / "export")]):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message.split(": ")[-1][:20] in err and "Traceback" not in err
    assert not (tmp_path / "export").exists()
    # train --out into it: the folder holds a run (damaged), refused without a traceback; --overwrite replaces it
    data = run_folder[0]
    argv = ["train", "--data", str(data), "--out", str(run), "--epochs", "1", "--hidden-dims", "8"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "already holds a run (its record is damaged" in err and "Traceback" not in err
    assert main([*argv, "--overwrite"]) == 0
    assert runs.open_run(run).record["train"]


def test_a_recorded_scan_that_is_a_fifo_is_refused_without_blocking(tmp_path, run_folder, time_limit):
    data = tmp_path / "scans"
    shutil.copytree(run_folder[0], data)
    run = _copy(run_folder, tmp_path)
    _edit(run / "splits.json", lambda r: {**r, "data_dir": str(data)})
    test_scan = json.loads((run / "splits.json").read_text())["test"][0]
    (data / test_scan).unlink()
    os.mkfifo(data / test_scan)
    with time_limit(30), pytest.raises(DataError, match=f"{test_scan}: is a FIFO"):
        runs.open_run(run)


# -- checkpoints ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def payload(run_folder):
    return torch.load(run_folder[1] / "model" / "final.pt", weights_only=True)


def _tamper(payload, key, value):
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in payload.items()}
    if callable(value):
        value(out)
    else:
        out[key] = value
    return out


def _nan_weight(p):
    name = next(iter(p["state_dict"]))
    p["state_dict"][name] = torch.full_like(p["state_dict"][name], float("nan"))


TAMPERED = {
    "tissue_rule": ([0.1, 0.2], "section 'tissue_rule' is not a tissue rule"),
    "preprocessing": (3, "section 'preprocessing' is not a fitted preprocessing pipeline"),
    "normaliser": (lambda p: p.update(normaliser={**p["normaliser"], "offset": [0.0] * 5, "scale": [1.0] * 5}),
                   "section 'normaliser' has offset \\(5,\\)"),
    "zero scale": (lambda p: p.update(normaliser={**p["normaliser"], "scale": [0.0] * len(p["normaliser"]["scale"])}),
                   "section 'normaliser' holds .* a scale that is not a finite number > 0"),
    "weights": (_nan_weight, "section 'state_dict' holds non-finite weights"),
    "model_config": (lambda p: p.update(model_config={**p["model_config"], "latent_dim": "two"}),
                     "section 'model_config'"),
    "architecture": (lambda p: p.update(model_config={**p["model_config"], "architecture": "nosuch"}),
                     "section 'model_config' names architecture 'nosuch'"),
    "config": (lambda p: p.update(config={**p["config"], "latent_dim": 7}), "section 'config' says latent_dim=7"),
    "wavenumbers": (torch.tensor([[1.0, 2.0]]), "section 'wavenumbers' is not a finite axis"),
}


@pytest.mark.parametrize("what", sorted(TAMPERED))
def test_tampered_checkpoint_sections_are_refused_naming_file_and_section(tmp_path, payload, what):
    value, message = TAMPERED[what]
    torch.save(_tamper(payload, what, value), tmp_path / "m.pt")
    with pytest.raises(DataError, match=r"m\.pt: checkpoint " + message):
        SpectraVAE.load(tmp_path / "m.pt")


def test_an_untampered_checkpoint_still_loads_and_scores(tmp_path, payload, run_folder):
    torch.save(payload, tmp_path / "m.pt")
    vae = SpectraVAE.load(tmp_path / "m.pt")
    assert np.isfinite(vae.transform(load_dataset(run_folder[0]))).all()


# -- prepared views, split names --------------------------------------------------------------------
def test_data_prepared_by_another_model_are_refused_and_the_models_own_are_used(run_folder):
    data = load_dataset(run_folder[0], split="normal_train")
    with_snv = SpectraVAE(preprocess="snv", tissue_only=True, **TINY).fit(data)
    plain = SpectraVAE.load(run_folder[1] / "model" / "final.pt")
    prepared = with_snv.prepare(data)
    assert prepared.preprocessor is not None
    with pytest.raises(DataError, match=r"prepared by another preprocessing \('snv'\), not this model's \('none'\)"):
        plain.transform(prepared)
    np.testing.assert_array_equal(with_snv.transform(prepared), with_snv.transform(data))
    np.testing.assert_array_equal(plain.transform(prepared.raw()), plain.transform(data))


@pytest.mark.parametrize("role", ["--train-split", "--val-split", "--test-split"])
def test_an_abnormal_split_that_is_also_a_training_split_is_refused_before_anything_is_written(
        tmp_path, run_folder, capsys, role):
    name = {"--train-split": "normal_train", "--val-split": "normal_val", "--test-split": "normal_test"}[role]
    out = tmp_path / "run"
    assert main(["train", "--data", str(run_folder[0]), "--out", str(out), "--epochs", "1",
                 "--abnormal-split", name]) == 1
    assert f"parameter abnormal_split: '{name}' is already the {role[2:].replace('-', '_')}" in \
        capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(DataError, match="must be different splits"):
        runs.train(run_folder[0], out, abnormal_split=name, **TINY)
