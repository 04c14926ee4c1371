import io
from collections import Counter

import ipywidgets as widgets
import numpy as np
import pytest
from PIL import Image

from spectra_vae import SpectraVAE, load_dataset
from spectra_vae.preprocess import tissue
from spectra_vae.views.explorer import outline_segments
from spectra_vae.views.widgets import browse_reconstructions, explore


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


# -- the explorer: linked map, spectrum and latent views -------------------------------------------

def browser_mouse(figure, kind, ax, x, y, buttons=1):
    """Send what the browser's ipympl view sends for a mouse event at data point (x, y) of `ax`."""
    canvas = figure.canvas
    px, py = ax.transData.transform((x, y))
    canvas.manager.handle_json({"type": kind, "x": float(px), "y": float(canvas.get_renderer().height - py),
                                "button": 0, "buttons": buttons, "modifiers": [], "guiEvent": None})


def click_map(ex, row, col):
    browser_mouse(ex.figure_map, "button_press", ex.figure_map.axes[0], col, row)
    browser_mouse(ex.figure_map, "button_release", ex.figure_map.axes[0], col, row, buttons=0)


def drag_latent(ex, start, end):
    ax = ex.figure_latent.axes[0]
    browser_mouse(ex.figure_latent, "button_press", ax, *start)
    for t in (0.3, 0.7, 1.0):
        browser_mouse(ex.figure_latent, "motion_notify", ax, *(np.asarray(start) + t * (np.asarray(end) - start)))
    browser_mouse(ex.figure_latent, "button_release", ax, *end, buttons=0)


def position_of(ds, scan, row, col):
    return int(np.flatnonzero((ds.coords == [scan, row, col]).all(axis=1))[0])


def spectrum_lines(ex):
    ax = ex.figure_spectrum.axes[0]
    return {ln.get_label(): ln for ln in ax.lines if ln.get_label() in ("spectrum", "reconstruction", "residual")}


@pytest.fixture
def explorer(fitted, demo):
    vae = fitted[0]
    ex = explore(vae, demo, scan=4)
    for fig in (ex.figure_map, ex.figure_latent, ex.figure_spectrum):
        fig.canvas.draw()  # what the browser asks for when the view appears
    return vae, demo, ex


def whole(ex):
    """A brush box around every latent point of the scan shown."""
    z = ex.scan_data(ex.scan_selector.value).latent
    return z[:, 0].min() - 1, z[:, 0].max() + 1, z[:, 1].min() - 1, z[:, 1].max() + 1


def test_explorer_click_on_the_map_shows_that_pixels_spectrum_reconstruction_and_latent_point(explorer):
    vae, demo, ex = explorer
    assert isinstance(ex, widgets.Widget) and ex.scan_selector.value == 4 and ex.map_selector.value == "amide I"
    for row, col in ((12, 9), (5, 17)):
        click_map(ex, row, col)
        i = position_of(demo, 4, row, col)
        assert ex.current == i
        x = demo.read([i])[0]
        r = vae.reconstruct(demo.select_pixels([i]))[0]
        lines = spectrum_lines(ex)
        assert np.allclose(lines["spectrum"].get_ydata(), x)
        assert np.allclose(lines["reconstruction"].get_ydata(), r, atol=1e-5)
        assert np.allclose(lines["residual"].get_ydata(), x - r, atol=1e-5)
        map_marker = ex.figure_map.axes[0].lines[0]
        assert list(map_marker.get_xdata()) == [col] and list(map_marker.get_ydata()) == [row]
        z = vae.transform(demo.select_pixels([i]))[0]
        latent_marker = ex.figure_latent.axes[0].lines[0]
        assert np.allclose([latent_marker.get_xdata()[0], latent_marker.get_ydata()[0]], z[:2], atol=1e-6)
        assert f"row {row}, col {col}" in ex.info.value and demo.scans[4] in ex.info.value
        label = demo.label_names[demo.labels[i]]
        assert f"ground truth: {label}" in ex.info.value


