import copy
import os
import pickle

import numpy as np
import pandas as pd
import pytest
import torch

from spectra_vae import DataError, SpectraVAE, load_dataset, make_demo_dataset
from spectra_vae.model.train import resolve_device
from spectra_vae.views.analysis import compare_with_pca


def test_fit_returns_self_with_history_of_each_term_per_epoch(fitted):
    vae, *_ = fitted
    h = vae.history
    assert isinstance(h, pd.DataFrame) and list(h.epoch) == [1, 2, 3, 4]
    for col in ("train_loss", "train_reconstruction", "train_kl", "val_loss", "val_reconstruction",
                "val_kl", "val_rmse", "seconds"):
        assert col in h and h[col].notna().all()
    assert (h.train_kl > 0).all() and (h.val_kl > 0).all()
    assert np.allclose(h.val_loss, h.val_reconstruction + vae.beta * h.val_kl, rtol=1e-4)
    assert h.train_loss.iloc[-1] < h.train_loss.iloc[0]


def test_transform_and_reconstruct_are_deterministic_and_shaped(fitted):
    vae, _, _, test, _ = fitted
    z1, z2 = vae.transform(test), vae.transform(test)
    assert z1.shape == (len(test), 2) and np.array_equal(z1, z2)
    r = vae.reconstruct(test)
    assert r.shape == (len(test), 442) and np.array_equal(r, vae.reconstruct(test))


def test_reconstructions_come_back_in_absorbance_units(fitted):
    vae, _, _, test, _ = fitted
    x, r = test.to_array(), vae.reconstruct(test)
    assert abs(r.mean() - x.mean()) < 0.2 * x.std()
    assert np.sqrt(np.mean((r - x) ** 2)) < x.std()


def test_checkpoints_best_and_last_hold_everything_and_load_weights_only(fitted):
    vae, _, _, test, ckpt = fitted
    assert sorted(p.name for p in ckpt.iterdir()) == ["best.pt", "last.pt"]  # no temporary files left
    for name in ("best.pt", "last.pt"):
        payload = torch.load(ckpt / name, weights_only=True)
        assert {"state_dict", "config", "model_config", "normaliser", "wavenumbers", "history"} <= set(payload)
        assert payload["wavenumbers"].shape == (442,) and payload["config"]["latent_dim"] == 2
        assert len(payload["history"]["epoch"]) >= 1
    best = SpectraVAE.load(ckpt / "best.pt")
    assert np.allclose(best.transform(test), vae.transform(test))  # fit ends on the best epoch


def test_save_then_load_gives_the_same_model(fitted, tmp_path):
    vae, _, _, test, _ = fitted
    path = vae.save(tmp_path / "final.pt")
    again = SpectraVAE.load(path)
    assert again.get_params()["hidden_dims"] == (64, 32)
    assert np.array_equal(again.transform(test), vae.transform(test))
    assert np.array_equal(again.reconstruct(test), vae.reconstruct(test))
    pd.testing.assert_frame_equal(again.history, vae.history)


def test_arrays_are_accepted_wherever_a_dataset_is(fitted):
    vae, _, _, test, _ = fitted
    x = test.to_array()
    assert np.array_equal(vae.transform(x), vae.transform(test))


def test_same_seed_same_data_same_result_on_cpu(demo_dir):
    train = load_dataset(demo_dir, split="normal_train")
    kw = dict(hidden_dims=(32, 16), epochs=2, batch_size=256, seed=7, verbose=False)
    a, b = SpectraVAE(**kw).fit(train), SpectraVAE(**kw).fit(train)
    assert np.array_equal(a.transform(train), b.transform(train))
    c = SpectraVAE(**{**kw, "seed": 8}).fit(train)
    assert not np.array_equal(a.transform(train), c.transform(train))


