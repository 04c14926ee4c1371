"""Anomaly scores, calibration, flags and baselines: definitions, round trips and fairness."""

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from spectra_vae import DataError, SpectraVAE, anomaly, load_dataset
from spectra_vae.anomaly.monitor import Monitor, noise_level, residuals
from spectra_vae.anomaly.mspc import Moments, Subspace, components_above_noise
from spectra_vae.io.demo import CLASS_COMPOSITION, COMPONENTS, NOISE_SIGMA, component_spectra, demo_wavenumbers


def test_rx_with_ledoit_wolf_by_default_and_plain_mahalanobis_without_shrinkage():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 4)) @ np.array([[2, 0, 0, 0], [1, 1, 0, 0], [0, 0, 3, 0], [0, 0, 1, 0.5]])
    y = rng.normal(size=(5, 4))
    plain = anomaly.RXDetector(shrinkage=0).fit(x)
    d = y - x.mean(0)
    expected = np.einsum("ij,jk,ik->i", d, np.linalg.inv(np.cov(x, rowvar=False, bias=True)), d)
    np.testing.assert_allclose(plain.score_samples(y), expected, rtol=1e-6)
    shrunk = anomaly.RXDetector().fit(x)
    assert 0 <= shrunk.shrinkage_ < 0.1 and shrunk.n_samples_ == 2000  # well-conditioned data need little
    with pytest.raises(DataError, match="shrinkage"):
        anomaly.RXDetector(shrinkage=2).fit(x)


def test_pca_monitor_combines_t2_and_q_with_tails_from_the_calibration_pixels():
    rng = np.random.default_rng(1)
    basis = np.linalg.qr(rng.normal(size=(20, 2)))[0]
    normal = (rng.normal(size=(4000, 2)) * [3, 1]) @ basis.T + 0.1 * rng.normal(size=(4000, 20))
    mon = anomaly.PCAMonitor(2).fit(normal[:3000], normal[3000:])
    inside = normal[:5] + 8 * basis[:, 1]  # far along a modelled direction: T² sees it
    outside = normal[:5] + 1.0 * np.linalg.qr(np.c_[basis, rng.normal(size=20)])[0][:, 2]  # off the plane: Q
    s_normal = mon.score_samples(normal[3000:])
    assert (mon.score_samples(inside) > np.quantile(s_normal, 0.999)).all()
    assert (mon.score_samples(outside) > np.quantile(s_normal, 0.999)).all()
    assert mon.statistics(inside)["t2"].min() > mon.statistics(outside)["t2"].max()


def test_scores_carry_coordinates_tissue_and_every_statistic_deterministically(fitted):
    vae, _, _, test, _ = fitted
    f = vae.score_samples(test)
    assert list(f.columns[:4]) == ["scan", "row", "col", "tissue"] and len(f) == len(test)
    for col in ("reconstruction_error", "reconstruction_nll", "kl", "inside", "t2", "q", "anomaly_score"):
        assert col in f and np.isfinite(f[col]).all()
    assert (f.kl >= 0).all() and (f.q >= 0).all() and (f.reconstruction_error > 0).all()
    np.testing.assert_allclose(f.reconstruction_error, vae.reconstruction_error(test))
    np.testing.assert_array_equal(f.tissue, vae.tissue_mask(test))
    a, b = vae.anomaly_score(test), vae.anomaly_score(test)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, f.anomaly_score)
    m = vae.monitor_
    values = {s: f[s].to_numpy() for s in ("inside", "t2", "q")}
    # the default: Fisher's combination of `subspace` (the smaller tail p of inside and t2, its own tail) and q
    assert m.statistics == ("subspace", "q") and m.combination == "fisher"
    sub = -np.minimum(m.tails["inside"].log_sf(values["inside"]), m.tails["t2"].log_sf(values["t2"]))
    np.testing.assert_allclose(f.subspace, sub)
    fisher = -2 * (m.tails["subspace"].log_sf(sub) + m.tails["q"].log_sf(values["q"]))
    np.testing.assert_allclose(a, -stats.chi2.logsf(fisher, 4) / np.log(10), rtol=1e-9)
    np.testing.assert_allclose(vae.anomaly_score(test, "elbo"), f.reconstruction_nll + vae.beta * f.kl)
    np.testing.assert_array_equal(vae.anomaly_score(test, "q"), f.q.to_numpy())
    with pytest.raises(ValueError, match="method must be one of"):
        vae.anomaly_score(test, "magic")


