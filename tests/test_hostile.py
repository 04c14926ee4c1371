"""Hostile and malformed input, case by case (issue 17): no hangs, no reads outside the given paths,
no silent wrong results, no internal tracebacks. The property-based versions are in test_fuzz.py."""

import json
import os
import re
import socket
import time

import numpy as np
import pytest
import torch

from spectra_vae import DataError, SpectraVAE, load_dataset, make_demo_dataset
from spectra_vae import workflow as pipeline
from spectra_vae.__main__ import main
from spectra_vae.preprocess.pipeline import Preprocessor

WN = np.linspace(950, 1800, 40)


def _scans(path, n=3, channels=40, wavenumbers=True):
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        np.save(path / f"data{i}.npy", rng.random((4, 5, channels)).astype(np.float32))
    if wavenumbers:
        np.save(path / "wavenumbers.npy", np.linspace(950, 1800, channels))
    return path


# -- hangs and reads outside the folder ------------------------------------------------------
@pytest.mark.parametrize("name", ["data9.npy", "data_splits.json", "wavenumbers.npy", "labels/data0.npy",
                                  "labels/label_names.json", "table.csv"])
def test_a_fifo_named_like_a_scan_or_side_file_is_refused_without_blocking(tmp_path, name, time_limit):
    data = _scans(tmp_path / "scans", wavenumbers=name != "wavenumbers.npy")
    (data / "labels").mkdir()
    os.mkfifo(data / name)
    with time_limit(20), pytest.raises(DataError, match=rf"{name.split('/')[-1]}: is a FIFO"):
        if name == "data_splits.json":
            load_dataset(data, split="train")
        elif name == "table.csv":
            load_dataset(data / name)
        else:
            load_dataset(data)


def test_sockets_and_devices_in_the_data_folder_are_refused(tmp_path, time_limit):
    data = _scans(tmp_path / "scans")
    os.symlink("/dev/zero", data / "data8.npy")
    with time_limit(20), pytest.raises(DataError, match=r"data8\.npy: is a character device"):
        load_dataset(data)
    os.unlink(data / "data8.npy")
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(data / "data9.npy"))
        with time_limit(20), pytest.raises(DataError, match=r"data9\.npy: is a socket"):
            load_dataset(data)
    finally:
        sock.close()


def test_hdf5_external_storage_and_virtual_datasets_are_refused(tmp_path):
    h5py = pytest.importorskip("h5py")
    outside = tmp_path / "elsewhere.bin"
    outside.write_bytes(np.arange(5 * 6 * 40, dtype=np.float32).tobytes())
    with h5py.File(tmp_path / "ext.h5", "w") as f:
        f.create_dataset("cube", shape=(5, 6, 40), dtype="f4", external=[(str(outside), 0, outside.stat().st_size)])
        f["wavenumbers"] = WN
    with pytest.raises(DataError, match=r"ext\.h5: dataset 'cube' is external storage"):
        load_dataset(tmp_path / "ext.h5")
    with h5py.File(tmp_path / "src.h5", "w") as f:
        f["cube"] = np.ones((5, 6, 40), np.float32)
    with h5py.File(tmp_path / "virt.h5", "w") as f:
        layout = h5py.VirtualLayout(shape=(5, 6, 40), dtype="f4")
        layout[:] = h5py.VirtualSource(str(tmp_path / "src.h5"), "cube", shape=(5, 6, 40))
        f.create_virtual_dataset("cube", layout)
    with pytest.raises(DataError, match=r"virt\.h5: dataset 'cube' is a virtual dataset"):
        load_dataset(tmp_path / "virt.h5")


def test_hdf5_reader_chooses_from_shapes_and_reads_only_the_cube_and_its_axis(tmp_path, monkeypatch):
    h5py = pytest.importorskip("h5py")
    cube = np.random.default_rng(0).random((5, 6, 40)).astype(np.float32)
    with h5py.File(tmp_path / "s.h5", "w") as f:
        f["data/cube"] = cube
        f["data/wavenumbers"] = WN
        f.create_dataset("decoy", shape=(10_000_000,), dtype="f8", compression="gzip")  # 1-D: never a scan
        f["notes"] = np.ones((2, 3))  # smaller than the cube
    read = []
    real = h5py.Dataset.__getitem__

    def recording(self, key):
        read.append(self.name)
        return real(self, key)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", recording)
    ds = load_dataset(tmp_path / "s.h5")
    assert sorted(read) == ["/data/cube", "/data/wavenumbers"]
    assert np.allclose(ds.to_array(), cube.reshape(-1, 40)) and np.allclose(ds.wavenumbers, WN)


