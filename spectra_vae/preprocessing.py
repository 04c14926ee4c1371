"""Spectral preprocessing: a pipeline of standard steps, written as text and stored with the model.

A pipeline is written `"cut(950,1800)|snv"`: steps separated by `|`, arguments in parentheses.

| step | what it does |
| --- | --- |
| `cut(lo, hi)` | keep channels with lo ≤ wavenumber ≤ hi |
| `resample(lo, hi, step)` | linear interpolation onto the grid lo, lo+step, … ≤ hi (instruments line up) |
| `baseline(degree, iterations)` | modified polynomial baseline (Lieber & Mahadevan-Jansen 2003), default (2, 50) |
| `rubberband` | rubber-band baseline removal: subtract the lower convex hull of each spectrum |
| `savgol(window, polyorder, deriv)` | Savitzky–Golay smoothing (deriv 0) or derivative, default (9, 2, 0) |
| `snv` | standard normal variate: each spectrum minus its mean, divided by its standard deviation |
| `vector` | vector (L2) normalisation: each spectrum divided by its Euclidean norm |
| `amide1` | each spectrum divided by its maximum in 1600–1700 cm⁻¹ (amide I) |

Every step acts on each spectrum alone, so a pipeline is applied identically in training,
scoring and reconstruction and needs no fitting beyond the wavenumber axis. `snv`, `vector`
and `amide1` are per-spectrum affine maps and are undone exactly for a known spectrum;
`baseline` and `rubberband` are undone by adding the removed baseline back; `cut`, `resample` and `savgol` are
not invertible (reconstructions stay on the processed axis).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from .errors import DataError

STEPS = ("cut", "resample", "baseline", "rubberband", "savgol", "snv", "vector", "amide1")
_DEFAULTS: dict[str, tuple[float, ...]] = {"baseline": (2, 50), "savgol": (9, 2, 0)}
_NARGS = {"cut": (2, 2), "resample": (3, 3), "baseline": (0, 2), "savgol": (0, 3),
          "rubberband": (0, 0), "snv": (0, 0), "vector": (0, 0), "amide1": (0, 0)}
NEEDS_AXIS = ("cut", "resample", "amide1")  # steps whose arguments are in cm⁻¹
MAX_CHANNELS = 100_000  # a resampled grid larger than this is a typo (a step of 0.0001), not a spectrum
MAX_BASELINE_DEGREE, MAX_BASELINE_ITERATIONS = 20, 1000


@dataclass(frozen=True)
class Step:
    name: str
    args: tuple[float, ...] = ()

    def __str__(self) -> str:
        return self.name + (f"({','.join(f'{a:g}' for a in self.args)})" if self.args else "")


def parse(spec: str) -> list[Step]:
    """`"cut(950,1800)|snv"` → [Step('cut', (950, 1800)), Step('snv')]; a clear error otherwise."""
    if not isinstance(spec, str):
        raise DataError(f"preprocess: expected a pipeline written as text, such as 'cut(950,1800)|snv'; got {spec!r}")
    steps = []
    for part in [p.strip() for p in spec.split("|") if p.strip()]:
        m = re.fullmatch(r"([a-z0-9_]+)\s*(?:\((.*)\))?", part.lower())
        if not m or m.group(1) not in STEPS:
            raise DataError(f"preprocess: unknown step {part!r}; steps are {', '.join(STEPS)}")
        name = m.group(1)
        try:
            args = tuple(float(a) for a in m.group(2).split(",") if a.strip()) if m.group(2) else ()
        except ValueError:
            raise DataError(f"preprocess: step {part!r} takes numbers as arguments") from None
        lo, hi = _NARGS[name]
        if not lo <= len(args) <= hi:
            raise DataError(f"preprocess: step {name} takes {lo}–{hi} arguments, got {len(args)} in {part!r}")
        args = args + _DEFAULTS.get(name, ())[len(args):]
        _check_args(Step(name, args), part)
        steps.append(Step(name, args))
    return steps


def _check_args(step: Step, part: str) -> None:
    """Signs and ranges of a step's arguments, so no step silently returns nonsense (zeros, a huge grid)."""
    def bad(why: str) -> DataError:
        return DataError(f"preprocess: {part!r}: {why}")

    a = step.args
    if not all(np.isfinite(a)):
        raise bad("arguments must be finite numbers")
    if step.name in ("baseline", "savgol") and not all(float(x).is_integer() for x in a):
        raise bad("arguments must be whole numbers")
    if step.name == "resample":
        lo, hi, width = a
        if width <= 0 or hi <= lo:
            raise bad("needs lo < hi and step > 0")
        if (hi - lo) / width + 1 > MAX_CHANNELS:
            raise bad(f"makes {int((hi - lo) / width) + 1} channels, more than {MAX_CHANNELS}")
    elif step.name == "baseline":
        degree, iterations = a
        if not 0 <= degree <= MAX_BASELINE_DEGREE:
            raise bad(f"degree must be from 0 to {MAX_BASELINE_DEGREE}")
        if not 1 <= iterations <= MAX_BASELINE_ITERATIONS:
            raise bad(f"iterations must be from 1 to {MAX_BASELINE_ITERATIONS}")
    elif step.name == "savgol":
        window, order, deriv = a
        if window < 1 or window % 2 == 0:
            raise bad("window must be an odd number ≥ 1")
        if not 0 <= order < window:
            raise bad("polyorder must be ≥ 0 and smaller than the window")
        if not 0 <= deriv <= order:
            # a derivative of higher order than the fitted polynomial is zero everywhere
            raise bad("deriv must be from 0 to polyorder (a higher derivative of the fitted polynomial is zero)")


