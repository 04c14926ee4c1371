"""The demo's ground truth beside its labels: pure component spectra and how much of each every pixel holds.

`make_demo_dataset` writes it to `truth/`:

- `components.npy` `(n_components, n_channels)`: the pure spectra S, without any amide I shift, of the
  five tissue components in `COMPONENTS`' order (protein, collagen, nucleic acid, glycogen, lipid,
  `component_spectra`), then paraffin (`paraffin_spectrum`, its 1462 cm⁻¹ band of height 1);
  `components.json` names them in that order.
- `data{i}.npz` per scan, float32, every map zero on background:
  - `fractions` `(H, W, n_components)`: the five tissue fractions as the generator mixes them (≥ 0,
    summing to 1 on every tissue pixel, paraffin patches included), then paraffin's amount on the same
    scale: thickness × paraffin's fraction × its spectrum is what the residue added, so the fraction
    is the height of the added 1462 cm⁻¹ band over the thickness (0 outside the patches);
  - `thickness` `(H, W)`: the pixel's Beer–Lambert thickness t, pixel-level jitter included;
  - `amide_i_shift` `(H, W)`: δ, how far the amide I bands of protein and collagen sit from their
    place in `components.npy`, in cm⁻¹ (the tumour's mean `TUMOUR_AMIDE_I_SHIFT` included).

So, on a tissue pixel, the clean (`scatter=False`) scan is, with f the pixel's fractions,

    absorbance = t · (f @ S − δ · f @ ∂S_I/∂ν) + noise

with ∂S_I/∂ν the slope of the amide I bands alone (`np.gradient(component_spectra(wn,
amide_i_only=True), wn, axis=1)`, paraffin's row zero). That is how the generator shifts normal
tissue, so there it holds to float32 rounding. The tumour's mean shift the generator makes by moving
the band centres, so first order leaves up to ≈ 0.005 absorbance (about 3 noise levels) on tumour
pixels' amide I band; over all tissue the residual is ≈ 0.0002 r.m.s., a tenth of the noise (without
the shift term: 0.003–0.005). With `scatter=True` the truth is the same, the clean scan's: what
scattering adds is in `scattering/`. Writing the truth draws no random number, so the scans, labels,
splits and scattering maps are those the generator made before it wrote any truth.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.files import atomic_file, save_npy_atomic, write_text_atomic

TRUTH_DIR = "truth"
TRUTH_VERSION = 1  # demo.json's "truth": a demo folder without it was made before the truth was written
COMPONENTS_FILE = "components.npy"
COMPONENT_NAMES_FILE = "components.json"


@dataclass(frozen=True)
class DemoTruth:
    """One scan's truth: `fractions` `(H, W, n_components)`, `thickness` and `amide_i_shift` `(H, W)`.

    Zero on background. See the module's docstring for what each means.
    """

    fractions: np.ndarray
    thickness: np.ndarray
    amide_i_shift: np.ndarray

    def maps(self) -> dict[str, np.ndarray]:
        """The arrays by name, as written to `truth/data{i}.npz` (float32)."""
        return {k: getattr(self, k).astype(np.float32) for k in ("fractions", "thickness", "amide_i_shift")}


def write_truth_components(directory: str | os.PathLike, components: np.ndarray, names: Sequence[str]) -> None:
    """Write `truth/components.npy` and `truth/components.json` under a demo folder."""
    folder = Path(directory) / TRUTH_DIR
    folder.mkdir(exist_ok=True)
    save_npy_atomic(folder / COMPONENTS_FILE, np.asarray(components, dtype=np.float64))
    write_text_atomic(folder / COMPONENT_NAMES_FILE, json.dumps(list(names)))


def write_truth_scan(directory: str | os.PathLike, scan_name: str, truth: DemoTruth) -> None:
    """Write one scan's truth to `truth/<scan stem>.npz` under a demo folder."""
    folder = Path(directory) / TRUTH_DIR
    folder.mkdir(exist_ok=True)
    with atomic_file(folder / f"{Path(scan_name).stem}.npz") as f:
        np.savez(f, **truth.maps())  # type: ignore[arg-type]  # mypy matches **dict against allow_pickle


def read_demo_truth(directory: str | os.PathLike, scan_name: str) -> tuple[np.ndarray, list[str], DemoTruth]:
    """A demo folder's component spectra, their names, and one scan's (e.g. `"data0.npy"`) truth."""
    folder = Path(directory) / TRUTH_DIR
    components = np.load(folder / COMPONENTS_FILE)
    names = json.loads((folder / COMPONENT_NAMES_FILE).read_text())
    with np.load(folder / f"{Path(scan_name).stem}.npz") as maps:
        truth = DemoTruth(maps["fractions"], maps["thickness"], maps["amide_i_shift"])
    return components, names, truth
