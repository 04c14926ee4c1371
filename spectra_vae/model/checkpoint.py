"""The checkpoint file: written atomically, read with `weights_only=True`, versioned.

A checkpoint is a dict of tensors and plain containers. Version 2 has required keys (the model)
and optional sections. How the format grows without breaking files already written:

- A new feature that keeps state in the checkpoint (an anomaly calibration, a fitted
  preprocessing state, a tissue rule, ...) adds an optional top-level key: it registers the key
  and the value a file without it stands for in `OPTIONAL_SECTIONS`, writes it in
  `SpectraVAE._payload` and reads it with `section(payload, key)`. Older files then load with
  that default, and a reader that does not know a key ignores it. No version bump is needed.
- `CHECKPOINT_VERSION` is bumped only when a key changes meaning; `_UPGRADES` then converts the older
  layout on reading, or `load_checkpoint` refuses it with a message that says how to convert.
"""

from __future__ import annotations

import copy
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.errors import DataError
from ..core.files import atomic_file
from ..preprocess.normalise import Normaliser
from ..preprocess.pipeline import Preprocessor
from ..preprocess.tissue import TissueRule
from . import networks
from .networks import VAE, ModelConfig
from .schedule import WARMUP_STEPS, TrainState

CHECKPOINT_FORMAT = "spectra_vae.checkpoint"
CHECKPOINT_VERSION = 2
REQUIRED = ("config", "model_config", "state_dict", "normaliser", "wavenumbers", "history")

# Optional sections and what a file without one stands for.
OPTIONAL_SECTIONS: dict[str, Any] = {
    "training": None,  # what `resume` needs: weights, optimiser, epoch and generators of one moment
    "wavenumbers_known": True,
    "best_epoch": 0,
    "train_source": "",
    "tissue_rule": None,  # the model's tissue rule (spectra_vae.tissue); None: saved before rules were stored
    "preprocessing": None,  # fitted preprocessing state (e.g. emsc's reference); None: a stateless pipeline
    "monitor": None,  # the residual model for anomaly scores (spectra_vae.monitor); None: call fit_anomaly_model
    "training_digest": "",  # fingerprint of the training pixels, so baselines are checked to use the same ones
}


def section(payload: dict[str, Any], key: str) -> Any:
    """An optional section of a loaded checkpoint, or its registered default when the file lacks it."""
    if key not in OPTIONAL_SECTIONS:
        raise KeyError(f"{key!r} is not a registered checkpoint section; add it to OPTIONAL_SECTIONS")
    return payload.get(key, OPTIONAL_SECTIONS[key])


def _upgrade_v1(payload: dict[str, Any]) -> dict[str, Any]:
    """Version 1 → 2. Version 1 kept one set of weights: in `last.pt` the training moment's, but in
    `final.pt` the best epoch's beside the last epoch's optimiser. Its generator states were
    one process's, restored only on CPU; it had no position within an epoch."""
    training = payload.get("training")
    if training:
        same_moment = training.get("best_state_dict") is None or int(training["best_epoch"]) == int(training["epoch"])
        weights_are_best = training.get("best_state_dict") is not None and all(
            torch.equal(v, training["best_state_dict"][k]) for k, v in payload["state_dict"].items())
        training = {**training, "state_dict": payload["state_dict"],
                    "rng": [training.get("rng", {})], "world_size": 1, "step": None,
                    "exact": same_moment or not weights_are_best}
        payload = {**payload, "training": training}
    return {**payload, "version": 2}


_UPGRADES = {1: _upgrade_v1}


