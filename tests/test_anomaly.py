import numpy as np
import pandas as pd
import pytest

from spectra_vae import SpectraVAE, anomaly, load_dataset


def test_rx_is_the_squared_mahalanobis_distance():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 4)) @ np.array([[2, 0, 0, 0], [1, 1, 0, 0], [0, 0, 3, 0], [0, 0, 1, 0.5]])
    rx = anomaly.RXDetector(ridge=0).fit(x)
    y = rng.normal(size=(5, 4))
    cov = np.cov(x, rowvar=False)
    d = y - x.mean(0)
    expected = np.einsum("ij,jk,ik->i", d, np.linalg.inv(cov), d)
    assert np.allclose(rx.score_samples(y), expected, rtol=1e-6)


def test_scores_are_per_pixel_deterministic_and_carry_coordinates(fitted):
    vae, _, _, test, _ = fitted
    f = vae.score_samples(test)
    assert list(f.columns[:3]) == ["scan", "row", "col"] and len(f) == len(test)
    assert (f.kl >= 0).all() and (f.reconstruction_error > 0).all()
    assert np.allclose(f.reconstruction_error, vae.reconstruction_error(test))
    a, b = vae.anomaly_score(test), vae.anomaly_score(test)
    assert np.array_equal(a, b)
    assert np.allclose(a, f.reconstruction_nll + vae.beta * f.kl)
    assert np.array_equal(vae.anomaly_score(test, "kl"), f.kl.to_numpy())
    with pytest.raises(ValueError, match="method must be one of"):
        vae.anomaly_score(test, "magic")


def test_threshold_flags_the_chosen_fraction_of_normal_pixels():
    s = np.random.default_rng(0).exponential(size=10000)
    t = anomaly.threshold_from_normal(s, 0.95)
    assert np.isclose((s > t).mean(), 0.05, atol=0.002)


def test_evaluate_ranks_a_perfect_score_first_and_ignores_unknown_labels():
    truth = np.array([0, 0, 1, 1, -1])
    table = anomaly.evaluate({"perfect": np.array([0, 1, 2, 3, 100.0]), "inverse": np.array([3, 2, 1, 0, -5.0])}, truth)
    assert table.index[0] == "perfect" and table.loc["perfect", "AUROC"] == 1.0 and table.loc["inverse", "AUROC"] == 0.0
    assert "A baseline wins" in anomaly.verdict(table, "inverse")
    assert "The VAE separates best" in anomaly.verdict(table.rename(index={"perfect": "VAE"}))


def test_vae_trained_on_normal_tissue_scores_tumour_pixels_higher(demo_dir):
    """On the tiny demo, tumour pixels of abnormal scans outscore their normal tissue (AUROC well above chance)."""
    train = load_dataset(demo_dir, split="normal_train")
    vae = SpectraVAE(epochs=15, verbose=False).fit(train, validation=load_dataset(demo_dir, split="normal_val"))
    ab = load_dataset(demo_dir, split="abnormal")
    scores = anomaly.baseline_scores(vae, train, ab)
    table = anomaly.evaluate(scores, anomaly.ground_truth_anomaly(ab), vae.tissue_mask(ab))
    assert set(table.index) == {"VAE", "PCA (2 comp.) error", "RX (Mahalanobis)"}
    assert table.loc["VAE", "AUROC"] > 0.75, table
    flagged = anomaly.flagged_fraction(ab, scores["VAE"], np.quantile(scores["VAE"], 0.5))
    assert isinstance(flagged, pd.DataFrame) and list(flagged.index) == ab.scans
