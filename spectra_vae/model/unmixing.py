"""The `unmixing` architecture: a decoder that is Beer–Lambert made learnable.

Tissue absorbance is thickness × a mixture of pure-component spectra, plus a slowly varying
baseline (Beer–Lambert; the demo data are built exactly so). The decoder is that model:

    x̂ = t · Σₖ aₖ·sₖ + b

- the abundances a = softmax(z) lie on the simplex, z ~ N(μ, σ²) a logistic-normal latent of size
  K (the latent size), with the usual N(0, I) prior, so the loss and every score stay the VAE's;
- the thickness t = softplus(·) > 0 and the baseline coefficients come from the encoder's features
  (deterministic, like μ), the baseline b a Legendre polynomial of `baseline_degree` over the axis;
- the K component spectra sₖ ≥ 0 are parameters (softplus), each scaled to a maximum of 1, so t·aₖ
  carries the amounts.

It works in absorbance: its normalisation is one positive factor without centring
(`global_scale`), and preprocessing must keep spectra absorbance-like (no derivative, no SNV).
`decode(z)` is the spectrum of composition softmax(z) at unit thickness without baseline (what a
latent traversal shows); `infer(x)` reconstructs with the pixel's own thickness and baseline.
Palsson et al. compare such unmixing autoencoders; HySUPP benchmarks them on hyperspectral images.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .networks import VAE, ModelConfig

START_FLOOR = 1e-3  # a given starting spectrum's smallest value, relative to its maximum


def legendre_basis(n_channels: int, degree: int) -> np.ndarray:
    """`(degree + 1, n_channels)` Legendre polynomials P₀…P_degree on [−1, 1] across the channels."""
    x = np.linspace(-1.0, 1.0, n_channels)
    return np.stack([np.polynomial.legendre.Legendre.basis(d)(x) for d in range(degree + 1)])


class UnmixingVAE(VAE):
    """x̂ = t · softmax(z) @ S + c @ P: abundances on the simplex, thickness > 0, spectra ≥ 0."""

    legendre: torch.Tensor  # a buffer

    def __init__(self, config: ModelConfig) -> None:
        if config.output != "linear":
            raise ValueError("the unmixing decoder is linear in absorbance; its output cannot be a sigmoid")
        super().__init__(config)

    def build_decoder(self) -> None:
        c = self.config
        width = c.hidden_dims[-1] if c.hidden_dims else c.n_inputs
        # Components start as smooth, distinct bumps spread over the axis plus a floor, so that
        # softmax and softplus begin with gradients for every one of them.
        k, n = c.latent_dim, c.n_channels
        grid = np.linspace(0.0, 1.0, n)
        centres = (np.arange(k) + 0.5) / k
        start = 0.2 + np.exp(-0.5 * ((grid[None, :] - centres[:, None]) / 0.15) ** 2)
        self.raw_components = nn.Parameter(torch.tensor(np.log(np.expm1(start)), dtype=torch.float32))
        self.to_thickness = nn.Linear(width, 1)
        self.to_baseline = nn.Linear(width, c.baseline_degree + 1)
        nn.init.zeros_(self.to_baseline.weight)
        nn.init.zeros_(self.to_baseline.bias)
        self.register_buffer("legendre", torch.tensor(legendre_basis(n, c.baseline_degree), dtype=torch.float32))

    @torch.no_grad()
    def start_components(self, spectra: np.ndarray) -> None:
        """Start from given component spectra `(K, C)` (normalised units, ≥ 0): each is scaled to a
        maximum of 1, as `components` reports them, with a floor of `START_FLOOR` so that softplus keeps
        a gradient where a spectrum is zero."""
        s = np.maximum(spectra / spectra.max(axis=1, keepdims=True), START_FLOOR)
        self.raw_components.copy_(torch.as_tensor(np.log(np.expm1(s)), dtype=torch.float32))

    def components(self) -> torch.Tensor:
        """`(K, C)` component spectra, ≥ 0, each with a maximum of 1 (normalised units)."""
        s = F.softplus(self.raw_components)
        return s / s.amax(dim=1, keepdim=True).clamp(min=1e-12)

    @staticmethod
    def abundances(z: torch.Tensor) -> torch.Tensor:
        """The simplex point of latent `z`: softmax over the K components."""
        return torch.softmax(z, dim=-1)

    def thickness(self, h: torch.Tensor) -> torch.Tensor:
        """`(n,)` thickness t > 0 of pixels with encoder features `h`."""
        return F.softplus(self.to_thickness(h)).squeeze(-1)

    def baseline(self, h: torch.Tensor) -> torch.Tensor:
        """`(n, C)` baseline of pixels with encoder features `h`."""
        return self.to_baseline(h) @ self.legendre

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.abundances(z.float()) @ self.components()

    def reconstruct_from(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        with torch.autocast(h.device.type, enabled=False):
            h = h.float()
            return self.thickness(h)[:, None] * self.decode(z) + self.baseline(h)

    def unmix(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(abundances at the latent mean `(n, K)`, thickness `(n,)`, baseline `(n, C)`) of pixels `x`."""
        h = self.features(x)
        mu, _ = self.posterior(h)
        return self.abundances(mu), self.thickness(h), self.baseline(h)