def save_checkpoint(payload: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write atomically (`spectra_vae.core.files.atomic_file`): a crash or a full disk leaves the
    previous file there unchanged, never half a checkpoint."""
    path = Path(path)
    try:
        with atomic_file(path) as f:
            torch.save(payload, f)
    except OSError as exc:
        raise OSError(exc.errno, f"could not write checkpoint {path} ({exc.strerror}); "
                      "the previous file there is unchanged") from exc
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with `weights_only=True` (tensors and plain containers, never pickled code),
    upgraded to the current `CHECKPOINT_VERSION`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ... here
        raise DataError(f"{path}: not a loadable spectra_vae checkpoint (refused or unreadable: "
                        f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise DataError(f"{path}: not a spectra_vae checkpoint")
    version = payload.get("version")
    if not isinstance(version, int) or version < 1:
        raise DataError(f"{path}: checkpoint format version {version!r} is not one spectra_vae wrote")
    if version > CHECKPOINT_VERSION:
        raise DataError(f"{path}: written by a newer spectra_vae (checkpoint format {version}; this one reads "
                        f"up to {CHECKPOINT_VERSION}); upgrade spectra_vae to read it")
    while version < CHECKPOINT_VERSION:
        if version not in _UPGRADES:
            raise DataError(f"{path}: checkpoint format {version} can no longer be read; load it with the "
                            f"spectra_vae that wrote it and save it again with this one")
        try:
            payload = _UPGRADES[version](payload)
        except (KeyError, TypeError, AttributeError, ValueError, RuntimeError) as exc:
            raise DataError(f"{path}: checkpoint is incomplete: a format-{version} file that cannot be read "
                            f"as format {version + 1} ({type(exc).__name__}: {exc})") from None
        version = payload["version"]
    missing = [k for k in REQUIRED if k not in payload]
    if missing:
        raise DataError(f"{path}: checkpoint is incomplete: {missing[0]!r} is missing")
    return payload


def training_section(model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: TrainState,
                     batches_per_epoch: int) -> dict[str, Any]:
    """What `resume` needs, all of one moment: the weights being trained (not the best ones), the
    optimiser, the position (epoch, batch within it, step), early-stopping and recovery state, and
    every process's generator states (gathered by the training loop before each checkpoint)."""
    return {
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "noise_initialised": bool(getattr(model, "noise_initialised", True)),
        "optimizer": copy.deepcopy(optimizer.state_dict()),
        "epoch": state.epoch, "batch": state.batch, "step": state.step, "batches_per_epoch": batches_per_epoch,
        "decay_steps": state.decay_steps, "anneal_start": state.anneal_start, "anneal_steps": state.anneal_steps,
        "best_epoch": state.best_epoch, "best_loss": state.best_loss, "bad_epochs": state.bad_epochs,
        "monitor": "rmse",  # best_loss is an RMSE (validation, else training); before: the validation loss
        "stopped_early": state.stopped_early,
        "best_state_dict": None if state.best_state is None
        else {k: v.detach().cpu().clone() for k, v in state.best_state.items()},
        "lr_scale": state.lr_scale, "grad_norm": state.grad_norm, "events": copy.deepcopy(state.events),
        "epoch_sums": state.epoch_sums, "epoch_seconds": state.epoch_seconds,
        "rng": [dict(r) for r in state.rng], "world_size": max(1, len(state.rng)), "exact": True,
    }


def restore_training(training: dict[str, Any], model: VAE, optimizer: torch.optim.Optimizer,
                     history: list[dict[str, float]], device: torch.device) -> TrainState:
    """Put the weights and optimiser back as a `training` section recorded them; the loop state.
    (Generator states are per process: the caller restores its own from `training["rng"]`.)"""
    model.load_state_dict(training["state_dict"])
    model.noise_initialised = bool(training.get("noise_initialised", True))
    optimizer.load_state_dict(training["optimizer"])
    best = training.get("best_state_dict")
    step = training.get("step")
    best_loss = float(training["best_loss"])
    if training.get("monitor") != "rmse":  # written when the best epoch was the lowest validation loss
        row = next((r for r in history if r.get("epoch") == training["best_epoch"]), {})
        best_loss = float(row.get("val_rmse", row.get("train_rmse", math.inf)))
    return TrainState(
        epoch=int(training["epoch"]), batch=int(training.get("batch", 0)),
        step=WARMUP_STEPS if step is None else int(step),  # version 1 had no warm-up
        decay_steps=training.get("decay_steps"),  # version 1: none (a constant rate)
        best_epoch=int(training["best_epoch"]), best_loss=best_loss,
        bad_epochs=int(training["bad_epochs"]), stopped_early=bool(training["stopped_early"]),
        history=history, best_state=None if best is None else {k: v.to(device) for k, v in best.items()},
        lr_scale=float(training.get("lr_scale", 1.0)), grad_norm=float(training.get("grad_norm", 0.0)),
        events=list(training.get("events", [])), epoch_sums=training.get("epoch_sums"),
        epoch_seconds=float(training.get("epoch_seconds", 0.0)),
        anneal_start=None if training.get("anneal_start") is None else int(training["anneal_start"]),
        anneal_steps=int(training.get("anneal_steps") or 0))


_TRAINING_KEYS = ("epoch", "best_epoch", "best_loss", "bad_epochs", "stopped_early", "optimizer", "rng", "state_dict")


def check_payload(payload: dict[str, Any], path: str | os.PathLike) -> None:
    """The parts of a checkpoint that `load` reads are there and have the right shape; `DataError` otherwise."""
    def bad(why: str) -> DataError:
        return DataError(f"{path}: checkpoint is incomplete: {why}")

    for key in ("config", "model_config", "state_dict", "normaliser", "history"):
        if not isinstance(payload.get(key), dict):
            raise bad(f"{key!r} is missing" if key not in payload else f"{key!r} is not a mapping")
    if not isinstance(payload.get("wavenumbers"), torch.Tensor):
        raise bad("'wavenumbers' is missing or not a tensor")
    columns = payload["history"]
    if not all(isinstance(v, list) for v in columns.values()) or len({len(v) for v in columns.values()}) > 1:
        raise bad("'history' must hold one list per column, all of the same length")
    if not (isinstance(payload.get("best_epoch", 0), int) and isinstance(payload.get("wavenumbers_known", True), bool)):
        raise bad("'best_epoch' must be a whole number and 'wavenumbers_known' True or False")
    training = payload.get("training")
    if training is not None:
        if not isinstance(training, dict):
            raise bad("'training' is not a mapping")
        missing = [k for k in _TRAINING_KEYS if k not in training]
        if missing:
            raise bad(f"the training state lacks {missing}")
        if not isinstance(training["optimizer"], dict) or not isinstance(training["state_dict"], dict):
            raise bad("the training state's optimizer or weights are not a mapping")
        if not (isinstance(training["rng"], list) and all(isinstance(r, dict) for r in training["rng"])):
            raise bad("the training state's rng is not a list of mappings (one per process)")
        numbers = [training[k] for k in ("epoch", "best_epoch", "bad_epochs", "best_loss")]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers) \
                or not isinstance(training["stopped_early"], bool):
            raise bad("the training state's epoch counters, best loss or stopped_early have the wrong type")
    check_sections(payload, path)


