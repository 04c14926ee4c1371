"""Calibration that carries to new scans, the scan-level limit, the latent density, and their checks."""

import copy
import dataclasses

import numpy as np
import pytest
import torch

from spectra_vae import DataError, SpectraVAE, load_dataset
from spectra_vae.anomaly.calibration import calibrate_values, check_rate, odd_scans
from spectra_vae.anomaly.latent import LatentDensity
from spectra_vae.anomaly.monitor import Monitor
from spectra_vae.anomaly.mspc import Subspace
from spectra_vae.anomaly.scans import ScanLimit
from spectra_vae.anomaly.tails import tail_from_dict
from spectra_vae.workflow import check_parameter


def toy_monitor() -> Monitor:
    sub = Subspace(np.zeros(3), np.eye(3)[:1], np.ones(1), np.ones(3))
    return Monitor(sub, ("t2", "q"), {}, "")


def scans_that_differ(n_scans, pixels=3000, spread=0.1, seed=0):
    """Per pixel (t2, q) of normal scans whose scale differs from scan to scan (a random effect)."""
    rng = np.random.default_rng(seed)
    scale = np.exp(spread * rng.standard_normal(n_scans))
    ids = np.repeat(np.arange(n_scans), pixels)
    t2 = rng.chisquare(3, size=len(ids)) * scale[ids]
    q = rng.chisquare(20, size=len(ids)) * scale[ids]
    coords = np.c_[ids, (np.arange(len(ids)) % pixels) // 50, np.arange(len(ids)) % 50]
    return {"t2": t2, "q": q}, ids, coords


def test_cross_conformal_threshold_flags_the_nominal_rate_of_new_scans_on_average():
    rate = 0.01
    new, new_ids, _ = scans_that_differ(400, pixels=500, seed=99)
    held, pooled = [], []
    for seed in range(20):
        values, ids, coords = scans_that_differ(5, seed=seed)
        m = calibrate_values(toy_monitor(), values, ids, coords, rate)
        s = m.score(new)
        held.append(np.mean([np.mean(s[new_ids == k] > m.threshold) for k in range(400)]))
        one = calibrate_values(toy_monitor(), values, np.zeros_like(ids), coords, rate)  # one pooled quantile
        pooled.append(np.mean(one.score(new) > one.threshold))
        assert set(m.calibration["held_out_fraction"]) == {str(k) for k in range(5)}
        assert m.scan_limit is not None and m.scan_limit.spread_known and m.scan_limit.scans == 5
    # each scan judged by a threshold the others set: new scans' mean rate is the nominal one
    assert abs(np.mean(held) - rate) < 0.2 * rate
    assert abs(np.mean(held) - rate) < abs(np.mean(pooled) - rate)


def test_scan_limit_from_normal_scans_spread_calls_the_nominal_share_of_new_normal_scans():
    rng = np.random.default_rng(1)

    def normal_scans(k):  # flagged counts of normal scans whose rate varies between scans
        p = np.sin(np.arcsin(np.sqrt(0.01)) + 0.03 * rng.standard_normal(k)) ** 2
        return rng.binomial(2000, p), np.full(k, 2000)

    x, n = normal_scans(40)
    limit = ScanLimit.fit(x, n, design=1.0, level=0.01)
    assert limit.between > 0 and limit.df == 39
    new_x, new_n = normal_scans(20000)
    called = new_x / new_n > limit.limit(2000)
    assert 0.003 < called.mean() < 0.03
    within = ScanLimit.within_one_scan(0.01, 1.0, 0.01)  # the spread between scans left out
    assert (new_x / new_n > within.limit(2000)).mean() > 3 * called.mean()
    few = ScanLimit.fit(x[:3], n[:3], design=1.0, level=0.01)  # three scans: Student's t with 2 df, wider
    assert few.df == 2 and few.quantile(0.01) > 2 * limit.quantile(0.01)
    lo, hi = limit.interval(2000, 0.9)
    assert lo < 0.01 < hi and np.mean((new_x / new_n >= lo) & (new_x / new_n <= hi)) > 0.8
    assert ScanLimit.from_dict(limit.to_dict()) == limit
    with pytest.raises(ValueError, match="at least 3"):
        ScanLimit.fit(x[:2], n[:2], 1.0)


def test_a_calibration_scan_unlike_the_others_is_named():
    values, ids, coords = scans_that_differ(6, spread=0.02, seed=3)
    odd = ids == 4
    values["q"][odd] *= 1.6  # one scan's tissue far from the others': not normal, or another population
    m = calibrate_values(toy_monitor(), values, ids, coords, 0.01)
    assert odd_scans(m) == ["4"]
    clean, clean_ids, clean_coords = scans_that_differ(6, spread=0.02, seed=3)
    assert odd_scans(calibrate_values(toy_monitor(), clean, clean_ids, clean_coords, 0.01)) == []


@pytest.mark.parametrize("bad", [0, 0.5, 0.6, -0.1, float("nan"), "0.01", True, None, [0.01]])
def test_false_positive_rates_must_be_numbers_below_one_half(bad):
    with pytest.raises(DataError, match="false_positive_rate"):
        check_rate(bad)
    assert check_rate(0.49) == 0.49 and check_rate(np.float32(0.01)) == pytest.approx(0.01)
    # notebook 05's parameter table holds the same range
    with pytest.raises(DataError):
        check_parameter("false_positive_rate", 0.5)
    assert check_parameter("false_positive_rate", 0.01) == 0.01


def test_calibrate_refuses_bad_rates_empty_data_and_tissue_labelled_abnormal(fitted, demo_dir):
    vae, _, val, _, _ = fitted
    vae = copy.deepcopy(vae)  # the fixture is shared: the last call below calibrates it
    with pytest.raises(DataError, match="false_positive_rate"):
        vae.calibrate(val, false_positive_rate="1%")
    with pytest.raises(DataError, match="scan_false_positive_rate"):
        vae.calibrate(val, scan_false_positive_rate=2)
    with pytest.raises(DataError, match="no pixels"):
        vae.calibrate(val.select_pixels(np.zeros(0, np.int64)))
    abnormal = load_dataset(demo_dir, split="abnormal")
    with pytest.raises(DataError, match=r"labelled \['paraffin', 'tumour'\]"):
        vae.calibrate(abnormal)
    # the same scans pass when the user says tumour and paraffin count as normal here
    with pytest.warns(UserWarning):
        vae.calibrate(abnormal, normal_labels=("background", "stroma", "epithelium", "tumour", "paraffin"))


def test_one_scan_calibration_warns_what_it_cannot_promise(fitted):
    vae, _, val, _, _ = fitted
    vae = copy.deepcopy(vae)  # the fixture is shared: this test changes the model
    with pytest.warns(UserWarning, match=r"calibrated on 1 normal scan\(s\).*by construction.*at least 3"):
        vae.calibrate(val, false_positive_rate=0.05)
    m = vae.monitor_
    assert not m.scan_limit.spread_known and "held_out_fraction" not in m.calibration
    assert np.isclose(m.calibration["flagged_fraction"], 0.05, atol=0.01)


def test_calibration_on_several_scans_is_scan_wise_and_travels_in_a_weights_only_checkpoint(fitted, demo_dir, tmp_path):
    vae, _, _, _, _ = fitted
    vae = copy.deepcopy(vae)  # the fixture is shared: this test changes the model
    normal = load_dataset(demo_dir, split=["normal_train", "normal_val", "normal_test"])
    vae.calibrate(normal, false_positive_rate=0.05)
    m = vae.monitor_
    assert sorted(m.calibration["held_out_fraction"]) == sorted(normal.scans)
    assert m.scan_limit.spread_known and m.scan_limit.scans == len(normal.scans) >= 3
    assert m.threshold == pytest.approx(-np.log10(m.calibration["p_threshold"]))
    lo, hi = m.calibration["expected_fraction"]
    assert 0 <= lo <= hi <= 1
    path = vae.save(tmp_path / "cal.pt")
    payload = torch.load(path, weights_only=True)  # plain content only
    assert payload["monitor"]["combination"] == m.combination
    loaded = SpectraVAE.load(path)
    assert loaded.monitor_.scan_limit == m.scan_limit and loaded.monitor_.threshold == m.threshold
    np.testing.assert_array_equal(loaded.scan_scores(normal)["scan threshold"],
                                  vae.scan_scores(normal)["scan threshold"])


def test_a_monitor_saved_before_combinations_had_a_null_keeps_its_flags():
    rng = np.random.default_rng(2)
    values = {"t2": rng.chisquare(3, 5000), "q": rng.chisquare(10, 5000), "inside": rng.chisquare(3, 5000)}
    tails = {k: tail_from_dict({"g": 1.0, "h": h}) for k, h in (("t2", 3), ("q", 10), ("inside", 3))}
    old_score = -2 * sum(tails[k].log_sf(values[k]) for k in ("inside", "t2", "q"))
    new = toy_monitor()
    old = {**new.to_dict(), "statistics": ["inside", "t2", "q"], "tails": {k: {"g": 1.0, "h": h} for k, h in
           (("t2", 3), ("q", 10), ("inside", 3))}, "threshold": float(np.quantile(old_score, 0.99))}
    for key in ("combination", "tail_kind", "latent", "scan_limit", "sample_digest"):
        old.pop(key)
    m = Monitor.from_dict(old)
    assert m.combination == "fisher" and "subspace" not in m.available  # no tail for it until calibrated
    np.testing.assert_array_equal(m.score(values) > m.threshold, old_score > old["threshold"])


# -- the latent density --------------------------------------------------------------------------
def test_latent_density_chooses_its_components_by_bic_and_is_a_mahalanobis_distance_with_one():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]])
    # 4 500 points, fewer than MAX_FIT_POINTS: the mixture is fitted on all of them
    z = np.concatenate([c + rng.standard_normal((1500, 2)) for c in centres])
    density = LatentDensity.fit(z)
    assert density.n_components == 3 and min(density.bic, key=density.bic.get) == 3
    assert density.statistic(np.array([[3.0, 3.0]]))[0] > density.statistic(np.array([[6.0, 0.0]]))[0]
    one = LatentDensity.fit(z, n_components=1)
    mean, cov = z.mean(0), np.cov(z, rowvar=False, bias=True)
    d = z[:50] - mean
    mahalanobis = np.einsum("ij,jk,ik->i", d, np.linalg.inv(cov), d)
    assert np.ptp(one.statistic(z[:50]) - 0.5 * mahalanobis) < 1e-3  # −log N(z) = ½ d²(z) + a constant
    again = LatentDensity.from_dict(density.to_dict())
    np.testing.assert_allclose(again.statistic(z[:10]), density.statistic(z[:10]))


def test_the_latent_statistic_is_the_negative_log_density_of_the_latent_means(fitted, demo_dir):
    vae, train, _, test, _ = fitted
    vae = copy.deepcopy(vae)  # the fixture is shared: this test changes the model
    m = vae.monitor_
    assert m.latent is not None
    np.testing.assert_allclose(vae.anomaly_score(test, "latent"), m.latent.statistic(vae.transform(test)),
                               rtol=1e-5, atol=1e-5)
    combined = vae.anomaly_score(test, "min_p:t2+q+latent")
    assert combined.shape == (len(test),) and np.isfinite(combined).all()
    with pytest.raises(DataError, match="Qin"):
        vae.fit_anomaly_model(train, statistics=("t2", "latent"), combination="qin")
    plain = dataclasses.replace(m, latent=None)
    assert "latent" not in plain.available