def test_an_array_larger_than_half_the_memory_is_refused_before_it_is_read(tmp_path):
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "bomb.h5", "w") as f:  # a few kB on disk, terabytes when read
        f.create_dataset("cube", shape=(100_000, 100_000, 442), dtype="f4", chunks=(1, 100, 442), compression="gzip")
    assert (tmp_path / "bomb.h5").stat().st_size < 100_000
    with pytest.raises(DataError, match=r"bomb\.h5: array 'cube' of shape \(100000, 100000, 442\) needs .* GiB"):
        load_dataset(tmp_path / "bomb.h5")


# -- memory and the finite-check cache -------------------------------------------------------
def test_a_fortran_ordered_scan_is_refused_with_a_hint_and_convert_rewrites_it(tmp_path):
    cube = np.random.default_rng(1).random((6, 7, 40)).astype(np.float32)
    np.save(tmp_path / "f.npy", np.asfortranarray(cube))
    with pytest.raises(DataError, match=r"f\.npy: .*Fortran .*python -m spectra_vae convert"):
        load_dataset(tmp_path / "f.npy")
    assert main(["convert", str(tmp_path / "f.npy"), str(tmp_path / "out")]) == 0
    assert np.load(tmp_path / "out" / "f.npy", mmap_mode="r").flags.c_contiguous
    np.testing.assert_array_equal(load_dataset(tmp_path / "out" / "f.npy").to_array(), cube.reshape(-1, 40))


def test_a_scan_rewritten_in_place_with_its_mtime_restored_is_checked_again(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, np.ones((4, 5, 8), np.float32))
    assert len(load_dataset(path)) == 20  # the record now says: every pixel finite
    before = os.stat(path)
    offset = os.path.getsize(path) - 4 * 8 * 20  # the first pixel's spectrum
    with open(path, "r+b") as f:  # as rsync --inplace does
        f.seek(offset)
        f.write(np.full(8, np.nan, np.float32).tobytes())
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # ... and -t restores the time
    while os.stat(path).st_ctime_ns == before.st_ctime_ns:  # the clock must move on for ctime to differ
        time.sleep(0.01)
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns, before.st_ino)
    with pytest.warns(UserWarning, match="excluded 1 of 20"):
        ds = load_dataset(path)
    assert len(ds) == 19 and np.isfinite(ds.to_array()).all()


def test_recheck_reads_every_pixel_again_by_argument_or_environment(tmp_path, monkeypatch):
    from spectra_vae.io import finite as data_module

    np.save(tmp_path / "a.npy", np.ones((4, 5, 8), np.float32))
    load_dataset(tmp_path / "a.npy")
    passes = []
    real = data_module.finite_pixels
    monkeypatch.setattr(data_module, "finite_pixels", lambda pixels: passes.append(1) or real(pixels))
    load_dataset(tmp_path / "a.npy")
    assert passes == []  # remembered
    load_dataset(tmp_path / "a.npy", recheck=True)
    assert passes == [1]
    monkeypatch.setenv("SPECTRA_VAE_RECHECK", "1")
    load_dataset(tmp_path / "a.npy")
    assert passes == [1, 1]


# -- splits ----------------------------------------------------------------------------------
def _with_splits(path, splits):
    data = _scans(path, n=4)
    (data / "data_splits.json").write_text(json.dumps(splits))
    return data


def test_one_scan_in_two_splits_of_a_run_is_refused(tmp_path):
    data = _with_splits(tmp_path / "s", {"normal_train": ["data0.npy", "data1.npy"], "normal_val": ["data2.npy"],
                                         "normal_test": ["data0"]})
    with pytest.raises(DataError, match=r"data0\.npy is in both the training split 'normal_train' and the test"):
        pipeline.make_splits(data)  # listed as data0 once and as data0.npy once: the same file
    with pytest.raises(DataError, match=r"data0\.npy is listed in both 'normal_train' and 'normal_test'"):
        load_dataset(data, split=["normal_train", "normal_test"])


