"""The tissue rule: fitted from spectra, one owner (the model), stored in its checkpoint."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest

from spectra_vae import DataError, SpectraVAE, load_dataset
from spectra_vae.preprocess.tissue import TissueRule, background_threshold, parse_tissue_threshold, tissue_intensity


def test_rule_from_spectra_alone_matches_the_ground_truth(demo):
    rule = TissueRule.fit(demo)
    assert rule.measure == "amide_i" and np.isfinite(rule.threshold) and "background found" in rule.how
    assert ((demo.labels > 0) == rule.mask(demo)).mean() > 0.97


def test_scans_cropped_to_the_core_are_all_tissue(demo_dir, tmp_path):
    # the lab crops some scans to the tissue: an inner square of each core, no background left
    for i in range(3):
        scan = np.load(demo_dir / f"data{i}.npy")
        h, w, _ = scan.shape
        np.save(tmp_path / f"data{i}.npy", scan[h // 2 - 4 : h // 2 + 4, w // 2 - 4 : w // 2 + 4])
    shutil.copy(demo_dir / "wavenumbers.npy", tmp_path / "wavenumbers.npy")
    cropped = load_dataset(tmp_path)
    rule = TissueRule.fit(cropped)
    assert rule.threshold == -math.inf and "every pixel counts as tissue" in rule.how
    assert rule.mask(cropped).all()
    # the same rule fitted on whole scans still finds their background
    assert not TissueRule.fit(load_dataset(demo_dir, split="normal_train")).mask(load_dataset(demo_dir)).all()


def test_without_wavenumbers_the_rule_uses_mean_absorbance_and_still_finds_the_core(demo_dir, tmp_path):
    for i in range(4):
        shutil.copy(demo_dir / f"data{i}.npy", tmp_path / f"data{i}.npy")  # bare scans: no wavenumbers.npy
    bare, labelled = load_dataset(tmp_path), load_dataset(demo_dir).select_scans([0, 1, 2, 3])
    assert not bare.wavenumbers_known
    rule = TissueRule.fit(bare)
    assert rule.measure == "total" and "mean absorbance over all channels" in rule.how
    assert ((labelled.labels > 0) == rule.mask(bare)).mean() > 0.95
    with pytest.raises(DataError, match="needs a wavenumber axis"):
        tissue_intensity(bare, "amide_i")


def _read_counter(monkeypatch):
    """Counts the raw pixels the tissue measure reads from the scans."""
    from spectra_vae.preprocess import tissue as tissue_module
    read, real = [0], tissue_module.intensity_of

    def counted(chunk, channels):
        read[0] += len(chunk)
        return real(chunk, channels)
    monkeypatch.setattr(tissue_module, "intensity_of", counted)
    return read


def test_the_measure_is_read_once_per_scan_pixel_and_the_same_from_every_view(demo_dir, monkeypatch):
    read = _read_counter(monkeypatch)
    ds = load_dataset(demo_dir)
    wn = ds.wavenumbers
    band = (wn >= 1630) & (wn <= 1680)
    direct = ds.to_array()[:, band].mean(axis=1)  # the definition, read here without the package's measure
    part = ds.select_pixels(np.arange(100, len(ds), 3))
    np.testing.assert_array_equal(tissue_intensity(part, "amide_i"), direct[100::3])
    assert read[0] == len(part)
    # the whole: only the pixels not yet read are read; a preprocessed view and a subset of scans look them up
    np.testing.assert_array_equal(tissue_intensity(ds, "amide_i"), direct)
    assert read[0] == len(ds)
    rule = TissueRule.fit(ds)
    from spectra_vae.preprocess.pipeline import Preprocessor
    view = ds.preprocessed(Preprocessor("cut(1000,1700)").fit(wn))
    np.testing.assert_array_equal(rule.mask(view), direct > rule.threshold)
    np.testing.assert_array_equal(tissue_intensity(ds.select_scans([2, 0]), "amide_i"),
                                  np.concatenate([direct[ds.scan_of() == 2], direct[ds.scan_of() == 0]]))
    assert read[0] == len(ds)
    # another measure has its own values; the same scans loaded again are read again
    np.testing.assert_array_equal(tissue_intensity(ds, "total"), ds.to_array().mean(axis=1))
    assert read[0] == 2 * len(ds)
    tissue_intensity(load_dataset(demo_dir), "amide_i")
    assert read[0] == 3 * len(ds)


def test_fit_reads_the_tissue_measure_once(demo_dir, monkeypatch):
    """The rule, emsc's reference, tissue_only's selection and the residual model's sample all need the training
    pixels' tissue measure: read from the scans once (each is a pass over the data, minutes on data larger than
    memory), the validation pixels once."""
    read = _read_counter(monkeypatch)
    train, val = load_dataset(demo_dir, split="normal_train"), load_dataset(demo_dir, split="normal_val")
    vae = SpectraVAE(preprocess="emsc", tissue_only=True, hidden_dims=(16, 8), epochs=1, patience=None, seed=0,
                     verbose=False).fit(train, validation=val)
    assert read[0] == len(train) + len(val)
    # and the rule is the one a fresh read gives
    assert vae.tissue_rule_ == TissueRule.fit(load_dataset(demo_dir, split="normal_train"))


def test_threshold_can_be_set_or_switched_off(demo):
    assert TissueRule.fit(demo, "none").mask(demo).all()
    fixed = TissueRule.fit(demo, 0.05)
    assert fixed.threshold == 0.05 and "set by the user" in fixed.how
    np.testing.assert_array_equal(fixed.mask(demo), tissue_intensity(demo, "amide_i") > 0.05)
    assert parse_tissue_threshold(" AUTO ") == "auto" and parse_tissue_threshold("0.1") == 0.1
    for bad in ("half", float("nan"), float("inf"), True, [0.1]):
        with pytest.raises(DataError, match="tissue_threshold"):
            parse_tissue_threshold(bad)


def test_background_threshold_sits_between_noise_and_thin_tissue():
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.001, 5000)
    tissue = rng.uniform(0.03, 0.6, 3000)  # thin edges down to 30 noise s.d.
    threshold, how = background_threshold(np.concatenate([noise, tissue]))
    assert 0.005 < threshold < 0.03, how
    # one tissue class only (a cropped scan): no background, nothing is cut away
    assert background_threshold(rng.uniform(0.2, 0.8, 4000))[0] == -math.inf


def test_model_fits_its_rule_on_raw_training_pixels_and_keeps_it_in_the_checkpoint(fitted, tmp_path):
    vae, train, _, test, _ = fitted
    assert vae.tissue_rule_ == TissueRule.fit(train)
    path = vae.save(tmp_path / "m.pt")
    loaded = SpectraVAE.load(path)
    assert loaded.tissue_rule_ == vae.tissue_rule_
    np.testing.assert_array_equal(loaded.tissue_mask(test), vae.tissue_rule_.mask(test))
    # a preprocessed view is masked by its raw spectra, identically
    np.testing.assert_array_equal(loaded.tissue_mask(loaded.prepare(test)), loaded.tissue_mask(test))


def test_tissue_only_training_on_snv_keeps_background_out_of_training(demo_dir):
    train = load_dataset(demo_dir, split="normal_train")
    vae = SpectraVAE(hidden_dims=(16,), epochs=1, preprocess="snv", tissue_only=True, verbose=False).fit(train)
    mask = vae.tissue_rule_.mask(train)
    assert vae.normaliser_.n_samples_ == int(mask.sum()) < len(train)
    with pytest.warns(UserWarning, match="tissue_only=True"):
        SpectraVAE(hidden_dims=(16,), epochs=1, preprocess="snv", verbose=False).fit(train)
