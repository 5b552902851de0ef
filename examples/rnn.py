"""A stateful workload that is not the VAE: a word-level language model whose recurrent hidden
state is carried from batch to batch, written as a user would (after pytorch/examples'
word_language_model, made small and given a generated corpus so it runs anywhere).

    python -m bench profile --workload examples/rnn.py:make
    python -m bench profile --workload examples/rnn.py:make --variants lstm,gru --rounds 50

What it shows about the workload interface:

- ``fetch()`` walks the corpus once per epoch with a plain iterator and raises StopIteration
  at its end (as ``next(iter(loader))`` does); ``batches_per_epoch`` is exactly what one pass
  yields, and ``rewind()`` (called by ``restore()``) starts the pass again.
- ``state()``/``restore()`` cover *everything a step reads and changes*: the weights, the
  optimizer's moments, the hidden state carried between batches and the random number
  generator (dropout), and put the data stream back to the start of a pass. Leave one out and
  the rounds no longer do the same work: a restored model would start from a later hidden
  state or a later batch.
- ``batch_size`` is its own (20 sequences, as in the original); the harness's ``ctx.batch_size``
  (100 unless ``--batch-size`` says otherwise) is only a suggestion, and the report uses this
  attribute.
- The variants (``lstm``, ``gru``) are a comparison, not a ladder: each is compared with the
  first, and neither asks for a compute-only bound.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.workload import Context, ModelWorkload

VOCAB, EMBED, HIDDEN, LAYERS = 500, 64, 128, 2
BPTT = 35  # tokens per sequence chunk (truncated back-propagation through time)
BATCH = 20  # parallel token streams: this workload's own batch size
CORPUS_TOKENS = 40_000


def corpus(tokens: int, seed: int) -> torch.Tensor:
    """A generated token stream with word-like statistics: a Zipf-distributed vocabulary whose
    next word depends on the current one (a random sparse Markov chain). (tokens,) int64."""
    g = torch.Generator().manual_seed(seed)
    zipf = 1.0 / torch.arange(1, VOCAB + 1, dtype=torch.float)
    successors = torch.multinomial(zipf.expand(VOCAB, VOCAB), 8, generator=g).numpy()  # (VOCAB, 8)
    picks = torch.randint(0, 8, (tokens,), generator=g).numpy()
    jumps = (torch.rand(tokens, generator=g) < 0.1).numpy()  # now and then any word, by frequency
    anywhere = torch.multinomial(zipf, tokens, replacement=True, generator=g).numpy()
    out = [0] * tokens
    for i in range(1, tokens):  # plain Python ints: a 40k-token chain in ~20 ms
        out[i] = int(anywhere[i]) if jumps[i] else int(successors[out[i - 1], picks[i]])
    return torch.tensor(out, dtype=torch.long)


class RNNModel(nn.Module):
    def __init__(self, cell: str):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, EMBED)
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn(EMBED, HIDDEN, LAYERS, dropout=0.2)
        self.decoder = nn.Linear(HIDDEN, VOCAB)
        self.cell = cell

    def init_hidden(self, batch: int, device: torch.device) -> Any:
        h = torch.zeros(LAYERS, batch, HIDDEN, device=device)  # (layers, batch, hidden)
        return (h, h.clone()) if self.cell == "lstm" else h

    def forward(self, x: torch.Tensor, hidden: Any) -> tuple[torch.Tensor, Any]:  # x: (T, B)
        out, hidden = self.rnn(self.embed(x), hidden)  # (T, B, HIDDEN)
        return self.decoder(out), hidden  # (T, B, VOCAB) logits


def detach(hidden: Any) -> Any:
    """Cut the graph at the batch boundary, keep the values (truncated BPTT)."""
    return tuple(h.detach() for h in hidden) if isinstance(hidden, tuple) else hidden.detach()


class LanguageModel(ModelWorkload):
    parts = ("data", "forward", "backward", "optimizer")
    batch_size = BATCH

    def __init__(self, ctx: Context, cell: str):
        torch.manual_seed(ctx.seed)
        self.device = ctx.device
        tokens = corpus(min(ctx.limit or CORPUS_TOKENS, CORPUS_TOKENS), ctx.seed)
        columns = len(tokens) // BATCH
        self.data = tokens[:columns * BATCH].view(BATCH, columns).t().contiguous().to(ctx.device)  # (T, B)
        self.batches_per_epoch = (columns - 1) // BPTT  # exactly what one pass yields
        self.model = RNNModel(cell).to(ctx.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.hidden = self.model.init_hidden(BATCH, ctx.device)
        self._chunks: Iterator[int] = iter(())
        self.rewind()

    def describe(self) -> str:
        return (f"{self.model.cell.upper()} language model on a generated corpus, "
                f"{self.batches_per_epoch} chunks of {BPTT} tokens x {BATCH} streams per epoch")

    def rewind(self) -> None:
        """A new pass over the corpus, from its first chunk."""
        self._chunks = iter(range(0, self.batches_per_epoch * BPTT, BPTT))

    def fetch(self) -> tuple[torch.Tensor, torch.Tensor]:
        i = next(self._chunks)  # StopIteration at the end of the pass, as a DataLoader's iterator
        return self.data[i:i + BPTT], self.data[i + 1:i + 1 + BPTT]  # (BPTT, B) inputs, targets

    def step(self, batch: tuple[torch.Tensor, torch.Tensor], part) -> None:
        x, y = batch
        self.model.train()
        with part("forward"):
            logits, hidden = self.model(x, detach(self.hidden))
            loss = F.cross_entropy(logits.view(-1, VOCAB), y.reshape(-1))
        with part("backward"):
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(self.model.parameters(), 0.25)
        with part("optimizer"):
            self.optimizer.step()
        self.hidden = detach(hidden)  # carried into the next batch

    # Everything a step reads and changes: weights and optimizer (ModelWorkload's part), the
    # hidden state carried between batches, the RNG (dropout); the data position is rewound to
    # the start of a pass, so that a restored round (or a full epoch) starts where every other did.
    def state(self) -> dict[str, Any]:
        return {**super().state(), "hidden": copy.deepcopy(self.hidden), "rng": torch.get_rng_state()}

    def restore(self, state: dict[str, Any]) -> None:
        super().restore(state)  # weights and optimizer, then rewind()
        self.hidden = copy.deepcopy(state["hidden"])
        torch.set_rng_state(state["rng"])


def make(ctx: Context) -> dict[str, Any]:
    return {"lstm": lambda: LanguageModel(ctx, "lstm"), "gru": lambda: LanguageModel(ctx, "gru")}
