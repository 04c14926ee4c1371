"""The checkpoint format: version 2, optional sections, version-1 files, newer files refused."""

import warnings

import numpy as np
import pytest
import torch

from spectra_vae import DataError, SpectraVAE, load_dataset
from spectra_vae.model.checkpoint import (
    CHECKPOINT_VERSION,
    OPTIONAL_SECTIONS,
    load_checkpoint,
    save_checkpoint,
    section,
)

V1_KEYS = ("format", "spectra_vae_version", "torch_version", "created", "config", "model_config", "state_dict",
           "normaliser", "wavenumbers", "wavenumbers_known", "history", "best_epoch", "train_source")


def _as_version_1(payload: dict) -> dict:
    """The layout spectra_vae wrote before format 2: one set of weights, one process's generators,
    no position within an epoch, no bound on the encoder's log-variance, no checkpoint_minutes."""
    v1 = {k: payload[k] for k in V1_KEYS} | {"version": 1}
    v1["config"] = {k: v for k, v in payload["config"].items() if k != "checkpoint_minutes"}
    v1["model_config"] = {k: v for k, v in payload["model_config"].items() if k != "logvar_bounds"}
    t = payload.get("training")
    if t:
        v1["training"] = {k: t[k] for k in ("epoch", "best_epoch", "best_loss", "bad_epochs", "stopped_early",
                                            "optimizer", "best_state_dict")} | {"rng": t["rng"][0]}
    return v1


@pytest.fixture(scope="module")
def run(demo_dir, tmp_path_factory):
    train = load_dataset(demo_dir, split="normal_train")
    d = tmp_path_factory.mktemp("ckpt")
    vae = SpectraVAE(hidden_dims=(32, 16), epochs=2, batch_size=256, patience=None, verbose=False).fit(
        train, checkpoint_dir=d)
    return vae, train, d


def test_checkpoints_are_written_in_the_current_version_with_a_training_section(run):
    _, _, d = run
    last = torch.load(d / "last.pt", weights_only=True)
    assert last["version"] == CHECKPOINT_VERSION == 2
    assert {"state_dict", "optimizer", "epoch", "batch", "step", "rng", "world_size"} <= set(last["training"])
    assert "training" not in torch.load(d / "best.pt", weights_only=True)


def test_a_version_1_file_loads_with_defaults_for_what_it_lacks(run, tmp_path):
    vae, train, d = run
    v1 = _as_version_1(torch.load(d / "last.pt", weights_only=True))
    torch.save(v1, tmp_path / "v1.pt")
    old = SpectraVAE.load(tmp_path / "v1.pt")
    assert old.model_config_.logvar_bounds is None  # trained without the bound: loaded without it
    assert old.checkpoint_minutes == SpectraVAE().checkpoint_minutes
    np.testing.assert_array_equal(old.transform(train), vae.transform(train))  # μ does not depend on the bound
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a version-1 last.pt held one moment: resuming it is exact
        more = SpectraVAE.resume(tmp_path / "v1.pt", train, checkpoint_dir=tmp_path / "more", epochs=3)
    assert list(more.history.epoch) == [1, 2, 3]
    assert torch.load(tmp_path / "more" / "last.pt", weights_only=True)["version"] == 2


def test_a_version_1_final_pt_resumes_saying_it_holds_the_best_weights_not_the_last(run, tmp_path):
    _, train, d = run
    v1 = _as_version_1(torch.load(d / "last.pt", weights_only=True))
    # version 1's final.pt: the best epoch's weights beside the last epoch's optimiser
    v1["training"]["best_epoch"] = 1
    v1["state_dict"] = v1["training"]["best_state_dict"]
    torch.save(v1, tmp_path / "final.pt")
    with pytest.warns(UserWarning, match="version-1 final.pt, which held the best epoch's weights"):
        SpectraVAE.resume(tmp_path / "final.pt", train, checkpoint_dir=tmp_path / "more", epochs=3)


def test_a_file_from_a_newer_format_is_refused_saying_what_to_do(run, tmp_path):
    _, _, d = run
    payload = torch.load(d / "last.pt", weights_only=True)
    torch.save(payload | {"version": CHECKPOINT_VERSION + 1}, tmp_path / "new.pt")
    with pytest.raises(DataError, match=r"newer spectra_vae .*upgrade spectra_vae to read it"):
        SpectraVAE.load(tmp_path / "new.pt")
    torch.save(payload | {"version": "2"}, tmp_path / "odd.pt")
    with pytest.raises(DataError, match="not one spectra_vae wrote"):
        load_checkpoint(tmp_path / "odd.pt")


def test_optional_sections_default_when_absent_and_unknown_ones_are_ignored(run, tmp_path):
    vae, train, d = run
    payload = torch.load(d / "best.pt", weights_only=True)
    for key in ("wavenumbers_known", "best_epoch", "train_source"):
        del payload[key]
    save_checkpoint(payload | {"a_later_feature": {"threshold": 0.5}}, tmp_path / "sparse.pt")
    loaded = load_checkpoint(tmp_path / "sparse.pt")
    assert section(loaded, "train_source") == OPTIONAL_SECTIONS["train_source"]
    assert section(loaded, "training") is None
    again = SpectraVAE.load(tmp_path / "sparse.pt")
    np.testing.assert_array_equal(again.transform(train), SpectraVAE.load(d / "best.pt").transform(train))
    with pytest.raises(KeyError, match="not a registered checkpoint section"):
        section(loaded, "a_later_feature")
    with pytest.raises(DataError, match="holds a model but not the optimiser"):
        SpectraVAE.resume(d / "best.pt", train)
    del payload["normaliser"]
    torch.save(payload, tmp_path / "broken.pt")
    with pytest.raises(DataError, match="incomplete: .normaliser. is missing"):
        SpectraVAE.load(tmp_path / "broken.pt")
