"""Property-based tests (Hypothesis): malformed files and parameters for every reader and public entry point.

Each property says: within a time limit, the input is either handled correctly (a sound dataset,
a working model, a run that starts with checked values) or refused with the package's own error
(`DataError`, `TrainingError`) naming what is wrong. Any other exception, a hang, a read outside
the given paths or a wrong result fails. The number of examples comes from the settings profile in
conftest.py (`make test` runs a bounded, reproducible set).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import tempfile
import warnings
from pathlib import Path
from unittest import mock

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
import torch
from hypothesis import event, given, settings
from hypothesis import strategies as st

from spectra_vae import DataError, SpectraVAE, TrainingError, load_dataset, make_demo_dataset
from spectra_vae import workflow as pipeline
from spectra_vae.__main__ import main
from spectra_vae.io.dataset import SpectralDataset
from spectra_vae.preprocess.pipeline import STEPS, Preprocessor
from spectra_vae.workflow import notebooks, parameters

OWN_ERRORS = (DataError, TrainingError)
SCAN_NAMES = ["data0.npy", "data1.npy", "data2.npy", "data3.npy"]


class Refused:
    def __init__(self, error: Exception) -> None:
        self.error = error


def outcome(time_limit, call):
    """`call()`'s result, or `Refused` when it raised the package's own error with a message."""
    with time_limit(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            result = call()
        except OWN_ERRORS as exc:
            assert str(exc).strip(), "an error without a message"
            event(f"refused ({type(exc).__name__})")
            return Refused(exc)
    event("handled")
    return result


def assert_sound(ds: SpectralDataset) -> np.ndarray:
    """What every accepted dataset promises: finite pixels, a monotonic axis, coordinates in place."""
    assert isinstance(ds, SpectralDataset) and len(ds) > 0 and ds.n_channels >= 2
    x = ds.to_array()
    assert x.shape == (len(ds), ds.n_channels) and np.isfinite(x).all()
    d = np.diff(ds.wavenumbers)
    assert np.isfinite(ds.wavenumbers).all() and ((d > 0).all() or (d < 0).all())
    for k, r, c in ds.coords[:: max(1, len(ds) // 7)]:
        scan = ds.scan_objects[k]
        assert 0 <= r < scan.height and 0 <= c < scan.width
    return x


def _scans(folder: Path, n: int = 4, shape=(3, 4, 8)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        np.save(folder / f"data{i}.npy", rng.random(shape).astype(np.float32) + 0.1)
    return folder


# -- readers: any bytes -------------------------------------------------------------------------
MAGIC = {".npy": b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4), }",
         ".h5": b"\x89HDF\r\n\x1a\n", ".hdf5": b"\x89HDF\r\n\x1a\n", ".mat": b"MATLAB 5.0 MAT-file" + b" " * 97,
         ".hdr": b"ENVI\nsamples = 2\nlines = 2\nbands = 3\ndata type = 4\ninterleave = bsq\n",
         ".csv": b"1000,1002,1004\n", ".tsv": b"1000\t1002\n", ".txt": b"1000 1002\n",
         ".dat": b"", ".seq": b"", ".dmt": b""}


@given(suffix=st.sampled_from(sorted(MAGIC)), magic=st.booleans(), body=st.binary(max_size=3000),
       in_folder=st.booleans())
def test_any_bytes_named_like_a_scan_are_read_soundly_or_refused(time_limit, suffix, magic, body, in_folder):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"scan{suffix}"
        path.write_bytes((MAGIC[suffix] if magic else b"") + body)
        result = outcome(time_limit, lambda: load_dataset(Path(tmp) if in_folder else path))
        if not isinstance(result, Refused):
            assert_sound(result)


# -- readers: .npy arrays of any dtype, shape and order ----------------------------------------
ANY_DTYPE = st.one_of(hnp.floating_dtypes(), hnp.integer_dtypes(), hnp.unsigned_integer_dtypes(),
                      hnp.boolean_dtypes(), hnp.complex_number_dtypes(), hnp.datetime64_dtypes(),
                      hnp.unicode_string_dtypes(max_len=3), hnp.byte_string_dtypes(max_len=3))


SCAN_SHAPES = st.one_of(st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(2, 6)),
                        st.tuples(st.integers(1, 6), st.integers(2, 6)))


@given(arr=st.one_of(hnp.arrays(st.sampled_from(["<f4", ">f8", "<i2", "<u1", "<f2"]), SCAN_SHAPES),
                     hnp.arrays(ANY_DTYPE, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5))),
       fortran=st.booleans())
def test_npy_scans_of_any_dtype_shape_and_order_load_exactly_or_are_refused(time_limit, arr, fortran):
    stored = np.asfortranarray(arr) if fortran else arr
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scan.npy"
        np.save(path, stored, allow_pickle=False)
        result = outcome(time_limit, lambda: load_dataset(path))
    f32 = np.finfo(np.float32).max
    usable = (arr.dtype.kind in "fiu" and arr.ndim in (2, 3) and arr.size > 0 and arr.shape[-1] >= 2
              and (stored.flags.c_contiguous or arr.ndim < 2))
    if usable:
        pixels = arr.reshape(-1, arr.shape[-1])
        finite = np.isfinite(pixels).all(axis=1) if arr.dtype.kind == "f" else np.ones(len(pixels), bool)
        if arr.dtype.kind == "f":
            finite &= (np.abs(pixels) <= f32).all(axis=1)
        usable = bool(finite.any())
    if not usable:
        assert isinstance(result, Refused), f"accepted {arr.dtype} {arr.shape} fortran={fortran}"
        return
    assert not isinstance(result, Refused), result.error
    x = assert_sound(result)
    np.testing.assert_array_equal(x, pixels[finite].astype(np.float32))
    assert result.n_nonfinite == {"scan.npy": int((~finite).sum())}


@given(flips=st.lists(st.tuples(st.integers(0, 127), st.integers(0, 255)), min_size=1, max_size=6),
       cut=st.one_of(st.none(), st.integers(0, 400)))
def test_npy_files_with_damaged_headers_or_truncated_are_refused_or_read_soundly(time_limit, flips, cut):
    buffer = io.BytesIO()
    np.save(buffer, np.random.default_rng(0).random((3, 4, 8)).astype(np.float32))
    data = bytearray(buffer.getvalue())
    for at, value in flips:
        data[at] = value
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scan.npy"
        path.write_bytes(bytes(data if cut is None else data[:cut]))
        result = outcome(time_limit, lambda: load_dataset(path))
        if not isinstance(result, Refused):
            assert_sound(result)


# -- readers: tables ---------------------------------------------------------------------------
TOKEN = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(lambda v: f"{v:.6g}"),
                  st.integers(-10, 4000).map(str), st.text(alphabet="abe+-.0123456789 \"", max_size=6), st.just(""))


NUMBERS = st.lists(st.integers(900, 1900), min_size=2, max_size=6, unique=True).map(
    lambda v: [f"{x:.1f}" for x in sorted(v)])
VALUE = st.one_of(st.floats(-1, 2).map(lambda v: f"{v:.5g}"), st.sampled_from(["", "nan", "inf"]))


@st.composite
def tables(draw) -> tuple[list[str], list[list[str]]]:
    """A header and rows: mostly a well-formed table of numbers, sometimes with junk anywhere."""
    header = draw(st.one_of(NUMBERS, NUMBERS.map(lambda h: h[::-1]), NUMBERS.map(lambda h: h + h[:1]),
                            st.lists(TOKEN, max_size=6)))
    width = st.integers(max(0, len(header) - 1), len(header) + 1) if draw(st.booleans()) else st.just(len(header))
    rows = draw(st.lists(width.flatmap(lambda n: st.lists(VALUE, min_size=n, max_size=n)), max_size=5))
    if draw(st.integers(0, 3)) == 0 and rows:
        rows[0] = draw(st.lists(TOKEN, max_size=7))
    return header, rows


@given(table=tables(), sep=st.sampled_from([",", ";", "\t", " ", "|"]), suffix=st.sampled_from([".csv", ".tsv",
                                                                                              ".txt"]))
def test_tables_with_any_header_and_cells_are_read_as_written_or_refused(time_limit, table, sep, suffix):
    header, rows = table
    text = "\n".join(sep.join(r) for r in [header, *rows]) + "\n"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"t{suffix}"
        path.write_text(text)
        result = outcome(time_limit, lambda: load_dataset(path))
    if isinstance(result, Refused):
        return
    assert_sound(result)
    numbers = [float(t) for t in header]  # an accepted header is the wavenumbers, exactly as written
    assert len(set(numbers)) == len(numbers)
    np.testing.assert_allclose(result.wavenumbers, sorted(numbers))


# -- side files: splits, labels, label names, wavenumbers ---------------------------------------
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
                    max_leaves=12)
ENTRY = st.one_of(st.sampled_from(SCAN_NAMES + ["data0", "data9.npy", "../data0.npy", "/etc/passwd", "", "labels"]),
                  st.integers(), st.none(), st.lists(st.just("data0.npy"), max_size=1))
SPLITS = st.dictionaries(st.sampled_from(["normal_train", "normal_val", "normal_test", "abnormal", "x"]),
                         st.lists(ENTRY, max_size=4), max_size=5)


VALID_SPLITS = st.permutations(SCAN_NAMES).flatmap(lambda names: st.tuples(st.integers(1, 2), st.integers(0, 1)).map(
    lambda cut: {"normal_train": names[: cut[0]], "normal_val": names[cut[0]: cut[0] + cut[1]],
                 "normal_test": names[cut[0] + cut[1]:]}))


@given(content=st.one_of(VALID_SPLITS.map(json.dumps), SPLITS.map(json.dumps), JSON.map(json.dumps),
                         st.binary(max_size=60).map(
       lambda b: b.decode("latin-1"))),
       names=st.one_of(st.just(["normal_train", "normal_val", "normal_test"]),
                       st.lists(st.sampled_from(["normal_train", "normal_val", "normal_test", "abnormal", "x", "nope",
                                                 ""]), min_size=3, max_size=3)))
def test_split_files_select_exactly_the_listed_scans_or_are_refused(time_limit, content, names):
    with tempfile.TemporaryDirectory() as tmp:
        folder = _scans(Path(tmp) / "scans")
        (folder / "data_splits.json").write_text(content)
        result = outcome(time_limit, lambda: load_dataset(folder, split=names[0]))
        if not isinstance(result, Refused):
            listed = json.loads(content)[names[0]]
            assert_sound(result)
            assert [Path(s).stem for s in result.scans] == [Path(e).stem for e in listed]
        splits = outcome(time_limit, lambda: pipeline.make_splits(folder, *names))
        if not isinstance(splits, Refused):  # named splits, never a random one, and no scan twice
            assert splits.how.startswith("splits ")
            parts = [splits.train.scans, [] if splits.validation is None else splits.validation.scans,
                     splits.test.scans]
            everything = sum(parts, [])
            assert len(everything) == len(set(everything))
            named = json.loads(content)
            assert [Path(s).stem for s in splits.train.scans] == [Path(e).stem for e in named[names[0]]]


@given(labels=hnp.arrays(st.one_of(hnp.integer_dtypes(), hnp.floating_dtypes(), hnp.boolean_dtypes(),
                                   hnp.unicode_string_dtypes(max_len=2)),
                         st.sampled_from([(3, 4), (12,), (4, 3), (3, 4, 1), (11,), ()])),
       names=st.one_of(st.none(), JSON.map(json.dumps), st.lists(st.sampled_from(["a", "b", "c"]), max_size=4)
                       .map(json.dumps)))
def test_label_maps_and_names_are_used_as_given_or_refused(time_limit, labels, names):
    with tempfile.TemporaryDirectory() as tmp:
        folder = _scans(Path(tmp) / "scans", n=1)
        (folder / "labels").mkdir()
        np.save(folder / "labels" / "data0.npy", labels)
        if names is not None:
            (folder / "labels" / "label_names.json").write_text(names)
        result = outcome(time_limit, lambda: load_dataset(folder))
    if isinstance(result, Refused):
        return
    assert_sound(result)
    got = result.labels
    assert got is not None and got.dtype == np.int64 and got.shape == (12,)
    assert labels.shape in ((3, 4), (12,))  # a transposed or mis-sized map is never accepted
    np.testing.assert_array_equal(got, labels.reshape(-1).astype(np.int64))
    if result.label_names is not None:
        assert all(isinstance(n, str) for n in result.label_names) and got.max() < len(result.label_names)


MONOTONIC = st.lists(st.floats(-1e6, 1e6), min_size=8, max_size=8, unique=True).map(
    lambda v: np.sort(np.asarray(v)))


@given(axis=st.one_of(MONOTONIC, MONOTONIC.map(lambda a: a[::-1].copy()),
                      hnp.arrays(st.one_of(hnp.floating_dtypes(), hnp.integer_dtypes(), hnp.complex_number_dtypes(),
                                           hnp.unicode_string_dtypes(max_len=2)),
                                 hnp.array_shapes(min_dims=0, max_dims=2, max_side=9))),
       given_as_argument=st.booleans())
def test_wavenumber_axes_are_used_as_given_or_refused(time_limit, axis, given_as_argument):
    with tempfile.TemporaryDirectory() as tmp:
        folder = _scans(Path(tmp) / "scans", n=1)
        if given_as_argument:
            result = outcome(time_limit, lambda: load_dataset(folder, wavenumbers=axis))
        else:
            np.save(folder / "wavenumbers.npy", axis)
            result = outcome(time_limit, lambda: load_dataset(folder))
    if not isinstance(result, Refused):
        assert_sound(result)
        np.testing.assert_array_equal(result.wavenumbers, axis.astype(float))


@given(kind=st.sampled_from(["fifo", "socket", "device", "dangling", "folder"]),
       name=st.sampled_from(["data9.npy", "data_splits.json", "wavenumbers.npy", "labels/data0.npy",
                             "labels/label_names.json", "scan.h5", "scan.csv", "cube.img"]))
def test_files_that_are_not_regular_files_are_refused_without_blocking(time_limit, kind, name):
    with tempfile.TemporaryDirectory() as tmp:
        folder = _scans(Path(tmp) / "scans")
        (folder / "labels").mkdir()
        (folder / "data_splits.json").write_text(json.dumps({"all": SCAN_NAMES[:2]}))
        if name == "cube.img":  # the data file of an ENVI header
            envi = pytest.importorskip("spectral.io.envi")
            envi.save_image(str(folder / "cube.hdr"), np.ones((2, 2, 8), np.float32), interleave="bsq")
        target = folder / name
        if target.exists():
            target.unlink()
        server = None
        if kind == "fifo":
            os.mkfifo(target)
        elif kind == "socket":
            server = socket.socket(socket.AF_UNIX)
            server.bind(str(target))
        elif kind == "device":
            os.symlink("/dev/zero", target)
        elif kind == "dangling":
            os.symlink(folder / "missing", target)
        else:
            target.mkdir()
        try:
            whole = outcome(time_limit, lambda: load_dataset(folder))
            split = outcome(time_limit, lambda: load_dataset(folder, split="all"))
            direct = outcome(time_limit, lambda: load_dataset(target)) if kind != "folder" else None
        finally:
            if server is not None:
                server.close()
    for result in (whole, split):
        if not isinstance(result, Refused):
            assert_sound(result)
    if direct is not None:
        assert isinstance(direct, Refused)


# -- readers: structured instrument files -------------------------------------------------------
AXIS_NAMES = ["wavenumbers", "wavelength", "wl", "wn", "x_axis"]


@given(arrays=st.lists(st.one_of(
    st.tuples(st.sampled_from(["cube", "data/spectra", "img"]), st.sampled_from(["f4", "f8", "i2"]),
              st.tuples(st.integers(2, 4), st.integers(2, 4), st.just(8)).map(list)),
    st.tuples(st.sampled_from(AXIS_NAMES), st.sampled_from(["f4", "f8"]), st.just([8])),
    st.tuples(st.sampled_from(["cube", "data/spectra", "img", *AXIS_NAMES]),
              st.sampled_from(["f4", "f8", "i2", "u1", "?"]), st.lists(st.integers(0, 6), min_size=1, max_size=3))),
    min_size=1, max_size=4, unique_by=lambda t: t[0]),
       unit=st.one_of(st.none(), st.sampled_from(["cm-1", "um", "nm", "Wavenumber", "GHz", "index"])),
       elsewhere=st.sampled_from(["none", "none", "none", "external", "virtual"]))
def test_hdf5_files_are_read_from_inside_themselves_or_refused(time_limit, arrays, unit, elsewhere):
    h5py = pytest.importorskip("h5py")
    with tempfile.TemporaryDirectory() as tmp:
        outside = Path(tmp) / "outside"
        outside.mkdir()
        (outside / "secret.bin").write_bytes(np.full(400, 7, np.float32).tobytes())
        with h5py.File(outside / "src.h5", "w") as f:
            f["cube"] = np.full((3, 4, 8), 7, np.float32)
        path = Path(tmp) / "in" / "scan.h5"
        path.parent.mkdir()
        rng = np.random.default_rng(0)
        with h5py.File(path, "w") as f:
            for name, dtype, shape in arrays:
                values = (rng.random(shape) * 100 + 900).astype(dtype)
                f[name] = np.sort(values.ravel()).reshape(shape) if name in AXIS_NAMES else values
                if unit is not None and name in AXIS_NAMES:
                    f[name].attrs["units"] = unit
            if elsewhere == "external":
                f.create_dataset("more", shape=(10, 10), dtype="f4",
                                 external=[(str(outside / "secret.bin"), 0, 400)])
            elif elsewhere == "virtual":
                layout = h5py.VirtualLayout(shape=(3, 4, 8), dtype="f4")
                layout[:] = h5py.VirtualSource(str(outside / "src.h5"), "cube", shape=(3, 4, 8))
                f.create_virtual_dataset("more", layout)
        result = outcome(time_limit, lambda: load_dataset(path))
    if elsewhere != "none":
        assert isinstance(result, Refused), "read data from another file"
    elif not isinstance(result, Refused):
        x = assert_sound(result)
        assert not (x == 7).all()


@given(variables=st.dictionaries(st.sampled_from(["cube", "img", "wavenumbers", "wl", "note", "cells"]),
                                 st.one_of(hnp.arrays(st.sampled_from(["f4", "f8", "i2", "u1", "?"]),
                                                      hnp.array_shapes(min_dims=1, max_dims=3, max_side=6)),
                                           st.text(max_size=5), st.lists(st.integers(-9, 9), max_size=3)),
                                 min_size=1, max_size=4),
       variable=st.one_of(st.none(), st.sampled_from(["cube", "nope"])))
def test_matlab_files_are_read_soundly_or_refused(time_limit, variables, variable):
    from scipy.io import savemat

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scan.mat"
        savemat(path, variables)
        result = outcome(time_limit, lambda: load_dataset(path, variable=variable))
    if not isinstance(result, Refused):
        assert_sound(result)


@given(samples=st.integers(-1, 4), lines=st.integers(-1, 4), bands=st.integers(-1, 6),
       data_type=st.sampled_from(["1", "2", "4", "5", "12", "6", "99", "x"]),
       interleave=st.sampled_from(["bsq", "bil", "bip", "xyz"]), byte_order=st.sampled_from(["0", "1", "7"]),
       offset=st.integers(-4, 64), axis=st.lists(st.floats(-10, 5000) | st.just(float("nan")), max_size=7),
       unit=st.one_of(st.none(), st.sampled_from(["Micrometers", "nm", "Wavenumber", "cm-1", "Unknown", "Index",
                                                  "parsecs"])),
       size=st.integers(0, 600))
def test_envi_headers_are_read_in_wavenumbers_or_refused(time_limit, samples, lines, bands, data_type, interleave,
                                                         byte_order, offset, axis, unit, size):
    pytest.importorskip("spectral.io.envi")
    header = ["ENVI", f"samples = {samples}", f"lines = {lines}", f"bands = {bands}", f"data type = {data_type}",
              f"interleave = {interleave}", f"byte order = {byte_order}", f"header offset = {offset}"]
    if axis:
        header.append("wavelength = {" + ", ".join(f"{w:.8g}" for w in axis) + "}")
    if unit is not None:
        header.append(f"wavelength units = {unit}")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "s.hdr").write_text("\n".join(header) + "\n")
        (Path(tmp) / "s.img").write_bytes(np.random.default_rng(0).random(size).astype(np.float32).tobytes()[:size])
        result = outcome(time_limit, lambda: load_dataset(Path(tmp) / "s.hdr"))
    if isinstance(result, Refused):
        return
    assert_sound(result)
    if result.wavenumbers_known:
        expected = np.asarray(axis, float)
        if unit in ("Micrometers", "nm"):
            expected = (1e4 if unit == "Micrometers" else 1e7) / expected
        np.testing.assert_allclose(result.wavenumbers, np.sort(expected), rtol=1e-6)
    else:
        assert not axis or unit == "Index"


# -- preprocessing -------------------------------------------------------------------------------
ARG = st.one_of(st.integers(-3, 2000), st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(["x", ""]))
SPEC = st.lists(st.tuples(st.sampled_from([*STEPS, "bogus"]), st.lists(ARG, max_size=4), st.booleans()),
                max_size=4).map(lambda steps: "|".join(name + (f"({','.join(str(a) for a in args)})" if paren else "")
                                                       for name, args, paren in steps))


@given(spec=st.one_of(SPEC, st.text(max_size=20)), known=st.booleans(), descending=st.booleans(),
       channels=st.sampled_from([40, 442]))
def test_preprocessing_pipelines_give_finite_spectra_or_are_refused(time_limit, spec, known, descending, channels):
    wn = np.linspace(950, 1800, channels)[:: -1 if descending else 1]
    x = np.random.default_rng(0).random((5, channels)).astype(np.float32) + np.linspace(0, 1, channels)
    result = outcome(time_limit, lambda: Preprocessor(spec).fit(wn, known=known))
    if isinstance(result, Refused):
        return
    if not known:
        assert not any(s.name in ("cut", "resample", "amide1") for s in result.steps)
    y = outcome(time_limit, lambda: result.transform(x))
    assert not isinstance(y, Refused), y.error
    assert y.shape == (5, len(result.output_wavenumbers_)) and np.isfinite(y).all()
    assert np.abs(y).max() > 0, f"{spec!r} turned spectra into zeros"


# -- the estimator --------------------------------------------------------------------------------
def mostly_valid(valid: dict, invalid: dict) -> st.SearchStrategy[dict]:
    """A valid value for every key, with up to two keys replaced by invalid ones (so both outcomes occur)."""
    bad = st.lists(st.sampled_from(sorted(invalid)), max_size=2, unique=True).flatmap(
        lambda keys: st.fixed_dictionaries({k: st.sampled_from(invalid[k]) for k in keys}))
    return st.tuples(st.fixed_dictionaries(valid), bad).map(lambda t: {**t[0], **t[1]})


JUNK = [None, "3", True, float("nan"), float("inf"), -1, 2.5, [1]]


@given(params=mostly_valid({
    "latent_dim": st.integers(1, 3), "hidden_dims": st.lists(st.integers(1, 8), max_size=2).map(tuple),
    "reconstruction": st.sampled_from(["gaussian", "mse", "mae"]),
    "normalisation": st.sampled_from(["auto", "standard", "global_standard", "global_minmax", "none"]),
    "noise": st.sampled_from(["shared", "channel"]), "beta": st.floats(0, 4), "epochs": st.integers(1, 3),
    "batch_size": st.integers(1, 64), "learning_rate": st.floats(1e-5, 1e-2),
    "patience": st.one_of(st.none(), st.integers(0, 2)), "seed": st.integers(0, 2**40),
    "device": st.sampled_from(["auto", "cpu"]), "precision": st.just("fp32"),
    "preprocess": st.sampled_from(["", "snv", "cut(960,1700)", "savgol(5,2,1)", "baseline(1,5)"]),
    "verbose": st.just(False), "tissue_only": st.booleans(),
    "tissue_threshold": st.one_of(st.sampled_from(["auto", "none"]), st.floats(-1, 2)),
}, {
    "latent_dim": [0, *JUNK], "hidden_dims": [(0,), 8, "8,4", (True,), (2.5,), None],
    "reconstruction": ["l2", None, "bce"], "normalisation": ["z", 3], "noise": ["both"], "beta": [-0.1, *JUNK],
    "epochs": [0, *JUNK], "batch_size": [0, *JUNK], "learning_rate": [0.0, -1e-3, *JUNK],
    "patience": [-2, *JUNK[1:]], "seed": [-1, 2**70, *JUNK], "device": ["gpu", "cuda:9", "", 0],
    "precision": ["fp16", None], "preprocess": ["savgol(5,2,3)", 5, "cut(3000,4000)"], "verbose": ["no", 1],
    "tissue_only": ["yes", 1, None], "tissue_threshold": ["high", float("nan"), True, [0.1]],
}), with_axis=st.booleans())
def test_estimator_trains_with_checked_parameters_or_refuses_them(time_limit, params, with_axis):
    x = (np.random.default_rng(0).random((40, 12)) + 0.1).astype(np.float32)
    data = load_dataset(x, wavenumbers=np.linspace(950, 1800, 12)) if with_axis else x
    result = outcome(time_limit, lambda: SpectraVAE(**params).fit(data))
    if isinstance(result, Refused):
        return
    epochs, patience = params["epochs"], params.get("patience", 10)
    assert isinstance(epochs, int) and epochs >= 1 and (patience is None or patience >= 0)
    assert min(epochs, (patience or epochs) + 1) <= len(result.history) <= epochs
    z = result.transform(data)
    assert z.shape == (40, result.latent_dim) and np.isfinite(z).all()


ELEMENTS = {"f4": st.floats(-1, 2, width=32) | st.just(np.nan), "f8": st.floats(-1, 2) | st.just(np.nan),
            "i4": st.integers(-2, 3), "?": st.booleans(), "c8": st.complex_numbers(max_magnitude=2, width=64)}


@given(data=st.one_of(st.sampled_from(sorted(ELEMENTS)).flatmap(lambda dt: hnp.arrays(
           dt, st.one_of(st.tuples(st.integers(1, 5), st.just(12)), st.tuples(st.integers(1, 3), st.integers(1, 3),
                                                                             st.just(12)),
                         hnp.array_shapes(min_dims=1, max_dims=3, max_side=14)), elements=ELEMENTS[dt])),
       st.sampled_from(["/no/such/file.npy", 3, None])),
       method=st.sampled_from(["transform", "reconstruct", "reconstruction_error", "score_samples",
                               "anomaly_score"]))
def test_a_fitted_model_scores_any_input_or_refuses_it(time_limit, fitted_small, data, method):
    result = outcome(time_limit, lambda: getattr(fitted_small, method)(data))
    if isinstance(result, Refused):
        return
    assert isinstance(data, np.ndarray) and data.ndim in (2, 3) and data.shape[-1] == 12
    n = np.prod(data.shape[:-1]) - int((~np.isfinite(data.reshape(-1, data.shape[-1]).astype(float))).any(1).sum())
    values = result.drop(columns="scan").to_numpy(float) if method == "score_samples" else np.asarray(result, float)
    assert len(result) == n and np.isfinite(values).all()


@pytest.fixture(scope="module")
def fitted_small():
    x = (np.random.default_rng(1).random((60, 12)) + 0.1).astype(np.float32)
    return SpectraVAE(hidden_dims=(8,), epochs=1, verbose=False).fit(x)


@pytest.fixture(scope="module")
def checkpoint_payload(fitted_small, tmp_path_factory):
    path = fitted_small.save(tmp_path_factory.mktemp("ckpt") / "m.pt")
    return torch.load(path, weights_only=True)


TOP_KEYS = ["format", "config", "model_config", "state_dict", "normaliser", "wavenumbers", "wavenumbers_known",
            "history", "best_epoch", "training"]
TRAINING_KEYS = ["epoch", "best_epoch", "best_loss", "bad_epochs", "stopped_early", "optimizer", "rng"]
PLAIN = st.one_of(st.none(), st.integers(-3, 3), st.text(max_size=4), st.lists(st.integers(), max_size=2),
                  st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


@given(drop=st.lists(st.sampled_from(TOP_KEYS), max_size=3), drop_training=st.lists(st.sampled_from(TRAINING_KEYS),
                                                                                    max_size=3),
       replace=st.dictionaries(st.sampled_from(TOP_KEYS), PLAIN, max_size=2))
def test_damaged_checkpoints_load_as_working_models_or_are_refused(time_limit, checkpoint_payload, drop,
                                                                   drop_training, replace):
    payload = {k: (dict(v) if isinstance(v, dict) else v) for k, v in checkpoint_payload.items()}
    for key in drop:
        payload.pop(key, None)
    for key in drop_training:
        if isinstance(payload.get("training"), dict):
            payload["training"].pop(key, None)
    payload.update(replace)
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(payload, Path(tmp) / "m.pt")
        result = outcome(time_limit, lambda: SpectraVAE.load(Path(tmp) / "m.pt"))
    if not isinstance(result, Refused):
        x = (np.random.default_rng(2).random((5, 12)) + 0.1).astype(np.float32)
        assert np.isfinite(result.transform(x)).all()


# -- the command line and the pipeline -----------------------------------------------------------
DECLARED = {}
for _name in pipeline.NOTEBOOKS:
    for _k, _v in notebooks.notebook_parameters(pipeline.project_root() / "notebooks" / _name).items():
        DECLARED.setdefault(_k, _v["type"])
VALUE_TEXT = st.one_of(st.sampled_from(["0", "1", "2", "-2", "0.5", "1e-3", "nan", "inf", "True", "false", "none",
                                        "", "8", "221,110", "abc", "normal_train", "normal_trian", "snv",
                                        "savgol(5,2,3)", "cpu", "gpu"]), st.text(max_size=6))


VALID_PAIRS = [("epochs", "2"), ("epochs", "auto"), ("latent_dim", "3"), ("hidden_dims", "8"), ("beta", "0.5"),
               ("beta", "1"),
               ("learning_rate", "1e-3"), ("patience", "0"), ("seed", "4"), ("preprocess", "snv"),
               ("tissue_only", "true"), ("max_points", "50"), ("noise_level", "0"), ("threshold_quantile", "0.9"),
               ("train_split", "normal_train"), ("val_split", ""), ("precision", "bf16"), ("device", "cpu")]


@given(pairs=st.lists(st.one_of(st.sampled_from(VALID_PAIRS),
                                st.tuples(st.sampled_from([*sorted(DECLARED), "laten_dim", "epoch", "x"]), VALUE_TEXT)),
                      max_size=4))
def test_pipeline_starts_only_with_checked_parameters(time_limit, demo_dir, pairs):
    ran = []
    with tempfile.TemporaryDirectory() as tmp, mock.patch("papermill.execute_notebook",
                                                          lambda *a, **k: ran.append(k["parameters"])):
        out = Path(tmp) / "report"
        argv = ["pipeline", "--data", str(demo_dir), "--out", str(out), "--no-html"]
        for name, value in pairs:
            argv += ["-p", name, value]
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            try:
                rc = outcome(time_limit, lambda: main(argv))
            except SystemExit as exc:  # argparse: a value that looks like an option ("-x"), as a usage error
                assert exc.code == 2 and "error: argument" in err.getvalue()
                rc = 1
        event(f"exit status {rc}" if isinstance(rc, int) else "raised")
        if rc != 0:
            assert rc == 1 and "error: " in err.getvalue() and ran == [] and not out.exists()
            return
    assert len(ran) == len(pipeline.NOTEBOOKS)
    given_names = {n for n, _ in pairs}
    for params in ran:
        for name, value in params.items():
            if name in given_names:
                assert (type(value).__name__ == DECLARED[name] or (DECLARED[name] == "float" and isinstance(value, int))
                        or (name in parameters.TEXT_OR_NUMBER and (value == "auto" or isinstance(value, int))))
        pipeline.check_parameters(params)


class Reached(Exception):
    """Training was about to start: every check had passed."""


NUMBER_TEXT = st.one_of(st.integers(-3, 3).map(str), st.sampled_from(["0.5", "1e-3", "nan", "inf", "-0.1", "x", ""]))


@given(flags=mostly_valid({
    "--epochs": st.sampled_from(["1", "2"]), "--latent-dim": st.sampled_from(["1", "2"]),
    "--hidden-dims": st.sampled_from(["8", "8,4"]), "--beta": st.sampled_from(["0", "1", "0.5"]),
    "--batch-size": st.sampled_from(["16", "512"]), "--learning-rate": st.sampled_from(["0.002", "1e-3"]),
    "--patience": st.sampled_from(["0", "3"]), "--seed": st.sampled_from(["0", "7"]),
    "--device": st.sampled_from(["cpu", "auto"]), "--preprocess": st.sampled_from(["", "snv", "cut(960,1700)"]),
    "--train-split": st.just("normal_train"), "--val-split": st.sampled_from(["normal_val", ""]),
    "--test-split": st.just("normal_test"),
}, {
    "--epochs": ["0", "-1", "x", "1.5"], "--latent-dim": ["0", "-3", ""], "--hidden-dims": ["0", "", "a", "8,,0"],
    "--beta": ["-0.1", "nan", "inf", "x"], "--batch-size": ["0", "-2"], "--learning-rate": ["0", "-1", "nan", "inf"],
    "--patience": ["-2", "x"], "--seed": ["-1", "x"], "--device": ["gpu", "cuda:5", ""],
    "--preprocess": ["cut(3000,4000)", "savgol(5,2,3)", "nope", "resample(1,2,0)"],
    "--train-split": ["normal_trian", ""], "--val-split": ["x"], "--test-split": ["y", "normal_train"],
}), out_kind=st.sampled_from(["fresh", "fresh", "file", "below_file"]))
def test_train_command_checks_everything_before_writing(time_limit, demo_dir, flags, out_kind):
    with tempfile.TemporaryDirectory() as tmp, mock.patch.object(SpectraVAE, "fit", side_effect=Reached):
        (Path(tmp) / "file").write_text("keep")
        out = {"fresh": Path(tmp) / "run", "file": Path(tmp) / "file",
               "below_file": Path(tmp) / "file" / "run"}[out_kind]
        argv = ["train", "--data", str(demo_dir), "--out", str(out)]
        for flag, value in flags.items():
            argv += [f"{flag}={value}"]
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            try:
                rc = outcome(time_limit, lambda: main(argv))
            except SystemExit as exc:  # argparse: a value of the wrong type, reported as a usage error
                assert exc.code == 2 and "error: argument" in err.getvalue()
                rc = 2
            except Reached:
                rc = None
        event("training reached" if rc is None else f"exit status {rc}")
        if rc is None:  # training was reached: then the values were valid
            value = {k: flags.get(k) for k in flags}
            assert out_kind == "fresh"
            for flag in ("--epochs", "--latent-dim", "--batch-size"):
                assert value.get(flag) is None or int(value[flag]) >= 1
            for flag in ("--patience", "--seed"):
                assert value.get(flag) is None or int(value[flag]) >= 0
            assert value.get("--learning-rate") is None or 0 < float(value["--learning-rate"]) < float("inf")
            assert value.get("--beta") is None or 0 <= float(value["--beta"]) < float("inf")
            return
        assert rc in (1, 2) and "Traceback" not in err.getvalue()
        if rc == 1:
            assert err.getvalue().startswith("error: ")
        assert (Path(tmp) / "file").read_text() == "keep" and not (Path(tmp) / "run").exists()


@given(args=mostly_valid({"n_scans": st.integers(1, 4), "height": st.integers(4, 6), "width": st.integers(4, 6),
                         "seed": st.integers(0, 9), "n_abnormal": st.one_of(st.none(), st.integers(0, 1)),
                         "noise": st.floats(0, 0.01)},
                        {"n_scans": [0, -1, *JUNK], "height": [3, *JUNK], "width": [0, *JUNK], "seed": [-1, *JUNK],
                         "n_abnormal": [9, -1, "1"], "noise": [-1.0, float("nan"), "x"]}),
       out_kind=st.sampled_from(["fresh", "fresh", "file"]))
def test_demo_data_is_written_from_checked_arguments_or_refused(time_limit, args, out_kind):
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "file").write_text("keep")
        out = Path(tmp) / ("demo" if out_kind == "fresh" else "file")
        result = outcome(time_limit, lambda: make_demo_dataset(out, **args))
        if isinstance(result, Refused):
            assert (Path(tmp) / "file").read_text() == "keep" and not (Path(tmp) / "demo").exists()
            return
        assert_sound(load_dataset(result))


# -- issue 33: run records, checkpoint sections, folders of several formats, concurrent writers ----
@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """A tiny trained run (data folder, run folder) and, beside them, a secret file and a FIFO outside the data."""
    root = tmp_path_factory.mktemp("fuzz_run")
    data = make_demo_dataset(root / "scans", n_scans=4, height=6, width=6, seed=2)
    pipeline.train(data, root / "run", epochs=1, hidden_dims=(8,), batch_size=64, verbose=False)
    (root / "outside").mkdir()
    np.save(root / "outside" / "secret.npy", np.full((6, 6, 442), 7.0, np.float32))
    os.mkfifo(root / "outside" / "fifo.npy")
    return data, root / "run", root / "outside"


VALID_SCANS = ["data0.npy", "data1.npy", "data2.npy", "data3.npy"]
SCAN_ENTRY = st.one_of(st.sampled_from(VALID_SCANS), st.sampled_from(VALID_SCANS), st.sampled_from(
    ["data0", "data9.npy", "../outside/secret.npy", "../outside/fifo.npy", "", ".", "..", "a/b.npy", "ABS_SECRET",
     "ABS_FIFO"]), st.integers(), st.none(), st.text(max_size=4))
VALID_LIST = st.lists(st.sampled_from(VALID_SCANS), min_size=1, max_size=2, unique=True)
SCAN_NAME = st.one_of(st.sampled_from(VALID_SCANS), st.sampled_from(["ABS_SECRET", "../outside/fifo.npy", ""]))
FINGERPRINT = st.one_of(st.fixed_dictionaries({"size": st.integers(-1, 10**6), "mtime": st.floats(),
                                               "sample_sha1": st.text(max_size=4)}), JSON)
RECORD_FIELDS = {
    "data_dir": st.one_of(st.just("ABS_OUTSIDE"), st.integers(), st.none(), st.just("")),
    "train": st.one_of(VALID_LIST, st.lists(SCAN_ENTRY, max_size=3), JSON),
    "validation": st.lists(SCAN_ENTRY, max_size=2),
    "test": st.one_of(VALID_LIST, st.lists(SCAN_ENTRY, max_size=2), JSON), "abnormal": st.lists(SCAN_ENTRY, max_size=2),
    "by": st.sampled_from(["scan", "pixel", "row", 3]), "seed": st.one_of(st.integers(-2, 5), st.floats(), st.none()),
    "scans": st.one_of(JSON, st.dictionaries(SCAN_NAME, FINGERPRINT, max_size=2)),
    "tissue_rule": st.one_of(JSON, st.fixed_dictionaries({"measure": st.sampled_from(["amide_i", "total", "x"]),
                                                          "threshold": st.one_of(st.none(), st.floats())})),
    "tissue_only": JSON, "how": JSON}
PARAMS_FIELDS = {"data_dir": JSON, "latent_dim": JSON, "hidden_dims": JSON, "normal_labels": JSON, "epochs": JSON,
                 "train_split": JSON, "created": JSON}


def _changes(fields: dict) -> st.SearchStrategy[dict]:
    """Up to two fields of a record replaced (none in about a third of the cases)."""
    return st.lists(st.sampled_from(sorted(fields)), max_size=2, unique=True).flatmap(
        lambda keys: st.fixed_dictionaries({k: fields[k] for k in keys}))


RECORD_CHANGE = _changes(RECORD_FIELDS)
PARAMS_CHANGE = _changes(PARAMS_FIELDS)


def _resolve_entry(value, outside: Path):
    return {"ABS_SECRET": str(outside / "secret.npy"), "ABS_FIFO": str(outside / "fifo.npy"),
            "ABS_OUTSIDE": str(outside)}.get(value, value) if isinstance(value, str) else value


@given(record=st.one_of(*[RECORD_CHANGE.map(lambda c: ("change", c))] * 3, JSON.map(lambda j: ("replace", j)),
                        st.binary(max_size=40).map(lambda b: ("bytes", b))),
       params=st.one_of(st.none(), st.none(), PARAMS_CHANGE.map(lambda c: ("change", c)),
                        JSON.map(lambda j: ("replace", j))))
def test_run_records_reopen_the_recorded_scans_or_are_refused(time_limit, small_run, record, params):
    data, run_src, outside = small_run
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        (run / "model").mkdir(parents=True)
        os.symlink(run_src / "model" / "final.pt", run / "model" / "final.pt")
        for name, change in (("splits.json", record), ("params.json", params)):
            original = json.loads((run_src / name).read_text())
            if change is None:
                content = json.dumps(original)
            elif change[0] == "bytes":
                content = change[1].decode("latin-1")
            elif change[0] == "replace":
                content = json.dumps(change[1])
            else:
                edited = {k: _resolve_entry(v, outside) if not isinstance(v, list)
                          else [_resolve_entry(e, outside) for e in v] for k, v in change[1].items()}
                content = json.dumps({**original, **edited})
            (run / name).write_text(content)
        opened = outcome(time_limit, lambda: pipeline.open_run(run))
    if isinstance(opened, Refused):
        return
    recorded = json.loads(content) if record[0] != "change" else opened.record
    for part, key in ((opened.splits.train, "train"), (opened.splits.test, "test")):
        assert all(Path(s).name == s and (data / s).is_file() for s in part.scans)  # inside the data folder
        if opened.record.get("by") != "pixel":
            assert part.scans == recorded[key]
    event(f"reopened ({len(opened.splits.train.scans)} training scans)")
    x = assert_sound(opened.splits.train)
    assert not (x == 7.0).all(), "read the file outside the data folder"


SECTION_VALUES = {
    "normaliser": st.fixed_dictionaries({"method": st.sampled_from(["standard", "global_standard", "none", "x"]),
                                         "offset": st.sampled_from(["SAME", "ZERO", "NAN", "SHORT", "NEGATIVE"]),
                                         "scale": st.sampled_from(["SAME", "ZERO", "NAN", "SHORT", "NEGATIVE"])}),
    "tissue_rule": st.one_of(JSON, st.fixed_dictionaries({"measure": st.sampled_from(["amide_i", "total", "none", 1]),
                                                          "threshold": st.one_of(st.none(), st.floats(),
                                                                                 st.text(max_size=2))})),
    "preprocessing": st.one_of(JSON, st.fixed_dictionaries({"spec": st.sampled_from(["", "snv", "cut(960,1700)", 3]),
                                                            "input_wavenumbers": st.sampled_from(["SAME", [1.0, 2.0]]),
                                                            "states": st.sampled_from([None, [], [None], [None, 1]])})),
    "model_config": st.fixed_dictionaries({"latent_dim": st.one_of(st.integers(-1, 3), st.just(2),
                                                                   st.text(max_size=2)),
                                           "n_channels": st.sampled_from([12, 11, 0, "12"])}),
    "weights": st.sampled_from(["same", "nan", "inf", "shape", "text"]),
    "wavenumbers": st.sampled_from(["same", "nan", "2d", "short", "empty"]),
}


@given(changes=st.lists(st.sampled_from(sorted(SECTION_VALUES)), min_size=1, max_size=2, unique=True)
       .flatmap(lambda keys: st.fixed_dictionaries({k: SECTION_VALUES[k] for k in keys})))
def test_checkpoints_with_tampered_sections_give_finite_results_or_are_refused(time_limit, checkpoint_payload, changes):
    payload = {k: (dict(v) if isinstance(v, dict) else v) for k, v in checkpoint_payload.items()}
    n = len(payload["normaliser"]["scale"])
    for key, value in changes.items():
        if key == "normaliser":
            fill = {"ZERO": [0.0] * n, "NAN": [float("nan")] * n, "SHORT": [1.0] * (n - 1), "NEGATIVE": [-1.0] * n}
            same = payload["normaliser"]
            payload["normaliser"] = {**same, "method": value["method"],
                                     "offset": same["offset"] if value["offset"] == "SAME" else fill[value["offset"]],
                                     "scale": same["scale"] if value["scale"] == "SAME" else fill[value["scale"]]}
        elif key == "preprocessing" and isinstance(value, dict) and value.get("input_wavenumbers") == "SAME":
            payload["preprocessing"] = {**value, "input_wavenumbers": payload["wavenumbers"].tolist()}
        elif key == "model_config":
            payload["model_config"] = {**payload["model_config"], **value}
        elif key == "weights":
            weights = dict(payload["state_dict"])
            name = sorted(weights)[0]
            weights[name] = {"same": weights[name], "nan": torch.full_like(weights[name], float("nan")),
                             "inf": torch.full_like(weights[name], float("inf")),
                             "shape": torch.zeros(3), "text": "w"}[value]
            payload["state_dict"] = weights
        elif key == "wavenumbers":
            wn = payload["wavenumbers"]
            payload["wavenumbers"] = {"same": wn, "nan": torch.full_like(wn, float("nan")), "2d": wn.reshape(1, -1),
                                      "short": wn[:-1], "empty": wn[:0]}[value]
        else:
            payload[key] = value
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(payload, Path(tmp) / "m.pt")
        result = outcome(time_limit, lambda: SpectraVAE.load(Path(tmp) / "m.pt"))
    if isinstance(result, Refused):
        assert "m.pt" in str(result.error)  # names the file
        return
    x = (np.random.default_rng(2).random((5, 12)) + 0.1).astype(np.float32)
    for values in (result.transform(x), result.reconstruct(x), result.reconstruction_error(x)):
        assert np.isfinite(values).all()


AXIS = np.linspace(950, 1800, 8)


def _truth(n_pixels: int, axis: np.ndarray, seed: int) -> np.ndarray:
    """Spectra that are a function of the wavenumber: any channel put at another wavenumber shows."""
    scale = np.random.default_rng(seed).random((n_pixels, 1)) + 0.5
    return (scale * (axis / 1000.0) ** 2).astype(np.float32)


FILES = st.fixed_dictionaries({
    "npy": st.booleans(), "csv": st.sampled_from([None, "up", "down", "shifted"]),
    "h5": st.sampled_from([None, "up", "down", "first", "shifted", "no_axis"]),
    "folder_axis": st.sampled_from([None, "up", "down", "shifted"]), "collision": st.booleans()})


@given(files=FILES)
def test_folders_of_several_formats_keep_each_channel_at_its_wavenumber_or_are_refused(time_limit, files):
    """Each file states its axis (or none); a folder is read only when the axes stated agree (either way
    round), every scan's channels then sit at their wavenumbers, and two files of one scan name are refused."""
    h5py = pytest.importorskip("h5py")
    import pandas as pd

    axes = {"up": AXIS, "down": AXIS[::-1], "first": AXIS, "shifted": AXIS + 7.0}
    folder_axis = axes.get(files["folder_axis"])
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if folder_axis is not None:
            np.save(folder / "wavenumbers.npy", folder_axis)
        if files["npy"] or files["collision"]:
            np.save(folder / "a.npy", _truth(6, AXIS if folder_axis is None else folder_axis, 0).reshape(2, 3, 8))
        for name, key in (("b.csv", "csv"), ("a.csv", "collision")):
            if files[key]:
                axis = axes.get(files[key], AXIS)
                pd.DataFrame(_truth(4, axis, 1), columns=[repr(float(w)) for w in axis]).to_csv(folder / name,
                                                                                                 index=False)
        if files["h5"]:
            axis = axes.get(files["h5"], AXIS)
            cube = _truth(6, axis, 2).reshape(2, 3, 8)
            with h5py.File(folder / "c.h5", "w") as f:
                f["cube"] = np.moveaxis(cube, -1, 0) if files["h5"] == "first" else cube
                if files["h5"] != "no_axis":
                    f["wavenumbers"] = axis
        result = outcome(time_limit, lambda: load_dataset(folder))
    stated = {files["folder_axis"], files["csv"], files["h5"] if files["h5"] != "no_axis" else None} - {None}
    kinds = {"shifted" if a == "shifted" else "base" for a in stated}
    scans = files["npy"] or files["collision"] or files["csv"] or files["h5"]
    if files["collision"] or len(kinds) > 1 or not scans:
        assert isinstance(result, Refused), f"accepted {files}: one of two sources picked in silence"
        return
    assert not isinstance(result, Refused), f"refused a consistent folder {files}: {result.error}"
    assert_sound(result)
    for name in result.scans:
        if (name == "c.h5" and files["h5"] == "no_axis") or (name == "a.npy" and folder_axis is None):
            continue  # no axis of its own, none of the folder's: nothing says which way its channels run
        got = result.select_scans([name]).to_array().astype(np.float64)
        ratio = got / (result.wavenumbers / 1000.0) ** 2  # a constant per pixel, when each channel is in place
        assert np.allclose(ratio, ratio[:, :1], rtol=1e-4), f"{name}: channels not at their wavenumbers ({files})"


