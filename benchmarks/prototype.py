"""The lab's prototype training loop, written as its notebook had it: the reference for epoch speed.

Per-pixel `torch.tensor` in a `Dataset`, `DataLoader(batch_size=100, shuffle=True)`, global
min–max scaling of the data, a 442→221→110→2 MLP with LeakyReLU and a sigmoid output, its
reparameterisation (`z = μ + log σ² · ε`), binary cross-entropy summed over the batch plus the
KL term, Adam at 10⁻³, one optimiser step per batch. Nothing here is used by `spectra_vae`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

BATCH_SIZE = 100
LEARNING_RATE = 1e-3


class SpectraDataset(Dataset):
    def __init__(self, data: np.ndarray) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, idx: int) -> torch.Tensor:
        return torch.tensor(self.data[idx], dtype=torch.float32)


class VAE(nn.Module):
    def __init__(self, n_channels: int = 442) -> None:
        super().__init__()
        self.fc1 = nn.Linear(n_channels, 221)
        self.fc2 = nn.Linear(221, 110)
        self.fc31 = nn.Linear(110, 2)
        self.fc32 = nn.Linear(110, 2)
        self.fc4 = nn.Linear(2, 110)
        self.fc5 = nn.Linear(110, 221)
        self.fc6 = nn.Linear(221, n_channels)
        self.act = nn.LeakyReLU(0.2)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.act(self.fc2(self.act(self.fc1(x))))
        return self.fc31(h), self.fc32(h)

    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        eps = torch.randn_like(logvar)
        return mu + logvar * eps

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc6(self.act(self.fc5(self.act(self.fc4(z))))))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x)
        return self.decode(self.reparameterize(mu, logvar)), mu, logvar


def loss_function(recon_x: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    bce = F.binary_cross_entropy(recon_x, x, reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def min_max(data: np.ndarray) -> tuple[np.ndarray, float, float]:
    """The prototype's scaling: one minimum and one range over all values."""
    lo, hi = float(data.min()), float(data.max())
    return (data - lo) / (hi - lo), lo, hi


def train_epoch(model: VAE, optimizer: torch.optim.Optimizer, loader: DataLoader) -> float:
    model.train()
    train_loss = 0.0
    for data in loader:
        optimizer.zero_grad()
        recon_batch, mu, logvar = model(data)
        loss = loss_function(recon_batch, data, mu, logvar)
        loss.backward()
        train_loss += loss.item()
        optimizer.step()
    return train_loss / len(loader.dataset)


def setup(scaled: np.ndarray, seed: int = 0) -> tuple[VAE, torch.optim.Optimizer, DataLoader]:
    torch.manual_seed(seed)
    model = VAE(scaled.shape[1])
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    loader = DataLoader(SpectraDataset(scaled), batch_size=BATCH_SIZE, shuffle=True)
    return model, optimizer, loader


def reconstruct(model: VAE, scaled: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """decode(μ) of min–max scaled pixels, back in absorbance."""
    model.eval()
    with torch.no_grad():
        out = [model.decode(model.encode(torch.from_numpy(scaled[s : s + 8192]))[0]).numpy()
               for s in range(0, len(scaled), 8192)]
    return np.concatenate(out) * (hi - lo) + lo
