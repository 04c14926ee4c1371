import numpy as np
import pytest

from spectra_vae import DataError, SpectraVAE
from spectra_vae.preprocess.normalise import Normaliser

X = np.random.default_rng(0).normal(2.0, [0.5, 1.0, 3.0], size=(1000, 3))


def test_standard_gives_zero_mean_unit_variance_per_channel():
    z = Normaliser("standard").fit(X).transform(X)
    assert np.allclose(z.mean(0), 0, atol=1e-5) and np.allclose(z.std(0), 1, atol=1e-5)


def test_global_standard_centres_channels_and_keeps_their_relative_spread():
    n = Normaliser("global_standard").fit(X)
    z = n.transform(X)
    assert np.allclose(z.mean(0), 0, atol=1e-5)
    assert np.isclose((z**2).mean(), 1, atol=1e-5)
    assert np.allclose(z.std(0) / z.std(0)[0], X.std(0) / X.std(0)[0], rtol=1e-4)


def test_minmax_per_channel_maps_training_data_onto_unit_interval():
    z = Normaliser("minmax").fit(X).transform(X)
    assert np.allclose(z.min(0), 0, atol=1e-6) and np.allclose(z.max(0), 1, atol=1e-6)


def test_global_minmax_is_the_prototypes_single_min_and_max():
    n = Normaliser("global_minmax").fit(X)
    assert np.allclose(n.offset_, X.min()) and np.allclose(n.scale_, X.max() - X.min())
    z = n.transform(X)
    assert np.isclose(z.min(), 0, atol=1e-6) and np.isclose(z.max(), 1, atol=1e-6)


def test_streamed_fit_equals_one_pass_fit_and_inverse_round_trips():
    for method in ("standard", "global_standard", "minmax", "global_minmax"):
        a = Normaliser(method).fit(X)
        b = Normaliser(method).fit(np.array_split(X, 7))
        assert np.allclose(a.offset_, b.offset_) and np.allclose(a.scale_, b.scale_)
        assert np.allclose(a.inverse_transform(a.transform(X)), X, atol=1e-5)
        c = Normaliser.from_dict(a.to_dict())
        assert np.allclose(c.transform(X), a.transform(X))


def test_constant_data_cannot_be_normalised():
    with pytest.raises(DataError, match="constant"):
        Normaliser("minmax").fit(np.full((10, 4), 0.3))


def test_model_normaliser_is_fitted_on_training_pixels_only(fitted, demo):
    vae, train, *_ = fitted
    assert np.allclose(vae.normaliser_.offset_, train.to_array().astype(np.float64).mean(0), atol=1e-6)
    assert not np.allclose(vae.normaliser_.offset_, demo.to_array().astype(np.float64).mean(0), atol=1e-4)
    assert vae.normaliser_.n_samples_ == len(train)
    assert SpectraVAE(reconstruction="bce").normalisation_method() == "minmax"
