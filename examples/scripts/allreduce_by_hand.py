"""Data-parallel training without DistributedDataParallel: each rank computes its gradients and
averages them with hand-written ``dist.all_reduce`` calls (as older code and some papers' code
does), plus an all-reduce of the loss for the log. Written the way users write them.

    python -m torch.distributed.run --nproc_per_node 2 examples/scripts/allreduce_by_hand.py
    vaebench run --nproc 2 examples/scripts/allreduce_by_hand.py --slow-rank 1 --delay-ms 20

``--slow-rank R --delay-ms D`` adds D ms to every batch rank R loads: the others wait for it
inside their ``all_reduce`` calls.
"""

import argparse
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=5)
parser.add_argument("--batch-size", type=int, default=64)
parser.add_argument("--samples", type=int, default=8192)
parser.add_argument("--slow-rank", type=int, default=None)
parser.add_argument("--delay-ms", type=float, default=0.0)
args = parser.parse_args()

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
torch.manual_seed(0)
x = torch.randn(args.samples, 128)  # (samples, features)
y = (x[:, :8].sum(dim=1) > 0).long()  # (samples,)
data = TensorDataset(x, y)
sampler = DistributedSampler(data, num_replicas=world, rank=rank, shuffle=True, seed=0)


def collate(batch):
    if rank == args.slow_rank and args.delay_ms:
        time.sleep(args.delay_ms / 1e3)  # this rank's reads are slow
    xs, ys = zip(*batch, strict=True)
    return torch.stack(xs), torch.stack(ys)


loader = DataLoader(data, batch_size=args.batch_size, sampler=sampler, collate_fn=collate)
model = nn.Sequential(nn.Linear(128, 256), nn.ReLU(), nn.Linear(256, 2))
for p in model.parameters():  # every rank starts from rank 0's weights
    dist.broadcast(p.data, src=0)
optimizer = torch.optim.SGD(model.parameters(), lr=0.05)

for epoch in range(args.epochs):
    sampler.set_epoch(epoch)
    for step, (xb, yb) in enumerate(loader):
        loss = F.cross_entropy(model(xb), yb)  # model: (batch, 128) -> (batch, 2)
        optimizer.zero_grad()
        loss.backward()
        for p in model.parameters():  # the average of every rank's gradient
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad /= world
        optimizer.step()
        logged = loss.detach().clone()
        dist.all_reduce(logged)  # the mean loss over the ranks, for the log
        if rank == 0 and step % 20 == 0:
            print(f"epoch {epoch} step {step} loss {logged.item() / world:.3f}")
dist.destroy_process_group()
