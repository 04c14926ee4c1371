import json

import numpy as np
import pytest
from scipy.ndimage import binary_erosion

from spectra_vae import make_demo_dataset
from spectra_vae.core.scattering import apparent_peak_position
from spectra_vae.io.demo import (
    CLASS_COMPOSITION,
    LABEL_NAMES,
    NOISE_SIGMA,
    SCATTER_BASELINE,
    SCATTER_DISPERSION,
    SCATTER_PIXEL_SD,
    TUMOUR_AMIDE_I_SHIFT,
    component_spectra,
    demo_wavenumbers,
    make_demo_scan,
)


def test_demo_scans_have_lab_layout(demo_dir):
    scan = np.load(demo_dir / "data0.npy")
    wn = np.load(demo_dir / "wavenumbers.npy")
    assert scan.shape == (24, 24, 442) and scan.dtype == np.float32
    assert wn.shape == (442,) and wn[0] == 950 and wn[-1] == 1800
    assert np.allclose(np.diff(wn), 850 / 441)
    assert json.loads((demo_dir / "labels" / "label_names.json").read_text()) == list(LABEL_NAMES)
    splits = json.loads((demo_dir / "data_splits.json").read_text())
    assert set(splits) == {"normal_train", "normal_val", "normal_test", "abnormal"}
    assert sorted(sum(splits.values(), [])) == sorted(f"data{i}.npy" for i in range(6))


def test_background_is_noise_of_the_stated_level_and_tissue_absorbs(demo_dir):
    scans = [np.load(demo_dir / f"data{i}.npy") for i in range(6)]
    labels = [np.load(demo_dir / "labels" / f"data{i}.npy") for i in range(6)]
    bg = np.concatenate([s[lab == 0] for s, lab in zip(scans, labels, strict=True)])
    tissue = np.concatenate([s[lab > 0] for s, lab in zip(scans, labels, strict=True)])
    assert abs(bg.mean()) < 3e-4
    assert np.isclose(bg.std(), NOISE_SIGMA, rtol=0.05)
    amide_i = np.argmin(np.abs(demo_wavenumbers() - 1655))
    assert 0.2 < np.median(tissue[:, amide_i]) < 1.5  # the lab's absorbance range
    assert (tissue[:, amide_i] > 10 * NOISE_SIGMA).mean() > 0.95


def test_regions_are_round_cores_and_abnormal_scans_hold_tumour(demo_dir):
    splits = json.loads((demo_dir / "data_splits.json").read_text())
    for name in sum(splits.values(), []):
        lab = np.load(demo_dir / "labels" / name)
        counts = np.bincount(lab.ravel(), minlength=4)
        assert counts[0] > 0 and counts[1] > 0 and counts[2] > 0
        assert (counts[3] > 0) == (name in splits["abnormal"])
        assert lab[0, 0] == 0 and lab[12, 12] != 0  # corners are background, the centre is tissue


def test_same_seed_same_scans_other_seed_other_scans(tmp_path):
    a = make_demo_dataset(tmp_path / "a", n_scans=2, height=8, width=8, seed=3)
    b = make_demo_dataset(tmp_path / "b", n_scans=2, height=8, width=8, seed=3)
    c = make_demo_dataset(tmp_path / "c", n_scans=2, height=8, width=8, seed=4)
    assert np.array_equal(np.load(a / "data1.npy"), np.load(b / "data1.npy"))
    assert not np.array_equal(np.load(a / "data1.npy"), np.load(c / "data1.npy"))


def test_tumour_differs_from_epithelium_in_nucleic_acid_and_glycogen_not_new_bands():
    epi, tum = CLASS_COMPOSITION["epithelium"], CLASS_COMPOSITION["tumour"]
    assert tum["nucleic_acid"] > epi["nucleic_acid"] and tum["glycogen"] < epi["glycogen"]
    assert set(tum) == set(epi)
    wn = demo_wavenumbers()
    # the tumour's amide I band sits TUMOUR_AMIDE_I_SHIFT away from the normal one: the peak of the
    # protein component, found to a fraction of a channel by a parabola through its three top channels
    def peak(s):
        y = np.where(wn > 1600, s[0], -np.inf)
        k = int(np.argmax(y))
        a, b, c = y[k - 1 : k + 2]
        return wn[k] + 0.5 * (a - c) / (a - 2 * b + c) * (wn[1] - wn[0])

    shifted, normal = component_spectra(wn, TUMOUR_AMIDE_I_SHIFT), component_spectra(wn)
    assert TUMOUR_AMIDE_I_SHIFT != 0
    assert peak(shifted) - peak(normal) == pytest.approx(TUMOUR_AMIDE_I_SHIFT, abs=0.1)


