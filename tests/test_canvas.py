"""The canvases under the widgets: PNG frames, and pyplot left as it was."""

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from spectra_vae.views.canvas import png_rgba

ROOT = str(Path(__file__).resolve().parent.parent)


def test_png_frames_decode_to_the_same_pixels():
    rgba = np.random.default_rng(1).integers(0, 256, (7, 13, 4), dtype=np.uint8)
    rgba[2:5] = 0  # a diff frame's unchanged pixels
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png_rgba(rgba))).convert("RGBA")), rgba)


def test_making_a_canvas_leaves_pyplots_backend_as_it_was():
    # importing ipympl switches pyplot's backend to it: a notebook's inline figures would become widgets
    code = ("import matplotlib; matplotlib.use('agg'); import matplotlib.pyplot as plt; "
            "from spectra_vae.views.canvas import interactive_figure; fig = interactive_figure((2, 2)); "
            "print(matplotlib.get_backend(), type(plt.figure().canvas).__name__, type(fig.canvas).__name__)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}
    env.pop("MPLBACKEND", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.split() == ["agg", "FigureCanvasAgg", "FastFrameCanvas"]