@dataclass
class Preprocessor:
    """A fitted pipeline: input axis → output axis, and the per-channel maps that need it."""

    spec: str = ""
    steps: list[Step] = field(init=False)

    def __post_init__(self) -> None:
        self.steps = parse(self.spec)
        self.spec = "|".join(str(s) for s in self.steps)

    def __bool__(self) -> bool:
        return bool(self.steps)

    @property
    def invertible(self) -> bool:
        """Whether a processed spectrum maps back to original units (given the original spectrum)."""
        return all(s.name in ("snv", "vector", "amide1", "baseline", "rubberband") for s in self.steps)

    def fit(self, wavenumbers: np.ndarray, known: bool = True) -> Preprocessor:
        """Prepare the axis-dependent maps for input spectra on `wavenumbers`.

        `known=False` says the axis is only channel numbers (the data came without wavenumbers):
        steps whose arguments are in cm⁻¹ are then refused instead of cutting at channel 950.
        """
        wn = np.asarray(wavenumbers, dtype=float)
        needs = [str(s) for s in self.steps if s.name in NEEDS_AXIS]
        if not known and needs:
            raise DataError(f"preprocess: {', '.join(needs)} needs the data's wavenumbers (cm⁻¹), and the data "
                            "have none, only channel numbers; give a wavenumbers.npy beside the scans or "
                            "wavenumbers= to load_dataset")
        self.input_wavenumbers_ = wn
        self._plan: list[tuple[Step, object]] = []
        for s in self.steps:
            if s.name == "cut":
                lo, hi = sorted(s.args)
                keep = np.flatnonzero((wn >= lo) & (wn <= hi))
                if keep.size < 2:
                    raise DataError(f"preprocess: {s} keeps {keep.size} channels of {wn.min():g}–{wn.max():g} cm⁻¹")
                self._plan.append((s, keep))
                wn = wn[keep]
            elif s.name == "resample":
                lo, hi, step = s.args
                grid = np.arange(lo, hi + step / 2, step)
                if grid.min() < wn.min() - 1e-9 or grid.max() > wn.max() + 1e-9:
                    raise DataError(f"preprocess: {s} reaches outside the data's {wn.min():g}–{wn.max():g} cm⁻¹")
                self._plan.append((s, _interp_matrix(wn, grid)))
                wn = grid
            elif s.name == "baseline":
                degree = int(s.args[0])
                if degree >= len(wn):
                    raise DataError(f"preprocess: {s} needs a degree below the {len(wn)} channels")
                x = (wn - wn.mean()) / (np.ptp(wn) or 1.0)
                v = np.vander(x, degree + 1)
                self._plan.append((s, v @ np.linalg.pinv(v)))  # projection onto polynomials
            elif s.name == "savgol":
                from scipy.signal import savgol_coeffs

                window, order, deriv = (int(a) for a in s.args)
                if window % 2 == 0 or window <= order or window > len(wn):
                    raise DataError(f"preprocess: {s} needs an odd window > polyorder and ≤ {len(wn)} channels")
                delta = float(np.abs(np.diff(wn)).mean()) if len(wn) > 1 else 1.0
                self._plan.append((s, savgol_coeffs(window, order, deriv=deriv, delta=delta, use="conv")))
            elif s.name == "rubberband":
                self._plan.append((s, wn))
            elif s.name == "amide1":
                band = np.flatnonzero((wn >= 1600) & (wn <= 1700))
                if band.size == 0:
                    raise DataError("preprocess: amide1 needs the 1600–1700 cm⁻¹ range in the data")
                self._plan.append((s, band))
            else:
                self._plan.append((s, None))
        self.output_wavenumbers_ = wn
        return self

    def transform(self, x: np.ndarray, return_inverse: bool = False
                  ) -> np.ndarray | tuple[np.ndarray, list[tuple[str, np.ndarray]]]:
        """Apply the pipeline to `(n, C)` spectra. With `return_inverse`, also what undoes each step."""
        y = np.asarray(x, dtype=np.float32)
        undo: list[tuple[str, np.ndarray]] = []
        for s, p in self._plan:
            if s.name == "cut":
                y = y[:, p]
            elif s.name == "resample":
                y = (y @ p).astype(np.float32)
            elif s.name == "baseline":
                base = y.astype(np.float64)
                for _ in range(int(s.args[1])):
                    base = np.minimum(base, base @ p.T)  # clip peaks above the fitted polynomial
                base = (base @ p.T).astype(np.float32)
                undo.append(("add", base))
                y = y - base
            elif s.name == "rubberband":
                base = np.stack([_lower_hull(p, row) for row in y]).astype(np.float32) if len(y) else y
                undo.append(("add", base))
                y = y - base
            elif s.name == "savgol":
                from scipy.ndimage import convolve1d

                y = convolve1d(y, p, axis=1, mode="nearest").astype(np.float32)
            else:
                if s.name == "snv":
                    offset, scale = y.mean(axis=1, keepdims=True), y.std(axis=1, keepdims=True)
                elif s.name == "vector":
                    offset, scale = np.zeros((len(y), 1), np.float32), np.linalg.norm(y, axis=1, keepdims=True)
                else:  # amide1
                    offset, scale = np.zeros((len(y), 1), np.float32), y[:, p].max(axis=1, keepdims=True)
                scale = np.where(np.abs(scale) > 1e-12, scale, 1.0).astype(np.float32)
                undo.append(("affine", np.concatenate([offset, scale], axis=1)))
                y = (y - offset) / scale
        return (y, undo) if return_inverse else y

    def inverse_transform(self, y: np.ndarray, undo: list[tuple[str, np.ndarray]]) -> np.ndarray:
        """Map processed spectra back to original units with what `transform(..., return_inverse=True)` gave."""
        if not self.invertible:
            raise DataError(f"preprocess {self.spec!r} cannot be undone (cut, resample and savgol are not invertible)")
        out = np.asarray(y, dtype=np.float32)
        for kind, v in reversed(undo):
            out = out + v if kind == "add" else out * v[:, 1:2] + v[:, 0:1]
        return out


def _interp_matrix(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """`(len(src), len(dst))` matrix M with x @ M = linear interpolation of x (on src) at dst."""
    order = np.argsort(src)
    s = src[order]
    j = np.clip(np.searchsorted(s, dst) - 1, 0, len(s) - 2)
    w = (dst - s[j]) / (s[j + 1] - s[j])
    m = np.zeros((len(src), len(dst)))
    m[order[j], np.arange(len(dst))] += 1 - w
    m[order[j + 1], np.arange(len(dst))] += w
    return m


def _lower_hull(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The lower convex hull of the points (x, y), evaluated at every x (the "rubber band")."""
    order = np.argsort(x)
    xs, ys = x[order], y[order].astype(np.float64)
    hull: list[int] = []
    for i in range(len(xs)):  # Andrew's monotone chain, lower half
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            if (xs[b] - xs[a]) * (ys[i] - ys[a]) - (ys[b] - ys[a]) * (xs[i] - xs[a]) <= 0:
                hull.pop()
            else:
                break
        hull.append(i)
    out = np.empty_like(ys)
    out[order] = np.interp(xs, xs[hull], ys[hull])
    return out
