"""A run's per-pixel results for other tools: `maps.h5` (HDF5), `pixels.csv` (Orange/Quasar), figures.

`maps.h5` has one group per scan of the run (named as the scan file), each with

| dataset | shape | what |
| --- | --- | --- |
| `latent_mean` | (H, W, k) | latent means μ |
| `reconstruction_error` | (H, W) | per-pixel RMSE in the model's space |
| `anomaly_score` | (H, W) | `SpectraVAE.anomaly_score` (higher = more anomalous) |
| `tissue` | (H, W) int8 | 1 tissue, 0 background by the model's tissue rule, -1 excluded |
| `flags` | (H, W) int8 | 1 flagged, 0 not, -1 excluded; where the run has a threshold (normal validation scans) |
| `emsc_multiplicative`, `emsc_baseline` | (H, W) | where the model has an `emsc` step: its terms per pixel |
| `emsc_dispersion_share` | (H, W) | the same, with `emsc(…,1)` only (`preprocess.diagnostics.pixel_terms`) |

float maps are NaN where a pixel was excluded (a non-finite value in its spectrum). File
attributes: `wavenumbers` (the scans' axis), `model_wavenumbers` (after preprocessing),
`wavenumbers_known`, `params` and `tissue_rule` (JSON); group attributes: `split`, `height`, `width`.
`pixels.csv` has one row per usable pixel: `scan`, `split`, `row`, `col`, `map_x`, `map_y`
(scans side by side, two columns apart, so Orange/Quasar's hyperspectral view shows them as one
map), `tissue`, `z1…zk`, `reconstruction_error`, `anomaly_score`, `flagged` where there are flags,
and the `emsc_…` terms where there is EMSC.
"""

from __future__ import annotations

import json
import os
import shutil
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..core.errors import DataError
from ..core.files import regular_file, write_text_atomic, write_with
from ..core.version import __version__
from ..io.folders import claim_output
from ..preprocess.diagnostics import MAP_LABELS, has_emsc, pixel_terms
from . import compare, runs

MAPS, PIXELS, FIGURES = "maps.h5", "pixels.csv", "figures"
GAP = 2  # columns between scans in the pixel table's map coordinates


def export_run(run_dir: str | os.PathLike, out: str | os.PathLike) -> list[Path]:
    """Write `out/maps.h5`, `out/pixels.csv` and the run's figures (PNG and SVG) to `out/figures`.

    `out` is an export folder (`spectra_vae.core.claims`): new, empty, or an earlier export; never the
    run's own folder, a folder of scans, or one another process is writing."""
    try:
        import h5py
    except ImportError:
        raise DataError("export writes HDF5 with h5py, which is not installed: "
                        "pip install 'spectra_vae[export]'") from None

    run = runs.open_run(run_dir)
    out = Path(out).expanduser()
    claim = claim_output(out, "export", "--out", writes=(MAPS, PIXELS, FIGURES), legacy=_older_export)
    try:
        written = _export(run, out, h5py)
    except BaseException:
        claim.release(discard=not any(os.path.lexists(out / name) for name in (MAPS, PIXELS, FIGURES)))
        raise
    claim.release()
    return written


def _older_export(folder: Path) -> bool:
    """An export written before folders carried markers: its maps.h5 says it came from a spectra_vae run."""
    try:
        import h5py

        with h5py.File(regular_file(folder / MAPS), "r") as f:
            return "spectra_vae_version" in f.attrs and "run" in f.attrs
    except Exception:  # not there, not a file, not HDF5: not an older export
        return False


