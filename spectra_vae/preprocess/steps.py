"""The preprocessing steps, one class each, registered by name: what `Preprocessor` runs.

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
| `emsc(degree, dispersion)` | EMSC against the mean training tissue spectrum, default (2, 0) (module `emsc`) |

A step is a `StepKind`: its name, how many arguments it takes and their defaults, flags for what
the pipeline may ask of it, `check_args` (signs and ranges, when the text is parsed), `prepare`
(what it needs from the axis, and from training spectra for a fitted step, at `fit`) and `apply`
(to `(n, C)` spectra, each alone, noting what undoes it). `@register` puts it in `REGISTRY`, in
the order of this module, which is the order error messages list the steps in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import numpy as np

from ..core.distributed import all_reduce, dist_info
from ..core.errors import DataError
from .emsc import EMSC
from .hull import lower_hull

MAX_CHANNELS = 100_000  # a resampled grid larger than this is a typo (a step of 0.0001), not a spectrum
MAX_BASELINE_DEGREE, MAX_BASELINE_ITERATIONS = 20, 1000
EMSC_MAX_DEGREE = 10

Undo = list[tuple[str, np.ndarray]]  # ("add", v): add v back; ("affine", [offset, scale]): x = y·scale + offset


@dataclass(frozen=True)
class Step:
    """One step of a pipeline as written: a registered name and its arguments, defaults filled in."""

    name: str
    args: tuple[float, ...] = ()

    def __str__(self) -> str:
        return self.name + (f"({','.join(f'{a:g}' for a in self.args)})" if self.args else "")


@dataclass(frozen=True)
class Fitting:
    """What `fit` offers a step besides the axis."""

    state: dict[str, Any] | None = None  # the step's stored state (`to_dict`), to rebuild it without data
    spectra: Iterable[np.ndarray] | None = None  # training spectra in chunks, as they arrive at the step
    check_only: bool = False  # check the arguments against the axis, learn nothing
    shared: bool = False  # `spectra` are this process's share: sums are pooled over a distributed run's processes


class StepKind:
    """One kind of step. Subclasses set the class attributes and override what they need."""

    name: ClassVar[str]
    nargs: ClassVar[tuple[int, int]] = (0, 0)  # fewest and most arguments
    defaults: ClassVar[tuple[float, ...]] = ()  # fill the arguments left out, from the left
    invertible: ClassVar[bool] = False  # `apply` notes what undoes it for each spectrum
    needs_axis: ClassVar[bool] = False  # its arguments are in cm⁻¹: refused on channel numbers
    scales_each_spectrum: ClassVar[bool] = False  # divides each spectrum by a factor of its own
    fitted: ClassVar[bool] = False  # learns from training spectra, not only from the axis

    def check_args(self, args: tuple[float, ...]) -> str | None:
        """What is wrong with the (finite) arguments, defaults filled in; None when nothing is."""
        return None

    def keeps_absorbance(self, args: tuple[float, ...]) -> bool:
        """Whether spectra stay absorbance-like (non-negative mixtures of bands, up to a positive factor
        and a baseline), as the unmixing architecture needs: not a derivative, not centred."""
        return True

    def prepare(self, step: Step, wavenumbers: np.ndarray, fitting: Fitting) -> tuple[Any, np.ndarray]:
        """(the state `apply` needs, the output axis) for spectra on `wavenumbers`; a `DataError`
        naming the step when the axis does not suit it."""
        return None, wavenumbers

    def apply(self, step: Step, state: Any, y: np.ndarray, undo: Undo | None) -> np.ndarray:
        """`y` `(n, C)` float32 through the step; an invertible step appends what undoes it to `undo` when given."""
        raise NotImplementedError

    def state_to_dict(self, state: Any) -> dict[str, Any] | None:
        """A fitted step's learned state as plain content, given back to `prepare` as `Fitting.state`."""
        return None


REGISTRY: dict[str, StepKind] = {}  # name → step, in the order registered
K = TypeVar("K", bound=type[StepKind])


def register(kind: K) -> K:
    """Class decorator: make `kind` a step of pipelines, under its `name`."""
    REGISTRY[kind.name] = kind()
    return kind


def _whole_numbers(args: tuple[float, ...]) -> str | None:
    return None if all(float(x).is_integer() for x in args) else "arguments must be whole numbers"


@register
class Cut(StepKind):
    name = "cut"
    nargs = (2, 2)
    needs_axis = True

    def prepare(self, step: Step, wavenumbers: np.ndarray, fitting: Fitting) -> tuple[Any, np.ndarray]:
        lo, hi = sorted(step.args)
        keep = np.flatnonzero((wavenumbers >= lo) & (wavenumbers <= hi))
        if keep.size < 2:
            raise DataError(f"preprocess: {step} keeps {keep.size} channels of "
                            f"{wavenumbers.min():g}–{wavenumbers.max():g} cm⁻¹")
        return keep, wavenumbers[keep]

    def apply(self, step: Step, state: Any, y: np.ndarray, undo: Undo | None) -> np.ndarray:
        return y[:, state]