def test_residual_model_is_the_pca_of_the_normal_training_tissue_residuals(fitted):
    vae, train, _, _, _ = fitted

    tissue = vae.training_pixels(train).select_pixels(np.flatnonzero(vae.tissue_mask(train)))
    x = torch.from_numpy(vae.normaliser_.transform(vae.prepare(tissue).to_array()))
    with torch.no_grad():
        residual = (x - vae.model_.decode(vae.model_.encode(x)[0])).double().numpy()
    expected = Subspace.fit(Moments.of([residual]), vae.monitor_.subspace.n_components)
    np.testing.assert_allclose(vae.monitor_.subspace.mean_, expected.mean_, atol=1e-6)
    np.testing.assert_allclose(vae.monitor_.subspace.variances_, expected.variances_, rtol=1e-4)
    assert "validation" in vae.monitor_.tails_from


def test_calibrate_then_predict_flags_the_chosen_share_of_normal_tissue_never_background(fitted, tmp_path):
    vae, _, val, test, _ = fitted
    # fit set a first threshold at 1 % of the validation tissue its tails came from; it is saved too
    first = SpectraVAE.load(vae.save(tmp_path / "first.pt"))
    assert first.monitor_.calibration["automatic"] and first.monitor_.false_positive_rate == 0.01
    tissue = first.tissue_mask(val)
    assert np.isclose(first.predict(val)[tissue].mean(), 0.01, atol=0.005)
    first.monitor_.threshold = None  # a residual model without any threshold refuses to flag
    with pytest.raises(DataError, match="not calibrated"):
        first.predict(test)
    vae.calibrate(val, false_positive_rate=0.05)
    m = vae.monitor_
    assert "automatic" not in m.calibration and m.false_positive_rate == 0.05
    assert np.isclose(m.calibration["flagged_fraction"], 0.05, atol=0.01)
    flags = vae.predict(val)
    tissue = vae.tissue_mask(val)
    assert set(np.unique(flags)) <= {0, 1} and not flags[~tissue].any()
    assert np.isclose(flags[tissue].mean(), 0.05, atol=0.01)
    # the calibration and the threshold travel in the checkpoint
    loaded = SpectraVAE.load(vae.save(tmp_path / "cal.pt"))
    assert loaded.monitor_.threshold == m.threshold and loaded.monitor_.tails == m.tails
    np.testing.assert_array_equal(loaded.predict(test), vae.predict(test))
    with pytest.raises(DataError, match="false_positive_rate"):
        vae.calibrate(val, false_positive_rate=1.5)


def test_baselines_are_fitted_on_exactly_the_pixels_the_vae_trained_on(fitted, demo_dir):
    vae, train, val, test, _ = fitted
    view = anomaly.training_view(vae, train)
    assert len(view) == vae.normaliser_.n_samples_
    scores = anomaly.baseline_scores(vae, train, test, normal_calibration=val)
    assert {"VAE", "RX (Ledoit–Wolf)"} <= set(scores) and all(len(s) == len(test) for s in scores.values())
    with pytest.raises(DataError, match="not the pixels the model was trained on"):
        anomaly.baseline_scores(vae, load_dataset(demo_dir, split="normal_test"), test)


def test_fair_baselines_see_the_residual_model_s_tissue_sample_and_its_component_rule(fitted):
    vae, train, val, test, _ = fitted
    base = anomaly.fit_baselines(vae, train, val)
    sample = anomaly.fair_tissue(vae, train)
    assert sample.pixel_digest() == vae.monitor_.sample_digest  # the very pixels the residual model saw
    assert base.rx.n_samples_ == len(sample) == int(vae.tissue_mask(train).sum()) < vae.normaliser_.n_samples_
    moments = Moments.of(anomaly.ModelView(vae, sample).iter_chunks())
    eig = np.linalg.eigvalsh(moments.covariance(ddof=1))
    assert base.components["PCA T²+Q (noise floor)"] == components_above_noise(eig, moments.n)
    assert base.components["PCA T²+Q (99 % var.)"] == Subspace.fit(moments, "99%").n_components
    scores = base.scores(test)
    assert set(scores) == {*anomaly.baselines.PCA_RULES, "RX (Ledoit–Wolf)"}
    assert all(len(v) == len(test) and np.isfinite(v).all() for v in scores.values())
    # the PCA monitors use the VAE monitor's own combination and tail kind
    pca = base.pca["PCA T²+Q (noise floor)"]
    assert (pca.combination, pca.tail_kind) == (vae.monitor_.combination, vae.monitor_.tail_kind)
    # other component counts on request (the benchmark's PCA with the VAE's own number of dimensions), on the
    # same sample: its first directions are the noise-floor monitor's
    k = vae.latent_dim + vae.monitor_.subspace.n_components
    wider = anomaly.fit_baselines(vae, train, val, {"as the VAE": k})
    assert wider.components == {"as the VAE": k}
    first = min(k, base.components["PCA T²+Q (noise floor)"])
    a, b = wider.pca["as the VAE"].subspace_.components_[:first], pca.subspace_.components_[:first]
    np.testing.assert_allclose(np.abs((a * b).sum(1)), 1.0, atol=1e-6)


