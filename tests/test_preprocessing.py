import json

import numpy as np
import pytest
import torch
from scipy.signal import savgol_filter

from benchmarks.scatter import per_spectrum_rubberband  # the per-spectrum hull: the oracle, and timed there
from spectra_vae import DataError, SpectraVAE, load_dataset
from spectra_vae.core.scattering import kramers_kronig_partner
from spectra_vae.io.demo import component_spectra
from spectra_vae.preprocess.diagnostics import pixel_terms
from spectra_vae.preprocess.emsc import EMSC, MIN_SCALE
from spectra_vae.preprocess.hull import lower_hull
from spectra_vae.preprocess.pipeline import STEPS, Preprocessor, parse
from spectra_vae.preprocess.steps import REGISTRY, StepKind

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


# Arguments for the registered steps that have required ones; every other step parses bare.
REQUIRED_ARGS = {"cut": "(1000,1700)", "resample": "(1000,1700,4)"}


def test_every_registered_step_parses_with_its_defaults_and_round_trips_through_plain_content():
    assert STEPS == tuple(REGISTRY) and all(kind.name == name for name, kind in REGISTRY.items())
    for name, kind in REGISTRY.items():
        assert (kind.nargs[0] > 0) == (name in REQUIRED_ARGS), name
        [step] = parse(name + REQUIRED_ARGS.get(name, ""))
        assert step.name == name and len(step.args) == kind.nargs[1]  # defaults fill every optional argument
        assert parse(str(step)) == [step]
        pre = Preprocessor(str(step)).fit(WN, X if kind.fitted else None)
        assert pre.needs_data == kind.fitted and pre.invertible == kind.invertible
        assert (pre.to_dict()["states"][0] is not None) == kind.fitted
        content = json.loads(json.dumps(pre.to_dict()))
        again = Preprocessor.from_dict(content)
        assert again.to_dict() == content and again.spec == pre.spec
        assert np.array_equal(again.transform(X), pre.transform(X))
        assert np.array_equal(again.output_wavenumbers_, pre.output_wavenumbers_)
        if kind.invertible:
            y, undo = pre.transform(X, return_inverse=True)
            assert np.allclose(pre.inverse_transform(y, undo), X, atol=1e-4)


def test_an_unknown_step_is_refused_with_the_registered_names():
    with pytest.raises(DataError) as refused:
        parse("snv|nosuchstep(3)")
    assert str(refused.value) == f"preprocess: unknown step 'nosuchstep(3)'; steps are {', '.join(REGISTRY)}"


def test_a_step_is_one_registered_class(monkeypatch):
    """A new `StepKind` in the registry is parsed, fitted, applied, stored and undone by the pipeline
    as it stands: nothing else names the step."""

    class FirstChannel(StepKind):
        name = "firstchannel"
        nargs = (0, 1)
        defaults = (1,)
        invertible = True

        def check_args(self, args):
            return None if args[0] > 0 else "factor must be positive"

        def apply(self, step, state, y, undo):
            base = np.repeat(y[:, :1] * np.float32(step.args[0]), y.shape[1], axis=1)
            if undo is not None:
                undo.append(("add", base))
            return y - base

    monkeypatch.setitem(REGISTRY, "firstchannel", FirstChannel())
    pre = Preprocessor("firstchannel|snv").fit(WN)
    assert pre.spec == "firstchannel(1)|snv" and pre.invertible and "firstchannel" in str(
        pytest.raises(DataError, parse, "bogus").value)
    y, undo = pre.transform(X, return_inverse=True)
    assert np.array_equal(Preprocessor("snv").fit(WN).transform(X - X[:, :1]), y)
    assert np.allclose(pre.inverse_transform(y, undo), X, atol=1e-5)
    assert np.array_equal(Preprocessor.from_dict(pre.to_dict()).transform(X), y)
    with pytest.raises(DataError, match=r"'firstchannel\(0\)': factor must be positive"):
        parse("firstchannel(0)")


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


def test_vectorised_rubberband_equals_the_per_spectrum_hull(demo):
    rng = np.random.default_rng(3)
    walks = rng.standard_normal((40, 442)).cumsum(axis=1)
    ties = rng.integers(0, 3, (40, 442)).astype(float)  # many collinear points and equal values
    irregular = np.sort(rng.uniform(950, 1800, 442))
    for x, y in ((WN, walks), (WN, ties), (WN[::-1], walks), (irregular, ties), (WN, demo.to_array()[::7])):
        expected = np.stack([per_spectrum_rubberband(x, row) for row in y])
        assert np.allclose(lower_hull(x, y), expected, rtol=0, atol=1e-9)
        out = Preprocessor("rubberband").fit(x).transform(y.astype(np.float32))
        assert np.allclose(out, y.astype(np.float32) - expected.astype(np.float32), atol=1e-5)


