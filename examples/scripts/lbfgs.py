"""An optimizer that takes a closure: LBFGS re-evaluates the loss (forward and backward) up to
max_iter times inside one optimizer.step(closure). Its first step can take far longer than the
others (--first-step-seconds makes each of its closure calls slower, as a large first batch or
a cold cache would); vaebench keeps waiting while backward() keeps running inside that step.

    vaebench run examples/scripts/lbfgs.py --first-step-seconds 2
"""

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=60)
parser.add_argument("--first-step-seconds", type=float, default=0.0,
                    help="extra time spread over the first step's closure calls")
args = parser.parse_args()

torch.manual_seed(0)
x = torch.randn(256, 10)  # (batch, features)
y = x @ torch.randn(10, 1)  # (batch, 1)
model = nn.Linear(10, 1)
optimizer = torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=20)

for step in range(args.steps):
    def closure(step: int = step) -> torch.Tensor:  # the step bound now: LBFGS calls it later
        optimizer.zero_grad()
        loss = F.mse_loss(model(x), y)
        loss.backward()
        if step == 0:
            time.sleep(args.first_step_seconds / 20)
        return loss

    loss = optimizer.step(closure)
print(f"final loss {loss.item():.6f}")
