"""`benchmarks.architectures`' own measures: the oracle class-wise PCA reference against its
definition, `--set` read and checked as notebook 02's `-p` values, and the block split of time series."""

import argparse

import numpy as np
import pytest
from sklearn.decomposition import PCA

from benchmarks.architectures import block_split, classwise_pca_ratio, equivalent_components, pca_ladder, setting


def pca_reconstruct(train: np.ndarray, test: np.ndarray, k: int) -> np.ndarray:
    """`test` reconstructed by a k-component PCA of `train`, by scikit-learn (the definition to match)."""
    pca = PCA(k).fit(train)
    return pca.inverse_transform(pca.transform(test))


def test_classwise_pca_ratio_matches_per_class_pca_against_one_pca():
    rng = np.random.default_rng(0)
    # three classes, each its own mean and its own two directions of variation, plus noise
    means, dirs = rng.normal(size=(3, 30)), rng.normal(size=(3, 2, 30))
    y = np.repeat(np.arange(3), 60)
    x = means[y] + np.einsum("nk,nkc->nc", rng.normal(size=(180, 2)), dirs[y]) + 0.01 * rng.normal(size=(180, 30))
    fit, test = np.arange(0, 180, 2), np.arange(1, 180, 2)
    for k in (1, 2):
        per_class = np.sqrt(np.mean(np.concatenate([
            ((x[test][y[test] == c] - pca_reconstruct(x[fit][y[fit] == c], x[test][y[test] == c], k)) ** 2).ravel()
            for c in range(3)])))
        overall = np.sqrt(np.mean((x[test] - pca_reconstruct(x[fit], x[test], k)) ** 2))
        expected = per_class / overall
        assert classwise_pca_ratio(x, y, fit, test, k) == pytest.approx(expected, rel=1e-6)
    # with the classes' own two directions, class-wise PCA-2 leaves only the noise
    assert classwise_pca_ratio(x, y, fit, test, 2) < 0.05


def test_set_reads_values_as_notebook_parameters_and_refuses_bad_ones():
    assert setting("hidden_dims=512,256") == ("hidden_dims", (512, 256))
    assert setting("beta=0.5") == ("beta", 0.5)
    for bad in ("beta", "beta=-1", "hidden_dims=a,b", "latent_dim=3", "1x=2"):
        with pytest.raises(argparse.ArgumentTypeError):
            setting(bad)


def test_pca_ladder_and_equivalent_components_against_their_definitions():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 5)) @ rng.normal(size=(5, 40)) * np.linspace(3, 0.5, 5)[None, :].repeat(8)[None, :] \
        + 0.01 * rng.normal(size=(200, 40))
    fit, test = np.arange(0, 200, 2), np.arange(1, 200, 2)
    ladder = pca_ladder(x, fit, test, k_max=6)
    for k in (1, 3, 6):
        expected = np.sqrt(np.mean((x[test] - pca_reconstruct(x[fit], x[test], k)) ** 2))
        assert ladder[k - 1] == pytest.approx(expected, rel=1e-8)
    assert equivalent_components(ladder, ladder[2]) == pytest.approx(3.0)  # PCA-3's own error: 3 components
    assert equivalent_components(ladder, np.sqrt(ladder[1] * ladder[2])) == pytest.approx(2.5)  # halfway, log scale
    assert equivalent_components(ladder, 2 * ladder[0]) == 1.0  # worse than one component
    assert np.isnan(equivalent_components(ladder, ladder[-1] / 2))  # better than the ladder reaches


def test_block_split_holds_out_whole_blocks_of_consecutive_rows():
    n, block = 1629, 50
    train, test = block_split(np.arange(n), 0.3, seed=0, block=block)
    # a partition of the rows, held out by whole blocks: no held-out row has a training row in its block
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(n))
    assert not set(train // block) & set(test // block)
    n_blocks = -(-n // block)
    assert len(np.unique(test // block)) == round(0.3 * n_blocks)
    # the validation part is drawn from the training rows only, again by whole blocks, and depends on the seed
    fit, val = block_split(train, 0.15, seed=1, block=block)
    assert np.array_equal(np.sort(np.concatenate([fit, val])), np.sort(train))
    assert not set(fit // block) & set(val // block)
    assert not set(val) & set(test)
    other = block_split(train, 0.15, seed=2, block=block)[1]
    assert not np.array_equal(val, other)
    assert np.array_equal(block_split(np.arange(n), 0.3, seed=0, block=block)[1], test)  # reproducible