REF = component_spectra(WN).T @ np.array([0.5, 0.1, 0.14, 0.11, 0.07])  # an epithelium-like reference


def _legendre(degree: int) -> np.ndarray:
    return np.polynomial.legendre.legvander(2 * (WN - WN.min()) / np.ptp(WN) - 1, degree)


def test_emsc_recovers_known_multiplicative_dispersion_and_polynomial_terms_exactly():
    rng = np.random.default_rng(7)
    a = rng.uniform(0.3, 2.5, (50, 1))
    b = rng.uniform(-0.8, 0.8, (50, 1))
    c = rng.normal(0, 0.1, (50, 4))
    x = a * REF + b * kramers_kronig_partner(REF, WN) + c @ _legendre(3).T
    emsc = EMSC(REF, WN, degree=3, dispersion=True)
    assert emsc.terms == ["multiplicative", "dispersion", "baseline_0", "baseline_1", "baseline_2", "baseline_3"]
    assert np.allclose(emsc.coefficients(x), np.hstack([a, b, c]), rtol=1e-9, atol=1e-12)
    corrected, _ = emsc.correct(x)
    assert np.allclose(corrected, REF, rtol=0, atol=1e-5 * REF.max())
    # basic EMSC (no dispersion term) cannot take the dispersion out
    basic, _ = EMSC(REF, WN, degree=3, dispersion=False).correct(x)
    assert np.abs(basic - REF).max() > 0.05 * REF.max()


def test_emsc_step_takes_its_reference_from_the_training_spectra_and_is_undone_exactly():
    rng = np.random.default_rng(8)
    spread = rng.normal(0, 0.05, (20, 442))
    training = np.vstack([REF + spread, REF - spread])  # mean: exactly the reference
    pre = Preprocessor("emsc(2,1)").fit(WN, training)
    assert np.allclose(pre.fitted_step("emsc").reference, REF, atol=1e-6)
    x = (rng.uniform(0.5, 2, (30, 1)) * REF + rng.normal(0, 0.05, (30, 1)) * kramers_kronig_partner(REF, WN)
         + (_legendre(2) @ rng.normal(0, 0.1, (3, 30))).T)
    y, undo = pre.transform(x.astype(np.float32), return_inverse=True)
    assert np.allclose(y, REF, atol=1e-4 * REF.max())
    assert pre.invertible and np.allclose(pre.inverse_transform(y, undo), x, atol=1e-5)
    with pytest.raises(DataError, match="learns its reference"):
        Preprocessor("emsc").fit(WN)
    for bad in ("emsc(2.5)", "emsc(2,3)", "emsc(11)"):
        with pytest.raises(DataError, match="whole polynomial degree"):
            Preprocessor(bad).fit(WN, training)


def test_emsc_by_default_is_basic_emsc_and_a_stored_dispersion_term_stays():
    """`emsc` is emsc(2,0) (basic EMSC, as in Quasar); a pipeline is stored with its arguments written
    out, so a model saved when the default had the dispersion term loads with it."""
    assert Preprocessor("emsc").spec == "emsc(2,0)" and Preprocessor("emsc(3)").spec == "emsc(3,0)"
    assert EMSC(REF, WN).terms == ["multiplicative", "baseline_0", "baseline_1", "baseline_2"]
    fitted = Preprocessor("emsc(2,1)").fit(WN, X)
    assert fitted.to_dict()["spec"] == "emsc(2,1)"
    again = Preprocessor.from_dict(json.loads(json.dumps(fitted.to_dict())))
    assert again.fitted_step("emsc").dispersion
    assert np.array_equal(again.transform(X), fitted.transform(X))


def test_emsc_refuses_a_reference_it_cannot_tell_from_the_baseline():
    """A zero or polynomial reference (training "tissue" that is blank or flat) makes a·r and the
    baseline the same: a clear error, not a quiet, arbitrary split between them."""
    with pytest.raises(DataError, match="reference spectrum .* is zero"):
        Preprocessor("emsc").fit(WN, np.zeros((5, 442)))
    flat = np.full((5, 442), 0.3) + np.linspace(0, 0.1, 442)  # offset and slope: degree 1
    with pytest.raises(DataError, match=r"a polynomial of degree ≤ 2"):
        Preprocessor("emsc").fit(WN, flat)
    Preprocessor("emsc(0)").fit(WN, flat)  # degree 0 can tell a slope from an offset
    Preprocessor("emsc(10,1)").fit(WN, X)  # real spectra at the highest degree are fine