def test_misspelt_split_names_are_errors_listing_the_names_the_file_has(tmp_path):
    data = _with_splits(tmp_path / "s", {"normal_train": ["data0.npy", "data1.npy"], "normal_val": ["data2.npy"],
                                         "normal_test": ["data3.npy"]})
    with pytest.raises(DataError, match=r"parameter train_split: .* no split 'normal_trian' \(did you mean "
                                        r"'normal_train'\?\); it has \['normal_test', 'normal_train', 'normal_val'\]"):
        pipeline.make_splits(data, train_split="normal_trian")
    with pytest.raises(DataError, match=r"parameter val_split: .*no split 'normal_vla'.*val_split='' trains without"):
        pipeline.make_splits(data, val_split="normal_vla")
    splits = pipeline.make_splits(data, val_split="")
    assert splits.validation is None and "no validation" in splits.how
    assert splits.train.scans == ["data0.npy", "data1.npy"] and splits.test.scans == ["data3.npy"]


def test_a_folder_without_a_split_file_still_gets_a_seeded_random_split(tmp_path):
    splits = pipeline.make_splits(_scans(tmp_path / "s", n=4))
    assert "random 80/10/10 split by scan" in splits.how
    assert sorted(splits.train.scans + splits.validation.scans + splits.test.scans) == [f"data{i}.npy"
                                                                                         for i in range(4)]


@pytest.mark.parametrize("entries, found", [([1, 2], "[1, 2]"), ([None], "[None]"), ([""], "['']"),
                                             ([["data0.npy"]], "[['data0.npy']]")])
def test_split_entries_that_are_not_file_names_are_refused(tmp_path, entries, found):
    data = _with_splits(tmp_path / "s", {"train": entries})
    with pytest.raises(DataError, match=rf"split 'train' lists entries that are not file names: {found!s}"
                       .replace("[", r"\[").replace("]", r"\]")):
        load_dataset(data, split="train")


@pytest.mark.parametrize("content, why", [("[1, 2]", "got a list"), ('{"train": "data0.npy"}', "got a string"),
                                           ("{", "not valid JSON"), ('{"a": ["data0.npy", "data0.npy"]}',
                                                                     "more than once")])
def test_malformed_split_files_are_refused_naming_the_file(tmp_path, content, why):
    data = _scans(tmp_path / "s")
    (data / "data_splits.json").write_text(content)
    with pytest.raises(DataError, match=rf"data_splits\.json: .*{why}"):
        load_dataset(data, split="a")


def test_train_command_with_a_misspelt_split_says_so_and_writes_nothing(tmp_path, demo_dir, capsys):
    rc = main(["train", "--data", str(demo_dir), "--out", str(tmp_path / "run"), "--epochs", "1",
               "--train-split", "normal_trian"])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("error: parameter train_split:") and "normal_train" in err
    assert not (tmp_path / "run").exists()


# -- units, labels, tables -------------------------------------------------------------------
@pytest.mark.parametrize("unit, axis, expected", [("Micrometers", 1e4 / WN[::-1], WN), ("nm", 1e7 / WN[::-1], WN),
                                                  ("Wavenumber", WN, WN), ("cm-1", WN, WN)])
def test_envi_axes_in_micrometres_and_nanometres_are_converted_to_wavenumbers(tmp_path, unit, axis, expected):
    envi = pytest.importorskip("spectral.io.envi")
    cube = np.random.default_rng(0).random((5, 6, 40)).astype(np.float32)
    envi.save_image(str(tmp_path / "s.hdr"), cube, interleave="bsq",
                    metadata={"wavelength": [f"{w:.10g}" for w in axis], "wavelength units": unit})
    ds = load_dataset(tmp_path / "s.hdr")
    assert np.allclose(ds.wavenumbers, expected, rtol=1e-6)
    # a µm or nm axis runs the other way: the spectra are flipped with it
    flipped = unit in ("Micrometers", "nm")
    assert np.allclose(ds.to_array(), (cube[..., ::-1] if flipped else cube).reshape(-1, 40))


