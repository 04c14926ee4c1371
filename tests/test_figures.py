"""Each saved figure answers its question in the units it names: the property that makes it honest, checked on the
figure the notebooks save (score maps are notebook 05's, tested with it)."""

from __future__ import annotations

import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from spectra_vae import load_dataset
from spectra_vae.core import logs
from spectra_vae.preprocess.steps import REGISTRY
from spectra_vae.preprocess.tissue import TissueRule, default_measure, tissue_intensity
from spectra_vae.preprocess.variants import compare_variants
from spectra_vae.views import analysis, plots, variants

UNIT_CHANGING = ("emsc", "emsc(2,1)", "snv", "vector", "amide1", "cut(1000,1700)|snv", "baseline|emsc")


def clipped_texts(fig) -> list[str]:
    """Texts of `fig` drawn beyond its edges (a title or label cut off where the figure ends)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    inside = fig.bbox.padded(1)
    drawn = [t for t in fig.texts + [t for ax in fig.axes for t in (ax.title, ax._left_title, ax._right_title,
                                                                     ax.xaxis.label, ax.yaxis.label, *ax.texts)]]
    drawn += [t for ax in fig.axes for axis in (ax.xaxis, ax.yaxis)
              for tick in axis._update_ticks() for t in (tick.label1, tick.label2)]
    drawn += [t for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    out = []
    for t in drawn:
        if t.get_visible() and t.get_text().strip():
            e = t.get_window_extent(renderer)
            if not (inside.contains(e.x0, e.y0) and inside.contains(e.x1, e.y1)):
                out.append(t.get_text())
    return out


@pytest.fixture(scope="module")
def comparison(demo_dir, scattered_dir):
    clean, scattered = load_dataset(demo_dir), load_dataset(scattered_dir)
    return clean, compare_variants(clean, scattered, TissueRule.fit(clean).mask(clean), max_pixels=400)


def test_no_axis_says_absorbance_after_a_step_that_changes_the_units():
    assert set(REGISTRY) <= set(plots._VALUE_STEPS), "a preprocessing step the axis labels do not know"
    for spec in UNIT_CHANGING:
        assert "absorbance" not in plots.value_label(spec), spec
        assert not plots.in_absorbance(spec)
    assert plots.value_label("emsc") == "EMSC-corrected spectrum (reference units)"
    assert plots.value_label("savgol(9,2,1)").startswith("derivative 1 of") and not plots.in_absorbance("savgol")
    for spec in ("", "cut(1000,1700)", "rubberband", "baseline|cut(1000,1700)"):
        assert plots.value_label(spec).endswith("absorbance (a.u.)") and plots.in_absorbance(spec)
    # the label reaches the figure notebook 03 saves
    fig = plots.reconstructions(np.arange(5.0), np.zeros((1, 5)), np.zeros((1, 5)), ["p"],
                                ylabel=plots.value_label("emsc"))
    assert "absorbance" not in fig.axes[0].get_ylabel()
    plt.close(fig)


def test_the_noise_level_is_marked_only_where_errors_are_in_absorbance(demo_dir):
    assert analysis.noise_level_to_mark(demo_dir) == (0.002, "")  # the demo's own, recorded in demo.json
    assert analysis.noise_level_to_mark(demo_dir, "cut(1000,1700)", 0.01) == (0.01, "")  # given, in absorbance
    for given in (0.0, 0.01):
        level, note = analysis.noise_level_to_mark(demo_dir, "emsc", given)
        assert level == 0.0 and "not absorbance" in note and "EMSC-corrected" in note
    assert analysis.known_noise_level(demo_dir, "emsc") == 0.0


def test_mean_spectra_show_each_scans_tissue_pixels_on_a_panel_of_its_own(demo_dir):
    ds = load_dataset(demo_dir)
    tissue = TissueRule.fit(ds).mask(ds)
    fig = plots.mean_spectra(ds, tissue, max_pixels=10_000)
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.lines]
    assert len(panels) == len(ds.scans) and "tissue pixels" in fig.get_suptitle()
    for k, ax in enumerate(panels):
        expected = ds.read(np.flatnonzero((ds.scan_of() == k) & tissue)).mean(axis=0)
        np.testing.assert_allclose(ax.lines[0].get_ydata(), expected, rtol=1e-5, atol=1e-6)
        band = ax.collections[0].get_paths()[0].vertices
        peak = ds.wavenumbers[np.argmax(expected)]
        # tissue's spread alone: at amide I the band stays above 0 (background pooled in pulled it below)
        assert band[np.isclose(band[:, 0], peak), 1].min() > 0
    assert not clipped_texts(fig)
    plt.close(fig)


def test_loss_curves_are_readable_without_symlog_and_show_the_later_epochs():
    epochs = np.arange(1, 41)
    nll = np.r_[[560.0, 300.0, 140.0, -5.0], np.linspace(-300, -660, 36)]  # the Gaussian NLL of a demo run
    history = pd.DataFrame({"epoch": epochs, "train_reconstruction": nll, "val_reconstruction": nll + 250,
                            "train_kl": np.full(40, 10.0), "val_kl": np.full(40, 11.0), "val_loss": nll + 261,
                            "val_rmse": np.linspace(0.02, 0.0036, 40)})
    fig = plots.training_history(history, best_epoch=15)
    assert [ax.get_yscale() for ax in fig.axes] == ["linear", "log", "log"]
    lo, hi = fig.axes[0].get_ylim()
    later = np.r_[nll[4:], nll[4:] + 250]
    assert lo <= later.min() and hi >= later.max() and hi < 560  # epochs after the first tenth in view
    assert any("above the axis" in t.get_text() for t in fig.axes[0].texts)
    assert not clipped_texts(fig)
    plt.close(fig)
    fig = plots.loss_curves({"a": history, "b": history}, "val_loss", ylabel="validation loss")
    assert fig.axes[0].get_yscale() == "linear" and fig.axes[0].get_ylabel() == "validation loss"
    plt.close(fig)


def test_diverging_maps_are_centred_on_zero_and_missing_pixels_are_not_the_centre_colour():
    images = {"a": np.array([[-4.0, -3.5], [np.nan, -1.0]]), "b": np.array([[0.5, np.nan], [-2.0, -3.0]])}
    fig = plots.scan_images(images, "z1", "z1", cmap="RdBu_r", centre=0.0)
    im = fig.axes[0].images[0]
    assert im.norm.vmin == -im.norm.vmax and im.norm.vmax >= 3.5  # centred on 0, and holds the data
    cmap = im.get_cmap()
    assert not np.allclose(cmap.get_bad(), cmap(0.5))  # a pixel without a value is not read as z = 0
    plt.close(fig)


def test_traversals_span_the_range_the_tissue_occupies(fitted, demo_dir):
    vae = fitted[0]
    ds = load_dataset(demo_dir)
    tissue = vae.tissue_mask(ds)
    z = vae.transform(ds)[tissue]
    grid = analysis.latent_grid(vae, z)
    for d, (name, (values, spectra)) in enumerate(grid.items()):
        lo, hi = np.percentile(z[:, d], [1, 99])
        assert name == f"z{d + 1}" and np.isclose(values[0], lo) and np.isclose(values[-1], hi)
        held = np.tile(np.median(z, axis=0), (len(values), 1)).astype(np.float32)
        held[:, d] = values
        np.testing.assert_allclose(spectra, vae.decode(held), rtol=1e-5, atol=1e-6)  # the others at the median
    fig = plots.latent_traversal(vae.wavenumbers_, grid, others="others at the tissue median")
    labels = [line.get_label() for line in fig.axes[0].lines]
    assert labels[0] == f"z1 = {grid['z1'][0][0]:+.2f}" and "tissue median" in fig.axes[0].get_title()
    assert not clipped_texts(fig)
    plt.close(fig)


def test_before_after_emsc_shows_basic_emsc_beside_emsc_2_1_each_in_its_own_units(comparison):
    clean, c = comparison
    assert {"scattered, emsc(2,0)", "scattered, emsc(2,1)", "clean, emsc(2,0)"} <= set(c.spectra)
    fig = variants.before_after_emsc(c, clean)
    top, bottom = fig.axes[0], fig.axes[3]
    assert top.get_ylabel() == plots.ABS_LABEL and bottom.get_ylabel() == plots.value_label("emsc")
    assert [line.get_label() for line in top.lines] == ["clean", "scattered"]  # absorbance only up there
    below = [line.get_label() for line in bottom.lines]
    assert below == ["clean, emsc(2,0) = emsc, as a model trains", "scattered, emsc(2,0) = emsc, as a model trains",
                     "scattered, emsc(2,1)"]
    row = list(c.examples().values())[0]  # the first column's pixel
    np.testing.assert_array_equal(bottom.lines[1].get_ydata(), c.spectra["scattered, emsc(2,0)"][row])
    assert not clipped_texts(fig)
    plt.close(fig)
    fig = variants.mean_spectra(c)
    assert [ax.get_ylabel() for ax in fig.axes] == [plots.ABS_LABEL, plots.value_label("emsc")]
    assert not any("emsc" in line.get_label() for line in fig.axes[0].lines)
    plt.close(fig)


def test_the_amide_i_position_figure_keeps_its_title_and_labels_inside(comparison):
    fig = variants.amide_i_positions(comparison[1])
    assert fig.axes[0].get_title() == "Apparent amide I position, tissue pixels"
    assert not clipped_texts(fig)
    plt.close(fig)


def test_the_intensity_images_are_named_after_what_they_show(demo_dir, bare_scans, tmp_path):
    for data, name, title in ((demo_dir, "amide_i_images", "Amide I"),
                              (bare_scans(tmp_path / "bare", n_scans=2), "mean_absorbance_images", "Mean absorbance")):
        ds = load_dataset(data)
        measure = default_measure(ds)
        fig, saved_as = plots.intensity_images(ds, tissue_intensity(ds, measure), measure)
        assert saved_as == name and fig.get_suptitle().startswith(title)
        plt.close(fig)


def test_a_dataset_without_an_axis_says_channel_index_not_wavenumbers(demo_dir, bare_scans, tmp_path):
    assert "950–1800 cm⁻¹" in repr(load_dataset(demo_dir))
    bare = repr(load_dataset(bare_scans(tmp_path / "bare", n_scans=2)))
    assert "channel index 0–441" in bare and "cm⁻¹" not in bare


def test_plain_warnings_show_the_package_warnings_message_alone(monkeypatch):
    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)  # restored after the test
    logs.plain_warnings()
    text = warnings.formatwarning("scan data3.npy changed", UserWarning, "/tmp/ipykernel_1/2.py", 4,
                                  "opened = workflow.open_run(run_dir)")
    assert text == "UserWarning: scan data3.npy changed\n"
    other = warnings.formatwarning("old", DeprecationWarning, "x.py", 1, "f()")
    assert other.startswith("x.py:1: DeprecationWarning: old")  # others keep Python's format


def test_the_pixel_browser_labels_spectra_and_errors_in_the_models_units(fitted):
    from spectra_vae import SpectraVAE
    from spectra_vae.views import browse_reconstructions

    train = fitted[1]
    vae = SpectraVAE(hidden_dims=(16,), epochs=1, batch_size=256, preprocess="snv", tissue_only=True,
                     verbose=False).fit(train)
    browser = browse_reconstructions(vae, fitted[3])
    spectrum = browser.figure.axes[0]
    assert spectrum.get_ylabel() == "SNV-normalised spectrum (unitless)"
    assert browser.figure.axes[2].get_ylabel() == "reconstruction RMSE, SNV-normalised spectrum (unitless)"
    plt.close(browser.figure)
