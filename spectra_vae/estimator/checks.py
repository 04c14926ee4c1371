"""What `SpectraVAE` checks of its arguments before any work: where checkpoints go, whether the training
set and the model fit, whether prepared data were prepared by this model, latent points, score methods.

Each is one call from the estimator, so a refusal comes before training starts or a tensor is built,
as a `DataError` that says what is wrong.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from ..anomaly.monitor import parse_statistics
from ..core.errors import DataError
from ..core.files import check_output_dir
from ..io.dataset import SpectralDataset
from ..model.budget import check_training_memory

MIN_TRAINING_PIXELS = 2  # the residual model needs two training tissue pixels; a normaliser needs a spread


def check_checkpoint_dir(checkpoint_dir: str | os.PathLike | None) -> None:
    """A `checkpoint_dir` that is a file, lies below one or cannot be written is refused before training."""
    if checkpoint_dir is not None:
        if not isinstance(checkpoint_dir, (str, os.PathLike)):
            raise DataError(f"checkpoint_dir: expected a folder, got {checkpoint_dir!r}")
        check_output_dir(checkpoint_dir, "checkpoint_dir")


def check_training_set(train: SpectralDataset, config: Any, batch_size: int, device: torch.device) -> None:
    """Enough training pixels to learn from, and a model of `config` that fits in `device`'s memory."""
    if len(train) < MIN_TRAINING_PIXELS:
        raise DataError(f"{train.source or 'data'}: {len(train)} training pixel(s) (n_samples = {len(train)}); "
                        f"training needs at least {MIN_TRAINING_PIXELS} (and the anomaly model two tissue pixels)")
    check_training_memory(config, batch_size, device)


def check_component_start(spectra: Any, architecture: str, latent_dim: int, n_channels: int,
                          wavenumbers: np.ndarray | None = None) -> np.ndarray:
    """Starting component spectra for the unmixing decoder, `(K, n_channels)` on the model's axis (after
    preprocessing), finite, non-negative, each with some absorbance; `DataError` saying what is wrong.

    A `pandas.DataFrame` whose columns are wavenumbers (cm⁻¹), one row per component, is interpolated
    onto the model's axis `wavenumbers` (which its columns must cover; None: the data have no axis, and a
    table is refused); anything else must already be on that axis."""
    what = "component_start"
    if architecture != "unmixing":
        raise DataError(f"{what}: only the unmixing architecture has component spectra; this model's is "
                        f"{architecture!r}")
    columns = getattr(spectra, "columns", None)
    if columns is not None:
        if wavenumbers is None:
            raise DataError(f"{what}: the data have no wavenumber axis, so a table's wavenumber columns cannot be "
                            f"placed on it; give an array of the model's {n_channels} channels")
        spectra = _onto_axis(spectra, columns, np.asarray(wavenumbers, dtype=np.float64))
    try:
        s = np.array(spectra, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{what}: expected an array of spectra (K, n_channels), got {type(spectra).__name__}") from None
    if s.ndim != 2 or s.shape != (latent_dim, n_channels):
        raise DataError(f"{what}: expected ({latent_dim}, {n_channels}) — one spectrum per component (latent_dim = "
                        f"{latent_dim}) on the model's axis of {n_channels} channels, after preprocessing — got "
                        f"{s.shape}")
    if not np.isfinite(s).all():
        raise DataError(f"{what}: holds NaN or inf values")
    if (s < 0).any():
        raise DataError(f"{what}: component spectra are absorbance, non-negative; {int((s < 0).sum())} values are "
                        "negative (clip them, or subtract a baseline first)")
    empty = np.flatnonzero(s.max(axis=1) <= 0)
    if empty.size:
        raise DataError(f"{what}: spectrum {int(empty[0])} is zero everywhere")
    return s


def _onto_axis(frame: Any, columns: Any, axis: np.ndarray) -> np.ndarray:
    """A table of spectra with wavenumber columns, interpolated linearly onto `axis`."""
    try:
        own = np.array([float(c) for c in columns])
    except (TypeError, ValueError):
        raise DataError("component_start: a table's columns must be wavenumbers (cm⁻¹); got "
                        f"{[str(c) for c in list(columns)[:3]]}…") from None
    if own.size < 2 or not np.isfinite(own).all():
        raise DataError("component_start: a table needs at least two finite wavenumber columns")
    if axis.min() < own.min() or axis.max() > own.max():
        raise DataError(f"component_start: the spectra cover {own.min():g}–{own.max():g} cm⁻¹ and the model's axis "
                        f"{axis.min():g}–{axis.max():g} cm⁻¹; they must cover it (cut the data to their range)")
    order = np.argsort(own)
    values = np.asarray(frame, dtype=np.float64)[:, order]
    return np.stack([np.interp(axis, own[order], row) for row in values])


def same_pipeline(a: Any, b: Any) -> bool:
    """Whether two fitted preprocessing pipelines are the same: the same text, input axis and learned state."""
    return a is b or _same(a.to_dict(), b.to_dict())


def check_prepared(data: SpectralDataset, preprocessor: Any) -> None:
    """A prepared view (a dataset that carries its `Preprocessor`) must have been prepared by this model's
    own pipeline: another model's processed spectra are not this model's input."""
    theirs = data.preprocessor
    if theirs is None or same_pipeline(theirs, preprocessor):
        return
    raise DataError(f"{data.source or 'data'}: these spectra were prepared by another preprocessing "
                    f"({theirs.spec or 'none'!r}), not this model's ({preprocessor.spec or 'none'!r}); give the "
                    "raw scans (dataset.raw()) and the model prepares them itself")


def latent_points(z: Any, latent_dim: int) -> np.ndarray:
    """Latent points `(n, latent_dim)` (or one, `(latent_dim,)`) as float32; `DataError` for another shape,
    non-numbers or non-finite values."""
    try:
        arr = np.asarray(z)
    except (TypeError, ValueError) as exc:
        raise DataError(f"decode: latent points must be an array of numbers ({exc})") from None
    if arr.dtype.kind not in "fiu" or arr.ndim not in (1, 2) or arr.shape[-1] != latent_dim:
        raise DataError(f"decode: expected latent points of shape (n, {latent_dim}), this model's latent_dim, "
                        f"got an array of shape {arr.shape} and dtype {arr.dtype}")
    if not np.isfinite(arr).all():
        raise DataError("decode: latent points must be finite (no NaN or inf)")
    return arr.astype(np.float32)


def check_anomaly_method(method: Any, names: tuple[str, ...]) -> None:
    """An `anomaly_score` method: one of `names`, or statistics joined by '+' (`'t2+q'`, `'fisher:t2+q'`)."""
    if isinstance(method, str) and method in names:
        return
    if isinstance(method, str) and "+" in method:
        try:
            parse_statistics(method)
            return
        except ValueError as exc:
            raise DataError(f"anomaly_score method {method!r}: {exc}") from None
    raise DataError(f"anomaly_score: method must be one of {names} or statistics joined by '+' such as 't2+q'; "
                    f"got {method!r}")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (np.ndarray, torch.Tensor)) or isinstance(b, (np.ndarray, torch.Tensor)):
        x, y = np.asarray(a), np.asarray(b)
        return x.shape == y.shape and bool(np.array_equal(x, y, equal_nan=x.dtype.kind == "f"))
    return bool(a == b) or (isinstance(a, float) and isinstance(b, float) and a != a and b != b)
