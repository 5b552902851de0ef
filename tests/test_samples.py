"""Samples a step consumed, on the shapes users' loops take (each once counted 2-4x too many):
a WGAN's critic stepped five times a generator step, a DCGAN's detached fakes, a model called
layer by layer with an optimizer per layer, an encoder then a decoder, a frozen backbone, a
physics-informed loss whose points require gradients, and accumulation with and without a
DataLoader. Run in-process under the recorder's own hooks."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from bench.capture.recorder import Recorder
from bench.capture.windows import Window

STEPS = 6


def _observe(loop: Callable[[], None]) -> list[tuple[int, int, int]]:
    """(samples, batches, micro-batches per optimizer step) of each step after the first two
    (the rounds' pattern is read from the first optimizer steps)."""
    recorder = Recorder(warmup=0, windows=[Window("measure", 1000)], cuda=False)
    recorder.install()
    try:
        loop()
    finally:
        recorder.remove()
    return recorder.samples.steps[2:]


def _wgan(loader: bool) -> None:
    torch.manual_seed(0)
    data = torch.randn(1024, 16)
    batches = iter(torch.utils.data.DataLoader(torch.utils.data.TensorDataset(data), batch_size=32))
    G, D = nn.Sequential(nn.Linear(8, 16)), nn.Sequential(nn.Linear(16, 1))
    opt_d, opt_g = torch.optim.RMSprop(D.parameters(), lr=5e-5), torch.optim.RMSprop(G.parameters(), lr=5e-5)
    for _ in range(STEPS):
        for _ in range(5):  # the critic, five times a generator step
            real = next(batches)[0] if loader else data[torch.randint(0, 1024, (32,))]
            fake = G(torch.randn(32, 8)).detach()
            loss = D(fake).mean() - D(real).mean()
            opt_d.zero_grad()
            loss.backward()
            opt_d.step()
        loss = -D(G(torch.randn(32, 8))).mean()
        opt_g.zero_grad()
        loss.backward()
        opt_g.step()


def _dcgan() -> None:
    data = torch.randn(512, 16)
    G, D = nn.Linear(8, 16), nn.Sequential(nn.Linear(16, 1), nn.Sigmoid())
    opt_d, opt_g = torch.optim.Adam(D.parameters()), torch.optim.Adam(G.parameters())
    bce = nn.BCELoss()
    for i in range(STEPS):
        real = data[64 * i:64 * (i + 1)]
        opt_d.zero_grad()
        bce(D(real), torch.ones(64, 1)).backward()
        with torch.no_grad():
            fake = G(torch.randn(64, 8))  # no gradients, and no data either: a model's output
        bce(D(fake), torch.zeros(64, 1)).backward()
        opt_d.step()
        opt_g.zero_grad()
        bce(D(G(torch.randn(64, 8))), torch.ones(64, 1)).backward()
        opt_g.step()


def _layer_by_layer() -> None:
    layers = [nn.Linear(16, 16) for _ in range(3)]
    optimizers = [torch.optim.SGD(layer.parameters(), lr=0.01) for layer in layers]
    for _ in range(STEPS):
        h = torch.randn(64, 16)
        for layer in layers:
            h = torch.relu(layer(h))
        h.pow(2).mean().backward()
        for optimizer in optimizers:
            optimizer.step()
            optimizer.zero_grad()


def _encoder_decoder() -> None:
    encoder, decoder = nn.Linear(16, 8), nn.Linear(4, 16)
    optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()])
    for _ in range(STEPS):
        x = torch.randn(64, 16)
        mu, logvar = encoder(x).chunk(2, dim=1)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        loss = (decoder(z) - x).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def _frozen_backbone() -> None:
    backbone, head = nn.Linear(16, 32).requires_grad_(False), nn.Linear(32, 10)
    optimizer = torch.optim.SGD(head.parameters(), lr=0.1)
    for _ in range(STEPS):
        features = backbone(torch.randn(64, 16))
        loss = nn.functional.cross_entropy(head(features), torch.randint(0, 10, (64,)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def _physics_informed() -> None:
    net = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 1))
    optimizer = torch.optim.Adam(net.parameters())
    for _ in range(STEPS):
        points = torch.rand(128, 2, requires_grad=True)  # the data require gradients here
        u = net(points)
        du = torch.autograd.grad(u.sum(), points, create_graph=True)[0]
        optimizer.zero_grad()
        du.pow(2).mean().backward()
        optimizer.step()


def _accumulate(loader: bool) -> None:
    data = torch.randn(2048, 16)
    batches = iter(torch.utils.data.DataLoader(torch.utils.data.TensorDataset(data), batch_size=16))
    model = nn.Linear(16, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for _ in range(STEPS):
        for _ in range(4):
            x = next(batches)[0] if loader else torch.randn(16, 16)
            (model(x).pow(2).mean() / 4).backward()
        optimizer.step()
        optimizer.zero_grad()


@pytest.mark.parametrize(("loop", "per_step"), [
    (lambda: _wgan(loader=False), (160, 5, 1)),  # five critic batches; not its fakes, not the noise
    (lambda: _wgan(loader=True), (160, 5, 1)),
    (_dcgan, (64, 1, 1)),
    (_layer_by_layer, (64, 1, 1)),
    (_encoder_decoder, (64, 1, 1)),
    (_frozen_backbone, (64, 1, 1)),
    (_physics_informed, (128, 1, 1)),
    (lambda: _accumulate(loader=False), (64, 4, 4)),
    (lambda: _accumulate(loader=True), (64, 4, 4)),
], ids=["wgan", "wgan-loader", "dcgan", "layer-by-layer", "encoder-decoder", "frozen-backbone",
        "physics-informed", "accumulate", "accumulate-loader"])
def test_a_step_counts_the_data_its_optimizers_trained_on(loop, per_step):
    steps = _observe(loop)
    assert steps and set(steps) == {per_step}


def test_batches_over_several_optimizer_steps_are_not_said_accumulated():
    from bench.measure.result import Process
    from bench.render.script import _batches

    critic = [f"`RMSprop` at t.py:{n}" for n in (14, 14, 14, 14, 14, 18)]
    assert _batches(160, Process(micro_batches=1, step_batches=5, step_round=critic)) == \
        "5 batches of 32 per step, over its 6 optimizer steps"
    assert "gradients accumulated" in _batches(64, Process(micro_batches=4, step_batches=4))
    assert _batches(64, Process()) == "batch 64, from the batch's first dimension"