@register
class Resample(StepKind):
    name = "resample"
    nargs = (3, 3)
    needs_axis = True

    def check_args(self, args: tuple[float, ...]) -> str | None:
        lo, hi, width = args
        if width <= 0 or hi <= lo:
            return "needs lo < hi and step > 0"
        if (hi - lo) / width + 1 > MAX_CHANNELS:
            return f"makes {int((hi - lo) / width) + 1} channels, more than {MAX_CHANNELS}"
        return None

    def prepare(self, step: Step, wavenumbers: np.ndarray, fitting: Fitting) -> tuple[Any, np.ndarray]:
        lo, hi, width = step.args
        grid = np.arange(lo, hi + width / 2, width)
        if grid.min() < wavenumbers.min() - 1e-9 or grid.max() > wavenumbers.max() + 1e-9:
            raise DataError(f"preprocess: {step} reaches outside the data's "
                            f"{wavenumbers.min():g}–{wavenumbers.max():g} cm⁻¹")
        return _interp_matrix(wavenumbers, grid), grid

    def apply(self, step: Step, state: Any, y: np.ndarray, undo: Undo | None) -> np.ndarray:
        return (y @ state).astype(np.float32)


@register
class Baseline(StepKind):
    """Modified polynomial fit (Lieber & Mahadevan-Jansen 2003): the polynomial is refitted to the
    spectrum clipped at the last fit, `iterations` times, so peaks stop pulling it up."""

    name = "baseline"
    nargs = (0, 2)
    defaults = (2, 50)
    invertible = True

    def check_args(self, args: tuple[float, ...]) -> str | None:
        if why := _whole_numbers(args):
            return why
        degree, iterations = args
        if not 0 <= degree <= MAX_BASELINE_DEGREE:
            return f"degree must be from 0 to {MAX_BASELINE_DEGREE}"
        if not 1 <= iterations <= MAX_BASELINE_ITERATIONS:
            return f"iterations must be from 1 to {MAX_BASELINE_ITERATIONS}"
        return None

    def prepare(self, step: Step, wavenumbers: np.ndarray, fitting: Fitting) -> tuple[Any, np.ndarray]:
        degree = int(step.args[0])
        if degree >= len(wavenumbers):
            raise DataError(f"preprocess: {step} needs a degree below the {len(wavenumbers)} channels")
        x = (wavenumbers - wavenumbers.mean()) / (np.ptp(wavenumbers) or 1.0)
        v = np.vander(x, degree + 1)
        return v @ np.linalg.pinv(v), wavenumbers  # projection onto polynomials

    def apply(self, step: Step, state: Any, y: np.ndarray, undo: Undo | None) -> np.ndarray:
        base = y.astype(np.float64)
        for _ in range(int(step.args[1])):
            base = np.minimum(base, base @ state.T)  # clip peaks above the fitted polynomial
        base = (base @ state.T).astype(np.float32)
        if undo is not None:
            undo.append(("add", base))
        return y - base


@register
class Rubberband(StepKind):
    name = "rubberband"
    invertible = True

    def prepare(self, step: Step, wavenumbers: np.ndarray, fitting: Fitting) -> tuple[Any, np.ndarray]:
        return wavenumbers, wavenumbers

    def apply(self, step: Step, state: Any, y: np.ndarray, undo: Undo | None) -> np.ndarray:
        base = lower_hull(state, y).astype(np.float32)
        if undo is not None:
            undo.append(("add", base))
        return y - base


@register
class Savgol(StepKind):
    name = "savgol"
    nargs = (0, 3)
    defaults = (9, 2, 0)

    def keeps_absorbance(self, args: tuple[float, ...]) -> bool:
        return args[2] == 0  # smoothing keeps absorbance; a derivative does not

    def check_args(self, args: tuple[float, ...]) -> str | None:
        if why := _whole_numbers(args):
            return why
        window, order, deriv = args
        if window < 1 or window % 2 == 0:
            return "window must be an odd number ≥ 1"
        if not 0 <= order < window:
            return "polyorder must be ≥ 0 and smaller than the window"
        if not 0 <= deriv <= order:
            # a derivative of higher order than the fitted polynomial is zero everywhere
            return "deriv must be from 0 to polyorder (a higher derivative of the fitted polynomial is zero)"
        return None

    def prepare(self, step: Step, wavenumbers: np.ndarray, fitting: Fitting) -> tuple[Any, np.ndarray]:
        from scipy.signal import savgol_coeffs

        window, order, deriv = (int(a) for a in step.args)
        if window % 2 == 0 or window <= order or window > len(wavenumbers):
            raise DataError(f"preprocess: {step} needs an odd window > polyorder and ≤ {len(wavenumbers)} channels")
        delta = float(np.abs(np.diff(wavenumbers)).mean()) if len(wavenumbers) > 1 else 1.0
        return savgol_coeffs(window, order, deriv=deriv, delta=delta, use="conv"), wavenumbers

    def apply(self, step: Step, state: Any, y: np.ndarray, undo: Undo | None) -> np.ndarray:
        from scipy.ndimage import convolve1d

        return convolve1d(y, state, axis=1, mode="nearest").astype(np.float32)


