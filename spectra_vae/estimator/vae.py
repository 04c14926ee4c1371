"""`SpectraVAE`: the VAE as a scikit-learn-style estimator over spectral datasets."""

from __future__ import annotations

import datetime as _dt
import math
import os
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.exceptions import NotFittedError

from ..anomaly.monitor import Monitor, fit_monitor, parse_statistics, pixel_statistics
from ..anomaly.monitor import calibrate as calibrate_monitor
from ..core.distributed import all_reduce, broadcast_module, dist_info, init_distributed
from ..core.errors import DataError, TrainingError
from ..core.version import __version__
from ..io.dataset import SpectralDataset
from ..io.load import as_dataset
from ..model.batches import TRIM_EVERY, release_freed_memory
from ..model.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    load_checkpoint,
    restore_training,
    save_checkpoint,
    section,
    training_section,
)
from ..model.loss import RECONSTRUCTIONS
from ..model.networks import VAE, ModelConfig
from ..model.train import (
    PRECISIONS,
    WARMUP_STEPS,
    PixelBatches,
    TrainConfig,
    TrainState,
    make_optimizer,
    plan_epochs,
    resolve_device,
    train_loop,
)
from ..preprocess.normalise import METHODS, Normaliser, merge_stats, pixel_stats
from ..preprocess.pipeline import Preprocessor
from ..preprocess.tissue import TissueRule, parse_tissue_threshold

PREDICT_BATCH = 8192
PREPARE_NOTICE_PIXELS = 1_000_000  # from this many training pixels, `fit` says what it does before the first epoch
BEST, LAST = "best.pt", "last.pt"


