"""A plain MNIST classifier training script, written the way users write them (not for vaebench).

    python examples/scripts/mnist_classifier.py --epochs 1
    vaebench run examples/scripts/mnist_classifier.py --epochs 1
"""

import argparse

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms

from vae.data import load_mnist  # only to find (or generate, offline) the MNIST files

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=1)
parser.add_argument("--batch-size", type=int, default=64)
parser.add_argument("--num-workers", type=int, default=0)
parser.add_argument("--data-dir", default="data")
parser.add_argument("--limit", type=int, default=None, help="first N training images only")
args = parser.parse_args()

device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
torch.manual_seed(0)

root = load_mnist(args.data_dir, train=True, limit=1).root
train = datasets.MNIST(str(root), train=True, transform=transforms.ToTensor())
if args.limit:
    train = Subset(train, range(args.limit))
loader = DataLoader(train, batch_size=args.batch_size, shuffle=True, num_workers=args.num_workers)

model = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10)).to(device)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

for epoch in range(args.epochs):
    total = 0.0
    for i, (x, y) in enumerate(loader):
        x, y = x.to(device), y.to(device)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item()
        if i % 100 == 0:
            print(f"epoch {epoch} batch {i} loss {loss.item():.3f}")
    print(f"epoch {epoch}: mean loss {total / len(loader):.3f}")
