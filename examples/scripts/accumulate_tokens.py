"""A tiny character-level transformer trained the way nanoGPT-style scripts do (not for
vaebench): no DataLoader -- each micro-step builds a new batch tensor from random offsets into
the token stream -- and gradients accumulated over several micro-steps per optimizer step.

    python examples/scripts/accumulate_tokens.py --iters 50
    vaebench run examples/scripts/accumulate_tokens.py
"""

import argparse

import torch
import torch.nn.functional as F
from torch import nn

parser = argparse.ArgumentParser()
parser.add_argument("--iters", type=int, default=400)
parser.add_argument("--batch-size", type=int, default=8)
parser.add_argument("--accumulate", type=int, default=4)
parser.add_argument("--block", type=int, default=32)
parser.add_argument("--width", type=int, default=64)
args = parser.parse_args()

torch.manual_seed(0)
text = torch.randint(0, 65, (200_000,))  # a token stream of 65 symbols


def get_batch():
    ix = torch.randint(len(text) - args.block - 1, (args.batch_size,))
    x = torch.stack([text[i:i + args.block] for i in ix])  # (batch, block)
    y = torch.stack([text[i + 1:i + 1 + args.block] for i in ix])  # (batch, block)
    return x, y


class TinyGPT(nn.Module):
    def __init__(self, vocab: int, width: int, block: int):
        super().__init__()
        self.tokens = nn.Embedding(vocab, width)
        self.positions = nn.Embedding(block, width)
        layer = nn.TransformerEncoderLayer(width, nhead=4, dim_feedforward=4 * width, batch_first=True)
        self.blocks = nn.TransformerEncoder(layer, num_layers=2)
        self.head = nn.Linear(width, vocab)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(block))

    def forward(self, idx):
        h = self.tokens(idx) + self.positions(torch.arange(idx.size(1)))  # (batch, block, width)
        h = self.blocks(h, mask=self.mask, is_causal=True)
        return self.head(h)  # (batch, block, vocab)


model = TinyGPT(65, args.width, args.block)
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)

for it in range(args.iters):
    for _micro in range(args.accumulate):
        x, y = get_batch()
        logits = model(x)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1)) / args.accumulate
        loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if it % 50 == 0:
        print(f"iter {it}: loss {loss.item() * args.accumulate:.3f}")
