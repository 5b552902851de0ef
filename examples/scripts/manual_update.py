"""A script that updates its parameters by hand (no optimizer), as pytorch/examples' word
language model does: vaebench finds its steps at each backward().

    vaebench run examples/scripts/manual_update.py
"""

import argparse

import torch
import torch.nn.functional as F
from torch import nn

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=300)
parser.add_argument("--lr", type=float, default=0.05)
args = parser.parse_args()

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(32, 64), nn.Tanh(), nn.Linear(64, 1))
w_true = torch.randn(32, 1)

for step in range(args.steps):
    x = torch.randn(128, 32)  # (batch, features): made here, no DataLoader
    y = x @ w_true + 0.1 * torch.randn(128, 1)
    loss = F.mse_loss(model(x), y)
    model.zero_grad()
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(p.grad, alpha=-args.lr)  # the update, by hand
    if step % 100 == 0:
        print(f"step {step} loss {loss.item():.4f}")
