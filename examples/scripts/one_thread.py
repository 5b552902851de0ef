"""An autoencoder on random images that pins torch to one thread (as scripts copied from a
DataLoader-worker recipe often do) and builds Adam with its defaults: `--try` finds two fixes
that switch in place here, the thread count and the fused optimizer, and measures them together."""

import argparse

import torch
from torch import nn

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=3000)
parser.add_argument("--batch-size", type=int, default=128)
args = parser.parse_args()

torch.set_num_threads(1)
torch.manual_seed(0)
data = torch.rand(4096, 784)
model = nn.Sequential(nn.Linear(784, 400), nn.ReLU(), nn.Linear(400, 40), nn.ReLU(),  # (batch, 40)
                      nn.Linear(40, 400), nn.ReLU(), nn.Linear(400, 784))  # (batch, 784)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
for step in range(args.steps):
    index = torch.randint(0, len(data), (args.batch_size,))
    x = data[index]  # (batch, 784)
    optimizer.zero_grad()
    loss = nn.functional.mse_loss(model(x), x)
    loss.backward()
    optimizer.step()
    if step % 500 == 0:
        print(f"step {step}: loss {loss.item():.4f}")
