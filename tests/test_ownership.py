"""Writing where the user's data live (issue 33, part 1): a command writes only into a folder it made or
that is recognisably its own (a marker of its kind), never into a folder of scans, never over a file it
did not write, and a second writer is refused at once."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

from spectra_vae import DataError, load_dataset, make_demo_dataset
from spectra_vae.__main__ import main
from spectra_vae.core import claims
from spectra_vae.io.convert import convert
from spectra_vae.workflow import runs

TINY = ["--epochs", "1", "--hidden-dims", "8", "--batch-size", "64"]
ROOT = Path(__file__).resolve().parent.parent


def _users_scans(folder: Path, n: int = 3) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        np.save(folder / f"data{i}.npy", (rng.random((4, 5, 12)) + 0.1).astype(np.float64))
    (folder / "data_splits.json").write_text(json.dumps({"mine": ["data0.npy"], "held": ["data1.npy"]}))
    return folder


def _contents(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _small_demo(folder: Path, seed: int = 3) -> Path:
    return make_demo_dataset(folder, n_scans=4, height=8, width=8, seed=seed)


# -- the claim itself -----------------------------------------------------------------------------
def test_a_claim_is_exclusive_of_its_kind_and_a_damaged_marker_is_refused(tmp_path):
    first = claims.claim_folder(tmp_path / "out", "export")
    assert claims.folder_kind(tmp_path / "out") == "export" and first.marked and first.made_folder
    os.environ.pop(claims.CLAIMS_ENV, None)  # as another process sees it: not inherited
    with pytest.raises(claims.FolderInUse, match="another spectra_vae process is writing"):
        claims.claim_folder(tmp_path / "out", "export")
    first.release()
    with pytest.raises(DataError, match="holds an export made by spectra_vae .* not a training run"):
        claims.claim_folder(tmp_path / "out", "run")
    again = claims.claim_folder(tmp_path / "out", "export")  # its own kind, free again
    assert not again.marked
    again.release()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / claims.MARKER).write_text("[1, 2]")
    with pytest.raises(DataError, match=r"\.spectra_vae\.json: not a marker spectra_vae wrote"):
        claims.claim_folder(tmp_path / "bad", "run")
    (tmp_path / "fifo").mkdir()
    os.mkfifo(tmp_path / "fifo" / claims.MARKER)
    with pytest.raises(DataError, match="is not a regular file"):
        claims.claim_folder(tmp_path / "fifo", "run")


def test_a_claim_that_wrote_nothing_leaves_no_folder_behind(tmp_path):
    claim = claims.claim_folder(tmp_path / "a" / "b", "run")
    claim.release(discard=True)
    assert not (tmp_path / "a" / "b").exists()
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "notes.txt").write_text("mine")
    claim = claims.claim_folder(tmp_path / "kept", "run")
    claim.release(discard=True)
    assert _contents(tmp_path / "kept") == {"notes.txt": b"mine"}


def test_an_unmarked_folder_is_claimed_only_without_scans_or_files_the_command_would_write(tmp_path):
    data = _users_scans(tmp_path / "scans")
    with pytest.raises(DataError, match=r"holds scans or their side files \(data0\.npy, data1\.npy"):
        claims.claim_folder(data, "export", holds_data=lambda p: sorted(x.name for x in p.iterdir()))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "maps.h5").write_bytes(b"someone's")
    with pytest.raises(DataError, match="already holds maps.h5, which spectra_vae did not write"):
        claims.claim_folder(tmp_path / "other", "export", writes=("maps.h5",))
    assert (tmp_path / "other" / "maps.h5").read_bytes() == b"someone's"
    assert not (data / claims.MARKER).exists() and not (tmp_path / "other" / claims.MARKER).exists()


# -- demo-data --------------------------------------------------------------------------------------
def test_demo_data_never_overwrites_a_folder_of_the_users_scans(tmp_path, capsys):
    data = _users_scans(tmp_path / "scans")
    before = _contents(data)
    assert main(["demo-data", "--out", str(data), "--n-scans", "1", "--height", "4", "--width", "4"]) == 1
    assert "error: demo data folder" in capsys.readouterr().err
    assert _contents(data) == before


def test_demo_data_regenerates_its_own_folder_including_one_made_before_markers(tmp_path):
    out = _small_demo(tmp_path / "demo")
    assert claims.folder_kind(out) == "demo"
    make_demo_dataset(out, n_scans=2, height=8, width=8, seed=3)  # smaller: the old data2, data3 go
    assert sorted(p.name for p in out.glob("data*.npy")) == ["data0.npy", "data1.npy"]
    assert not (out / "labels" / "data3.npy").exists() and len(load_dataset(out).scans) == 2
    (out / claims.MARKER).unlink()  # a demo folder written before markers: its demo.json says so
    assert main(["demo-data", "--out", str(out), "--n-scans", "2", "--height", "4", "--width", "4"]) == 0
    assert claims.folder_kind(out) == "demo"
    (out / claims.MARKER).unlink()
    meta = json.loads((out / "demo.json").read_text())
    (out / "demo.json").write_text(json.dumps({**meta, "generator": "someone else"}))
    with pytest.raises(DataError, match="that spectra_vae did not write"):
        make_demo_dataset(out, n_scans=1, height=4, width=4)


# -- train --out ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["users", "demo"])
def test_train_out_equal_to_the_data_folder_is_refused(tmp_path, capsys, kind):
    data = _users_scans(tmp_path / "scans") if kind == "users" else _small_demo(tmp_path / "scans")
    before = _contents(data)
    split = ["--train-split", "mine", "--val-split", "", "--test-split", "held", "--abnormal-split", ""] \
        if kind == "users" else []
    rc = main(["train", "--data", str(data), "--out", str(data), *TINY, *split])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("error: ") and "Traceback" not in err
    assert ("holds scans" if kind == "users" else "holds demo data") in err
    assert _contents(data) == before


def test_a_second_writer_of_a_run_folder_is_refused_at_once(tmp_path):
    data = _small_demo(tmp_path / "scans")
    held = runs.claim_run_folder(tmp_path / "run")  # this process writes there now
    try:
        started = time.monotonic()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop(claims.CLAIMS_ENV, None)
        result = subprocess.run([sys.executable, "-m", "spectra_vae", "train", "--data", str(data), "--out",
                                 str(tmp_path / "run"), *TINY], capture_output=True, text=True, env=env, timeout=300)
        assert result.returncode == 1, result.stderr
        assert "another spectra_vae process is writing into this run folder now" in result.stderr
        assert "Traceback" not in result.stderr and time.monotonic() - started < 120
        assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [claims.MARKER]
    finally:
        held.release()


# -- export --out ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("owned")
    data = _small_demo(root / "scans", seed=5)
    runs.train(data, root / "run", epochs=1, hidden_dims=(8,), batch_size=64, verbose=False)
    return data, root / "run"


def test_export_writes_only_into_its_own_folder(tmp_path, trained_run, capsys):
    pytest.importorskip("h5py")
    data, run = trained_run
    before = _contents(data)
    for target in (data, run):
        assert main(["export", str(run), "--out", str(target)]) == 1
        assert capsys.readouterr().err.startswith("error: --out")
    assert _contents(data) == before and not (run / "maps.h5").exists()
    (tmp_path / "users").mkdir()
    (tmp_path / "users" / "pixels.csv").write_text("theirs")
    assert main(["export", str(run), "--out", str(tmp_path / "users")]) == 1
    assert (tmp_path / "users" / "pixels.csv").read_text() == "theirs"
    assert main(["export", str(run), "--out", str(tmp_path / "export")]) == 0
    assert claims.folder_kind(tmp_path / "export") == "export"
    assert main(["export", str(run), "--out", str(tmp_path / "export")]) == 0  # again: its own folder


# -- convert --------------------------------------------------------------------------------------
def test_convert_never_writes_beside_its_source_or_into_another_folder_of_scans(tmp_path):
    h5py = pytest.importorskip("h5py")
    data = _users_scans(tmp_path / "d")
    before = _contents(data)
    for target in (data, data / "data0.npy"):
        with pytest.raises(DataError):
            convert(target, data)
    with h5py.File(data / "s.h5", "w") as f:
        f["cube"] = np.ones((3, 4, 12), np.float32)
    before = _contents(data)
    with pytest.raises(DataError, match="source's own folder"):
        convert(data / "s.h5", data)
    assert _contents(data) == before
    other = _users_scans(tmp_path / "other")
    with pytest.raises(DataError, match="holds scans"):
        convert(data, other)
    written = convert(data, tmp_path / "out")
    assert {p.name for p in written} == {"data0.npy", "data1.npy", "data2.npy", "s.npy"}
    assert np.load(tmp_path / "out" / "data0.npy").dtype == np.float64  # no precision lost
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "data1.npy"), np.load(data / "data1.npy"))
    assert convert(data, tmp_path / "out")  # the same source again: its own folder
    with pytest.raises(DataError, match="holds the conversion of"):
        convert(other, tmp_path / "out")


def test_two_files_that_would_become_one_scan_are_refused_before_anything_is_written(tmp_path):
    data = tmp_path / "d"
    data.mkdir()
    np.save(data / "a.npy", np.ones((2, 3, 4), np.float32))
    (data / "a.csv").write_text("1000,1002,1004,1006\n0.1,0.2,0.3,0.4\n")
    with pytest.raises(DataError, match=r"a\.csv and a\.npy both claim the scan name 'a'"):
        convert(data, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# -- pipeline -------------------------------------------------------------------------------------
def test_pipeline_with_a_kernel_that_does_not_exist_is_one_error_line_and_leaves_no_folder(tmp_path, demo_dir,
                                                                                          capsys):
    out = tmp_path / "run"
    assert main(["pipeline", "--data", str(demo_dir), "--out", str(out), "--kernel", "nosuch", "--no-html",
                 "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: --kernel 'nosuch': no Jupyter kernel") and "Traceback" not in err
    assert not out.exists()


def test_a_pipeline_whose_kernel_fails_to_start_releases_the_folder_it_claimed(tmp_path, demo_dir, capsys):
    class NoKernel(Exception):
        pass

    out = tmp_path / "run"

    def fail(path, target, **kwargs):
        Path(target).write_text("{}")  # papermill writes its copy before it starts the kernel
        raise NoKernel("the kernel died before it started")

    with mock.patch("papermill.execute_notebook", fail):
        assert main(["pipeline", "--data", str(demo_dir), "--out", str(out), "--no-html", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "could not be run (NoKernel: the kernel died before it started)" in err and "Traceback" not in err
    assert not out.exists() and claims.CLAIMS_ENV not in os.environ
