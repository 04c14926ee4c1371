"""The training loop: warm-up, clipped steps, recovery from a non-finite loss, validation, early
stopping, checkpoints at epoch ends and within long epochs, progress, history."""

from __future__ import annotations

import copy
import importlib
import math
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch

from ..core.distributed import (
    all_reduce,
    all_reduce_tensor,
    average_gradients,
    dist_info,
    gather_objects,
    init_distributed,
)
from ..core.errors import TrainingError, TrainingWarning
from .batches import PixelBatches
from .loss import elbo_loss
from .networks import VAE
from .schedule import (
    TrainConfig,
    TrainState,
    learning_rate,
    on_plateau,
    plan_epochs,
)

__all__ = ["PRECISIONS", "PixelBatches", "TrainConfig", "TrainState", "clip_gradients", "dist_info",
           "init_distributed", "learning_rate", "make_optimizer", "plan_epochs", "resolve_device", "train_loop"]

VALIDATION_SEED = 12345  # validation draws the same ε every epoch, so its curve is comparable
SYNC_EVERY = 64  # on an accelerator, the loss is checked for divergence every this many batches
PRECISIONS = ("fp32", "bf16")
# Adam's second-moment average spans about 1/(1 − β₂) steps: 1000 with the usual 0.999, too slow to
# follow the gradients' scale, so a streak of larger gradients took steps many times too long (the
# batch error 10–38× its recent median, for 50–75 steps, in long default runs); 50 steps follow it.
# Measured in benchmarks/RESULTS.md, "Stability".
ADAM_BETAS = (0.9, 0.98)
CLIP_FACTOR = 4.0  # a step's gradient norm is clipped to this many times its running average
CLIP_MOMENTUM = 0.01  # weight of each step in that running average
RECOVERY_LR_FACTOR = 0.5  # each recovery halves the learning rate
SNAPSHOT_EVERY = 256  # steps between the in-memory states that a recovery rolls back to
PROGRESS_DELAY = 10.0  # seconds into an epoch before a bar of its batches appears


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """`auto` picks CUDA, then Apple MPS, then CPU."""
    if str(device) != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device() if dist_info()[1] > 1 else 0)
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def warm_up_optimizers() -> threading.Thread | None:
    """Torch's optimisers import about a second of code (torch._dynamo) the first time one is made: start
    that import in a thread, so it overlaps the passes over the data that come first. None if done already."""
    if "torch._dynamo" in sys.modules:
        return None
    thread = threading.Thread(target=importlib.import_module, args=("torch._dynamo",), daemon=True,
                              name="spectra-vae-warm-up")
    thread.start()
    return thread


def make_optimizer(model: torch.nn.Module, learning_rate: float, device: torch.device) -> torch.optim.Adam:
    """Adam with `ADAM_BETAS`, the fused kernel where this torch has one for the device (one pass over
    all parameters per step instead of one per parameter tensor: CUDA, and CPU since torch 2.4),
    else the multi-tensor one."""
    params = list(model.parameters())
    if device.type in ("cuda", "cpu"):
        try:
            return torch.optim.Adam(params, lr=learning_rate, betas=ADAM_BETAS, fused=True)
        except (RuntimeError, TypeError):  # an older torch without the fused kernel here
            pass
    return torch.optim.Adam(params, lr=learning_rate, betas=ADAM_BETAS, foreach=device.type != "mps" or None)


def clip_gradients(parameters: Iterable[torch.nn.Parameter], running: torch.Tensor) -> torch.Tensor:
    """Clip the gradient norm to `CLIP_FACTOR` × `running`, its running average (0: none yet), and
    return the updated average. On the device: no host synchronisation.

    The scale of the gradients follows the calibrated noise level, so a fixed threshold would mean
    nothing; what clipping guards against is one step far above the recent ones (under Adam, it
    would also inflate the second-moment estimate and stall the steps after it).
    """
    grads = [p.grad for p in parameters if p.grad is not None]
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    limit = torch.where(running > 0, CLIP_FACTOR * running, norm)
    torch._foreach_mul_(grads, (limit / (norm + 1e-12)).clamp(max=1.0))
    return torch.where(running > 0, (1 - CLIP_MOMENTUM) * running + CLIP_MOMENTUM * torch.minimum(norm, limit), norm)


