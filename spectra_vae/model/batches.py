"""Pixel batches for training: held on the device when they fit, else streamed from the memory-mapped scans."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import math
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from ..preprocess.normalise import Normaliser, merge_stats

IN_MEMORY_BYTES = 2 * 1024**3  # datasets up to this size (float32, normalised) are held in memory
GPU_MEMORY_FRACTION = 0.5  # on CUDA: up to this fraction of the free device memory
STREAM_BLOCK = 8192  # pixels read per block when streaming from disk
STREAM_BUFFER_BLOCKS = 16  # blocks (drawn across scans) shuffled together when streaming
TRIM_EVERY = 4  # scoring batches between returns of freed heap memory to the system


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl): nothing to do
        return None


def release_freed_memory() -> None:
    """Give heap memory that has been freed back to the system (glibc's `malloc_trim`; a no-op
    elsewhere).

    Scoring a dataset allocates one batch's temporaries (about 30 MB) after another and keeps
    each batch's small results. Those sizes sit under glibc's adaptive mmap threshold, so the
    temporaries come from the heap, and the small results left between the freed blocks keep
    them from being returned: measured over 7 million pixels, the process grew by 6.8 GB of
    memory that was free but never released (about 1 KB per pixel). Trimming every
    `TRIM_EVERY` batches (measured on 2.3 million streamed pixels: every 32 left 1.2 GB, every 4
    0.56 GB, the same as a fixed mmap threshold; a trim takes microseconds) keeps it flat.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def in_memory_budget(device: torch.device) -> int:
    """Bytes of normalised data held on `device` rather than streamed: `IN_MEMORY_BYTES` of host
    memory, or on CUDA `GPU_MEMORY_FRACTION` of the device memory that is free."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * GPU_MEMORY_FRACTION)
    return IN_MEMORY_BYTES


STATS_CHUNK = 1 << 16  # pixels at a time for the statistics and the in-place normalisation


class PixelBatches:
    """Normalised pixel batches of a dataset as tensors on `device`.

    Data that fit in `in_memory_bytes` (default `in_memory_budget(device)`) are read once,
    chunk by chunk, into one tensor on the device and reshuffled there in full every epoch.
    Larger data are streamed: blocks of consecutive pixels are drawn in random order across all
    scans, `STREAM_BUFFER_BLOCKS` blocks at a time are pooled, and the pool is shuffled pixel by
    pixel, so every batch mixes pixels from up to that many places in the data set.
    """

    def __init__(self, data: Any, normaliser: Normaliser | None, batch_size: int,
                 device: torch.device, in_memory_bytes: int | None = None,
                 max_batches: int | None = None) -> None:
        self.data, self.batch_size, self.device = data, batch_size, device
        self.max_batches = max_batches  # a distributed run makes every process take as many steps
        self.normaliser = normaliser  # None: pixels as read until `set_normaliser`
        budget = in_memory_budget(device) if in_memory_bytes is None else in_memory_bytes
        self.in_memory = len(data) * data.n_channels * 4 <= budget
        self._tensor: torch.Tensor | None = None
        if self.in_memory:
            self._tensor = torch.empty((len(data), data.n_channels), dtype=torch.float32, device=device)
            s = 0
            for c in data.iter_chunks():  # one chunk at a time: no second copy of the data on the host
                block = normaliser.transform(c) if normaliser is not None else np.require(c, requirements="W")
                self._tensor[s : s + len(c)] = torch.from_numpy(block)
                s += len(c)

    def raw_stats(self, n_channels: int) -> Any:
        """Per-channel statistics (`spectra_vae.preprocess.normalise.PixelStats`) of the first `n_channels`
        values of the pixels held in memory, as read (before `set_normaliser`): each chunk's mean and sum of
        squared deviations in float32 on the device, merged across chunks in float64."""
        assert self._tensor is not None and self.normaliser is None
        stats = None
        for s in range(0, self._tensor.shape[0], STATS_CHUNK):
            b = self._tensor[s : s + STATS_CHUNK, :n_channels]
            mean = b.mean(dim=0)
            m2 = (b - mean).pow_(2).sum(dim=0)
            part = (b.shape[0], mean.double().cpu().numpy(), m2.double().cpu().numpy(),
                    b.amin(dim=0).double().cpu().numpy(), b.amax(dim=0).double().cpu().numpy())
            stats = merge_stats(stats, part)
        return stats

    def set_normaliser(self, normaliser: Normaliser) -> None:
        """Normalise from now on with `normaliser`: the pixels in memory in place, as `transform` would."""
        if self._tensor is not None and self.normaliser is None:
            offset, inverse = (torch.from_numpy(f).to(self.device) for f in
                               normaliser.float32_factors(self._tensor.shape[1]))
            for s in range(0, self._tensor.shape[0], STATS_CHUNK):
                self._tensor[s : s + STATS_CHUNK].sub_(offset).mul_(inverse)
        self.normaliser = normaliser

    def __len__(self) -> int:
        n = math.ceil(len(self.data) / self.batch_size)
        return n if self.max_batches is None else min(n, self.max_batches)

    def epoch(self, generator: torch.Generator | None, start: int = 0) -> Iterator[torch.Tensor]:
        """One pass in random order (`generator`) or in dataset order (None), from batch `start` on.

        The generator is drawn from as for a whole pass, so a pass begun at `start` with the
        generator in the state it had at the beginning gives the same batches as the rest of the
        whole pass, and leaves the generator in the same state.
        """
        for b, x in enumerate(self._epoch(generator, start * self.batch_size), start=start):
            if self.max_batches is not None and b >= self.max_batches:
                return
            yield x

    def _epoch(self, generator: torch.Generator | None, skip: int) -> Iterator[torch.Tensor]:
        if self._tensor is not None:
            n = self._tensor.shape[0]
            if generator is None:
                for s in range(skip, n, self.batch_size):
                    yield self._tensor[s : s + self.batch_size]
                return
            order = torch.randperm(n, generator=generator).to(self.device)
            for s in range(skip, n, self.batch_size):
                yield self._tensor.index_select(0, order[s : s + self.batch_size])
            return
        yield from self._stream(generator, skip)

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

    @staticmethod
    def _skip_pools(pools: Iterator[np.ndarray], skip: int) -> Iterator[np.ndarray]:
        for idx in pools:
            if skip >= len(idx):
                skip -= len(idx)
                continue
            yield idx[skip:]
            skip = 0

    def _load_pool(self, idx: np.ndarray) -> torch.Tensor:
        """Read and normalise one pool (in a worker thread); in pinned memory when bound for CUDA."""
        assert self.normaliser is not None  # streamed data are normalised as they are read
        t = torch.from_numpy(self.normaliser.transform(self.data.read(idx)))
        return t.pin_memory() if self.device.type == "cuda" else t

    def _stream(self, generator: torch.Generator | None, skip: int = 0) -> Iterator[torch.Tensor]:
        # The next pool is read from disk and normalised in a worker thread while this one
        # trains: disk reads and page faults (numpy releases the GIL) overlap the model's work.
        # Batches are consecutive runs of the pools' pixels, so skipping `skip` pixels (whole
        # batches) skips whole pools unread and the head of the next one.
        pools = self._skip_pools(self.stream_pools(generator), skip)
        carry: torch.Tensor | None = None  # the last pool's pixels short of a whole batch
        bs = self.batch_size
        init: dict[str, Any] = {}
        if self.device.type == "cuda":  # pin in the training process's own GPU context, not GPU 0's
            index = self.device.index if self.device.index is not None else torch.cuda.current_device()
            init = {"initializer": torch.cuda.set_device, "initargs": (index,)}
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="spectra-vae-read", **init) as reader:
            first = next(pools, None)
            pending = None if first is None else reader.submit(self._load_pool, first)
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
