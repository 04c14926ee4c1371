"""Export: a run's per-pixel maps as HDF5 and a table that Orange/Quasar reads as a map."""

import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from spectra_vae import make_demo_dataset
from spectra_vae import workflow as pipeline
from spectra_vae.__main__ import main
from spectra_vae.workflow import runs


def test_export_writes_maps_h5_a_pixel_table_and_the_figures(tmp_path):
    h5py = __import__("h5py")
    data = make_demo_dataset(tmp_path / "scans", n_scans=4, height=10, width=12, seed=12)
    scan = np.load(data / "data0.npy")
    scan[2, 3, 5] = np.nan  # one excluded pixel
    np.save(data / "data0.npy", scan)
    vae, splits, _ = runs.train(data, tmp_path / "run", epochs=1, hidden_dims=(16,), latent_dim=3, verbose=False)
    fig = plt.figure()
    pipeline.save_figure(fig, tmp_path / "run", "02_loss_curves")
    plt.close(fig)
    assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "export")]) == 0
    out = tmp_path / "export"
    with h5py.File(out / "maps.h5") as f:
        assert sorted(f) == [f"data{k}.npy" for k in range(4)]
        np.testing.assert_array_equal(f.attrs["wavenumbers"], np.load(data / "wavenumbers.npy"))
        assert json.loads(f.attrs["params"])["latent_dim"] == 3
        g = f["data0.npy"]
        assert g["latent_mean"].shape == (10, 12, 3) and g["reconstruction_error"].shape == (10, 12)
        assert np.isnan(g["latent_mean"][2, 3]).all() and np.isnan(g["anomaly_score"][2, 3])
        assert np.isfinite(g["reconstruction_error"][()]).sum() == 10 * 12 - 1 and g["tissue"][2, 3] == -1
        assert g.attrs["split"] == "train" and set(np.unique(g["flags"][()])) <= {-1, 0, 1}
        assert not [key for key in g if key.startswith("emsc_")]  # no emsc step, no EMSC maps
        z = vae.transform(runs.open_run(tmp_path / "run").scans())[:119]  # data0: 119 usable pixels
        np.testing.assert_allclose(np.delete(g["latent_mean"][()].reshape(-1, 3), 2 * 12 + 3, axis=0), z, rtol=1e-5)
    table = pd.read_csv(out / "pixels.csv")
    assert {"scan", "row", "col", "map_x", "map_y", "z1", "z3", "reconstruction_error", "anomaly_score",
            "tissue", "flagged"} <= set(table.columns)
    assert len(table) == 4 * 120 - 1
    assert len(table[["map_x", "map_y"]].drop_duplicates()) == len(table)  # scans side by side, no overlap
    assert {p.name for p in (out / "figures").iterdir()} == {"02_loss_curves.png", "02_loss_curves.svg"}


def test_export_of_a_model_with_emsc_writes_its_terms_as_maps_and_columns(tmp_path, scattered_dir):
    """Uncorrected scans, `emsc(2,1)`: the fitted terms per pixel (`pixel_terms`) go into maps.h5 as
    maps and into pixels.csv as columns, aligned with the pixels."""
    h5py = __import__("h5py")
    from spectra_vae.preprocess.diagnostics import pixel_terms

    vae, _, _ = runs.train(scattered_dir, tmp_path / "run", epochs=1, hidden_dims=(16,), preprocess="emsc(2,1)",
                           verbose=False)
    assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "export")]) == 0
    ds = runs.open_run(tmp_path / "run").scans()
    terms = pixel_terms(vae.preprocessor_, ds)
    table = pd.read_csv(tmp_path / "export" / "pixels.csv")
    with h5py.File(tmp_path / "export" / "maps.h5") as f:
        for k, name in enumerate(ds.scans):
            for column in ("multiplicative", "baseline", "dispersion_share"):
                stored = f[name][f"emsc_{column}"][()]
                np.testing.assert_allclose(stored, ds.image(terms[column].to_numpy(dtype=float), k), rtol=1e-6)
    for column in ("multiplicative", "baseline"):
        np.testing.assert_allclose(table[f"emsc_{column}"], terms[column], rtol=1e-6)
    assert table["emsc_multiplicative"][table["tissue"] == 1].median() > 0.5  # tissue holds the reference