class _Affine(StepKind):
    """Each spectrum y → (y − offset) / scale, with its own offset and scale (1 where the scale is ~0)."""

    invertible = True
    scales_each_spectrum = True

    def offset_and_scale(self, state: Any, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def apply(self, step: Step, state: Any, y: np.ndarray, undo: Undo | None) -> np.ndarray:
        offset, scale = self.offset_and_scale(state, y)
        scale = np.where(np.abs(scale) > 1e-12, scale, 1.0).astype(np.float32)
        if undo is not None:
            undo.append(("affine", np.concatenate([offset, scale], axis=1)))
        return (y - offset) / scale


@register
class Snv(_Affine):
    name = "snv"

    def keeps_absorbance(self, args: tuple[float, ...]) -> bool:
        return False  # centred: each spectrum's mean is subtracted

    def offset_and_scale(self, state: Any, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return y.mean(axis=1, keepdims=True), y.std(axis=1, keepdims=True)


@register
class Vector(_Affine):
    name = "vector"

    def offset_and_scale(self, state: Any, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros((len(y), 1), np.float32), np.linalg.norm(y, axis=1, keepdims=True)


@register
class Amide1(_Affine):
    name = "amide1"
    needs_axis = True

    def prepare(self, step: Step, wavenumbers: np.ndarray, fitting: Fitting) -> tuple[Any, np.ndarray]:
        band = np.flatnonzero((wavenumbers >= 1600) & (wavenumbers <= 1700))
        if band.size == 0:
            raise DataError("preprocess: amide1 needs the 1600–1700 cm⁻¹ range in the data")
        return band, wavenumbers

    def offset_and_scale(self, state: Any, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros((len(y), 1), np.float32), y[:, state].max(axis=1, keepdims=True)


@register
class Emsc(StepKind):
    """EMSC against the mean of the training spectra as they arrive at this step (`emsc.EMSC`);
    undone per spectrum by x = a·y + baseline + dispersion part (a = 1 where it was guarded)."""

    name = "emsc"
    nargs = (0, 2)
    defaults = (2, 0)
    invertible = True
    scales_each_spectrum = True
    fitted = True

    def prepare(self, step: Step, wavenumbers: np.ndarray, fitting: Fitting) -> tuple[Any, np.ndarray]:
        degree, dispersion = step.args
        if degree != int(degree) or not 0 <= degree <= EMSC_MAX_DEGREE or dispersion not in (0, 1):
            raise DataError(f"preprocess: {step} takes a whole polynomial degree 0–{EMSC_MAX_DEGREE} "
                            "and dispersion 0 or 1")
        if fitting.check_only:
            return None, wavenumbers
        if fitting.state is not None:
            emsc = EMSC.from_dict(fitting.state)
            if (emsc.wavenumbers.shape != wavenumbers.shape
                    or not np.allclose(emsc.wavenumbers, wavenumbers, rtol=0, atol=1e-6)):
                raise DataError(f"preprocess: the stored state of {step} is for another wavenumber axis")
            if (emsc.degree, emsc.dispersion) != (int(degree), bool(dispersion)):
                raise DataError(f"preprocess: the stored state of {step} is of "
                                f"emsc({emsc.degree},{int(emsc.dispersion)})")
            return emsc, wavenumbers
        if fitting.spectra is None:
            raise DataError(f"preprocess: {step} learns its reference spectrum from training spectra; "
                            "fit with data (the training tissue pixels)")
        total, n = np.zeros(len(wavenumbers)), 0
        for y in fitting.spectra:
            total += y.sum(axis=0, dtype=np.float64)
            n += len(y)
        if fitting.shared and dist_info()[1] > 1:  # every process's share: the mean of all of them
            pooled = all_reduce(np.concatenate([total, [n]]))
            total, n = pooled[:-1], int(pooled[-1])
        if n == 0:
            raise DataError(f"preprocess: no training spectra to fit the reference of {step}")
        return EMSC(total / n, wavenumbers, int(degree), bool(dispersion)), wavenumbers

    def apply(self, step: Step, state: Any, y: np.ndarray, undo: Undo | None) -> np.ndarray:
        if undo is None:
            return state.correct(y)[0]
        y, coef, additive = state.correct(y, return_additive=True)
        scale = state.scale(coef).astype(np.float32)
        undo += [("add", additive), ("affine", np.concatenate([np.zeros_like(scale), scale], axis=1))]
        return y

    def state_to_dict(self, state: Any) -> dict[str, Any] | None:
        return state.to_dict()


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
