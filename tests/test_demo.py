import json

import numpy as np
import pytest

from spectra_vae import make_demo_dataset
from spectra_vae.demo import (
    CLASS_COMPOSITION,
    LABEL_NAMES,
    NOISE_SIGMA,
    TUMOUR_AMIDE_I_SHIFT,
    component_spectra,
    demo_wavenumbers,
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
    assert abs(diff[lab == 0].mean()) < 1e-3
