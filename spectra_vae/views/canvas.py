"""Interactive matplotlib canvases for widgets: ipympl canvases made outside pyplot, and blitting.

ipympl is matplotlib's own interactive backend for Jupyter (kept by the matplotlib organisation):
the same Figures and Artists as the report's figures, mouse events handled in Python, and only
the pixels that changed sent to the browser as PNG frames.
"""

from __future__ import annotations

import functools
import struct
import zlib
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backend_bases import DrawEvent
from matplotlib.figure import Figure


def png_rgba(rgba: np.ndarray, level: int = 1) -> bytes:
    """An `(H, W, 4)` uint8 RGBA image as PNG: rows unfiltered, deflated at zlib `level`.

    A frame after a click is mostly zeros (the pixels that did not change): unfiltered rows at
    level 1 encode several times faster than Pillow's adaptively filtered ones, and stay small.
    """
    h, w, _ = rgba.shape
    rows = np.zeros((h, 1 + 4 * w), np.uint8)  # each row: filter type 0 (none), then its pixels
    rows[:, 1:] = rgba.reshape(h, 4 * w)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0)  # 8 bits per sample, RGBA, no interlace
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows.tobytes(), level))
            + chunk(b"IEND", b""))


@functools.cache
def canvas_classes() -> tuple[type, type]:
    """ipympl's canvas widget (sending frames encoded by `png_rgba`) and figure manager.

    `import ipympl` switches pyplot to ipympl (its `__init__` calls `matplotlib.use`), which would
    turn a notebook's inline figures into widgets; the explorer makes its canvases directly, so
    the backend in use before is put back (both switches close pyplot's open figures, once, at the
    first explorer of a session).
    """
    backend = matplotlib.get_backend()
    from ipympl.backend_nbagg import Canvas, FigureManager  # ships its JupyterLab extension

    if matplotlib.get_backend() != backend:
        matplotlib.use(backend)

    class FastFrameCanvas(Canvas):
        _png_is_old: bool  # set by matplotlib's webagg canvas
        _last_buff: np.ndarray
        _force_full: bool

        def send_whole_frame(self) -> None:
            """Make the next frame whole, not a diff against the last one sent.

            The browser view decodes frames into one Image: a frame that arrives while the one
            before is still loading replaces it, so that one is never drawn, and the diffs after it
            leave its changes out (seen as a stale brush rectangle after a fast drag). A whole frame
            at the end of a drag puts the view back in step. Not after every click: a whole frame
            is 10–15× a click's diff (about 180 kB for the three panels against 15–45 kB), which a
            remote server's users would wait for, and one frame per panel per click is not dropped.
            """
            self._force_full = True

        def get_diff_image(self) -> bytes | None:  # matplotlib's webagg (3.7–3.11) but for the encoder
            if not self._png_is_old:
                return None
            pixels = np.asarray(self.get_renderer().buffer_rgba())
            buff = pixels.view(np.uint32).squeeze(2)  # one uint32 per pixel: compared in one pass
            if self._force_full or buff.shape != self._last_buff.shape or (pixels[:, :, 3] != 255).any():
                self.set_image_mode("full")  # a diff cannot carry transparency: send the whole frame
                output = buff
            else:
                self.set_image_mode("diff")
                output = np.where(buff != self._last_buff, buff, 0)
            self._last_buff = buff.copy()
            self._force_full = False
            self._png_is_old = False
            return png_rgba(output.view(np.uint8).reshape((*output.shape, 4)))

    return FastFrameCanvas, FigureManager


def send_whole_frame(canvas: Any) -> None:
    """Ask `canvas` to send its next frame whole (`FastFrameCanvas.send_whole_frame`); other
    canvases (Agg in tests, another backend) have no frames to send and are left alone."""
    if hasattr(canvas, "send_whole_frame"):
        canvas.send_whole_frame()


def interactive_figure(figsize: tuple[float, float]) -> Figure:
    """A Figure on its own ipympl canvas widget (`figure.canvas`), outside pyplot's figure registry."""
    canvas_class, manager_class = canvas_classes()
    figure = Figure(figsize=figsize)
    canvas = canvas_class(figure)
    manager_class(canvas, 0)  # webagg routes messages through a manager; the number is not used
    # A frame drawn before a browser view exists is kept as the widget's still image (`_data_url`).
    # With ipympl 0.10 in JupyterLab 4 a canvas inside a box that has one never appears (the view
    # fails on a "broken" image, seen in the browser test). The view asks for a fresh frame when
    # it appears, so keep none.
    canvas.syncing_data_url = False
    canvas.header_visible = False
    canvas.footer_visible = False
    canvas.resizable = False
    canvas.toolbar_position = "right"  # over the figures' right margins, clear of axis labels
    return figure


class Blitter:
    """Draws a figure's animated artists over the background saved at its last full draw."""

    def __init__(self, figure: Figure, artists: list[Any]) -> None:
        self.figure = figure
        self.artists = artists
        self._background: Any = None
        self._size: tuple[int, int] = (0, 0)
        figure.canvas.mpl_connect("draw_event", self._on_draw)

    def _on_draw(self, event: DrawEvent) -> None:
        canvas = self.figure.canvas
        # Blitting canvases (Agg-based: ipympl's, Agg) have these; FigureCanvasBase declares neither.
        self._background = canvas.copy_from_bbox(self.figure.bbox)  # type: ignore[attr-defined]
        self._size = canvas.get_width_height(physical=True)
        self._draw_artists()

    def _draw_artists(self) -> None:
        for artist in self.artists:
            self.figure.draw_artist(artist)

    def update(self) -> None:
        """Redraw the animated artists only (a full draw if there is no background of this size yet)."""
        canvas = self.figure.canvas
        if self._background is None or self._size != canvas.get_width_height(physical=True):
            canvas.draw()
            return
        canvas.restore_region(self._background)  # type: ignore[attr-defined]
        self._draw_artists()
        canvas.blit(self.figure.bbox)
