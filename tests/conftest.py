"""Shared fixtures: tiny demo datasets, made once per session."""

from __future__ import annotations

import os
import shutil
import signal
from contextlib import contextmanager

import matplotlib
import pytest
from hypothesis import HealthCheck, settings

matplotlib.use("Agg")
os.environ.setdefault("MPLBACKEND", "Agg")

from spectra_vae import SpectraVAE, load_dataset, make_demo_dataset  # noqa: E402

# Property-based tests (test_fuzz.py): a bounded, reproducible run inside `make test`; `pytest
# --hypothesis-profile=thorough tests/test_fuzz.py` explores many more inputs, at random.
settings.register_profile("default", max_examples=25, deadline=10_000, derandomize=True, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("thorough", max_examples=400, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile("default")

CASE_SECONDS = 60  # a case still running after this is a hang: SIGALRM interrupts it, even a blocked open()


class Hang(BaseException):
    """Raised by the time limit; not an Exception, so no `except Exception` in the code under test hides it."""


@contextmanager
def _time_limit(seconds: float = CASE_SECONDS):
    def hang(signum, frame):
        raise Hang(f"no answer within {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="session")
def time_limit():
    """`with time_limit(seconds):` fails a block that does not finish in time instead of hanging."""
    return _time_limit


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


@pytest.fixture
def bare_scans():
    """Make demo scans with nothing else: no wavenumbers.npy, labels or split file (the prototype's folders)."""
    def make(path, n_scans=6, size=10, seed=5):
        data = make_demo_dataset(path, n_scans=n_scans, height=size, width=size, seed=seed)
        for name in ("wavenumbers.npy", "data_splits.json", "demo.json"):
            (data / name).unlink()
        shutil.rmtree(data / "labels")
        return data
    return make
