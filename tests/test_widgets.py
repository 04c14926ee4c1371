import ipywidgets as widgets
import numpy as np

from spectra_vae.widgets import browse_reconstructions


def test_browser_starts_on_the_worst_reconstructed_pixel_and_redraws_on_slider_move(fitted):
    vae, _, _, test, _ = fitted
    b = browse_reconstructions(vae, test)
    assert isinstance(b, widgets.Widget) and isinstance(b.slider, widgets.IntSlider)
    errors = vae.reconstruction_error(test)
    assert b.current == int(np.argmax(errors))
    assert b.slider.max == len(test) - 1
    orig_line, rec_line = b.figure.axes[0].lines[:2]
    first_title = b.figure.axes[0].get_title()

    b.slider.value = 7  # what a user's drag does: the observer redraws
    i = b.current
    assert i == int(np.argsort(-errors, kind="stable")[7])
    assert np.allclose(orig_line.get_ydata(), test.read([i])[0])
    assert np.allclose(rec_line.get_ydata(), vae.reconstruct(test.read([i]))[0], atol=1e-6)
    assert b.figure.axes[0].get_title() != first_title
    k, r, c = test.coords[i]
    assert test.scans[k] in b.label.value and f"row {r}, col {c}" in b.label.value
    marker = b.figure.axes[1].lines[0]
    assert list(marker.get_xdata()) == [c] and list(marker.get_ydata()) == [r]
    b.slider.value = 8  # one step further along the slider: the next worst pixel, no worse than the last
    assert errors[b.current] <= errors[i] and b.current == int(np.argsort(-errors, kind="stable")[8])


def test_browser_axes_read_in_wavenumbers_high_to_low_in_absorbance(fitted):
    vae, _, _, test, _ = fitted
    ax = browse_reconstructions(vae, test).figure.axes[0]
    lo, hi = ax.get_xlim()
    assert lo > hi and lo >= 1799 and hi <= 951
    assert "cm⁻¹" in ax.get_xlabel() and "absorbance" in ax.get_ylabel()


def test_browser_orders_are_selectable(fitted):
    vae, _, _, test, _ = fitted
    b = browse_reconstructions(vae, test)
    b.slider.value = 3
    b.order.value = "scan, row, col"
    assert b.slider.value == 0 and b.current == 0
    b.slider.value = 5
    assert b.current == 5
    b.order.value = "best reconstructed first"
    assert b.current == int(np.argmin(vae.reconstruction_error(test)))
