"""Gradient accumulation, as the usual recipe writes it: several micro-batches from a DataLoader,
one backward() each, one optimizer.step() per --accumulate of them. vaebench counts every
micro-batch drawn inside a step: a step of 4 micro-batches of 8 processes 32 samples.

    vaebench run examples/scripts/accumulate.py --accumulate 4 --batch-size 8
"""

import argparse

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

parser = argparse.ArgumentParser()
parser.add_argument("--batch-size", type=int, default=8)
parser.add_argument("--accumulate", type=int, default=4, help="micro-batches per optimizer step")
parser.add_argument("--epochs", type=int, default=2)
args = parser.parse_args()

torch.manual_seed(0)
x = torch.randn(4096, 20)  # (samples, features)
y = (x[:, :5].sum(1) > 0).long()  # (samples,)
loader = DataLoader(TensorDataset(x, y), batch_size=args.batch_size, shuffle=True)
model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 2))
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

for epoch in range(args.epochs):
    for i, (xb, yb) in enumerate(loader):
        loss = F.cross_entropy(model(xb), yb) / args.accumulate  # (batch, 2) logits
        loss.backward()
        if (i + 1) % args.accumulate == 0:
            optimizer.step()
            optimizer.zero_grad()
    print(f"epoch {epoch}: loss {loss.item() * args.accumulate:.4f}")
