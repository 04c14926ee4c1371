"""Data-parallel training: two CPU processes (gloo) under torchrun on tiny data."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from spectra_vae import SpectraVAE, load_dataset, make_demo_dataset
from spectra_vae.analysis import compare_with_pca


@pytest.mark.skipif(not torch.distributed.is_available(), reason="this torch build has no torch.distributed")
def test_torchrun_two_processes_trains_one_model_written_by_rank_zero(tmp_path):
    data = make_demo_dataset(tmp_path / "scans", n_scans=6, height=24, width=24, seed=0)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "spectra_vae", "train", "--data", str(data), "--epochs", "6", "--out", str(out), "--patience", "0"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("in 2 process(es)") == 1  # rank 0 alone reports
    files = sorted(p.name for p in (out / "model").iterdir())
    assert files == ["best.pt", "final.pt", "last.pt"]  # no stray temporary files
    assert sorted(p.name for p in out.iterdir()) == ["history.csv", "model", "params.json", "splits.json"]

    ddp = SpectraVAE.load(out / "model" / "final.pt")
    assert list(ddp.history.epoch) == [1, 2, 3, 4, 5, 6]
    train = load_dataset(data, split="normal_train")
    test = load_dataset(data, split="normal_test")
    # the normaliser merged from both shards equals one fitted on all training pixels
    assert np.allclose(ddp.normaliser_.offset_, train.to_array().astype(np.float64).mean(0), atol=1e-6)
    assert ddp.normaliser_.n_samples_ == len(train)
    val = load_dataset(data, split="normal_val")
    single = SpectraVAE(epochs=6, patience=None, verbose=False).fit(train, validation=val)
    rmse_ddp = compare_with_pca(ddp, train, test).loc["VAE", "rmse"]
    rmse_one = compare_with_pca(single, train, test).loc["VAE", "rmse"]
    assert rmse_ddp < 1.5 * rmse_one, (rmse_ddp, rmse_one)
