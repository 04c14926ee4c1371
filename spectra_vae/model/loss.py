"""ELBO terms, per pixel: reconstruction negative log-likelihood and the Gaussian KL."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

RECONSTRUCTIONS = ("gaussian", "mse", "mae", "bce")
_BCE_EPS = 1e-6


class LossTerms(NamedTuple):
    """Batch means of the per-pixel terms; `total = reconstruction + beta * kl`."""

    total: torch.Tensor
    reconstruction: torch.Tensor
    kl: torch.Tensor


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, I)) per sample, summed over latent dimensions (≥ 0)."""
    # Kingma & Welling (2014), Auto-Encoding Variational Bayes, appendix B.
    return 0.5 * torch.sum(mu.pow(2) + logvar.exp() - 1.0 - logvar, dim=-1)


def reconstruction_nll(x_hat: torch.Tensor, x: torch.Tensor, kind: str,
                       log_noise_var: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample reconstruction term, summed over channels.

    `gaussian`: −log N(x; x̂, σ²) with a learned per-channel noise variance σ² (a calibrated
    decoder, Rybkin et al. 2021), so the weight of reconstruction against KL is learned rather
    than guessed. `mse`: Σ(x − x̂)², `mae`: Σ|x − x̂|. `bce`: binary cross-entropy of targets
    clipped to [0, 1] against x̂ ∈ (0, 1) (the prototype's loss; needs min–max normalisation).
    """
    if kind == "gaussian":
        if log_noise_var is None:
            raise ValueError("the gaussian reconstruction needs log_noise_var")
        return 0.5 * torch.sum(math.log(2 * math.pi) + log_noise_var
                               + (x - x_hat).pow(2) * torch.exp(-log_noise_var), dim=-1)
    if kind == "mse":
        return torch.sum((x - x_hat).pow(2), dim=-1)
    if kind == "mae":
        return torch.sum((x - x_hat).abs(), dim=-1)
    if kind == "bce":
        p = x_hat.clamp(_BCE_EPS, 1 - _BCE_EPS)
        return F.binary_cross_entropy(p, x.clamp(0, 1), reduction="none").sum(dim=-1)
    raise ValueError(f"reconstruction must be one of {RECONSTRUCTIONS}; got {kind!r}")


def elbo_loss(x: torch.Tensor, x_hat: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, *,
              kind: str, beta: float, log_noise_var: torch.Tensor | None = None) -> LossTerms:
    """Negative ELBO (β-weighted), averaged over the pixels of the batch."""
    rec = reconstruction_nll(x_hat, x, kind, log_noise_var).mean()
    kl = kl_divergence(mu, logvar).mean()
    return LossTerms(rec + beta * kl, rec, kl)