class SpectraVAE(TransformerMixin, BaseEstimator):
    """A variational autoencoder of per-pixel spectra, and a scikit-learn transformer (`clone`, pipelines,
    `GridSearchCV`): `fit(X)` → `transform(X)` gives latent means, `score(X)` the negative RMSE in
    absorbance units (higher is better).

    `X` is a `SpectralDataset`, a path, or an array/DataFrame of pixels `(n_pixels, n_channels)`
    (a DataFrame's column names are its wavenumbers). For arrays and DataFrames, pixels with a
    non-finite value are left out of fitting and come back as NaN rows, so outputs keep one row
    per input row; for datasets, outputs hold the usable pixels (`dataset.coords`).

    Defaults: the prototype's 442→221→110→2 shape (LeakyReLU 0.2), standardisation with one mean
    and one standard deviation fitted on the training pixels (`global_standard`), and a Gaussian
    likelihood with one calibrated noise level (`noise="shared"`), β = 1, float32 arithmetic
    (`precision="bf16"` trains under bfloat16 autocast). `epochs="auto"`: 50 epochs, more on small
    data, so that a run takes at least 3000 optimiser steps (`spectra_vae.train.plan_epochs`; the
    epochs planned are `epochs_`). Learned state ends in `_` (`model_`, `normaliser_`,
    `wavenumbers_`, `history_`).
    """

    tissue_rule_: TissueRule | None  # None: loaded from a file saved before tissue rules were stored
    monitor_: Monitor | None  # None: loaded from a file without a residual model (older, or a best.pt)

    def __init__(self, latent_dim: int = 2, hidden_dims: tuple[int, ...] = (221, 110), *,
                 reconstruction: str = "gaussian", beta: float = 1.0, normalisation: str = "auto",
                 noise: str = "shared", preprocess: str = "",
                 epochs: int | str = "auto", batch_size: int = 512, learning_rate: float = 2e-3,
                 patience: int | None = 10, seed: int = 0, device: str = "auto",
                 precision: str = "fp32", tissue_threshold: float | str = "auto", tissue_only: bool = False,
                 checkpoint_minutes: float | None = 30.0, verbose: bool = True) -> None:
        self.latent_dim = latent_dim
        self.hidden_dims = tuple(hidden_dims) if isinstance(hidden_dims, (list, tuple)) else hidden_dims
        self.reconstruction = reconstruction
        self.beta = beta
        self.normalisation = normalisation
        self.noise = noise
        self.preprocess = preprocess
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.patience = patience
        self.seed = seed
        self.device = device
        self.precision = precision
        self.tissue_threshold = tissue_threshold
        self.tissue_only = tissue_only
        self.checkpoint_minutes = checkpoint_minutes
        self.verbose = verbose

    # -- configuration -------------------------------------------------------------------
    _PARAMS = ("latent_dim", "hidden_dims", "reconstruction", "beta", "normalisation", "noise", "preprocess", "epochs",
               "batch_size", "learning_rate", "patience", "seed", "device", "precision", "tissue_threshold",
               "tissue_only", "checkpoint_minutes", "verbose")  # the constructor's arguments, as get_params finds them

    def set_params(self, **params: Any) -> SpectraVAE:
        """Set constructor arguments (scikit-learn's `set_params`); `hidden_dims` is kept as a tuple."""
        unknown = [k for k in params if k not in self._PARAMS]
        if unknown:
            raise DataError(f"SpectraVAE: Invalid parameter {unknown[0]!r} (unknown); have {self._PARAMS}")
        super().set_params(**params)
        if isinstance(self.hidden_dims, list):
            self.hidden_dims = tuple(self.hidden_dims)
        return self

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # pixels with NaN/inf are left out (NaN rows out), not an error
        tags.transformer_tags.preserves_dtype = ["float32"]  # the network computes in float32
        return tags

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "model_")

    @property
    def n_features_in_(self) -> int:
        """Channels of the input spectra (scikit-learn's name)."""
        if not hasattr(self, "wavenumbers_"):
            raise AttributeError("n_features_in_: the model is not fitted")
        return len(self.wavenumbers_)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._PARAMS)
        return f"SpectraVAE({args})"

    def _check_params(self) -> None:
        """Every constructor argument checked for type, sign and range; `DataError` naming the first bad one."""
        def bad(name: str, why: str) -> DataError:
            return DataError(f"SpectraVAE parameter {name}={getattr(self, name)!r}: {why}")

        def whole(value: Any, minimum: int) -> bool:
            return (isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
                    and bool(value >= minimum))

        def number(value: Any) -> bool:
            return (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
                    and math.isfinite(value))

        if not whole(self.latent_dim, 1):
            raise bad("latent_dim", "must be a whole number ≥ 1")
        if not (isinstance(self.hidden_dims, tuple) and all(whole(h, 1) for h in self.hidden_dims)):
            raise bad("hidden_dims", "must be a sequence of whole numbers ≥ 1, such as (221, 110)")
        if not isinstance(self.reconstruction, str) or self.reconstruction not in RECONSTRUCTIONS:
            raise bad("reconstruction", f"must be one of {RECONSTRUCTIONS}")
        if not isinstance(self.noise, str) or self.noise not in ("shared", "channel"):
            raise bad("noise", "must be 'shared' or 'channel'")
        if not isinstance(self.normalisation, str) or (self.normalisation != "auto"
                                                       and self.normalisation not in METHODS):
            raise bad("normalisation", f"must be 'auto' or one of {METHODS}")
        if self.reconstruction == "bce" and self.normalisation_method() not in ("minmax", "global_minmax"):
            raise bad("normalisation", "the bce reconstruction needs 'minmax' or 'global_minmax' (values in [0, 1])")
        if not isinstance(self.preprocess, str):
            raise bad("preprocess", "must be a pipeline written as text, such as 'cut(950,1800)|snv'")
        if not (self.epochs == "auto" or whole(self.epochs, 1)):
            raise bad("epochs", "must be 'auto' or a whole number ≥ 1")
        if not whole(self.batch_size, 1):
            raise bad("batch_size", "must be a whole number ≥ 1")
        if not (number(self.learning_rate) and self.learning_rate > 0):
            raise bad("learning_rate", "must be a finite number > 0")
        if not (number(self.beta) and self.beta >= 0):
            raise bad("beta", "must be a finite number ≥ 0")
        if not (self.patience is None or whole(self.patience, 0)):
            raise bad("patience", "must be None or a whole number ≥ 0 (0 or None: no early stopping)")
        if not (whole(self.seed, 0) and self.seed < 2**62):
            raise bad("seed", "must be a whole number from 0 to 2**62")
        if self.precision not in PRECISIONS:
            raise bad("precision", f"must be one of {PRECISIONS}")
        if not isinstance(self.verbose, (bool, np.bool_)):
            raise bad("verbose", "must be True or False")
        if not isinstance(self.tissue_only, (bool, np.bool_)):
            raise bad("tissue_only", "must be True or False")
        if not (self.checkpoint_minutes is None or (number(self.checkpoint_minutes) and self.checkpoint_minutes > 0)):
            raise bad("checkpoint_minutes", "must be None or a number of minutes > 0")
        parse_tissue_threshold(self.tissue_threshold)
        _check_device(self.device, bad)

    def normalisation_method(self) -> str:
        """The normalisation in use: `auto` is min–max for `bce`, `global_standard` otherwise."""
        if self.normalisation != "auto":
            return self.normalisation
        return "minmax" if self.reconstruction == "bce" else "global_standard"

    # -- fitting -------------------------------------------------------------------------
    def fit(self, data: Any, y: Any = None, *, validation: Any = None,
            checkpoint_dir: str | os.PathLike | None = None) -> SpectraVAE:
        """Fit the normaliser on `data` and train; keeps the best epoch's weights. Returns self.

        `y` is ignored (scikit-learn passes it); `validation` data drive early stopping.
        """
        self._check_params()
        pre = Preprocessor(self.preprocess)  # a bad pipeline fails before any work
        train = as_dataset(data)
        val = None if validation is None else as_dataset(validation)
        if val is not None:
            _check_compatible(train.wavenumbers, train.n_channels, val, "validation data", "the training data")
        torch.manual_seed(self.seed)
        rank, world = init_distributed()
        self.device_ = resolve_device(self.device)
        self.wavenumbers_ = np.asarray(train.wavenumbers, dtype=float)
        self.wavenumbers_known_ = bool(train.wavenumbers_known)
        # Before the first epoch come passes over the whole training set; on data larger than memory
        # each reads it from disk, minutes in all, so say so rather than sit silent.
        notice = self.verbose and rank == 0 and len(train) >= PREPARE_NOTICE_PIXELS
        if notice:
            passes = ["the tissue rule"] + (["the emsc reference"] if pre.needs_data else []) + [
                "the normalisation statistics"]
            print(f"preparing {len(train):,} training pixels: {', '.join(passes)}, each a pass over the data…",
                  flush=True)
            started = time.perf_counter()
        # The one tissue rule of this model: fitted on the raw training pixels, stored in the
        # checkpoint, and used by training on tissue, calibration, baselines and the notebooks.
        self.tissue_rule_ = TissueRule.fit(train, self.tissue_threshold)
        # Fitted steps (emsc's reference spectrum) learn from the training tissue pixels by that rule.
        self.preprocessor_ = pre.fit(self.wavenumbers_, self.tissue_rule_.select(train) if pre.needs_data else None,
                                     known=self.wavenumbers_known_)
        if not self.tissue_only and any(s.name in ("snv", "vector") for s in self.preprocessor_.steps):
            warnings.warn(f"preprocess {self.preprocess!r} scales every spectrum to unit size, noise-only background "
                          "included, which can make the VAE collapse onto the background: train with "
                          "tissue_only=True", UserWarning, stacklevel=2)
        train = self._training_pixels(train.preprocessed(self.preprocessor_))
        if val is not None:
            val = self._training_pixels(val.preprocessed(self.preprocessor_))
        self.training_digest_ = train.pixel_digest()  # baselines check they see these same pixels
        stats = pixel_stats(train.shard(rank, world).iter_chunks())
        if world > 1:  # every process reads only its shard; statistics are merged
            gathered: list[Any] = [None] * world
            torch.distributed.all_gather_object(gathered, stats)
            stats = None
            for st in gathered:
                stats = merge_stats(stats, st)
        self.normaliser_ = Normaliser(self.normalisation_method()).fit_stats(stats)
        if notice:
            print(f"prepared in {time.perf_counter() - started:.0f} s", flush=True)
        output = "sigmoid" if self.normalisation_method() in ("minmax", "global_minmax") else "linear"
        self.model_config_ = ModelConfig(train.n_channels, self.latent_dim, self.hidden_dims, output,
                                         noise=self.noise)
        self.model_ = VAE(self.model_config_).to(self.device_)
        self.optimizer_ = make_optimizer(self.model_, self.learning_rate, self.device_)
        self._state = TrainState()
        self._generators = self._new_generators()
        self.train_source_ = train.source
        return self._run(train, val, checkpoint_dir)

    def _training_pixels(self, data: SpectralDataset) -> SpectralDataset:
        """Training and validation pixels: the tissue pixels by the model's rule when `tissue_only`."""
        if not self.tissue_only:
            return data
        rule = self.tissue_rule_
        if rule is None:  # a model loaded from a file saved before tissue rules were stored
            raise DataError("this model was saved before tissue rules were stored with models; set "
                            "vae.tissue_rule_ = spectra_vae.tissue.TissueRule.fit(training_data) or retrain")
        selected = rule.select(data)
        if len(selected) == 0:
            raise DataError(f"{data.source or 'data'}: no pixel is tissue by the rule {rule} "
                            f"({rule.how}); train with tissue_only=False or set tissue_threshold")
        return selected

    def training_pixels(self, data: Any) -> SpectralDataset:
        """`data` as the model trained on it: preprocessed, and tissue pixels only when `tissue_only`."""
        return self._training_pixels(self.prepare(data))

    def tissue_mask(self, data: Any) -> np.ndarray:
        """Per pixel of `data`, True where it is tissue by the model's own rule (`tissue_rule_`)."""
        self._check_fitted()
        if self.tissue_rule_ is None:
            raise DataError("this model was saved before tissue rules were stored with models; set "
                            "vae.tissue_rule_ = spectra_vae.tissue.TissueRule.fit(training_data) or retrain")
        ds = as_dataset(data)
        return self.tissue_rule_.mask(ds)

    def _new_generators(self, epoch: int = 0) -> dict[str, torch.Generator]:
        # Shuffling runs on the CPU; ε is drawn on the model's device. Each process has its own.
        rank = dist_info()[0]
        base = self.seed + 1000 * rank + 7919 * epoch
        return {"shuffle": torch.Generator().manual_seed(base),
                "sample": torch.Generator(device=self.device_).manual_seed(base + 1)}

    def _run(self, train: SpectralDataset, val: SpectralDataset | None,
             checkpoint_dir: str | os.PathLike | None) -> SpectraVAE:
        self.checkpoint_dir_ = None if checkpoint_dir is None else Path(checkpoint_dir)
        if len(train) == 0:
            raise DataError(f"{train.source}: no training pixels")
        rank, world = init_distributed()
        train = train.shard(rank, world)
        val = None if val is None else val.shard(rank, world)
        batches = PixelBatches(train, self.normaliser_, self.batch_size, self.device_)
        if world > 1:
            # The gradients are averaged over the processes at every step, so every process takes
            # the same number of steps: the smallest shard's. All start from the first one's weights.
            batches.max_batches = int(all_reduce(np.array([len(batches)]), op="min")[0])
            broadcast_module(self.model_)
        self._place_resumed_position(len(batches))
        val_batches = None
        if val is not None and len(val):
            val_batches = PixelBatches(val, self.normaliser_, max(self.batch_size, PREDICT_BATCH), self.device_)
        scale = torch.as_tensor(self.normaliser_.scale_, dtype=torch.float32, device=self.device_)
        self._batches_per_epoch = len(batches)
        directory = self.checkpoint_dir_

        def on_epoch_end(state: TrainState, improved: bool) -> None:
            if directory is None or rank != 0:  # only the first process writes
                return
            if improved:
                save_checkpoint(self._payload(weights=state.best_state), directory / BEST)
            save_checkpoint(self._payload(training=self._training_section()), directory / LAST)

        def on_checkpoint(state: TrainState) -> None:  # within an epoch: last.pt only
            if directory is not None and rank == 0:
                save_checkpoint(self._payload(training=self._training_section()), directory / LAST)

        minutes = self.checkpoint_minutes
        epochs, patience = plan_epochs(self.epochs, self.patience, len(batches))
        self.epochs_ = epochs
        config = TrainConfig(epochs=epochs, learning_rate=float(self.learning_rate), kind=self.reconstruction,
                             beta=float(self.beta), patience=patience, precision=self.precision,
                             checkpoint_seconds=None if minutes is None or directory is None else 60.0 * minutes,
                             warmup_steps=min(WARMUP_STEPS, len(batches)))
        if self._state.step == 0:  # the schedule is planned once, when training begins; resume keeps it
            self._state.decay_steps = epochs * len(batches)
        try:
            train_loop(self.model_, self.optimizer_, batches, val_batches, config, self._state, self._generators,
                       scale, on_epoch_end=on_epoch_end, on_checkpoint=on_checkpoint,
                       progress=self.verbose)
        except TrainingError as exc:
            raise TrainingError(f"{exc}. {self._end_training(finished=False)}") from None
        finally:
            self.history_ = pd.DataFrame(self._state.history)
        self._end_training(finished=True)
        # What normal tissue's residuals look like, for the anomaly scores (see monitor.py).
        self.monitor_ = fit_monitor(self, train, val)
        return self

    def _end_training(self, finished: bool) -> str:
        """Keep the moment training ended for `save` (weights, optimiser and generators of that one
        moment; none after a failure), then hold the best epoch's weights. Says what is kept."""
        self._final_training = self._training_section() if finished else None
        state = self._state
        if state.best_state is not None:
            self.model_.load_state_dict(state.best_state)
            held = f"The model in memory holds the weights of its best epoch ({state.best_epoch})"
        else:
            held = "The model in memory holds its last finite weights (no epoch was completed)"
        self.model_.eval()
        d = self.checkpoint_dir_
        if d is None:
            return f"{held}; no checkpoint_dir was given, so nothing was written to disk."
        files = [f"{d / name}" for name in (BEST, LAST) if (d / name).is_file()]
        return f"{held}; on disk: {', '.join(files) if files else 'nothing yet (no epoch was completed)'}."

    # -- results -------------------------------------------------------------------------
    @property
    def history(self) -> pd.DataFrame:
        """One row per epoch: train/val loss, reconstruction, KL, val RMSE (absorbance), seconds."""
        self._check_fitted()
        return self.history_

    @property
    def best_epoch_(self) -> int:
        self._check_fitted()
        return self._state.best_epoch

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError("this SpectraVAE is not fitted yet; call fit() or SpectraVAE.load()")

    def prepare(self, data: Any) -> SpectralDataset:
        """The data as the model sees them: checked against the model's axis, preprocessed if it is."""
        self._check_fitted()
        ds = as_dataset(data)
        if ds.preprocessor is not None:
            return ds
        _check_compatible(self.wavenumbers_, len(self.wavenumbers_), ds, ds.source or "data",
                          "the model", self.wavenumbers_known_)
        return ds.preprocessed(self.preprocessor_)

    def _batches(self, data: Any) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        """(pixels as the model sees them, normalised tensor on device) in batches, streaming from disk."""
        ds = self.prepare(data)
        self.model_.eval()
        for i, chunk in enumerate(ds.iter_chunks(PREDICT_BATCH), start=1):
            yield chunk, torch.from_numpy(self.normaliser_.transform(chunk)).to(self.device_)
            if i % TRIM_EVERY == 0:  # memory does not grow with the dataset (see release_freed_memory)
                release_freed_memory()

    def _decode_mean(self, x: torch.Tensor) -> np.ndarray:
        """decode(μ) of a normalised batch, back in absorbance (the data's units)."""
        return self.normaliser_.inverse_transform(self.model_.decode(self.model_.encode(x)[0]).cpu().numpy())

    def transform(self, data: Any) -> np.ndarray:
        """Latent means μ, `(n_pixels, latent_dim)`; deterministic (NaN rows for excluded array rows)."""
        ds, out = as_dataset(data), []
        with torch.no_grad():
            for _, x in self._batches(ds):
                out.append(self.model_.encode(x)[0].cpu().numpy())
        return _every_row(data, ds, _concat(out, self.latent_dim))

    def encode(self, data: Any) -> tuple[np.ndarray, np.ndarray]:
        """Latent means and log-variances, each `(n_pixels, latent_dim)`."""
        ds, mus, logvars = as_dataset(data), [], []
        with torch.no_grad():
            for _, x in self._batches(ds):
                mu, logvar = self.model_.encode(x)
                mus.append(mu.cpu().numpy())
                logvars.append(logvar.cpu().numpy())
        return (_every_row(data, ds, _concat(mus, self.latent_dim)),
                _every_row(data, ds, _concat(logvars, self.latent_dim)))

    def score(self, data: Any, y: Any = None) -> float:
        """Negative RMSE in absorbance units of the reconstructions decode(μ), over all pixels and the
        channels the model keeps; higher is better, and comparable across preprocessing, normalisation
        and β (scikit-learn's `score`, used by `GridSearchCV` and `cross_val_score`).

        Per-spectrum normalisations and baselines (`snv`, `vector`, `amide1`, `baseline`,
        `rubberband`) are undone pixel by pixel; a leading `cut` compares on its channels. Steps
        that cannot be undone (`resample`, `savgol`, a `cut` after another step) raise `DataError`.
        """
        self._check_fitted()
        ds = as_dataset(data)
        self.prepare(ds)  # checks the axis
        ds = ds.raw()
        steps = self.preprocessor_.steps
        lead = 0
        while lead < len(steps) and steps[lead].name == "cut":
            lead += 1
        if lead == 0:
            if self.preprocessor_ and not self.preprocessor_.invertible:
                raise DataError(f"score: preprocess {self.preprocess!r} cannot be undone, so there is no RMSE in "
                                "absorbance units; compare such models by reconstruction_error in their own space")
            total, count = 0.0, 0
            for raw in ds.iter_chunks(PREDICT_BATCH, dtype=np.float64):
                one = as_dataset(raw.astype(np.float32))
                back = self.reconstruct(one, original_units=True)
                total, count = total + float(((back - raw) ** 2).sum()), count + raw.size
            return -math.sqrt(total / max(count, 1))
        cut, rest = self.preprocessor_.split(lead)
        if not rest.invertible:
            raise DataError(f"score: preprocess {self.preprocess!r} cannot be undone after its cut, so there is no "
                            "RMSE in absorbance units; compare such models by reconstruction_error in their own space")
        total, count = 0.0, 0
        with torch.no_grad():
            for raw in ds.iter_chunks(PREDICT_BATCH):
                a = cut.transform(raw)
                processed, undo = rest.transform(a, return_inverse=True)
                x = torch.from_numpy(self.normaliser_.transform(processed)).to(self.device_)
                back = rest.inverse_transform(self._decode_mean(x), undo)
                total += float(((back.astype(np.float64) - a) ** 2).sum())
                count += a.size
        return -math.sqrt(total / max(count, 1))

    def decode(self, z: np.ndarray) -> np.ndarray:
        """Spectra (absorbance, original units) decoded from latent points `(n, latent_dim)`."""
        self._check_fitted()
        with torch.no_grad():
            zt = torch.as_tensor(np.asarray(z, dtype=np.float32), device=self.device_)
            x = self.model_.decode(zt).cpu().numpy()
        return self.normaliser_.inverse_transform(x)

    def reconstruct(self, data: Any, original_units: bool = False) -> np.ndarray:
        """Reconstructions decode(μ) in the input's absorbance units, `(n_pixels, n_channels)`.

        With a preprocessing pipeline they are in the preprocessed space (on its axis);
        `original_units=True` undoes the pipeline for each pixel where it is invertible.
        """
        ds = as_dataset(data)
        if original_units and self.preprocessor_:
            return _every_row(data, ds, self._reconstruct_original(ds))
        out = []
        with torch.no_grad():
            for _, x in self._batches(ds):
                out.append(self._decode_mean(x))
        return _every_row(data, ds, _concat(out, self.model_config_.n_channels))

    def _reconstruct_original(self, data: Any) -> np.ndarray:
        pre = self.preprocessor_
        if not pre.invertible:
            raise DataError(f"preprocess {pre.spec!r} cannot be undone; reconstructions exist only in the "
                            "preprocessed space")
        self.prepare(data)  # checks the axis
        out = []
        with torch.no_grad():
            for raw in as_dataset(data).iter_chunks(PREDICT_BATCH):
                y, undo = pre.transform(raw, return_inverse=True)
                x = torch.from_numpy(self.normaliser_.transform(y)).to(self.device_)
                r = self._decode_mean(x)
                out.append(pre.inverse_transform(r, undo))
        return _concat(out, len(self.wavenumbers_))

    def reconstruction_error(self, data: Any) -> np.ndarray:
        """Per-pixel RMSE over channels between each spectrum and its reconstruction (absorbance)."""
        ds, out = as_dataset(data), []
        with torch.no_grad():
            for chunk, x in self._batches(ds):
                r = self._decode_mean(x)
                out.append(pixel_rmse(chunk, r))
        return _every_row(data, ds, np.concatenate(out) if out else np.zeros(0))

    def score_samples(self, data: Any) -> pd.DataFrame:
        """Per pixel, with (scan, row, col) and whether it is tissue by the model's rule: the
        reconstruction RMSE (data units), the reconstruction NLL of decode(μ), the KL term, the
        residual statistics `inside`, `t2` and `q` (see `spectra_vae.monitor`), the anomaly score
        (`anomaly_score`'s default) and, once calibrated, `flagged`. Higher is more anomalous in
        every score column; deterministic (the latent mean, never a random draw)."""
        ds = self.prepare(data)
        monitor = self._monitor()
        values = pixel_statistics(self, ds, monitor)
        coords = ds.coords
        frame = pd.DataFrame({"scan": np.asarray(ds.scans, dtype=object)[coords[:, 0]] if len(ds) else [],
                              "row": coords[:, 1], "col": coords[:, 2], "tissue": self.tissue_mask(ds), **values})
        frame["anomaly_score"] = monitor.combine(values)
        if monitor.threshold is not None:
            frame["flagged"] = frame["tissue"] & (frame["anomaly_score"] > monitor.threshold)
        return frame

    ANOMALY_SCORES = ("mspc", "elbo", "reconstruction", "kl", "inside", "t2", "q")

    def anomaly_score(self, data: Any, method: str = "mspc") -> np.ndarray:
        """One number per pixel, higher = more anomalous; deterministic, streamed in batches.

        `mspc` (default): Fisher's combination of the tail probabilities of the residual
        statistics inside (`inside`, `t2`) and outside (`q`) the principal directions of normal
        tissue's residuals (`monitor_.statistics`; see `spectra_vae.monitor`). The parts: `inside` (squared residual
        within those directions), `t2` (the same scaled by their variances, Hotelling's T²), `q`
        (squared residual outside them), `kl` (the KL term), `elbo` (reconstruction NLL + β·KL at
        the latent mean), `reconstruction` (RMSE in the data's units). A combination of statistics
        joined by "+" (e.g. `"t2+q"`) is scored like `mspc` (Fisher's method over their tails).
        """
        if "+" in method:
            prepared = self.prepare(data)
            monitor = self._monitor()
            values = pixel_statistics(self, prepared, monitor, monitored_only=True)
            return monitor.combine(values, parse_statistics(method))
        if method not in self.ANOMALY_SCORES:
            raise ValueError(f"method must be one of {self.ANOMALY_SCORES} or a combination such as 't2+q'; "
                             f"got {method!r}")
        if method == "mspc":
            return self.score_samples(data)["anomaly_score"].to_numpy()
        if method in ("inside", "t2", "q"):
            return pixel_statistics(self, self.prepare(data), self._monitor(), monitored_only=True)[method]
        values = pixel_statistics(self, self.prepare(data))
        if method == "elbo":
            return values["reconstruction_nll"] + self.beta * values["kl"]
        return values["reconstruction_error" if method == "reconstruction" else "kl"]

    def _monitor(self) -> Monitor:
        self._check_fitted()
        monitor = getattr(self, "monitor_", None)
        if monitor is None:
            raise DataError("this model has no residual model for anomaly scores (it was saved before they "
                            "existed, or is a best.pt written during training): call "
                            "vae.fit_anomaly_model(normal_training_data, validation=...) or load final.pt")
        return monitor

    def fit_anomaly_model(self, normal_train: Any, validation: Any = None,
                          noise_weighted: bool | None = None) -> SpectraVAE:
        """Learn the residual structure of normal tissue from `normal_train` (fit does this itself).
        `noise_weighted`: judge each pixel's residual against its own noise level (None: when the
        preprocessing divides each spectrum by a factor of its own; see `spectra_vae.monitor`)."""
        val = None if validation is None else self.training_pixels(validation)
        self.monitor_ = fit_monitor(self, self.training_pixels(normal_train), val, noise_weighted=noise_weighted)
        return self

    def calibrate(self, normal_data: Any, false_positive_rate: float = 0.01) -> SpectraVAE:
        """Learn the anomaly score's distribution on the tissue pixels of held-out normal scans and
        set the threshold that flags `false_positive_rate` of them (stored in the checkpoint).

        Use scans the model did not train on; the validation scans serve (early stopping picks one
        of the epochs by their mean loss, which barely moves the tail of their score distribution).
        """
        self._monitor()
        self.monitor_ = calibrate_monitor(self, self.prepare(normal_data), float(false_positive_rate))
        return self

    def predict(self, data: Any) -> np.ndarray:
        """1 for each pixel flagged as anomalous, 0 otherwise; background (by the tissue rule) is never
        flagged. The threshold is `calibrate`'s, or until then the one fit set: 1 % of the normal
        validation tissue (of the training tissue without validation data, where it flags too few)."""
        if self._monitor().threshold is None:
            raise DataError("the model is not calibrated: call vae.calibrate(normal_scans, false_positive_rate=0.01)")
        return self.score_samples(data)["flagged"].to_numpy().astype(np.int8)

    def scan_scores(self, data: Any) -> pd.DataFrame:
        """Per scan: tissue pixels, flagged fraction, its calibrated limit and the call (abnormal or
        not), and the 99th-percentile pixel score. The limit is the nominal false-positive rate
        plus the one-sided 99 % spread of a normal scan's flagged fraction, widened by how much
        flags cluster in space on the calibration tissue."""
        from ..anomaly.baselines import scan_table

        monitor = self._monitor()
        if monitor.threshold is None:
            raise DataError("the model is not calibrated: call vae.calibrate(normal_scans, false_positive_rate=0.01)")
        ds = self.prepare(data)
        f = self.score_samples(ds)
        return scan_table(ds, f["anomaly_score"].to_numpy(), f["flagged"].to_numpy(), f["tissue"].to_numpy(),
                          float(monitor.false_positive_rate or 0.01), float(monitor.design_effect or 1.0))

    # -- checkpoints ---------------------------------------------------------------------
    def _training_section(self) -> dict[str, Any]:
        return training_section(self.model_, self.optimizer_, self._state, getattr(self, "_batches_per_epoch", 0))

    def _payload(self, weights: dict[str, torch.Tensor] | None = None,
                 training: dict[str, Any] | None = None) -> dict[str, Any]:
        """The checkpoint: the model (`weights`, by default the current ones) and, for a file that
        training can resume from, the `training` section."""
        state = self._state
        weights = self.model_.state_dict() if weights is None else weights
        payload: dict[str, Any] = {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "spectra_vae_version": __version__,
            "torch_version": str(torch.__version__),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.get_params().items()},
            "model_config": self.model_config_.to_dict(),
            "state_dict": {k: v.detach().cpu() for k, v in weights.items()},
            "normaliser": self.normaliser_.to_dict(),
            "wavenumbers": torch.tensor(np.array(self.wavenumbers_, dtype=np.float64)),
            "wavenumbers_known": self.wavenumbers_known_,
            "history": {k: v.tolist() for k, v in pd.DataFrame(state.history).items()},
            "best_epoch": state.best_epoch,
            "train_source": getattr(self, "train_source_", ""),
        }
        if (rule := getattr(self, "tissue_rule_", None)) is not None:
            payload["tissue_rule"] = rule.to_dict()
        if self.preprocessor_:
            payload["preprocessing"] = self.preprocessor_.to_dict()  # fitted state, e.g. emsc's reference
        if (monitor := getattr(self, "monitor_", None)) is not None:
            payload["monitor"] = monitor.to_dict()
        if getattr(self, "training_digest_", None):
            payload["training_digest"] = self.training_digest_
        if training is not None:
            payload["training"] = training
        return _plain(payload)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the model (weights, config, normaliser, wavenumbers, history) to one file, atomically.

        After `fit` the weights are the best epoch's, and the file also holds the state training
        ended in (its own weights, optimiser, generators), so `resume(path, ..., epochs=N)` goes on.
        """
        self._check_fitted()
        return save_checkpoint(self._payload(training=getattr(self, "_final_training", None)), path)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "auto") -> SpectraVAE:
        """Rebuild a model from a checkpoint file (read with `weights_only=True`)."""
        payload = load_checkpoint(path)
        _check_payload(payload, path)
        try:
            config = {k: v for k, v in payload["config"].items() if k in cls._PARAMS}
            config["hidden_dims"] = tuple(config["hidden_dims"])
            config["device"] = device
            vae = cls(**config)
            vae.device_ = resolve_device(device)
            vae.model_config_ = ModelConfig.from_dict(payload["model_config"])
            vae.model_ = VAE(vae.model_config_)
            vae.model_.load_state_dict(payload["state_dict"])
            vae.model_.noise_initialised = True
            vae.model_.to(vae.device_).eval()
            vae.normaliser_ = Normaliser.from_dict(payload["normaliser"])
            vae.wavenumbers_ = payload["wavenumbers"].numpy()
            vae.wavenumbers_known_ = bool(section(payload, "wavenumbers_known"))
            # Files without the section predate fitted steps: their pipelines are stateless.
            fitted = section(payload, "preprocessing")
            vae.preprocessor_ = (Preprocessor.from_dict(fitted) if fitted is not None
                                 else Preprocessor(config.get("preprocess", "")).fit(vae.wavenumbers_,
                                                                                   known=vae.wavenumbers_known_))
            vae.train_source_ = section(payload, "train_source")
            rule = section(payload, "tissue_rule")
            vae.tissue_rule_ = None if rule is None else TissueRule.from_dict(rule)
            monitor = section(payload, "monitor")
            vae.monitor_ = None if monitor is None else Monitor.from_dict(monitor)
            vae.training_digest_ = section(payload, "training_digest")
            columns = payload["history"]
            history = [dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)]
        except (KeyError, TypeError, RuntimeError, ValueError) as exc:
            raise DataError(f"{path}: checkpoint content is incomplete or does not match the model ({exc})") from exc
        vae.optimizer_ = make_optimizer(vae.model_, vae.learning_rate, vae.device_)
        vae._state = TrainState(epoch=len(history), history=history, best_epoch=int(section(payload, "best_epoch")))
        vae._final_training = section(payload, "training")
        vae.history_ = pd.DataFrame(history)
        return vae

    def _restore_training(self, training: dict[str, Any], where: Path) -> None:
        """Put the model, optimiser, generators and loop state back as the `training` section
        recorded them, for this process of this run."""
        rank, world = dist_info()
        self._state = restore_training(training, self.model_, self.optimizer_, self._state.history, self.device_)
        self._resumed_from_batches = int(training.get("batches_per_epoch", 0))
        self._generators = self._new_generators(self._state.epoch)
        saved_world, rngs = int(training.get("world_size", 1)), training.get("rng", [])
        why = None
        if not training.get("exact", True):
            why = ("it is a version-1 final.pt, which held the best epoch's weights beside the last epoch's "
                   "optimiser; training goes on from the best weights")
        elif saved_world != world:
            why = (f"it was saved by {saved_world} process(es) and resumes in {world}: each process's shard "
                   "and random streams differ, so the rest of the run draws other batches and ε")
        elif len(rngs) > rank and rngs[rank]:
            try:
                for name, g in self._generators.items():
                    g.set_state(rngs[rank][name])
            except (RuntimeError, KeyError):
                self._generators = self._new_generators(self._state.epoch)
                why = "its random-number states were saved on another kind of device"
        else:
            why = "it holds no random-number states"
        self._state.epoch_rng = self._generators["shuffle"].get_state()
        if why is not None:
            warnings.warn(f"{where}: resuming goes on but will not match an uninterrupted run exactly: {why}",
                          UserWarning, stacklevel=3)

    def _place_resumed_position(self, n_batches: int) -> None:
        """A run resumed within an epoch whose batches per epoch changed (another number of
        processes) goes on from the same fraction of the epoch."""
        old = getattr(self, "_resumed_from_batches", 0)
        st = self._state
        if st.batch and old and old != n_batches:
            st.batch = min(n_batches - 1, round(st.batch * n_batches / old))
        self._resumed_from_batches = 0

    @classmethod
    def resume(cls, checkpoint: str | os.PathLike, data: Any, validation: Any = None,
               checkpoint_dir: str | os.PathLike | None = None, epochs: int | str | None = None,
               learning_rate: float | None = None, device: str = "auto") -> SpectraVAE:
        """Go on training from a checkpoint (`last.pt`, or `final.pt`) to its planned or `epochs` epochs.

        The history continues where it stopped, and weights, optimiser, position within the epoch
        and every process's random-number states are restored, so on CPU the result is the same
        as an uninterrupted run's, bit for bit (on CUDA within floating-point tolerance). A run
        that stopped early goes on when `epochs` asks for more (early stopping counts afresh).
        A new `learning_rate` (e.g. after a run diverged) replaces the planned one. `device` as
        for `SpectraVAE` ("auto": CUDA when there is one); resuming on another kind of device than
        the run's goes on with a warning that it will not match exactly.
        """
        checkpoint = Path(checkpoint)
        vae = cls.load(checkpoint, device=device)
        training = vae._final_training
        if not training:
            raise DataError(f"{checkpoint}: holds a model but not the optimiser and random-number states that "
                            "training needs to go on (best.pt never does); resume from last.pt or final.pt")
        init_distributed()
        vae._restore_training(training, checkpoint)
        st = vae._state
        if epochs is not None:
            vae.epochs = epochs
            vae._check_params()  # a DataError naming the parameter for anything but "auto" or a whole number ≥ 1
            if epochs != "auto" and cast(int, epochs) > st.epoch and st.stopped_early:
                st.stopped_early, st.bad_epochs = False, 0
        if learning_rate is not None:
            vae.learning_rate, st.lr_scale = learning_rate, 1.0
        train = as_dataset(data)
        _check_compatible(vae.wavenumbers_, len(vae.wavenumbers_), train, train.source, "the checkpoint")
        train = vae._training_pixels(train.preprocessed(vae.preprocessor_))
        val = None if validation is None else as_dataset(validation).preprocessed(vae.preprocessor_)
        val = None if val is None else vae._training_pixels(val)
        vae.train_source_ = train.source
        return vae._run(train, val, checkpoint_dir if checkpoint_dir is not None else checkpoint.parent)


def _plain(obj: Any) -> Any:
    """Numpy scalars and tuples → Python numbers and lists, so `weights_only=True` can load the file."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _every_row(data: Any, ds: SpectralDataset, values: np.ndarray) -> np.ndarray:
    """For array or DataFrame input, `values` of the usable pixels put back on every input row, NaN
    where a row was excluded (non-finite values), so outputs line up with the input in a pipeline."""
    if not isinstance(data, (np.ndarray, pd.DataFrame)) or len(ds.scans) != 1:
        return values
    return ds.image(values, 0).reshape((-1,) + values.shape[1:]).astype(values.dtype, copy=False)


