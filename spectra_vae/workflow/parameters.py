"""The notebooks' parameters: the model's table plus the notebooks' own, and their checks.

Every notebook parameter is declared once: the model's in `spectra_vae.estimator.params.PARAMETERS`,
the notebooks' own (paths, split names, figure sizes) in `NOTEBOOK_PARAMETERS` here. A notebook's
first cell checks its parameters with `check_parameters`; the pipeline applies the same checks to
`-p` values before any notebook runs; `train`'s options and `pipeline --help` are written from the
same table.
"""

from __future__ import annotations

from typing import Any

from ..core.errors import DataError
from ..core.params import AnyOf, Flag, Number, Param, Text, Whole, table
from ..estimator.params import PARAMETERS
from .paths import DEMO_DATA

SPLIT_PARAMETERS = ("train_split", "val_split", "test_split", "abnormal_split")  # a training run's splits

NOTEBOOK_PARAMETERS: dict[str, Param] = table([
    Param("data_dir", DEMO_DATA, Text(DEMO_DATA),
          f"folder of scans; {DEMO_DATA}: the embedded demo data, generated on first use"),
    Param("run_dir", "", Text(), "run folder; empty: reports/demo for the demo data, else a new folder under "
          "reports/runs"),
    Param("checkpoint", "", Text(), "model file; empty: run_dir/model/final.pt as written by 02_train"),
    Param("overwrite", False, Flag(), "replace the run already in run_dir"),
    Param("resume", False, Flag(), "continue the run in run_dir from its last checkpoint to `epochs`, as recorded"),
    Param("train_split", "normal_train", Text(), "split of data_splits.json to train on (no file: a seeded "
          "80/10/10 split by scan)"),
    Param("val_split", "normal_val", Text(), "validation split, for early stopping and calibration; '' for none"),
    Param("test_split", "normal_test", Text(), "held-out split of normal scans"),
    Param("abnormal_split", "abnormal", Text(), "split of scans with anomalies, recorded for notebook 05; '' "
          "for none"),
    Param("component_start", "", Text(), "unmixing: a file of reference spectra its components start from, "
          "one per component (.npy on the model's axis, or a table whose header holds wavenumbers); empty: "
          "generic bands"),
    Param("normal_split", "", Text(), "split of normal scans", cli=False),
    Param("threshold_split", "", Text(), "split of normal scans the threshold is calibrated on", cli=False),
    Param("normal_labels", "", Text("background,stroma,epithelium"),
          "label names that count as normal, comma-separated; empty: background, stroma and epithelium"),
    Param("split", "", Text("normal_corr_train,abnormal_corr"), "splits notebook 01 explores, comma-separated; "
          "empty: all scans (in a pipeline run: the run's splits)", cli=False),
    Param("scattered_dir", "auto", Text(), "the same scans uncorrected for scattering, shown beside; auto: the "
          "demo's twin; empty: none", cli=False),
    Param("scattered_split", "", Text(), "the uncorrected twins' splits when both variants share a folder, in "
          "split's order (in a pipeline run: the run's splits named with uncorr for corr, where the folder has them)",
          cli=False),
    Param("emsc_degree", 2, Whole(0, 10), "polynomial degree of EMSC's baseline in notebook 01's comparison",
          cli=False),
    Param("max_pixels", 20000, Whole(1), "pixels per scan used for the mean spectra", cli=False),
    Param("max_points", 3000, Whole(10), "pixels used for t-SNE", cli=False),
    Param("noise_level", 0.0, Number(0.0), "known noise s.d. (absorbance) marked on the error histogram; 0: "
          "unknown", cli=False),
    Param("threshold_quantile", 0.99, Number(0.0, 1.0, strict=True), "quantile of normal scores used as a "
          "threshold", cli=False),
    Param("false_positive_rate", 0.01, Number(0.0, 0.5, strict=True),
          "share of a new normal scan's tissue the threshold flags, on average (SpectraVAE.calibrate)", cli=False),
    Param("smoothing", 1, Whole(1, 15, odd=True), "score each tissue pixel by the mean over its k×k tissue window "
          "(tumour is a region), the threshold calibrated on that score; 1: each pixel alone", cli=False),
    Param("n_bootstrap", 200, Whole(0), "resamples of whole scans for the AUROC intervals; 0: none", cli=False),
])

ALL_PARAMETERS: dict[str, Param] = {**PARAMETERS, **NOTEBOOK_PARAMETERS}
# declared as text ("auto") but also a whole number: a `-p` value is read by the table, so the notebook gets 50,
# not "50"
TEXT_OR_NUMBER = tuple(name for name, p in ALL_PARAMETERS.items() if isinstance(p.constraint, AnyOf)
                       and any(isinstance(c, Whole) for c in p.constraint.choices))


def check_parameter(name: str, value: Any) -> Any:
    """One notebook parameter checked by name (type, sign, range, choices; text as typed is read as its
    type); `DataError` "parameter NAME: why"."""
    p = ALL_PARAMETERS.get(name)
    return value if p is None else p.check(value, text=True)


def check_parameters(values: dict[str, Any]) -> dict[str, Any]:
    """Check notebook parameters by name; the checked values (e.g. "221,110" → (221, 110))."""
    return {name: check_parameter(name, value) for name, value in values.items()}


def parse_value(text: str) -> Any:
    """A `-p name value` string as papermill reads it: int, float, bool or None where it looks like one."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


_DECLARED = {"int": Whole(), "float": Number(), "bool": Flag()}


def coerce_parameter(name: str, value: Any, type_name: str, where: str) -> Any:
    """A `-p` value as the type its parameters cell declares (`epochs: str = "auto"`); text from the
    command line is parsed, other values must already have that type. Parameters of the table that
    take text or a number (`epochs`) are read by their own constraint. Undeclared types pass."""
    p = ALL_PARAMETERS.get(name)
    if type_name == "str" and p is not None and name in TEXT_OR_NUMBER:
        return p.check(value, text=True)  # "50" → 50 for epochs, as the notebook's own check would read it
    if type_name in _DECLARED:
        return Param(name, None, _DECLARED[type_name], "").check(value, text=True)
    if type_name == "str":
        if not isinstance(value, str):
            raise DataError(f"parameter {name}: {where} declares it as text (str), got {value!r}")
        return value
    return parse_value(value) if isinstance(value, str) else value  # no declared type: as papermill reads it