def _export(run: runs.Run, out: Path, h5py: Any) -> list[Path]:
    vae = run.vae
    ds = run.scans()
    z, err, score = vae.transform(ds), vae.reconstruction_error(ds), vae.anomaly_score(ds)
    tissue = vae.tissue_mask(ds)
    fitted = pixel_terms(vae.preprocessor_, ds) if has_emsc(vae.preprocessor_) else pd.DataFrame()
    emsc_terms = {f"emsc_{c}": fitted[c].to_numpy(dtype=np.float64) for c in MAP_LABELS if c in fitted}
    model = compare.calibrated(run)
    flagged = model.predict(ds).astype(bool) if model is not None else None
    threshold = None
    if model is not None:
        assert model.monitor_ is not None  # predict needs one
        threshold = model.monitor_.threshold
    roles = run.roles()

    def write_maps(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            f.attrs["wavenumbers"] = np.asarray(vae.wavenumbers_, dtype=np.float64)
            f.attrs["model_wavenumbers"] = np.asarray(vae.preprocessor_.output_wavenumbers_, dtype=np.float64)
            f.attrs["wavenumbers_known"] = bool(vae.wavenumbers_known_)
            f.attrs["params"] = json.dumps(run.params)
            assert vae.tissue_rule_ is not None  # tissue_mask above needs one
            f.attrs["tissue_rule"] = json.dumps(vae.tissue_rule_.to_dict())
            f.attrs["run"] = str(run.path.resolve())
            f.attrs["spectra_vae_version"] = __version__
            if threshold is not None:
                f.attrs["flag_threshold"] = float(threshold)
                f.attrs["flag_rule"] = (f"tissue and anomaly_score > the threshold calibrated, cross-conformally "
                                        f"over the normal validation scans, to flag {compare.FLAG_RATE:g} of a new "
                                        "normal scan's tissue on average")
            for k, name in enumerate(ds.scans):
                g = f.create_group(name)
                g.attrs["split"] = roles.get(name, "")
                scan = ds.scan_objects[k]
                g.attrs["height"], g.attrs["width"] = scan.height, scan.width
                g.create_dataset("latent_mean", data=ds.image(z, k).astype(np.float32), compression="gzip")
                g.create_dataset("reconstruction_error", data=ds.image(err, k).astype(np.float32), compression="gzip")
                g.create_dataset("anomaly_score", data=ds.image(score, k).astype(np.float32), compression="gzip")
                g.create_dataset("tissue", data=_codes(ds.image(tissue.astype(float), k)), compression="gzip")
                if flagged is not None:
                    g.create_dataset("flags", data=_codes(ds.image(flagged.astype(float), k)), compression="gzip")
                for key, values in emsc_terms.items():
                    g.create_dataset(key, data=ds.image(values, k).astype(np.float32), compression="gzip")

    write_with(out / MAPS, write_maps)

    coords = ds.coords
    widths = np.array([s.width for s in ds.scan_objects])
    offsets = np.concatenate([[0], np.cumsum(widths + GAP)[:-1]])
    table = pd.DataFrame({"scan": np.asarray(ds.scans, dtype=object)[coords[:, 0]],
                          "split": [roles.get(ds.scans[k], "") for k in coords[:, 0]],
                          "row": coords[:, 1], "col": coords[:, 2],
                          "map_x": coords[:, 2] + offsets[coords[:, 0]], "map_y": coords[:, 1],
                          "tissue": tissue.astype(int)})
    for d in range(z.shape[1]):
        table[f"z{d + 1}"] = z[:, d]
    table["reconstruction_error"], table["anomaly_score"] = err, score
    if flagged is not None:
        table["flagged"] = flagged.astype(int)
    for key, values in emsc_terms.items():
        table[key] = values
    write_text_atomic(out / PIXELS, table.to_csv(index=False))

    written = [out / MAPS, out / PIXELS]
    folder = run.path / FIGURES
    figures = sorted(f for f in folder.glob("*") if f.is_file()) if folder.is_dir() else []  # regular files only
    if figures:
        (out / FIGURES).mkdir(exist_ok=True)
        for fig in figures:
            written.append(write_with(out / FIGURES / fig.name, partial(shutil.copy2, fig)))
    return written


def _codes(values: np.ndarray) -> np.ndarray:
    """A 0/1 map with NaN for excluded pixels → int8 with -1 for excluded."""
    return np.where(np.isnan(values), -1, values).astype(np.int8)