def test_scatter_variant_adds_a_baseline_under_tissue_only(tmp_path):
    a = make_demo_dataset(tmp_path / "corr", n_scans=1, height=16, width=16, seed=1, n_abnormal=0)
    b = make_demo_dataset(tmp_path / "uncorr", n_scans=1, height=16, width=16, seed=1, n_abnormal=0, scatter=True)
    lab = np.load(a / "labels" / "data0.npy")
    diff = np.load(b / "data0.npy") - np.load(a / "data0.npy")
    assert diff[lab > 0].mean() > 0.03
    assert not diff[lab == 0].any()  # background is the clean variant's, noise included
def test_paraffin_residue_sits_in_every_second_abnormal_scan_and_leaves_other_pixels_alone():
    from spectra_vae.io.demo import PARAFFIN_RESIDUE, make_demo_scan, paraffin_spectrum

    wn = demo_wavenumbers()
    plain, labels = make_demo_scan(np.random.default_rng([5, 1]), 48, 48, abnormal=True, noise=0.0)
    waxed, wax_labels = make_demo_scan(np.random.default_rng([5, 1]), 48, 48, abnormal=True, noise=0.0,
                                       paraffin=np.random.default_rng([5, 1, 1]))
    patch = wax_labels == LABEL_NAMES.index("paraffin")
    assert patch.any() and (labels[patch] > 0).all()  # on tissue only
    np.testing.assert_array_equal(waxed[~patch], plain[~patch])
    np.testing.assert_array_equal(wax_labels[~patch], labels[~patch])
    # what was added is paraffin's spectrum, its 1462 band a literature-bounded share of amide II
    added = (waxed - plain)[patch]
    shape = paraffin_spectrum(wn)
    np.testing.assert_allclose(added / added[:, [np.argmax(shape)]], np.broadcast_to(shape / shape.max(), added.shape),
                               atol=1e-4)
    i1462, i_amide2 = np.argmin(np.abs(wn - 1462)), np.argmin(np.abs(wn - 1545))
    ratio = added[:, i1462] / plain[patch][:, i_amide2]
    assert PARAFFIN_RESIDUE[0] * 0.5 - 1e-6 <= ratio.min() and ratio.max() <= PARAFFIN_RESIDUE[1] * 1.5 + 1e-6


def test_demo_folder_marks_paraffin_in_every_second_abnormal_scan(tmp_path):
    path = make_demo_dataset(tmp_path / "d", n_scans=7, height=32, width=32, seed=2, n_abnormal=3)
    splits = json.loads((path / "data_splits.json").read_text())
    has_wax = [bool((np.load(path / "labels" / f) == LABEL_NAMES.index("paraffin")).any()) for f in splits["abnormal"]]
    assert has_wax == [True, False, True]
    for f in splits["normal_train"] + splits["normal_val"] + splits["normal_test"]:
        assert set(np.unique(np.load(path / "labels" / f))) <= {0, 1, 2}



def test_scattered_scan_equals_the_clean_scan_plus_the_reported_terms():
    clean, labels = make_demo_scan(np.random.default_rng([5, 0]), 20, 18, abnormal=True)
    scattered, labels2, terms = make_demo_scan(np.random.default_rng([5, 0]), 20, 18, abnormal=True, scatter=True,
                                               return_scattering=True)
    assert np.array_equal(labels, labels2)
    added = terms.added.reshape(clean.shape)
    assert np.array_equal(scattered, clean + added)  # every other draw, the noise included, is shared
    tissue = labels > 0
    assert not added[~tissue].any() and (np.abs(added[tissue]).max(axis=1) > 0.01).all()
    assert (terms.path_length[~tissue] == 1).all() and (terms.dispersion[~tissue] == 0).all()
    _, _, none = make_demo_scan(np.random.default_rng([5, 0]), 20, 18, return_scattering=True)
    assert none is None


