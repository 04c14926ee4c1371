"""Checkpoints of a `SpectraVAE`: saving, loading and resuming training (see `spectra_vae.model.checkpoint`)."""

from __future__ import annotations

import datetime as _dt
import os
import warnings
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import torch
from typing_extensions import Self

from ..anomaly.monitor import Monitor
from ..core.distributed import dist_info, init_distributed
from ..core.errors import DataError
from ..core.files import plain
from ..core.version import __version__
from ..io.dataset import check_compatible
from ..io.load import as_dataset
from ..model.architectures import build_model
from ..model.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    check_payload,
    load_checkpoint,
    restore_training,
    save_checkpoint,
    section,
    training_section,
)
from ..model.networks import ModelConfig
from ..model.train import TrainState, make_optimizer, resolve_device
from ..preprocess.normalise import Normaliser
from ..preprocess.pipeline import Preprocessor
from ..preprocess.tissue import TissueRule
from .base import VAEEstimator
from .params import PARAMETERS


class Persistence(VAEEstimator):
    """Saving, loading and resuming: one file holds everything needed to use or go on training the model."""

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
        return plain(payload)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the model (weights, config, normaliser, wavenumbers, history) to one file, atomically.

        After `fit` the weights are the best epoch's, and the file also holds the state training
        ended in (its own weights, optimiser, generators), so `resume(path, ..., epochs=N)` goes on.
        """
        self._check_fitted()
        return save_checkpoint(self._payload(training=getattr(self, "_final_training", None)), path)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "auto") -> Self:
        """Rebuild a model from a checkpoint file (read with `weights_only=True`)."""
        payload = load_checkpoint(path)
        check_payload(payload, path)
        try:
            config = {k: v for k, v in payload["config"].items() if k in PARAMETERS}
            config["hidden_dims"] = tuple(config["hidden_dims"])
            config["device"] = device
            vae = cls(**config)
            vae.device_ = resolve_device(device)
            vae.model_config_ = ModelConfig.from_dict(payload["model_config"])
            vae.model_ = build_model(vae.model_config_)
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
        except (KeyError, TypeError, RuntimeError, ValueError, AttributeError, IndexError) as exc:
            raise DataError(f"{path}: checkpoint content is incomplete or does not match the model ({exc})") from exc
        # no optimiser: a loaded model scores and reconstructs; `resume` makes one (a second's import saved)
        vae._state = TrainState(epoch=len(history), history=history, best_epoch=int(section(payload, "best_epoch")))
        vae._final_training = section(payload, "training")
        vae.history_ = pd.DataFrame(history)
        return vae

    def _restore_training(self, training: dict[str, Any], where: Path) -> None:
        """Put the model, optimiser, generators and loop state back as the `training` section
        recorded them, for this process of this run."""
        rank, world = dist_info()
        self.optimizer_ = make_optimizer(self.model_, self.learning_rate, self.device_)
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
               learning_rate: float | None = None, device: str = "auto") -> Self:
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
        check_compatible(vae.wavenumbers_, len(vae.wavenumbers_), train, train.source, "the checkpoint")
        train = vae._training_pixels(train.preprocessed(vae.preprocessor_), shared=True)  # every process resumes
        val = None if validation is None else as_dataset(validation).preprocessed(vae.preprocessor_)
        val = None if val is None else vae._training_pixels(val, shared=True)
        vae.train_source_ = train.source
        return vae._run(train, val, checkpoint_dir if checkpoint_dir is not None else checkpoint.parent)