@pytest.mark.parametrize("unit, axis, why", [("GHz", WN, "unit 'GHz' is not one of"),
                                             (None, 1e4 / WN[::-1], "looks like wavelengths in µm")])
def test_envi_axes_in_unknown_or_unstated_units_that_look_wrong_are_refused(tmp_path, unit, axis, why):
    envi = pytest.importorskip("spectral.io.envi")
    meta = {"wavelength": [f"{w:.10g}" for w in axis]} | ({"wavelength units": unit} if unit else {})
    envi.save_image(str(tmp_path / "s.hdr"), np.ones((3, 3, 40), np.float32), metadata=meta)
    with pytest.raises(DataError, match=rf"s\.hdr \(wavelength\): .*{why}"):
        load_dataset(tmp_path / "s.hdr")


@pytest.mark.parametrize("content, why", [("{not json", "not valid JSON"), ('{"0": "background"}', "got an object"),
                                           ('["a", 3]', "must be strings"), ('["a", "a"]', "must be distinct")])
def test_malformed_label_names_are_a_data_error_and_a_cli_error_line(tmp_path, content, why, capsys):
    data = make_demo_dataset(tmp_path / "scans", n_scans=4, height=6, width=6, seed=0)
    (data / "labels" / "label_names.json").write_text(content)
    with pytest.raises(DataError, match=rf"label_names\.json: .*{why}"):
        load_dataset(data)
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--epochs", "1"]) == 1
    assert capsys.readouterr().err.startswith("error: ") and not (tmp_path / "run").exists()


def test_label_maps_must_be_whole_numbers_shaped_like_their_scan(tmp_path):
    data = _scans(tmp_path / "s", n=1)  # 4×5 pixels
    (data / "labels").mkdir()
    np.save(data / "labels" / "data0.npy", np.zeros((5, 4), np.int64))  # transposed: same count, wrong places
    with pytest.raises(DataError, match=r"label map has shape \(5, 4\); expected \(4, 5\)"):
        load_dataset(data)
    np.save(data / "labels" / "data0.npy", np.full((4, 5), 0.5))
    with pytest.raises(DataError, match="not whole numbers"):
        load_dataset(data)
    np.save(data / "labels" / "data0.npy", np.full((4, 5), 7))
    (data / "labels" / "label_names.json").write_text('["background", "tissue"]')
    with pytest.raises(DataError, match=r"holds label 7 but .*names only 2 classes"):
        load_dataset(data)


@pytest.mark.parametrize("text, why", [("", "not a readable table"), ("1000,1002,1004\n", "no spectra"),
                                        ("1000,1000,1004\n0.1,0.2,0.3\n", "not strictly increasing"),
                                        ("x\n1\n", "not a readable table"),
                                        (",1002\n0.1,0.2\n", r"these are not numbers: \[''\]")])
def test_empty_header_only_and_repeated_header_tables_are_refused(tmp_path, text, why):
    (tmp_path / "t.csv").write_text(text)
    with pytest.raises(DataError, match=rf"t\.csv.*({why})"):
        load_dataset(tmp_path / "t.csv")


# -- checkpoints -----------------------------------------------------------------------------
@pytest.mark.parametrize("drop", ["history", "config", "wavenumbers", "training.optimizer", "training.rng",
                                  "training.epoch"])
def test_a_checkpoint_missing_its_history_or_training_state_is_a_data_error(fitted, tmp_path, drop):
    vae, *_ = fitted
    payload = torch.load(vae.save(tmp_path / "m.pt"), weights_only=True)
    outer, _, inner = drop.partition(".")
    if inner:
        del payload[outer][inner]
    else:
        del payload[outer]
    torch.save(payload, tmp_path / "broken.pt")
    with pytest.raises(DataError, match=rf"broken\.pt: checkpoint is incomplete: .*{inner or outer}"):
        SpectraVAE.load(tmp_path / "broken.pt")


