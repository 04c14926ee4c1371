"""Many runs: a sweep trains one run per combination with papermill, scores it, and compares them."""

import json

import nbformat
import numpy as np
import pandas as pd
import pytest

from spectra_vae import DataError, make_demo_dataset
from spectra_vae.__main__ import main
from spectra_vae.workflow import compare, runs
from spectra_vae.workflow.sweep import combinations, parse_grid, run_name


def test_grid_takes_lists_and_semicolons_for_values_that_hold_commas():
    # values stay text as typed: each is read as the type notebook 02 declares, like -p values
    grid = parse_grid(["latent_dim=2,5,10", "beta=0.5,1", "hidden_dims=221,110;64,32"])
    assert grid == {"latent_dim": ["2", "5", "10"], "beta": ["0.5", "1"], "hidden_dims": ["221,110", "64,32"]}
    combos = combinations(grid)
    assert len(combos) == 12 and combos[1] == {"latent_dim": "2", "beta": "0.5", "hidden_dims": "64,32"}
    assert len({run_name(i, c) for i, c in enumerate(combos)}) == 12
    with pytest.raises(DataError, match="expected NAME=V1,V2"):
        parse_grid(["latent_dim"])


def test_sweep_trains_a_run_per_combination_writes_runs_csv_and_the_comparison(tmp_path, capsys):
    data = make_demo_dataset(tmp_path / "scans", n_scans=4, height=16, width=16, seed=11)
    out = tmp_path / "sweep"
    rc = main(["sweep", "--data", str(data), "--out", str(out), "--grid", "latent_dim=2,3", "--quiet",
               "-p", "epochs", "1", "-p", "hidden_dims", "16,8", "-p", "batch_size", "128"])
    assert rc == 0, capsys.readouterr().err[-2000:]
    table = pd.read_csv(out / "runs.csv", index_col="run")
    assert list(table.latent_dim) == [2, 3] and set(table.hidden_dims) == {"16,8"}  # -p stays one value
    for column in ("rmse", "pca_rmse", "score", "kl", "active_dims", "auroc", "flag_rate_anomalous"):
        assert table[column].notna().all(), column
    assert (table.rmse > 0).all() and (table.active_dims <= table.latent_dim).all()
    for path in table.path:
        assert runs.is_run(path) and json.loads((tmp_path / path / "params.json").read_text())["epochs"] == 1
        assert (tmp_path / path / "02_train.ipynb").exists()
    executed = nbformat.read(out / "06_compare_runs.ipynb", as_version=4)
    shown = "".join(str(o.get("data", {}).get("text/plain", "")) for c in executed.cells for o in c.get("outputs", []))
    assert "best run" in shown and table.index[0] in shown
    assert {"06_val_loss.png", "06_val_rmse.svg"} <= {p.name for p in (out / "figures").iterdir()}
    # the same sweep again is refused: its runs exist
    assert main(["sweep", "--data", str(data), "--out", str(out), "--grid", "latent_dim=2,3", "--quiet"]) == 1
    # any list of existing runs can be compared
    assert compare.find_runs(run_list=",".join(table.path)) == [out / name for name in table.index]
    best = compare.best_runs(compare.collect(compare.find_runs(out)))
    assert set(best.index) == {"rmse", "rmse_vs_pca", "score", "auroc"}


def test_active_dimensions_are_those_whose_kl_exceeds_the_threshold(fitted):
    vae, _, _, test, _ = fitted
    kl = compare.latent_kl_per_dimension(vae, test)
    mu, logvar = vae.encode(test)
    direct = 0.5 * (mu.astype(np.float64) ** 2 + np.exp(logvar) - 1 - logvar).mean(axis=0)
    np.testing.assert_allclose(kl, direct, rtol=1e-6)
    np.testing.assert_allclose(kl.sum(), vae.score_samples(test)["kl"].mean(), rtol=1e-4)
