"""`benchmarks.anomaly`'s scan statistics (`--scan-statistics`) against their definitions."""

import numpy as np
import pytest

from benchmarks.anomaly import SCAN_RATES, SCAN_WINDOWS, Layout, scan_statistics, supervised_reference
from spectra_vae import load_dataset


def grid(size: int) -> np.ndarray:
    r, c = np.mgrid[0:size, 0:size]
    return np.c_[np.zeros(size * size, int), r.ravel(), c.ravel()]


def test_scan_statistics_match_their_definitions():
    rng = np.random.default_rng(0)
    coords = grid(40)
    score = rng.normal(size=len(coords))
    hot = (coords[:, 1] >= 10) & (coords[:, 1] < 25) & (coords[:, 2] >= 5) & (coords[:, 2] < 20)  # a 15×15 lesion
    score[hot] = 10.0
    pooled = np.sort(rng.normal(size=5000))
    got = scan_statistics(score, coords, pooled)
    for r in SCAN_RATES:
        frac = np.mean(score > np.quantile(pooled, 1 - r))
        assert got[f"flagged at {r:.0%}"] == pytest.approx(np.arcsin(np.sqrt(frac)))
    assert got["mean score"] == pytest.approx(score.mean())
    for k in SCAN_WINDOWS:  # the lesion holds a whole k×k window, so the largest window mean is its score
        assert got[f"largest {k}×{k} window mean"] == pytest.approx(10.0)
    # without the lesion no window mean comes near it
    quiet = scan_statistics(rng.normal(size=len(coords)), coords, pooled)
    assert quiet[f"largest {SCAN_WINDOWS[-1]}×{SCAN_WINDOWS[-1]} window mean"] < 1.0


def test_window_mean_counts_only_the_scan_tissue_given():
    coords = grid(30)
    inside = (coords[:, 1] - 15) ** 2 + (coords[:, 2] - 15) ** 2 < 12**2  # a round core: edge windows are partial
    score = np.where(coords[inside][:, 1] < 9, 4.0, 0.0)  # a strip over the core's top rows (4–8)
    got = scan_statistics(score, coords[inside], np.sort(np.zeros(10)))
    # the topmost pixel's 9×9 window reaches rows 0–8, of which only the strip is tissue: its mean is the
    # strip's, not diluted by the window's background
    assert got[f"largest {SCAN_WINDOWS[0]}×{SCAN_WINDOWS[0]} window mean"] == pytest.approx(4.0)


def test_supervised_reference_scores_tumour_against_normal_tissue_of_the_held_out_half(fitted, demo_dir):
    vae = fitted[0]
    ds = load_dataset(demo_dir)
    lay = Layout(24, train=2, val=1, calibration=0, test=1, abnormal=2)  # demo_dir's scans in that order
    held = ds.select_scans(lay.roles()["test"] + lay.roles()["abnormal"])
    mask = vae.tissue_mask(held)
    names = list(held.label_names)
    labels = np.asarray(held.labels)
    scores = {"the truth": (labels == names.index("tumour")).astype(float)}
    rows = {r["score"]: r["AUROC"] for r in supervised_reference(vae, ds, lay, held, mask, scores, {})}
    assert rows["the truth"] == 1.0  # tumour against normal tissue, of the held-out scans only
    reference = [v for k, v in rows.items() if k.startswith("LDA")]
    assert len(reference) == 1 and reference[0] > 0.9  # with labels the demo's tumour is separable


def test_latent_cluster_is_the_mixture_component_of_highest_posterior():
    """`--by-latent-cluster` assigns each pixel to the component of the monitor's latent mixture most likely to
    have produced its latent mean: the same as scikit-learn's GaussianMixture.predict on the same mixture."""
    from types import SimpleNamespace

    from sklearn.mixture import GaussianMixture

    from benchmarks.anomaly import latent_cluster
    from spectra_vae.anomaly import LatentDensity

    rng = np.random.default_rng(0)
    z = np.concatenate([rng.normal([0, 0], 0.3, (200, 2)), rng.normal([3, 0], 1.0, (200, 2)),
                        rng.normal([0, 4], 0.5, (100, 2))])
    density = LatentDensity.fit(z, 3)
    gm = GaussianMixture(3, covariance_type="full", reg_covar=1e-6, random_state=0).fit(z)
    vae = SimpleNamespace(monitor_=SimpleNamespace(latent=density), transform=lambda data: data)
    queries = rng.uniform(-2, 5, (1000, 2))
    got = latent_cluster(vae, queries)
    # the same mixture handed to scikit-learn
    gm.weights_, gm.means_, gm.precisions_cholesky_ = density.weights, density.means, density.precision_cholesky
    np.testing.assert_array_equal(got, gm.predict(queries))
