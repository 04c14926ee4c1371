"""Issue 13's realism goal, what if: which sizes of the scattered demo's terms would spread the
apparent amide I position ≥ 3× as much as on the clean scans, and what do they do to the spectra?

The demo is not changed (the first row is the demo as it is; generator 6 adopted one of these
settings, README, Scattering and EMSC). For each setting the named constants of `spectra_vae.io.demo` are set for
that run only (`unittest.mock.patch.object`), `make_demo_dataset` makes the clean and the
scattered variant of each seed (6 scans of `--size`² pixels, in a temporary folder), and
`peak_position_spread` measures the ground-truth tissue, as `benchmarks.scatter` part 1 does.
Each setting changes one or two constants against the demo's own (the first row, "the demo"). Besides the
spread, each row says how far scattering moves amide I: the median over tissue pixels of
(scattered − clean) position, and its 5th percentile (the pixels moved most); and how many tissue
pixels have a dispersion share d above 3 (the generator's own map): there the band of
m·(A + d·K(A)) is over three times as tall as the absorbance itself, which no measured tissue
spectrum shows. `height` says so directly: per tissue pixel, the tallest |value| in 1480–1720 cm⁻¹
(amide I and II) of the scattered spectrum over the clean one's; its 99th percentile and maximum.

Settings:
- `d`: `SCATTER_DISPERSION`, the share of the Kramers–Kronig partner inside the core (edges and
  cell-dense tissue scale it as the demo does);
- `pixel s.d.`: `SCATTER_PIXEL_SD`, the log s.d. of d from pixel to pixel;
- `amide I FWHM`: the width of the protein and collagen amide I bands (this changes the clean
  scans too);
- `phase` (1): `SCATTER_MIXING = "phase"`, m·(cos φ·A + sin φ·K(A)) with tan φ = d instead of
  m·(A + d·K(A)): the same apparent positions but for the baseline and noise, bounded heights.
  `--phase` adds it to every setting of the run.

`python -m benchmarks.realism [--seeds 60 61 62] [--size 64] [--grid]`: `--grid` adds the joint
grid of d and pixel s.d.

`--setting d=1 "pixel s.d.=1.5"`: only the demo and that setting. With `--auroc [--variants …]`,
instead `benchmarks.scatter`'s part 2 (train the VAE on each variant, tumour AUROC) on scans made
with the setting's sizes, kept apart from the demo's own under `data/bench/realism/` (or
SPECTRA_VAE_BENCH_DATA/realism): would the EMSC goal hold on them?
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from unittest import mock

import numpy as np
import pandas as pd

from benchmarks import common, scatter
from benchmarks.common import machine
from spectra_vae import load_dataset, make_demo_dataset
from spectra_vae.core.scattering import apparent_peak_position, peak_position_spread
from spectra_vae.io import demo

GOAL = 3.0
CONSTANTS = {"d": "SCATTER_DISPERSION", "pixel s.d.": "SCATTER_PIXEL_SD"}  # settings that set one number
NAMES = (*CONSTANTS, "amide I FWHM", "phase")


@contextmanager
def demo_constants(setting: Mapping[str, float]) -> Iterator[None]:
    """The demo's constants as `setting` says, for the `with` block only."""
    with ExitStack() as stack:
        for name, value in setting.items():
            if name == "phase":
                stack.enter_context(mock.patch.object(demo, "SCATTER_MIXING", "phase" if value else "additive"))
            elif name == "amide I FWHM":
                bands = {k: [(c, value if k in ("protein", "collagen") and c > 1600 else w, h) for c, w, h in v]
                         for k, v in demo.COMPONENT_BANDS.items()}
                stack.enter_context(mock.patch.object(demo, "COMPONENT_BANDS", bands))
            else:
                stack.enter_context(mock.patch.object(demo, CONSTANTS[name], value))
        yield


def measure(seed: int, size: int, setting: Mapping[str, float]) -> dict[str, float]:
    """Spread and shifts on one seed's tissue for one setting."""
    with demo_constants(setting), tempfile.TemporaryDirectory() as tmp:
        clean = load_dataset(make_demo_dataset(f"{tmp}/clean", height=size, width=size, seed=seed))
        scattered = load_dataset(make_demo_dataset(f"{tmp}/scattered", height=size, width=size, seed=seed,
                                                   scatter=True))
        tissue = np.flatnonzero(clean.labels > 0)
        xc, xs = clean.to_array()[tissue], scattered.to_array()[tissue]
        d = np.concatenate([np.load(f"{tmp}/scattered/scattering/{name[:-4]}.npz")["dispersion"].ravel()
                            for name in scattered.scans])[tissue]
    wn = clean.wavenumbers
    table = peak_position_spread({"clean": xc, "scattered": xs}, wn)
    shift = apparent_peak_position(xs, wn) - apparent_peak_position(xc, wn)
    amide = (wn >= 1480) & (wn <= 1720)  # amide I and II: how tall the scattered bands are against the clean
    height = np.abs(xs[:, amide]).max(axis=1) / np.maximum(xc[:, amide].max(axis=1), 1e-6)
    return {"seed": seed, "clean s.d.": table.loc["clean", "s.d. (cm⁻¹)"],
            "scattered s.d.": table.loc["scattered", "s.d. (cm⁻¹)"], "ratio": table.loc["scattered", "s.d. ÷ first"],
            "median shift": float(np.median(shift)), "5 % shift": float(np.percentile(shift, 5)),
            "d > 3 (%)": 100 * float(np.mean(d > 3)), "largest d": float(d.max()),
            "height 99 %": float(np.percentile(height, 99)), "height max": float(height.max())}


