"""A small convolutional MNIST classifier, written the way users write them (not for vaebench):
the data pre-loaded as one tensor, two 3x3 convolutions, Adam.

    python examples/scripts/cnn_classifier.py --epochs 1
    vaebench run --try --fixes channels_last,fused examples/scripts/cnn_classifier.py
"""

import argparse

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchvision import datasets

from vae.data import load_mnist  # only to find (or generate, offline) the MNIST files

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=1)
parser.add_argument("--batch-size", type=int, default=128)
parser.add_argument("--channels", type=int, default=32)
parser.add_argument("--data-dir", default="data")
parser.add_argument("--limit", type=int, default=20000, help="first N training images only")
args = parser.parse_args()

device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
torch.manual_seed(0)

root = load_mnist(args.data_dir, train=True, limit=1).root
mnist = datasets.MNIST(str(root), train=True)
x = mnist.data[: args.limit].unsqueeze(1).float() / 255  # (N, 1, 28, 28)
y = mnist.targets[: args.limit]  # (N,)
loader = DataLoader(TensorDataset(x, y), batch_size=args.batch_size, shuffle=True)


class Net(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, 2 * channels, 3, padding=1)
        self.fc = nn.Linear(2 * channels * 7 * 7, 10)

    def forward(self, x):  # (B, 1, 28, 28)
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)  # (B, C, 14, 14)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)  # (B, 2C, 7, 7)
        return self.fc(x.flatten(1))  # (B, 10)


model = Net(args.channels).to(device)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

for epoch in range(args.epochs):
    for i, (xb, yb) in enumerate(loader):
        xb, yb = xb.to(device), yb.to(device)
        loss = F.cross_entropy(model(xb), yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if i % 50 == 0:
            print(f"epoch {epoch} batch {i} loss {loss.item():.3f}")
