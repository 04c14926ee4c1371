"""Checks that came too late, or never (issue 33, part 4): each is refused before training starts or
anything is written or allocated, with the package's own error."""

import contextlib
import io
import shutil
import time
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

from spectra_vae import DataError, SpectraVAE, load_dataset
from spectra_vae.__main__ import main
from spectra_vae.estimator import base
from spectra_vae.workflow import sweep

X = (np.random.default_rng(0).random((40, 12)) + 0.1).astype(np.float32)
SMALL = {"hidden_dims": (8,), "epochs": 1, "verbose": False}


@pytest.fixture
def no_training():
    """Fails the test if a training loop starts."""
    with mock.patch.object(base, "train_loop", side_effect=AssertionError("training started")) as loop:
        yield loop


def test_one_pixel_and_a_checkpoint_dir_that_is_a_file_are_refused_before_training(tmp_path, no_training):
    with pytest.raises(DataError, match="1 training pixel"):
        SpectraVAE(**SMALL).fit(X[:1])
    (tmp_path / "file").write_text("keep")
    for where in (tmp_path / "file", tmp_path / "file" / "below"):
        with pytest.raises(DataError, match="checkpoint_dir"):
            SpectraVAE(**SMALL).fit(X, checkpoint_dir=where)
    assert (tmp_path / "file").read_text() == "keep"


def test_absurd_sizes_are_refused_before_anything_is_allocated(no_training):
    started = time.monotonic()
    with pytest.raises(DataError, match=r"would need about .* GiB to train, more than"):
        SpectraVAE(**{**SMALL, "hidden_dims": (65536,) * 16, "latent_dim": 1024}).fit(X)
    with pytest.raises(DataError, match="would need about"):
        SpectraVAE(hidden_dims=(8,), batch_size=1 << 20, latent_dim=1024, epochs=1, verbose=False).fit(
            np.random.default_rng(1).random((40, 50_000)).astype(np.float32) + 0.1)
    assert time.monotonic() - started < 60


@pytest.mark.parametrize("argv, message", [
    (["--tissue-only", "--tissue-threshold", "1000"], "0 of .* training pixels are tissue"),
    (["--hidden-dims", ",".join(["65536"] * 16), "--latent-dim", "1024"], "would need about"),
])
def test_train_refuses_what_would_fail_after_the_record_is_written(tmp_path, demo_dir, no_training, argv, message):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["train", "--data", str(demo_dir), "--out", str(tmp_path / "run"), "--epochs", "1", *argv]) == 1
    assert err.getvalue().startswith("error: ") and message.split(" .*")[0] in err.getvalue()
    assert not (tmp_path / "run").exists()


def test_a_training_folder_of_one_pixel_is_refused_before_the_run_is_written(tmp_path, no_training, capsys):
    data = tmp_path / "scans"
    data.mkdir()
    np.save(data / "one.npy", X[:1])
    assert main(["train", "--data", str(data / "one.npy"), "--out", str(tmp_path / "run")]) == 1
    assert "1 usable training pixel" in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_demo_data_of_absurd_height_is_refused_before_allocating(tmp_path, capsys):
    started = time.monotonic()
    assert main(["demo-data", "--out", str(tmp_path / "demo"), "--height", "100000"]) == 1
    assert "would need about" in capsys.readouterr().err and time.monotonic() - started < 30
    assert not (tmp_path / "demo").exists()


def test_agilent_headers_are_checked_against_the_file_sizes_before_the_reader_runs(tmp_path, time_limit):
    agilent = pytest.importorskip("agilent_format")
    root = Path(agilent.__file__).parent / "datasets"
    for suffix in (".dat", ".bsp"):
        shutil.copy(root / f"4_noimage_agg256{suffix}", tmp_path / f"tile{suffix}")
    assert load_dataset(tmp_path / "tile.dat").n_channels > 1  # as shipped: read
    header = bytearray((tmp_path / "tile.bsp").read_bytes())
    header[2236:2240] = (2**31 - 1).to_bytes(4, "little")  # declares 2³¹ points
    (tmp_path / "tile.bsp").write_bytes(bytes(header))
    with mock.patch.object(agilent, "agilentImage", side_effect=AssertionError("the reader ran")), time_limit(20):
        with pytest.raises(DataError, match=r"tile\.bsp: declares 2147483647 points per spectrum, but tile\.dat"):
            load_dataset(tmp_path / "tile.dat")
    (tmp_path / "tile.bsp").write_bytes(bytes(header[:100]))
    with pytest.raises(DataError, match="too short for an Agilent header"):
        load_dataset(tmp_path / "tile.dat")


@pytest.fixture(scope="module")
def fitted():
    return SpectraVAE(latent_dim=3, **SMALL).fit(X)


@pytest.mark.parametrize("z", [np.zeros((2, 2)), np.zeros((2, 4)), np.zeros((2, 3, 1)), "abc", [[np.nan] * 3]])
def test_decode_refuses_latent_points_of_another_shape(fitted, z):
    with pytest.raises(DataError, match="decode: "):
        fitted.decode(z)
    assert fitted.decode(np.zeros((2, 3))).shape == (2, 12)


@pytest.mark.parametrize("method", ["bogus", "t2+bogus", "t2+t2", None, 3])
def test_anomaly_score_refuses_a_method_it_does_not_have(fitted, method):
    with pytest.raises(DataError, match="anomaly_score"):
        fitted.anomaly_score(X, method=method)
    assert np.isfinite(fitted.anomaly_score(X, method="t2+q")).all()


# -- sweeps and the pipeline ---------------------------------------------------------------------
class Reached(Exception):
    """Every run of a sweep was started."""


def test_a_sweep_refuses_a_grid_value_of_zero_before_any_run_and_takes_text_values(tmp_path, demo_dir):
    started = []
    with mock.patch.object(sweep, "run_pipeline", side_effect=lambda *a, **k: started.append(a[2])), \
            mock.patch.object(sweep.compare, "score_run"), mock.patch.object(sweep.compare, "collect",
                                                                             side_effect=Reached):
        with pytest.raises(DataError, match="parameter latent_dim: must be ≥ 1, got 0"):
            sweep.run_sweep(demo_dir, tmp_path / "sweep", sweep.parse_grid(["latent_dim=2,0"]), {"epochs": "1"})
        assert started == [] and not (tmp_path / "sweep").exists()
        with pytest.raises(Reached):  # the runs were reached; the table is not this test's concern
            sweep.run_sweep(demo_dir, tmp_path / "sweep", sweep.parse_grid(["latent_dim=2,3"]),
                            {"epochs": "1", "hidden_dims": "8"})
    assert [p["hidden_dims"] for p in started] == ["8", "8"] and [p["latent_dim"] for p in started] == ["2", "3"]


def test_a_pipeline_refuses_an_abnormal_split_that_is_the_training_split(tmp_path, demo_dir, capsys):
    with mock.patch("papermill.execute_notebook", side_effect=AssertionError("a notebook ran")):
        assert main(["pipeline", "--data", str(demo_dir), "--out", str(tmp_path / "run"), "--no-html", "--quiet",
                     "-p", "abnormal_split", "normal_train"]) == 1
    assert "parameter abnormal_split: 'normal_train' is already the train_split" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
