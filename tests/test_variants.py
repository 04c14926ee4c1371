import numpy as np
import pytest

from spectra_vae import DataError, load_dataset, pipeline
from spectra_vae.tissue import TissueRule
from spectra_vae.variants import check_variants, compare_variants


def test_compare_variants_sees_scattering_spread_amide_i_and_emsc_maps_where_it_is_strong(demo_dir, scattered_dir):
    clean, scattered = load_dataset(demo_dir), load_dataset(scattered_dir)
    tissue = TissueRule.fit(clean).mask(clean)
    c = compare_variants(clean, scattered, tissue, max_pixels=1000)
    assert len(c.positions) == 1000 and tissue[c.positions].all()
    assert set(c.spectra) == {"clean", "scattered", "scattered, emsc(2,1)", "clean, emsc(2,1)"}
    assert c.spread.loc["scattered", "mean (cm⁻¹)"] < c.spread.loc["clean", "mean (cm⁻¹)"] - 2
    assert c.spread.loc["scattered", "s.d. (cm⁻¹)"] > c.spread.loc["clean", "s.d. (cm⁻¹)"]
    centred = c.difference["… of each pixel's departure from its variant's mean"]
    assert centred.iloc[1] < centred.iloc[0]  # after EMSC the variants vary alike from pixel to pixel
    # EMSC's per-pixel dispersion share, drawn as maps, follows the dispersion the demo added
    terms = c.emsc_terms
    assert len(terms) == len(scattered)
    for k, name in enumerate(scattered.scans):
        truth = np.load(scattered_dir / "scattering" / name.replace(".npy", ".npz"))["dispersion"]
        fitted = scattered.image(terms["dispersion_share"].to_numpy(), k)
        inside = scattered.image(tissue.astype(float), k) > 0
        assert np.corrcoef(fitted[inside], truth[inside])[0, 1] > 0.6
    # with its dispersion term EMSC narrows the apparent amide I position's spread; basic EMSC (the
    # step's default) leaves the artefact in
    basic = compare_variants(clean, scattered, tissue, max_pixels=1000, dispersion=False)
    sd = {k: v.spread.loc[[f"scattered, {spec}", f"clean, {spec}"], "s.d. (cm⁻¹)"]
          for k, v, spec in (("kk", c, "emsc(2,1)"), ("basic", basic, "emsc(2,0)"))}
    assert sd["kk"].iloc[0] < 1.2 * sd["kk"].iloc[1] and sd["basic"].iloc[0] > 1.5 * sd["basic"].iloc[1]
    assert "dispersion" not in basic.emsc_terms and set(basic.examples()) == {"least baseline", "median",
                                                                             "most baseline"}
    with pytest.raises(DataError, match="different scans"):
        check_variants(clean, scattered.select_scans([0, 1]))


def test_scattered_dir_parameter_resolves_to_a_folder_or_none(tmp_path):
    assert pipeline.resolve_scattered_dir("", "") is None
    assert pipeline.resolve_scattered_dir("none", "") is None
    assert pipeline.resolve_scattered_dir("auto", str(tmp_path)) is None  # own data: no demo twin
    assert pipeline.resolve_scattered_dir(str(tmp_path), str(tmp_path)) == tmp_path
    with pytest.raises(DataError, match="scattered_dir"):
        pipeline.resolve_scattered_dir(str(tmp_path / "missing"), "")


def test_term_maps_draw_the_models_emsc_terms_per_scan(scattered_dir):
    """`emsc.term_maps`: each term of `pixel_terms` as one map per scan, NaN where a scan has no pixel;
    basic EMSC (the default) has no dispersion map."""
    from spectra_vae import emsc
    from spectra_vae.preprocessing import Preprocessor

    ds = load_dataset(scattered_dir)
    pre = Preprocessor("emsc").fit(ds.wavenumbers, TissueRule.fit(ds).select(ds))
    assert emsc.has_emsc(pre) and not emsc.has_emsc(Preprocessor("snv")) and not emsc.has_emsc(None)
    maps = emsc.term_maps(pre, ds)
    assert set(maps) == {"multiplicative", "baseline"} and list(maps["baseline"]) == ds.scans
    terms = emsc.pixel_terms(pre, ds)
    np.testing.assert_array_equal(maps["multiplicative"]["data2.npy"],
                                  ds.image(terms["multiplicative"].to_numpy(dtype=float), 2))
    cut = ds.select_pixels(np.arange(10, len(ds)))  # the first scan's first 10 pixels left out
    assert np.isnan(emsc.term_maps(pre, cut)["baseline"][ds.scans[0]].ravel()[:10]).all()

