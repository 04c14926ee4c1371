"""Widgets: the pixel browser (a slider over pixels) and the explorer (linked map, spectrum and latent views)."""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import display
from matplotlib.figure import Figure

from ..estimator.vae import SpectraVAE
from ..io.dataset import SpectralDataset
from .explorer import MAX_SCATTER_POINTS, Explorer
from .plots import spectrum_axes, value_label

ORDERS = {
    "worst reconstructed first": "error_desc",
    "best reconstructed first": "error_asc",
    "scan, row, col": "position",
    "random": "random",
}


class PixelBrowser(widgets.VBox):
    """Browse pixels of `dataset`: spectrum and its VAE reconstruction, with its place on the error map.

    `.slider` picks the position in the current order, `.order` the order, `.label` names the
    pixel shown, `.figure` is the matplotlib figure that is redrawn.
    """

    def __init__(self, vae: SpectraVAE, dataset: Any, order: str = "error_desc", seed: int = 0) -> None:
        self.vae = vae
        self.dataset: SpectralDataset = vae.prepare(dataset)  # what the model sees (preprocessed if it is)
        if len(self.dataset) == 0:
            raise ValueError("the dataset holds no pixels to browse")
        self.errors = vae.reconstruction_error(self.dataset)
        self.coords = self.dataset.coords
        self.labels = self.dataset.labels
        self._seed = seed
        self._maps = {k: self.dataset.image(self.errors, k) for k in range(len(self.dataset.scans))}
        self.current: int = 0  # dataset position of the pixel shown

        self.figure: Figure
        with plt.ioff():
            self.figure, (self._ax_spec, self._ax_map) = plt.subplots(
                1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [2.2, 1]})
        wn = self.dataset.wavenumbers
        self._line_orig, = self._ax_spec.plot(wn, np.zeros_like(wn), color="k", lw=1, label="original")
        self._line_rec, = self._ax_spec.plot(wn, np.zeros_like(wn), color="C3", lw=1, label="reconstruction")
        self._line_res, = self._ax_spec.plot(wn, np.zeros_like(wn), color="grey", lw=0.6, label="residual")
        units = value_label(vae.preprocess)  # what the model sees: absorbance unless its preprocessing rescales it
        spectrum_axes(self._ax_spec, wn, self.dataset.wavenumbers_known, units)
        self._ax_spec.legend(fontsize="small", loc="upper left")
        finite = self.errors[np.isfinite(self.errors)]
        self._vmax = float(np.percentile(finite, 99)) if finite.size else 1.0
        self._image = self._ax_map.imshow(self._maps[0], cmap="magma", vmin=0, vmax=self._vmax,
                                          interpolation="nearest")
        self._marker, = self._ax_map.plot([0], [0], marker="+", color="cyan", ms=16, mew=2)
        self._ax_map.set_xlabel("col (pixel)")
        self._ax_map.set_ylabel("row (pixel)")
        cb = self.figure.colorbar(self._image, ax=self._ax_map, shrink=0.85)
        cb.set_label(f"reconstruction RMSE, {units}")
        self.figure.tight_layout()

        self.order = widgets.Dropdown(options=list(ORDERS), description="order",
                                      value=next(k for k, v in ORDERS.items() if v == order))
        self.slider = widgets.IntSlider(value=0, min=0, max=len(self.dataset) - 1, step=1,
                                        description="pixel", continuous_update=False,
                                        layout=widgets.Layout(width="60%"))
        self.label = widgets.HTML()
        self.output = widgets.Output()
        self._order_index = self._ordering(ORDERS[self.order.value])
        self.slider.observe(self._on_slider, names="value")
        self.order.observe(self._on_order, names="value")
        super().__init__([widgets.HBox([self.order, self.slider]), self.label, self.output])
        self.show(0)

    def _ordering(self, key: str) -> np.ndarray:
        if key == "error_desc":
            return np.argsort(-self.errors, kind="stable")
        if key == "error_asc":
            return np.argsort(self.errors, kind="stable")
        if key == "random":
            return np.random.default_rng(self._seed).permutation(len(self.errors))
        return np.arange(len(self.errors))

    def _on_slider(self, change: dict[str, Any]) -> None:
        self.show(int(change["new"]))

    def _on_order(self, change: dict[str, Any]) -> None:
        self._order_index = self._ordering(ORDERS[change["new"]])
        if self.slider.value == 0:
            self.show(0)
        else:
            self.slider.value = 0  # triggers show(0)

    def show(self, rank: int) -> None:
        """Draw the pixel at position `rank` of the current order."""
        i = int(self._order_index[rank])
        self.current = i
        x = self.dataset.read([i])[0]
        r = self.vae.reconstruct(self.dataset.select_pixels(np.array([i])))[0]
        self._line_orig.set_ydata(x)
        self._line_rec.set_ydata(r)
        self._line_res.set_ydata(x - r)
        lo, hi = float(min(x.min(), r.min(), (x - r).min())), float(max(x.max(), r.max()))
        pad = 0.05 * (hi - lo or 1.0)
        self._ax_spec.set_ylim(lo - pad, hi + pad)
        k, row, col = (int(v) for v in self.coords[i])
        scan = self.dataset.scans[k]
        label = ""
        if self.labels is not None and self.dataset.label_names and self.labels[i] >= 0:
            label = f", ground truth: {self.dataset.label_names[self.labels[i]]}"
        title = f"{scan} row {row} col {col}: RMSE {self.errors[i]:.3g}{label}"
        self._ax_spec.set_title(title, fontsize="medium")
        self._image.set_data(self._maps[k])
        self._ax_map.set_title(f"error map of {scan}", fontsize="medium")
        self._marker.set_data([col], [row])
        self.label.value = (f"<b>{scan}</b> row {row}, col {col} &nbsp;·&nbsp; RMSE {self.errors[i]:.4g} "
                            f"(rank {rank + 1} of {len(self.errors)}, {self.order.value}){label}")
        self.figure.canvas.draw_idle()
        with self.output:
            self.output.clear_output(wait=True)
            display(self.figure)


def browse_reconstructions(vae: SpectraVAE, dataset: Any, order: str = "error_desc") -> PixelBrowser:
    """A slider over the pixels of `dataset`, worst-reconstructed first by default.

    `order`: "error_desc" (default), "error_asc", "position" or "random".
    """
    if order not in ORDERS.values():
        raise ValueError(f"order must be one of {list(ORDERS.values())}; got {order!r}")
    return PixelBrowser(vae, dataset, order=order)


def explore(vae: SpectraVAE, dataset: Any, scan: int | str = 0, latent_axes: tuple[int, int] = (0, 1),
            max_points: int = MAX_SCATTER_POINTS) -> Explorer:
    """Linked views of one scan at a time: click a pixel on a map, brush the latent scatter.

    The map shows amide I (mean absorbance where the data have no wavenumber axis),
    reconstruction error, anomaly score, a latent coordinate or the labels; clicking it shows that
    pixel's spectrum, reconstruction and residual and marks it in the latent scatter; dragging a box
    over the scatter outlines those pixels on the map and shows their count and mean spectrum.
    `latent_axes`: the two latent dimensions of the scatter; `max_points`: at most this many
    pixels drawn in the scatter (the brush uses all). Interactive in JupyterLab (ipympl).
    """
    return Explorer(vae, dataset, scan=scan, latent_axes=latent_axes, max_points=max_points)
