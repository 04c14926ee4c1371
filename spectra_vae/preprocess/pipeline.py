"""Spectral preprocessing: a fitted pipeline of standard steps, written as text and stored with the model.

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
| `emsc(degree, dispersion)` | EMSC against the mean training tissue spectrum, default (2, 0) (`spectra_vae.emsc`) |

`emsc` fits each spectrum as a multiple of the reference plus a Legendre baseline of `degree`, and
divides. `emsc(2,1)` adds the reference's Kramers–Kronig partner as a regressor for the dispersion
artefact: it corrects the apparent amide I position, but it also takes out band shifts of the
same derivative shape, such as the demo tumour's, so anomaly detection is better off without it
(README, Scattering and EMSC). Basic EMSC is what orange-spectroscopy (Quasar) calls EMSC.

A `Preprocessor` works like a scikit-learn transformer: `fit(wavenumbers, data)` prepares every
step for the input axis and learns what a step needs from training spectra (`emsc`'s reference:
the mean of `data`, the training tissue pixels, as they arrive at that step), `transform` applies
it, and `to_dict`/`from_dict` carry the fitted state as plain content (a checkpoint loaded with
`weights_only=True`, a JSON record). Steps without learned state need only the axis, as before.
Every step then acts on each spectrum alone, so the fitted pipeline is applied identically in
training, scoring and reconstruction. `snv`, `vector` and `amide1` are per-spectrum affine maps
and are undone exactly for a known spectrum; `baseline` and `rubberband` are undone by adding the
removed baseline back, `emsc` by x = a·y + baseline + dispersion part (a = 1 where it was guarded);
`cut`, `resample` and `savgol` are not invertible (reconstructions stay on the processed axis).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, overload

import numpy as np

from ..core.errors import DataError
from .emsc import EMSC

STEPS = ("cut", "resample", "baseline", "rubberband", "savgol", "snv", "vector", "amide1", "emsc")
FITTED_STEPS = ("emsc",)  # steps that learn from training spectra, not only from the axis
INVERTIBLE_STEPS = ("snv", "vector", "amide1", "baseline", "rubberband", "emsc")
_DEFAULTS: dict[str, tuple[float, ...]] = {"baseline": (2, 50), "savgol": (9, 2, 0), "emsc": (2, 0)}
_NARGS = {"cut": (2, 2), "resample": (3, 3), "baseline": (0, 2), "savgol": (0, 3),
          "rubberband": (0, 0), "snv": (0, 0), "vector": (0, 0), "amide1": (0, 0), "emsc": (0, 2)}
NEEDS_AXIS = ("cut", "resample", "amide1")  # steps whose arguments are in cm⁻¹
SCALING_STEPS = ("snv", "vector", "amide1", "emsc")  # steps that divide each spectrum by a factor of its own
MAX_CHANNELS = 100_000  # a resampled grid larger than this is a typo (a step of 0.0001), not a spectrum
MAX_BASELINE_DEGREE, MAX_BASELINE_ITERATIONS = 20, 1000
EMSC_MAX_DEGREE = 10


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
    """A pipeline fitted to an input axis (and, for `emsc`, to training spectra): input axis → output axis."""

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
        return all(s.name in INVERTIBLE_STEPS for s in self.steps)

    @property
    def scales_each_spectrum(self) -> bool:
        """Whether a step divides each spectrum by a factor of its own (so its noise, too)."""
        return any(s.name in SCALING_STEPS for s in self.steps)

    @property
    def needs_data(self) -> bool:
        """Whether `fit` needs training spectra (a step learns from them), not only the axis."""
        return any(s.name in FITTED_STEPS for s in self.steps)

    def fit(self, wavenumbers: np.ndarray, data: Any = None, known: bool = True) -> Preprocessor:
        """Prepare every step for spectra on `wavenumbers`, learning fitted steps' state from `data`.

        `data`: the training spectra a fitted step learns from, on `wavenumbers`: an `(n, C)` array
        or a dataset (anything with `iter_chunks()`, read raw and streamed); for `emsc`, the
        training tissue pixels. Pipelines without a fitted step ignore it. `known=False` says the
        axis is only channel numbers (the data came without wavenumbers): steps whose arguments
        are in cm⁻¹ are then refused instead of cutting at channel 950.
        """
        return self._build(wavenumbers, data=data, known=known)

    def check(self, wavenumbers: np.ndarray, known: bool = True) -> None:
        """Every check `fit` makes of the steps against the axis (a cut outside the data, cm⁻¹ on
        bare scans, a window longer than the spectrum, a bad emsc argument), without learning from
        training spectra: for a run to refuse bad settings before it reads any data."""
        Preprocessor(self.spec)._build(wavenumbers, known=known, check_only=True)

    def _build(self, wavenumbers: np.ndarray, data: Any = None,
               states: list[dict[str, Any] | None] | None = None, known: bool = True,
               check_only: bool = False) -> Preprocessor:
        wn = np.asarray(wavenumbers, dtype=float)
        needs = [str(s) for s in self.steps if s.name in NEEDS_AXIS]
        if not known and needs:
            raise DataError(f"preprocess: {', '.join(needs)} needs the data's wavenumbers (cm⁻¹), and the data "
                            "have none, only channel numbers; give a wavenumbers.npy beside the scans or "
                            "wavenumbers= to load_dataset")
        self.input_wavenumbers_ = wn
        self._plan: list[tuple[Step, Any]] = []
        for k, s in enumerate(self.steps):
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
            elif s.name == "emsc":
                state = states[k] if states is not None else None
                self._plan.append((s, self._fit_emsc(s, wn, data, state, check_only)))
            else:
                self._plan.append((s, None))
        self.output_wavenumbers_ = wn
        return self

    def _fit_emsc(self, s: Step, wn: np.ndarray, data: Any, state: dict[str, Any] | None,
                  check_only: bool = False) -> EMSC | None:
        degree, dispersion = s.args
        if degree != int(degree) or not 0 <= degree <= EMSC_MAX_DEGREE or dispersion not in (0, 1):
            raise DataError(f"preprocess: {s} takes a whole polynomial degree 0–{EMSC_MAX_DEGREE} "
                            "and dispersion 0 or 1")
        if check_only:
            return None
        if state is not None:
            emsc = EMSC.from_dict(state)
            if emsc.wavenumbers.shape != wn.shape or not np.allclose(emsc.wavenumbers, wn, rtol=0, atol=1e-6):
                raise DataError(f"preprocess: the stored state of {s} is for another wavenumber axis")
            if (emsc.degree, emsc.dispersion) != (int(degree), bool(dispersion)):
                raise DataError(f"preprocess: the stored state of {s} is of emsc({emsc.degree},{int(emsc.dispersion)})")
            return emsc
        if data is None:
            raise DataError(f"preprocess: {s} learns its reference spectrum from training spectra; "
                            "fit with data (the training tissue pixels)")
        total, n = np.zeros(len(wn)), 0
        for chunk in _chunks(data):
            if chunk.shape[-1] != len(self.input_wavenumbers_):
                raise DataError(f"preprocess: {s} was given training spectra of {chunk.shape[-1]} channels for an "
                                f"axis of {len(self.input_wavenumbers_)}")
            y = self._apply(np.asarray(chunk, dtype=np.float32), self._plan)
            total += y.sum(axis=0, dtype=np.float64)
            n += len(y)
        if n == 0:
            raise DataError(f"preprocess: no training spectra to fit the reference of {s}")
        return EMSC(total / n, wn, int(degree), bool(dispersion))

    def fitted_step(self, name: str) -> Any:
        """The fitted state of the first step called `name` (for `emsc`, its `EMSC`)."""
        for s, p in self._plan:
            if s.name == name:
                return p
        raise KeyError(f"preprocess {self.spec!r} has no {name} step")

    def split(self, k: int) -> tuple[Preprocessor, Preprocessor]:
        """The fitted pipeline as two: its first `k` steps, and the rest (fitted state kept) on their output axis."""
        head = Preprocessor("|".join(str(s) for s in self.steps[:k]))._build(
            self.input_wavenumbers_, states=[self.to_dict()["states"][i] for i in range(k)])
        tail = Preprocessor("|".join(str(s) for s in self.steps[k:]))._build(
            head.output_wavenumbers_, states=self.to_dict()["states"][k:])
        return head, tail

    def transform_until(self, x: np.ndarray, name: str) -> np.ndarray:
        """`(n, C)` spectra through the steps before the first one called `name` (what it receives)."""
        k = next((i for i, (s, _) in enumerate(self._plan) if s.name == name), None)
        if k is None:
            raise KeyError(f"preprocess {self.spec!r} has no {name} step")
        return self._apply(np.asarray(x, dtype=np.float32), self._plan[:k])

    @overload
    def transform(self, x: np.ndarray, return_inverse: Literal[False] = False) -> np.ndarray: ...
    @overload
    def transform(self, x: np.ndarray, return_inverse: Literal[True]
                  ) -> tuple[np.ndarray, list[tuple[str, np.ndarray]]]: ...
    @overload
    def transform(self, x: np.ndarray, return_inverse: bool = False
                  ) -> np.ndarray | tuple[np.ndarray, list[tuple[str, np.ndarray]]]: ...

    def transform(self, x: np.ndarray, return_inverse: bool = False
                  ) -> np.ndarray | tuple[np.ndarray, list[tuple[str, np.ndarray]]]:
        """Apply the pipeline to `(n, C)` spectra. With `return_inverse`, also what undoes each step."""
        undo: list[tuple[str, np.ndarray]] = []
        y = self._apply(np.asarray(x, dtype=np.float32), self._plan, undo if return_inverse else None)
        return (y, undo) if return_inverse else y

    @staticmethod
    def _apply(y: np.ndarray, plan: list[tuple[Step, Any]],
               undo: list[tuple[str, np.ndarray]] | None = None) -> np.ndarray:
        """`y` through the steps of `plan`; what undoes each step is appended to `undo` when given."""
        keep = undo is not None
        undo = [] if undo is None else undo
        for s, p in plan:
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
                base = lower_hull(p, y).astype(np.float32)
                undo.append(("add", base))
                y = y - base
            elif s.name == "savgol":
                from scipy.ndimage import convolve1d

                y = convolve1d(y, p, axis=1, mode="nearest").astype(np.float32)
            elif s.name == "emsc":
                if keep:
                    y, coef, additive = p.correct(y, return_additive=True)
                    scale = p.scale(coef).astype(np.float32)
                    undo += [("add", additive), ("affine", np.concatenate([np.zeros_like(scale), scale], axis=1))]
                else:
                    y = p.correct(y)[0]
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
        return y

    def inverse_transform(self, y: np.ndarray, undo: list[tuple[str, np.ndarray]]) -> np.ndarray:
        """Map processed spectra back to original units with what `transform(..., return_inverse=True)` gave."""
        if not self.invertible:
            raise DataError(f"preprocess {self.spec!r} cannot be undone (cut, resample and savgol are not invertible)")
        out = np.asarray(y, dtype=np.float32)
        for kind, v in reversed(undo):
            out = out + v if kind == "add" else out * v[:, 1:2] + v[:, 0:1]
        return out

    # -- fitted state as plain content -----------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The fitted pipeline as plain content: its text, input axis and each step's learned state
        (None for steps that learn nothing). `from_dict` rebuilds it without data."""
        return {"spec": self.spec, "input_wavenumbers": [float(v) for v in self.input_wavenumbers_],
                "states": [p.to_dict() if s.name in FITTED_STEPS else None for s, p in self._plan]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessor:
        pre = cls(str(d.get("spec", "")))
        states = list(d.get("states") or [None] * len(pre.steps))
        if len(states) != len(pre.steps):
            raise DataError(f"preprocess {pre.spec!r}: stored state has {len(states)} steps, the text {len(pre.steps)}")
        return pre._build(np.asarray(d["input_wavenumbers"], dtype=float), states=states)


def _chunks(data: Any) -> Iterator[np.ndarray]:
    """Spectra in chunks from an array or a dataset (its raw spectra, streamed)."""
    if hasattr(data, "iter_chunks"):
        raw = data.raw() if getattr(data, "preprocessor", None) is not None else data
        yield from raw.iter_chunks()
    elif isinstance(data, np.ndarray) or not isinstance(data, Iterable):
        yield np.atleast_2d(np.asarray(data))
    else:
        for chunk in data:
            yield np.atleast_2d(np.asarray(chunk))


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
