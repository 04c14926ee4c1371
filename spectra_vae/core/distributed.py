"""Data-parallel runs: which process this is, joining torchrun's process group, combining values."""

from __future__ import annotations

import atexit
import importlib
import os
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch


def dist_info() -> tuple[int, int]:
    """(rank, world size) of the distributed run this process belongs to; (0, 1) when alone."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def init_distributed() -> tuple[int, int]:
    """Join the process group that `torchrun` describes in the environment (gloo on CPU, NCCL on GPU).

    Works for one machine (`--standalone`) and several (`--nnodes N --rdzv-backend c10d`): torchrun
    sets RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous address; this only reads them.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and torch.distributed.is_available() and not torch.distributed.is_initialized():
        # Imported after the group exists, torch._dynamo (which the first optimiser imports) keeps the
        # group alive past `destroy_process_group` (torch 2.13): its threads then run into interpreter
        # shutdown, where one can abort the process (RESULTS §4). Imported first, it does not.
        importlib.import_module("torch._dynamo")

        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        torch.distributed.init_process_group(backend)
        atexit.register(_leave)
    return dist_info()


def _leave() -> None:
    """Destroy the process group this module joined, at interpreter exit. A gloo group left to the
    C++ destructors can abort its process as it exits ("terminate called without an active
    exception", SIGABRT after the work was done), which torchrun then reports as a failed run; a
    user's own script that calls `init_distributed` (or `fit` under torchrun) need not clean up."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def broadcast_module(module: torch.nn.Module) -> None:
    """The first process's parameters and buffers copied into every process's `module`, so that all
    start from the same weights (a fresh model's initialisation; a resumed one is the same already)."""
    if dist_info()[1] == 1:
        return
    with torch.no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            torch.distributed.broadcast(t, src=0)


def average_gradients(parameters: Iterable[torch.nn.Parameter]) -> None:
    """Every process's gradients replaced by their mean over the processes, with one all-reduce of
    all of them flattened; nothing when alone. This is the one thing DistributedDataParallel did for
    training here (in buckets, during backward). Its wrapper kept the process group alive past
    `destroy_process_group`, so the group's threads ran on into interpreter shutdown, where one of
    them could abort the process (SIGABRT) after the work was done."""
    world = dist_info()[1]
    if world == 1:
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    flat = all_reduce_tensor(torch.cat([g.reshape(-1) for g in grads])).div_(world)
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


_OPS = {"sum": "SUM", "min": "MIN", "max": "MAX"}


def all_reduce(values: np.ndarray, op: str = "sum") -> np.ndarray:
    """Sum (or min, max) an array over the processes of a distributed run (float64); identity when alone."""
    if dist_info()[1] == 1:
        return values
    t = torch.tensor(np.asarray(values, dtype=np.float64))  # a copy: the caller's array stays as it was
    if torch.distributed.get_backend() == "nccl":
        t = t.cuda()
    torch.distributed.all_reduce(t, op=getattr(torch.distributed.ReduceOp, _OPS[op]))
    return t.cpu().numpy()


def all_reduce_tensor(t: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """`all_reduce` of a tensor that stays on its device (no host synchronisation); in place."""
    if dist_info()[1] > 1:
        torch.distributed.all_reduce(t, op=getattr(torch.distributed.ReduceOp, _OPS[op]))
    return t


def gather_objects(obj: Any) -> list[Any]:
    """Every process's `obj` (picklable), in rank order, on every process; `[obj]` when alone."""
    world = dist_info()[1]
    if world == 1:
        return [obj]
    out: list[Any] = [None] * world
    torch.distributed.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any) -> Any:
    """Rank 0's `obj` on every process."""
    if dist_info()[1] == 1:
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]