_READ_ERRORS = (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError)


def check_sections(payload: dict[str, Any], path: str | os.PathLike) -> None:
    """Each section of a checkpoint read as what it claims to be, and the sections consistent with each other:
    the model's configuration, finite weights, a normaliser of one positive scale per model channel, the
    wavenumber axis, the fitted preprocessing (from that axis to the model's channels), the tissue rule.
    `DataError` naming the file and the section; nothing a tampered file holds reaches the model as given."""
    def bad(key: str, why: str) -> DataError:
        return DataError(f"{path}: checkpoint section {key!r} {why}")

    try:
        config = ModelConfig.from_dict(payload["model_config"])
    except _READ_ERRORS as exc:
        raise bad("model_config", f"is not a model configuration ({type(exc).__name__}: {exc})") from None
    sizes = [config.n_channels, config.latent_dim, *config.hidden_dims]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in sizes):
        raise bad("model_config", f"holds sizes that are not whole numbers ≥ 1: {sizes}")
    known = getattr(networks, "ARCHITECTURES", None)  # the model family, where this version has several
    if known is not None and getattr(config, "architecture", known[0]) not in known:
        raise bad("model_config", f"names architecture {getattr(config, 'architecture', '')!r}; known: {known}")
    for name in ("neighbourhood", "baseline_degree"):
        value = getattr(config, name, 0)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise bad("model_config", f"holds {name}={value!r}, not a whole number ≥ 0")
    params = payload["config"]
    hidden = params.get("hidden_dims")
    if params.get("latent_dim") != config.latent_dim or not isinstance(hidden, (list, tuple)) \
            or tuple(hidden) != tuple(config.hidden_dims):
        raise bad("config", f"says latent_dim={params.get('latent_dim')!r}, hidden_dims={hidden!r}, but "
                            f"'model_config' {config.latent_dim}, {list(config.hidden_dims)}")
    training: dict[str, Any] = payload["training"] if isinstance(payload.get("training"), dict) else {}
    for key, weights in (("state_dict", payload["state_dict"]), ("training", training.get("state_dict") or {}),
                         ("training", training.get("best_state_dict") or {})):
        for name, value in weights.items():
            if not isinstance(value, torch.Tensor):
                raise bad(key, f"holds {name!r}, which is not a tensor")
            if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                raise bad(key, f"holds non-finite weights (NaN or inf) in {name!r}")
    try:
        normaliser = Normaliser.from_dict(payload["normaliser"])
        offset, scale = (np.asarray(v, dtype=float) for v in (normaliser.offset_, normaliser.scale_))
    except (*_READ_ERRORS, DataError) as exc:
        raise bad("normaliser", f"is not a fitted normaliser ({type(exc).__name__}: {exc})") from None
    if offset.shape != (config.n_channels,) or scale.shape != (config.n_channels,):
        raise bad("normaliser", f"has offset {offset.shape} and scale {scale.shape} for a model of "
                                f"{config.n_channels} channels")
    if not (bool(np.isfinite(offset).all()) and bool((scale > 0).all())
            and bool(np.isfinite(scale).all())):
        raise bad("normaliser", "holds a non-finite offset or a scale that is not a finite number > 0")
    wn = payload["wavenumbers"]
    if wn.ndim != 1 or len(wn) < 1 or not bool(torch.isfinite(wn).all()):
        raise bad("wavenumbers", f"is not a finite axis (shape {tuple(wn.shape)})")
    fitted = section(payload, "preprocessing")
    known = bool(section(payload, "wavenumbers_known"))
    try:
        pre = (Preprocessor.from_dict(fitted) if fitted is not None
               else Preprocessor(str(params.get("preprocess", ""))).fit(wn.numpy(), known=known))
    except (*_READ_ERRORS, DataError) as exc:
        raise bad("preprocessing", f"is not a fitted preprocessing pipeline ({type(exc).__name__}: {exc})") from None
    if len(pre.input_wavenumbers_) != len(wn) or len(pre.output_wavenumbers_) != config.n_channels:
        raise bad("preprocessing", f"takes {len(pre.input_wavenumbers_)} channels to {len(pre.output_wavenumbers_)}, "
                                   f"but the axis has {len(wn)} and the model {config.n_channels}")
    rule = section(payload, "tissue_rule")
    if rule is not None:
        try:
            parsed = TissueRule.from_dict(rule)
        except (*_READ_ERRORS, DataError) as exc:
            raise bad("tissue_rule", f"is not a tissue rule ({type(exc).__name__}: {exc})") from None
        if math.isnan(parsed.threshold) or parsed.threshold == math.inf:
            raise bad("tissue_rule", f"has threshold {parsed.threshold}")
    for key in ("monitor",):
        if section(payload, key) is not None and not isinstance(section(payload, key), dict):
            raise bad(key, "is not a mapping")
    for key in ("train_source", "training_digest"):
        if not isinstance(section(payload, key), str):
            raise bad(key, "is not text")

