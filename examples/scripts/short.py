"""A short run: fewer steps than vaebench's plan of windows needs. The report says which
profilers did not get their windows, and lists only the files that were written.

    vaebench run --warmup 2 --steps 20 --profile-windows 2 --profile-steps 2 examples/scripts/short.py
"""

import argparse

import torch
import torch.nn.functional as F
from torch import nn

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=36)
args = parser.parse_args()

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 1))
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
for _ in range(args.steps):
    x = torch.randn(64, 16)  # (batch, features)
    loss = F.mse_loss(model(x), x[:, :1])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
