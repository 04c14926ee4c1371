"""Scores smoothed over a pixel's tissue neighbourhood: the definition, the calibration on that score,
the checkpoint, and what refuses it."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch

from spectra_vae import DataError, SpectraVAE, anomaly, load_dataset
from spectra_vae.anomaly.spatial import check_smoothing, smooth_scores
from spectra_vae.workflow.parameters import check_parameter


def brute_force(scores, coords, include, size):
    """The definition, pixel by pixel: the mean over the included pixels of the same scan within size // 2
    rows and columns; the others keep their own."""
    out = scores.astype(float).copy()
    half = size // 2
    for i in np.flatnonzero(include):
        s, r, c = coords[i]
        near = (include & (coords[:, 0] == s) & (np.abs(coords[:, 1] - r) <= half)
                & (np.abs(coords[:, 2] - c) <= half))
        out[i] = scores[near].mean()
    return out


@pytest.mark.parametrize("size", [1, 3, 5])
def test_smoothed_scores_follow_their_definition(size):
    rng = np.random.default_rng(size)
    coords = np.array([(s, r, c) for s in range(3) for r in range(7 + s) for c in range(5)])
    keep = rng.random(len(coords)) < 0.8  # pixels excluded for NaN are simply absent
    coords = coords[keep][rng.permutation(int(keep.sum()))]  # any order
    scores = rng.gamma(2.0, size=len(coords))
    include = rng.random(len(coords)) < 0.7  # tissue
    got = smooth_scores(scores, coords, include, size)
    np.testing.assert_allclose(got, brute_force(scores, coords, include, size))
    np.testing.assert_array_equal(got[~include], scores[~include])  # background keeps its own score


@pytest.mark.parametrize("bad", [0, 2, 4, -3, 3.0, "3", True])
def test_smoothing_must_be_one_or_an_odd_window(bad):
    with pytest.raises(DataError, match="smoothing"):
        check_smoothing(bad)
    assert check_smoothing(np.int64(5)) == 5
    if bad in (2, 4):  # notebook 05's parameter says the same before any notebook runs
        with pytest.raises(DataError, match="odd"):
            check_parameter("smoothing", bad)


def test_a_calibration_with_smoothing_thresholds_the_smoothed_score_and_keeps_it_in_the_checkpoint(
        fitted, demo_dir, tmp_path):
    vae = copy.deepcopy(fitted[0])
    normal = load_dataset(demo_dir, split=["normal_train", "normal_val", "normal_test"])
    abnormal = load_dataset(demo_dir, split="abnormal")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a tiny demo's calibration scans
        vae.calibrate(normal, false_positive_rate=0.05, smoothing=3)
    m = vae.monitor_
    assert m.smoothing == 3
    f = vae.score_samples(abnormal)
    tissue = f["tissue"].to_numpy()
    np.testing.assert_allclose(f["anomaly_score"], smooth_scores(f["pixel_score"].to_numpy(),
                                                                 abnormal.coords, tissue, 3))
    np.testing.assert_array_equal(f["flagged"], tissue & (f["anomaly_score"] > m.threshold))
    assert f.loc[tissue, "anomaly_score"].var() < f.loc[tissue, "pixel_score"].var()  # averaging calms the noise
    np.testing.assert_allclose(vae.anomaly_score(abnormal), f["anomaly_score"])
    np.testing.assert_allclose(vae.anomaly_score(abnormal, smoothing=1), f["pixel_score"])
    # any score can be smoothed the same way
    q = vae.anomaly_score(abnormal, "q")
    np.testing.assert_allclose(vae.anomaly_score(abnormal, "q", smoothing=5), smooth_scores(q, abnormal.coords,
                                                                                              tissue, 5))
    # the calibration set its threshold on the smoothed score of the calibration tissue
    cal = vae.score_samples(normal)
    flagged_cal = cal.loc[cal["tissue"], "flagged"].mean()
    assert 0.0 < flagged_cal < 0.2
    loaded = SpectraVAE.load(vae.save(tmp_path / "smoothed.pt"))
    assert loaded.monitor_.smoothing == 3
    assert torch.load(tmp_path / "smoothed.pt", weights_only=True)["monitor"]["smoothing"] == 3
    np.testing.assert_allclose(loaded.anomaly_score(abnormal), f["anomaly_score"], rtol=1e-5, atol=1e-6)


def test_the_baselines_get_the_same_smoothing(fitted, demo_dir):
    vae, train, val, _, _ = fitted
    vae = copy.deepcopy(vae).fit_anomaly_model(train, val)  # its own residual model, whatever other tests did
    abnormal = load_dataset(demo_dir, split="abnormal")
    plain = anomaly.baseline_scores(vae, train, abnormal, normal_calibration=val)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        vae.calibrate(val, false_positive_rate=0.05, smoothing=3)
    smoothed = anomaly.baseline_scores(vae, train, abnormal, normal_calibration=val)
    tissue = vae.tissue_mask(abnormal)
    for name in plain:
        np.testing.assert_allclose(smoothed[name], smooth_scores(plain[name], abnormal.coords, tissue, 3),
                                   rtol=1e-6, atol=1e-9, err_msg=name)


def test_smoothing_refuses_tables_of_spectra(fitted):
    vae = copy.deepcopy(fitted[0])
    table = load_dataset(np.abs(np.random.default_rng(0).normal(0.5, 0.1, (200, vae.model_config_.n_channels))),
                         wavenumbers=vae.wavenumbers_)
    with pytest.raises(DataError, match="table"):
        vae.calibrate(table, smoothing=3)
    with pytest.raises(DataError, match="table"):
        vae.anomaly_score(table, smoothing=3)


def test_a_sampled_calibration_scores_each_counted_pixel_over_its_whole_window(fitted, demo_dir, monkeypatch):
    """Large calibration data are sampled in blocks; with smoothing, the blocks' neighbours are scored too, so
    a pixel on a block's first or last row is averaged over its whole tissue window, not a cut one."""
    from spectra_vae.anomaly import calibration as calibration_module
    from spectra_vae.anomaly import monitor as monitor_module

    vae = copy.deepcopy(fitted[0])
    normal = load_dataset(demo_dir, split=["normal_train", "normal_val", "normal_test"])
    tissue = normal.select_pixels(np.flatnonzero(vae.tissue_mask(normal)))
    monkeypatch.setattr(monitor_module, "MONITOR_MAX_PIXELS", len(tissue) // 3)
    monkeypatch.setattr(monitor_module, "MONITOR_BLOCK", 60)
    positions = monitor_module.block_positions(tissue)
    every, counted = monitor_module.with_neighbours(tissue, positions, 3)
    # the definition: the sample, and every tissue pixel within one row and column of one of its pixels
    c = tissue.coords
    near = np.zeros(len(tissue), bool)
    for s, r, col in c[positions]:
        near |= (c[:, 0] == s) & (np.abs(c[:, 1] - r) <= 1) & (np.abs(c[:, 2] - col) <= 1)
    np.testing.assert_array_equal(every, np.flatnonzero(near))
    np.testing.assert_array_equal(every[counted], positions)
    assert len(every) > len(positions)  # blocks end mid-scan: their edges have neighbours outside them

    seen = {}
    real = calibration_module.calibrate_values

    def spy(monitor, values, scan_ids, coords, *args, counted=None, **kwargs):
        seen.update(values=values, coords=coords, counted=counted)
        return real(monitor, values, scan_ids, coords, *args, counted=counted, **kwargs)

    monkeypatch.setattr(monitor_module, "calibrate_values", spy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        vae.calibrate(normal, false_positive_rate=0.05, smoothing=3)
    m = vae.monitor_
    assert seen["counted"] is not None and int(seen["counted"].sum()) == len(positions)
    assert m.calibration["pixels"] == len(positions)  # only the sample is counted
    # each counted pixel's smoothed score is the one it has among all the tissue
    whole = vae.score_samples(normal)
    full = whole.loc[whole["tissue"], "anomaly_score"].to_numpy()
    sampled = smooth_scores(m.score(seen["values"]), seen["coords"], np.ones(len(seen["coords"]), bool), 3)
    np.testing.assert_allclose(np.sort(sampled[seen["counted"]]), np.sort(full[positions]), rtol=1e-6, atol=1e-9)