def _evaluate(model: VAE, batches: PixelBatches, kind: str, beta: float,
              scale: torch.Tensor) -> dict[str, float]:
    """Validation terms; in a distributed run each process scores its shard and the sums are combined."""
    sums = all_reduce(_eval_sums(model, batches, kind, beta, scale))
    total, rec, kl, sq = sums[:4] / max(sums[4], 1)
    return {"loss": total, "reconstruction": rec, "kl": kl, "rmse": math.sqrt(sq)}


def _eval_sums(model: VAE, batches: PixelBatches, kind: str, beta: float,
               scale: torch.Tensor) -> np.ndarray:
    """Loss terms with ε from a fixed seed, and RMSE of the latent-mean reconstruction (absorbance).

    Sums stay on the device until the end, so an accelerator is not stopped after every batch.
    """
    model.eval()
    gen = torch.Generator(device=batches.device).manual_seed(VALIDATION_SEED + dist_info()[0])
    sums = torch.zeros(4, dtype=torch.float64, device=batches.device)
    n = 0
    with torch.no_grad():
        for x in batches.epoch(None):
            target = model.target(x)
            x_hat, mu, logvar, x_mean = model.forward_and_infer(x, generator=gen)
            terms = elbo_loss(target, x_hat, mu, logvar, kind=kind, beta=beta, log_noise_var=model.noise_log_var())
            sq = ((x_mean - target) * scale).pow(2).mean(dim=1).sum()
            m = x.shape[0]
            sums += torch.stack([terms.total * m, terms.reconstruction * m, terms.kl * m, sq]).double()
            n += m
    return np.append(sums.cpu().numpy(), n)


def _check_every(device: torch.device) -> int:
    """Batches between divergence checks: reading the loss back waits for the device, which on
    CPU costs nothing, so every batch; on an accelerator every `SYNC_EVERY`."""
    return 1 if device.type == "cpu" else SYNC_EVERY


class _NonFinite(Exception):
    """The loss stopped being finite in some process; every process raises it at the same batch."""

    def __init__(self, epoch: int, batch: int, check_every: int, terms: Any) -> None:
        total = terms.total.item()
        if math.isfinite(total):
            where = f"loss became non-finite in another process at epoch {epoch}, batch {batch}"
        elif check_every == 1:
            where = f"loss became {total} at epoch {epoch}, batch {batch}"
        else:
            where = (f"loss became non-finite at epoch {epoch}, in one of batches "
                     f"{max(1, (batch - 1) // check_every * check_every + 1)}–{batch}")
        super().__init__(f"{where} (last batch: reconstruction {terms.reconstruction.item():.4g}, "
                         f"kl {terms.kl.item():.4g})")
        self.epoch, self.batch = epoch, batch


