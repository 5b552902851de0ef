"""A training script that runs out of memory part-way, as a batch size tried too large does:
its batch grows each step under a memory limit the script sets itself (Linux: RLIMIT_AS), so it
fails the same way on any machine. `vaebench run` explains where and what was live.

    python examples/scripts/out_of_memory.py
    vaebench run examples/scripts/out_of_memory.py
"""

import argparse
import resource

import torch
from torch import nn

parser = argparse.ArgumentParser()
parser.add_argument("--limit-mb", type=int, default=400, help="address space the script may add")
parser.add_argument("--steps", type=int, default=200)
parser.add_argument("--hidden", type=int, default=2048, help="hidden width (smaller: fails sooner)")
args = parser.parse_args()

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(1024, args.hidden), nn.ReLU(), nn.Linear(args.hidden, 1024), nn.ReLU(),
                      nn.Linear(1024, 10))
optimizer = torch.optim.Adam(model.parameters())

with open("/proc/self/status") as status:  # the address space in use now, plus the allowance
    size = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))
resource.setrlimit(resource.RLIMIT_AS, (size + args.limit_mb * 2**20, resource.RLIM_INFINITY))

batch = 64
for step in range(args.steps):
    x = torch.randn(batch, 1024)  # (batch, 1024)
    y = torch.randint(0, 10, (batch,))
    loss = nn.functional.cross_entropy(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if step >= 40:  # after the first measured steps: twice the batch each step until it no longer fits
        batch *= 2
