"""The architecture family (issue 29): every architecture through the estimator's whole interface, the
unmixing decoder against its formula, and the spatial encoder's neighbourhoods against their definition."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spectra_vae import DataError, SpectraVAE, load_dataset, make_demo_dataset
from spectra_vae.io.neighbours import NeighbourhoodView
from spectra_vae.model.architectures import build_model
from spectra_vae.model.checkpoint import load_checkpoint
from spectra_vae.model.networks import ModelConfig
from spectra_vae.model.unmixing import UnmixingVAE, legendre_basis
from spectra_vae.preprocess.normalise import Normaliser

ARCHITECTURES = ("mlp", "spatial", "unmixing")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    folder = make_demo_dataset(tmp_path_factory.mktemp("arch") / "scans", n_scans=4, height=14, width=14, seed=3)
    return {s: load_dataset(folder, split=s) for s in ("normal_train", "normal_val", "abnormal")}


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_every_architecture_fits_scores_saves_and_loads_the_same_model(small, tmp_path, architecture):
    train, val, ab = small["normal_train"], small["normal_val"], small["abnormal"]
    vae = SpectraVAE(latent_dim=3, hidden_dims=(24,), architecture=architecture, epochs=2, batch_size=64,
                     verbose=False).fit(train, validation=val)
    z, r, s = vae.transform(ab), vae.reconstruct(ab), vae.anomaly_score(ab)
    assert z.shape == (len(ab), 3) and r.shape == (len(ab), ab.n_channels) and s.shape == (len(ab),)
    assert np.isfinite(z).all() and np.isfinite(r).all() and np.isfinite(s).all()
    assert np.array_equal(vae.anomaly_score(ab), s)  # deterministic
    assert vae.score(val) < 0
    path = vae.save(tmp_path / "m.pt")
    payload = load_checkpoint(path)  # weights_only=True inside
    assert payload["model_config"]["architecture"] == architecture
    again = SpectraVAE.load(path)
    assert again.architecture == architecture
    assert np.allclose(again.transform(ab), z, atol=1e-5) and np.allclose(again.reconstruct(ab), r, atol=1e-4)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_forward_and_infer_is_forward_and_infer_from_one_encoder_pass(architecture):
    torch.manual_seed(0)
    model = build_model(ModelConfig(n_channels=12, latent_dim=3, hidden_dims=(8,), architecture=architecture)).eval()
    x = torch.rand(5, model.config.n_inputs)
    with torch.no_grad():
        sampled, mu, logvar = model(x, generator=torch.Generator().manual_seed(4))
        both = model.forward_and_infer(x, generator=torch.Generator().manual_seed(4))
        mean = model.infer(x)
    for got, expected in zip(both, (sampled, mu, logvar, mean[2]), strict=True):
        assert torch.equal(got, expected)
    assert not torch.equal(both[0], both[3])  # one sampled, one at the mean


def test_a_checkpoint_config_without_an_architecture_is_the_mlp():
    d = ModelConfig(n_channels=10, latent_dim=2, hidden_dims=(4,)).to_dict()
    for key in ("architecture", "neighbourhood", "baseline_degree"):
        d.pop(key)
    config = ModelConfig.from_dict(d)
    assert config.architecture == "mlp" and type(build_model(config)).__name__ == "VAE"


def test_unmixing_reconstructs_by_its_formula_with_abundances_on_the_simplex(small):
    train, ab = small["normal_train"], small["abnormal"]
    vae = SpectraVAE(latent_dim=4, hidden_dims=(24,), architecture="unmixing", epochs=2, batch_size=64,
                     verbose=False).fit(train)
    assert vae.normaliser_.method == "global_scale" and np.all(vae.normaliser_.offset_ == 0)
    a, t, s = vae.abundances(ab), vae.thickness(ab), vae.component_spectra_
    assert a.shape == (len(ab), 4) and np.allclose(a.sum(axis=1), 1, atol=1e-5) and (a >= 0).all()
    assert t.shape == (len(ab),) and (t > 0).all()
    assert s.shape == (4, ab.n_channels) and (s >= 0).all()
    model = vae.model_
    assert isinstance(model, UnmixingVAE)
    x = torch.from_numpy(vae.normaliser_.transform(ab.to_array()))
    with torch.no_grad():
        h = model.features(x)
        baseline = (model.to_baseline(h) @ torch.tensor(legendre_basis(ab.n_channels, 2), dtype=torch.float32))
    expected = t[:, None] * (a @ s) + baseline.numpy() * vae.normaliser_.scale_[None, :]
    assert np.allclose(vae.reconstruct(ab), expected, atol=1e-4 * np.abs(expected).max())
    decoded = vae.decode(vae.transform(ab)[:5])  # unit thickness, no baseline
    assert np.allclose(decoded, a[:5] @ s, atol=1e-4 * s.max())


def test_unmixing_refuses_what_does_not_keep_absorbance_and_others_have_no_components(small):
    train = small["normal_train"]
    for spec in ("snv", "savgol(9,2,1)", "cut(1000,1700)|snv"):
        with pytest.raises(DataError, match="unmixing architecture models absorbance"):
            SpectraVAE(architecture="unmixing", preprocess=spec, epochs=1, verbose=False).fit(train)
    with pytest.raises(DataError, match="normalisation"):
        SpectraVAE(architecture="unmixing", normalisation="standard", epochs=1, verbose=False).fit(train)
    vae = SpectraVAE(latent_dim=2, hidden_dims=(8,), architecture="unmixing", preprocess="vector", epochs=1,
                     verbose=False).fit(train)
    assert vae.abundances(train).shape == (len(train), 2)
    mlp = SpectraVAE(hidden_dims=(8,), epochs=1, verbose=False).fit(train)
    for name in ("component_spectra_",):
        with pytest.raises(AttributeError):
            getattr(mlp, name)
    with pytest.raises(AttributeError):
        mlp.abundances(train)
    with pytest.raises(AttributeError):
        mlp.thickness(train)


def test_unmixing_starts_from_given_component_spectra_and_refuses_bad_ones(small):
    from spectra_vae.io.demo import component_spectra
    from spectra_vae.model.unmixing import START_FLOOR

    train = small["normal_train"]
    truth = component_spectra(train.wavenumbers)  # the demo's five pure tissue spectra, absorbance
    vae = SpectraVAE(latent_dim=5, hidden_dims=(16,), architecture="unmixing", epochs=1, learning_rate=1e-12,
                     verbose=False).fit(train, component_start=truth)
    learned = vae.component_spectra_
    shape = np.maximum(truth / truth.max(axis=1, keepdims=True), START_FLOOR)
    assert np.allclose(learned / learned.max(axis=1, keepdims=True), shape, rtol=1e-4, atol=1e-6)
    generic = SpectraVAE(latent_dim=5, hidden_dims=(16,), architecture="unmixing", epochs=1, learning_rate=1e-12,
                         verbose=False).fit(train).component_spectra_
    assert not np.allclose(generic / generic.max(axis=1, keepdims=True), shape, atol=0.05)

    unmixing = SpectraVAE(latent_dim=5, hidden_dims=(16,), architecture="unmixing", epochs=1, verbose=False)
    bad = [("expected \\(5, ", truth[:4]), ("expected \\(5, ", truth[:, :-3]), ("negative", truth - 0.01),
           ("NaN", np.where(truth > 0.5, np.nan, truth)), ("array of spectra", {"a": 1}),
           ("zero everywhere", np.vstack([truth[:4], np.zeros((1, truth.shape[1]))]))]
    for match, value in bad:
        with pytest.raises(DataError, match=match):
            unmixing.fit(train, component_start=value)
    with pytest.raises(DataError, match="only the unmixing architecture"):
        SpectraVAE(latent_dim=5, epochs=1, verbose=False).fit(train, component_start=truth)


def _scan(tmp_path, values, name="s.npy"):
    np.save(tmp_path / name, values.astype(np.float32))
    return load_dataset(tmp_path / name)


def test_neighbourhood_means_follow_their_definition(tmp_path):
    """Inside the scan, finite, same side of the tissue rule; a pixel without any takes its own."""
    h, w, c = 5, 6, 3
    rng = np.random.default_rng(0)
    cube = rng.normal(size=(h, w, c)).astype(np.float32)
    cube[1, 1] = np.nan  # excluded from the dataset and from every neighbourhood
    cube[:, 4:] += 10.0  # "tissue" on the right, told apart by `side`
    ds = _scan(tmp_path, cube)
    view = NeighbourhoodView(ds, 3, side=lambda spectra: spectra.mean(axis=1) > 5)
    coords = ds.coords
    got = view.read(np.arange(len(ds)))
    assert got.shape == (len(ds), 2 * c)
    for p, (_, r, col) in enumerate(coords):
        right = col >= 4
        neighbours = [cube[rr, cc] for rr in range(r - 1, r + 2) for cc in range(col - 1, col + 2)
                      if (rr, cc) != (r, col) and 0 <= rr < h and 0 <= cc < w and np.isfinite(cube[rr, cc]).all()
                      and (cc >= 4) == right]
        expected = np.mean(neighbours, axis=0) if neighbours else cube[r, col]
        assert np.allclose(got[p, :c], cube[r, col]) and np.allclose(got[p, c:], expected, atol=1e-5), (r, col)
    chunks = np.concatenate(list(view.iter_chunks(7)))
    assert np.allclose(chunks, got)
    scattered = rng.permutation(len(ds))[:9]  # any pixels, in any order, read alone
    assert np.allclose(view.read(scattered), got[scattered])


def test_neighbourhood_means_are_of_the_preprocessed_spectra(tmp_path):
    """Through a preprocessing view that changes the axis, each neighbour is preprocessed before it is averaged."""
    from spectra_vae.preprocess.pipeline import Preprocessor

    h, w, c = 4, 5, 40
    cube = np.random.default_rng(1).uniform(0.1, 1.0, size=(h, w, c)).astype(np.float32)
    raw = _scan(tmp_path, cube)
    pre = Preprocessor("cut(10,29)|snv").fit(raw.wavenumbers, raw)  # the axis of an .npy without one: 0…39
    ds = raw.preprocessed(pre)
    got = NeighbourhoodView(ds, 3).read(np.arange(len(ds)))
    assert got.shape == (len(ds), 2 * ds.n_channels) and ds.n_channels < c
    for p, (_, r, col) in enumerate(ds.coords):
        around = [cube[rr, cc] for rr in range(r - 1, r + 2) for cc in range(col - 1, col + 2)
                  if (rr, cc) != (r, col) and 0 <= rr < h and 0 <= cc < w]
        assert np.allclose(got[p, ds.n_channels:], pre.transform(np.array(around)).mean(axis=0), atol=1e-5)


def test_a_table_of_spectra_has_no_neighbourhoods():
    with pytest.raises(DataError, match="spatial architecture needs images"):
        SpectraVAE(architecture="spatial", epochs=1, verbose=False).fit(np.random.rand(30, 12).astype(np.float32))


def test_the_spatial_encoder_reads_the_spectrum_and_its_neighbourhood(small):
    train = small["normal_train"]
    vae = SpectraVAE(latent_dim=2, hidden_dims=(16,), architecture="spatial", epochs=1, verbose=False).fit(train)
    assert vae.model_.encoder[0].in_features == 2 * train.n_channels
    assert vae.model_.decoder[1].out_features == train.n_channels
    x = torch.randn(5, 2 * train.n_channels)
    assert torch.equal(vae.model_.target(x), x[:, : train.n_channels])


def test_global_scale_keeps_zero_and_divides_by_the_root_mean_square():
    x = np.random.default_rng(1).normal(0.3, 0.2, size=(200, 7))
    n = Normaliser("global_scale").fit(x)
    assert np.all(n.offset_ == 0) and np.allclose(n.scale_, np.sqrt(np.mean(x**2)))
    assert np.allclose(n.inverse_transform(n.transform(x)), x, atol=1e-6)
    assert np.allclose(n.transform(np.hstack([x, x])), np.hstack([n.transform(x)] * 2))  # side by side


def test_component_figures_name_the_strongest_bands_and_map_abundances(small):
    import matplotlib

    matplotlib.use("Agg")
    from spectra_vae.views import components

    wn = np.linspace(950, 1800, 442)
    spectrum = np.exp(-0.5 * ((wn - 1655) / 15) ** 2) + 0.5 * np.exp(-0.5 * ((wn - 1545) / 15) ** 2)
    bands = components.strongest_bands(wn, spectrum)
    assert abs(bands[0] - 1655) < 3 and abs(bands[1] - 1545) < 3 and len(bands) == 2
    fig = components.component_spectra(wn, np.stack([spectrum, spectrum[::-1]]))
    labels = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert "1655" in labels and len(fig.axes) == 2
    assert fig.axes[-1].get_xlim()[0] > fig.axes[-1].get_xlim()[1]  # high to low wavenumber
    train, ab = small["normal_train"], small["abnormal"]
    vae = SpectraVAE(latent_dim=3, hidden_dims=(16,), architecture="unmixing", epochs=1, verbose=False).fit(train)
    fig = components.abundance_maps(ab, vae.abundances(ab), vae.tissue_mask(ab), 0)
    images = [im for ax in fig.axes for im in ax.get_images()]
    assert len(images) == len(ab.scans) and images[0].get_clim() == (0.0, 1.0)