COMMANDS = {
    "train": lambda data, out: ["train", "--data", str(data), "--out", str(out), "--epochs", "1", "--hidden-dims",
                                "8", "--batch-size", "256"],
    "demo-data": lambda data, out: ["demo-data", "--out", str(out), "--n-scans", "2", "--height", "6", "--width", "6"],
    "convert": lambda data, out: ["convert", str(data), str(out)],
}


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory):
    return make_demo_dataset(tmp_path_factory.mktemp("tiny") / "scans", n_scans=4, height=6, width=6, seed=4)


@settings(max_examples=max(4, settings.default.max_examples // 25), deadline=None)
@given(command=st.sampled_from(sorted(COMMANDS)), delay=st.sampled_from([0.0, 0.0, 0.5, 2.0]))
def test_two_processes_writing_one_out_folder_never_mix_their_files(tiny_demo, command, delay):
    import subprocess
    import sys
    import time

    root = Path(__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if k != "SPECTRA_VAE_CLAIMS"} | {"PYTHONPATH": str(root)}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        argv = [sys.executable, "-m", "spectra_vae", *COMMANDS[command](tiny_demo, out)]
        first = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        time.sleep(delay)
        second = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        results = [(p.wait(timeout=600), p.stderr.read()) for p in (first, second)]
        for p in (first, second):
            p.stdout.close()
            p.stderr.close()
        codes = sorted(rc for rc, _ in results)
        for rc, err in results:
            assert "Traceback" not in err and (rc == 0 or err.startswith("error: ")), err
        refused = [err for rc, err in results if rc]
        event(f"{command}: exit statuses {codes}")
        if command == "train":
            assert codes == [0, 1], "two trainings in one run folder"  # the second: busy, or a run already there
            assert "another spectra_vae process is writing" in refused[0] or "already holds a run" in refused[0]
            params = json.loads((out / "params.json").read_text())
            final = torch.load(out / "model" / "final.pt", weights_only=True)
            assert final["config"]["seed"] == params["seed"] and json.loads((out / "splits.json").read_text())["train"]
        else:
            assert codes in ([0, 0], [0, 1])
            assert all("another spectra_vae process is writing" in err for err in refused)
            assert_sound(load_dataset(out))
        assert not [p for p in out.rglob("*.tmp")], "a temporary file left behind"
