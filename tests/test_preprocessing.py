import numpy as np
import pytest
from scipy.signal import savgol_filter

from spectra_vae import DataError, SpectraVAE, load_dataset
from spectra_vae.preprocessing import Preprocessor, parse

WN = np.linspace(950, 1800, 442)
RNG = np.random.default_rng(0)
X = (RNG.random((20, 442)) + np.linspace(0, 1, 442)).astype(np.float32)


def test_parse_reads_steps_arguments_and_defaults():
    steps = parse("cut(1000, 1700) | snv|savgol(11,2,1)|baseline")
    assert [str(s) for s in steps] == ["cut(1000,1700)", "snv", "savgol(11,2,1)", "baseline(2,50)"]
    with pytest.raises(DataError, match="unknown step 'smooth'"):
        parse("smooth")
    with pytest.raises(DataError, match="cut takes 2–2 arguments"):
        parse("cut(1000)")


def test_cut_keeps_the_channels_in_range():
    p = Preprocessor("cut(1000,1700)").fit(WN)
    keep = (WN >= 1000) & (WN <= 1700)
    assert np.array_equal(p.transform(X), X[:, keep]) and np.array_equal(p.output_wavenumbers_, WN[keep])


def test_resample_interpolates_linearly_onto_the_grid():
    p = Preprocessor("resample(1000,1700,4)").fit(WN)
    grid = np.arange(1000, 1702, 4.0)
    expected = np.stack([np.interp(grid, WN, row) for row in X])
    assert np.allclose(p.output_wavenumbers_, grid) and np.allclose(p.transform(X), expected, atol=1e-5)
    # a descending input axis lands on the same grid
    q = Preprocessor("resample(1000,1700,4)").fit(WN[::-1])
    assert np.allclose(q.transform(X[:, ::-1]), expected, atol=1e-5)


def test_snv_vector_and_amide1_match_their_definitions():
    snv = Preprocessor("snv").fit(WN).transform(X)
    assert np.allclose(snv, (X - X.mean(1, keepdims=True)) / X.std(1, keepdims=True), atol=1e-5)
    vec = Preprocessor("vector").fit(WN).transform(X)
    assert np.allclose(np.linalg.norm(vec, axis=1), 1, atol=1e-5)
    am = Preprocessor("amide1").fit(WN).transform(X)
    band = (WN >= 1600) & (WN <= 1700)
    assert np.allclose(am, X / X[:, band].max(1, keepdims=True), atol=1e-5)


def test_savgol_matches_scipy_smoothing_and_derivative():
    smooth = Preprocessor("savgol(11,3,0)").fit(WN).transform(X)
    assert np.allclose(smooth, savgol_filter(X, 11, 3, axis=1, mode="nearest"), atol=1e-5)
    d1 = Preprocessor("savgol(9,2,1)").fit(WN).transform(X)
    delta = WN[1] - WN[0]
    assert np.allclose(d1, savgol_filter(X, 9, 2, deriv=1, delta=delta, axis=1, mode="nearest"), atol=1e-5)


def test_baseline_removes_a_polynomial_under_a_peak():
    peak = np.exp(-0.5 * ((WN - 1650) / 15) ** 2)
    slope = 0.3 + 0.2 * (WN - 950) / 850 + 0.1 * ((WN - 1375) / 425) ** 2
    out = Preprocessor("baseline(2,100)").fit(WN).transform((peak + slope)[None, :].astype(np.float32))[0]
    assert np.abs(out - peak).max() < 0.03 and abs(out[np.argmax(peak)] - 1) < 0.03


def test_rubberband_subtracts_the_lower_convex_hull():
    x = np.linspace(0, 1, 9)
    y = np.array([1.0, 0.5, 0.8, 0.2, 0.9, 0.3, 0.4, 0.6, 1.2])
    out = Preprocessor("rubberband").fit(x).transform(y[None, :].astype(np.float32))[0]
    # lower hull by hand: (0.25, 0.8) and (0.5, 0.9) lie above it; every other point is a vertex
    hull = np.interp(x, [0, 0.125, 0.375, 0.625, 0.75, 0.875, 1.0], [1.0, 0.5, 0.2, 0.3, 0.4, 0.6, 1.2])
    assert np.allclose(out, y - hull, atol=1e-6) and (out >= -1e-6).all()
    peak = np.exp(-0.5 * ((WN - 1650) / 15) ** 2) + 0.2 + 0.3 * (WN - 950) / 850
    flat = Preprocessor("rubberband").fit(WN).transform(peak[None, :].astype(np.float32))[0]
    assert abs(flat.max() - 1) < 0.02 and abs(flat[0]) < 1e-6 and abs(flat[-1]) < 1e-6


def test_affine_and_baseline_steps_are_undone_exactly_others_refuse():
    p = Preprocessor("baseline|rubberband|snv|vector").fit(WN)
    y, undo = p.transform(X, return_inverse=True)
    assert p.invertible and np.allclose(p.inverse_transform(y, undo), X, atol=1e-4)
    q = Preprocessor("cut(1000,1700)").fit(WN)
    with pytest.raises(DataError, match="cannot be undone"):
        q.inverse_transform(q.transform(X), [])


def test_model_stores_preprocessing_and_applies_it_identically_after_loading(demo_dir, tmp_path):
    train = load_dataset(demo_dir, split="normal_train")
    test = load_dataset(demo_dir, split="normal_test")
    vae = SpectraVAE(hidden_dims=(32, 16), epochs=3, verbose=False, preprocess="cut(1000,1750)|snv").fit(train)
    assert vae.model_config_.n_channels == int(((WN >= 1000) & (WN <= 1750)).sum())
    again = SpectraVAE.load(vae.save(tmp_path / "m.pt"))
    assert again.preprocess == "cut(1000,1750)|snv"
    assert np.array_equal(again.transform(test), vae.transform(test))
    r = again.reconstruct(test)
    assert r.shape == (len(test), vae.model_config_.n_channels)
    assert np.array_equal(again.prepare(test).wavenumbers, vae.preprocessor_.output_wavenumbers_)
    with pytest.raises(DataError, match="cannot be undone"):
        again.reconstruct(test, original_units=True)


def test_invertible_preprocessing_reconstructs_in_original_units(demo_dir):
    ds = load_dataset(demo_dir, split="normal_train")
    # Vector normalisation turns noise-only background into unit vectors in random directions,
    # which nothing can reconstruct: as in practice, train on tissue pixels.
    tissue = ds.select_pixels(np.flatnonzero(ds.labels > 0))
    vae = SpectraVAE(hidden_dims=(64, 32), epochs=15, verbose=False, preprocess="vector").fit(tissue)
    x = tissue.to_array()
    r = vae.reconstruct(tissue, original_units=True)
    assert r.shape == x.shape
    assert np.sqrt(np.mean((r - x) ** 2)) < 0.2 * x.std()
    assert np.median(np.linalg.norm(vae.reconstruct(tissue), axis=1)) > 0.9
