"""The VAE family: an encoder to (μ, log σ²), the reparameterisation, a decoder; one small interface.

Every architecture implements the same methods, so training, scoring and every notebook work with
any of them without asking which one they have:

- `encode(x) → (μ, log σ²)`; `decode(z) → x̂` (a spectrum for a latent point);
- `forward(x, generator) → (x̂, μ, log σ²)` with z drawn by the reparameterisation (training);
- `infer(x) → (μ, log σ², x̂)` with x̂ the reconstruction at the latent mean (scoring: deterministic);
- `forward_and_infer(x, generator)`: both of the above from one encoder pass (validation);
- `target(x)`: what x̂ reconstructs (the input itself, or the centre pixel of a neighbourhood).

Architectures (`ModelConfig.architecture`):

- `mlp`: the spectrum alone, an MLP encoder and decoder (the prototype's shape done right).
- `spatial`: the encoder also sees the mean spectrum of the pixel's k×k neighbourhood
  (`spectra_vae.io.neighbours`); the decoder reconstructs the centre pixel's spectrum.
- `unmixing`: the decoder is Beer–Lambert made learnable (`spectra_vae.model.unmixing`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

LOG_NOISE_VAR_MIN = -13.8
NOISE_MOMENTUM = 0.05  # σ ≥ 0.001 in normalised units, so the Gaussian NLL cannot run away
LOGVAR_BOUNDS = (-10.0, 2.0)  # encoder log σ², softly clipped: see `VAE.encode`
ARCHITECTURES = ("mlp", "spatial", "unmixing")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture; everything needed to rebuild the module from a checkpoint."""

    n_channels: int
    latent_dim: int = 2
    hidden_dims: tuple[int, ...] = (221, 110)
    output: str = "linear"  # "sigmoid" when the data are min–max scaled to [0, 1]
    negative_slope: float = 0.2
    noise: str = "shared"  # Gaussian noise variance: one for all channels, or one per "channel"
    logvar_bounds: tuple[float, float] | None = LOGVAR_BOUNDS  # None: unbounded (models saved before the bound)
    architecture: str = "mlp"  # absent from checkpoints written before there were others: "mlp"
    neighbourhood: int = 3  # spatial: the k of the k×k neighbourhood the encoder sees
    baseline_degree: int = 2  # unmixing: the degree of the Legendre baseline added to the mixture

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hidden_dims"] = list(self.hidden_dims)
        d["logvar_bounds"] = None if self.logvar_bounds is None else list(self.logvar_bounds)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        bounds = d.get("logvar_bounds")  # absent: a model trained before the bound, which keeps none
        return cls(**{**d, "hidden_dims": tuple(d["hidden_dims"]),
                      "logvar_bounds": None if bounds is None else tuple(bounds)})

    @property
    def n_inputs(self) -> int:
        """Values per pixel the encoder reads: the spectrum, and for `spatial` its neighbourhood's mean too."""
        return 2 * self.n_channels if self.architecture == "spatial" else self.n_channels


def mlp(sizes: list[int], negative_slope: float) -> nn.Sequential:
    """Linear layers with LeakyReLU after each."""
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=False):
        layers += [nn.Linear(a, b), nn.LeakyReLU(negative_slope)]
    return nn.Sequential(*layers)


