"""Shared fixtures: tiny demo datasets, made once per session."""

from __future__ import annotations

import os

import matplotlib
import pytest

matplotlib.use("Agg")
os.environ.setdefault("MPLBACKEND", "Agg")

from spectra_vae import SpectraVAE, load_dataset, make_demo_dataset  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Records of the finite-pixel check go to a temporary folder, not the user's cache."""
    old = os.environ.get("SPECTRA_VAE_CACHE")
    os.environ["SPECTRA_VAE_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("SPECTRA_VAE_CACHE", None)
    else:
        os.environ["SPECTRA_VAE_CACHE"] = old


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory):
    """6 scans of 24×24 pixels × 442 channels: 2 normal train, 1 val, 1 test, 2 abnormal."""
    return make_demo_dataset(tmp_path_factory.mktemp("demo") / "scans", n_scans=6, height=24, width=24, seed=0)


@pytest.fixture(scope="session")
def scattered_dir(tmp_path_factory):
    """The scattered ("uncorrected") twin of `demo_dir`: the same scans plus scattering."""
    return make_demo_dataset(tmp_path_factory.mktemp("demo_scattered") / "scans", n_scans=6, height=24, width=24,
                             seed=0, scatter=True)


@pytest.fixture(scope="session")
def demo(demo_dir):
    return load_dataset(demo_dir)


@pytest.fixture(scope="session")
def fitted(demo_dir, tmp_path_factory):
    """A small VAE trained for a few epochs with checkpoints; (vae, train, val, test, checkpoint_dir)."""
    train = load_dataset(demo_dir, split="normal_train")
    val = load_dataset(demo_dir, split="normal_val")
    test = load_dataset(demo_dir, split="normal_test")
    ckpt = tmp_path_factory.mktemp("run")
    vae = SpectraVAE(hidden_dims=(64, 32), epochs=4, batch_size=128, verbose=False).fit(
        train, validation=val, checkpoint_dir=ckpt)
    return vae, train, val, test, ckpt
