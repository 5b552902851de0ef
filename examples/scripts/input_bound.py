"""A training script whose samples are slow to read (a stand-in for images decoded from disk:
each read waits 0.5 ms, as I/O does, without holding the GIL) and whose model has many small
layers (so Adam's per-parameter loop costs as much as the maths). Written as users write them,
with no flags for the fixes: ``vaebench run --try`` finds them.

    python examples/scripts/input_bound.py
    vaebench run --try examples/scripts/input_bound.py
"""

import argparse
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--read-ms", type=float, default=0.5, help="the wait of one sample's read")
parser.add_argument("--layers", type=int, default=24, help="small layers of the model")
args = parser.parse_args()


class SlowReads(Dataset):
    def __init__(self, n: int = 2048):
        self.x = torch.randn(n, 32)  # (samples, features)
        self.y = torch.randn(n, 1)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        time.sleep(args.read_ms / 1e3)  # the read
        return self.x[i], self.y[i]


loader = DataLoader(SlowReads(), batch_size=32, shuffle=True)
layers = [m for _ in range(args.layers) for m in (nn.Linear(32, 32), nn.ReLU())]
model = nn.Sequential(*layers, nn.Linear(32, 1))  # (batch, 32) -> (batch, 1)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

for epoch in range(args.epochs):
    for x, y in loader:
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
    print(f"epoch {epoch}: loss {loss.item():.4f}")
