"""The anomaly figures: tails against held-out normal tissue, and score maps with the threshold marked."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402

from spectra_vae import anomaly  # noqa: E402
from spectra_vae.views import anomaly_plots  # noqa: E402


def test_pp_curve_of_uniform_p_values_is_the_diagonal_and_the_plot_draws_each_curve():
    rng = np.random.default_rng(0)
    p, observed = anomaly.pp_curve(np.log(rng.uniform(size=200_000)))
    keep = p >= 1e-3
    np.testing.assert_allclose(observed[keep], p[keep], rtol=0.25)
    assert observed[-1] == 1.0 and (np.diff(observed) >= 0).all()
    fig = anomaly_plots.pp_plot({"uniform": (p, observed), "too light": (p, observed / 10)}, "tails", n_pixels=1000)
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert {"uniform", "too light", "tail holds"} <= set(labels)
    assert fig.axes[0].get_xscale() == "log" == fig.axes[0].get_yscale()


def test_score_maps_use_a_log_scale_that_holds_both_kinds_and_mark_the_threshold():
    img = np.full((20, 20), np.nan)
    img[5:15, 5:15] = 0.3
    img[6:9, 6:9] = 5.0  # a tumour-like few units
    img[11:13, 11:13] = 300.0  # a foreign compound's hundreds
    fig = anomaly_plots.score_maps({"a": img, "b": np.where(np.isnan(img), np.nan, 0.5)}, 2.0, "scores")
    image = fig.axes[0].get_images()[0]
    assert type(image.norm).__name__ == "LogNorm" and image.norm.vmax >= 300.0
    colorbar = fig.axes[-1]
    marks = [line for line in colorbar.get_lines() if np.allclose(line.get_ydata(), 2.0)]
    assert marks and "−log₁₀ p" in colorbar.get_ylabel()
    assert fig.axes[0].collections and not fig.axes[1].collections  # flagged pixels outlined where there are any
