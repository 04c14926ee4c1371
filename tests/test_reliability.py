"""Faults: killed runs, diverging runs, full disks, bad notebook parameters, unreadable scans."""

import errno
import re
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from spectra_vae import DataError, SpectraVAE, TrainingError, load_dataset
from spectra_vae import workflow as pipeline
from spectra_vae.model import checkpoint as checkpoint_module
from spectra_vae.model import train as train_module


def test_a_scan_without_any_finite_pixel_is_an_error(tmp_path):
    np.save(tmp_path / "dead.npy", np.full((3, 3, 5), np.nan, np.float32))
    with pytest.raises(DataError, match=r"dead\.npy: no pixel has a finite spectrum"):
        load_dataset(tmp_path / "dead.npy")


def test_empty_arrays_and_wrong_ranks_say_what_shape_was_expected(tmp_path):
    np.save(tmp_path / "empty.npy", np.zeros((0, 4, 442), np.float32))
    with pytest.raises(DataError, match=r"empty\.npy: empty array of shape \(0, 4, 442\)"):
        load_dataset(tmp_path / "empty.npy")
    np.save(tmp_path / "four.npy", np.zeros((2, 2, 2, 442), np.float32))
    with pytest.raises(DataError, match=r"four\.npy: expected shape \(H, W, channels\) or \(pixels, channels\)"):
        load_dataset(tmp_path / "four.npy")


def test_diverging_run_names_epoch_and_batch_and_keeps_the_best_checkpoint(demo_dir, tmp_path):
    train = load_dataset(demo_dir, split="normal_train")
    SpectraVAE(hidden_dims=(32,), epochs=2, verbose=False).fit(train, validation=train, checkpoint_dir=tmp_path)
    before = torch.load(tmp_path / "best.pt", weights_only=True)["state_dict"]
    with pytest.raises(TrainingError, match=r"at epoch 3, batch \d+"):
        SpectraVAE.resume(tmp_path / "last.pt", train, validation=train, epochs=6, learning_rate=1e6)
    best = SpectraVAE.load(tmp_path / "best.pt")
    assert all(torch.equal(best.model_.state_dict()[k], v) for k, v in before.items())
    assert np.isfinite(best.transform(train)).all()
    assert len(SpectraVAE.load(tmp_path / "last.pt").history) == 2


def test_full_disk_while_saving_keeps_the_previous_checkpoint(fitted, tmp_path, monkeypatch):
    vae, *_ = fitted
    path = vae.save(tmp_path / "model.pt")
    good = path.read_bytes()

    def full_disk(obj, f, *a, **k):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint_module.torch, "save", full_disk)
    with pytest.raises(OSError, match=r"could not write checkpoint .*model\.pt \(No space left on device\); "
                                      "the previous file there is unchanged"):
        vae.save(path)
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


KILL_SCRIPT = textwrap.dedent("""
    import sys
    from spectra_vae import SpectraVAE, load_dataset
    train = load_dataset(sys.argv[1], split="normal_train")
    SpectraVAE(hidden_dims=(64, 32), epochs=int(sys.argv[3]), batch_size=16, patience=None, seed=5,
               verbose=False).fit(train, validation=train, checkpoint_dir=sys.argv[2])
""")


def test_sigkill_mid_epoch_leaves_last_loadable_and_resume_matches_an_uninterrupted_run(demo_dir, tmp_path):
    epochs = 6
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(demo_dir), str(tmp_path / "killed"), str(epochs)])
    deadline = time.time() + 120
    last = tmp_path / "killed" / "last.pt"
    while time.time() < deadline:
        if last.exists():
            try:
                if len(torch.load(last, weights_only=True)["history"]["epoch"]) >= 2:
                    break
            except Exception:
                pass  # being replaced this very moment is fine; try again
        time.sleep(0.05)
    time.sleep(0.15)  # somewhere inside the next epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    cut = SpectraVAE.load(last)
    done = len(cut.history)
    assert 2 <= done < epochs, "the run was not cut mid-way"
    assert list(cut.history.epoch) == list(range(1, done + 1))

    train = load_dataset(demo_dir, split="normal_train")
    resumed = SpectraVAE.resume(last, train, validation=train)
    assert list(resumed.history.epoch) == list(range(1, epochs + 1))
    full = SpectraVAE(hidden_dims=(64, 32), epochs=epochs, batch_size=16, patience=None, seed=5,
                      verbose=False).fit(train, validation=train)
    assert np.allclose(resumed.history.train_loss, full.history.train_loss, rtol=1e-5)
    assert np.allclose(resumed.transform(train), full.transform(train), atol=1e-5)


def test_bad_notebook_parameters_are_refused_before_any_notebook_runs(tmp_path):
    with pytest.raises(DataError, match=r"parameter epochs: expected 'auto' or a whole number ≥ 1, got 'abc'"):
        pipeline.run_pipeline("demo", tmp_path / "a", {"epochs": "abc"}, notebooks=("02_train.ipynb",), html=False)
    with pytest.raises(DataError, match=r"parameter latent_dim: must be ≥ 1, got 0"):
        pipeline.run_pipeline("demo", tmp_path / "b", {"latent_dim": 0}, notebooks=("02_train.ipynb",), html=False)
    with pytest.raises(DataError, match="does not exist"):
        pipeline.run_pipeline(tmp_path / "missing", tmp_path / "c", notebooks=("02_train.ipynb",))
    assert not any((tmp_path / d).exists() for d in "abc")


def test_a_bad_parameter_given_to_papermill_directly_fails_the_notebooks_first_cell_naming_it(tmp_path):
    import papermill as pm

    bad = r"parameter epochs: expected 'auto' or a whole number ≥ 1, got 0"
    with pytest.raises(pm.PapermillExecutionError, match=bad):
        pm.execute_notebook(str(pipeline.project_root() / "notebooks" / "02_train.ipynb"), str(tmp_path / "o.ipynb"),
                            parameters={"epochs": 0, "run_dir": str(tmp_path)}, progress_bar=False, log_output=False,
                            cwd=str(pipeline.project_root() / "notebooks"))


def test_divergence_checked_every_few_batches_as_on_a_gpu_names_the_range(demo_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(train_module, "_check_every", lambda device: 3)  # the accelerator rule, on CPU
    train = load_dataset(demo_dir, split="normal_train")
    SpectraVAE(hidden_dims=(32,), epochs=1, batch_size=64, verbose=False).fit(train, checkpoint_dir=tmp_path)
    with pytest.raises(TrainingError, match=r"non-finite at epoch 2, in one of batches (\d+)–(\d+) ") as err:
        SpectraVAE.resume(tmp_path / "last.pt", train, epochs=3, learning_rate=1e6)
    first, last = map(int, re.search(r"batches (\d+)–(\d+)", str(err.value)).groups())
    assert first % 3 == 1 and (last - first == 2 or last == -(-len(train) // 64))
    assert np.isfinite(SpectraVAE.load(tmp_path / "best.pt").transform(train)).all()
