"""Parameter constraints: each parameter's type, range and help text, declared once.

In the spirit of scikit-learn's `_parameter_constraints`: a `Param` names a parameter, its default,
a `Constraint` and a line of help. One table of them (`spectra_vae.estimator.params.PARAMETERS`,
extended by the notebooks' own in `spectra_vae.workflow.parameters`) serves the estimator's checks,
the notebooks' parameters cells, the pipeline's `-p` checks, the command line's options and
`--help`, and the docs.

A constraint checks a value as Python gives it (`check`) or as text typed on a command line or
given to papermill (`check(value, text=True)`: "50" is read as 50 where a whole number is
expected). A refusal is a `ParamError` whose message reads after "parameter NAME: ".
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import DataError


class ParamError(ValueError):
    """A value a constraint refuses; the message says why ("must be ≥ 1, got 0")."""


def _is_whole(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


class Constraint:
    """What values a parameter takes; `text` says so in words ("a whole number ≥ 1")."""

    text = "a value"

    def check(self, value: Any, text: bool = False) -> Any:
        """The value, normalised (text read as its type when `text`); `ParamError` when refused."""
        raise NotImplementedError

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Whole(Constraint):
    """A whole number in [minimum, maximum] (odd, with `odd`)."""

    minimum: int | None = None
    maximum: int | None = None
    odd: bool = False

    @property
    def text(self) -> str:  # type: ignore[override]
        return ("an odd whole number" if self.odd else "a whole number") + _range_text(self.minimum, self.maximum)

    def check(self, value: Any, text: bool = False) -> int:
        if not _is_whole(value):
            if text and isinstance(value, str) and re.fullmatch(r"\s*[-+]?[0-9]+\s*", value):
                value = int(value)
            elif text and isinstance(value, (float, np.floating)) and float(value).is_integer():
                value = int(value)
            else:
                raise ParamError(f"expected a whole number, got {value!r}")
        if self.minimum is not None and value < self.minimum:
            raise ParamError(f"must be ≥ {self.minimum}, got {value}")
        if self.maximum is not None and value > self.maximum:
            raise ParamError(f"must be ≤ {self.maximum}, got {value}")
        if self.odd and value % 2 == 0:
            raise ParamError(f"must be odd, got {value}")
        return int(value)


@dataclass(frozen=True)
class Number(Constraint):
    """A finite number ≥ `minimum` (> with `strict`) and ≤ `maximum` (< with `strict`)."""

    minimum: float | None = None
    maximum: float | None = None
    strict: bool = False

    @property
    def text(self) -> str:  # type: ignore[override]
        parts = []
        if self.minimum is not None:
            parts.append(f"{'>' if self.strict else '≥'} {self.minimum:g}")
        if self.maximum is not None:
            parts.append(f"{'<' if self.strict else '≤'} {self.maximum:g}")
        return "a finite number" + (" " + " and ".join(parts) if parts else "")

    def check(self, value: Any, text: bool = False) -> float:
        if not _is_number(value):
            if not (text and isinstance(value, str)):
                raise ParamError(f"expected a number, got {value!r}")
            try:
                value = float(value)
            except ValueError:
                raise ParamError(f"expected a number, got {value!r}") from None
        out = float(value)
        if not math.isfinite(out):
            raise ParamError(f"must be a finite number, got {value!r}")
        lo, hi, strict = self.minimum, self.maximum, self.strict
        if lo is not None and (out <= lo if strict else out < lo):
            raise ParamError(f"must be {'>' if strict else '≥'} {lo:g}, got {value!r}")
        if hi is not None and (out >= hi if strict else out > hi):
            raise ParamError(f"must be {'<' if strict else '≤'} {hi:g}, got {value!r}")
        return out


@dataclass(frozen=True)
class Flag(Constraint):
    """True or False (text: "true"/"false", any case)."""

    text = "True or False"

    def check(self, value: Any, text: bool = False) -> bool:
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        if text and isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise ParamError(f"expected True or False, got {value!r}")


@dataclass(frozen=True)
class Options(Constraint):
    """One of a fixed set of words."""

    options: tuple[str, ...]

    @property
    def text(self) -> str:  # type: ignore[override]
        return "one of " + ", ".join(repr(o) for o in self.options)

    def check(self, value: Any, text: bool = False) -> str:
        if not isinstance(value, str) or value not in self.options:
            raise ParamError(f"must be one of {self.options}, got {value!r}")
        return value


@dataclass(frozen=True)
class Text(Constraint):
    """Any text; `example` shows what is meant, and `validate` (text → None or DataError) checks it further."""

    example: str = ""
    validate: Callable[[str], Any] | None = None

    @property
    def text(self) -> str:  # type: ignore[override]
        return f"text such as {self.example!r}" if self.example else "text"

    def check(self, value: Any, text: bool = False) -> str:
        if not isinstance(value, str):
            raise ParamError(f"expected text, got {value!r}")
        if self.validate is not None:
            try:
                self.validate(value)
            except DataError as exc:
                raise ParamError(str(exc)) from None
        return value


@dataclass(frozen=True)
class Sizes(Constraint):
    """Layer sizes: whole numbers in [1, maximum], at most `max_layers` of them ("221,110" as text)."""

    maximum: int = 1 << 16
    max_layers: int = 16

    @property
    def text(self) -> str:  # type: ignore[override]
        return f"a sequence of up to {self.max_layers} whole numbers from 1 to {self.maximum}, such as (221, 110)"

    def check(self, value: Any, text: bool = False) -> tuple[int, ...]:
        if _is_whole(value) and text:
            value = [value]
        if isinstance(value, str) and text:
            value = [p for p in value.split(",") if p.strip()]
        if not isinstance(value, (list, tuple)) or not value:
            raise ParamError(f"expected sizes such as '221,110', got {value!r}")
        if len(value) > self.max_layers:
            raise ParamError(f"must be at most {self.max_layers} layers, got {len(value)}")
        size = Whole(1, self.maximum)
        return tuple(size.check(v.strip() if isinstance(v, str) else v, text) for v in value)


@dataclass(frozen=True)
class AnyOf(Constraint):
    """The first of several constraints that takes the value (e.g. 'auto' or a whole number)."""

    choices: tuple[Constraint, ...]

    @property
    def text(self) -> str:  # type: ignore[override]
        return " or ".join(c.text if not isinstance(c, Options) else " or ".join(repr(o) for o in c.options)
                           for c in self.choices)

    def check(self, value: Any, text: bool = False) -> Any:
        if text and isinstance(value, str):
            value = value.strip()
            low = value.lower()
            for c in self.choices:  # "Auto", "NONE" as typed
                if isinstance(c, Options) and low in c.options:
                    value = low
        for c in self.choices:
            try:
                return c.check(value, text)
            except ParamError:
                continue
        raise ParamError(f"expected {self.text}, got {value!r}")


@dataclass(frozen=True)
class Nothing(Constraint):
    """None (text: "none" or "null")."""

    text = "None"

    def check(self, value: Any, text: bool = False) -> None:
        if value is None or (text and isinstance(value, str) and value.strip().lower() in ("none", "null")):
            return None
        raise ParamError(f"expected None, got {value!r}")


@dataclass(frozen=True)
class Param:
    """One parameter: its name, default, constraint, help text, and the command-line flag it has."""

    name: str
    default: Any
    constraint: Constraint
    help: str
    cli: bool = True  # an option of `train` (and of the notebooks, as -p NAME)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def check(self, value: Any, text: bool = False) -> Any:
        """The checked value; `DataError` "parameter NAME: why" when refused."""
        try:
            return self.constraint.check(value, text)
        except ParamError as exc:
            raise DataError(f"parameter {self.name}: {exc}") from None

    def describe(self) -> str:
        """The help line with what it takes and its default, for `--help` and the docs."""
        default = ",".join(map(str, self.default)) if isinstance(self.default, tuple) else self.default
        return f"{self.help} ({self.constraint.text}; default {default!r})"


def table(params: Sequence[Param]) -> dict[str, Param]:
    """A table by name; a name declared twice is a mistake in the package."""
    out: dict[str, Param] = {}
    for p in params:
        if p.name in out:
            raise ValueError(f"parameter {p.name} is declared twice")
        out[p.name] = p
    return out


def _range_text(lo: int | None, hi: int | None) -> str:
    if lo is not None and hi is not None:
        return f" from {lo} to {hi}"
    if lo is not None:
        return f" ≥ {lo}"
    if hi is not None:
        return f" ≤ {hi}"
    return ""
