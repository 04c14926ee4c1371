"""Which module an architecture name builds (`ModelConfig.architecture`)."""

from __future__ import annotations

from .networks import ARCHITECTURES, VAE, ModelConfig
from .unmixing import UnmixingVAE


def build_model(config: ModelConfig) -> VAE:
    """The module of `config.architecture`: `mlp` and `spatial` share the class (only what the encoder
    reads differs), `unmixing` has a Beer–Lambert decoder."""
    if config.architecture == "unmixing":
        return UnmixingVAE(config)
    if config.architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}; got {config.architecture!r}")
    return VAE(config)