class VAE(nn.Module):
    """encode → (μ, log σ²); z = μ + σ·ε; decode(z) → x̂ (in normalised units). The `mlp` architecture,
    and the base of the others: they change what the encoder reads or what the decoder is."""

    log_noise_var: torch.Tensor  # a buffer (`register_buffer` in __init__)

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        h = list(config.hidden_dims)
        width = h[-1] if h else config.n_inputs
        self.encoder = mlp([config.n_inputs, *h], config.negative_slope)
        self.to_mu = nn.Linear(width, config.latent_dim)
        self.to_logvar = nn.Linear(width, config.latent_dim)
        self.build_decoder()
        # Log noise variance of the Gaussian likelihood (that loss only): not trained by the
        # optimiser but set to its maximum-likelihood value, a running mean of the squared
        # residuals (a calibrated decoder, Rybkin et al. 2021).
        self.register_buffer("log_noise_var", torch.zeros(config.n_channels))
        self.noise_initialised = False

    def build_decoder(self) -> None:
        """An MLP mirroring the encoder, from the latent space to the spectrum."""
        c = self.config
        h = list(c.hidden_dims)
        self.decoder = nn.Sequential(mlp([c.latent_dim, *h[::-1]], c.negative_slope),
                                     nn.Linear(h[0] if h else c.latent_dim, c.n_channels))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's last hidden layer."""
        return self.encoder(x)

    def posterior(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, log σ²) from the encoder's features."""
        logvar = self.to_logvar(h)
        if self.config.logvar_bounds is not None:
            # Soft clip (identity well inside, smooth at the edges): a posterior variance allowed
            # to shrink without limit lets the decoder grow arbitrarily steep around a code, and
            # its gradients with it; above the prior's variance it is never useful.
            lo, hi = self.config.logvar_bounds
            logvar = hi - F.softplus(hi - lo - F.softplus(logvar - lo))
        return self.to_mu(h), logvar

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.posterior(self.features(x))

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        # logvar is log σ², so σ = exp(½·log σ²); the prototype used logvar as σ.
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + torch.exp(0.5 * logvar) * eps

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h = self.decoder[0](z)
        if torch.is_autocast_enabled(h.device.type):
            # Under mixed precision the output layer still runs in float32, so the residuals that
            # the loss and the calibrated noise level see are not rounded to bfloat16's 8 bits.
            with torch.autocast(h.device.type, enabled=False):
                out = self.decoder[1](h.float())
        else:
            out = self.decoder[1](h)
        return torch.sigmoid(out) if self.config.output == "sigmoid" else out

    def reconstruct_from(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """x̂ for latent `z` of a pixel whose encoder features are `h` (the plain VAE needs only z)."""
        return self.decode(z)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.features(x)
        mu, logvar = self.posterior(h)
        return self.reconstruct_from(h, self.reparameterize(mu, logvar, generator)), mu, logvar

    def infer(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(μ, log σ², x̂ at z = μ): deterministic, for reconstructions and scores."""
        h = self.features(x)
        mu, logvar = self.posterior(h)
        return mu, logvar, self.reconstruct_from(h, mu)

    def forward_and_infer(self, x: torch.Tensor, generator: torch.Generator | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """`forward`'s (x̂ at a sampled z, μ, log σ²) and `infer`'s x̂ at z = μ from one encoder pass
        (validation needs both); the same draws from `generator` as `forward`."""
        h = self.features(x)
        mu, logvar = self.posterior(h)
        return self.reconstruct_from(h, self.reparameterize(mu, logvar, generator)), mu, logvar, \
            self.reconstruct_from(h, mu)

    def target(self, x: torch.Tensor) -> torch.Tensor:
        """What x̂ reconstructs: the spectrum (for `spatial`, the centre pixel's)."""
        return x[:, : self.config.n_channels]

    def noise_log_var(self) -> torch.Tensor:
        return self.log_noise_var.clamp(min=LOG_NOISE_VAR_MIN)

    @torch.no_grad()
    def update_noise(self, mean_sq: torch.Tensor, momentum: float = NOISE_MOMENTUM) -> None:
        """Move the noise variance towards a batch's mean squared residual per channel, `(C,)`
        (with `noise="shared"`, towards their mean)."""
        if self.config.noise == "shared":
            mean_sq = mean_sq.mean().expand_as(mean_sq)
        target = mean_sq.clamp(min=1e-12).log()
        if not self.noise_initialised:
            self.log_noise_var.copy_(target)
            self.noise_initialised = True
        else:
            self.log_noise_var.copy_(torch.logaddexp(self.log_noise_var + math.log1p(-momentum),
                                                     target + math.log(momentum)))

