import json
import re
import shutil

import numpy as np
import pytest
from scipy.stats import spearmanr

from spectra_vae import DataError, load_dataset
from spectra_vae import workflow as pipeline
from spectra_vae.preprocess.tissue import TissueRule
from spectra_vae.preprocess.variants import check_variants, compare_variants, scan_pairs
from spectra_vae.workflow import notebooks


def test_compare_variants_sees_scattering_spread_amide_i_and_emsc_maps_where_it_is_strong(demo_dir, scattered_dir):
    clean, scattered = load_dataset(demo_dir), load_dataset(scattered_dir)
    tissue = TissueRule.fit(clean).mask(clean)
    c = compare_variants(clean, scattered, tissue, max_pixels=1000)
    assert len(c.positions) == 1000 and tissue[c.positions].all()
    assert set(c.spectra) == {"clean", "scattered", "scattered, emsc(2,0)", "clean, emsc(2,0)", "scattered, emsc(2,1)",
                              "clean, emsc(2,1)"}  # basic EMSC, as a model trains, beside the dispersion term
    assert c.spread.loc["scattered", "mean (cm⁻¹)"] < c.spread.loc["clean", "mean (cm⁻¹)"] - 2
    assert c.spread.loc["scattered", "s.d. (cm⁻¹)"] > c.spread.loc["clean", "s.d. (cm⁻¹)"]
    centred = c.difference["… of each pixel's departure from its variant's mean"]
    assert (centred.iloc[1:] < centred.iloc[0]).all()  # after EMSC the variants vary alike from pixel to pixel
    # EMSC's per-pixel dispersion share, drawn as maps, follows the dispersion the demo added
    terms = c.emsc_terms
    assert len(terms) == len(scattered)
    for k, name in enumerate(scattered.scans):
        truth = np.load(scattered_dir / "scattering" / name.replace(".npy", ".npz"))["dispersion"]
        fitted = scattered.image(terms["dispersion_share"].to_numpy(), k)
        inside = scattered.image(tissue.astype(float), k) > 0
        # by rank: b / a follows the phase of the mixing (tan of φ − the reference's), while d = tan φ
        # is heavy-tailed (a log-normal pixel factor), so the two are not in proportion
        assert spearmanr(fitted[inside], truth[inside])[0] > 0.8
    # with its dispersion term EMSC narrows the apparent amide I position's spread; basic EMSC (the
    # step's default) leaves the artefact in
    basic = compare_variants(clean, scattered, tissue, max_pixels=1000, dispersion=False)
    sd = {k: v.spread.loc[[f"scattered, {spec}", f"clean, {spec}"], "s.d. (cm⁻¹)"]
          for k, v, spec in (("kk", c, "emsc(2,1)"), ("basic", basic, "emsc(2,0)"))}
    assert sd["kk"].iloc[0] < 1.2 * sd["kk"].iloc[1] and sd["basic"].iloc[0] > 1.5 * sd["basic"].iloc[1]
    assert "dispersion" not in basic.emsc_terms and set(basic.examples()) == {"least baseline", "median",
                                                                             "most baseline"}
    with pytest.raises(DataError, match="different numbers of scans"):
        check_variants(clean, scattered.select_scans([0, 1]))


def test_scattered_dir_parameter_resolves_to_a_folder_or_none(tmp_path):
    assert pipeline.resolve_scattered_dir("", "") is None
    assert pipeline.resolve_scattered_dir("none", "") is None
    assert pipeline.resolve_scattered_dir("auto", str(tmp_path)) is None  # own data: no demo twin
    assert pipeline.resolve_scattered_dir(str(tmp_path), str(tmp_path)) == tmp_path
    with pytest.raises(DataError, match="scattered_dir"):
        pipeline.resolve_scattered_dir(str(tmp_path / "missing"), "")


def test_term_maps_draw_the_models_emsc_terms_per_scan(scattered_dir):
    """`diagnostics.term_maps`: each term of `pixel_terms` as one map per scan, NaN where a scan has no pixel;
    basic EMSC (the default) has no dispersion map."""
    from spectra_vae.preprocess import diagnostics
    from spectra_vae.preprocess.pipeline import Preprocessor

    ds = load_dataset(scattered_dir)
    pre = Preprocessor("emsc").fit(ds.wavenumbers, TissueRule.fit(ds).select(ds))
    assert diagnostics.has_emsc(pre)
    assert not diagnostics.has_emsc(Preprocessor("snv")) and not diagnostics.has_emsc(None)
    maps = diagnostics.term_maps(pre, ds)
    assert set(maps) == {"multiplicative", "baseline"} and list(maps["baseline"]) == ds.scans
    terms = diagnostics.pixel_terms(pre, ds)
    np.testing.assert_array_equal(maps["multiplicative"]["data2.npy"],
                                  ds.image(terms["multiplicative"].to_numpy(dtype=float), 2))
    cut = ds.select_pixels(np.arange(10, len(ds)))  # the first scan's first 10 pixels left out
    assert np.isnan(diagnostics.term_maps(pre, cut)["baseline"][ds.scans[0]].ravel()[:10]).all()