class _Loop:
    """One call of `train_loop`. Reads top to bottom: run → epoch → pass over batches → step."""

    def __init__(self, model: VAE, optimizer: torch.optim.Optimizer, train: PixelBatches,
                 validation: PixelBatches | None, config: TrainConfig, state: TrainState,
                 generators: dict[str, torch.Generator], scale: torch.Tensor,
                 on_epoch_end: Callable[[TrainState, bool], None] | None,
                 on_checkpoint: Callable[[TrainState], None] | None, progress: bool) -> None:
        if config.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}; got {config.precision!r}")
        self.model, self.optimizer, self.train, self.validation = model, optimizer, train, validation
        self.config, self.state, self.generators, self.scale = config, state, generators, scale
        self.on_epoch_end, self.on_checkpoint = on_epoch_end, on_checkpoint
        self.rank, self.world = dist_info()
        self.progress = progress and self.rank == 0
        self.check_every = _check_every(train.device)
        self.device = train.device
        self.last_checkpoint = time.monotonic()
        self.snapshots: list[dict[str, Any]] = []
        self.grad_norm = torch.tensor(state.grad_norm, dtype=torch.float32, device=self.device)
        if state.epoch_rng is None:
            state.epoch_rng = generators["shuffle"].get_state()

    # -- run and epoch ----------------------------------------------------------------------
    def run(self) -> TrainState:
        from tqdm.auto import tqdm

        st = self.state
        bar = tqdm(total=self.config.epochs, initial=st.epoch, desc="training", unit="epoch",
                   disable=not self.progress)
        try:
            while st.epoch < self.config.epochs and not st.stopped_early:
                row = self._epoch(st.epoch + 1)
                bar.update(1)
                bar.set_postfix({k: f"{row[k]:.4g}" for k in ("train_loss", "val_loss", "val_rmse") if k in row})
        finally:
            bar.close()
        return st

    def _epoch(self, epoch: int) -> dict[str, float]:
        st, cfg = self.state, self.config
        self.t_epoch = time.perf_counter() - st.epoch_seconds
        events_before = len(st.events)
        # Loss sums (total, reconstruction, KL, pixels) stay on the device; a run resumed within
        # an epoch starts from the sums of its first part, held by the first process.
        self.sums = torch.zeros(5, dtype=torch.float64, device=self.device)
        if st.epoch_sums is not None and self.rank == 0:  # four sums in checkpoints written before train_rmse
            self.sums += torch.tensor((list(st.epoch_sums) + [0.0])[:5], dtype=torch.float64, device=self.device)
        self.snapshots = [self._snapshot()]
        while True:
            try:
                self._pass(epoch)
                break
            except _NonFinite as bad:
                self._recover(bad)
        sums = all_reduce(self.sums.cpu().numpy())
        n = max(sums[3], 1)
        row: dict[str, float] = {"epoch": epoch, "train_loss": sums[0] / n,
                                 "train_reconstruction": sums[1] / n, "train_kl": sums[2] / n,
                                 "train_rmse": math.sqrt(sums[4] / n)}
        if self.validation is not None:
            v = _evaluate(self.model, self.validation, cfg.kind, cfg.beta, self.scale)
            row |= {"val_loss": v["loss"], "val_reconstruction": v["reconstruction"],
                    "val_kl": v["kl"], "val_rmse": v["rmse"]}
        row |= {"lr": learning_rate(cfg, st), "recoveries": len(st.events) - events_before,
                "seconds": time.perf_counter() - self.t_epoch}
        # The kept weights and early stopping follow the reconstruction error in absorbance units at
        # the latent mean on validation data (on training data at sampled z without them).
        key = "val_rmse" if "val_rmse" in row else "train_rmse"
        monitored = row[key]
        improved = monitored < st.best_loss
        if improved:
            st.best_loss, st.best_epoch, st.bad_epochs = monitored, epoch, 0
            st.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        else:
            st.bad_epochs += 1
        st.epoch, st.batch, st.epoch_sums, st.epoch_seconds = epoch, 0, None, 0.0
        st.epoch_rng = self.generators["shuffle"].get_state()
        st.history.append(row)
        if cfg.patience and st.bad_epochs >= cfg.patience:
            st.stopped_early = True
        if cfg.plateau:
            # A plateau begins the final decay of the learning rate over one more window; its end ends training.
            if st.anneal_start is None and on_plateau([r.get(key, math.nan) for r in st.history], cfg.plateau,
                                                      cfg.plateau_tolerance):
                st.anneal_start, st.anneal_steps = st.step, cfg.plateau * len(self.train)
            elif st.anneal_start is not None and st.step >= st.anneal_start + st.anneal_steps:
                st.stopped_early = True
        self._gather_rng()
        if self.on_epoch_end is not None:
            self.on_epoch_end(st, improved)
        self.last_checkpoint = time.monotonic()
        return row

    # -- the batches of one epoch -------------------------------------------------------------
    def _pass(self, epoch: int) -> None:
        """Train on the epoch's batches from `state.batch` on; raises `_NonFinite` (in every process)."""
        from tqdm.auto import tqdm

        st, cfg, train = self.state, self.config, self.train
        n_batches = len(train)
        shuffle = self.generators["shuffle"]
        assert st.epoch_rng is not None  # set in __init__ and at the end of every epoch
        shuffle.set_state(st.epoch_rng)  # the epoch's order, whether it starts here or resumes
        amp = cfg.precision == "bf16"
        bar = tqdm(total=n_batches, initial=st.batch, desc=f"epoch {epoch}", unit="batch", leave=False,
                   delay=PROGRESS_DELAY, disable=not self.progress)
        pixels, t_bar = 0, time.perf_counter()
        try:
            for x in train.epoch(shuffle, start=st.batch):
                b = st.batch + 1
                for group in self.optimizer.param_groups:
                    group["lr"] = learning_rate(cfg, st)
                with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
                    x_hat, mu, logvar = self.model(x, generator=self.generators["sample"])
                x_hat, mu, logvar = x_hat.float(), mu.float(), logvar.float()  # the loss in float32
                target = self.model.target(x)
                if cfg.kind == "gaussian":
                    self.model.update_noise(self._mean_squared_residual(target, x_hat))
                terms = elbo_loss(target, x_hat, mu, logvar, kind=cfg.kind, beta=cfg.beta,
                                  log_noise_var=self.model.noise_log_var())
                m = x.shape[0]
                sq = ((x_hat.detach() - target) * self.scale).pow(2).mean(dim=1).sum()
                self.sums += torch.stack([terms.total.detach() * m, terms.reconstruction.detach() * m,
                                          terms.kl.detach() * m, terms.total.new_tensor(m), sq]).double()
                checked = b % self.check_every == 0 or b == n_batches
                checkpoint_due = False
                if checked:
                    # One small collective at each check: every process learns whether any saw a
                    # non-finite loss, and whether the first wants a checkpoint now.
                    flags = all_reduce_tensor(torch.stack([(~torch.isfinite(self.sums[0])).double(),
                                                           self.sums.new_tensor(self._checkpoint_due())]), "max")
                    bad, checkpoint_due = (bool(f) for f in flags.tolist())
                    if bad:
                        raise _NonFinite(epoch, b, self.check_every, terms)
                self.optimizer.zero_grad(set_to_none=True)
                terms.total.backward()
                average_gradients(self.model.parameters())  # over the processes of a distributed run
                self.grad_norm = clip_gradients(self.model.parameters(), self.grad_norm)
                self.optimizer.step()
                st.batch, st.step = b, st.step + 1
                pixels += m
                if self.progress and (b % 16 == 0 or b == n_batches):
                    seconds = time.perf_counter() - t_bar
                    bar.update(b - bar.n)  # the end of an epoch long enough to show is always shown
                    bar.set_postfix_str(f"{pixels / seconds:,.0f} px/s",
                                        refresh=b == n_batches and seconds >= PROGRESS_DELAY)
                if checked and st.step - self.snapshots[-1]["step"] >= SNAPSHOT_EVERY:
                    self.snapshots = [self.snapshots[-1], self._snapshot()]
                if checkpoint_due and b < n_batches:
                    self._checkpoint_within_epoch()
        finally:
            bar.close()

    def _mean_squared_residual(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        """Per channel, the batch's mean squared residual; in a distributed run over every
        process's batch, so the calibrated noise level is the same in all of them."""
        r = (x - x_hat).detach().pow(2)
        if self.world == 1:
            return r.mean(dim=0)
        packed = all_reduce_tensor(torch.cat([r.sum(dim=0), r.new_tensor([x.shape[0]])]))
        return packed[:-1] / packed[-1]

    # -- recovery -------------------------------------------------------------------------------
    def _snapshot(self) -> dict[str, Any]:
        """What a recovery rolls back to: weights, noise level, optimiser, ε generator, position."""
        st = self.state
        return {"model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
                "noise_initialised": self.model.noise_initialised,
                "optimizer": copy.deepcopy(self.optimizer.state_dict()),
                "sample": self.generators["sample"].get_state(), "sums": self.sums.clone(),
                "batch": st.batch, "step": st.step, "grad_norm": self.grad_norm.clone()}

    def _restore(self, snap: dict[str, Any]) -> None:
        st = self.state
        self.model.load_state_dict(snap["model"])
        self.model.noise_initialised = snap["noise_initialised"]
        self.optimizer.load_state_dict(copy.deepcopy(snap["optimizer"]))
        self.generators["sample"].set_state(snap["sample"])
        self.sums = snap["sums"].clone()
        st.batch, st.step, self.grad_norm = snap["batch"], snap["step"], snap["grad_norm"].clone()

    def _recover(self, bad: _NonFinite) -> None:
        """Roll back to the older kept state (at least `SNAPSHOT_EVERY` steps back, or the epoch's
        start) and lower the learning rate; after `max_recoveries` of these, raise `TrainingError`
        with the model left at that finite state."""
        st, cfg = self.state, self.config
        snap = self.snapshots[0]
        self._restore(snap)
        self.snapshots = [snap]
        if len(st.events) >= cfg.max_recoveries:
            tried = (f" after {len(st.events)} recoveries (each halving the learning rate)" if st.events else "")
            raise TrainingError(f"{bad}{tried}; training stopped, rolled back to its last finite state (epoch "
                                f"{bad.epoch} after batch {snap['batch']}); try a lower learning_rate") from None
        st.lr_scale *= RECOVERY_LR_FACTOR
        event = {"epoch": bad.epoch, "batch": bad.batch, "rolled_back_to_batch": snap["batch"],
                 "peak_learning_rate": cfg.learning_rate * st.lr_scale, "error": str(bad)}
        st.events.append(event)
        if self.rank == 0:
            warnings.warn(f"{bad}: rolled back to batch {snap['batch']} of epoch {bad.epoch} and halved the "
                          f"learning rate (its peak is now {event['peak_learning_rate']:.3g}; recovery "
                          f"{len(st.events)} of at most {cfg.max_recoveries})", TrainingWarning, stacklevel=2)

    # -- checkpoints within an epoch ------------------------------------------------------------
    def _checkpoint_due(self) -> bool:
        seconds = self.config.checkpoint_seconds
        return (self.rank == 0 and self.on_checkpoint is not None and seconds is not None
                and time.monotonic() - self.last_checkpoint >= seconds)

    def _checkpoint_within_epoch(self) -> None:
        """Every process: agree on the loss sums so far and gather generator states; the callback
        (which writes only in the first process) then saves a state from which resuming is exact."""
        st = self.state
        st.epoch_sums = all_reduce(self.sums.cpu().numpy()).tolist()
        st.epoch_seconds = time.perf_counter() - self.t_epoch
        self._gather_rng()
        assert self.on_checkpoint is not None
        self.on_checkpoint(st)
        st.epoch_sums = None
        self.last_checkpoint = time.monotonic()

    def _gather_rng(self) -> None:
        """Every process's generator states, in rank order (the shuffle one as of the epoch's start),
        before a checkpoint is written; and the running gradient norm as a number."""
        self.state.grad_norm = float(self.grad_norm)
        mine = {"shuffle": self.state.epoch_rng, "sample": self.generators["sample"].get_state()}
        self.state.rng = gather_objects(mine)


def train_loop(model: VAE, optimizer: torch.optim.Optimizer, train: PixelBatches,
               validation: PixelBatches | None, config: TrainConfig, state: TrainState,
               generators: dict[str, torch.Generator], scale: torch.Tensor, *,
               on_epoch_end: Callable[[TrainState, bool], None] | None = None,
               on_checkpoint: Callable[[TrainState], None] | None = None,
               progress: bool = True) -> TrainState:
    """Train until `config.epochs` epochs are complete, `patience` epochs pass without improvement, or
    (with `config.plateau`) one window after the best RMSE stopped improving by `plateau_tolerance`
    over that many epochs: the plateau begins a final decay of the learning rate over one more window.

    The monitored value is the validation RMSE (absorbance units, at the latent mean) when there is
    validation data, else the training RMSE. `on_epoch_end(state, improved)` is called after every
    epoch and `on_checkpoint(state)` within an epoch every `config.checkpoint_seconds` (checkpoints go
    there; `state.batch` says how far the epoch got). `generators` holds `shuffle` (the order of
    pixels) and `sample` (ε). In a distributed run the gradients are averaged over the processes at every step and the
    sums are combined, so every process takes the same steps and sees the same history.
    `precision="bf16"` runs the forward pass under bfloat16 autocast (the output layer and the
    loss stay float32). A non-finite loss rolls the run back and lowers the learning rate, at
    most `config.max_recoveries` times (each recorded in `state.events` and the history, and
    warned), then raises `TrainingError` with the model at its last finite state.
    """
    return _Loop(model, optimizer, train, validation, config, state, generators, scale,
                 on_epoch_end, on_checkpoint, progress).run()