def test_explorer_click_blits_markers_and_curves_into_the_rendered_canvases_and_never_redraws_in_full(explorer):
    _, _, ex = explorer
    full_draws = []
    for fig in (ex.figure_map, ex.figure_latent, ex.figure_spectrum):
        fig.canvas.mpl_connect("draw_event", lambda e, fig=fig: full_draws.append(fig))
    ax = ex.figure_map.axes[0]
    cyan = np.array([0, 255, 255])

    def cyan_near(row, col):
        px, py = ax.transData.transform((col, row))
        buf = np.asarray(ex.figure_map.canvas.buffer_rgba())[:, :, :3]
        r0 = int(round(buf.shape[0] - py))
        c0 = int(round(px))
        patch = buf[r0 - 3: r0 + 4, c0 - 3: c0 + 4].reshape(-1, 3)
        return bool((patch == cyan).all(axis=1).any())

    spectrum_before = np.asarray(ex.figure_spectrum.canvas.buffer_rgba()).copy()
    click_map(ex, 3, 4)
    assert cyan_near(3, 4)
    click_map(ex, 18, 20)
    assert cyan_near(18, 20) and not cyan_near(3, 4)
    assert not (np.asarray(ex.figure_spectrum.canvas.buffer_rgba()) == spectrum_before).all()
    assert full_draws == []
    ex.brush(whole(ex))  # an outline on the map is drawn with it, once
    full_draws.clear()
    click_map(ex, 8, 9)
    assert cyan_near(8, 9) and full_draws == []


def _record_frames(ex):
    """What each canvas sends the browser from now on: (image mode, PNG), starting with a whole frame."""
    canvases = [fig.canvas for fig in (ex.figure_map, ex.figure_latent, ex.figure_spectrum)]
    frames = {id(c): [] for c in canvases}
    for c in canvases:
        c.send_binary = lambda png, c=c: frames[id(c)].append((c._current_image_mode, png))
        c._force_full = True
        c.draw()
    return canvases, frames


def _shown(frames, drop=()):
    """The image a browser view composes from `frames` (whole frames replace, diffs' nonzero pixels
    overwrite), leaving out the frames at the indices in `drop` as a view that never drew them."""
    shown = None
    for k, (mode, png) in enumerate(frames):
        if k in drop:
            continue
        image = np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))
        shown = image if mode == "full" else np.where(image[:, :, 3:] > 0, image, shown)
    return shown


def test_explorer_frames_sent_to_the_browser_rebuild_exactly_what_is_drawn(explorer):
    _, _, ex = explorer
    canvases, frames = _record_frames(ex)
    z = ex.scan_data(ex.scan).latent
    drag_latent(ex, z.min(axis=0), z.mean(axis=0))  # a drag's moves are sent as diffs
    click_map(ex, 6, 7)
    click_map(ex, 15, 12)
    ex.brush(whole(ex))
    click_map(ex, 9, 20)
    for c in canvases:
        modes = [mode for mode, _ in frames[id(c)]]
        assert modes[0] == "full" and len(modes) >= 4
        assert np.array_equal(_shown(frames[id(c)]), np.asarray(c.buffer_rgba()))
    assert "diff" in [mode for mode, _ in frames[id(ex.figure_latent.canvas)]]


def test_a_frame_the_browser_never_drew_leaves_nothing_stale_once_a_brush_or_click_ends(explorer):
    """The browser view loads each frame into one Image, so a frame arriving while the one before is
    still loading replaces it: that one is never drawn, and the diffs after it, made against it,
    leave its changes out (a stale brush rectangle was seen in the browser test). A drag ends with
    whole frames; a click sends diffs (one frame per panel)."""
    _, _, ex = explorer
    latent = ex.figure_latent.canvas
    canvases, frames = _record_frames(ex)
    ax = ex.figure_latent.axes[0]
    z = ex.scan_data(ex.scan).latent
    start, end = z.min(axis=0), z.mean(axis=0)
    browser_mouse(ex.figure_latent, "button_press", ax, *start)
    for t in (0.2, 0.4, 0.6, 0.8, 1.0):
        browser_mouse(ex.figure_latent, "motion_notify", ax, *(start + t * (end - start)))
    moves = len(frames[id(latent)])
    assert [m for m, _ in frames[id(latent)][2:]] == ["diff"] * (moves - 2)
    during = _shown(frames[id(latent)], drop={2})  # the first move's frame never drawn
    assert not np.array_equal(during, np.asarray(latent.buffer_rgba()))  # stale pixels of the first box
    browser_mouse(ex.figure_latent, "button_release", ax, *end, buttons=0)
    assert frames[id(latent)][-1][0] == "full"
    assert np.array_equal(_shown(frames[id(latent)], drop={2}), np.asarray(latent.buffer_rgba()))
    for c in canvases:  # every panel the brush repaints ends on a whole frame
        assert frames[id(c)][-1][0] == "full"
    before = {id(c): len(frames[id(c)]) for c in canvases}
    click_map(ex, 6, 7)
    for c in canvases:  # a click: one diff frame per panel
        assert [m for m, _ in frames[id(c)][before[id(c)]:]] == ["diff"]


