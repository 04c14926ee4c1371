"""SpectraVAE as a scikit-learn estimator: clone, params, pipelines, NaN rows, score, model selection."""

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.cluster import KMeans
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.pipeline import make_pipeline

from spectra_vae import SpectraVAE, load_dataset, rmse

SMALL = {"hidden_dims": (16,), "epochs": 2, "batch_size": 128, "verbose": False}

# scikit-learn's estimator checks that do not apply, and why (the README lists the same).
NOT_APPLICABLE = {
    # input: spectra are numeric tables, files or datasets; our errors name channels, not sklearn's wording
    "check_complex_data", "check_dtype_object", "check_estimators_empty_data_messages", "check_fit2d_1feature",
    "check_fit2d_predict1d", "check_n_features_in_after_fitting",
    # sparse matrices and array-likes other than numpy arrays and DataFrames are not accepted
    "check_estimator_sparse_tag", "check_estimator_sparse_array", "check_estimator_sparse_matrix",
    "check_transformer_data_not_an_array",
    # score_samples returns a DataFrame per pixel (scan, row, col and the score terms), not an array
    "check_methods_sample_order_invariance", "check_methods_subset_invariance",
}


def test_clone_get_params_deep_and_set_params(demo):
    vae = SpectraVAE(latent_dim=3, hidden_dims=[32, 16], beta=0.5)
    twin = clone(vae)
    assert twin is not vae and twin.get_params(deep=True) == vae.get_params(deep=False)
    assert twin.get_params()["hidden_dims"] == (32, 16)
    assert twin.set_params(hidden_dims=[8], latent_dim=4).hidden_dims == (8,) and twin.latent_dim == 4
    with pytest.raises(ValueError, match="Invalid parameter"):
        twin.set_params(depth=3)


def test_fit_transform_gives_nan_rows_for_excluded_pixels_and_works_in_a_pipeline(demo_dir):
    x = load_dataset(demo_dir, split="normal_train").to_array()[:600].copy()
    x[[3, 50]] = np.nan
    x[7, 10] = np.inf
    z = SpectraVAE(**SMALL).fit_transform(x)
    assert z.shape == (600, 2)
    assert np.isnan(z[[3, 7, 50]]).all() and np.isfinite(np.delete(z, [3, 7, 50], axis=0)).all()
    clean = np.delete(x, [3, 7, 50], axis=0)
    labels = make_pipeline(SpectraVAE(**SMALL), KMeans(2, n_init=2, random_state=0)).fit_predict(clean)
    assert labels.shape == (597,) and set(labels) == {0, 1}


def test_score_is_the_negative_rmse_in_absorbance_whatever_the_preprocessing(demo_dir):
    train = load_dataset(demo_dir, split="normal_train")
    test = load_dataset(demo_dir, split="normal_test")
    raw = test.to_array().astype(np.float64)
    plain = SpectraVAE(**SMALL).fit(train)
    assert plain.score(test) == pytest.approx(-rmse(raw, plain.reconstruct(test)), rel=1e-6)
    snv = SpectraVAE(**SMALL, preprocess="cut(1000,1700)|snv", tissue_only=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snv.fit(train)
    keep = (test.wavenumbers >= 1000) & (test.wavenumbers <= 1700)
    a = raw[:, keep]
    back = snv.reconstruct(test) * a.std(axis=1, keepdims=True) + a.mean(axis=1, keepdims=True)  # undo SNV
    assert snv.score(test) == pytest.approx(-rmse(a, back), rel=1e-4)
    in_snv_units = -rmse(snv.prepare(test).to_array(), snv.reconstruct(test))
    assert abs(snv.score(test) - in_snv_units) > 0.1 * abs(in_snv_units)  # not the figure in SNV units


def test_grid_search_with_group_k_fold_by_scan_as_the_readme_shows(demo_dir):
    ds = load_dataset(demo_dir, split=["normal_train", "normal_val", "normal_test"])
    X = pd.DataFrame(ds.to_array(), columns=ds.wavenumbers)  # column names carry the wavenumbers
    groups = ds.scan_of()  # folds by scan: pixels of one scan never sit on both sides
    search = GridSearchCV(SpectraVAE(**SMALL), {"latent_dim": [2, 3]}, cv=GroupKFold(n_splits=2))
    search.fit(X, groups=groups)
    scores = search.cv_results_["mean_test_score"]
    assert search.best_params_["latent_dim"] in (2, 3) and all(math.isfinite(s) and s < 0 for s in scores)
    assert search.best_estimator_.n_features_in_ == len(ds.wavenumbers)


def test_scikit_learn_estimator_checks_pass_but_those_the_readme_lists():
    from sklearn.utils.estimator_checks import check_estimator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(SpectraVAE(hidden_dims=(8,), epochs=2, batch_size=64, verbose=False),
                                  on_fail=None)
    failed = {r["check_name"] for r in results if r["status"] == "failed"}
    assert failed == NOT_APPLICABLE
    assert len({r["check_name"] for r in results if r["status"] == "passed"}) >= 30
