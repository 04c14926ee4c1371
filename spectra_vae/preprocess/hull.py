"""The lower convex hull of spectra, vectorised over spectra: the rubber band of the `rubberband` step."""

from __future__ import annotations

import numpy as np


def lower_hull(x: np.ndarray, y: np.ndarray, block: int = 256) -> np.ndarray:
    """The lower convex hull (the "rubber band") of each spectrum `(n, C)` on the axis x, evaluated at every x.

    Gift wrapping, for `block` spectra at a time: from the leftmost point, the next hull vertex is
    the later point seen at the lowest slope (the farthest of equal slopes, so collinear points are
    not vertices); every spectrum takes that step together, until each reaches the last point.
    Steps are as many as the most hull vertices of a spectrum, not a loop over spectra.
    """
    y = np.atleast_2d(np.asarray(y, dtype=np.float64))
    if len(y) == 0 or y.shape[1] < 3:
        return y.copy()
    order = np.argsort(x, kind="stable")
    xs = np.asarray(x, dtype=np.float64)[order]
    out = np.empty_like(y)
    for s in range(0, len(y), block):
        out[s:s + block, order] = _lower_hull_block(xs, y[s:s + block, order])
    return out


def _lower_hull_block(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    n, c = ys.shape
    channel = np.arange(c)
    vertex = np.zeros((n, c), dtype=bool)
    vertex[:, 0] = vertex[:, -1] = True
    current = np.zeros(n, dtype=np.int64)
    active = np.arange(n)
    while active.size:
        i = current[active]
        lo = int(i.min()) + 1  # no spectrum looks back before this channel
        with np.errstate(divide="ignore", invalid="ignore"):
            slope = (ys[active, lo:] - ys[active, i][:, None]) / (xs[None, lo:] - xs[i][:, None])
        slope[channel[None, lo:] <= i[:, None]] = np.inf
        following = c - 1 - np.argmin(slope[:, ::-1], axis=1)  # the farthest of the lowest slopes
        vertex[active, following] = True
        current[active] = following
        active = active[following < c - 1]
    # Each channel between two vertices lies on the segment joining them.
    positions = np.broadcast_to(channel, (n, c))
    left = np.maximum.accumulate(np.where(vertex, positions, 0), axis=1)
    right = np.minimum.accumulate(np.where(vertex, positions, c - 1)[:, ::-1], axis=1)[:, ::-1]
    xl, xr = xs[left], xs[right]
    yl, yr = np.take_along_axis(ys, left, axis=1), np.take_along_axis(ys, right, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(right > left, yl + (yr - yl) * (xs[None, :] - xl) / (xr - xl), yl)