_TRAINING_KEYS = ("epoch", "best_epoch", "best_loss", "bad_epochs", "stopped_early", "optimizer", "rng", "state_dict")


def _check_payload(payload: dict[str, Any], path: str | os.PathLike) -> None:
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


def _check_device(device: Any, bad: Any) -> None:
    """'auto', or a CPU, CUDA or MPS device that this machine has."""
    if not isinstance(device, (str, torch.device)):
        raise bad("device", "must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
    if device == "auto":
        return
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise bad("device", "must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'") from None
    if dev.type == "cuda" and not (torch.cuda.is_available() and (dev.index or 0) < torch.cuda.device_count()):
        raise bad("device", f"this machine has {torch.cuda.device_count()} CUDA device(s)")
    mps = getattr(torch.backends, "mps", None)
    if dev.type == "mps" and not (mps is not None and mps.is_available()):
        raise bad("device", "Apple MPS is not available on this machine")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise bad("device", "must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")


def _concat(parts: list[np.ndarray], width: int) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros((0, width), np.float32)


def _check_compatible(wavenumbers: np.ndarray, n_channels: int, ds: SpectralDataset, what: str,
                      against: str, known: bool = True) -> None:
    if ds.n_channels != n_channels:
        raise DataError(f"{what}: has {ds.n_channels} channels but {against} expects {n_channels}")
    if known and ds.wavenumbers_known and not np.allclose(ds.wavenumbers, wavenumbers, rtol=0, atol=1e-3):
        raise DataError(f"{what}: wavenumber axis {ds.wavenumbers[0]:g}…{ds.wavenumbers[-1]:g} cm⁻¹ "
                        f"does not match {against}'s {wavenumbers[0]:g}…{wavenumbers[-1]:g} cm⁻¹")


def pixel_rmse(original: np.ndarray, reconstruction: np.ndarray) -> np.ndarray:
    """Per-pixel RMSE over channels, `(n_pixels,)` (differences in float64)."""
    return np.sqrt(np.mean((np.asarray(original, np.float64) - reconstruction) ** 2, axis=1))


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    """Root-mean-square difference over all pixels and channels."""
    return math.sqrt(float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)))
