"""The estimator's core: configuration, fitting, and what a fitted model computes.

`SpectraVAE` (in `spectra_vae.estimator.vae`) is this class with its anomaly scores
(`scoring.AnomalyScoring`) and its checkpoints (`persistence.Persistence`) added.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.exceptions import NotFittedError
from typing_extensions import Self

from ..anomaly.monitor import Monitor, fit_monitor
from ..core.distributed import all_reduce, broadcast_module, dist_info, gather_objects, init_distributed
from ..core.errors import DataError, TrainingError
from ..core.logs import show_messages
from ..io.dataset import SpectralDataset, check_compatible
from ..io.load import as_dataset
from ..io.neighbours import NeighbourhoodView
from ..model.architectures import build_model
from ..model.batches import TRIM_EVERY, release_freed_memory
from ..model.checkpoint import save_checkpoint
from ..model.networks import ModelConfig
from ..model.schedule import WARMUP_STEPS, TrainConfig, TrainState, plan_epochs
from ..model.train import PixelBatches, make_optimizer, resolve_device, train_loop, warm_up_optimizers
from ..model.unmixing import UnmixingVAE
from ..preprocess.normalise import Normaliser, merge_stats, pixel_stats
from ..preprocess.pipeline import Preprocessor
from ..preprocess.tissue import TissueRule
from .checks import check_checkpoint_dir, check_component_start, check_prepared, check_training_set
from .params import PARAMETERS, check_model_params

log = logging.getLogger(__name__)

PREDICT_BATCH = 8192  # pixels read and prepared at a time
# ...and passed through the network at a time: on a CPU, batches of about a thousand pixels keep the layers'
# activations in cache (3.5 µs a pixel against 6.7 µs at 8192, 2 cores); an accelerator wants them large
CPU_INFER_BATCH = 1024


def infer_batch(device: torch.device) -> int:
    """Pixels per forward pass when scoring or reconstructing on `device`."""
    return CPU_INFER_BATCH if device.type == "cpu" else PREDICT_BATCH
PREPARE_NOTICE_PIXELS = 1_000_000  # from this many training pixels, `fit` says what it does before the first epoch
BEST, LAST = "best.pt", "last.pt"


class VAEEstimator(TransformerMixin, BaseEstimator):
    """The configuration, fitting and inference of `SpectraVAE` (whose docstring says what it is).

    The constructor's arguments are the configuration and nothing else; their types, ranges, help
    and defaults are `spectra_vae.estimator.params.PARAMETERS` (a test holds the signature to it).
    """

    tissue_rule_: TissueRule | None  # None: loaded from a file saved before tissue rules were stored
    monitor_: Monitor | None  # None: loaded from a file without a residual model (older, or a best.pt)

    def __init__(self, latent_dim: int = 2, hidden_dims: tuple[int, ...] = (221, 110), *,
                 architecture: str = "mlp", neighbourhood: int = 3, reconstruction: str = "gaussian",
                 beta: float = 1.0, normalisation: str = "auto", noise: str = "shared", preprocess: str = "",
                 epochs: int | str = "auto", batch_size: int = 512, learning_rate: float = 2e-3,
                 patience: int | None = 10, seed: int = 0, device: str = "auto",
                 precision: str = "fp32", tissue_threshold: float | str = "auto", tissue_only: bool = False,
                 checkpoint_minutes: float | None = 30.0, verbose: bool = True) -> None:
        self.latent_dim = latent_dim
        self.hidden_dims = tuple(hidden_dims) if isinstance(hidden_dims, (list, tuple)) else hidden_dims
        self.architecture = architecture
        self.neighbourhood = neighbourhood
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
    def set_params(self, **params: Any) -> Self:
        """Set constructor arguments (scikit-learn's `set_params`); `hidden_dims` is kept as a tuple."""
        unknown = [k for k in params if k not in PARAMETERS]
        if unknown:
            raise DataError(f"SpectraVAE: Invalid parameter {unknown[0]!r} (unknown); have {tuple(PARAMETERS)}")
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
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in PARAMETERS)
        return f"{type(self).__name__}({args})"

    def _check_params(self) -> None:
        """Every constructor argument checked against the table (type, sign, range); `DataError`
        naming the first bad one."""
        check_model_params(self.get_params())

    def normalisation_method(self) -> str:
        """The normalisation in use: `auto` is `global_scale` for the unmixing architecture (absorbance
        keeps its zero), min–max for `bce`, `global_standard` otherwise."""
        if self.normalisation != "auto":
            return self.normalisation
        if self.architecture == "unmixing":
            return "global_scale"
        return "minmax" if self.reconstruction == "bce" else "global_standard"

    # -- fitting -------------------------------------------------------------------------
    def fit(self, data: Any, y: Any = None, *, validation: Any = None,
            checkpoint_dir: str | os.PathLike | None = None, component_start: Any = None) -> Self:
        """Fit the normaliser on `data` and train; keeps the best epoch's weights. Returns self.

        `y` is ignored (scikit-learn passes it); `validation` data drive early stopping.
        `component_start` (unmixing only): `(latent_dim, n_channels)` spectra in absorbance on the
        model's axis (after preprocessing), or a `DataFrame` whose columns are wavenumbers (interpolated
        onto that axis), that the component spectra start from instead of generic bands, as MCR-ALS
        starts from initial estimates: e.g. reference spectra of known constituents.
        """
        self._check_params()
        check_checkpoint_dir(checkpoint_dir)  # a file there fails now, not after the first epoch
        if component_start is not None and self.architecture != "unmixing":
            check_component_start(component_start, self.architecture, self.latent_dim, 0)  # refused before any pass
        pre = Preprocessor(self.preprocess)  # a bad pipeline fails before any work
        if self.architecture == "unmixing" and not pre.keeps_absorbance:
            raise DataError(f"SpectraVAE parameter preprocess={self.preprocess!r}: the unmixing architecture models "
                            "absorbance as thickness × a mixture of non-negative component spectra, and derivatives "
                            "and snv do not keep spectra absorbance-like; use cut, resample, baseline, rubberband, "
                            "emsc, vector or amide1, or architecture='mlp'")
        train = as_dataset(data)
        val = None if validation is None else as_dataset(validation)
        if val is not None:
            check_compatible(train.wavenumbers, train.n_channels, val, "validation data", "the training data")
        torch.manual_seed(self.seed)
        rank, world = init_distributed()
        warm_up_optimizers()  # torch's optimisers import ~1 s of code on first use: in a thread, while data are read
        self.device_ = resolve_device(self.device)
        self.wavenumbers_ = np.asarray(train.wavenumbers, dtype=float)
        self.wavenumbers_known_ = bool(train.wavenumbers_known)
        # Before the first epoch come passes over the whole training set; on data larger than memory
        # each reads it from disk, minutes in all, so say so rather than sit silent.
        notice = self.verbose and rank == 0 and len(train) >= PREPARE_NOTICE_PIXELS
        if self.verbose:
            show_messages()
        if notice:
            passes = ["the tissue rule"] + (["the emsc reference"] if pre.needs_data else []) + [
                "the normalisation statistics"]
            log.info("preparing %s training pixels: %s, each a pass over the data…", f"{len(train):,}",
                     ", ".join(passes))
            started = time.perf_counter()
        # The one tissue rule of this model: fitted on the raw training pixels, stored in the
        # checkpoint, and used by training on tissue, calibration, baselines and the notebooks.
        # In a distributed run each process measures a share of the pixels (collectives every process joins).
        self.tissue_rule_ = TissueRule.fit(train, self.tissue_threshold, shared=True)
        # Fitted steps (emsc's reference spectrum) learn from the training tissue: each process from its share.
        self.preprocessor_ = pre.fit(self.wavenumbers_, self.tissue_rule_.select(train, shared=True).shard(rank, world)
                                     if pre.needs_data else None, known=self.wavenumbers_known_, shared=True)
        if not self.tissue_only and any(s.name in ("snv", "vector") for s in self.preprocessor_.steps):
            warnings.warn(f"preprocess {self.preprocess!r} scales every spectrum to unit size, noise-only background "
                          "included, which can make the VAE collapse onto the background: train with "
                          "tissue_only=True", UserWarning, stacklevel=2)
        train = self._training_pixels(train.preprocessed(self.preprocessor_), shared=True)
        if val is not None:
            val = self._training_pixels(val.preprocessed(self.preprocessor_), shared=True)
        self.training_digest_ = train.pixel_digest()  # baselines check they see these same pixels
        # Fitted in `_run` from the pass that reads the training pixels into memory (one pass, not two).
        self.normaliser_ = Normaliser(self.normalisation_method())
        self._prepare_started = started if notice else None
        output = "sigmoid" if self.normalisation_method() in ("minmax", "global_minmax") else "linear"
        self.model_config_ = ModelConfig(train.n_channels, self.latent_dim, self.hidden_dims, output,
                                         noise=self.noise, architecture=self.architecture,
                                         neighbourhood=self.neighbourhood)
        check_training_set(train, self.model_config_, self.batch_size, self.device_)  # before any allocation
        start = None if component_start is None else check_component_start(
            component_start, self.architecture, self.latent_dim, train.n_channels,
            train.wavenumbers if train.wavenumbers_known else None)
        self.model_ = build_model(self.model_config_).to(self.device_)
        if start is not None:
            assert isinstance(self.model_, UnmixingVAE)  # check_component_start refused other architectures
            # only its shape matters: the unmixing normalisation is one positive factor
            self.model_.start_components(start)
        self.optimizer_: Any = None  # made in `_run` once the data are read: torch's first use is warmed meanwhile
        self._state = TrainState()
        self._generators = self._new_generators()
        self.train_source_ = train.source
        return self._run(train, val, checkpoint_dir)

    def _training_pixels(self, data: SpectralDataset, shared: bool = False) -> SpectralDataset:
        """Training and validation pixels: the tissue pixels by the model's rule when `tissue_only`. `shared`:
        in a distributed run each process measures a share (every process must call it, as `fit` does)."""
        if not self.tissue_only:
            return data
        rule = self.tissue_rule_
        if rule is None:  # a model loaded from a file saved before tissue rules were stored
            raise DataError("this model was saved before tissue rules were stored with models; set "
                            "vae.tissue_rule_ = spectra_vae.tissue.TissueRule.fit(training_data) or retrain")
        selected = rule.select(data, shared)
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
             checkpoint_dir: str | os.PathLike | None) -> Self:
        self.checkpoint_dir_ = None if checkpoint_dir is None else Path(checkpoint_dir)
        if len(train) == 0:
            raise DataError(f"{train.source}: no training pixels")
        rank, world = init_distributed()
        whole_train, whole_val = train, val  # the residual model samples the whole data, then shares it out
        train = train.shard(rank, world)
        val = None if val is None else val.shard(rank, world)
        batches = self._training_batches(train, world)
        if self.optimizer_ is None:
            self.optimizer_ = make_optimizer(self.model_, self.learning_rate, self.device_)
        if world > 1:
            # The gradients are averaged over the processes at every step, so every process takes
            # the same number of steps: the smallest shard's. All start from the first one's weights.
            batches.max_batches = int(all_reduce(np.array([len(batches)]), op="min")[0])
            broadcast_module(self.model_)
        self._place_resumed_position(len(batches))
        val_batches = None
        if val is not None and len(val):
            val_batches = PixelBatches(self._inputs(val), self.normaliser_,
                                       max(self.batch_size, infer_batch(self.device_)), self.device_)
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
        epochs, patience, plateau = plan_epochs(self.epochs, self.patience, len(batches))
        self.epochs_ = epochs
        config = TrainConfig(epochs=epochs, learning_rate=float(self.learning_rate), kind=self.reconstruction,
                             beta=float(self.beta), patience=patience, precision=self.precision,
                             checkpoint_seconds=None if minutes is None or directory is None else 60.0 * minutes,
                             warmup_steps=min(WARMUP_STEPS, len(batches)), plateau=plateau)
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
        self.monitor_ = fit_monitor(self, whole_train, whole_val)
        return self

    def _training_batches(self, train: SpectralDataset, world: int) -> PixelBatches:
        """This process's training batches; a normaliser not yet fitted (`fit`) is fitted on the statistics
        of the same pass that reads the pixels into memory (merged over the processes), or of one streamed
        pass over data larger than memory."""
        if self.normaliser_.offset_ is not None:  # resume: the stored normaliser
            return PixelBatches(self._inputs(train), self.normaliser_, self.batch_size, self.device_)
        batches = PixelBatches(self._inputs(train), None, self.batch_size, self.device_)
        c = self.model_config_.n_channels
        local = batches.raw_stats(c) if batches.in_memory else pixel_stats(train.iter_chunks())
        stats = None
        for part in gather_objects(local) if world > 1 else [local]:
            stats = merge_stats(stats, part)
        self.normaliser_.fit_stats(stats)
        batches.set_normaliser(self.normaliser_)
        started = getattr(self, "_prepare_started", None)
        if started is not None:
            log.info("prepared in %.0f s", time.perf_counter() - started)
            self._prepare_started = None
        return batches

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
            check_prepared(ds, self.preprocessor_)  # another model's prepared view is not this one's input
            return ds
        check_compatible(self.wavenumbers_, len(self.wavenumbers_), ds, ds.source or "data",
                          "the model", self.wavenumbers_known_)
        return ds.preprocessed(self.preprocessor_)

    def normalised_batches(self, data: Any) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        """(pixels as the model sees them, normalised tensor on device) in batches, streaming from disk."""
        ds = self.prepare(data)
        self.model_.eval()
        c, step = self.model_config_.n_channels, infer_batch(self.device_)
        for i, chunk in enumerate(self._inputs(ds).iter_chunks(PREDICT_BATCH), start=1):
            x = torch.from_numpy(self.normaliser_.transform(chunk)).to(self.device_)
            for s in range(0, len(chunk), step):
                yield chunk[s : s + step, :c], x[s : s + step]
            if i % TRIM_EVERY == 0:  # memory does not grow with the dataset (see release_freed_memory)
                release_freed_memory()

    def _inputs(self, data: SpectralDataset) -> Any:
        """What the encoder reads of prepared data: the pixels themselves, or for the spatial
        architecture each pixel with its neighbourhood's mean (`spectra_vae.io.neighbours`), where
        neighbours count only on the same side of the model's tissue rule as the centre pixel."""
        if self.model_config_.architecture != "spatial":
            return data
        rule, wavenumbers = self.tissue_rule_, data.raw().wavenumbers
        side = None if rule is None or rule.measure == "none" else (lambda raw: rule.mask_spectra(raw, wavenumbers))
        return NeighbourhoodView(data, self.model_config_.neighbourhood, side)

    def _decode_mean(self, x: torch.Tensor) -> np.ndarray:
        """The reconstructions at the latent mean of a normalised batch, back in the data's units."""
        step = infer_batch(self.device_)
        out = [self.model_.infer(x[s : s + step])[2].cpu().numpy() for s in range(0, len(x), step)]
        c = self.model_config_.n_channels
        return self.normaliser_.inverse_transform(np.concatenate(out) if out else np.zeros((0, c), np.float32))

    def transform(self, data: Any) -> np.ndarray:
        """Latent means μ, `(n_pixels, latent_dim)`; deterministic (NaN rows for excluded array rows)."""
        ds, out = as_dataset(data), []
        with torch.no_grad():
            for _, x in self.normalised_batches(ds):
                out.append(self.model_.encode(x)[0].cpu().numpy())
        return every_row(data, ds, concat(out, self.latent_dim))

    # -- supplied by `Persistence` -----------------------------------------------------------
    def _payload(self, weights: dict[str, torch.Tensor] | None = None,
                 training: dict[str, Any] | None = None) -> dict[str, Any]:
        raise NotImplementedError

    def _training_section(self) -> dict[str, Any]:
        raise NotImplementedError

    def _place_resumed_position(self, n_batches: int) -> None:
        raise NotImplementedError


def every_row(data: Any, ds: SpectralDataset, values: np.ndarray) -> np.ndarray:
    """For array or DataFrame input, `values` of the usable pixels put back on every input row, NaN
    where a row was excluded (non-finite values), so outputs line up with the input in a pipeline."""
    if not isinstance(data, (np.ndarray, pd.DataFrame)) or len(ds.scans) != 1:
        return values
    return ds.image(values, 0).reshape((-1,) + values.shape[1:]).astype(values.dtype, copy=False)



def concat(parts: list[np.ndarray], width: int) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros((0, width), np.float32)

