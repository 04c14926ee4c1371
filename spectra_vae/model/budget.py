"""How much memory training a model would take, estimated from its configuration before anything is allocated.

The parameter table bounds each size on its own (latent_dim ≤ 1024, layers ≤ 65 536 wide, ≤ 16
layers, batches ≤ 2²⁰ pixels); together they can still ask for terabytes. Training holds each weight
four times (the weight, its gradient, Adam's two moments) and, per pixel of a batch, every layer's
activations a few times (forward values, their gradients, the activation function's mask). An
estimate above the memory of the device that would train is refused before the model is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..core.errors import DataError
from ..core.resources import gib, physical_memory

FLOAT_BYTES = 4
WEIGHT_COPIES = 4  # weight, gradient, Adam's first and second moments
ACTIVATION_COPIES = 3  # forward value, its gradient, the activation's mask


def layer_sizes(n_inputs: int, n_channels: int, latent_dim: int, hidden_dims: Sequence[int]) -> list[tuple[int, int]]:
    """(inputs, outputs) of every linear layer of the MLP encoder (to μ and log σ²) and its mirrored decoder."""
    h = [int(v) for v in hidden_dims]
    encoder = list(zip([n_inputs, *h[:-1]], h, strict=True)) if h else []
    width = h[-1] if h else n_inputs
    heads = [(width, latent_dim), (width, latent_dim)]
    back = h[::-1]
    decoder = list(zip([latent_dim, *back[:-1]], back, strict=True)) if h else []
    decoder.append((h[0] if h else latent_dim, n_channels))
    return encoder + heads + decoder


def training_bytes(n_inputs: int, n_channels: int, latent_dim: int, hidden_dims: Sequence[int], batch_size: int) -> int:
    """Estimated bytes that training such a model takes on its device (weights and one batch's activations)."""
    layers = layer_sizes(n_inputs, n_channels, latent_dim, hidden_dims)
    weights = sum(a * b + b for a, b in layers)
    activations = batch_size * (n_inputs + sum(b for _, b in layers))
    return FLOAT_BYTES * (WEIGHT_COPIES * weights + ACTIVATION_COPIES * activations)


def device_memory(device: torch.device) -> int:
    """Bytes of memory on `device`: a CUDA device's own, else this machine's physical memory."""
    if device.type == "cuda" and torch.cuda.is_available():
        return int(torch.cuda.get_device_properties(device.index or 0).total_memory)
    return physical_memory()


def check_training_memory(config: Any, batch_size: int, device: torch.device | str = "cpu") -> None:
    """`DataError` when a model of `config` (a `ModelConfig`) trained in batches of `batch_size` would need
    more memory than `device` has; checked before the model is built."""
    device = torch.device(device)
    n_inputs = int(getattr(config, "n_inputs", config.n_channels))
    need = training_bytes(n_inputs, int(config.n_channels), int(config.latent_dim), config.hidden_dims,
                          int(batch_size))
    have = device_memory(device)
    if need > have:
        raise DataError(f"SpectraVAE: latent_dim={config.latent_dim}, hidden_dims={tuple(config.hidden_dims)} and "
                        f"batch_size={batch_size} on {config.n_channels} channels would need about {gib(need)} to "
                        f"train, more than the {gib(have)} of {device.type}; choose smaller sizes")