def settings(grid: bool, only: Mapping[str, float] | None = None, phase: bool = False) -> list[dict[str, float]]:
    """What each run changes; the first, nothing (the demo as it is: generator 6 has d 1, pixel s.d. 1.5 and
    phase mixing, generator 5 had d 0.3, pixel s.d. 0.5 and additive mixing); with `phase`, each also with
    phase mixing."""
    rows: list[dict[str, float]] = [{}]
    if only:
        rows.append(dict(only))
    else:
        rows += [{"d": d} for d in (0.6, 1.0, 1.5, 2.5, 4.0)]
        rows += [{"pixel s.d.": s} for s in (0.8, 1.0, 1.5)]
        rows += [{"amide I FWHM": w} for w in (45.0, 55.0)]
        if grid:
            rows += [{"d": d, "pixel s.d.": s} for d in (0.6, 1.0, 1.5) for s in (0.8, 1.0, 1.5)]
    return [*rows, *({**r, "phase": 1.0} for r in rows)] if phase else rows


def label(setting: Mapping[str, float]) -> str:
    words = [("phase mixing" if v else "additive mixing") if k == "phase" else f"{k} {v:g}" for k, v in setting.items()]
    return ", ".join(words) or "the demo"


def setting_arg(text: str) -> tuple[str, float]:
    """`--setting`'s `NAME=VALUE`, NAME one of `NAMES`."""
    name, _, value = text.partition("=")
    if name.strip() not in NAMES:
        raise argparse.ArgumentTypeError(f"{text!r}: NAME=VALUE with NAME d, 'pixel s.d.', 'amide I FWHM' or phase")
    try:
        return name.strip(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: the value is not a number") from None


def auroc(setting: Mapping[str, float], size: int, seeds: list[int], variants: list[str] | None) -> None:
    """`benchmarks.scatter.auroc` on scans made with `setting`, cached apart from the demo's own."""
    folder = common.BENCH_DATA / "realism" / label(setting).replace(" ", "_").replace(",", "")
    print(f"scans with {label(setting)} under {folder}")
    with demo_constants(setting), mock.patch.object(common, "BENCH_DATA", folder):
        scatter.auroc(size, seeds, "auto", variants=variants)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[60, 61, 62])
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--grid", action="store_true", help="also the joint grid of d and pixel s.d.")
    p.add_argument("--setting", type=setting_arg, nargs="+", metavar="NAME=VALUE",
                   help="only the demo and these sizes (NAME: d, 'pixel s.d.', 'amide I FWHM', phase)")
    p.add_argument("--phase", action="store_true", help="every setting also with phase mixing")
    p.add_argument("--auroc", action="store_true",
                   help="train and score (benchmarks.scatter part 2) on scans with --setting's sizes instead")
    p.add_argument("--variants", nargs="+", help=f"with --auroc, only these of {[v[0] for v in scatter.VARIANTS]}")
    a = p.parse_args()
    print(machine())
    if a.auroc:
        auroc(dict(a.setting or []), a.size, a.seeds, a.variants)
        return
    print(f"Apparent amide I position over ground-truth tissue, 6 scans of {a.size}×{a.size}, seeds {a.seeds}; "
          f"the demo's own sizes first; shifts are scattered − clean per pixel, cm⁻¹")
    rows, t = [], time.perf_counter()
    for setting in settings(a.grid, dict(a.setting or []), a.phase):
        for seed in a.seeds:
            rows.append({"setting": label(setting), **measure(seed, a.size, setting)})
        last = pd.DataFrame(rows[-len(a.seeds):])
        print(f"  {label(setting)}: ratio {last['ratio'].min():.2f}–{last['ratio'].max():.2f} "
              f"({time.perf_counter() - t:.0f} s)", flush=True)
    frame = pd.DataFrame(rows)
    summary = frame.groupby("setting", sort=False).agg(
        **{"clean s.d.": ("clean s.d.", "mean"), "scattered s.d.": ("scattered s.d.", "mean"),
           "ratio min": ("ratio", "min"), "ratio max": ("ratio", "max"),
           "median shift": ("median shift", "mean"), "5 % shift": ("5 % shift", "mean"),
           "d > 3 (%)": ("d > 3 (%)", "mean"), "largest d": ("largest d", "max"),
           "height 99 %": ("height 99 %", "mean"), "height max": ("height max", "max")})
    summary[f"≥ {GOAL:g}× on"] = frame.groupby("setting", sort=False)["ratio"].apply(
        lambda r: f"{int((r >= GOAL).sum())}/{len(r)}")
    print(summary.round({"clean s.d.": 2, "scattered s.d.": 2, "ratio min": 2, "ratio max": 2, "median shift": 1,
                         "5 % shift": 1, "d > 3 (%)": 1, "largest d": 0, "height 99 %": 1,
                         "height max": 1}).to_string())


if __name__ == "__main__":
    main()