def test_explorer_brush_outlines_counts_and_averages_the_scan_pixels_inside_the_latent_box(explorer):
    vae, demo, ex = explorer
    scan = demo.select_scans([4])
    z = vae.transform(scan)
    lo, hi = np.percentile(z[:, :2], [30, 70], axis=0)
    drag_latent(ex, (lo[0], hi[1]), (hi[0], lo[1]))  # from the top-left corner down to the bottom-right
    assert ex.brush_box == pytest.approx((lo[0], hi[0], lo[1], hi[1]), abs=1e-6)
    x0, x1, y0, y1 = ex.brush_box
    inside = np.flatnonzero((z[:, 0] >= x0) & (z[:, 0] <= x1) & (z[:, 1] >= y0) & (z[:, 1] <= y1))
    offset = int(np.flatnonzero(demo.scan_of() == 4)[0])
    assert 0 < len(inside) < len(z)
    assert np.array_equal(ex.brushed, offset + inside)
    assert f"<b>{len(inside)}</b> pixels" in ex.brush_info.value
    mean_line = next(ln for ln in ex.figure_spectrum.axes[0].lines if ln.get_label().startswith("mean of"))
    assert mean_line.get_visible() and f"mean of {len(inside)}" in mean_line.get_label()
    assert np.allclose(mean_line.get_ydata(), scan.read(inside).mean(axis=0), atol=1e-6)
    # the outline: every edge of a brushed pixel not shared with another brushed pixel, no more
    coords = scan.coords[inside]
    edges = Counter()
    for _, r, c in coords:
        for edge in (((c - .5, r - .5), (c + .5, r - .5)), ((c - .5, r + .5), (c + .5, r + .5)),
                     ((c - .5, r - .5), (c - .5, r + .5)), ((c + .5, r - .5), (c + .5, r + .5))):
            edges[edge] += 1
    boundary = {e for e, n in edges.items() if n == 1}
    outline = ex.figure_map.axes[0].collections[0]
    drawn = {tuple(map(tuple, np.round(seg, 6))) for seg in outline.get_segments()}
    assert drawn == boundary and len(outline.get_segments()) == len(boundary)
    # the box's edges belong to it: a box whose corners are two pixels' latent points holds both
    a, b = np.argmin(z[:, 0]), np.argmax(z[:, 0])
    ex.brush((z[a, 0], z[b, 0], min(z[a, 1], z[b, 1]), max(z[a, 1], z[b, 1])))
    assert {offset + a, offset + b} <= set(ex.brushed.tolist())


def test_explorer_click_without_drag_clears_the_brush_and_clear_button_too(explorer):
    _, _, ex = explorer
    ex.brush(whole(ex))
    assert len(ex.brushed) == 576 and len(ex.figure_map.axes[0].collections[0].get_segments()) == 4 * 24
    ax = ex.figure_latent.axes[0]
    point = np.mean(ax.get_xlim()), np.mean(ax.get_ylim())
    drag_latent(ex, point, point)
    assert ex.brush_box is None and len(ex.brushed) == 0
    assert len(ex.figure_map.axes[0].collections[0].get_segments()) == 0
    ex.brush(whole(ex))
    ex.clear_button.click()
    assert ex.brush_box is None and len(ex.brushed) == 0
    assert not any(ln.get_visible() and ln.get_label().startswith("mean of") for ln in ex.figure_spectrum.axes[0].lines)


def test_explorer_maps_are_the_models_per_pixel_values_drawn_back_as_the_scan_image(explorer):
    vae, demo, ex = explorer
    assert ex.map_names == ["amide I", "reconstruction error", "anomaly score", "z1", "z2", "labels"]
    ex.scan_selector.value = 5
    scan = demo.select_scans([5])
    k = demo.scans.index(scan.scans[0])
    expected = {
        "amide I": tissue.tissue_intensity(scan, "amide_i"),
        "reconstruction error": vae.reconstruction_error(scan),
        "anomaly score": vae.anomaly_score(scan),
        "z2": vae.transform(scan)[:, 1],
        "labels": scan.labels.astype(float),
    }
    for name, values in expected.items():
        ex.map_selector.value = name
        image = np.asarray(ex.figure_map.axes[0].images[0].get_array(), dtype=float)
        assert np.allclose(image, scan.image(values, 0), rtol=1e-5, atol=1e-6), name
        assert name in ex.figure_map.axes[0].get_title() and demo.scans[k] in ex.figure_map.axes[0].get_title()
    assert "tumour" in [t.get_text() for t in ex.figure_map.axes[1].get_yticklabels()]  # the labels' colour bar
    click_map(ex, 11, 13)
    assert ex.current == position_of(demo, 5, 11, 13)


