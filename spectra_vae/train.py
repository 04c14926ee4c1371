"""The training loop: batches, per-epoch validation, early stopping, atomic checkpoints, history."""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data import SpectralDataset
from .errors import DataError, TrainingError
from .loss import elbo_loss
from .model import VAE
from .normalise import Normaliser

IN_MEMORY_BYTES = 2 * 1024**3  # datasets up to this size (float32, normalised) are held in memory
GPU_MEMORY_FRACTION = 0.5  # on CUDA: up to this fraction of the free device memory
STREAM_BLOCK = 8192  # pixels read per block when streaming from disk
STREAM_BUFFER_BLOCKS = 16  # blocks (drawn across scans) shuffled together when streaming
VALIDATION_SEED = 12345  # validation draws the same ε every epoch, so its curve is comparable
SYNC_EVERY = 64  # on an accelerator, the loss is checked for divergence every this many batches
PRECISIONS = ("fp32", "bf16")


def dist_info() -> tuple[int, int]:
    """(rank, world size) of the distributed run this process belongs to; (0, 1) when alone."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def init_distributed() -> tuple[int, int]:
    """Join the process group that `torchrun` describes in the environment (gloo on CPU, NCCL on GPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and torch.distributed.is_available() and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        torch.distributed.init_process_group(backend)
    return dist_info()


def all_reduce(values: np.ndarray, op: str = "sum") -> np.ndarray:
    """Sum (or min) an array over the processes of a distributed run; identity when alone."""
    if dist_info()[1] == 1:
        return values
    t = torch.as_tensor(np.asarray(values, dtype=np.float64))
    if torch.distributed.get_backend() == "nccl":
        t = t.cuda()
    reduce_op = torch.distributed.ReduceOp.MIN if op == "min" else torch.distributed.ReduceOp.SUM
    torch.distributed.all_reduce(t, op=reduce_op)
    return t.cpu().numpy()


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


def in_memory_budget(device: torch.device) -> int:
    """Bytes of normalised data held on `device` rather than streamed: `IN_MEMORY_BYTES` of host
    memory, or on CUDA `GPU_MEMORY_FRACTION` of the device memory that is free."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * GPU_MEMORY_FRACTION)
    return IN_MEMORY_BYTES


def make_optimizer(model: torch.nn.Module, learning_rate: float, device: torch.device) -> torch.optim.Adam:
    """Adam; on CUDA the fused kernel (one launch per step instead of one per parameter)."""
    return torch.optim.Adam(model.parameters(), lr=learning_rate, fused=device.type == "cuda" or None)


class PixelBatches:
    """Normalised pixel batches of a dataset as tensors on `device`.

    Data that fit in `in_memory_bytes` (default `in_memory_budget(device)`) are read once,
    chunk by chunk, into one tensor on the device and reshuffled there in full every epoch.
    Larger data are streamed: blocks of consecutive pixels are drawn in random order across all
    scans, `STREAM_BUFFER_BLOCKS` blocks at a time are pooled, and the pool is shuffled pixel by
    pixel, so every batch mixes pixels from up to that many places in the data set.
    """

    def __init__(self, data: SpectralDataset, normaliser: Normaliser, batch_size: int,
                 device: torch.device, in_memory_bytes: int | None = None,
                 max_batches: int | None = None) -> None:
        self.data, self.batch_size, self.device = data, batch_size, device
        self.max_batches = max_batches  # a distributed run makes every process take as many steps
        self.normaliser = normaliser
        budget = in_memory_budget(device) if in_memory_bytes is None else in_memory_bytes
        self.in_memory = len(data) * data.n_channels * 4 <= budget
        self._tensor: torch.Tensor | None = None
        if self.in_memory:
            self._tensor = torch.empty((len(data), data.n_channels), dtype=torch.float32, device=device)
            s = 0
            for c in data.iter_chunks():  # one chunk at a time: no second copy of the data on the host
                self._tensor[s : s + len(c)] = torch.from_numpy(normaliser.transform(c))
                s += len(c)

    def __len__(self) -> int:
        n = math.ceil(len(self.data) / self.batch_size)
        return n if self.max_batches is None else min(n, self.max_batches)

    def epoch(self, generator: torch.Generator | None) -> Iterator[torch.Tensor]:
        """One pass in random order (`generator`) or in dataset order (None)."""
        for b, x in enumerate(self._epoch(generator)):
            if self.max_batches is not None and b >= self.max_batches:
                return
            yield x

    def _epoch(self, generator: torch.Generator | None) -> Iterator[torch.Tensor]:
        if self._tensor is not None:
            n = self._tensor.shape[0]
            if generator is None:
                for s in range(0, n, self.batch_size):
                    yield self._tensor[s : s + self.batch_size]
                return
            order = torch.randperm(n, generator=generator).to(self.device)
            for s in range(0, n, self.batch_size):
                yield self._tensor.index_select(0, order[s : s + self.batch_size])
            return
        yield from self._stream(generator)

    def stream_pools(self, generator: torch.Generator | None) -> Iterator[np.ndarray]:
        """Dataset positions of each pool, in the order streaming reads them (shuffled with `generator`).

        `generator` is drawn from once per epoch, on the first pool (the block order and a seed
        for the pools' own shuffles), however many pools are then read.
        """
        n = len(self.data)
        starts = np.arange(0, n, STREAM_BLOCK)
        seed = 0
        if generator is not None:
            starts = starts[torch.randperm(len(starts), generator=generator).numpy()]
            seed = int(torch.randint(2**62, (1,), generator=generator))
        for k, g in enumerate(range(0, len(starts), STREAM_BUFFER_BLOCKS)):
            idx = np.concatenate([np.arange(s, min(s + STREAM_BLOCK, n)) for s in starts[g : g + STREAM_BUFFER_BLOCKS]])
            yield idx if generator is None else idx[np.random.default_rng((seed, k)).permutation(len(idx))]

    def _load_pool(self, idx: np.ndarray) -> torch.Tensor:
        """Read and normalise one pool (in a worker thread); in pinned memory when bound for CUDA."""
        t = torch.from_numpy(self.normaliser.transform(self.data.read(idx)))
        return t.pin_memory() if self.device.type == "cuda" else t

    def _stream(self, generator: torch.Generator | None) -> Iterator[torch.Tensor]:
        # The next pool is read from disk and normalised in a worker thread while this one
        # trains: disk reads and page faults (numpy releases the GIL) overlap the model's work.
        pools = self.stream_pools(generator)
        carry: torch.Tensor | None = None  # the last pool's pixels short of a whole batch
        bs = self.batch_size
        init: dict[str, Any] = {}
        if self.device.type == "cuda":  # pin in the training process's own GPU context, not GPU 0's
            index = self.device.index if self.device.index is not None else torch.cuda.current_device()
            init = {"initializer": torch.cuda.set_device, "initargs": (index,)}
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="spectra-vae-read", **init) as reader:
            pending = reader.submit(self._load_pool, next(pools)) if len(self.data) else None
            while pending is not None:
                pool = pending.result()
                idx = next(pools, None)
                pending = None if idx is None else reader.submit(self._load_pool, idx)
                pool = pool.to(self.device, non_blocking=pool.is_pinned())
                s = 0
                if carry is not None:
                    if len(carry) + len(pool) < bs:
                        carry = torch.cat([carry, pool])
                        continue
                    s = bs - len(carry)
                    yield torch.cat([carry, pool[:s]])
                full = s + (len(pool) - s) // bs * bs
                for i in range(s, full, bs):
                    yield pool[i : i + bs]
                carry = pool[full:] if full < len(pool) else None
        if carry is not None:
            yield carry


# -- checkpoints -----------------------------------------------------------------------------
def save_checkpoint(payload: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write atomically: a temporary file in the same directory, fsync, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a writer that was killed
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):
            raise OSError(exc.errno, f"could not write checkpoint {path} ({exc.strerror}); "
                          "the previous file there is unchanged") from exc
        raise
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass  # some file systems cannot fsync a directory; the rename itself is atomic
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with `weights_only=True`: tensors and plain containers, never pickled code."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ... here
        raise DataError(f"{path}: not a loadable spectra_vae checkpoint (refused or unreadable: "
                        f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from exc
    if not isinstance(payload, dict) or payload.get("format") != "spectra_vae.checkpoint":
        raise DataError(f"{path}: not a spectra_vae checkpoint")
    return payload


# -- the loop --------------------------------------------------------------------------------
@dataclass
class TrainState:
    """What a resumed run needs besides weights and optimiser state."""

    epoch: int = 0  # epochs completed
    best_epoch: int = 0
    best_loss: float = math.inf
    bad_epochs: int = 0
    stopped_early: bool = False
    history: list[dict[str, float]] = field(default_factory=list)
    best_state: dict[str, torch.Tensor] | None = None


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
            x_hat, mu, logvar = model(x, generator=gen)
            terms = elbo_loss(x, x_hat, mu, logvar, kind=kind, beta=beta, log_noise_var=model.noise_log_var())
            sq = ((model.decode(mu) - x) * scale).pow(2).mean(dim=1).sum()
            m = x.shape[0]
            sums += torch.stack([terms.total * m, terms.reconstruction * m, terms.kl * m, sq]).double()
            n += m
    return np.append(sums.cpu().numpy(), n)


def _check_every(device: torch.device) -> int:
    """Batches between divergence checks: reading the loss back waits for the device, which on
    CPU costs nothing, so every batch; on an accelerator every `SYNC_EVERY`."""
    return 1 if device.type == "cpu" else SYNC_EVERY


def _diverged(epoch: int, batch: int, check_every: int, terms: Any) -> TrainingError:
    """The error for a loss that stopped being finite, found when batch `batch` was checked."""
    if check_every == 1:
        where = f"loss became {terms.total.item()} at epoch {epoch}, batch {batch}"
    else:
        where = (f"loss became non-finite at epoch {epoch}, in one of batches "
                 f"{max(1, (batch - 1) // check_every * check_every + 1)}–{batch}")
    return TrainingError(f"{where} (last batch: reconstruction {terms.reconstruction.item():.4g}, "
                         f"kl {terms.kl.item():.4g}); try a lower learning_rate; the best checkpoint so far is kept")


def train_loop(model: VAE, optimizer: torch.optim.Optimizer, train: PixelBatches,
               validation: PixelBatches | None, *, epochs: int, kind: str, beta: float,
               patience: int | None, state: TrainState, generator: torch.Generator,
               sample_generator: torch.Generator, scale: torch.Tensor,
               on_epoch_end: Callable[[TrainState, bool], None] | None = None,
               progress: bool = True, forward: torch.nn.Module | None = None,
               precision: str = "fp32") -> TrainState:
    """Train until `epochs` epochs are complete or `patience` epochs pass without improvement.

    The monitored loss is the validation loss when there is validation data, else the training
    loss. `on_epoch_end(state, improved)` is called after every epoch (checkpoints go there).
    `forward` is the module to call (a DistributedDataParallel wrapper of `model` in a
    distributed run); sums are combined over processes so every process sees the same history.
    `precision="bf16"` runs the forward pass under bfloat16 autocast (the output layer and
    the loss stay float32); "fp32" is plain float32.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}; got {precision!r}")
    amp = precision == "bf16"
    check_every = _check_every(train.device)
    n_batches = len(train)
    from tqdm.auto import tqdm

    forward = model if forward is None else forward
    bar = tqdm(total=epochs, initial=state.epoch, desc="training", unit="epoch",
               disable=not progress or dist_info()[0] != 0)
    try:
        while state.epoch < epochs and not state.stopped_early:
            epoch = state.epoch + 1
            t0 = time.perf_counter()
            model.train()
            sums = torch.zeros(3, dtype=torch.float64, device=train.device)
            n_seen = 0
            for b, x in enumerate(train.epoch(generator), start=1):
                with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
                    x_hat, mu, logvar = forward(x, generator=sample_generator)
                x_hat, mu, logvar = x_hat.float(), mu.float(), logvar.float()  # the loss in float32
                if kind == "gaussian":
                    model.update_noise(x, x_hat)
                terms = elbo_loss(x, x_hat, mu, logvar, kind=kind, beta=beta,
                                  log_noise_var=model.noise_log_var())
                m = x.shape[0]
                sums += torch.stack([terms.total.detach() * m, terms.reconstruction.detach() * m,
                                     terms.kl.detach() * m]).double()
                n_seen += m
                # The sum turns non-finite with the first bad batch; the best checkpoint is kept.
                if (b % check_every == 0 or b == n_batches) and not torch.isfinite(sums[0]):
                    raise _diverged(epoch, b, check_every, terms)
                optimizer.zero_grad(set_to_none=True)
                terms.total.backward()
                optimizer.step()
            sums = all_reduce(np.append(sums.cpu().numpy(), n_seen))
            n = max(sums[3], 1)
            row: dict[str, float] = {"epoch": epoch, "train_loss": sums[0] / n,
                                     "train_reconstruction": sums[1] / n, "train_kl": sums[2] / n}
            if validation is not None:
                v = _evaluate(model, validation, kind, beta, scale)
                row |= {"val_loss": v["loss"], "val_reconstruction": v["reconstruction"],
                        "val_kl": v["kl"], "val_rmse": v["rmse"]}
            row["seconds"] = time.perf_counter() - t0
            monitored = row.get("val_loss", row["train_loss"])
            improved = monitored < state.best_loss
            if improved:
                state.best_loss, state.best_epoch, state.bad_epochs = monitored, epoch, 0
                state.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                state.bad_epochs += 1
            state.epoch = epoch
            state.history.append(row)
            if patience and state.bad_epochs >= patience:
                state.stopped_early = True
            if on_epoch_end is not None:
                on_epoch_end(state, improved)
            bar.update(1)
            bar.set_postfix({k: f"{row[k]:.4g}" for k in ("train_loss", "val_loss", "val_rmse") if k in row})
    finally:
        bar.close()
    return state