def test_early_stopping_stops_after_patience_epochs_without_improvement(demo_dir):
    train = load_dataset(demo_dir, split="normal_train")
    val = load_dataset(demo_dir, split="normal_val")
    # A learning rate too small to improve by much leaves the best at an early epoch only by chance,
    # so use a tiny rate and β large: loss plateaus quickly; patience=1 must stop before 40 epochs.
    vae = SpectraVAE(hidden_dims=(16,), epochs=40, patience=1, learning_rate=0.05, batch_size=512,
                     verbose=False).fit(train, validation=val)
    h = vae.history
    assert len(h) < 40
    assert h.val_rmse.iloc[-1] >= h.val_rmse.iloc[:-1].min()  # its last epoch did not improve the RMSE
    assert vae.best_epoch_ == int(h.epoch[h.val_rmse.idxmin()])  # the kept weights: lowest validation RMSE


def test_resume_continues_history_and_matches_an_uninterrupted_run(demo_dir, tmp_path, monkeypatch):
    from spectra_vae.estimator import base as estimator_module

    train = load_dataset(demo_dir, split="normal_train")
    val = load_dataset(demo_dir, split="normal_val")
    kw = dict(hidden_dims=(32, 16), batch_size=256, epochs=4, patience=None, seed=3, verbose=False)
    full = SpectraVAE(**kw).fit(train, validation=val, checkpoint_dir=tmp_path / "full")
    real_save = estimator_module.save_checkpoint

    def interrupted_after_epoch_2(payload, path):  # as Ctrl-C right after last.pt of epoch 2 is written
        real_save(payload, path)
        if (payload.get("training") or {}).get("epoch") == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(estimator_module, "save_checkpoint", interrupted_after_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        SpectraVAE(**kw).fit(train, validation=val, checkpoint_dir=tmp_path / "cut")
    monkeypatch.undo()
    resumed = SpectraVAE.resume(tmp_path / "cut" / "last.pt", train, validation=val)
    assert list(resumed.history.epoch) == [1, 2, 3, 4]
    np.testing.assert_array_equal(resumed.history.train_loss, full.history.train_loss)
    np.testing.assert_array_equal(resumed.transform(val), full.transform(val))


def test_resume_names_a_bad_epochs_and_an_old_model_without_a_tissue_rule(fitted, tmp_path):
    vae, train, val, _, ckpt = fitted
    for bad in ("50", 0, 2.5):
        with pytest.raises(DataError, match="epochs"):
            SpectraVAE.resume(ckpt / "last.pt", train, validation=val, epochs=bad)
    old = SpectraVAE.load(ckpt / "last.pt")
    old.tissue_only, old.tissue_rule_ = True, None  # as an old file that trained on tissue, before rules were stored
    with pytest.raises(DataError, match="before tissue rules"):
        old.training_pixels(train)
    monitored = copy.deepcopy(vae)
    monitored.tissue_rule_ = None
    with pytest.raises(DataError, match="before tissue rules"):  # not a calibration on background too
        monitored.calibrate(val)


def test_applying_a_model_to_other_channels_or_axis_is_an_error(fitted):
    vae, _, _, test, _ = fitted
    with pytest.raises(DataError, match="has 100 channels but the model expects 442"):
        vae.transform(np.ones((5, 100)))
    shifted = load_dataset(test.to_array()[:10], wavenumbers=np.linspace(1000, 1850, 442))
    with pytest.raises(DataError, match="does not match the model"):
        vae.transform(shifted)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch /tmp/spectra_vae_pwned",))


def test_checkpoint_with_pickled_code_is_refused_and_not_run(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"format": "spectra_vae.model.checkpoint", "x": _Exploit()}, f)
    if os.path.exists("/tmp/spectra_vae_pwned"):
        os.remove("/tmp/spectra_vae_pwned")
    with pytest.raises(DataError, match="evil.pt"):
        SpectraVAE.load(path)
    assert not os.path.exists("/tmp/spectra_vae_pwned")


def test_auto_device_picks_cuda_then_mps_then_cpu_and_a_named_device_is_kept(monkeypatch):
    mps = torch.backends.mps
    for cuda, apple, expected in ((True, True, "cuda:0"), (False, True, "mps"), (False, False, "cpu")):
        monkeypatch.setattr(torch.cuda, "is_available", lambda cuda=cuda: cuda)
        monkeypatch.setattr(mps, "is_available", lambda apple=apple: apple)
        assert resolve_device("auto") == torch.device(expected)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)  # named: kept as given, even without a GPU
    assert resolve_device("cpu") == torch.device("cpu")


