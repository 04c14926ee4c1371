"""Axes and shapes that silently disagree (issue 33, part 3): wherever two sources state an axis, a shape
or the ownership of a scan name, they agree (a reversed axis flips the spectra), or the loader refuses or
warns naming both; it never picks one in silence."""

import numpy as np
import pandas as pd
import pytest

from spectra_vae import DataError, load_dataset

WN = np.linspace(950, 1800, 12)
CUBE = (np.random.default_rng(4).random((3, 4, 12)) + 0.1).astype(np.float32)


def _table(path, values, axis):
    pd.DataFrame(values, columns=[repr(float(w)) for w in axis]).to_csv(path, index=False)


def test_a_descending_table_in_a_folder_with_a_descending_axis_keeps_each_channel_at_its_wavenumber(tmp_path):
    spectra = CUBE.reshape(-1, 12)
    np.save(tmp_path / "wavenumbers.npy", WN[::-1])  # the folder's axis: descending
    np.save(tmp_path / "a.npy", CUBE[..., ::-1])  # a scan stored on that axis
    _table(tmp_path / "b.csv", spectra[:, ::-1], WN[::-1])  # the same spectra, the same descending header
    ds = load_dataset(tmp_path)
    np.testing.assert_array_equal(ds.wavenumbers, WN[::-1])
    a, b = ds.select_scans(["a.npy"]).to_array(), ds.select_scans(["b.csv"]).to_array()
    np.testing.assert_allclose(b, a, rtol=1e-6)  # not reversed against the axis
    _table(tmp_path / "b.csv", spectra, WN)  # ascending header: flipped to the folder's order
    np.testing.assert_allclose(load_dataset(tmp_path).select_scans(["b.csv"]).to_array(), a, rtol=1e-6)


def test_a_files_axis_that_disagrees_with_the_folders_is_refused_naming_both(tmp_path):
    np.save(tmp_path / "wavenumbers.npy", WN)
    np.save(tmp_path / "a.npy", CUBE)
    _table(tmp_path / "b.csv", CUBE.reshape(-1, 12), WN + 3)
    with pytest.raises(DataError, match=r"b\.csv: its wavenumber axis \(953…1803 cm⁻¹.*differs from .*wavenumbers.npy"):
        load_dataset(tmp_path)
    with pytest.raises(DataError, match="differs from the wavenumbers argument"):
        load_dataset(tmp_path / "b.csv", wavenumbers=WN)


@pytest.mark.parametrize("cells", ["TRUE,FALSE", "True,0.5", "false,true"])
def test_true_false_cells_are_refused_not_read_as_one_and_zero(tmp_path, cells):
    (tmp_path / "t.csv").write_text(f"1000,1002\n0.1,0.2\n{cells}\n")
    with pytest.raises(DataError, match=r"t\.csv: .*(true/false|non-numeric)"):
        load_dataset(tmp_path / "t.csv")
    frame = pd.DataFrame({1000.0: [True, False], 1002.0: [0.1, 0.2]})
    with pytest.raises(DataError, match="holds true/false values"):
        load_dataset(frame)


def test_a_frames_own_columns_and_the_wavenumbers_argument_must_agree(tmp_path):
    x = CUBE.reshape(-1, 12)
    frame = pd.DataFrame(x, columns=WN)
    np.testing.assert_array_equal(load_dataset(frame, wavenumbers=WN).to_array(), x)
    flipped = load_dataset(frame, wavenumbers=WN[::-1])  # the same axis the other way round: spectra flipped
    np.testing.assert_array_equal(flipped.to_array(), x[:, ::-1])
    with pytest.raises(DataError, match="DataFrame: its wavenumber axis .* differs from the wavenumbers argument"):
        load_dataset(frame, wavenumbers=WN * 2)
    np.testing.assert_array_equal(load_dataset(pd.DataFrame(x), wavenumbers=WN).to_array(), x)  # 0, 1, …: no axis


@pytest.mark.parametrize("layout", ["channels_first", "by_line"])
def test_an_hdf5_cube_is_read_along_the_dimension_its_axis_names(tmp_path, layout):
    h5py = pytest.importorskip("h5py")
    stored = np.moveaxis(CUBE, -1, 0 if layout == "channels_first" else 1)  # (12, 3, 4) or (3, 12, 4)
    with h5py.File(tmp_path / "s.h5", "w") as f:
        f["cube"] = stored
        f["wavenumbers"] = WN
    ds = load_dataset(tmp_path / "s.h5")
    np.testing.assert_array_equal(ds.to_array(), CUBE.reshape(-1, 12))
    np.testing.assert_array_equal(ds.wavenumbers, WN)


def test_an_axis_matching_two_dimensions_warns_and_one_matching_none_is_refused(tmp_path):
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "two.h5", "w") as f:
        f["cube"] = np.ones((12, 4, 12), np.float32)
        f["wavenumbers"] = WN
    with pytest.warns(UserWarning, match=r"two\.h5: its wavenumber axis has 12 values, as many as dimensions \[0, 2\]"):
        assert load_dataset(tmp_path / "two.h5").n_channels == 12
    with h5py.File(tmp_path / "none.h5", "w") as f:
        f["cube"] = np.ones((3, 4, 12), np.float32)
        f["axis"] = np.linspace(950, 1800, 7)
    with pytest.raises(DataError, match=r"wavenumbers variable|no dimension of its array \(3, 4, 12\)"):
        load_dataset(tmp_path / "none.h5", wavenumbers_variable="axis")
    with pytest.raises(DataError, match=r"s\.h5: its wavenumber axis .* differs from the wavenumbers argument"):
        with h5py.File(tmp_path / "s.h5", "w") as f:
            f["cube"] = CUBE
            f["wavenumbers"] = WN
        load_dataset(tmp_path / "s.h5", wavenumbers=WN + 50)


@pytest.mark.parametrize("other", ["a.csv", "a.h5", "a.hdr", "a.mat"])
def test_two_files_claiming_one_scan_name_are_refused_naming_both(tmp_path, other):
    np.save(tmp_path / "a.npy", CUBE)
    (tmp_path / other).write_bytes(b"1000,1002\n0.1,0.2\n" if other.endswith(".csv") else b"")
    with pytest.raises(DataError, match=r"(a\.npy and a\.\w+|a\.\w+ and a\.npy) both claim the scan name 'a'"):
        load_dataset(tmp_path)
