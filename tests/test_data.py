import json

import numpy as np
import pandas as pd
import pytest

from spectra_vae import DataError, load_dataset


def test_directory_dataset_counts_pixels_channels_and_reads_memory_mapped(demo, demo_dir):
    assert len(demo) == 6 * 24 * 24
    assert demo.n_channels == 442
    assert demo.scans == [f"data{i}.npy" for i in range(6)]
    assert np.array_equal(demo.wavenumbers, np.load(demo_dir / "wavenumbers.npy"))
    assert all(isinstance(s.pixels, np.memmap) for s in demo.scan_objects)
    assert demo.label_names == ["background", "stroma", "epithelium", "tumour", "paraffin"]


def test_coords_and_labels_point_back_to_the_source_pixel(demo, demo_dir):
    coords, labels = demo.coords, demo.labels
    x = demo.to_array()
    for i in [0, 700, 3000]:
        k, r, c = coords[i]
        name = demo.scans[k]
        assert np.array_equal(x[i], np.load(demo_dir / name)[r, c])
        assert labels[i] == np.load(demo_dir / "labels" / name)[r, c]


def test_image_draws_per_pixel_values_back_in_place(demo):
    values = np.arange(len(demo), dtype=float)
    img = demo.image(values, 2)
    k, r, c = demo.coords[2 * 576 + 5]
    assert img.shape == (24, 24) and img[r, c] == 2 * 576 + 5


def test_split_by_scan_is_disjoint_complete_and_seeded(demo):
    parts = demo.split(by="scan", fractions=(0.8, 0.1, 0.1), seed=0)
    names = [p.scans for p in parts]
    assert [len(n) for n in names] == [4, 1, 1]
    assert sorted(sum(names, [])) == sorted(demo.scans)
    assert sum(len(p) for p in parts) == len(demo)
    assert [p.scans for p in demo.split(by="scan", seed=0)] == names
    # another seed draws another permutation of the scans (seeds 0 and 1 differ on these 6 scans)
    assert [p.scans for p in demo.split(by="scan", seed=1)] != names
    # coords index into the part's own scans
    assert parts[1].coords[:, 0].max() == 0


def test_split_by_pixel_partitions_pixels(demo):
    a, b = demo.split(by="pixel", fractions=(0.8, 0.2), seed=0)
    assert len(a) + len(b) == len(demo)
    assert abs(len(a) - 0.8 * len(demo)) <= 1
    keys = lambda d: {(d.scans[k], r, c) for k, r, c in d.coords}  # noqa: E731
    assert not keys(a) & keys(b)


def test_split_names_select_files_from_data_splits_json(demo_dir):
    splits = json.loads((demo_dir / "data_splits.json").read_text())
    ds = load_dataset(demo_dir, split="abnormal")
    assert ds.scans == splits["abnormal"]
    assert set(np.unique(ds.labels)) >= {3}
    with pytest.raises(DataError, match="no split 'nope'"):
        load_dataset(demo_dir, split="nope")


def test_single_npy_image_and_table(tmp_path, demo_dir):
    cube = np.load(demo_dir / "data0.npy")
    np.save(tmp_path / "cube.npy", cube)
    np.save(tmp_path / "table.npy", cube.reshape(-1, 442)[:100])
    ds = load_dataset(tmp_path / "cube.npy")
    assert len(ds) == 576 and ds.scans == ["cube.npy"] and not ds.wavenumbers_known
    assert np.array_equal(ds.wavenumbers, np.arange(442))
    tab = load_dataset(tmp_path / "table.npy", wavenumbers=np.linspace(950, 1800, 442))
    assert len(tab) == 100 and tab.coords[-1].tolist() == [0, 99, 0]
    assert np.array_equal(tab.to_array(), cube.reshape(-1, 442)[:100])


def test_csv_header_gives_wavenumbers_in_either_order(tmp_path):
    wn = np.linspace(950, 1800, 5)
    x = np.random.default_rng(0).random((4, 5))
    pd.DataFrame(x, columns=[f"{w:.3f}" for w in wn]).to_csv(tmp_path / "up.csv", index=False)
    pd.DataFrame(x[:, ::-1], columns=[f"{w:.3f}" for w in wn[::-1]]).to_csv(tmp_path / "down.csv", index=False)
    up, down = load_dataset(tmp_path / "up.csv"), load_dataset(tmp_path / "down.csv")
    assert np.allclose(up.wavenumbers, wn) and np.allclose(down.wavenumbers, wn)
    assert np.allclose(up.to_array(), x, atol=1e-6) and np.allclose(down.to_array(), x, atol=1e-6)


def test_arrays_and_dataframes_are_datasets(demo_dir):
    cube = np.load(demo_dir / "data1.npy")
    assert len(load_dataset(cube)) == 576
    assert len(load_dataset(cube.reshape(-1, 442))) == 576
    df = pd.DataFrame(cube.reshape(-1, 442)[:10], columns=np.linspace(950, 1800, 442))
    ds = load_dataset(df)
    assert len(ds) == 10 and ds.wavenumbers[0] == 950