def lab_folder(root, demo_dir, scattered_dir, uncorr_order=None):
    """Both variants in one folder under their own names, as the lab keeps them, with a split file
    naming each variant's scans (`uncorr_order`: the uncorrected list in another order)."""
    root.mkdir()
    names = sorted(p.name for p in demo_dir.glob("data*.npy"))
    for name in names:
        shutil.copy(demo_dir / name, root / name.replace(".npy", "_corr.npy"))
        shutil.copy(scattered_dir / name, root / name.replace(".npy", "_uncorr.npy"))
    shutil.copy(demo_dir / "wavenumbers.npy", root / "wavenumbers.npy")
    order = uncorr_order or list(range(len(names)))
    (root / "data_splits.json").write_text(json.dumps({
        "all_corr": [n.replace(".npy", "_corr.npy") for n in names],
        "all_uncorr": [names[i].replace(".npy", "_uncorr.npy") for i in order]}))
    return root


def test_both_variants_in_one_folder_pair_up_by_their_split_lists(tmp_path, demo_dir, scattered_dir):
    folder = lab_folder(tmp_path / "lab", demo_dir, scattered_dir)
    clean = load_dataset(folder, split="all_corr")
    where, scattered = pipeline.load_scattered_variant(folder, str(folder), "auto", "all_corr", "all_uncorr")
    assert where == f"{folder}, split all_uncorr" and scattered.scans[0] == "data0_uncorr.npy"
    pairs = scan_pairs(clean, scattered)
    assert list(pairs["scattered"]) == [n.replace("_corr", "_uncorr") for n in clean.scans]
    assert list(pairs["pixels"]) == [576] * 6
    c = compare_variants(clean, scattered, TissueRule.fit(clean).mask(clean), max_pixels=500)
    assert c.spread.loc["scattered", "s.d. (cm⁻¹)"] > c.spread.loc["clean", "s.d. (cm⁻¹)"]
    # two folders of the same files, read with the same split names
    assert pipeline.load_scattered_variant(folder, str(folder), "", "all_corr", "")[1] is None
    twin = pipeline.load_scattered_variant(demo_dir, str(demo_dir), str(scattered_dir), "normal_train", "")[1]
    assert twin.scans == load_dataset(demo_dir, split="normal_train").scans


def test_pairs_follow_the_split_lists_order_and_sizes_must_match(tmp_path, demo_dir, scattered_dir):
    folder = lab_folder(tmp_path / "lab", demo_dir, scattered_dir, uncorr_order=[1, 0, 2, 3, 5, 4])
    clean, scattered = load_dataset(folder, split="all_corr"), load_dataset(folder, split="all_uncorr")
    pairs = scan_pairs(clean, scattered)  # what the notebook prints, so that a wrong order shows
    assert list(zip(pairs["clean"], pairs["scattered"], strict=True))[:2] == [
        ("data0_corr.npy", "data1_uncorr.npy"), ("data1_corr.npy", "data0_uncorr.npy")]
    small = load_dataset(clean.to_array()[:10].reshape(2, 5, -1).astype(np.float32), wavenumbers=clean.wavenumbers)
    with pytest.raises(DataError, match="array and its uncorrected twin data1_uncorr.npy differ in size: 2×5"):
        check_variants(small, scattered.select_scans([0]))


def test_notebook_01_compares_the_variants_of_one_folder_by_split(tmp_path, demo_dir, scattered_dir):
    """The lab's layout through papermill: `-p split all_corr -p scattered_split all_uncorr`."""
    import nbformat

    folder = lab_folder(tmp_path / "lab", demo_dir, scattered_dir)
    pipeline.run_pipeline(folder, tmp_path / "run", {"split": "all_corr", "scattered_split": "all_uncorr"},
                          notebooks=("01_data_exploration.ipynb",), html=False, live=False)
    nb = nbformat.read(tmp_path / "run" / "01_data_exploration.ipynb", as_version=4)
    printed = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []) if o.output_type == "stream")
    assert f"scattered variant: {folder}, split all_uncorr" in printed
    assert re.search(r"data0_corr.npy +data0_uncorr.npy +576", printed) and "s.d. ÷ first" in printed
    assert (tmp_path / "run" / "figures" / "01_variants_amide_i_position.png").is_file()


def test_a_pipeline_run_checks_the_explored_splits_names_but_lets_them_overlap_training(tmp_path, demo_dir,
                                                                                         scattered_dir):
    """A run on the uncorrected scans that also shows the variants in notebook 01: `split` and
    `scattered_split` may list the training scans; each name must exist, checked before any notebook."""
    folder = lab_folder(tmp_path / "lab", demo_dir, scattered_dir)
    names = json.loads((folder / "data_splits.json").read_text())
    corr, uncorr = names["all_corr"], names["all_uncorr"]
    (folder / "data_splits.json").write_text(json.dumps({
        **names, "normal_train": uncorr[:2], "normal_val": uncorr[2:3], "normal_test": uncorr[3:4],
        "abnormal": uncorr[4:], "corr": corr}))
    src = pipeline.project_root() / "notebooks"
    declared = {name: notebooks.notebook_parameters(src / name) for name in pipeline.NOTEBOOKS}
    ok = {"split": "corr", "scattered_split": "normal_train,normal_val,normal_test,abnormal", "preprocess": "emsc"}
    assert notebooks.check_run(folder, tmp_path / "run", ok, declared)["scattered_split"] == ok["scattered_split"]
    with pytest.raises(DataError, match=r"parameter scattered_split: .* has no split 'abnormla' \(did you mean "):
        notebooks.check_run(folder, tmp_path / "run", {**ok, "scattered_split": "normal_train,abnormla"}, declared)
    with pytest.raises(DataError, match=r"parameter split: .* has no split 'cor'"):
        notebooks.check_run(folder, tmp_path / "run", {**ok, "split": "cor"}, declared)
