"""The course VAE: a 784-400-20 encoder/decoder with the reparameterization trick.

The layer sizes and the loss follow the PyTorch debugging/profiling course material
(``x_dim=784, hidden_dim=400, latent_dim=20``; BCE summed over pixels plus the KL term).
Four classic bugs of the course's "buggy" version are guarded by tests in
``tests/test_model.py``; the comments below point at the line each one lived on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

X_DIM = 784
HIDDEN_DIM = 400
LATENT_DIM = 20


class Encoder(nn.Module):
    """x -> (mean, log_var) of the approximate posterior q(z | x)."""

    def __init__(self, x_dim: int = X_DIM, hidden_dim: int = HIDDEN_DIM, latent_dim: int = LATENT_DIM):
        super().__init__()
        self.fc_input = nn.Linear(x_dim, hidden_dim)
        self.fc_input2 = nn.Linear(hidden_dim, hidden_dim)
        self.fc_mean = nn.Linear(hidden_dim, latent_dim)
        self.fc_log_var = nn.Linear(hidden_dim, latent_dim)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.act(self.fc_input(x))  # (batch, hidden)
        h = self.act(self.fc_input2(h))  # (batch, hidden)
        mean = self.fc_mean(h)  # (batch, latent)
        log_var = self.fc_log_var(h)  # (batch, latent)
        return mean, log_var


class Decoder(nn.Module):
    """z -> x_hat, pixel probabilities in (0, 1)."""

    def __init__(self, latent_dim: int = LATENT_DIM, hidden_dim: int = HIDDEN_DIM, x_dim: int = X_DIM):
        super().__init__()
        self.fc_hidden = nn.Linear(latent_dim, hidden_dim)
        self.fc_hidden2 = nn.Linear(hidden_dim, hidden_dim)
        # Bug 2 of the course: this layer was sized Linear(latent_dim, x_dim); it reads the
        # hidden activation, so its input is hidden_dim wide.
        self.fc_output = nn.Linear(hidden_dim, x_dim)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.act(self.fc_hidden(z))  # (batch, hidden)
        h = self.act(self.fc_hidden2(h))  # (batch, hidden)
        return torch.sigmoid(self.fc_output(h))  # (batch, x_dim)


class VAE(nn.Module):
    """Variational auto-encoder; ``forward(x)`` returns ``(x_hat, mean, log_var)``."""

    def __init__(self, x_dim: int = X_DIM, hidden_dim: int = HIDDEN_DIM, latent_dim: int = LATENT_DIM):
        super().__init__()
        for name, value in (("x_dim", x_dim), ("hidden_dim", hidden_dim), ("latent_dim", latent_dim)):
            if value < 1:
                raise ValueError(f"VAE {name} must be a positive integer, got {value}")
        self.x_dim, self.hidden_dim, self.latent_dim = x_dim, hidden_dim, latent_dim
        self.encoder = Encoder(x_dim, hidden_dim, latent_dim)
        self.decoder = Decoder(latent_dim, hidden_dim, x_dim)

    @staticmethod
    def reparameterize(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
        """z = mean + std * eps with std = exp(log_var / 2) and eps ~ N(0, I).

        Bug 3 of the course used ``log_var`` as if it were the standard deviation.
        Bug 1 created ``eps`` with ``torch.randn(...)`` on the CPU whatever the device;
        ``randn_like`` puts it on the device (and dtype) of ``mean``.
        """
        std = torch.exp(0.5 * log_var)  # (batch, latent)
        eps = torch.randn_like(std)  # (batch, latent), same device as the model
        return mean + std * eps  # (batch, latent)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mean, log_var = self.encoder(x)  # (batch, latent) each
        z = self.reparameterize(mean, log_var)  # (batch, latent)
        x_hat = self.decoder(z)  # (batch, x_dim)
        return x_hat, mean, log_var

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decode ``n`` draws from the prior N(0, I); returns (n, x_dim) on the model's device."""
        device = next(self.parameters()).device
        z = torch.randn(n, self.latent_dim, device=device, generator=generator)  # (n, latent)
        return self.decoder(z)


def vae_loss(x_hat: torch.Tensor, x: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """Negative ELBO summed over the batch: BCE(sum) + KL(q(z|x) || N(0, I))."""
    reproduction = F.binary_cross_entropy(x_hat, x, reduction="sum")
    kld = -0.5 * torch.sum(1 + log_var - mean.pow(2) - log_var.exp())
    return reproduction + kld


def model_loss(model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """Forward and the summed negative ELBO of ``batch`` (batch, 784): what every loop (plain,
    compiled, Lightning, evaluation) computes."""
    x_hat, mean, log_var = model(batch)  # (batch, 784), (batch, latent) x2
    return vae_loss(x_hat, batch, mean, log_var)