def test_nonfinite_pixels_are_excluded_counted_and_reported(tmp_path, demo_dir):
    cube = np.load(demo_dir / "data0.npy").copy()
    cube[0, 0, 5] = np.nan
    cube[3, 4, :] = np.inf
    np.save(tmp_path / "bad.npy", cube)
    with pytest.warns(UserWarning, match=r"bad\.npy.*excluded 2 of 576"):
        ds = load_dataset(tmp_path / "bad.npy")
    assert len(ds) == 574 and ds.n_nonfinite == {"bad.npy": 2}
    assert np.isfinite(ds.to_array()).all()
    assert ds.summary().loc["bad.npy", "nonfinite_excluded"] == 2


def test_bad_input_raises_data_error_naming_the_file(tmp_path, demo_dir):
    with pytest.raises(DataError, match="holds no scans"):
        load_dataset(tmp_path)
    np.save(tmp_path / "a.npy", np.zeros((4, 4, 10), np.float32) + 1)
    np.save(tmp_path / "b.npy", np.zeros((4, 4, 12), np.float32))
    with pytest.raises(DataError, match=r"b\.npy: has 12 channels but a\.npy has 10"):
        load_dataset(tmp_path)
    with pytest.raises(DataError, match=r"expected shape \(H, W, channels\)"):
        load_dataset(np.zeros(5))
    with pytest.raises(DataError, match="wavenumber axis has shape"):
        load_dataset(np.ones((3, 10)), wavenumbers=np.arange(9))
    with pytest.raises(DataError, match="not strictly increasing or decreasing"):
        load_dataset(np.ones((3, 4)), wavenumbers=[1, 3, 2, 4])
    (tmp_path / "trunc.npy").write_bytes((tmp_path / "a.npy").read_bytes()[:100])
    with pytest.raises(DataError, match=r"trunc\.npy"):
        load_dataset(tmp_path / "trunc.npy")


def test_stray_files_are_skipped_and_reported(tmp_path):
    np.save(tmp_path / "s.npy", np.random.default_rng(0).random((4, 4, 6)))
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.warns(UserWarning, match=r"skipped 1 file.*notes\.txt"):
        ds = load_dataset(tmp_path)
    assert ds.scans == ["s.npy"]


def test_read_returns_pixels_in_the_order_asked(demo):
    x = demo.to_array()
    idx = np.array([3000, 5, 1200, 5])
    assert np.array_equal(demo.read(idx), x[idx])


def test_the_finite_pixel_check_is_remembered_per_file_and_redone_when_the_file_changes(tmp_path, monkeypatch):
    from spectra_vae.io import finite as data_module

    monkeypatch.setenv("SPECTRA_VAE_CACHE", str(tmp_path / "cache"))
    scans = tmp_path / "scans"
    scans.mkdir()
    cube = np.random.default_rng(0).random((5, 6, 8)).astype(np.float32)
    cube[1, 2, 3] = np.nan
    np.save(scans / "a.npy", cube)
    with pytest.warns(UserWarning, match="excluded 1 of 30"):
        first = load_dataset(scans)
    assert len(first) == 29 and list((tmp_path / "cache" / "finite").iterdir())
    assert sorted(p.name for p in scans.iterdir()) == ["a.npy"]  # nothing written beside the data

    def no_second_pass(pixels):
        raise AssertionError("the file was checked again")

    real = data_module.finite_pixels
    monkeypatch.setattr(data_module, "finite_pixels", no_second_pass)
    with pytest.warns(UserWarning, match="excluded 1 of 30"):
        again = load_dataset(scans)  # from the record: no pass over the pixels
    np.testing.assert_array_equal(again.coords, first.coords)

    monkeypatch.setattr(data_module, "finite_pixels", real)
    cube[1, 2, 3] = 0.5
    cube[4, 0, 0] = np.inf
    np.save(scans / "a.npy", cube)
    import os
    os.utime(scans / "a.npy", ns=(1, 1))  # a different modification time, as a rewrite gives
    with pytest.warns(UserWarning, match="excluded 1 of 30"):
        changed = load_dataset(scans)
    assert (4, 0) not in {tuple(c[1:]) for c in changed.coords} and (1, 2) in {tuple(c[1:]) for c in changed.coords}


def test_an_unwritable_cache_only_costs_the_check(tmp_path, monkeypatch):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("")
    monkeypatch.setenv("SPECTRA_VAE_CACHE", str(blocker))
    (tmp_path / "scans").mkdir()
    np.save(tmp_path / "scans" / "a.npy", np.ones((3, 3, 4), np.float32))
    assert len(load_dataset(tmp_path / "scans")) == 9
    assert blocker.read_text() == ""
