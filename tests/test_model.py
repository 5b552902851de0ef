"""The course VAE, and guards against the four classic bugs of its buggy version."""

from __future__ import annotations

import math

import pytest
import torch
from torch.overrides import TorchFunctionMode

from vae.model import VAE, vae_loss
from vae.train import train_step


def test_forward_shapes():
    model = VAE()
    x = torch.rand(7, 784)
    x_hat, mean, log_var = model(x)
    assert x_hat.shape == (7, 784)
    assert mean.shape == log_var.shape == (7, 20)
    assert x_hat.min() >= 0 and x_hat.max() <= 1


class _DeviceRecorder(TorchFunctionMode):
    """Records the device of every tensor any torch function returns, factories included."""

    def __init__(self):
        super().__init__()
        self.devices: set[str] = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple) else (out,):
            if isinstance(t, torch.Tensor):
                self.devices.add(t.device.type)
        return out


def test_bug1_noise_is_created_on_the_model_device():
    """Bug 1: eps = torch.randn(...) on the CPU. On the meta device every tensor must stay meta."""
    model = VAE(hidden_dim=16, latent_dim=4).to("meta")
    x = torch.empty(3, 784, device="meta")
    with _DeviceRecorder() as recorder:
        x_hat, mean, log_var = model(x)
        vae_loss(x_hat, x, mean, log_var)
    assert recorder.devices == {"meta"}


def test_bug2_decoder_output_layer_reads_the_hidden_layer():
    """Bug 2: fc_output sized from the latent dimension; only shows when hidden != latent."""
    model = VAE(hidden_dim=32, latent_dim=8)
    assert model.decoder.fc_output.in_features == 32
    x_hat, _, _ = model(torch.rand(5, 784))
    assert x_hat.shape == (5, 784)


def test_bug3_log_variance_is_turned_into_a_standard_deviation():
    """Bug 3: log_var used as the std (or variance). z ~ N(mean, exp(log_var))."""
    torch.manual_seed(0)
    n = 200_000
    mean = torch.full((n, 1), 2.0)
    log_var = torch.full((n, 1), math.log(4.0))  # variance 4, std 2
    z = VAE.reparameterize(mean, log_var)
    assert z.mean().item() == pytest.approx(2.0, abs=0.02)
    assert z.std().item() == pytest.approx(2.0, abs=0.02)  # log_var as std would give 1.39


def test_bug4_gradients_are_zeroed_between_steps():
    """Bug 4: no zero_grad. After two steps on one batch the grads are those of one batch."""
    torch.manual_seed(0)
    model = VAE(hidden_dim=32, latent_dim=8)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    batch = torch.rand(10, 784)
    train_step(model, batch, optimizer)

    reference = VAE(hidden_dim=32, latent_dim=8)
    reference.load_state_dict(model.state_dict())
    torch.manual_seed(1)
    train_step(model, batch, optimizer)  # the step under test: grads at these weights
    torch.manual_seed(1)
    x_hat, mean, log_var = reference(batch)
    vae_loss(x_hat, batch, mean, log_var).backward()
    for (name, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, msg=f"gradient of {name} accumulated")


def test_loss_is_bce_sum_plus_kl():
    x = torch.rand(4, 784)
    x_hat = torch.full_like(x, 0.5)
    mean, log_var = torch.zeros(4, 20), torch.zeros(4, 20)  # the prior: KL = 0
    expected = torch.nn.functional.binary_cross_entropy(x_hat, x, reduction="sum")
    torch.testing.assert_close(vae_loss(x_hat, x, mean, log_var), expected)
    mean = torch.ones(4, 20)  # KL of N(1, 1) from N(0, 1) is 1/2 per dimension
    torch.testing.assert_close(vae_loss(x_hat, x, mean, log_var), expected + 0.5 * 80)


def test_bad_sizes_are_rejected():
    with pytest.raises(ValueError, match="latent_dim"):
        VAE(latent_dim=0)