def test_explorer_works_without_a_wavenumber_axis_and_ignores_clicks_where_no_pixel_is(fitted, demo_dir):
    vae = fitted[0]
    cube = np.load(demo_dir / "data0.npy").copy()
    cube[2, 3, 100] = np.nan  # this pixel is left out of the dataset
    with pytest.warns(UserWarning, match="excluded 1 of 576 pixels"):
        ds = load_dataset(cube)
    assert not ds.wavenumbers_known
    ex = explore(vae, ds)
    assert ex.map_names[0] == "mean absorbance (no wavenumber axis)"
    image = np.asarray(ex.figure_map.axes[0].images[0].get_array(), dtype=float)
    expected = np.nanmean(cube.astype(np.float64), axis=2)
    expected[2, 3] = np.nan
    assert np.allclose(image, expected, rtol=1e-5, equal_nan=True)
    assert "over all channels" in ex.figure_map.axes[1].get_ylabel()
    assert ex.figure_spectrum.axes[0].get_xlabel().startswith("channel")
    click_map(ex, 20, 21)
    chosen = ex.current
    assert np.allclose(spectrum_lines(ex)["spectrum"].get_ydata(), cube[20, 21])
    click_map(ex, 2, 3)
    assert ex.current == chosen and "no pixel at row 2, col 3" in ex.info.value


def test_outline_segments_trace_the_boundary_of_a_mask_exactly():
    mask = np.random.default_rng(0).random((9, 11)) < 0.4
    edges = Counter()
    for r, c in zip(*np.nonzero(mask), strict=True):
        for edge in (((c - .5, r - .5), (c + .5, r - .5)), ((c - .5, r + .5), (c + .5, r + .5)),
                     ((c - .5, r - .5), (c - .5, r + .5)), ((c + .5, r - .5), (c + .5, r + .5))):
            edges[edge] += 1
    segments = outline_segments(mask)
    assert {tuple(map(tuple, s)) for s in segments} == {e for e, n in edges.items() if n == 1}
    assert len(segments) == sum(n == 1 for n in edges.values())
    assert outline_segments(np.zeros((3, 3), bool)).shape == (0, 2, 2)


def test_explorer_never_reads_channel_indices_as_wavenumbers():
    cube = np.random.default_rng(0).random((4, 4, 1700)).astype(np.float32)  # channels 1630–1680 exist
    ds = load_dataset(cube)
    vae = SpectraVAE(hidden_dims=(8,), epochs=1, batch_size=16, verbose=False).fit(ds)
    ex = explore(vae, ds)
    assert ex.map_names[0] == "mean absorbance (no wavenumber axis)"
    image = np.asarray(ex.figure_map.axes[0].images[0].get_array(), dtype=float)
    assert np.allclose(image, cube.mean(axis=2, dtype=np.float64), rtol=1e-5)


def test_explorer_latent_maps_are_centred_on_zero(explorer):
    _, _, ex = explorer
    for name in ("z1", "z2"):
        ex.map_selector.value = name
        norm = ex.figure_map.axes[0].images[0].norm
        assert norm.vmin == -norm.vmax > -np.inf and ex.figure_map.axes[1].get_ylabel() == f"latent mean {name}"


def test_explorer_of_a_preprocessed_model_shows_spectra_as_the_model_sees_them_and_amide_i_from_the_raw_data(
        fitted, demo):
    train = fitted[1]
    vae = SpectraVAE(hidden_dims=(16,), epochs=1, batch_size=256, preprocess="cut(1000,1750)|snv", tissue_only=True,
                     verbose=False).fit(train)
    ex = explore(vae, demo, scan=1)
    scan = demo.select_scans([1])
    image = np.asarray(ex.figure_map.axes[0].images[0].get_array(), dtype=float)
    assert np.allclose(image, scan.image(tissue.tissue_intensity(scan, "amide_i"), 0), rtol=1e-5)
    click_map(ex, 10, 14)
    i = position_of(demo, 1, 10, 14)
    seen = vae.prepare(demo)
    line = spectrum_lines(ex)["spectrum"]
    assert np.allclose(line.get_xdata(), seen.wavenumbers) and seen.wavenumbers.max() <= 1750
    assert np.allclose(line.get_ydata(), seen.read([i])[0], atol=1e-6)
    assert np.allclose(spectrum_lines(ex)["reconstruction"].get_ydata(), vae.reconstruct(demo.select_pixels([i]))[0],
                       atol=1e-5)
    assert ex.figure_spectrum.texts[0].get_text() == "SNV-normalised spectrum (unitless)"  # what the model sees
    ex.map_selector.value = "reconstruction error"
    assert ex.figure_map.axes[1].get_ylabel() == "reconstruction RMSE, SNV-normalised spectrum (unitless)"
