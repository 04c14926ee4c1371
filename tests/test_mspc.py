"""MSPC machinery checked against its definitions on synthetic data with known answers."""

import numpy as np
import pytest
from scipy import stats
from sklearn.covariance import LedoitWolf

from spectra_vae.anomaly.mspc import (
    Moments,
    ScaledChi2,
    Subspace,
    chi2_log_sf,
    components_above_noise,
    fisher,
    ledoit_wolf,
)


def low_rank_data(n=20000, c=40, rank=3, noise=0.1, seed=0):
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.normal(size=(c, rank)))
    scales = np.array([3.0, 2.0, 1.0])[:rank]
    x = (rng.normal(size=(n, rank)) * scales) @ basis.T + noise * rng.normal(size=(n, c)) + 5.0
    return x, basis, scales**2 + noise**2


def test_streamed_moments_give_the_mean_and_covariance_of_all_pixels():
    x, _, _ = low_rank_data(n=3000)
    m = Moments.of([x[:1000], x[1000:2500], x[2500:]])
    np.testing.assert_allclose(m.mean, x.mean(0), atol=1e-10)
    np.testing.assert_allclose(m.covariance(ddof=1), np.cov(x, rowvar=False), atol=1e-9)
    again = Moments.from_array(m.as_array(), x.shape[1])
    np.testing.assert_allclose(again.covariance(), m.covariance())
    assert np.isclose(m.centred_fourth(), (((x - x.mean(0)) ** 2).sum(1) ** 2).sum(), rtol=1e-9)


def test_ledoit_wolf_from_streamed_sums_equals_scikit_learn():
    x, _, _ = low_rank_data(n=300, c=60)
    cov, shrinkage = ledoit_wolf(Moments.of([x[:100], x[100:]]))
    reference = LedoitWolf().fit(x)
    assert np.isclose(shrinkage, reference.shrinkage_, rtol=1e-9)
    np.testing.assert_allclose(cov, reference.covariance_, atol=1e-12)


def test_subspace_recovers_the_principal_directions_and_counts_them_above_the_noise():
    x, basis, variances = low_rank_data()
    sub = Subspace.fit(Moments.of([x]), "auto")
    assert sub.n_components == 3
    # principal angles between the fitted and the true subspace are ~0
    cosines = np.linalg.svd(sub.components_ @ basis, compute_uv=False)
    assert cosines.min() > 0.999
    np.testing.assert_allclose(sub.variances_, variances, rtol=0.05)
    assert components_above_noise(np.r_[[50.0, 20.0], np.ones(100)], 100000) == 2


def test_statistics_follow_their_definitions():
    x, _, _ = low_rank_data(n=5000)
    sub = Subspace.fit(Moments.of([x]), 3)
    y = x[:7] + 0.5
    e = y - sub.mean_
    proj = e @ sub.components_.T
    s = sub.statistics(y)
    np.testing.assert_allclose(s["inside"], (proj**2).sum(1))
    np.testing.assert_allclose(s["t2"], (proj**2 / sub.variances_).sum(1))
    np.testing.assert_allclose(s["q"], ((e - proj @ sub.components_) ** 2).sum(1), atol=1e-9)
    # on normal data T² in k directions is χ²_k on average
    assert np.isclose(sub.statistics(x)["t2"].mean(), 3.0, rtol=0.02)


def test_scaled_chi2_tail_recovers_a_known_distribution_and_its_quantiles():
    rng = np.random.default_rng(1)
    g, h = 0.7, 5.0
    values = g * rng.chisquare(h, size=200000)
    tail = ScaledChi2.fit(values)
    assert np.isclose(tail.g, g, rtol=0.02) and np.isclose(tail.h, h, rtol=0.02)
    for p in (0.05, 0.01, 0.001):
        assert np.isclose((values > tail.quantile(p)).mean(), p, rtol=0.1)
    np.testing.assert_allclose(np.exp(tail.log_sf(np.array([tail.quantile(0.01)]))), 0.01, rtol=1e-6)


def test_log_tail_stays_finite_and_continuous_far_beyond_double_precision():
    x = np.array([10.0, 500.0, 1400.0, 1500.0, 5000.0, 1e6])
    out = chi2_log_sf(x, 4.0)
    assert np.isfinite(out).all() and (np.diff(out) < 0).all()
    finite = np.isfinite(stats.chi2.logsf(x, 4.0))
    np.testing.assert_allclose(out[finite], stats.chi2.logsf(x[finite], 4.0))
    # the asymptotic branch joins scipy's where scipy is still finite
    assert np.isclose(chi2_log_sf(np.array([1400.0]), 4.0)[0], stats.chi2.logsf(1400.0, 4.0), rtol=1e-6)


def test_fisher_combination_of_independent_uniform_p_values_is_chi2_with_twice_the_count():
    rng = np.random.default_rng(2)
    p = rng.uniform(size=(2, 100000))
    combined = fisher(np.log(p))
    assert np.isclose(combined.mean(), 4.0, rtol=0.02) and np.isclose(combined.var(), 8.0, rtol=0.05)
    with pytest.raises(ValueError):
        ScaledChi2.fit(np.array([1.0]))
