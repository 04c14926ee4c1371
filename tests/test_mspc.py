"""MSPC machinery checked against its definitions on synthetic data with known answers."""

import numpy as np
import pytest
from scipy import stats
from sklearn.covariance import LedoitWolf

from spectra_vae.anomaly.mspc import Moments, Subspace, components_above_noise, ledoit_wolf
from spectra_vae.anomaly.tails import (
    EmpiricalTail,
    JacksonMudholkar,
    ScaledChi2,
    chi2_log_sf,
    fisher,
    fit_tail,
    log_fisher_p,
    log_min_p,
    qin_index,
    tail_from_dict,
    to_score,
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


# -- tails and combinations ---------------------------------------------------------------------
def quadratic_form(eigenvalues, n=400_000, seed=3):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, len(eigenvalues))) ** 2) @ np.asarray(eigenvalues)


def test_jackson_mudholkar_limit_holds_its_level_on_gaussian_residuals_with_known_eigenvalues():
    lam = np.linspace(2.0, 0.1, 40)  # many comparable eigenvalues (h0 ≈ 0.25), as outside a residual subspace
    q = quadratic_form(lam)
    jm, box = JacksonMudholkar.from_eigenvalues(lam), ScaledChi2.from_eigenvalues(lam)
    assert np.isclose(jm.theta1, lam.sum()) and np.isclose(jm.theta2, (lam**2).sum()) and jm.h0 > 0
    for p in (0.05, 0.01, 0.001):
        assert np.isclose((q > jm.quantile(p)).mean(), p, rtol=0.15)
        assert np.isclose(np.exp(jm.log_sf(np.array([jm.quantile(p)]))[0]), p, rtol=1e-6)
    # Box's two moments, checked against it: exact mean and variance, a heavier far tail than claimed
    assert np.isclose(box.g * box.h, lam.sum()) and np.isclose(2 * box.g**2 * box.h, 2 * (lam**2).sum())
    assert (q > box.quantile(0.001)).mean() > 1.1 * 0.001
    # a few dominant eigenvalues (h0 < 0): JM errs on the safe side, Box flags more than its level
    lam = np.r_[np.linspace(1.0, 0.3, 8), np.full(60, 0.1)]
    q = quadratic_form(lam)
    jm, box = JacksonMudholkar.from_eigenvalues(lam), ScaledChi2.from_eigenvalues(lam)
    assert jm.h0 < 0 and (q > jm.quantile(0.01)).mean() < 0.01 < (q > box.quantile(0.01)).mean()


def test_empirical_tail_is_the_data_s_survival_inside_and_exponential_beyond():
    rng = np.random.default_rng(4)
    values = rng.exponential(2.0, size=100_000)
    tail = EmpiricalTail.fit(values)
    for p in (0.5, 0.1, 0.02):
        x = np.quantile(values, 1 - p)
        assert np.isclose(np.exp(tail.log_sf(np.array([x]))[0]), p, rtol=0.05)
        assert np.isclose(tail.quantile(p), x, rtol=0.02)
    # beyond the upper 1 %: the exponential fitted to the exceedances, here the true tail
    far = np.array([2.0 * np.log(1e5), 2.0 * np.log(1e8)])
    np.testing.assert_allclose(tail.log_sf(far), np.log([1e-5, 1e-8]), rtol=0.05)
    assert np.isclose(tail.quantile(1e-6), 2.0 * np.log(1e6), rtol=0.05)
    assert tail.log_sf(np.array([-1.0]))[0] == 0.0 and (np.diff(tail.log_sf(np.linspace(0, 60, 500))) <= 0).all()
    again = tail_from_dict(tail.to_dict())
    np.testing.assert_array_equal(again.log_sf(far), tail.log_sf(far))


def test_min_p_and_fisher_give_uniform_p_values_for_independent_statistics():
    rng = np.random.default_rng(5)
    log_p = np.log(rng.uniform(size=(2, 400_000)))
    for combined in (log_min_p(log_p), log_fisher_p(log_p)):
        for level in (0.1, 0.01, 0.001):
            assert np.isclose((combined < np.log(level)).mean(), level, rtol=0.12)
    # Šidák: 1 − (1 − p)² for the smaller p, finite where p underflows
    np.testing.assert_allclose(log_min_p([np.log([0.01]), np.log([0.5])]), np.log(1 - 0.99**2))
    np.testing.assert_allclose(log_min_p([np.array([-2000.0]), np.array([0.0])]), np.log(2) - 2000)
    assert np.isfinite(to_score(log_fisher_p([np.array([-5000.0]), np.array([-3.0])]))).all()


def test_qin_index_divides_each_statistic_by_its_limit():
    np.testing.assert_allclose(qin_index([np.array([2.0, 4.0]), np.array([1.0, 3.0])], [2.0, 3.0]), [4 / 3, 3.0])


def test_every_tail_reads_back_from_plain_numbers_and_old_monitors_read_as_box():
    lam = np.array([2.0, 1.0, 0.5])
    for tail in (JacksonMudholkar.from_eigenvalues(lam), ScaledChi2(0.5, 3.0), EmpiricalTail.fit(np.arange(500.0))):
        d = tail.to_dict()
        assert all(isinstance(v, (str, float, list)) for v in d.values())
        assert tail_from_dict(d) == tail
    assert tail_from_dict({"g": 0.5, "h": 3.0}) == ScaledChi2(0.5, 3.0)
    with pytest.raises(ValueError, match="eigenvalues"):
        fit_tail(np.ones(10), "jm")