def test_ground_truth_follows_normal_labels_and_splits_anomaly_kinds(demo):
    kinds = anomaly.anomaly_kinds(demo)
    assert set(kinds) == {"tumour", "paraffin"}
    labels = np.asarray(demo.label_names)[demo.labels]
    assert (kinds["tumour"][labels == "tumour"] == 1).all() and (kinds["tumour"][labels == "paraffin"] == -1).all()
    assert (kinds["paraffin"][labels == "stroma"] == 0).all()
    truth = anomaly.ground_truth_anomaly(demo, normal_labels=("background", "stroma", "epithelium", "tumour"))
    assert (truth[labels == "tumour"] == 0).all() and (truth[labels == "paraffin"] == 1).all()
    with pytest.raises(DataError, match="not among the label names"):
        anomaly.anomaly_kinds(demo, normal_labels=("normal",))


def test_flagged_by_label_gives_each_kind_of_tissue_its_own_flagged_share(demo, bare_scans, tmp_path):
    labels = np.asarray(demo.label_names)[demo.labels]
    tissue = labels != "background"
    stroma = np.flatnonzero(labels == "stroma")
    flagged = labels == "tumour"
    flagged[stroma[::10]] = True  # a tenth of the stroma
    flagged[~tissue] = True  # background is never counted, flagged or not
    frame = pd.DataFrame({"tissue": tissue, "flagged": flagged})
    table = anomaly.flagged_by_label({"all": frame}, {"all": demo})
    assert list(table.index.get_level_values("label")) == [n for n in demo.label_names if n != "background"]
    assert table.loc[("all", "tumour"), "flagged"] == 1.0 and table.loc[("all", "epithelium"), "flagged"] == 0.0
    assert table.loc[("all", "stroma"), "flagged"] == pytest.approx(len(stroma[::10]) / len(stroma))
    assert table.loc[("all", "stroma"), "tissue pixels"] == len(stroma)
    assert table.loc[("all", "stroma"), "normal"] and not table.loc[("all", "paraffin"), "normal"]
    # the labels' meaning follows normal_labels; unlabelled scans and uncalibrated frames give nothing
    assert not table.loc[("all", "tumour"), "normal"]
    tumour_normal = anomaly.flagged_by_label({"all": frame}, {"all": demo},
                                             ("background", "stroma", "epithelium", "tumour"))
    assert tumour_normal.loc[("all", "tumour"), "normal"]
    bare = load_dataset(bare_scans(tmp_path / "bare", n_scans=3))
    assert anomaly.flagged_by_label({"bare": pd.DataFrame({"tissue": np.ones(len(bare), bool),
                                                           "flagged": np.zeros(len(bare), bool)})},
                                    {"bare": bare}).empty
    assert anomaly.flagged_by_label({"all": frame.drop(columns="flagged")}, {"all": demo}).empty


def test_evaluate_ranks_a_perfect_score_first_and_bootstraps_over_scans():
    truth = np.array([0, 0, 1, 1, -1] * 4)
    groups = np.repeat(np.arange(4), 5)
    table = anomaly.evaluate({"perfect": np.tile([0, 1, 2, 3, 100.0], 4), "inverse": np.tile([3, 2, 1, 0, -5.0], 4)},
                             truth, groups=groups, n_boot=50)
    assert table.index[0] == "perfect" and table.loc["perfect", "AUROC"] == 1.0 and table.loc["inverse", "AUROC"] == 0.0
    assert table.loc["perfect", "AUROC low"] == 1.0
    assert "A baseline wins" in anomaly.verdict(table, "inverse")
    assert "The VAE separates best" in anomaly.verdict(table.rename(index={"perfect": "VAE"}))
    assert "overlap" not in anomaly.verdict(table, "inverse")  # [0, 0] and [1, 1]: apart
    rng = np.random.default_rng(0)
    noisy = rng.normal(size=len(truth)) + truth
    lo, hi = anomaly.auroc_interval(truth[truth >= 0], noisy[truth >= 0], groups[truth >= 0], 200)
    point = anomaly.evaluate({"s": noisy}, truth).loc["s", "AUROC"]
    assert lo <= point <= hi and hi - lo > 0


