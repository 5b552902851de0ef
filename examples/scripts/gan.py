"""A small GAN on MNIST-shaped images, written the way users write them (not for vaebench): two
optimizers an iteration -- the discriminator's step, then the generator's -- and a loss module.

    python examples/scripts/gan.py --epochs 1
    vaebench run examples/scripts/gan.py --epochs 1
"""

import argparse

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=1)
parser.add_argument("--batch-size", type=int, default=64)
parser.add_argument("--images", type=int, default=12800, help="random images in the data set")
parser.add_argument("--latent", type=int, default=64)
args = parser.parse_args()

torch.manual_seed(0)
images = torch.rand(args.images, 784) * 2 - 1  # (N, 784), in the generator's tanh range
loader = DataLoader(TensorDataset(images), batch_size=args.batch_size, shuffle=True, drop_last=True)

generator = nn.Sequential(nn.Linear(args.latent, 256), nn.ReLU(), nn.Linear(256, 784), nn.Tanh())
discriminator = nn.Sequential(nn.Linear(784, 256), nn.LeakyReLU(0.2), nn.Linear(256, 1), nn.Sigmoid())
criterion = nn.BCELoss()
opt_d = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
opt_g = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999))

for epoch in range(args.epochs):
    for i, (real,) in enumerate(loader):
        n = real.size(0)
        ones, zeros = torch.ones(n, 1), torch.zeros(n, 1)

        # the discriminator: real images against generated ones
        fake = generator(torch.randn(n, args.latent))  # (batch, 784)
        loss_d = criterion(discriminator(real), ones) + criterion(discriminator(fake.detach()), zeros)
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()

        # the generator: make the discriminator call its images real
        loss_g = criterion(discriminator(fake), ones)
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()

        if i % 50 == 0:
            print(f"epoch {epoch} batch {i}: loss_d {loss_d.item():.3f} loss_g {loss_g.item():.3f}")