# -- parameters ------------------------------------------------------------------------------
@pytest.mark.parametrize("params, name", [({"patience": -2}, "patience"), ({"seed": -1}, "seed"),
                                          ({"latent_dim": True}, "latent_dim"), ({"beta": float("nan")}, "beta"),
                                          ({"learning_rate": float("inf")}, "learning_rate"),
                                          ({"hidden_dims": 8}, "hidden_dims"), ({"device": "gpu"}, "device"),
                                          ({"verbose": "no"}, "verbose"), ({"preprocess": 5}, "preprocess")])
def test_estimator_parameters_are_checked_for_type_sign_and_range(params, name):
    with pytest.raises(DataError, match=rf"SpectraVAE parameter {name}="):
        SpectraVAE(**params).fit(np.ones((10, 8), np.float32))


@pytest.mark.parametrize("spec, why", [("savgol(5,2,3)", "deriv must be from 0 to polyorder"),
                                       ("savgol(5.5,2,0)", "whole numbers"), ("savgol(4,2,0)", "odd"),
                                       ("resample(950,1800,0.000001)", "more than 100000"),
                                       ("resample(nan,1800,2)", "finite"), ("baseline(2,0)", "iterations"),
                                       ("baseline(-1,10)", "degree"), ("cut(950,inf)", "finite")])
def test_preprocessing_arguments_are_checked_for_sign_and_range(spec, why):
    with pytest.raises(DataError, match=rf"preprocess: .*{why}"):
        Preprocessor(spec)


@pytest.mark.parametrize("spec", ["cut(950,1800)", "resample(1000,1700,4)", "amide1"])
def test_steps_in_wavenumbers_are_refused_on_data_without_a_wavenumber_axis(spec):
    cube = np.random.default_rng(0).random((30, 442)).astype(np.float32)
    with pytest.raises(DataError, match=r"needs the data's wavenumbers"):
        SpectraVAE(hidden_dims=(8,), epochs=1, preprocess=spec, verbose=False).fit(cube)
    with_axis = load_dataset(cube, wavenumbers=np.linspace(950, 1800, 442))
    SpectraVAE(hidden_dims=(8,), epochs=1, preprocess=spec, verbose=False).fit(with_axis)


def test_notebook_parameters_are_checked_against_the_notebooks_before_any_runs(tmp_path, demo_dir, monkeypatch,
                                                                               capsys):
    import papermill

    ran = []
    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **k: ran.append(k["parameters"]))
    cases = [(["-p", "laten_dim", "3"], r"parameter laten_dim: no notebook of the pipeline declares it "
                                        r"\(did you mean 'latent_dim'\?\)"),
             (["-p", "epochs", "0"], "parameter epochs: expected 'auto' or a whole number ≥ 1, got '0'"),
             (["-p", "epochs", "2.5"], "parameter epochs: expected 'auto' or a whole number"),
             (["-p", "epochs", "many"], "parameter epochs: expected 'auto' or a whole number"),
             (["-p", "tissue_only", "yes"], "parameter tissue_only: expected True or False"),
             (["-p", "false_positive_rate", "1"], "parameter false_positive_rate: must be < 0.5"),
             (["-p", "train_split", "normal_trian"], "parameter train_split: .* no split 'normal_trian'"),
             (["-p", "data_dir", "/x"], "parameter data_dir: the pipeline sets it from data"),
             (["-p", "epochs", "2", "-p", "epochs", "3"], "parameter epochs: given more than once")]
    for args, message in cases:
        rc = main(["pipeline", "--data", str(demo_dir), "--out", str(tmp_path / "r"), "--no-html", *args])
        err = capsys.readouterr().err
        assert rc == 1 and err.startswith("error: "), (args, err)
        assert re.search(message, err), (args, err)
    assert ran == [] and not (tmp_path / "r").exists()
    # hidden_dims 8 is one layer of 8: text for the notebook, as its parameters cell declares
    assert main(["pipeline", "--data", str(demo_dir), "--out", str(tmp_path / "r"), "--no-html",
                 "-p", "hidden_dims", "8", "-p", "epochs", "2", "-p", "beta", "1"]) == 0
    assert all(p.get("hidden_dims", "8") == "8" and p.get("epochs", 2) == 2 for p in ran)
    assert isinstance(ran[1]["beta"], float) and pipeline.check_parameter("hidden_dims", "8") == (8,)


