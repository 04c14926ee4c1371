"""Spectral preprocessing: a fitted pipeline of standard steps, written as text and stored with the model.

A pipeline is written `"cut(950,1800)|snv"`: steps separated by `|`, arguments in parentheses.
The steps (`cut`, `resample`, `baseline`, `rubberband`, `savgol`, `snv`, `vector`, `amide1`,
`emsc`) and their arguments are in `spectra_vae.preprocess.steps`, one class each, registered by name.

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
from .steps import REGISTRY, Fitting, Step, Undo

__all__ = ["FITTED_STEPS", "INVERTIBLE_STEPS", "NEEDS_AXIS", "SCALING_STEPS", "STEPS", "Preprocessor", "Step",
           "parse"]

# The registry's names, in its order, and those of each kind (for membership: a list of steps to draw from).
STEPS = tuple(REGISTRY)
FITTED_STEPS = tuple(name for name, kind in REGISTRY.items() if kind.fitted)
INVERTIBLE_STEPS = tuple(name for name, kind in REGISTRY.items() if kind.invertible)
NEEDS_AXIS = tuple(name for name, kind in REGISTRY.items() if kind.needs_axis)  # arguments in cm⁻¹
SCALING_STEPS = tuple(name for name, kind in REGISTRY.items() if kind.scales_each_spectrum)


def parse(spec: str) -> list[Step]:
    """`"cut(950,1800)|snv"` → [Step('cut', (950, 1800)), Step('snv')]; a clear error otherwise."""
    if not isinstance(spec, str):
        raise DataError(f"preprocess: expected a pipeline written as text, such as 'cut(950,1800)|snv'; got {spec!r}")
    steps = []
    for part in [p.strip() for p in spec.split("|") if p.strip()]:
        m = re.fullmatch(r"([a-z0-9_]+)\s*(?:\((.*)\))?", part.lower())
        if not m or m.group(1) not in REGISTRY:
            raise DataError(f"preprocess: unknown step {part!r}; steps are {', '.join(REGISTRY)}")
        name = m.group(1)
        kind = REGISTRY[name]
        try:
            args = tuple(float(a) for a in m.group(2).split(",") if a.strip()) if m.group(2) else ()
        except ValueError:
            raise DataError(f"preprocess: step {part!r} takes numbers as arguments") from None
        lo, hi = kind.nargs
        if not lo <= len(args) <= hi:
            raise DataError(f"preprocess: step {name} takes {lo}–{hi} arguments, got {len(args)} in {part!r}")
        args = args + kind.defaults[len(args):]
        # Signs and ranges, so no step silently returns nonsense (zeros, a huge grid).
        why = "arguments must be finite numbers" if not all(np.isfinite(args)) else kind.check_args(args)
        if why:
            raise DataError(f"preprocess: {part!r}: {why}")
        steps.append(Step(name, args))
    return steps


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
        return all(REGISTRY[s.name].invertible for s in self.steps)

    @property
    def scales_each_spectrum(self) -> bool:
        """Whether a step divides each spectrum by a factor of its own (so its noise, too)."""
        return any(REGISTRY[s.name].scales_each_spectrum for s in self.steps)

    @property
    def keeps_absorbance(self) -> bool:
        """Whether every step keeps spectra absorbance-like (no derivative, no centring such as snv)."""
        return all(REGISTRY[s.name].keeps_absorbance(s.args) for s in self.steps)

    @property
    def needs_data(self) -> bool:
        """Whether `fit` needs training spectra (a step learns from them), not only the axis."""
        return any(REGISTRY[s.name].fitted for s in self.steps)

    def fit(self, wavenumbers: np.ndarray, data: Any = None, known: bool = True, shared: bool = False) -> Preprocessor:
        """Prepare every step for spectra on `wavenumbers`, learning fitted steps' state from `data`.

        `data`: the training spectra a fitted step learns from, on `wavenumbers`: an `(n, C)` array
        or a dataset (anything with `iter_chunks()`, read raw and streamed); for `emsc`, the
        training tissue pixels. Pipelines without a fitted step ignore it. `known=False` says the
        axis is only channel numbers (the data came without wavenumbers): steps whose arguments
        are in cm⁻¹ are then refused instead of cutting at channel 950. `shared`: `data` is this process's
        share of a distributed run's training spectra, and fitted steps pool over the processes (every
        process must call it).
        """
        return self._build(wavenumbers, data=data, known=known, shared=shared)

    def check(self, wavenumbers: np.ndarray, known: bool = True) -> np.ndarray:
        """Every check `fit` makes of the steps against the axis (a cut outside the data, cm⁻¹ on
        bare scans, a window longer than the spectrum, a bad emsc argument), without learning from
        training spectra: for a run to refuse bad settings before it reads any data. Returns the
        axis the pipeline's output will have."""
        return Preprocessor(self.spec)._build(wavenumbers, known=known, check_only=True).output_wavenumbers_

    def _build(self, wavenumbers: np.ndarray, data: Any = None,
               states: list[dict[str, Any] | None] | None = None, known: bool = True,
               check_only: bool = False, shared: bool = False) -> Preprocessor:
        wn = np.asarray(wavenumbers, dtype=float)
        needs = [str(s) for s in self.steps if REGISTRY[s.name].needs_axis]
        if not known and needs:
            raise DataError(f"preprocess: {', '.join(needs)} needs the data's wavenumbers (cm⁻¹), and the data "
                            "have none, only channel numbers; give a wavenumbers.npy beside the scans or "
                            "wavenumbers= to load_dataset")
        self.input_wavenumbers_ = wn
        self._plan: list[tuple[Step, Any]] = []
        for k, s in enumerate(self.steps):
            fitting = Fitting(state=states[k] if states is not None else None,
                              spectra=None if data is None else self._arriving(s, data, list(self._plan)),
                              check_only=check_only, shared=shared)
            state, wn = REGISTRY[s.name].prepare(s, wn, fitting)
            self._plan.append((s, state))
        self.output_wavenumbers_ = wn
        return self

    def _arriving(self, s: Step, data: Any, plan: list[tuple[Step, Any]]) -> Iterator[np.ndarray]:
        """The training spectra `data`, in chunks, through `plan` (the steps before `s`): what `s` learns from."""
        for chunk in _chunks(data):
            if chunk.shape[-1] != len(self.input_wavenumbers_):
                raise DataError(f"preprocess: {s} was given training spectra of {chunk.shape[-1]} channels for an "
                                f"axis of {len(self.input_wavenumbers_)}")
            yield self._apply(np.asarray(chunk, dtype=np.float32), plan)

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
        undo: Undo = []
        y = self._apply(np.asarray(x, dtype=np.float32), self._plan, undo if return_inverse else None)
        return (y, undo) if return_inverse else y

    @staticmethod
    def _apply(y: np.ndarray, plan: list[tuple[Step, Any]], undo: Undo | None = None) -> np.ndarray:
        """`y` through the steps of `plan`; what undoes each step is appended to `undo` when given."""
        for s, p in plan:
            y = REGISTRY[s.name].apply(s, p, y, undo)
        return y

    def inverse_transform(self, y: np.ndarray, undo: list[tuple[str, np.ndarray]]) -> np.ndarray:
        """Map processed spectra back to original units with what `transform(..., return_inverse=True)` gave."""
        if not self.invertible:
            fixed = [name for name, kind in REGISTRY.items() if not kind.invertible]
            listed = " and ".join([", ".join(fixed[:-1]), fixed[-1]]) if len(fixed) > 1 else fixed[0]
            raise DataError(f"preprocess {self.spec!r} cannot be undone ({listed} are not invertible)")
        out = np.asarray(y, dtype=np.float32)
        for kind, v in reversed(undo):
            out = out + v if kind == "add" else out * v[:, 1:2] + v[:, 0:1]
        return out

    # -- fitted state as plain content -----------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The fitted pipeline as plain content: its text, input axis and each step's learned state
        (None for steps that learn nothing). `from_dict` rebuilds it without data."""
        return {"spec": self.spec, "input_wavenumbers": [float(v) for v in self.input_wavenumbers_],
                "states": [REGISTRY[s.name].state_to_dict(p) for s, p in self._plan]}

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