def test_scattered_dataset_is_the_clean_one_plus_scattering_with_its_maps_on_disk(tmp_path):
    a = make_demo_dataset(tmp_path / "corr", n_scans=2, height=16, width=16, seed=1, n_abnormal=1)
    b = make_demo_dataset(tmp_path / "uncorr", n_scans=2, height=16, width=16, seed=1, n_abnormal=1, scatter=True)
    assert not (a / "scattering").exists() and "scattering" in json.loads((b / "demo.json").read_text())
    for i in range(2):
        assert np.array_equal(np.load(a / "labels" / f"data{i}.npy"), np.load(b / "labels" / f"data{i}.npy"))
        wax = np.random.default_rng([1, i, 1]) if i == 1 else None  # the first abnormal scan carries paraffin
        _, _, terms = make_demo_scan(np.random.default_rng([1, i]), 16, 16, abnormal=i == 1, paraffin=wax,
                                     scatter=True, return_scattering=True)
        clean, scattered = np.load(a / f"data{i}.npy"), np.load(b / f"data{i}.npy")
        assert np.array_equal(scattered, clean + terms.added.reshape(clean.shape))
        maps = np.load(b / "scattering" / f"data{i}.npz")
        assert np.array_equal(maps["dispersion"], terms.dispersion.astype(np.float32))


def test_scattering_moves_amide_i_down_scales_path_length_and_is_strongest_at_the_core_edge():
    wn = demo_wavenumbers()
    clean, labels = make_demo_scan(np.random.default_rng([2, 0]), 48, 48)
    scattered, _, terms = make_demo_scan(np.random.default_rng([2, 0]), 48, 48, scatter=True, return_scattering=True)
    tissue = labels > 0
    shift = (apparent_peak_position(scattered[tissue], wn) - apparent_peak_position(clean[tissue], wn))
    assert shift.mean() < -2 and (shift < 0).mean() > 0.9  # the dispersion artefact pulls amide I down
    edge = tissue & ~binary_erosion(tissue, iterations=2)
    inner = binary_erosion(tissue, iterations=8)
    assert terms.strength[edge].mean() > 1.5 * terms.strength[inner].mean()
    # medians: at the edge many pixels reach the largest move the band allows (≈ 20 cm⁻¹), so means saturate
    assert np.median(np.abs(shift[edge[tissue]])) > 1.5 * np.median(np.abs(shift[inner[tissue]]))
    m = terms.path_length[tissue]
    assert 0.7 < m.min() and m.max() < 1.4 and m.std() > 0.03
    # the Mie baseline: a, n0 in ME-EMSC's ranges, and a broad positive offset under the bands
    assert terms.radius_um[tissue].min() >= 2 and terms.radius_um[tissue].max() <= 7.1
    assert 1.1 <= terms.refractive_index[tissue].min() and terms.refractive_index[tissue].max() <= 1.4
    base = terms.added.reshape(scattered.shape)[tissue] - (m[:, None] - 1) * clean[tissue]
    far = (wn > 1760) | (wn < 1000)  # where bands are weak, what is added is mostly baseline
    assert base[:, far].mean() > 0.02


def test_scattering_follows_cell_density_and_dispersion_varies_from_pixel_to_pixel():
    """Generator 5: nuclei scatter, so epithelium and tumour scatter more than stroma, and the
    dispersion artefact varies between neighbouring pixels, while the Mie baseline stays smooth."""
    _, labels, terms = make_demo_scan(np.random.default_rng([3, 0]), 64, 64, abnormal=True, scatter=True,
                                      return_scattering=True)
    inner = binary_erosion(labels > 0, iterations=6)  # away from the edge's own gain
    by_class = {name: np.median(terms.strength[inner & (labels == LABEL_NAMES.index(name))])
                for name in ("stroma", "epithelium", "tumour")}
    assert by_class["epithelium"] > 2 * by_class["stroma"] and by_class["tumour"] > 2 * by_class["stroma"]
    pairs = inner[:, 1:] & inner[:, :-1] & (labels[:, 1:] == labels[:, :-1])

    def step(m):  # the s.d. of the log ratio of horizontal neighbours of one class
        log_m = np.log(np.where(inner, m, np.nan))
        return (log_m[:, 1:] - log_m[:, :-1])[pairs].std()

    expected = np.sqrt(2) * SCATTER_PIXEL_SD  # the difference of two independent log factors
    assert 0.75 * expected < step(terms.dispersion) < 1.25 * expected
    assert step(terms.baseline) < 0.1  # smooth over the core
    assert np.allclose(terms.dispersion, SCATTER_DISPERSION * terms.strength * terms.nuclei)
    assert np.allclose(terms.baseline, SCATTER_BASELINE * terms.strength)