def test_the_verdict_calls_a_tie_a_tie_and_cautions_when_the_intervals_overlap():
    def table(vae, rival, intervals=None):
        t = pd.DataFrame({"AUROC": [vae, rival]}, index=pd.Index(["VAE", "RX"], name="score"))
        if intervals:
            t["AUROC low"], t["AUROC high"] = zip(*intervals, strict=True)
        return t

    assert anomaly.verdict(table(0.99996, 1.0)) == "A tie: the VAE and RX both reach AUROC 1.000."
    assert anomaly.verdict(table(0.9, 0.8)).startswith("The VAE separates best: AUROC 0.900 against 0.800 for")
    close = anomaly.verdict(table(0.93, 0.95, [(0.90, 0.96), (0.92, 0.97)]))
    assert close.startswith("A baseline wins: RX reaches AUROC 0.950, the VAE 0.930.") and "overlap" in close
    assert "overlap" not in anomaly.verdict(table(0.93, 0.99, [(0.90, 0.95), (0.97, 1.0)]))
    lone = anomaly.verdict(table(0.93, 0.99, [(np.nan, np.nan), (np.nan, np.nan)]))
    assert "No interval over scans" in lone and "overlap" not in lone


def test_design_effect_is_one_for_independent_flags_and_grows_when_they_cluster(demo):
    rng = np.random.default_rng(0)
    mask = np.ones(len(demo), bool)
    independent = rng.uniform(size=len(demo)) < 0.05
    assert anomaly.design_effect(demo, independent, mask, 0.05, tile=8) < 1.6
    coords = demo.coords
    clustered = ((coords[:, 1] // 8 + coords[:, 2] // 8) % 20 == 0)  # whole 8×8 blocks flagged together
    assert anomaly.design_effect(demo, clustered, mask, float(clustered.mean()), tile=8) > 10


def test_scan_threshold_calls_about_one_percent_of_normal_scans_with_independent_flags():
    rng = np.random.default_rng(3)
    n, rate = 2000, 0.01
    limit = anomaly.scan_threshold(n, rate, design=1.0)
    fractions = rng.binomial(n, rate, size=20000) / n
    assert 0.003 < (fractions > limit).mean() < 0.02
    assert anomaly.scan_threshold(n, rate, design=4.0) > limit


def test_scan_scores_call_the_abnormal_scans(fitted, demo_dir):
    vae, _, val, _, _ = fitted
    vae.calibrate(val, false_positive_rate=0.05)
    table = vae.scan_scores(load_dataset(demo_dir))
    assert isinstance(table, pd.DataFrame) and {"flagged fraction", "scan threshold", "abnormal"} <= set(table)
    assert (table["flagged fraction"] >= 0).all() and table["tissue pixels"].gt(0).all()


def test_the_residual_model_of_large_data_is_fitted_on_a_bounded_sample_of_whole_blocks(fitted, monkeypatch):
    from spectra_vae.anomaly import monitor as monitor_module

    vae, train, _, _, _ = fitted
    tissue = vae.tissue_rule_.select(vae.training_pixels(train))
    assert monitor_module.sample_blocks(tissue) is tissue  # under the bound: every pixel
    monkeypatch.setattr(monitor_module, "MONITOR_MAX_PIXELS", len(tissue) // 4)
    monkeypatch.setattr(monitor_module, "MONITOR_BLOCK", 20)
    sample = monitor_module.sample_blocks(tissue)
    assert len(tissue) // 8 < len(sample) <= len(tissue) // 4
    key = lambda c: (c[:, 0] * 10_000 + c[:, 1]) * 10_000 + c[:, 2]  # noqa: E731
    picked = np.flatnonzero(np.isin(key(tissue.coords), key(sample.coords)))  # the sample's rows in tissue
    runs = np.split(picked, np.flatnonzero(np.diff(picked) != 1) + 1)  # consecutive pixels come in blocks
    assert len(runs) > 2 and all(len(r) == 20 for r in runs[:-1]) and picked[0] == 0
    sampled = vae.fit_anomaly_model(train).monitor_
    assert f"({len(sample)} pixels" in sampled.tails_from


def test_noise_level_measures_white_noise_under_smooth_bands():
    rng = np.random.default_rng(0)
    wn = demo_wavenumbers()
    bands = 0.55 * np.array([CLASS_COMPOSITION["epithelium"][c] for c in COMPONENTS]) @ component_spectra(wn)
    sigma = np.array([NOISE_SIGMA, 0.01, 0.05])  # the demo's noise, and as after dividing thin tissue
    x = bands[None, :] + sigma[:, None] * rng.standard_normal((3, len(wn)))
    assert np.allclose(noise_level(x), sigma, rtol=0.12)
    assert noise_level(bands[None, :])[0] < 0.2 * NOISE_SIGMA  # the bands' own curvature barely counts


def test_residuals_are_judged_against_each_pixels_own_noise_when_preprocessing_scales_spectra(demo_dir):
    """After emsc a thin pixel's spectrum, divided by its small amount of tissue, carries more noise:
    its residual is weighted down by as much, so the same residual-to-noise ratio scores the same."""
    train, val = load_dataset(demo_dir, split="normal_train"), load_dataset(demo_dir, split="normal_val")
    vae = SpectraVAE(hidden_dims=(32, 16), epochs=2, batch_size=128, preprocess="emsc", verbose=False)
    vae.fit(train, validation=val)
    assert vae.monitor_.noise_reference is not None and vae.monitor_.noise_reference > 0
    plain = SpectraVAE(hidden_dims=(32, 16), epochs=1, batch_size=128, verbose=False).fit(train)
    assert plain.monitor_.noise_reference is None  # absorbance: one noise size, nothing to weight
    ref = vae.monitor_.noise_reference
    # the residual model is the PCA of the weighted residuals of the normal training tissue
    tissue = vae.training_pixels(train).select_pixels(np.flatnonzero(vae.tissue_mask(train)))
    prepared = vae.prepare(tissue).to_array()
    assert ref == pytest.approx(np.median(noise_level(prepared)), rel=1e-3)
    x = torch.from_numpy(vae.normaliser_.transform(prepared))
    with torch.no_grad():
        residual = (x - vae.model_.decode(vae.model_.encode(x)[0])).double().numpy()
    residual *= (ref / np.maximum(noise_level(prepared), ref / 10))[:, None]
    expected = Subspace.fit(Moments.of([residual]), vae.monitor_.subspace.n_components)
    np.testing.assert_allclose(vae.monitor_.subspace.variances_, expected.variances_, rtol=1e-4)
    rng = np.random.default_rng(1)
    chunk = rng.standard_normal((2, 442)) * np.array([[ref], [4 * ref]])  # the second carries 4× the noise
    r = torch.from_numpy(rng.standard_normal((1, 442))).repeat(2, 1) * torch.tensor([[1.0], [4.0]])
    weighted = residuals(chunk, r, torch.zeros_like(r), ref)
    assert np.allclose(weighted[0], weighted[1], rtol=0.15)
    assert np.allclose(residuals(chunk, r, torch.zeros_like(r), None), r.numpy())
    # stored with the model, and a monitor saved before weighting existed loads unweighted
    d = vae.monitor_.to_dict()
    assert Monitor.from_dict(d).noise_reference == ref
    assert Monitor.from_dict({k: v for k, v in d.items() if k != "noise_reference"}).noise_reference is None
    # the fair baselines weight each pixel's deviation from the normal mean the same way
    base = anomaly.fit_baselines(vae, train, val)
    assert base.noise_reference == ref
    view = base.view(tissue)
    plain = anomaly.ModelView(vae, tissue)
    w = ref / np.maximum(noise_level(prepared), ref / 10)
    weighted, unweighted = next(view.iter_chunks()), next(plain.iter_chunks())
    np.testing.assert_allclose(weighted - base.centre, w[: len(weighted), None] * (unweighted - base.centre),
                               rtol=1e-6, atol=1e-9)
    assert vae.fit_anomaly_model(train, val, noise_weighted=False).monitor_.noise_reference is None