def test_bad_parameters_are_named(demo_dir):
    train = load_dataset(demo_dir, split="normal_train")
    with pytest.raises(DataError, match="latent_dim"):
        SpectraVAE(latent_dim=0).fit(train)
    with pytest.raises(DataError, match="bce reconstruction needs"):
        SpectraVAE(reconstruction="bce", normalisation="standard").fit(train)


@pytest.fixture(scope="module")
def demo48(tmp_path_factory):
    return load_dataset(make_demo_dataset(tmp_path_factory.mktemp("d48"), n_scans=6, height=48, width=48, seed=0))


@pytest.mark.parametrize("split_seed", [0, 1])
def test_default_vae_reconstructs_held_out_scans_better_than_pca_with_as_many_components(demo48, split_seed):
    """Requirement: with default settings, held-out RMSE (absorbance) ≤ PCA(latent_dim) fitted on the same pixels."""
    train, val, test = demo48.split(by="scan", fractions=(0.8, 0.1, 0.1), seed=split_seed)
    vae = SpectraVAE(epochs=30, verbose=False).fit(train, validation=val)
    table = compare_with_pca(vae, train, test)
    assert table.loc["PCA", "components"] == vae.latent_dim == 2
    assert table.loc["VAE", "rmse"] <= table.loc["PCA", "rmse"], table
    # and it is not the trivial model: far better than predicting the training mean spectrum
    mean_rmse = np.sqrt(np.mean((test.to_array() - train.to_array().mean(0)) ** 2))
    assert table.loc["VAE", "rmse"] < 0.2 * mean_rmse


def test_compare_with_pca_streams_but_gives_the_rmse_over_all_pixels_and_channels(fitted):
    from sklearn.decomposition import PCA

    from spectra_vae.core.metrics import rmse

    vae, train, _, test, _ = fitted
    table = compare_with_pca(vae, train, test)
    x = test.to_array()
    assert table.loc["VAE", "rmse"] == pytest.approx(rmse(x, vae.reconstruct(test)), rel=1e-6)
    pca = PCA(n_components=vae.latent_dim).fit(train.to_array())
    assert table.loc["PCA", "rmse"] == pytest.approx(rmse(x, pca.inverse_transform(pca.transform(x))), rel=1e-4)
    assert table.loc["VAE", "pixels"] == len(test)


def test_reconstruct_pixels_returns_the_pixels_asked_for_in_their_order(fitted):
    from spectra_vae.views.analysis import reconstruct_pixels

    vae, _, _, test, _ = fitted
    positions = [40, 3, 40, 17]  # unsorted, with a repeat
    originals, recons = reconstruct_pixels(vae, test, positions)
    assert np.array_equal(originals, test.read(positions))
    assert np.allclose(recons, vae.reconstruct(test)[positions], atol=1e-6)


def test_fit_on_large_data_says_what_it_does_before_the_first_epoch(demo, monkeypatch, caplog, capsys):
    """The passes over the training set before the first epoch (tissue rule, emsc reference,
    normalisation statistics) are announced on data of PREPARE_NOTICE_PIXELS or more; quiet otherwise.
    Messages go through `logging` (the package prints nothing itself)."""
    import logging

    from spectra_vae.estimator import base as estimator

    caplog.set_level(logging.INFO, logger="spectra_vae")
    train = demo.select_scans([0, 1])
    SpectraVAE(hidden_dims=(8,), epochs=1, preprocess="emsc", verbose=True).fit(train)
    assert "preparing" not in caplog.text  # small data: nothing new
    monkeypatch.setattr(estimator, "PREPARE_NOTICE_PIXELS", len(train))
    SpectraVAE(hidden_dims=(8,), epochs=1, preprocess="emsc", verbose=True).fit(train)
    assert (f"preparing {len(train):,} training pixels: the tissue rule, the emsc reference, the normalisation "
            "statistics, each a pass over the data…") in caplog.text and "prepared in" in caplog.text
    assert "preparing" not in capsys.readouterr().out  # logged, not printed
    caplog.clear()
    SpectraVAE(hidden_dims=(8,), epochs=1, verbose=False).fit(train)
    assert "preparing" not in caplog.text
