"""Linked views of one scan: a map to click, the clicked pixel's spectrum, the latent scatter to brush.

The canvases are ipympl widgets (`canvas.interactive_figure`), made directly, not through pyplot,
so a notebook's other figures stay inline and nothing here joins pyplot's global figures.

What makes a click fast: per scan, the latent means are computed once, and each map the first time
it is shown, and kept; a click reads one pixel and decodes its latent mean, then blits what changed
(the spectrum's curves and y axis, the markers on the map and the scatter) over backgrounds saved
at the last full draw. The scatter shows at most `max_points` pixels of the scan (a seeded sample:
Agg draws 77 000 points in about 240 ms, 20 000 in about 60 ms); the brush and the marker use every
pixel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import ipywidgets as widgets
import numpy as np
from matplotlib import colormaps, patheffects
from matplotlib.backend_bases import MouseEvent
from matplotlib.collections import LineCollection
from matplotlib.colors import BoundaryNorm, Colormap, ListedColormap, Normalize
from matplotlib.patches import Rectangle

from ..core.metrics import pixel_rmse
from ..estimator.vae import SpectraVAE
from ..io.dataset import SpectralDataset
from ..preprocess import tissue
from .canvas import Blitter, interactive_figure, send_whole_frame
from .plots import ABS_LABEL, spectrum_axes, value_label

MAX_SCATTER_POINTS = 20_000
# where the map and the scatter sit in their figures (left, bottom, width, height): the browser test aims with them
MAP_AXES = (0.12, 0.1, 0.58, 0.8)
LATENT_AXES = (0.16, 0.1, 0.74, 0.8)
RECONSTRUCTION_ERROR, ANOMALY_SCORE, LABELS = "reconstruction error", "anomaly score", "labels"
_OUTLINE = [patheffects.withStroke(linewidth=3, foreground="black")]  # readable on any colour map


def outline_segments(mask: np.ndarray) -> np.ndarray:
    """Pixel edges between True and False pixels of a `(H, W)` mask, as `(n, 2, 2)` (x=col, y=row) segments."""
    padded = np.pad(np.asarray(mask, dtype=bool), 1)
    r, c = np.nonzero(padded[1:, 1:-1] != padded[:-1, 1:-1])  # edge above row r, from col c-½ to c+½
    horizontal = np.stack([np.column_stack([c - 0.5, r - 0.5]), np.column_stack([c + 0.5, r - 0.5])], axis=1)
    r, c = np.nonzero(padded[1:-1, 1:] != padded[1:-1, :-1])  # edge left of col c, from row r-½ to r+½
    vertical = np.stack([np.column_stack([c - 0.5, r - 0.5]), np.column_stack([c - 0.5, r + 0.5])], axis=1)
    return np.concatenate([horizontal, vertical]).astype(float)


@dataclass
class ScanData:
    """What the explorer keeps of one scan: where its pixels are, their latent means, their maps."""

    positions: np.ndarray  # dataset positions of the scan's pixels
    rows: np.ndarray
    cols: np.ndarray
    shape: tuple[int, int]
    labels: np.ndarray | None  # ground-truth class per pixel (-1: none), or None
    latent: np.ndarray  # (n_pixels, latent_dim) latent means
    shown: np.ndarray  # indices (into the scan's pixels) drawn in the scatter
    maps: dict[str, np.ndarray] = field(default_factory=dict)  # per-pixel values by map name

    def image(self, values: np.ndarray) -> np.ndarray:
        """Per-pixel values of this scan as its `(H, W)` image (NaN where no pixel)."""
        img = np.full(self.shape[0] * self.shape[1], np.nan)
        img[self.rows * self.shape[1] + self.cols] = values
        return img.reshape(self.shape)

    def lookup(self, row: int, col: int) -> int | None:
        """Index (into the scan's pixels) of the pixel at (row, col), or None if there is none."""
        hit = np.flatnonzero((self.rows == row) & (self.cols == col))
        return int(hit[0]) if hit.size else None


class Explorer(widgets.VBox):
    """Linked views of one scan at a time: click the map, brush the latent scatter.

    `.scan_selector` and `.map_selector` pick the scan and the map; `.figure_map`,
    `.figure_spectrum` and `.figure_latent` are the three figures; `.current` is the dataset
    position of the selected pixel, `.brushed` those of the brushed pixels, `.info` and
    `.brush_info` say what is shown. `select_pixel(row, col)` and `brush(box)` do what a click
    and a brush do.
    """

    def __init__(self, vae: SpectraVAE, dataset: Any, scan: int | str = 0, latent_axes: tuple[int, int] = (0, 1),
                 max_points: int = MAX_SCATTER_POINTS, seed: int = 0) -> None:
        self.vae = vae
        self.dataset: SpectralDataset = vae.prepare(dataset)  # what the model sees (preprocessed if it is)
        if len(self.dataset) == 0:
            raise ValueError("the dataset holds no pixels to explore")
        if not all(0 <= a < vae.latent_dim for a in latent_axes) or len(latent_axes) != 2:
            raise ValueError(f"latent_axes must be two of 0..{vae.latent_dim - 1}; got {latent_axes}")
        self.latent_axes = latent_axes
        self.max_points = int(max_points)
        self._seed = seed
        # per scan, never per dataset: a dataset may hold millions of pixels in hundreds of scans
        sizes = [len(self.dataset.select_scans([k])) for k in range(len(self.dataset.scans))]
        self._offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        has_labels = bool(self.dataset.label_names) and any(s.labels is not None for s in self.dataset.scan_objects)
        self._measure = tissue.default_measure(self.dataset)  # read from the raw spectra, as the tissue rule
        self.intensity_name, self._intensity_label = self._intensity_kind()
        self.map_names = [self.intensity_name, RECONSTRUCTION_ERROR, ANOMALY_SCORE]
        self.map_names += [f"z{d + 1}" for d in range(vae.latent_dim)]
        self.map_names += [LABELS] if has_labels else []
        self._scans: dict[int, ScanData] = {}
        self.scan = -1
        self.map_name = self.intensity_name
        self.current = -1  # dataset position of the selected pixel
        self._j = -1  # and its index among the scan's pixels
        self.brushed = np.zeros(0, np.int64)
        self.brush_box: tuple[float, float, float, float] | None = None
        self._drag: tuple[float, float] | None = None  # where a brush drag started
        self._drag_end: tuple[float, float] = (0.0, 0.0)
        self._pixel_rmse = float("nan")

        self._build_map()
        self._build_latent()
        self._build_spectrum()
        self.scan_selector = widgets.Dropdown(options=[(n, k) for k, n in enumerate(self.dataset.scans)],
                                              description="scan")
        self.map_selector = widgets.Dropdown(options=self.map_names, value=self.map_name, description="map")
        self.clear_button = widgets.Button(description="clear brush", tooltip="forget the brushed region")
        self.info = widgets.HTML()
        self.brush_info = widgets.HTML()
        self.scan_selector.observe(self._on_scan_choice, names="value")
        self.map_selector.observe(self._on_map_choice, names="value")
        self.clear_button.on_click(lambda _: self.brush(None))
        for figure, css in ((self.figure_map, "explorer-map"), (self.figure_latent, "explorer-latent"),
                            (self.figure_spectrum, "explorer-spectrum")):
            figure.canvas.add_class(css)  # type: ignore[attr-defined]  # an ipympl canvas is a DOMWidget
        super().__init__([widgets.HBox([self.scan_selector, self.map_selector, self.clear_button]),
                          self.info, self.brush_info,
                          widgets.HBox([self.figure_map.canvas, self.figure_latent.canvas]),
                          self.figure_spectrum.canvas])
        self.add_class("spectra-vae-explorer")
        self.show_scan(scan)

    def __repr__(self) -> str:
        name = self.dataset.scans[self.scan] if self.scan >= 0 else "-"
        return f"Explorer({name}, {len(self.dataset.scans)} scans, map: {self.map_name})"

    # -- the figures -------------------------------------------------------------------------
    def _build_map(self) -> None:
        self.figure_map = interactive_figure((5.2, 4.2))
        self._ax_map = self.figure_map.add_axes(MAP_AXES)
        self._cax = self.figure_map.add_axes((0.72, 0.1, 0.03, 0.8))
        self._image = self._ax_map.imshow(np.zeros((2, 2)), interpolation="nearest")
        self._colorbar = self.figure_map.colorbar(self._image, cax=self._cax)  # follows the image's norm
        self._ax_map.set_xlabel("col (pixel)")
        self._ax_map.set_ylabel("row (pixel)")
        self._map_marker, = self._ax_map.plot([], [], marker="+", ms=16, mew=2.5, color="cyan", ls="none",
                                              animated=True, path_effects=_OUTLINE)
        # the brushed pixels' outline: white over a black halo (readable on any colour map), drawn with
        # the map, so a click blits only the marker over it (per-segment path effects would be slow)
        self._outline = LineCollection([], colors="white", linewidths=1.0, zorder=3)
        self._outline_halo = LineCollection([], colors="black", linewidths=2.6, zorder=2.9)
        for lines in (self._outline, self._outline_halo):
            self._ax_map.add_collection(lines, autolim=False)
        self._map_blit = Blitter(self.figure_map, [self._map_marker])
        self.figure_map.canvas.mpl_connect("button_press_event", self._on_map_press)

    def _build_latent(self) -> None:
        self.figure_latent = interactive_figure((4.8, 4.2))
        self._ax_latent = self.figure_latent.add_axes(LATENT_AXES)
        self._scatter = self._ax_latent.scatter(np.zeros(1), np.zeros(1), s=3, linewidths=0)
        one_d = self.vae.latent_dim == 1
        self._ax_latent.set_xlabel(f"z{self.latent_axes[0] + 1} (latent mean)")
        self._ax_latent.set_ylabel("-" if one_d else f"z{self.latent_axes[1] + 1} (latent mean)")
        self._latent_marker, = self._ax_latent.plot([], [], marker="+", ms=18, mew=2.5, color="cyan", ls="none",
                                                    animated=True, path_effects=_OUTLINE)
        self._box = Rectangle((0, 0), 0, 0, fill=False, edgecolor="black", lw=1.2, ls="--", animated=True,
                              visible=False)
        self._ax_latent.add_patch(self._box)
        self._latent_blit = Blitter(self.figure_latent, [self._box, self._latent_marker])
        canvas = self.figure_latent.canvas
        canvas.mpl_connect("button_press_event", self._on_latent_press)
        canvas.mpl_connect("motion_notify_event", self._on_latent_motion)
        canvas.mpl_connect("button_release_event", self._on_latent_release)

    def _build_spectrum(self) -> None:
        self.figure_spectrum = interactive_figure((10.0, 3.7))
        ax = self._ax_spec = self.figure_spectrum.add_axes((0.075, 0.14, 0.7, 0.76))
        wn = self.dataset.wavenumbers
        zeros = np.zeros_like(wn, dtype=float)
        # what changes with a click (the curves and their y axis) is animated: blitted over
        # a background of what does not (x axis, frame, legend), so no click redraws the figure
        self._line_orig, = ax.plot(wn, zeros, color="k", lw=1, label="spectrum", animated=True)
        self._line_rec, = ax.plot(wn, zeros, color="C3", lw=1, label="reconstruction", animated=True)
        self._line_res, = ax.plot(wn, zeros, color="grey", lw=0.7, label="residual", animated=True)
        self._line_mean, = ax.plot(wn, zeros, color="C0", lw=1.2, visible=False, animated=True)
        zero = ax.axhline(0, color="0.8", lw=0.6, zorder=0, animated=True)
        ax.set_title("the selected pixel (named above)", loc="left", fontsize="medium")
        spectrum_axes(ax, wn, self.dataset.wavenumbers_known)
        ylabel = value_label(self.vae.preprocess)  # what the model's spectra are in (absorbance unless rescaled)
        ax.set_ylabel("")  # drawn once, beside the animated y axis rather than with it
        self.figure_spectrum.text(0.01, 0.52, ylabel, rotation=90, va="center", ha="left")
        ax.yaxis.set_animated(True)
        self._spectrum_blit = Blitter(self.figure_spectrum, [ax.yaxis, zero, self._line_mean, self._line_res,
                                                             self._line_rec, self._line_orig])

    # -- what is drawn -----------------------------------------------------------------------
    def _intensity_kind(self) -> tuple[str, str]:
        """Name and colour-bar label of the intensity map: amide I where the axis covers it, else the
        mean absorbance over all channels (the tissue rule's own measure, `tissue.tissue_intensity`)."""
        if self._measure == "amide_i":
            lo, hi = tissue.AMIDE_I_BAND
            return "amide I", f"amide I, mean {ABS_LABEL} {lo:.0f}–{hi:.0f} cm⁻¹"
        why = "no wavenumber axis" if not self.dataset.raw().wavenumbers_known else "axis misses amide I"
        return f"mean absorbance ({why})", f"mean {ABS_LABEL} over all channels ({why})"

    def scan_data(self, k: int) -> ScanData:
        """The kept data of scan `k`, computed on first use (latent means: one pass over the scan)."""
        if k not in self._scans:
            one = self.dataset.select_scans([k])
            coords = one.coords
            scan = self.dataset.scan_objects[k]
            latent = self.vae.transform(one)
            rng = np.random.default_rng(self._seed)
            n = len(one)
            shown = np.arange(n) if n <= self.max_points else np.sort(rng.choice(n, self.max_points, replace=False))
            labels = one.labels if self.dataset.label_names else None
            self._scans[k] = ScanData(np.arange(self._offsets[k], self._offsets[k + 1]), coords[:, 1], coords[:, 2],
                                      (scan.height, scan.width), labels, latent, shown)
        return self._scans[k]

    def map_values(self, name: str, k: int) -> np.ndarray:
        """Per-pixel values of map `name` for scan `k`, computed once and kept."""
        sd = self.scan_data(k)
        if name not in sd.maps:
            if name not in self.map_names:
                raise ValueError(f"map must be one of {self.map_names}; got {name!r}")
            self.info.value = f"computing {name} for {self.dataset.scans[k]} …"
            sd.maps[name] = self._compute_map(name, k, sd)
        return sd.maps[name]

    def _compute_map(self, name: str, k: int, sd: ScanData) -> np.ndarray:
        if name == self.intensity_name:
            return tissue.tissue_intensity(self.dataset.select_scans([k]), self._measure).astype(float)
        if name == RECONSTRUCTION_ERROR:
            return self.vae.reconstruction_error(self.dataset.select_scans([k]))
        if name == ANOMALY_SCORE:
            return np.asarray(self.vae.anomaly_score(self.dataset.select_scans([k])), dtype=float)
        if name == LABELS:
            labels = sd.labels.astype(float) if sd.labels is not None else np.full(len(sd.positions), -1.0)
            labels[labels < 0] = np.nan
            return labels
        return sd.latent[:, int(name[1:]) - 1].astype(float)

    def _style(self, name: str, values: np.ndarray) -> tuple[Colormap, Normalize, str]:
        """Colour map, normalisation and colour-bar label of a map."""
        if name == LABELS:
            names = self.dataset.label_names or []
            tab10 = colormaps["tab10"].colors  # type: ignore[attr-defined]  # a ListedColormap
            cmap = ListedColormap(tab10[: len(names)]).with_extremes(bad="0.85")
            return cmap, BoundaryNorm(np.arange(len(names) + 1) - 0.5, len(names)), ""  # the ticks name them
        finite = values[np.isfinite(values)]
        lo, hi = (np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0))
        if name == RECONSTRUCTION_ERROR:
            lo = 0.0
        elif name not in (self.intensity_name, ANOMALY_SCORE):  # a latent coordinate: centred on 0, the prior's mean
            lo, hi = -max(abs(lo), abs(hi)), max(abs(lo), abs(hi))
        if hi <= lo:
            hi = lo + (abs(lo) or 1.0) * 1e-3
        cmap_name, label = {
            self.intensity_name: ("viridis", self._intensity_label),
            RECONSTRUCTION_ERROR: ("magma", f"reconstruction RMSE, {value_label(self.vae.preprocess)}"),
            ANOMALY_SCORE: ("inferno", "anomaly score (higher = more anomalous)"),
        }.get(name, ("RdBu_r", f"latent mean {name}"))
        bad = "0.6" if cmap_name == "RdBu_r" else "0.85"  # a diverging map is near white in its middle
        return colormaps[cmap_name].with_extremes(bad=bad), Normalize(float(lo), float(hi)), label

    def _paint(self) -> None:
        """Colour the map and the scatter with the current map (no drawing)."""
        sd = self.scan_data(self.scan)
        values = self.map_values(self.map_name, self.scan)
        cmap, norm, label = self._style(self.map_name, values)
        self._image.set(data=sd.image(values), cmap=cmap, norm=norm)
        self._colorbar.set_label(label)
        if self.map_name == LABELS:
            self._colorbar.set_ticks(range(len(self.dataset.label_names or [])), labels=self.dataset.label_names)
        self._ax_map.set_title(f"{self.map_name} of {self.dataset.scans[self.scan]}", fontsize="medium")
        self._scatter.set(array=values[sd.shown], cmap=cmap, norm=norm)

    # -- what a user does ---------------------------------------------------------------------
    def show_scan(self, scan: int | str) -> None:
        """Show scan `scan` (index or name): its map, its latent scatter, the brush applied to it."""
        k = self.dataset.scans.index(scan) if isinstance(scan, str) else int(scan)
        old = self._scans.get(self.scan)
        previous = (old.rows[self._j], old.cols[self._j]) if old is not None and self._j >= 0 else None
        self.scan = k
        self.scan_selector.value = k
        sd = self.scan_data(k)
        h, w = sd.shape
        self._image.set_extent((-0.5, w - 0.5, h - 0.5, -0.5))
        self._ax_map.set(xlim=(-0.5, w - 0.5), ylim=(h - 0.5, -0.5))
        xy = self._latent_xy(sd)
        self._scatter.set_offsets(xy[sd.shown])
        lo, hi = xy.min(axis=0), xy.max(axis=0)
        pad = 0.05 * np.where(hi > lo, hi - lo, 1.0)
        self._ax_latent.set(xlim=(lo[0] - pad[0], hi[0] + pad[0]), ylim=(lo[1] - pad[1], hi[1] + pad[1]))
        shown = f"{len(sd.shown)} of {len(sd.positions)} pixels" if len(sd.shown) < len(sd.positions) else \
            f"{len(sd.positions)} pixels"
        self._ax_latent.set_title(f"latent means of {self.dataset.scans[k]} ({shown})", fontsize="medium")
        self._paint()
        # the same place on the new scan, or the nearest pixel that exists; the scan's centre at first
        row, col = previous if previous is not None else (h // 2, w // 2)
        nearest = int(np.argmin((sd.rows - row) ** 2 + (sd.cols - col) ** 2))
        self._set_brush(self.brush_box)
        self._j = nearest
        self.current = int(sd.positions[nearest])
        self._show_pixel()
        self.figure_map.canvas.draw()
        self.figure_latent.canvas.draw()
        self.figure_spectrum.canvas.draw()

    def show_map(self, name: str) -> None:
        """Colour the map and the scatter with map `name` (one of `.map_names`)."""
        if name not in self.map_names:
            raise ValueError(f"map must be one of {self.map_names}; got {name!r}")
        self.map_name = name
        self.map_selector.value = name
        self._paint()
        self._describe_pixel()
        self.figure_map.canvas.draw()
        self.figure_latent.canvas.draw()

    def select_pixel(self, row: int, col: int) -> bool:
        """Select the pixel at (row, col) of the scan shown, as a click on the map does.

        Returns False (and says so) where the scan has no pixel there.
        """
        sd = self.scan_data(self.scan)
        j = sd.lookup(row, col)
        if j is None:
            self.info.value = (f"no pixel at row {row}, col {col} of {self.dataset.scans[self.scan]} "
                               "(outside the scan, or left out for non-finite values)")
            return False
        self._j = j
        self.current = int(sd.positions[j])
        self._show_pixel()
        self._map_blit.update()  # one small diff frame per panel (a drag ends on whole frames: `brush`)
        self._latent_blit.update()
        self._spectrum_blit.update()
        return True

    def brush(self, box: tuple[float, float, float, float] | None) -> None:
        """Brush the latent box (x0, x1, y0, y1) as a drag over the scatter does; None clears the brush.

        The scan's pixels whose latent means lie in the box (edges included) are outlined on the
        map; their count and mean spectrum are shown.
        """
        self._set_brush(box)
        for figure in (self.figure_map, self.figure_latent, self.figure_spectrum):
            send_whole_frame(figure.canvas)  # the drag's diff frames may not all have been drawn
        self.figure_map.canvas.draw()  # the outline is part of the map
        self._latent_blit.update()
        self.figure_spectrum.canvas.draw()  # the legend names the brushed pixels

    # -- behind the scenes --------------------------------------------------------------------
    def _latent_xy(self, sd: ScanData) -> np.ndarray:
        if self.vae.latent_dim == 1:
            return np.column_stack([sd.latent[:, 0], np.zeros(len(sd.latent))])
        return sd.latent[:, list(self.latent_axes)]

    def _set_brush(self, box: tuple[float, float, float, float] | None) -> None:
        """Select, outline and average the brushed pixels of the scan shown (no drawing)."""
        sd = self.scan_data(self.scan)
        if box is None:
            self.brush_box, self.brushed = None, np.zeros(0, np.int64)
            self._box.set_visible(False)
            self._set_outline(np.zeros((0, 2, 2)))
            self._line_mean.set_visible(False)
            self.brush_info.value = "drag a box over the latent scatter to outline its pixels on the map"
            self._update_legend()
            self._update_spectrum_axes()
            return
        x0, x1, y0, y1 = (float(v) for v in box)
        x0, x1, y0, y1 = min(x0, x1), max(x0, x1), min(y0, y1), max(y0, y1)
        self.brush_box = (x0, x1, y0, y1)
        self._box.set(xy=(x0, y0), width=x1 - x0, height=y1 - y0, visible=True)
        xy = self._latent_xy(sd)
        inside = (xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1)
        self.brushed = sd.positions[inside]
        mask = np.zeros(sd.shape, bool)
        mask[sd.rows[inside], sd.cols[inside]] = True
        self._set_outline(outline_segments(mask))
        n = len(self.brushed)
        names = (self._ax_latent.get_xlabel().split()[0], self._ax_latent.get_ylabel().split()[0])
        where = f"{names[0]} in [{x0:.3g}, {x1:.3g}], {names[1]} in [{y0:.3g}, {y1:.3g}]"
        if n == 0:
            self._line_mean.set_visible(False)
            self.brush_info.value = f"brushed {where}: no pixel of {self.dataset.scans[self.scan]} there"
        else:
            total = np.zeros(self.dataset.n_channels)
            for chunk in self.dataset.select_pixels(self.brushed).iter_chunks():
                total += chunk.sum(axis=0, dtype=np.float64)
            self._line_mean.set(ydata=total / n, visible=True, label=f"mean of {n}\nbrushed pixels")
            self.brush_info.value = (f"brushed {where}: <b>{n}</b> pixels of {self.dataset.scans[self.scan]} "
                                     "(outlined on the map; their mean spectrum in blue)")
        self._update_legend()
        self._update_spectrum_axes()

    def _set_outline(self, segments: np.ndarray) -> None:
        self._outline.set_segments(segments)  # type: ignore[arg-type]  # an (n, 2, 2) array serves
        self._outline_halo.set_segments(segments)  # type: ignore[arg-type]

    def _show_pixel(self) -> None:
        """Put the selected pixel's spectrum, reconstruction, residual and markers in place (no drawing)."""
        i, j = self.current, self._j
        sd = self.scan_data(self.scan)
        x = self.dataset.read([i])[0]
        if self.vae.architecture == "mlp":  # decode(μ), μ kept from the scan's one pass: vae.reconstruct's value
            r = self.vae.decode(sd.latent[j][None])[0]
        else:  # the pixel's own thickness and baseline (unmixing), or its neighbourhood (spatial)
            r = self.vae.reconstruct(self.dataset.select_pixels(np.array([i])))[0]
        self._pixel_rmse = float(pixel_rmse(x[None], r[None])[0])
        self._line_orig.set_ydata(x)
        self._line_rec.set_ydata(r)
        self._line_res.set_ydata(x - r)
        self._map_marker.set_data([sd.cols[j]], [sd.rows[j]])
        self._latent_marker.set_data(*([v] for v in self._latent_xy(sd)[j]))
        self._update_spectrum_axes()
        self._describe_pixel()

    def _describe_pixel(self) -> None:
        sd = self.scan_data(self.scan)
        j = self._j
        row, col = int(sd.rows[j]), int(sd.cols[j])
        scan = self.dataset.scans[self.scan]
        truth = ""
        if sd.labels is not None and sd.labels[j] >= 0:
            truth = f" · ground truth: {(self.dataset.label_names or [])[sd.labels[j]]}"
        z = ", ".join(f"{v:.3g}" for v in sd.latent[j])
        value = self.map_values(self.map_name, self.scan)[j]
        shown = "" if self.map_name in (RECONSTRUCTION_ERROR, LABELS) or self.map_name.startswith("z") else \
            f" · {self.map_name} {value:.4g}"
        self.info.value = (f"<b>{scan}</b> row {row}, col {col}{shown} · RMSE {self._pixel_rmse:.4g} "
                           f"· z = ({z}){truth}")

    def _update_spectrum_axes(self) -> None:
        lines = [ln for ln in (self._line_orig, self._line_rec, self._line_res, self._line_mean) if ln.get_visible()]
        lo = min(float(np.min(ln.get_ydata())) for ln in lines)
        hi = max(float(np.max(ln.get_ydata())) for ln in lines)
        pad = 0.05 * (hi - lo or 1.0)
        self._ax_spec.set_ylim(lo - pad, hi + pad)

    def _update_legend(self) -> None:
        lines = [self._line_orig, self._line_rec, self._line_res] + [self._line_mean] * self._line_mean.get_visible()
        self._ax_spec.legend(handles=lines, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small",
                             frameon=False)

    # show_scan and show_map set .scan and .map_name before their selector: a choice made in code
    # comes back through these observers as already done
    def _on_scan_choice(self, change: dict[str, Any]) -> None:
        if change["new"] != self.scan:
            self.show_scan(change["new"])

    def _on_map_choice(self, change: dict[str, Any]) -> None:
        if change["new"] != self.map_name:
            self.show_map(change["new"])

    def _navigating(self, ax: Any) -> bool:
        return ax.get_navigate_mode() is not None  # the toolbar's pan or zoom owns the mouse

    def _on_map_press(self, event: MouseEvent) -> None:
        if event.inaxes is not self._ax_map or event.button != 1 or self._navigating(self._ax_map):
            return
        assert event.xdata is not None and event.ydata is not None  # matplotlib sets them with inaxes
        self.select_pixel(int(round(event.ydata)), int(round(event.xdata)))

    def _on_latent_press(self, event: MouseEvent) -> None:
        if event.inaxes is not self._ax_latent or event.button != 1 or self._navigating(self._ax_latent):
            return
        assert event.xdata is not None and event.ydata is not None  # matplotlib sets them with inaxes
        self._drag = (float(event.xdata), float(event.ydata))
        self._drag_end = self._drag
        self._box.set(xy=self._drag, width=0, height=0, visible=True)
        self._latent_blit.update()

    def _on_latent_motion(self, event: MouseEvent) -> None:
        if self._drag is None or event.inaxes is not self._ax_latent:
            return
        assert event.xdata is not None and event.ydata is not None  # matplotlib sets them with inaxes
        self._drag_end = (float(event.xdata), float(event.ydata))
        (x0, y0), (x1, y1) = self._drag, self._drag_end
        self._box.set(xy=(min(x0, x1), min(y0, y1)), width=abs(x1 - x0), height=abs(y1 - y0))
        self._latent_blit.update()

    def _on_latent_release(self, event: MouseEvent) -> None:
        if self._drag is None:
            return
        if event.inaxes is self._ax_latent:
            assert event.xdata is not None and event.ydata is not None  # matplotlib sets them with inaxes
            self._drag_end = (float(event.xdata), float(event.ydata))
        (x0, y0), (x1, y1) = self._drag, self._drag_end
        self._drag = None
        self.brush(None if (x0, y0) == (x1, y1) else (x0, x1, y0, y1))  # a click without a drag clears
