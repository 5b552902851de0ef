"""A DistributedDataParallel training script, written the way users write them (not for vaebench):
gloo on the CPU, NCCL on GPUs (one process per GPU), a DistributedSampler, a DDP-wrapped model.

    python -m torch.distributed.run --nproc_per_node 2 examples/scripts/ddp_train.py
    vaebench run --nproc 2 examples/scripts/ddp_train.py --slow-rank 1 --delay-ms 20

``--slow-rank R --delay-ms D`` adds D ms to every batch that rank R loads (a slow disk, a
busy host): the straggler vaebench should name. ``--slow-backward-rank R --backward-delay-ms D``
adds D ms inside rank R's backward instead, where DDP's all-reduce makes the others wait.
``--die-rank R --die-at N`` makes rank R crash at its N-th batch.
"""

import argparse
import os
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=5)  # 320 steps a rank: every window of a default run
parser.add_argument("--batch-size", type=int, default=64)
parser.add_argument("--samples", type=int, default=8192)
parser.add_argument("--slow-rank", type=int, default=None)
parser.add_argument("--delay-ms", type=float, default=0.0)
parser.add_argument("--slow-backward-rank", type=int, default=None,
                    help="this rank's backward takes --backward-delay-ms more (its own gradient work)")
parser.add_argument("--backward-delay-ms", type=float, default=0.0)
parser.add_argument("--die-rank", type=int, default=None, help="this rank dies (a crash) at --die-at")
parser.add_argument("--die-at", type=int, default=20)
args = parser.parse_args()

cuda = torch.cuda.is_available()
dist.init_process_group("nccl" if cuda else "gloo")
rank, world = dist.get_rank(), dist.get_world_size()
device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if cuda else "cpu")
if cuda:
    torch.cuda.set_device(device)

torch.manual_seed(0)
x = torch.randn(args.samples, 256)  # (samples, features)
y = (x[:, :8].sum(dim=1) > 0).long()  # (samples,) a learnable label
data = TensorDataset(x, y)
sampler = DistributedSampler(data, num_replicas=world, rank=rank, shuffle=True, seed=0)


def collate(batch):
    if rank == args.slow_rank and args.delay_ms:
        time.sleep(args.delay_ms / 1e3)  # this rank's data loading is slow
    xs, ys = zip(*batch, strict=True)
    return torch.stack(xs), torch.stack(ys)


class SlowBackward(torch.autograd.Function):
    """The identity, whose backward takes longer on one rank (a slow custom kernel, a busy GPU)."""

    @staticmethod
    def forward(ctx, x):
        return x

    @staticmethod
    def backward(ctx, grad):
        time.sleep(args.backward_delay_ms / 1e3)
        return grad


loader = DataLoader(data, batch_size=args.batch_size, sampler=sampler, collate_fn=collate)
net = nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 2))
model = DistributedDataParallel(net.to(device))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

for epoch in range(args.epochs):
    sampler.set_epoch(epoch)
    for step, (xb, yb) in enumerate(loader):
        if rank == args.die_rank and step == args.die_at:
            os._exit(1)  # a crash: no exception, no cleanup
        xb, yb = xb.to(device), yb.to(device)
        logits = model(xb)  # (batch, 2)
        if rank == args.slow_backward_rank and args.backward_delay_ms:
            logits = SlowBackward.apply(logits)
        loss = F.cross_entropy(logits, yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if rank == 0 and step % 20 == 0:
            print(f"epoch {epoch} step {step} loss {loss.item():.3f}")
dist.destroy_process_group()