def pixel_terms_of(pre: Preprocessor, x: np.ndarray) -> np.ndarray:
    return pre.fitted_step("emsc").coefficients(pre.transform_until(x, "emsc"))


def test_emsc_does_not_divide_background_by_its_near_zero_reference_amount():
    pre = Preprocessor("emsc").fit(WN, REF[None, :])
    noise = np.random.default_rng(9).normal(0, 0.002, (200, 442)).astype(np.float32)
    y, undo = pre.transform(noise, return_inverse=True)
    terms = pixel_terms_of(pre, noise)
    assert (np.abs(terms[:, 0]) < MIN_SCALE).all()
    assert np.abs(y).max() < 0.02  # noise stays noise-sized: not divided by a ≈ 0
    assert np.allclose(pre.inverse_transform(y, undo), noise, atol=1e-6)


def test_fitted_pipeline_round_trips_through_plain_content():
    pre = Preprocessor("cut(1000,1750)|emsc(3,0)|snv").fit(WN, X)
    content = json.loads(json.dumps(pre.to_dict()))  # plain: JSON and weights_only checkpoints hold it
    again = Preprocessor.from_dict(content)
    assert again.spec == "cut(1000,1750)|emsc(3,0)|snv"
    assert np.array_equal(again.transform(X), pre.transform(X))
    assert np.array_equal(again.output_wavenumbers_, pre.output_wavenumbers_)
    stateless = Preprocessor.from_dict(Preprocessor("baseline|snv").fit(WN).to_dict())
    assert np.array_equal(stateless.transform(X), Preprocessor("baseline|snv").fit(WN).transform(X))
    with pytest.raises(DataError, match="another wavenumber axis"):
        Preprocessor.from_dict({**content, "input_wavenumbers": list(WN + 3)})
    with pytest.raises(DataError, match=r"is of emsc\(3,0\)"):
        Preprocessor.from_dict({**content, "spec": "cut(1000,1750)|emsc(2,0)|snv"})


def test_model_trained_with_emsc_applies_the_identical_correction_after_loading(scattered_dir, tmp_path):
    train = load_dataset(scattered_dir, split="normal_train")
    test = load_dataset(scattered_dir, split="normal_test")
    vae = SpectraVAE(hidden_dims=(16,), epochs=2, verbose=False, preprocess="emsc").fit(train)
    reference = vae.tissue_rule_.select(train).to_array().mean(axis=0)  # the training tissue pixels' mean
    assert np.allclose(vae.preprocessor_.fitted_step("emsc").reference, reference, atol=1e-5)
    path = vae.save(tmp_path / "m.pt")
    assert "preprocessing" in torch.load(path, weights_only=True)
    again = SpectraVAE.load(path)
    assert np.array_equal(again.prepare(test).to_array(), vae.prepare(test).to_array())
    assert np.array_equal(again.transform(test), vae.transform(test))
    assert pixel_terms(again.preprocessor_, test).equals(pixel_terms(vae.preprocessor_, test))
    # reconstructions back in absorbance: emsc undone pixel by pixel (x = a·y + baseline + dispersion)
    x = test.to_array()
    r = again.reconstruct(test, original_units=True)
    y, undo = again.preprocessor_.transform(x, return_inverse=True)
    assert np.allclose(r, again.preprocessor_.inverse_transform(again.reconstruct(test), undo), atol=1e-5)
    assert np.sqrt(np.mean((r - x) ** 2)) < x.std()


def test_checkpoint_without_fitted_preprocessing_loads_as_the_stateless_pipeline_it_was(demo_dir, tmp_path):
    train, test = load_dataset(demo_dir, split="normal_train"), load_dataset(demo_dir, split="normal_test")
    vae = SpectraVAE(hidden_dims=(16,), epochs=1, verbose=False, preprocess="cut(1000,1750)|snv",
                     tissue_only=True).fit(train)
    payload = torch.load(vae.save(tmp_path / "new.pt"), weights_only=True)
    del payload["preprocessing"]  # as written before pipelines had fitted state
    torch.save(payload, tmp_path / "old.pt")
    old = SpectraVAE.load(tmp_path / "old.pt")
    assert np.array_equal(old.prepare(test).to_array(), vae.prepare(test).to_array())
    payload["config"]["preprocess"] = "emsc"  # a fitted step whose state is missing cannot be rebuilt
    torch.save(payload, tmp_path / "broken.pt")
    with pytest.raises(DataError, match="learns its reference"):
        SpectraVAE.load(tmp_path / "broken.pt")
