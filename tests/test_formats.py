"""Each format loads with its wavenumber axis and image geometry; `convert` writes the .npy layout."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spectra_vae import DataError, load_dataset
from spectra_vae.__main__ import main

WN = np.linspace(950, 1800, 40)
CUBE = np.random.default_rng(0).random((5, 6, 40)).astype(np.float32)


def _same(ds, cube=CUBE, wn=WN):
    assert len(ds) == cube.shape[0] * cube.shape[1] and ds.n_channels == cube.shape[2]
    assert ds.scan_objects[0].height == cube.shape[0] and ds.scan_objects[0].width == cube.shape[1]
    assert np.allclose(ds.to_array(), cube.reshape(-1, cube.shape[2]), atol=1e-6)
    assert np.allclose(ds.wavenumbers, wn) and ds.wavenumbers_known


def test_agilent_tile_and_mosaic_from_the_packages_real_example_files():
    agilent_format = pytest.importorskip("agilent_format")
    root = Path(agilent_format.__file__).parent / "datasets"
    ref = agilent_format.agilentImage(str(root / "4_noimage_agg256.dat"))
    for name in ("4_noimage_agg256.dat", "4_noimage_agg256.seq"):
        ds = load_dataset(root / name)
        h, w, c = ref.data.shape
        assert (ds.scan_objects[0].height, ds.scan_objects[0].width, ds.n_channels) == (h, w, c)
        assert np.allclose(np.sort(ds.wavenumbers), np.sort(ref.wavenumbers))
        assert 700 < ds.wavenumbers.min() < ds.wavenumbers.max() < 4000
    mos = agilent_format.agilentMosaic(str(root / "5_mosaic_agg1024.dmt"))
    ds = load_dataset(root / "5_mosaic_agg1024.dmt")
    assert (ds.scan_objects[0].height, ds.scan_objects[0].width, ds.n_channels) == mos.data.shape


def test_envi_cube_with_wavelengths_in_the_header(tmp_path):
    envi = pytest.importorskip("spectral.io.envi")
    envi.save_image(str(tmp_path / "scan.hdr"), CUBE, metadata={"wavelength": [f"{w:.6f}" for w in WN]},
                    interleave="bil")
    _same(load_dataset(tmp_path / "scan.hdr"))


def test_matlab_v5_by_common_names_and_by_argument(tmp_path):
    from scipy.io import savemat

    savemat(tmp_path / "a.mat", {"cube": CUBE, "wavenumbers": WN})
    _same(load_dataset(tmp_path / "a.mat"))
    savemat(tmp_path / "b.mat", {"img": CUBE, "other": np.ones((2, 2)), "ax": WN})
    _same(load_dataset(tmp_path / "b.mat", variable="img", wavenumbers_variable="ax"))
    with pytest.raises(DataError, match="no numeric variable 'nope'"):
        load_dataset(tmp_path / "b.mat", variable="nope")


def test_matlab_v73_is_read_through_hdf5_in_column_major_order(tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "v73.mat"
    with h5py.File(path, "w", userblock_size=512) as f:
        f["cube"] = CUBE.T  # MATLAB writes column-major: h5py sees the axes reversed
        f["wavenumbers"] = WN[None, :].T
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Wed Nov 25 2026 HDF5 schema 1.00 ."
    with open(path, "r+b") as f:
        f.write(header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM")
    _same(load_dataset(path))


def test_hdf5_cube_found_in_a_group(tmp_path):
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "s.h5", "w") as f:
        f["data/spectra"] = CUBE
        f["data/wavenumbers"] = WN
    _same(load_dataset(tmp_path / "s.h5"))


def test_tsv_table_with_descending_wavenumbers(tmp_path):
    x = CUBE.reshape(-1, 40)
    pd.DataFrame(x[:, ::-1], columns=[f"{w:.4f}" for w in WN[::-1]]).to_csv(tmp_path / "t.tsv", sep="\t", index=False)
    ds = load_dataset(tmp_path / "t.tsv")
    assert np.allclose(ds.wavenumbers, WN, atol=1e-3) and np.allclose(ds.to_array(), x, atol=1e-6)


def test_directory_mixing_formats_needs_agreeing_axes(tmp_path):
    from scipy.io import savemat

    np.save(tmp_path / "a.npy", CUBE)
    savemat(tmp_path / "b.mat", {"cube": CUBE * 2, "wavenumbers": WN})
    ds = load_dataset(tmp_path)
    assert ds.scans == ["a.npy", "b.mat"] and np.allclose(ds.wavenumbers, WN)
    assert np.allclose(ds.read([len(ds) - 1]), CUBE[-1, -1] * 2)
    savemat(tmp_path / "c.mat", {"cube": CUBE, "wavenumbers": WN + 5})
    with pytest.raises(DataError, match=r"c\.mat: its wavenumber axis .* differs from b\.mat"):
        load_dataset(tmp_path)


def test_missing_optional_reader_names_the_package(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "h5py", None)  # importing it now raises ImportError
    (tmp_path / "x.h5").write_bytes(b"")
    with pytest.raises(DataError, match="needs the package 'h5py': pip install h5py"):
        load_dataset(tmp_path / "x.h5")


def test_convert_writes_scans_and_wavenumbers_that_load_the_same(tmp_path):
    from scipy.io import savemat

    savemat(tmp_path / "in.mat", {"cube": CUBE, "wavenumbers": WN})
    assert main(["convert", str(tmp_path / "in.mat"), str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".spectra_vae.json", "in.npy", "wavenumbers.npy"]
    assert np.load(tmp_path / "out" / "in.npy").shape == CUBE.shape
    _same(load_dataset(tmp_path / "out"))
