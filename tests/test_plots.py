"""Figures say what they show: axis labels follow the preprocessing and the axis the scans have."""

import matplotlib.pyplot as plt
import numpy as np

from spectra_vae.views import analysis, plots


def test_value_labels_follow_the_preprocessing():
    assert plots.value_label("") == plots.value_label("cut(1000,1700)") == "absorbance (a.u.)"
    assert plots.value_label("cut(1000,1700)|snv") == "SNV-normalised spectrum (unitless)"
    assert plots.value_label("rubberband|vector") == "baseline-corrected vector-normalised spectrum (unitless)"
    assert plots.value_label("savgol(9,2,1)") == "derivative 1 of absorbance (a.u. per channel)"
    assert plots.value_label("rubberband") == "baseline-corrected absorbance (a.u.)"


def test_spectra_without_a_wavenumber_axis_are_drawn_against_channel_numbers():
    fig = plots.latent_traversal(np.arange(5.0), {"z1": (np.array([-1.0, 1.0]), np.zeros((2, 5)))}, known=False,
                                 ylabel=plots.value_label("snv"))
    ax = fig.axes[0]
    assert ax.get_xlabel().startswith("channel number") and ax.get_ylabel() == "SNV-normalised spectrum (unitless)"
    assert ax.get_xlim() == (0.0, 4.0)  # channels run left to right, wavenumbers right to left
    plt.close(fig)


def test_the_noise_level_is_known_only_for_the_demo_data_in_absorbance(demo_dir, tmp_path):
    assert analysis.known_noise_level(demo_dir) == 0.002
    assert analysis.known_noise_level(demo_dir, "cut(1000,1700)|snv") == 0.0  # not in absorbance units
    assert analysis.known_noise_level(tmp_path) == 0.0  # your data: unknown unless given