def test_output_paths_are_checked_before_anything_is_written(tmp_path, demo_dir, monkeypatch, capsys):
    (tmp_path / "file").write_text("keep")
    for out in (tmp_path / "file", tmp_path / "file" / "run"):
        assert main(["train", "--data", str(demo_dir), "--out", str(out), "--epochs", "1"]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"error: out {out}: ") and "Traceback" not in err
    assert (tmp_path / "file").read_text() == "keep"
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(tmp_path) else real_access(p, mode))
    assert main(["train", "--data", str(demo_dir), "--out", str(tmp_path / "run"), "--epochs", "1"]) == 1
    assert f"{tmp_path} is not writable" in capsys.readouterr().err and not (tmp_path / "run").exists()



def test_an_output_folder_is_checked_for_broken_links_and_not_upset_by_one_made_meanwhile(tmp_path, monkeypatch):
    """Under torchrun every process checks --out while the first one makes it. A folder that
    appeared between two looks was reported as a broken symbolic link (2 of 95 two-node runs);
    a real broken link still is one."""
    from pathlib import Path

    from spectra_vae.core.files import check_output_dir

    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    with pytest.raises(DataError, match=r"link is a broken symbolic link"):
        check_output_dir(tmp_path / "link" / "run", "out")
    target, real_exists = tmp_path / "run", Path.exists

    def exists(self, *args, **kwargs):
        answer = real_exists(self, *args, **kwargs)
        if self == target and not answer:
            target.mkdir()  # the other process, just after this one looked
        return answer

    monkeypatch.setattr(Path, "exists", exists)
    assert check_output_dir(target, "out") == target

def test_an_os_error_while_writing_is_an_error_line_not_a_traceback(tmp_path, demo_dir, monkeypatch, capsys):
    import os

    real_replace = os.replace

    def refused(src, dst, *a, **k):  # the run's record is written atomically: the rename is refused
        if str(dst).endswith("splits.json"):
            raise PermissionError(13, "Permission denied", str(dst))
        return real_replace(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", refused)
    rc = main(["train", "--data", str(demo_dir), "--out", str(tmp_path / "run"), "--epochs", "1"])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("error: ") and "splits.json: Permission denied" in err


def test_train_with_zero_epochs_refuses_and_leaves_nothing_behind(tmp_path, demo_dir, capsys):
    assert main(["train", "--data", str(demo_dir), "--out", str(tmp_path / "run"), "--epochs", "0"]) == 1
    assert "epochs" in capsys.readouterr().err and not (tmp_path / "run").exists()
    assert main(["train", "--data", str(demo_dir), "--out", str(tmp_path / "run"), "--epochs", "1",
                 "--preprocess", "cut(3000,4000)"]) == 1  # a cut outside the data, found before writing
    assert "keeps 0 channels" in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_float64_values_beyond_float32_range_are_excluded_like_inf(tmp_path):
    cube = np.ones((2, 3, 4))
    cube[1, 2, 0] = 1e300  # finite in the file, inf once read as float32 for the model
    np.save(tmp_path / "big.npy", cube)
    with pytest.warns(UserWarning, match=r"excluded 1 of 6 pixels .*beyond float32's range"):
        ds = load_dataset(tmp_path / "big.npy")
    assert len(ds) == 5 and np.isfinite(ds.to_array()).all()


def test_convert_and_demo_data_check_their_output_folder_first(tmp_path, capsys):
    (tmp_path / "file").write_text("keep")
    np.save(tmp_path / "s.npy", np.ones((2, 2, 4), np.float32))
    assert main(["convert", str(tmp_path / "s.npy"), str(tmp_path / "file")]) == 1
    assert capsys.readouterr().err.startswith(f"error: destination {tmp_path / 'file'}: exists and is not a folder")
    assert main(["demo-data", "--out", str(tmp_path / "file" / "demo")]) == 1
    assert "is not a folder, so nothing can be written below it" in capsys.readouterr().err
    assert main(["demo-data", "--out", str(tmp_path / "d"), "--height", "2"]) == 1
    assert capsys.readouterr().err.startswith("error: need whole numbers") and not (tmp_path / "d").exists()
    assert (tmp_path / "file").read_text() == "keep"
